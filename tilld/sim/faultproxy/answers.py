"""HTTP, as little as the fault answers need: read one request, write one answer.

The proxy does not parse HTTP while it forwards; only ``http500`` and
``http401`` read a request (to its end, so the client is not reset mid-send)
and answer it themselves.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from .modes import HTTP_ERRORS

CHUNK = 65536
MAX_REQUEST_HEAD = 65536


def http_response(status: int, reason: str, body: Any, headers: tuple[str, ...] = ()) -> bytes:
    content = json.dumps(body, ensure_ascii=False).encode()
    head = [
        f"HTTP/1.1 {status} {reason}",
        "Content-Type: application/json",
        f"Content-Length: {len(content)}",
        "Connection: close",
        *headers,
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + content


def fault_response(mode: str) -> bytes:
    """The whole answer of an ``http500`` or ``http401`` proxy to any request."""
    status, reason, error = HTTP_ERRORS[mode]
    # RFC 9110 section 11.6.1: a 401 carries at least one challenge.
    headers = ('WWW-Authenticate: Bearer realm="tilld"',) if status == 401 else ()
    body = {"error": error, "message": f"HTTP {status} injected by the fault proxy ({mode})"}
    return http_response(status, reason, body, headers)


def request_body_length(head: bytes) -> int | None:
    """Content-Length of a request head; None for a chunked body; 0 if neither."""
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"transfer-encoding" and b"chunked" in value.lower():
            return None
        if name == b"content-length" and value.strip().isdigit():
            length = int(value.strip())
    return length


async def read_request(reader: asyncio.StreamReader, received: bytes = b"") -> bytes:
    """Read one HTTP/1.1 request (``received`` is what was read already); returns its head."""
    buffer = received
    while b"\r\n\r\n" not in buffer and len(buffer) <= MAX_REQUEST_HEAD:
        chunk = await reader.read(CHUNK)
        if not chunk:
            return buffer
        buffer += chunk
    head, _, body = buffer.partition(b"\r\n\r\n")
    if b"100-continue" in head.lower():
        return head  # the client sends no body until told to (RFC 9110 section 10.1.1)
    length = request_body_length(head)
    if length is None:  # chunked: read on to the last chunk
        while not (body.startswith(b"0\r\n\r\n") or b"\r\n0\r\n\r\n" in body[-CHUNK:]):
            chunk = await reader.read(CHUNK)
            if not chunk:
                break
            body += chunk
        return head
    remaining = length - len(body)
    while remaining > 0:
        chunk = await reader.read(min(CHUNK, remaining))
        if not chunk:
            break
        remaining -= len(chunk)
    return head
