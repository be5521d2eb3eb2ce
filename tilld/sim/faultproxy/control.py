"""The proxy's control API on drivers/sim/control.py: GET/POST /mode, GET /stats."""

from __future__ import annotations

import json
import logging
from typing import Any

from drivers.sim.control import ControlServer, error

from .modes import InvalidMode
from .proxy import FaultProxy

log = logging.getLogger("tilld.sim.faultproxy")


class ControlApi:
    """The proxy's control API (see the module doc); it translates, the proxy decides.

    Served by drivers.sim.control like the device simulators' control ports;
    every answer is JSON with ``Connection: close``, errors as
    ``{"error": code, "message": ...}``.
    """

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy

    def server(self) -> ControlServer:
        return ControlServer(
            {
                ("GET", "/mode"): self.get_mode,
                ("POST", "/mode"): self.post_mode,
                ("GET", "/stats"): self.get_stats,
            },
            hint="/mode or /stats",
        )

    async def get_mode(self, _body: bytes) -> tuple[int, Any]:
        return 200, self.proxy.mode.describe()

    async def get_stats(self, _body: bytes) -> tuple[int, Any]:
        return 200, self.proxy.stats()

    async def post_mode(self, raw: bytes) -> tuple[int, Any]:
        try:
            document = json.loads(raw)
        except ValueError:
            return error(400, "bad-request", "the body is not JSON")
        if not isinstance(document, dict) or "mode" not in document:
            return error(400, "bad-request", 'expected a JSON object like {"mode": "pass"}')
        name = document.pop("mode")
        try:
            mode = self.proxy.set_mode(name, **document)
        except InvalidMode as exc:
            return error(400, "invalid-mode", str(exc))
        except OSError as exc:
            log.error("cannot listen on port %d again: %s", self.proxy.port, exc)
            return error(503, "cannot-listen", f"cannot listen on port {self.proxy.port}: {exc}")
        return 200, mode.describe()
