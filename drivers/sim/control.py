"""The simulators' shared plumbing: the HTTP control port and their life cycle.

The control port is a small HTTP/1.1 server on asyncio's streams, not aiohttp:
a test starts several simulators for every daemon it runs, and importing
aiohttp cost each of them about a quarter of a second of CPU before it could
listen. Each request gets one JSON answer and the connection closes
(``Connection: close``), which is all the tests, the demo and ``tillctl demo``
ask of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]] | dict[str, Any]]
# A raw route answers (status, JSON body) from the request body's bytes.
RawHandler = Callable[[bytes], Awaitable[tuple[int, Any]]]

MAX_BODY = 65536
MAX_HEADER_LINES = 100
READ_TIMEOUT_S = 10.0


def parse_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{value!r} is not HOST:PORT")
    return host or "127.0.0.1", int(port)


def error(status: int, code: str, message: str) -> tuple[int, dict[str, str]]:
    return status, {"error": code, "message": message}


class ControlServer:
    """Serve ``routes[(METHOD, "/path")]`` on host:port; answer JSON and close."""

    def __init__(self, routes: dict[tuple[str, str], RawHandler], hint: str) -> None:
        self.routes = routes
        self.hint = hint  # named in a 404's message: the paths worth trying
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._serve, host, port)
        bound = self._server.sockets[0].getsockname()
        return bound[0], bound[1]

    async def cleanup(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            try:
                request = await asyncio.wait_for(self._read(reader), READ_TIMEOUT_S)
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                return
            try:
                status, body = request if isinstance(request, tuple) else await request()
            except Exception as exc:  # a simulator's bug answers 500, not a closed socket
                status, body = error(500, "internal-error", f"{type(exc).__name__}: {exc}")
            payload = json.dumps(body, ensure_ascii=False).encode()
            head = (
                f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
                "Content-Type: application/json; charset=utf-8\r\n"
                f"Content-Length: {len(payload)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode("ascii") + payload)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self._connections.discard(task)

    async def _read(
        self, reader: asyncio.StreamReader
    ) -> tuple[int, Any] | Callable[[], Awaitable[tuple[int, Any]]]:
        """The request read: an answer already (an error), or the handler to run."""
        request_line = (await reader.readline()).decode("latin-1").split()
        if len(request_line) != 3 or not request_line[2].startswith("HTTP/"):
            return error(400, "bad-request", "not an HTTP request")
        method, target, _version = request_line
        length = ""
        for _ in range(MAX_HEADER_LINES):
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = value.strip()
        else:
            return error(400, "bad-request", "not an HTTP request: too many header lines")
        if length and (not length.isdecimal() or int(length) > MAX_BODY):
            return error(
                400,
                "bad-request",
                f"not an HTTP request: bad or too large Content-Length {length!r}",
            )
        body = await reader.readexactly(int(length)) if length else b""
        path = target.partition("?")[0]
        handler = self.routes.get((method, path))
        if handler is not None:
            return lambda: handler(body)
        if any(p == path for _m, p in self.routes):
            return error(405, "method-not-allowed", f"{method} {path}")
        return error(404, "not-found", f"no {path}; try {self.hint}")


async def start_control(
    address: str,
    routes: dict[str, Handler],
    state: Callable[[], dict[str, Any]],
    views: dict[str, Callable[[], dict[str, Any]]] | None = None,
) -> tuple[ControlServer, str]:
    """Serve POST /<name> for each route, GET /state and GET /<name> for each
    of `views`; returns the server (for cleanup()) and the bound address."""

    def post(handler: Handler) -> RawHandler:
        async def handle(raw: bytes) -> tuple[int, Any]:
            body: Any = {}
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    return 400, {"error": "the body is not JSON"}
                if not isinstance(body, dict):
                    return 400, {"error": "send a JSON object"}
            try:
                result = handler(body)
                if asyncio.iscoroutine(result):
                    result = await result
            except (ValueError, KeyError, TypeError) as exc:
                return 400, {"error": str(exc)}
            return 200, result

        return handle

    def get(read: Callable[[], dict[str, Any]]) -> RawHandler:
        async def handle(_raw: bytes) -> tuple[int, Any]:
            return 200, read()

        return handle

    table: dict[tuple[str, str], RawHandler] = {("GET", "/state"): get(state)}
    for name, read in (views or {}).items():
        table["GET", f"/{name}"] = get(read)
    for name, handler in routes.items():
        table["POST", f"/{name}"] = post(handler)
    server = ControlServer(table, "GET /state")
    host, port = await server.start(*parse_address(address))
    return server, f"{host}:{port}"


def announce(**values: Any) -> None:
    for key, value in values.items():
        print(f"{key}={value}", flush=True)
