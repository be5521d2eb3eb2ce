"""Configuration (CONTRACT.md, "Configuration keys" and "Daemon: tilld").

One schema read from TOML, overridden by TILLD_<SECTION>__<KEY>; `tilld config
check` prints the effective configuration with secrets masked, or exits 1
naming each bad key.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

from tilld import config as config_module
from tilld.config import Settings, effective_toml, load_settings
from tilld.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
SECRET = "271828"  # a ZVT password is six digits; this one must never be printed


@pytest.fixture(autouse=True)
def no_tilld_environment(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("TILLD_"):
            monkeypatch.delenv(name)
    # Never read the machine's real /etc/tilld/tilld.toml.
    monkeypatch.setattr(config_module, "DEFAULT_CONFIG_PATH", tmp_path / "absent" / "tilld.toml")


def write(tmp_path: Path, text: str, name: str = "tilld.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


GOOD = f"""
[till]
id = "kassa-2"
seller_name = "Konserthuset"

[backend]
url = "http://127.0.0.1:8080/api"
timeout_s = 3

[card]
offline_limit = 40
offline_brands = ["Visa"]

[devices.terminal]
password = "{SECRET}"
"""


def problems_of(path: str | None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    return caught.value.problems


def has_problem(problems: list[str], key: str) -> bool:
    return any(p.startswith(f"{key}:") for p in problems)


# -- loading -----------------------------------------------------------------


def test_load_settings_reads_the_toml_file(tmp_path):
    path = write(tmp_path, GOOD)
    settings, used = load_settings(str(path))
    assert used == path
    assert settings.till.id == "kassa-2"
    assert settings.backend.url == "http://127.0.0.1:8080/api"
    assert settings.backend.timeout_s == 3
    assert settings.card.offline_limit == 40
    assert settings.devices.terminal.password.get_secret_value() == SECRET


def test_keys_absent_from_the_file_keep_their_defaults(tmp_path):
    settings, _ = load_settings(str(write(tmp_path, GOOD)))
    assert settings.api.socket_path == Path("/run/tilld/tilld.sock")
    assert settings.paths.state_dir == Path("/var/lib/tilld")
    assert settings.sync.batch_size == 1000


def test_offline_brands_are_compared_in_lower_case(tmp_path):
    settings, _ = load_settings(str(write(tmp_path, GOOD)))
    assert settings.card.offline_brands == ["visa"]


def test_a_missing_default_file_means_the_contracts_defaults():
    settings, used = load_settings(None)
    assert used is None
    assert settings.till.id == "till-1"
    assert settings.paths.state_dir == Path("/var/lib/tilld")
    assert settings.api.socket_path == Path("/run/tilld/tilld.sock")
    assert settings.api.dbus == "system"
    assert settings.catalog.file == ""
    assert settings.backend.url == "" and settings.backend.token_file == ""
    assert settings.backend.timeout_s == 5
    assert settings.connectivity.internet_probes == []
    assert settings.connectivity.probe_interval_s == 0.5
    assert settings.connectivity.probe_timeout_s == 1.3
    assert settings.connectivity.backoff_cap_s == 10
    assert settings.sync.batch_size == 1000
    assert settings.card.offline_limit == 250
    assert settings.card.offline_brands == ["visa", "mastercard"]
    assert settings.devices.scanner.kind == "none"
    assert settings.devices.printer.kind == "none"
    assert settings.devices.terminal.kind == "none"
    assert settings.devices.terminal.password.get_secret_value() == "000000"


def test_a_missing_named_file_is_a_config_error(tmp_path):
    problems = problems_of(str(tmp_path / "nope.toml"))
    assert len(problems) == 1
    assert "nope.toml" in problems[0]


def test_a_missing_file_named_by_tilld_config_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TILLD_CONFIG", str(tmp_path / "nope.toml"))
    assert "nope.toml" in problems_of(None)[0]


def test_tilld_config_names_the_file_when_no_option_is_given(tmp_path, monkeypatch):
    monkeypatch.setenv("TILLD_CONFIG", str(write(tmp_path, GOOD)))
    settings, _ = load_settings(None)
    assert settings.till.id == "kassa-2"


def test_an_explicit_file_wins_over_tilld_config(tmp_path, monkeypatch):
    monkeypatch.setenv("TILLD_CONFIG", str(write(tmp_path, GOOD)))
    other = write(tmp_path, '[till]\nid = "kassa-9"\n', "other.toml")
    settings, _ = load_settings(str(other))
    assert settings.till.id == "kassa-9"


def test_a_file_that_is_not_toml_is_a_config_error_naming_the_file(tmp_path):
    problems = problems_of(str(write(tmp_path, "[card\noffline_limit = ", "broken.toml")))
    assert len(problems) == 1 and "broken.toml" in problems[0]


# -- environment overrides ---------------------------------------------------


def test_an_env_variable_overrides_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TILLD_CARD__OFFLINE_LIMIT", "7")
    settings, _ = load_settings(str(write(tmp_path, GOOD)))
    assert settings.card.offline_limit == 7


def test_an_env_override_keeps_the_files_other_keys_in_that_section(tmp_path, monkeypatch):
    monkeypatch.setenv("TILLD_CARD__OFFLINE_LIMIT", "7")
    settings, _ = load_settings(str(write(tmp_path, GOOD)))
    assert settings.card.offline_brands == ["visa"]


def test_an_env_override_reaches_a_nested_device_section(tmp_path, monkeypatch):
    monkeypatch.setenv("TILLD_DEVICES__TERMINAL__ADDRESS", "10.0.0.5:20007")
    settings, _ = load_settings(str(write(tmp_path, GOOD)))
    assert settings.devices.terminal.address == "10.0.0.5:20007"
    assert settings.devices.terminal.password.get_secret_value() == SECRET


def test_the_socket_path_env_variable_of_the_contract_works(monkeypatch):
    monkeypatch.setenv("TILLD_API__SOCKET_PATH", "/tmp/x/tilld.sock")
    settings, _ = load_settings(None)
    assert settings.api.socket_path == Path("/tmp/x/tilld.sock")


def test_an_env_list_override_is_json(monkeypatch):
    monkeypatch.setenv("TILLD_CARD__OFFLINE_BRANDS", '["Amex"]')
    settings, _ = load_settings(None)
    assert settings.card.offline_brands == ["amex"]


def test_a_bad_env_value_is_reported_by_its_key(monkeypatch):
    monkeypatch.setenv("TILLD_CARD__OFFLINE_LIMIT", "lots")
    assert has_problem(problems_of(None), "card.offline_limit")


# -- bad keys and values -------------------------------------------------------


def test_an_unknown_key_is_reported_by_its_key(tmp_path):
    problems = problems_of(str(write(tmp_path, "[card]\noffline_limt = 5\n")))
    assert has_problem(problems, "card.offline_limt")


def test_an_unknown_section_is_reported_by_its_name(tmp_path):
    problems = problems_of(str(write(tmp_path, "[cards]\noffline_limit = 5\n")))
    assert has_problem(problems, "cards")


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[card]\noffline_limit = -1\n", "card.offline_limit"),
        ("[card]\noffline_limit = 2.5\n", "card.offline_limit"),
        ("[backend]\ntimeout_s = 0\n", "backend.timeout_s"),
        (
            '[connectivity]\ninternet_probes = ["ftp://example.net/"]\n',
            "connectivity.internet_probes",
        ),
        ('[connectivity]\ninternet_probes = ["tcp://192.0.2.1"]\n', "connectivity.internet_probes"),
        ("[sync]\nbatch_size = 0\n", "sync.batch_size"),
        ('[payments]\nenabled = ["cash", "bitcoin"]\n', "payments.enabled"),
        ('[till]\nid = "till 1"\n', "till.id"),
        ('[till]\nid = ""\n', "till.id"),
        ('[log]\nlevel = "loud"\n', "log.level"),
        ('[devices.printer]\nkind = "laser"\n', "devices.printer.kind"),
    ],
)
def test_a_bad_value_is_reported_by_its_key(tmp_path, toml, key):
    assert has_problem(problems_of(str(write(tmp_path, toml))), key)


def test_every_bad_key_in_a_file_is_reported_at_once(tmp_path):
    text = """
