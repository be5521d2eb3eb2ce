"""The proxy's control API on drivers/sim/control.py: GET/POST /mode, GET /stats."""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from .modes import InvalidMode
from .proxy import FaultProxy

log = logging.getLogger("tilld.sim.faultproxy")

MAX_CONTROL_BODY = 65536


class ControlApi:
    """The proxy's control API (see the module doc); it translates, the proxy decides.

    Served by drivers.sim.control like the device simulators' control ports;
    every answer is JSON with ``Connection: close``, errors as
    ``{"error": code, "message": ...}``.
    """

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_CONTROL_BODY, middlewares=[control_errors])
        app.router.add_get("/mode", self.get_mode, allow_head=False)
        app.router.add_post("/mode", self.post_mode)
        app.router.add_get("/stats", self.get_stats, allow_head=False)
        return app

    async def get_mode(self, _request: web.Request) -> web.Response:
        return control_answer(200, self.proxy.mode.describe())

    async def get_stats(self, _request: web.Request) -> web.Response:
        return control_answer(200, self.proxy.stats())

    async def post_mode(self, request: web.Request) -> web.Response:
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            length = request.headers.get("Content-Length", "")
            return control_error(
                400,
                "bad-request",
                f"not an HTTP request: bad or too large Content-Length {length!r}",
            )
        try:
            document = json.loads(raw)
        except ValueError:
            return control_error(400, "bad-request", "the body is not JSON")
        if not isinstance(document, dict) or "mode" not in document:
            return control_error(400, "bad-request", 'expected a JSON object like {"mode": "pass"}')
        name = document.pop("mode")
        try:
            mode = self.proxy.set_mode(name, **document)
        except InvalidMode as exc:
            return control_error(400, "invalid-mode", str(exc))
        except OSError as exc:
            log.error("cannot listen on port %d again: %s", self.proxy.port, exc)
            return control_error(
                503, "cannot-listen", f"cannot listen on port {self.proxy.port}: {exc}"
            )
        return control_answer(200, mode.describe())


@web.middleware
async def control_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Unknown paths and methods answered in the control API's JSON, not aiohttp's text."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return control_error(404, "not-found", f"no {request.path}; try /mode or /stats")
    except web.HTTPMethodNotAllowed:
        return control_error(405, "method-not-allowed", f"{request.method} {request.path}")


def control_answer(status: int, body: Any) -> web.Response:
    response = web.Response(
        status=status,
        body=json.dumps(body, ensure_ascii=False).encode(),
        content_type="application/json",
    )
    response.force_close()  # Connection: close, as the fault answers
    return response


def control_error(status: int, code: str, message: str) -> web.Response:
    return control_answer(status, {"error": code, "message": message})
