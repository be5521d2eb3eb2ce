"""tilld's configuration: one schema, read from TOML and overridden by TILLD_* variables.

The file is ``/etc/tilld/tilld.toml`` unless ``--config`` or ``TILLD_CONFIG``
names another; a missing default file means built-in defaults, a missing named
file is an error. ``TILLD_<SECTION>__<KEY>`` variables win over the file, so a
technician can change one key for one run without editing it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .errors import ConfigError
from .rules import PAYMENT_METHODS

DEFAULT_CONFIG_PATH = Path("/etc/tilld/tilld.toml")


class Section(BaseModel):
    # A misspelt key must be reported, not silently ignored: a till that
    # quietly runs on a default limit is worse than one that refuses to start.
    model_config = ConfigDict(extra="forbid")


class TillSection(Section):
    id: str = Field(default="till-1", min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    seller_name: str = "tilld demo venue"
    org_number: str = ""
    address: str = ""


class PathsSection(Section):
    state_dir: Path = Path("/var/lib/tilld")


class ApiSection(Section):
    socket_path: Path = Path("/run/tilld/tilld.sock")
    dbus: str = "system"
    cashier_group: str = "tilld-cashier"
    tech_group: str = "tilld-tech"
    max_clients: int = Field(default=256, ge=1)
    # One uid (a cashier account, or any local user in the cashier group)
    # cannot take every connection; root and the tech group are not capped.
    max_clients_per_uid: int = Field(default=32, ge=1)
    # Kept for root and the tech group, so a technician always gets in.
    tech_reserved_clients: int = Field(default=4, ge=0)
    # From a line's first byte to its newline; idle time between lines is free.
    line_timeout_s: float = Field(default=10, gt=0, le=3600)

    @field_validator("dbus")
    @classmethod
    def _bus(cls, value: str) -> str:
        # A D-Bus address is TRANSPORT:KEY=VALUE[,...] (D-Bus specification, "Server Addresses").
        if value in ("system", "session", "none") or re.fullmatch(r"[a-z-]+:[^=]+=.*", value):
            return value
        raise ValueError(
            'use "system", "session", "none" or a bus address such as '
            '"unix:path=/run/tilld/bus.sock"'
        )

    @model_validator(mode="after")
    def _room_for_cashiers(self) -> ApiSection:
        if self.tech_reserved_clients >= self.max_clients:
            raise ValueError(
                f"tech_reserved_clients ({self.tech_reserved_clients}) must be less than "
                f"max_clients ({self.max_clients}), or no cashier could connect"
            )
        return self


class CatalogSection(Section):
    file: str = ""


class BackendSection(Section):
    url: str = ""
    token_file: str = ""
    timeout_s: float = Field(default=5, gt=0)
    allow_insecure_http: bool = False

    @model_validator(mode="after")
    def _url_keeps_the_token_safe(self) -> BackendSection:
        problem = backend_url_problem(self.url, allow_insecure_http=self.allow_insecure_http)
        if problem:
            raise ValueError(problem)
        return self


def backend_url_problem(url: str, *, allow_insecure_http: bool) -> str | None:
    """Why ``url`` cannot be the back-end's address, or None if it can (empty: no back-end).

    The till sends its bearer token and every sale to this address, so plain
    http is for the till's own machine, or for a network someone trusts on
    purpose (``backend.allow_insecure_http``).
    """
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return (
            f"backend.url {url!r} is not an http(s) address; use "
            "https://HOST/PATH (e.g. https://tickets.example/api)"
        )
    if not parts.hostname:
        return f"backend.url {url!r} names no host; use https://HOST/PATH"
    if parts.scheme == "http" and not allow_insecure_http and not _is_loopback(parts.hostname):
        return (
            f"backend.url {url!r} is plain http to another machine, so the till's token and "
            "sales would cross the network readable by anyone on it; use https://, or set "
            "backend.allow_insecure_http = true if this network is trusted on purpose"
        )
    return None


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True  # RFC 6761: localhost names resolve to loopback
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ConnectivitySection(Section):
    internet_probes: list[str] = []
    # A silent back-end is noticed within two intervals and one timeout (2.3 s);
    # a slow one answering within the timeout (1.3 s) never is. docs/benchmarks.md
    # has the measured trade-off between the two.
    probe_interval_s: float = Field(default=0.5, gt=0)
    probe_timeout_s: float = Field(default=1.3, gt=0)
    backoff_cap_s: float = Field(default=10, gt=0)

    @field_validator("internet_probes")
    @classmethod
    def _probe_targets(cls, targets: list[str]) -> list[str]:
        for target in targets:
            parts = urlsplit(target)
            tcp = parts.scheme == "tcp" and parts.hostname and parts.port
            http = parts.scheme in ("http", "https") and parts.hostname
            if not (tcp or http):
                raise ValueError(f"{target!r}: use tcp://HOST:PORT or http(s)://HOST/PATH")
        return targets


class SyncSection(Section):
    # Over a 50 ms round trip a batch of 200 is mostly waiting; 1000 is the most
    # the reference back-end takes in one request (a back-end that takes fewer
    # answers 400 and the till splits the batch in halves).
    batch_size: int = Field(default=1000, ge=1, le=10_000)
    catalog_refresh_s: float = Field(default=60, gt=0)


class SalesSection(Section):
    # Open sales live in memory; a cashier (or a script) opening sale after
    # sale must not be able to grow the till without limit.
    max_open: int = Field(default=1000, ge=1, le=100_000)
    # An empty sale (no lines, no payments) left open this long is closed as
    # abandoned, journaled as a void with reason "abandoned".
    abandon_after_s: float = Field(default=4 * 3600, gt=0)


class SwishSection(Section):
    poll_interval_s: float = Field(default=1, gt=0)
    timeout_s: float = Field(default=180, gt=0)


class CardSection(Section):
    offline_limit: int = Field(default=250, ge=0)
    offline_brands: list[str] = ["visa", "mastercard"]
    # The offline risk budget (docs/card-terminal.md): a payment stored on the
    # terminal is money the venue has not got yet, and the acquirer may refuse
    # it if it is declined later or forwarded too late.
    offline_max_amount: int = Field(default=200_000, ge=0, le=100_000_000)
    offline_max_total: int = Field(default=5_000_000, ge=0, le=10_000_000_000)
    offline_max_age_h: float = Field(default=72.0, gt=0, le=24 * 30)
    offline_age_warning: float = Field(default=0.75, gt=0, lt=1)

    @field_validator("offline_brands")
    @classmethod
    def _lower_case(cls, brands: list[str]) -> list[str]:
        return [b.strip().lower() for b in brands]


class RefundsSection(Section):
    # A ticket scanned in at the entrance has been used: refunding it gives
    # the visit back for free. Venues that refund after a visit (a closed
    # exhibition, an evacuation) switch this on.
    allow_used_tickets: bool = False


class PaymentsSection(Section):
    # The till's own switch per method, on top of the catalog's.
    enabled: list[str] = list(PAYMENT_METHODS)

    @field_validator("enabled")
    @classmethod
    def _known_methods(cls, methods: list[str]) -> list[str]:
        unknown = sorted(set(methods) - set(PAYMENT_METHODS))
        if unknown:
            raise ValueError(f"unknown payment methods {unknown}; known: {list(PAYMENT_METHODS)}")
        return methods


class ScannerSection(Section):
    kind: Literal["none", "serial", "evdev", "hidpos"] = "none"
    port: str = ""  # serial: e.g. /dev/tilld/scanner
    baudrate: int = Field(default=9600, gt=0)
    device: str = ""  # evdev: e.g. /dev/input/by-id/usb-...-event-kbd
    vendor_id: int = Field(default=0, ge=0, le=0xFFFF)  # hidpos
    product_id: int = Field(default=0, ge=0, le=0xFFFF)
    prefix: str = ""  # stripped from the front of every code
    suffix: Literal["CR", "LF", "CRLF", "TAB"] = "CR"  # serial: what ends a code
    aim_ids: bool = False  # serial/evdev: codes start with an AIM symbology identifier
    debounce_ms: int = Field(default=800, ge=0, le=60_000)
    max_length: int = Field(default=512, ge=8, le=8192)

    @model_validator(mode="after")
    def _kind_needs_its_address(self) -> ScannerSection:
        needs = {"serial": "port", "evdev": "device", "hidpos": "vendor_id"}.get(self.kind)
        if needs and not getattr(self, needs):
            raise ValueError(f"a {self.kind} scanner needs {needs}")
        return self


class PrinterSection(Section):
    kind: Literal["none", "usb", "serial", "network"] = "none"
    address: str = ""  # network: host:9100
    port: str = ""  # serial: e.g. /dev/tilld/printer
    baudrate: int = Field(default=19200, gt=0)
    vendor_id: int = Field(default=0, ge=0, le=0xFFFF)  # usb
    product_id: int = Field(default=0, ge=0, le=0xFFFF)
    width: int = Field(default=48, ge=24, le=64)  # characters per line (80 mm: 48, 58 mm: 32)
    code_page: str = "CP858"  # ESC/POS code page with Å, Ä, Ö
    auto_print: bool = True  # print the receipt (and tickets) when a sale completes
    drawer_after_cash: bool = True  # kick the drawer when a cash payment completes a sale
    drawer_pin: Literal[2, 5] = 2
    status_interval_s: float = Field(default=2.0, gt=0, le=60)
    status_queries: bool = True  # false for printers that do not answer DLE EOT

    @model_validator(mode="after")
    def _kind_needs_its_address(self) -> PrinterSection:
        needs = {"network": "address", "serial": "port", "usb": "vendor_id"}.get(self.kind)
        if needs and not getattr(self, needs):
            raise ValueError(f"a {self.kind} printer needs {needs}")
        if self.kind == "network" and not _is_host_port(self.address):
            raise ValueError(f"address {self.address!r} is not host:port")
        return self


def _is_host_port(value: str) -> bool:
    host, sep, port = value.rpartition(":")
    return bool(sep and host and port.isdigit())


class TerminalSection(Section):
    kind: Literal["none", "zvt-tcp", "zvt-serial", "nexo"] = "none"
    address: str = ""  # zvt-tcp: host:20007; nexo: host:11000
    port: str = ""  # zvt-serial: e.g. /dev/tilld/terminal
    password: SecretStr = SecretStr("000000")
    sale_id: str = ""  # nexo: the till's SaleID, as registered with the terminal
    poi_id: str = ""  # nexo: the terminal's POIID

    @model_validator(mode="after")
    def _kind_needs_its_address(self) -> TerminalSection:
        if self.kind == "zvt-tcp" and not self.address:
            raise ValueError("a zvt-tcp terminal needs address (host:20007)")
        if self.kind == "zvt-serial" and not self.port:
            raise ValueError("a zvt-serial terminal needs port (the serial device)")
        if self.kind == "nexo":
            if not _is_host_port(self.address):
                raise ValueError("a nexo terminal needs address host:port (e.g. 10.0.0.5:11000)")
            if not self.sale_id or not self.poi_id:
                raise ValueError(
                    "a nexo terminal needs sale_id (the till) and poi_id (the terminal)"
                )
        secret = self.password.get_secret_value()
        if not (len(secret) == 6 and secret.isdigit()):
            raise ValueError("password must be the terminal's six-digit ZVT password")
        return self


class ControlUnitSection(Section):
    # "none" is not lawful in Sweden: a Swedish till must register every
    # receipt with a certified control unit (docs/fiscal.md).
    kind: Literal["none", "cleancash"] = "none"
    port: str = ""  # cleancash: the serial device, e.g. /dev/tilld/controlunit
    # How long a sale's answer waits for its control code before it says
    # "waiting" (the receipt prints when the code comes). Under a second: a
    # D-Bus screen's call must not wait on a peer (docs/api.md).
    answer_wait_s: float = Field(default=0.8, gt=0, le=60)

    @model_validator(mode="after")
    def _kind_needs_its_port(self) -> ControlUnitSection:
        if self.kind == "cleancash" and not self.port:
            raise ValueError("a cleancash control unit needs port (the serial device)")
        return self


class DevicesSection(Section):
    scanner: ScannerSection = ScannerSection()
    printer: PrinterSection = PrinterSection()
    terminal: TerminalSection = TerminalSection()
    controlunit: ControlUnitSection = ControlUnitSection()


class LogSection(Section):
    level: Literal["debug", "info", "notice", "warning", "error"] = "info"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TILLD_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    till: TillSection = TillSection()
    paths: PathsSection = PathsSection()
    api: ApiSection = ApiSection()
    catalog: CatalogSection = CatalogSection()
    backend: BackendSection = BackendSection()
    connectivity: ConnectivitySection = ConnectivitySection()
    sync: SyncSection = SyncSection()
    sales: SalesSection = SalesSection()
    swish: SwishSection = SwishSection()
    card: CardSection = CardSection()
    payments: PaymentsSection = PaymentsSection()
    refunds: RefundsSection = RefundsSection()
    devices: DevicesSection = DevicesSection()
    log: LogSection = LogSection()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file arrives as init arguments; environment variables win.
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _control_unit_needs_the_org_number(self) -> Settings:
        # Every registration carries it (SKVFS 2014:9): refuse at start, not at the first sale.
        digits = self.till.org_number.replace("-", "")
        if self.devices.controlunit.kind != "none" and not (
            digits.isascii() and digits.isdigit() and len(digits) in (10, 12)
        ):
            raise ValueError(
                "a control unit needs till.org_number: the seller's 10 or 12 digit "
                "organisation number (a hyphen may stay in)"
            )
        return self

    @property
    def journal_path(self) -> Path:
        return self.paths.state_dir / "journal.sqlite"

    @property
    def catalog_path(self) -> Path:
        return self.paths.state_dir / "catalog.sqlite"


def config_path(explicit: str | None) -> tuple[Path, bool]:
    """The file to read and whether the user named it (then it must exist)."""
    if explicit:
        return Path(explicit), True
    from_env = os.environ.get("TILLD_CONFIG")
    if from_env:
        return Path(from_env), True
    return DEFAULT_CONFIG_PATH, False


def load_settings(explicit: str | None = None) -> tuple[Settings, Path | None]:
    """Read the effective configuration; ConfigError lists every bad key and why."""
    path, named = config_path(explicit)
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError([f"{path}: cannot read: {exc}"]) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
    elif named:
        raise ConfigError([f"{path}: no such file (named by --config or TILLD_CONFIG)"])
    try:
        return Settings(**data), (path if path.exists() else None)
    except ValidationError as exc:
        raise ConfigError([_describe(err) for err in exc.errors()]) from None


SECRET_KEYS = {"password"}


def _describe(err: Any) -> str:
    key = ".".join(str(part) for part in err["loc"]) or "(file)"
    if err["type"] == "extra_forbidden":
        return f"{key}: unknown key (misspelt? see docs/configuration.md)"
    value = err.get("input")
    secret = str(err["loc"][-1]) in SECRET_KEYS if err["loc"] else False
    shown = "" if isinstance(value, dict) or secret else f" (got {value!r})"
    return f"{key}: {err['msg']}{shown}"


def effective_toml(settings: Settings) -> str:
    """The configuration as TOML, secrets masked, for ``tilld config check``."""
    lines: list[str] = []
    _emit(settings.model_dump(mode="python"), settings, [], lines)
    return "\n".join(lines).strip() + "\n"


def _emit(data: dict[str, Any], model: BaseModel, path: list[str], lines: list[str]) -> None:
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    if path and scalars:
        lines.append(f"\n[{'.'.join(path)}]")
    for key, value in scalars.items():
        raw = getattr(model, key)
        shown = '"********"' if isinstance(raw, SecretStr) else _toml_value(value)
        lines.append(f"{key} = {shown}")
    for key, value in tables.items():
        _emit(value, getattr(model, key), [*path, key], lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    # A TOML basic string is a JSON string for every character we can print.
    return json.dumps(str(value), ensure_ascii=False)
