"""A back-end that breaks the protocol on command: a real HTTP server for the hardening tests.

    python tests/rogue_backend.py --listen 127.0.0.1:0

It prints ``listening=http://HOST:PORT`` once it accepts connections. Until told
otherwise it answers like a healthy back-end that knows nothing: health ``ok``,
the catalog ``304`` (the till keeps its own), every journal entry ``accepted``
and every scan ``unknown``. The reference back-end (tilld/sim/backend/) is
the protocol's example and never misbehaves; this one exists to misbehave.

Control (no authentication; loopback only)
    POST /control/answer  ``{"route": "POST /v1/tills/T/journal", ...}`` sets how
        that route answers from now on:
        ``"status"`` and ``"headers"``: the status line and extra headers;
        ``"json"``: a fixed JSON body;
        ``"results"``: ``"strings"`` (one string per item instead of an object),
            ``"one-short"`` (a result too few) or ``"not-a-list"``;
        ``"body_bytes"``: a body of that many spaces, with Content-Length,
            or sent chunked without one when ``"chunked"`` is true.
    GET /control/requests  ``{"requests": ["METHOD /path", ...], "sent": {route: bytes}}``:
        every request received, and the body bytes each route managed to send
        before its client went away.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from typing import Any

from aiohttp import web

CHUNK = 1 << 16


class RogueBackend:
    def __init__(self) -> None:
        self.answers: dict[str, dict[str, Any]] = {}
        self.requests: list[str] = []
        self.sent: dict[str, int] = {}

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 << 20)
        app.add_routes(
            [
                web.post("/control/answer", self.control_answer),
                web.get("/control/requests", self.control_requests),
                web.route("*", "/{path:.*}", self.protocol),
            ]
        )
        return app

    async def control_answer(self, request: web.Request) -> web.Response:
        answer = await request.json()
        self.answers[answer.pop("route")] = answer
        return web.json_response({"ok": True})

    async def control_requests(self, request: web.Request) -> web.Response:
        return web.json_response({"requests": self.requests, "sent": self.sent})

    async def protocol(self, request: web.Request) -> web.StreamResponse:
        route = f"{request.method} {request.path}"
        self.requests.append(route)
        body = await request.read()
        answer = self.answers.get(route)
        if answer is None:
            return healthy_answer(request, body)
        items = items_of(request, body)
        if "body_bytes" in answer:
            return await self.stream(request, route, answer)
        if "results" in answer:
            payload: Any = shaped_results(answer["results"], items)
        else:
            payload = answer.get("json", {})
        return web.json_response(
            payload, status=answer.get("status", 200), headers=answer.get("headers", {})
        )

    async def stream(
        self, request: web.Request, route: str, answer: dict[str, Any]
    ) -> web.StreamResponse:
        size = answer["body_bytes"]
        response = web.StreamResponse(status=answer.get("status", 200))
        response.content_type = "application/json"
        if answer.get("chunked"):
            response.enable_chunked_encoding()
        else:
            response.content_length = size
        self.sent[route] = 0
        try:
            await response.prepare(request)
            while self.sent[route] < size:
                chunk = b" " * min(CHUNK, size - self.sent[route])
                await response.write(chunk)
                self.sent[route] += len(chunk)
            await response.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            pass  # the till stopped reading, as it should past its limit
        return response


def items_of(request: web.Request, body: bytes) -> list[dict[str, Any]]:
    if request.method != "POST" or not body:
        return []
    document = json.loads(body)
    return document.get("entries") or document.get("scans") or []


def healthy_answer(request: web.Request, body: bytes) -> web.Response:
    path = request.path
    if path == "/v1/health":
        return web.json_response({"status": "ok"})
    if path.endswith("/catalog"):
        return web.Response(status=304)
    if path.endswith("/journal"):
        results = [{"uuid": e["uuid"], "status": "accepted"} for e in items_of(request, body)]
        return web.json_response({"results": results})
    if path.endswith("/scans"):
        results = [{"uuid": s["uuid"], "status": "unknown"} for s in items_of(request, body)]
        return web.json_response({"results": results})
    return web.json_response({"error": "not-found", "message": path}, status=404)


def shaped_results(shape: str, items: list[dict[str, Any]]) -> Any:
    proper = [{"uuid": item["uuid"], "status": "accepted"} for item in items]
    if shape == "strings":
        return {"results": ["accepted" for _ in items]}
    if shape == "one-short":
        return {"results": proper[:-1]}
    if shape == "not-a-list":
        return {"results": "accepted"}
    raise ValueError(f"unknown results shape {shape!r}")


async def serve(host: str, port: int) -> None:
    runner = web.AppRunner(RogueBackend().app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0]
    print(f"listening=http://{bound[0]}:{bound[1]}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(host, int(port)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
