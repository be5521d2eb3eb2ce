"""The little HTTP/1.1 that nexo over a LAN needs, on asyncio streams.

One POST per connection (`Connection: close`): a terminal that reboots, or a
till that loses an answer, leaves no half-used keep-alive connection behind,
and an abort or a status question can go on a connection of its own while a
payment waits for the customer. The same reader serves the simulator's side.
Heads and bodies are capped; anything else is NexoProtocolError.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from .errors import NexoProtocolError
from .xmlsafe import MAX_XML_BYTES

PATH = "/EPASSaleToPOI/3.1"
CONTENT_TYPE = "application/xml; charset=utf-8"
MAX_HEAD_BYTES = 8192
MAX_HEADERS = 50


class ConnectFailed(OSError):
    """The terminal could not be reached: nothing was sent."""


class NoMessage(NexoProtocolError):
    """The connection closed before a message began."""


class AnswerLost(Exception):
    """The request was (maybe) sent, but no whole answer came back."""


@dataclass(frozen=True)
class HttpMessage:
    start: str  # "POST /path HTTP/1.1" or "HTTP/1.1 200 OK"
    headers: dict[str, str]
    body: bytes

    @property
    def status(self) -> int:
        parts = self.start.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise NexoProtocolError(f"not an HTTP status line: {self.start[:60]!r}")
        return int(parts[1])


async def read_message(reader: asyncio.StreamReader) -> HttpMessage:
    """One HTTP/1.1 message with a Content-Length body (or none); NexoProtocolError if not."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise NexoProtocolError("HTTP head over the size cap") from None
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise NoMessage("connection closed before a message") from None
        raise NexoProtocolError("connection closed in the middle of an HTTP head") from None
    if len(head) > MAX_HEAD_BYTES:
        raise NexoProtocolError(f"HTTP head of {len(head)} bytes is over {MAX_HEAD_BYTES}")
    try:
        lines = head.decode("latin-1").split("\r\n")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes everything
        raise NexoProtocolError("HTTP head is not text") from None
    start, headers = lines[0], {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip() or len(headers) >= MAX_HEADERS:
            raise NexoProtocolError(f"bad HTTP header line {line[:60]!r}")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise NexoProtocolError("chunked HTTP bodies are not used by nexo terminals")
    length_text = headers.get("content-length", "0")
    if not length_text.isdigit() or int(length_text) > MAX_XML_BYTES:
        raise NexoProtocolError(f"Content-Length {length_text[:20]!r} is not a size under the cap")
    length = int(length_text)
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise NexoProtocolError(f"connection closed inside a {length} byte body") from None
    return HttpMessage(start, headers, body)


def request_bytes(host: str, body: bytes) -> bytes:
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {CONTENT_TYPE}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def response_bytes(status: int, body: bytes = b"") -> bytes:
    reason = {200: "OK", 204: "No Content", 400: "Bad Request", 404: "Not Found"}.get(status, "")
    head = f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
    if body:
        head += f"Content-Type: {CONTENT_TYPE}\r\n"
    head += f"Content-Length: {len(body)}\r\n\r\n"
    return head.encode("ascii") + body


async def post(
    host: str, port: int, body: bytes, *, connect_s: float, answer_s: float
) -> HttpMessage:
    """POST `body` to the terminal and return its answer.

    ConnectFailed: not connected, nothing sent. AnswerLost: the request may
    have reached the terminal and no (whole) answer came within `answer_s`.
    NexoProtocolError: an answer came and it was not HTTP.
    """
    try:
        async with asyncio.timeout(connect_s):
            reader, writer = await asyncio.open_connection(
                host, port, limit=MAX_HEAD_BYTES + MAX_XML_BYTES
            )
    except (OSError, TimeoutError) as exc:
        raise ConnectFailed(f"cannot connect to {host}:{port}: {exc or 'timed out'}") from None
    try:
        try:
            writer.write(request_bytes(f"{host}:{port}", body))
            async with asyncio.timeout(answer_s):
                await writer.drain()
                return await read_message(reader)
        except TimeoutError:
            raise AnswerLost(f"no answer within {answer_s:g} s") from None
        except (OSError, NoMessage) as exc:
            why = exc or type(exc).__name__
            raise AnswerLost(f"connection lost before the answer: {why}") from None
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(1.0):
                await writer.wait_closed()
