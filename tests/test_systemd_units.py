"""The unit as systemd itself reads it: `systemd-analyze verify` and `security`.

`systemd-analyze verify` insists that ExecStart's program exists. The unit
names /usr/bin/tilld, which only an installed till has, so the test checks a
copy whose ExecStart points at the tilld of the environment running the
tests; every other line is the file as shipped. (tests/test_install.py
verifies the unit `make install` writes, the same way.)
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from tilld.config import load_settings

UNIT = REPO / "systemd" / "tilld.service"
MAX_EXPOSURE = 2.0

analyze = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(analyze is None, reason="systemd-analyze is not installed")


def verify(unit_text: str, executable: Path, workdir: Path) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify` on ``unit_text`` with ExecStart's program replaced."""
    assert executable.exists(), executable
    copy = workdir / "tilld.service"
    copy.write_text(unit_text.replace("ExecStart=/usr/bin/tilld ", f"ExecStart={executable} "))
    assert str(executable) in copy.read_text()
    return subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60, cwd=workdir
    )


@needs_analyze
def test_systemd_analyze_verify_finds_nothing_wrong_with_the_unit(tmp_path):
    result = verify(UNIT.read_text(), Path(sys.executable).with_name("tilld"), tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result


@needs_analyze
def test_systemd_analyze_verify_catches_a_misspelt_setting(tmp_path):
    # verify exits 0 on a setting it cannot parse and only says so on stderr;
    # that is why the test above insists on empty output, not only on 0.
    broken = UNIT.read_text().replace("ProtectSystem=strict", "ProtectSystem=sctrict")
    result = verify(broken, Path(sys.executable).with_name("tilld"), tmp_path)
    assert "sctrict" in result.stderr, result


@needs_analyze
def test_security_exposure_is_at_most_2(record_property):
    result = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = re.search(r"Overall exposure level for tilld\.service: (\d+\.\d+)", result.stdout)
    assert found, result.stdout + result.stderr
    exposure = float(found.group(1))
    record_property("exposure", exposure)
    print(f"systemd-analyze security exposure: {exposure}")
    assert exposure <= MAX_EXPOSURE, result.stdout


def unit_settings() -> list[tuple[str, str]]:
    pairs = []
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            pairs.append((key, value))
    return pairs


def test_the_unit_is_a_notify_service_with_watchdog_reload_and_no_capabilities():
    settings = unit_settings()
    single = dict(settings)
    assert single["Type"] == "notify" and single["NotifyAccess"] == "main"
    assert single["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert single["WatchdogSec"] and single["TimeoutStopSec"]
    assert single["Restart"] == "on-failure" and single["RestartPreventExitStatus"] == "78"
    assert single["User"] == "tilld" and single["Group"] == "tilld"
    assert single["StateDirectory"] == "tilld" and single["RuntimeDirectory"] == "tilld"
    assert single["CapabilityBoundingSet"] == "" and single["AmbientCapabilities"] == ""
    assert single["DevicePolicy"] == "closed" and single["UMask"] == "0077"
    assert "PrivateUsers" not in single  # device groups need real gids
    allowed = {value.split()[0] for key, value in settings if key == "DeviceAllow"}
    assert {"char-ttyS", "char-ttyUSB", "char-ttyACM", "char-usb_device", "char-input"} <= allowed
    # The socket path the unit's directories provide is the configured default.
    assert str(load_settings("/dev/null")[0].api.socket_path) == "/run/tilld/tilld.sock"


def syscalls_in(group: str) -> set[str]:
    """The system calls ``systemd-analyze syscall-filter`` lists for a name or a @group."""
    if not group.startswith("@"):
        return {group}
    listed = subprocess.run(
        [analyze, "syscall-filter", "--no-pager", group],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    names: set[str] = set()
    for line in listed.splitlines()[1:]:
        word = line.strip()
        if word and not word.startswith("#"):
            names |= syscalls_in(word)
    return names


def effective_syscall_filter() -> set[str]:
    """The unit's allowed system calls: its SystemCallFilter lines applied in order.

    The first line is an allow list; each later one adds (or, with ~, takes
    away) what it names, as systemd.exec(5) says of a mixed list."""
    allowed: set[str] = set()
    for key, value in unit_settings():
        if key != "SystemCallFilter":
            continue
        deny = value.startswith("~")
        named = set().union(*(syscalls_in(word) for word in value.lstrip("~").split()))
        allowed = allowed - named if deny else allowed | named
    return allowed


@needs_analyze
def test_the_batch_process_may_lower_its_priority_and_nothing_else_of_resources():
    allowed = effective_syscall_filter()
    # tilld/journal/batches.py's os.nice: getpriority, then setpriority.
    assert {"getpriority", "setpriority"} <= allowed
    assert not (syscalls_in("@resources") - {"setpriority"}) & allowed
    assert not syscalls_in("@privileged") & allowed


def test_the_example_configuration_is_valid():
    settings, _ = load_settings(str(REPO / "systemd" / "tilld.toml.example"))
    assert settings.paths.state_dir == Path("/var/lib/tilld")  # StateDirectory=tilld
    assert settings.api.socket_path == Path("/run/tilld/tilld.sock")  # RuntimeDirectory=tilld
