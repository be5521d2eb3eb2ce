"""The simulators' shared plumbing: the HTTP control port and their life cycle."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]] | dict[str, Any]]


def parse_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{value!r} is not HOST:PORT")
    return host or "127.0.0.1", int(port)


async def start_control(
    address: str,
    routes: dict[str, Handler],
    state: Callable[[], dict[str, Any]],
    views: dict[str, Callable[[], dict[str, Any]]] | None = None,
) -> tuple[web.AppRunner, str]:
    """Serve POST /<name> for each route, GET /state and GET /<name> for each
    of `views`; returns the bound address."""

    def wrap(handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            body: dict[str, Any] = {}
            if request.can_read_body:
                try:
                    body = await request.json()
                except ValueError:
                    return web.json_response({"error": "the body is not JSON"}, status=400)
                if not isinstance(body, dict):
                    return web.json_response({"error": "send a JSON object"}, status=400)
            try:
                result = handler(body)
                if asyncio.iscoroutine(result):
                    result = await result
            except (ValueError, KeyError, TypeError) as exc:
                return web.json_response({"error": str(exc)}, status=400)
            return web.json_response(result)

        return handle

    async def get_state(_request: web.Request) -> web.Response:
        return web.json_response(state())

    def view(
        read: Callable[[], dict[str, Any]],
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(_request: web.Request) -> web.Response:
            return web.json_response(read())

        return handle

    app = web.Application()
    app.router.add_get("/state", get_state)
    for name, read in (views or {}).items():
        app.router.add_get(f"/{name}", view(read))
    for name, handler in routes.items():
        app.router.add_post(f"/{name}", wrap(handler))
    runner, (host, port) = await serve_control(app, *parse_address(address))
    return runner, f"{host}:{port}"


async def serve_control(
    app: web.Application, host: str, port: int
) -> tuple[web.AppRunner, tuple[str, int]]:
    """Serve a control API's own aiohttp app on host:port (0: any free).

    For a simulator whose control API is not the POST /<name> shape above (the
    fault proxy's GET/POST /mode). Returns the runner, for cleanup(), and the
    bound host and port.
    """
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0]
    return runner, (bound[0], bound[1])


def announce(**values: Any) -> None:
    for key, value in values.items():
        print(f"{key}={value}", flush=True)
