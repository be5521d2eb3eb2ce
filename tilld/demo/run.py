"""``tilld demo``, run: the back-end, proxies, simulators and the daemon on one machine.

It starts the reference back-end, a switchable proxy in front of it (the
"server" a technician can take down), a switchable listener standing in for
the internet, and the daemon itself, all on loopback with state in one
folder. ``tillctl demo server down`` and friends flip the switches so the
outage routine can be shown live. Nothing outside the folder is touched;
deleting it resets the demo.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp

from ..api import dbus_names as names
from ..app import Daemon
from ..config import Settings
from ..errors import Reason, Refused, StartupError
from ..logs import log_also_to
from .bus import PrivateBus
from .processes import stop_process

DEMO_CATALOG = "catalog.json"
DEMO_LOG = "tilld.log"
START_TIMEOUT_S = 20
ANNOUNCE_WAIT_S = 10

# tillctl demo TARGET STATE -> the simulator control calls that play it:
# (simulator, HTTP path, body), or (terminal, None, script) for the card
# terminal simulator's line-JSON control.
Call = tuple[str, str | None, dict[str, Any]]
PROXY_STATES: dict[str, dict[str, Any]] = {
    "up": {"mode": "pass"},
    "down": {"mode": "refuse"},
    "blackhole": {"mode": "blackhole"},
}
CARD_STATES = ("visa", "mastercard", "maestro", "visa-electron", "vpay", "amex")
SWITCHES: dict[str, dict[str, list[Call]]] = {
    "server": {state: [("server", "/mode", body)] for state, body in PROXY_STATES.items()},
    # Without the internet the terminal cannot reach the card network either.
    "internet": {
        state: [("internet", "/mode", body), ("terminal", None, {"online": state == "up"})]
        for state, body in PROXY_STATES.items()
    },
    "printer": {
        "up": [("printer", "/plug", {}), ("printer", "/state", {"state": "ok"})],
        "down": [("printer", "/pull", {})],
        "paper-out": [("printer", "/state", {"state": "paper-out"})],
        "paper-low": [("printer", "/state", {"state": "paper-low"})],
        "cover-open": [("printer", "/state", {"state": "cover-open"})],
    },
    "scanner": {"up": [("scanner", "/plug", {})], "down": [("scanner", "/unplug", {})]},
    # The control unit (kontrollenhet): unplugged stops sales; full is its memory.
    "controlunit": {
        "up": [("controlunit", "/reset", {}), ("controlunit", "/plug", {})],
        "down": [("controlunit", "/unplug", {})],
        "warning": [("controlunit", "/storage", {"state": "warning"})],
        "full": [("controlunit", "/storage", {"state": "full"})],
    },
    "card": {
        **{brand: [("terminal", None, {"brand": brand, "decision": "approve"})]
           for brand in CARD_STATES},
        "decline": [("terminal", None, {"decision": "decline"})],
        # The customer takes their time: the terminal keeps asking for the card.
        "hold": [("terminal", None, {"decision": "hold"})],
    },
}  # fmt: skip


class DemoSwitches:
    """The demo's switches (server, internet, printer, scanner, card, control unit), via the
    simulators."""

    def __init__(self, controls: dict[str, str]) -> None:
        self.controls = controls  # simulator -> "host:port" of its control API
        self.states = {target: "up" for target in SWITCHES if target != "card"}
        self.states["card"] = "visa"

    async def set(self, target: str, state: str) -> dict[str, Any]:
        if target not in SWITCHES:
            raise Refused(Reason.UNKNOWN_SWITCH, f"The demo has no switch called {target!r}.")
        calls = SWITCHES[target].get(state)
        if calls is None:
            raise Refused(
                Reason.UNKNOWN_SWITCH,
                f"The demo's {target} can be {', '.join(SWITCHES[target])}, not {state!r}.",
            )
        async with aiohttp.ClientSession() as session:
            for simulator, path, body in calls:
                if simulator not in self.controls:
                    continue
                if path is None:
                    await _terminal_script(self.controls[simulator], body)
                    continue
                url = f"http://{self.controls[simulator]}{path}"
                async with session.post(url, json=body) as response:
                    response.raise_for_status()
        self.states[target] = state
        return {"target": target, "state": state, "switches": dict(self.states)}


async def _terminal_script(control: str, script: dict[str, Any]) -> None:
    host, _, port = control.rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(json.dumps({"op": "set", **script}).encode() + b"\n")
        await writer.drain()
        answer = json.loads(await reader.readline())
    finally:
        writer.close()
    if not answer.get("ok"):
        raise Refused(Reason.UNKNOWN_SWITCH, f"The demo terminal refused {script}: {answer}")


class Helper:
    """A simulator run as a child process; it announces its addresses as key=value lines."""

    def __init__(self, name: str, argv: list[str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        self.announced: dict[str, str] = {}

    async def start(self, *keys: str, stdin: bool = False) -> dict[str, str]:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *self.argv,
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=None if stdin else subprocess.DEVNULL,
        )
        log.close()
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                while not all(k in self.announced for k in keys):
                    line = await self.proc.stdout.readline()
                    if not line:
                        break
                    key, _, value = line.decode().strip().partition("=")
                    self.announced[key] = value
        except TimeoutError:
            pass
        missing = [k for k in keys if k not in self.announced]
        if missing:
            raise StartupError(f"the demo's {self.name} did not start; see {self.log_path}")
        return self.announced

    async def stop(self) -> None:
        await stop_process(self.proc)


# One offline card payment in the demo, at most (öre): 500 kr, so a sale of
# a few tickets shows the amount limit while the internet is down.
DEMO_OFFLINE_MAX_AMOUNT = 50_000


def demo_settings(
    state_dir: Path,
    backend_url: str = "",
    internet: str = "",
    printer: str = "",
    scanner: Path | None = None,
    terminal: str = "",
    dbus: str = "none",
    terminal_protocol: str = "zvt",
    controlunit: Path | None = None,
) -> Settings:
    catalog = resources.files(__package__) / DEMO_CATALOG
    return Settings(
        till={
            "id": "demo-till",
            "seller_name": "Demomuseet AB",
            "org_number": "556000-0000",
            "address": "Museigatan 1, 111 11 Stockholm",
        },
        paths={"state_dir": state_dir},
        api={"socket_path": state_dir / "tilld.sock", "dbus": dbus},
        catalog={"file": str(catalog)},
        backend={"url": backend_url, "token_file": str(state_dir / "backend.token")},
        connectivity={
            "internet_probes": [f"tcp://{internet}"] if internet else [],
            "probe_interval_s": 1,
            "backoff_cap_s": 5,
        },
        swish={"poll_interval_s": 1, "timeout_s": 120},
        devices={
            "scanner": {"kind": "serial", "port": str(scanner)} if scanner else {},
            "printer": {"kind": "network", "address": printer} if printer else {},
            "terminal": demo_terminal(terminal, terminal_protocol) if terminal else {},
            "controlunit": ({"kind": "cleancash", "port": str(controlunit)} if controlunit else {}),
        },
        # Small offline limits, so the demo reaches them in a few sales: three
        # payments, and none over 500 kr.
        card={"offline_limit": 3, "offline_max_amount": DEMO_OFFLINE_MAX_AMOUNT},
    )


def demo_terminal(address: str, protocol: str) -> dict[str, str]:
    """The [devices.terminal] section for the demo's terminal simulator."""
    if protocol == "nexo":
        return {"kind": "nexo", "address": address, "sale_id": "demo-till", "poi_id": "SIM00001"}
    return {"kind": "zvt-tcp", "address": address}