[till]
id = "till 1"
[backend]
timeout_s = -3
[card]
offline_limt = 5
[payments]
enabled = ["bitcoin"]
"""
    problems = problems_of(str(write(tmp_path, text)))
    for key in ("till.id", "backend.timeout_s", "card.offline_limt", "payments.enabled"):
        assert has_problem(problems, key), (key, problems)


def test_probe_targets_of_the_contracts_forms_are_accepted(tmp_path):
    text = '[connectivity]\ninternet_probes = ["tcp://192.0.2.1:443", "https://example.net/"]\n'
    settings, _ = load_settings(str(write(tmp_path, text)))
    assert settings.connectivity.internet_probes == ["tcp://192.0.2.1:443", "https://example.net/"]


# -- effective TOML --------------------------------------------------------------


def test_effective_toml_parses_back_to_the_same_values(tmp_path):
    settings, _ = load_settings(str(write(tmp_path, GOOD)))
    parsed = tomllib.loads(effective_toml(settings))
    assert parsed["till"]["id"] == "kassa-2"
    card = {k: parsed["card"][k] for k in ("offline_limit", "offline_brands")}
    assert card == {"offline_limit": 40, "offline_brands": ["visa"]}
    assert parsed["card"]["offline_max_amount"] == settings.card.offline_max_amount
    assert parsed["backend"]["timeout_s"] == 3
    assert parsed["devices"]["terminal"]["kind"] == "none"


def test_effective_toml_masks_the_terminal_password(tmp_path):
    settings, _ = load_settings(str(write(tmp_path, GOOD)))
    text = effective_toml(settings)
    assert SECRET not in text
    assert tomllib.loads(text)["devices"]["terminal"]["password"] == "********"


def test_effective_toml_of_the_defaults_is_itself_a_valid_configuration(tmp_path):
    settings, _ = load_settings(None)
    text = effective_toml(settings).replace('"********"', '"000000"')
    reloaded, _ = load_settings(str(write(tmp_path, text, "echo.toml")))
    assert reloaded == settings


def test_effective_toml_round_trips_text_with_quotes_backslashes_and_tabs(tmp_path):
    text = '[till]\nseller_name = "A \\"B\\" C\\\\D\\tE"\n'
    settings, _ = load_settings(str(write(tmp_path, text)))
    assert settings.till.seller_name == 'A "B" C\\D\tE'
    assert tomllib.loads(effective_toml(settings))["till"]["seller_name"] == 'A "B" C\\D\tE'


def test_effective_toml_round_trips_a_two_line_receipt_address(tmp_path):
    # A receipt address is naturally written on two lines; the printed TOML must still parse.
    text = '[till]\naddress = "Storgatan 1\\n123 45 Stockholm"\n'
    settings, _ = load_settings(str(write(tmp_path, text)))
    parsed = tomllib.loads(effective_toml(settings))
    assert parsed["till"]["address"] == "Storgatan 1\n123 45 Stockholm"


# -- tilld config check (a real process) -------------------------------------------


def run_check(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TILLD_")}
    return subprocess.run(
        [sys.executable, "-m", "tilld.cli.daemon", "config", "check", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_config_check_exits_0_and_prints_the_effective_toml(tmp_path):
    result = run_check("--config", str(write(tmp_path, GOOD)))
    assert result.returncode == 0, result.stderr
    parsed = tomllib.loads(result.stdout)
    assert parsed["till"]["id"] == "kassa-2"
    assert parsed["card"]["offline_limit"] == 40
    assert parsed["api"]["socket_path"] == "/run/tilld/tilld.sock"


def test_config_check_masks_the_terminal_password(tmp_path):
    result = run_check("--config", str(write(tmp_path, GOOD)))
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert tomllib.loads(result.stdout)["devices"]["terminal"]["password"] == "********"


def test_config_check_exits_1_naming_each_bad_key_on_stderr(tmp_path):
    text = f"""
