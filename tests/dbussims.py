"""A private dbus-daemon enforcing the shipped policy, and a blocking D-Bus client for tests."""

from __future__ import annotations

import asyncio
import grp
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from conftest import REPO
from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from tilld.api import dbus_names as names
from tilld.api.dbus_types import unwrap
from tilld.demo.bus import bus_config

SHIPPED_POLICY = REPO / "systemd" / "org.tilld.Till1.conf"
ROLE_GROUPS = ("tilld-cashier", "tilld-tech")


class Bus:
    """dbus-daemon as a system-type bus on a socket of its own; the policy is included as is."""

    def __init__(self, base: Path, policy: Path | None = SHIPPED_POLICY) -> None:
        self.socket_path = base / "bus.sock"
        config = bus_config(self.socket_path, policy)
        self.config_path = base / "bus.conf"
        self.config_path.write_text(config, encoding="utf-8")
        self.log_path = base / "bus.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            ["dbus-daemon", f"--config-file={self.config_path}", "--nofork", "--print-address=1"],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self.address = self.proc.stdout.readline().strip()
        assert self.address, f"dbus-daemon did not start: {self.log_path.read_text()}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self._log.close()


class DBusCallError(Exception):
    def __init__(self, name: str, text: str) -> None:
        super().__init__(f"{name}: {text}")
        self.name = name
        self.text = text
        self.reason = names.reason_of(name)


class Client:
    """dbus-fast on an event loop thread of its own, so tests read top to bottom."""

    def __init__(self, address: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.signals: queue.Queue[tuple[str, list[Any]]] = queue.Queue()
        self._seen: list[tuple[str, list[Any]]] = []
        self.bus: MessageBus = self._run(self._connect(address))

    def _run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _connect(self, address: str) -> MessageBus:
        bus = await MessageBus(bus_address=address).connect()
        bus.add_message_handler(self._on_message)
        match = f"type='signal',sender='{names.BUS_NAME}',path='{names.OBJECT_PATH}'"
        await bus.call(
            Message(
                destination=names.DBUS_NAME,
                path=names.DBUS_PATH,
                interface=names.DBUS_INTERFACE,
                member="AddMatch",
                signature="s",
                body=[match],
            )
        )
        return bus

    def _on_message(self, msg: Message) -> bool:
        if msg.message_type is MessageType.SIGNAL and msg.path == names.OBJECT_PATH:
            self.signals.put((msg.member, unwrap(msg.body)))
        return False

    def raw_call(
        self,
        member: str,
        signature: str = "",
        body: list[Any] | None = None,
        interface: str = names.INTERFACE,
    ) -> Message:
        msg = Message(
            destination=names.BUS_NAME,
            path=names.OBJECT_PATH,
            interface=interface,
            member=member,
            signature=signature,
            body=body or [],
        )
        reply = self._run(self.bus.call(msg))
        if reply.message_type is MessageType.ERROR:
            raise DBusCallError(reply.error_name, reply.body[0] if reply.body else "")
        return reply

    def call(self, member: str, signature: str = "", *args: Any) -> dict[str, Any]:
        """A method of org.tilld.Till1.Till; plain Python values back."""
        return unwrap(self.raw_call(member, signature, list(args)).body[0])

    def properties(self) -> dict[str, Any]:
        reply = self.raw_call("GetAll", "s", [names.INTERFACE], names.PROPERTIES_INTERFACE)
        return unwrap(reply.body[0])

    def introspect(self) -> str:
        reply = self.raw_call("Introspect", interface=names.INTROSPECTABLE_INTERFACE)
        return reply.body[0]

    def forget_signals(self) -> dict[str, Any]:
        """Drop every signal tilld sent so far; answers its properties as of now.

        The bus keeps one sender's messages in order, so once the reply to a
        call arrives, every signal the till emitted before it is queued here.
        """
        now = self.properties()
        while True:
            try:
                self.signals.get_nowait()
            except queue.Empty:
                break
        self._seen.clear()
        return now

    def wait_signal(self, member: str, match=lambda body: True, timeout: float = 20) -> list[Any]:
        """The first signal not yet taken called ``member`` whose body matches.

        Signals that do not match stay for later waits: the order two
        different signals arrive in is not part of the contract.
        """
        deadline = time.monotonic() + timeout
        while True:
            for index, (got, body) in enumerate(self._seen):
                if got == member and match(body):
                    del self._seen[index]
                    return body
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {member} signal within {timeout} s: {self._seen}")
            try:
                self._seen.append(self.signals.get(timeout=left))
            except queue.Empty:
                continue

    def wait_property(self, name: str, value: Any, timeout: float = 20) -> None:
        """A PropertiesChanged signal that sets ``name`` to ``value``."""
        self.wait_signal(
            "PropertiesChanged",
            lambda body: body[0] == names.INTERFACE and body[1].get(name) == value,
            timeout,
        )

    def close(self) -> None:
        self.bus.disconnect()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def options(**values: Any) -> dict[str, Variant]:
    kinds = {bool: "b", int: "x", str: "s"}
    return {k: Variant(kinds[type(v)], v) for k, v in values.items()}


def wait_for_name(client: Client, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        reply = client._run(
            client.bus.call(
                Message(
                    destination=names.DBUS_NAME,
                    path=names.DBUS_PATH,
                    interface=names.DBUS_INTERFACE,
                    member="NameHasOwner",
                    signature="s",
                    body=[names.BUS_NAME],
                )
            )
        )
        if reply.body[0]:
            return
        assert time.monotonic() < deadline, f"nobody took {names.BUS_NAME}"
        time.sleep(0.02)


def ensure_role_groups() -> list[str]:
    """The policy names tilld-cashier and tilld-tech; dbus-daemon ignores unknown groups.

    Creates them (as the sysusers file on a till would) when missing and
    returns the ones it created, for removal afterwards.
    """
    created = []
    for name in ROLE_GROUPS:
        try:
            grp.getgrnam(name)
        except KeyError:
            groupadd = shutil.which("groupadd")
            assert groupadd, "groupadd is needed to create the role groups"
            subprocess.run([groupadd, "--system", name], check=True, timeout=30)
            created.append(name)
    return created


def remove_groups(created: list[str]) -> None:
    groupdel = shutil.which("groupdel")
    for name in created:
        if groupdel:
            subprocess.run([groupdel, name], check=False, timeout=30)
