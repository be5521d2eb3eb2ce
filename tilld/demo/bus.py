"""A private system-type D-Bus bus for the demo and the tests, enforcing the shipped policy.

The bus configuration is the system bus's default policy (as Debian's
/usr/share/dbus-1/system.conf has it: nobody owns names or sends method
calls unless a service's file allows it) plus an <include> of
systemd/org.tilld.Till1.conf itself, so what the demo and the tests enforce
is the file a till installs. Only the address differs: a socket in the state
folder instead of /run/dbus/system_bus_socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import subprocess
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from ..errors import StartupError
from .processes import stop_process

SHIPPED_POLICY = Path(__file__).resolve().parents[2] / "systemd" / "org.tilld.Till1.conf"
START_TIMEOUT_S = 10

# The system bus's default context, copied from dbus 1.14's system.conf.
DEFAULT_POLICY = """
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Properties"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"
          send_member="UpdateActivationEnvironment"/>
  </policy>
"""


def bus_config(socket_path: Path, policy: Path | None = SHIPPED_POLICY, demo_user: str = "") -> str:
    """A system-type bus listening on ``socket_path`` with ``policy`` included.

    With ``policy`` None the bus has only the defaults: nobody may own or
    call org.tilld.Till1 (the tests show the daemon still sells then).

    ``demo_user`` (the demo as a non-root user only) may also own and call
    the name, as user tilld may on a till; tests never set it.
    """
    include = f"  <include>{escape(str(policy))}</include>\n" if policy else ""
    extra = ""
    if demo_user:
        user = quoteattr(demo_user)
        extra = (
            f'  <policy user={user}>\n    <allow own="org.tilld.Till1"/>\n'
            f'    <allow send_destination="org.tilld.Till1"/>\n  </policy>\n'
        )
    return (
        '<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"\n'
        ' "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">\n'
        "<busconfig>\n"
        "  <type>system</type>\n"
        f"  <listen>unix:path={escape(str(socket_path))}</listen>\n"
        "  <auth>EXTERNAL</auth>\n"
        f"{DEFAULT_POLICY}"
        f"{include}"
        f"{extra}"
        "</busconfig>\n"
    )


def dbus_daemon() -> str:
    found = shutil.which("dbus-daemon")
    if found is None:
        raise StartupError(
            "dbus-daemon is not installed; install the dbus package (make system-deps does)"
        )
    return found


class PrivateBus:
    """dbus-daemon as a child process with the demo's bus configuration."""

    def __init__(self, state_dir: Path) -> None:
        self.config_path = state_dir / "dbus.conf"
        self.socket_path = state_dir / "dbus.sock"
        self.log_path = state_dir / "dbus.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.address = ""

    async def start(self) -> str:
        if not SHIPPED_POLICY.exists():
            raise StartupError(
                f"the D-Bus policy {SHIPPED_POLICY} is missing; run the demo from a source tree"
            )
        uid = os.geteuid()
        demo_user = "" if uid == 0 else pwd.getpwuid(uid).pw_name
        self.config_path.write_text(
            bus_config(self.socket_path, SHIPPED_POLICY, demo_user), encoding="utf-8"
        )
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()  # left by a demo that was killed
        with open(self.log_path, "ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                dbus_daemon(),
                f"--config-file={self.config_path}",
                "--nofork",
                "--print-address=1",
                stdout=subprocess.PIPE,
                stderr=log,
            )
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                line = await self.proc.stdout.readline()
        except TimeoutError:
            line = b""
        self.address = line.decode().strip()
        if not self.address:
            await self.stop()
            raise StartupError(f"the demo's dbus-daemon did not start; see {self.log_path}")
        return self.address

    async def stop(self) -> None:
        await stop_process(self.proc)
        # dbus-daemon leaves its socket behind; the next demo would find a dead one.
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
