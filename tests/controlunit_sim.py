"""`tilld sim controlunit` as a real subprocess, driven through its HTTP control API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sims import Announcing, get_json, post_json

UNIT_ID = "TILLDSIM00000042"


class ControlUnitSim(Announcing):
    def __init__(self, base: Path, *, protocol: int = 2, via_cli: bool = False) -> None:
        self.link = base / "controlunit"
        # via_cli: the way a technician starts it, `tilld sim controlunit`.
        program = (
            ["-m", "tilld.cli.daemon", "sim", "controlunit"]
            if via_cli
            else ["-m", "drivers.sim.controlunit"]
        )
        argv = [
            *program,
            "--link",
            str(self.link),
            "--protocol",
            str(protocol),
            "--unit-id",
            UNIT_ID,
        ]
        super().__init__(argv, base / "controlunit-sim.log", ("pty", "control"))
        self.control = self.announced["control"]
        self.unit_id = UNIT_ID

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return post_json(self.control, path, body)

    def state(self) -> dict[str, Any]:
        return get_json(self.control, "/state")

    def registrations(self) -> list[dict[str, Any]]:
        return get_json(self.control, "/registrations")["registrations"]

    def verify(self, control_code: str) -> dict[str, Any]:
        return self.post("/verify", {"control_code": control_code})

    def unplug(self) -> Any:
        return self.post("/unplug")

    def plug(self) -> Any:
        return self.post("/plug")

    def silent(self, on: bool) -> Any:
        return self.post("/silent", {"on": on})

    def delay(self, seconds: float) -> Any:
        return self.post("/delay", {"seconds": seconds})

    def nak(self, code: str, times: int = 1, scope: str = "register") -> Any:
        return self.post("/nak", {"code": code, "times": times, "scope": scope})

    def storage(self, state: str) -> Any:
        return self.post("/storage", {"state": state})

    def lose_answer(self, times: int = 1) -> Any:
        return self.post("/lose-answer", {"times": times})

    def main_status(self, status: str | None) -> Any:
        return self.post("/main-status", {"status": status})

    def reset(self) -> Any:
        return self.post("/reset")