async def run_stack(state_dir: Path, terminal_protocol: str = "zvt") -> None:
    token_file = state_dir / "backend.token"
    if not token_file.exists():
        token_file.write_text("demo-token\n", encoding="utf-8")
        token_file.chmod(0o600)
    backend = Helper(
        "back-end",
        [
            "-m",
            "tilld.sim.backend",
            "--listen",
            "127.0.0.1:0",
            "--db",
            str(state_dir / "backend.sqlite"),
            "--token-file",
            str(token_file),
            "--seed",
            "demo",
            "--swish-auto",
            "PAID",
            "--swish-delay",
            "5",
        ],
        state_dir / "backend.log",
    )
    helpers: list[Helper | PrivateBus] = [backend]
    try:
        bus = PrivateBus(state_dir)
        helpers.append(bus)
        dbus_address = await bus.start()
        backend_url = (await backend.start("listening"))["listening"]
        server_proxy = Helper(
            "server switch",
            [
                "-m",
                "tilld.sim.faultproxy",
                "--listen",
                "127.0.0.1:0",
                "--target",
                backend_url.removeprefix("http://"),
                "--control",
                "127.0.0.1:0",
            ],
            state_dir / "server-switch.log",
        )
        helpers.append(server_proxy)
        server = await server_proxy.start("listening", "control")
        internet_switch = Helper(
            "internet switch",
            ["-m", "tilld.sim.faultproxy", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0"],
            state_dir / "internet-switch.log",
        )
        helpers.append(internet_switch)
        internet = await internet_switch.start("listening", "control")
        printer_sim = Helper(
            "printer",
            [
                "-m",
                "drivers.sim.printer",
                "--listen",
                "127.0.0.1:0",
                "--out",
                str(state_dir / "receipts"),
            ],
            state_dir / "printer.log",
        )
        helpers.append(printer_sim)
        printer = await printer_sim.start("listening", "control")
        # Codes typed at the demo's terminal are scanned; without a terminal
        # (a service, a script) the control port is the way in.
        typing = sys.stdin is not None and sys.stdin.isatty()
        scanner_sim = Helper(
            "scanner",
            ["-m", "drivers.sim.scanner", "--link", str(state_dir / "scanner")]
            + (["--stdin"] if typing else []),
            state_dir / "scanner.log",
        )
        helpers.append(scanner_sim)
        scanner = await scanner_sim.start("pty", "control", stdin=typing)
        terminal_sim = Helper(
            "card terminal",
            [
                "-m",
                "drivers.sim.terminal",
                "--listen",
                "127.0.0.1:0",
                "--control",
                "127.0.0.1:0",
                "--protocol",
                terminal_protocol,
            ],
            state_dir / "terminal.log",
        )
        helpers.append(terminal_sim)
        terminal = await terminal_sim.start("listening", "control")
        controlunit_sim = Helper(
            "control unit",
            ["-m", "drivers.sim.controlunit", "--link", str(state_dir / "controlunit")],
            state_dir / "controlunit.log",
        )
        helpers.append(controlunit_sim)
        controlunit = await controlunit_sim.start("pty", "control")
        settings = demo_settings(
            state_dir,
            f"http://{server['listening']}",
            internet["listening"],
            printer=printer["listening"],
            scanner=state_dir / "scanner",
            terminal=terminal["listening"],
            dbus=dbus_address,
            terminal_protocol=terminal_protocol,
            controlunit=state_dir / "controlunit",
        )
        switches = DemoSwitches(
            {
                "server": server["control"],
                "internet": internet["control"],
                "printer": printer["control"],
                "scanner": scanner["control"],
                "terminal": terminal["control"],
                "controlunit": controlunit["control"],
            }
        )
        daemon = Daemon(settings, demo=switches)
        announcing: list[asyncio.Task[None]] = []
        await daemon.run(
            on_ready=lambda: announcing.append(
                asyncio.create_task(
                    announce_when_selling(
                        daemon, lambda: announce(settings, backend_url, scanner["control"], typing)
                    )
                )
            )
        )
    finally:
        # All at once: each may take its few seconds to go on a busy machine,
        # and one after another they added up past what a Ctrl-C should cost.
        await asyncio.gather(*(helper.stop() for helper in helpers))


async def announce_when_selling(daemon: Daemon, announce_now: Callable[[], None]) -> None:
    """Announce the demo once its control unit answers, at most ANNOUNCE_WAIT_S after READY.

    The unit's simulator opens beside the till; before its first answer every
    sale is refused with control-unit-unavailable, so a demo user who types a
    sale as soon as the socket is announced would be refused for no reason of
    theirs.
    """
    deadline = time.monotonic() + ANNOUNCE_WAIT_S
    while not daemon.registering.status().get("working") and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    announce_now()


def announce(settings: Settings, backend_url: str, scanner_control: str, typing: bool) -> None:
    socket_path = settings.api.socket_path
    tillctl = shutil.which("tillctl") or str(Path(sys.executable).with_name("tillctl"))
    ctl = f"{tillctl} --socket {socket_path}"
    state_dir = settings.paths.state_dir
    print(f"socket={socket_path}", flush=True)
    print(f"backend={backend_url}", flush=True)
    print(f"dbus={settings.api.dbus}", flush=True)
    print(f"scanner-control=http://{scanner_control}", flush=True)
    print(f"log={state_dir / DEMO_LOG}", flush=True)
    scanning = (
        "Devices: type a code here and press Enter to scan it (try 7310000000001, or\n"
        "$CODE from the ticket sold above)"
        if typing
        else "Devices: scan a code through the scanner's control port:\n"
        f'  curl -d \'{{"code": "7310000000001"}}\' http://{scanner_control}/scan'
    )
    print(
        "\ntilld demo is running (Ctrl-C stops it). In another terminal try:\n"
        f"  {ctl} status\n"
        f"  {ctl} call catalog.search query=ost\n"
        f"  SALE=$({ctl} call sale.open --get sale_id)\n"
        f"  {ctl} call sale.add sale_id=$SALE plu=100      # Entré vuxen, a ticket\n"
        f"  CODE=$({ctl} call sale.pay sale_id=$SALE method=cash amount:=20000 "
        "--get sale.lines.0.ticket_codes.0)\n"
        f"  {ctl} pending\n"
        f"  {ctl} receipt show 1\n"
        f"  {ctl} journal verify\n"
        "The outage routine, live (docs/operations.md walks it):\n"
        f"  {ctl} demo server down      # or: demo internet down, demo server blackhole\n"
        f"  {ctl} status                # mode server-unreachable: cash still sells\n"
        f"  {ctl} call scan.submit code=$CODE   # the guest's ticket, captured while offline\n"
        f"  {ctl} demo server up\n"
        f"  {ctl} sync --wait           # everything delivered exactly once\n"
        f"  {ctl} scans\n"
        f"  {ctl} watch                 # live events\n"
        f"  {ctl} logs -f               # the daemon's log\n"
        f"{scanning}; receipts land in {state_dir / 'receipts'}/ as text,\n"
        "one file per receipt number.\n"
        f"  {ctl} devices\n"
        f"  {ctl} demo printer down     # pull its cable; or paper-out, cover-open, up\n"
        f"  {ctl} printer test\n"
        f"Cards (a {'nexo' if settings.devices.terminal.kind == 'nexo' else 'ZVT'} terminal "
        "simulator; the internet switch takes it offline too):\n"
        f"  SALE=$({ctl} call sale.open --get sale_id); "
        f"{ctl} call sale.add sale_id=$SALE plu=300\n"
        f"  {ctl} call sale.pay sale_id=$SALE method=card amount:=3500\n"
        f"  {ctl} demo internet down    # Visa still works, offline, up to 3 payments\n"
        f"  {ctl} demo card maestro     # refused offline: card-brand-online-only\n"
        f"  SALE=$({ctl} call sale.open --get sale_id); "
        f"{ctl} call sale.add sale_id=$SALE plu=300 quantity:=20\n"
        f"  {ctl} call sale.pay sale_id=$SALE method=card amount:=70000\n"
        "      # 700 kr is over the demo's 500 kr offline cap: offline-card-amount-limit\n"
        f"  {ctl} terminal              # the offline budget\n"
        f"  {ctl} demo card visa; {ctl} demo internet up   # the terminal is flushed\n"
        "The control unit (kontrollenhet; every receipt prints its control code):\n"
        f"  {ctl} demo controlunit down  # sales and refunds refused: control-unit-unavailable\n"
        f"  {ctl} demo controlunit up    # sales resume; receipts waiting for a code print\n"
        f"  {ctl} demo controlunit full  # its memory is full: no receipts (or: warning)\n"
        "Over D-Bus (the private bus above):\n"
        f"  busctl --address={settings.api.dbus} introspect {names.BUS_NAME} {names.OBJECT_PATH}\n"
        f"  busctl --address={settings.api.dbus} call {names.BUS_NAME} {names.OBJECT_PATH} "
        f"{names.INTERFACE} {names.method_name('status.get')}\n",
        flush=True,
    )


def run_demo(state_dir: Path, terminal_protocol: str = "zvt") -> int:
    # Like the installed unit (UMask=0077, StateDirectoryMode=0700): the
    # journal, the catalog, the token and everything the simulators write are
    # the demo user's alone, whatever umask the shell that started it had.
    os.umask(0o077)
    state_dir = state_dir.resolve()
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    state_dir.chmod(0o700)  # a folder left by an earlier demo, or made by hand
    log_also_to(state_dir / DEMO_LOG)  # tillctl logs reads it beside the socket
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_stack(state_dir, terminal_protocol))
    return 0
