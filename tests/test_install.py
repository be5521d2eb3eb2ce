"""`make install` and `make uninstall` into a DESTDIR: real files, compared as a list.

The install builds a real virtual environment with Debian's /usr/bin/python3
(or the one running the tests) and pip-installs tilld into it. Its
dependencies are left out here (PIP_INSTALL_FLAGS=--no-deps): fetching them
would add half a minute to every test run, and the file layout, relocation
and removal do not depend on them. systemd-sysusers and systemd-tmpfiles
then run against the same root, as a technician runs them on a till.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from test_systemd_units import analyze, verify

PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable

# Every path make install writes outside the venv (udev rules and the D-Bus
# policy come from other branches and are checked when present).
INSTALLED = {
    "etc/tilld/tilld.toml",
    "usr/bin/tilld",
    "usr/bin/tillctl",
    "usr/lib/systemd/system/tilld.service",
    "usr/lib/sysusers.d/tilld.conf",
    "usr/lib/tmpfiles.d/tilld.conf",
    "usr/share/man/man8/tilld.8",
    "usr/share/man/man1/tillctl.1",
    "usr/share/bash-completion/completions/tilld",
    "usr/share/zsh/vendor-completions/_tilld",
    "usr/share/bash-completion/completions/tillctl",
    "usr/share/zsh/vendor-completions/_tillctl",
}


def make(target: str, root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    return subprocess.run(
        ["make", "-s", target, f"DESTDIR={root}", f"INSTALL_PYTHON={PYTHON}", *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def files_under(root: Path, skip: str = "opt/tilld") -> set[str]:
    found = set()
    for path in root.rglob("*"):
        relative = path.relative_to(root).as_posix()
        if relative.startswith(skip + "/"):
            continue
        if path.is_file() or path.is_symlink():
            found.add(relative)
    return found


def expected_files() -> set[str]:
    expected = set(INSTALLED)
    expected |= {f"usr/lib/udev/rules.d/{p.name}" for p in (REPO / "udev").glob("*.rules")}
    if (REPO / "systemd" / "org.tilld.Till1.conf").exists():
        expected.add("usr/share/dbus-1/system.d/org.tilld.Till1.conf")
    return expected


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    root = tmp_path_factory.mktemp("destdir")
    result = make("install", root, "PIP_INSTALL_FLAGS=--no-deps")
    assert result.returncode == 0, result.stdout + result.stderr
    return root


def test_make_install_writes_exactly_the_expected_files(installed):
    assert files_under(installed) == expected_files()
    assert (installed / "usr/bin/tilld").readlink() == Path("/opt/tilld/bin/tilld")
    assert (installed / "usr/bin/tillctl").readlink() == Path("/opt/tilld/bin/tillctl")
    assert (installed / "opt/tilld/bin/tilld").exists()
    config = installed / "etc/tilld/tilld.toml"
    assert config.read_text() == (REPO / "systemd/tilld.toml.example").read_text()
    assert config.stat().st_mode & 0o777 == 0o640
    assert (installed / "usr/lib/systemd/system/tilld.service").read_text() == (
        REPO / "systemd/tilld.service"
    ).read_text()  # PREFIX=/usr changes nothing in it


def test_the_venv_runs_from_opt_tilld_with_no_trace_of_destdir(installed):
    venv = installed / "opt/tilld"
    shebang = (venv / "bin/tilld").read_text().splitlines()[0]
    assert shebang == "#!/opt/tilld/bin/python3"
    leaks = subprocess.run(
        ["grep", "-rlI", "--", str(installed), str(venv)], capture_output=True, text=True
    )
    assert leaks.stdout == "", f"files naming the DESTDIR: {leaks.stdout}"
    # Relocated venvs find their packages from their own location.
    probe = subprocess.run(
        [
            str(venv / "bin/python"),
            "-I",
            "-c",
            "import tilld, sys; print(tilld.__file__, sys.prefix)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.startswith(str(venv / "lib")), probe.stdout


@pytest.mark.skipif(analyze is None, reason="systemd-analyze is not installed")
def test_the_installed_unit_verifies(installed, tmp_path):
    unit = (installed / "usr/lib/systemd/system/tilld.service").read_text()
    result = verify(unit, installed / "opt/tilld/bin/tilld", tmp_path)
    assert result.returncode == 0 and result.stderr.strip() == "", result


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="no systemd-sysusers")
def test_sysusers_and_tmpfiles_set_up_the_installed_root(installed):
    subprocess.run(["systemd-sysusers", f"--root={installed}", "tilld.conf"], check=True)
    passwd = (installed / "etc/passwd").read_text()
    group = (installed / "etc/group").read_text()
    assert passwd.startswith("tilld:") and "/usr/sbin/nologin" in passwd, passwd
    names = {line.split(":")[0] for line in group.splitlines()}
    assert {"tilld", "tilld-cashier", "tilld-tech", "dialout", "lp", "plugdev", "input"} <= names
    subprocess.run(
        ["systemd-tmpfiles", f"--root={installed}", "--create", "tilld.conf"], check=True
    )
    uid = int(passwd.split(":")[2])
    state = (installed / "var/lib/tilld").stat()
    assert (state.st_uid, state.st_mode & 0o777) == (uid, 0o700)
    config = (installed / "etc/tilld/tilld.toml").stat()
    assert (config.st_uid, config.st_gid, config.st_mode & 0o777) == (0, uid, 0o640)


def test_install_keeps_an_existing_configuration_and_uninstall_leaves_it(installed):
    config = installed / "etc/tilld/tilld.toml"
    config.write_text('[till]\nid = "entrance-1"\n')
    again = make("install-files", installed)  # `install` without rebuilding the venv
    assert again.returncode == 0, again.stderr
    assert "kept /etc/tilld/tilld.toml" in again.stdout
    assert config.read_text() == '[till]\nid = "entrance-1"\n'

    state = installed / "var/lib/tilld"
    state.mkdir(parents=True, exist_ok=True)
    (state / "journal.sqlite").write_bytes(b"sales not yet synced")
    removed = make("uninstall", installed)
    assert removed.returncode == 0, removed.stderr
    assert "Kept on purpose" in removed.stdout
    assert not (installed / "opt/tilld").exists()
    left = files_under(installed, skip="var/lib/tilld")
    assert left & expected_files() == {"etc/tilld/tilld.toml"}, left
    assert config.read_text() == '[till]\nid = "entrance-1"\n'
    assert (state / "journal.sqlite").read_bytes() == b"sales not yet synced"
    assert os.path.isdir(installed / "usr/lib/systemd/system")  # shared directories stay