[card]
offline_limit = -5
offline_limt = 5
[backend]
timeout_s = 0
[devices.terminal]
password = "{SECRET}"
"""
    result = run_check("--config", str(write(tmp_path, text)))
    assert result.returncode == 1
    for key in ("card.offline_limit", "card.offline_limt", "backend.timeout_s"):
        assert key in result.stderr, (key, result.stderr)
    assert SECRET not in result.stdout + result.stderr


def test_config_check_exits_1_for_a_missing_named_file(tmp_path):
    result = run_check("--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 1
    assert "nope.toml" in result.stderr


def test_config_check_never_echoes_a_malformed_terminal_password(tmp_path):
    # A numeric ZVT password written without quotes is a bad value, but still a secret.
    result = run_check(
        "--config", str(write(tmp_path, "[devices.terminal]\npassword = 48213957\n"))
    )
    assert result.returncode == 1
    assert "devices.terminal.password" in result.stderr
    assert "48213957" not in result.stdout + result.stderr


@pytest.mark.skipif(
    config_module.DEFAULT_CONFIG_PATH.exists(), reason="this machine has a real default config"
)
def test_config_check_without_any_file_prints_the_built_in_defaults():
    result = run_check()
    assert result.returncode == 0, result.stderr
    parsed = tomllib.loads(result.stdout)
    assert parsed["till"]["id"] == "till-1"
    assert parsed["card"] == {
        "offline_limit": 250,
        "offline_brands": ["visa", "mastercard"],
        "offline_max_amount": 200_000,
        "offline_max_total": 5_000_000,
        "offline_max_age_h": 72.0,
        "offline_age_warning": 0.75,
    }
    assert parsed["devices"]["terminal"]["password"] == "********"
    # The default password as a TOML string: an amount like 5000000 is no leak.
    assert '"000000"' not in result.stdout


def test_config_check_accepts_the_option_before_the_subcommand(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TILLD_")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tilld.cli.daemon",
            "--config",
            str(write(tmp_path, GOOD)),
            "config",
            "check",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert tomllib.loads(result.stdout)["till"]["id"] == "kassa-2"


def test_api_dbus_takes_a_bus_kind_or_an_address(tmp_path):
    for value in ("system", "session", "none", "unix:path=/run/tilld/bus.sock"):
        settings, _ = load_settings(str(write(tmp_path, f'[api]\ndbus = "{value}"\n')))
        assert settings.api.dbus == value
    problems = problems_of(str(write(tmp_path, '[api]\ndbus = "sytem"\n')))
    assert has_problem(problems, "api.dbus") and "bus address" in problems[0]


@pytest.mark.parametrize(
    ("section", "values", "words"),
    [
        ("terminal", {"password": "hunter2"}, "six-digit ZVT password"),
        ("terminal", {"kind": "zvt-tcp"}, "needs address"),
        ("printer", {"kind": "network", "address": "printer.local"}, "not host:port"),
        ("scanner", {"kind": "serial"}, "needs port"),
    ],
)
def test_a_device_without_what_it_needs_is_a_config_error(section, values, words):
    with pytest.raises(ValidationError) as error:
        Settings(devices={section: values})
    assert words in str(error.value)


# -- backend.url: the token goes over https, or stays on this machine ----------------


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://x", "is not an http(s) address"),
        ("http://192.0.2.10", "plain http to another machine"),
        ("https://", "names no host"),
    ],
)
def test_config_check_refuses_a_backend_url_that_would_expose_the_token(tmp_path, url, words):
    result = run_check("--config", str(write(tmp_path, f'[backend]\nurl = "{url}"\n')))
    assert result.returncode == 1, result.stdout
    assert f"backend.url {url!r}" in result.stderr and words in result.stderr, result.stderr


def test_config_check_says_how_to_allow_plain_http_on_purpose(tmp_path):
    result = run_check("--config", str(write(tmp_path, '[backend]\nurl = "http://192.0.2.10"\n')))
    assert "backend.allow_insecure_http = true" in result.stderr


@pytest.mark.parametrize(
    "url",
    [
        "https://tickets.example/api",
        "http://127.0.0.1:8080/api",
        "http://127.8.9.10/api",
        "http://[::1]:8080",
        "http://localhost:8080",
        "",
    ],
)
def test_https_and_plain_http_to_this_machine_are_accepted(url):
    assert Settings(backend={"url": url}).backend.url == url


def test_allow_insecure_http_accepts_plain_http_to_another_machine():
    settings = Settings(backend={"url": "http://192.0.2.10/api", "allow_insecure_http": True})
    assert settings.backend.allow_insecure_http is True


def test_allow_insecure_http_does_not_allow_other_schemes():
    with pytest.raises(ValidationError, match="not an http"):
        Settings(backend={"url": "ftp://192.0.2.10/", "allow_insecure_http": True})


def test_a_nexo_terminal_needs_its_address_and_both_ids() -> None:
    terminal = Settings(
        devices={
            "terminal": {
                "kind": "nexo",
                "address": "10.0.0.6:11000",
                "sale_id": "till-1",
                "poi_id": "AJACQH28",
            }
        }
    ).devices.terminal
    assert (terminal.kind, terminal.sale_id, terminal.poi_id) == ("nexo", "till-1", "AJACQH28")
    for missing, hint in (
        ({"address": "10.0.0.6"}, "host:port"),
        ({"sale_id": ""}, "sale_id"),
        ({"poi_id": ""}, "poi_id"),
    ):
        section = {
            "kind": "nexo",
            "address": "10.0.0.6:11000",
            "sale_id": "till-1",
            "poi_id": "AJACQH28",
            **missing,
        }
        with pytest.raises(ValidationError, match=hint):
            Settings(devices={"terminal": section})
