"""The ZVT terminal simulator as a real subprocess, with its control channel."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from sims import Announcing


class TerminalSim(Announcing):
    def __init__(self, base: Path, listen: str = "127.0.0.1:0", password: str = "000000") -> None:
        argv = ["-m", "drivers.sim.terminal", "--listen", listen, "--pty", "--password", password]
        super().__init__(argv, base / "terminal-sim.log", ("listening", "pty", "control"))
        self.address = self.announced["listening"]
        self.pty = self.announced["pty"]
        host, _, port = self.announced["control"].rpartition(":")
        self._control = socket.create_connection((host, int(port)), timeout=10)
        self._replies = self._control.makefile("rb")

    def control(self, op: str, **settings: Any) -> dict[str, Any]:
        self._control.sendall(json.dumps({"op": op, **settings}).encode() + b"\n")
        answer = json.loads(self._replies.readline())
        assert answer["ok"], answer
        return answer

    def set(self, **settings: Any) -> dict[str, Any]:
        return self.control("set", **settings)

    def state(self) -> dict[str, Any]:
        return self.control("state")

    def stop(self) -> None:
        self._replies.close()
        self._control.close()
        super().stop()
