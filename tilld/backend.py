"""The till's HTTP client for its back-end (BACKEND-PROTOCOL.md).

Every call reports its outcome to the connectivity monitor: a failed real
request is as good as a failed probe, and a success proves the server is
there. Failures are classified once, here: connection errors, timeouts and
5xx are transient (retry with backoff); 400 means the request itself is
malformed (never resend it unchanged); 401 means the token is wrong (a
configuration problem, not an outage).

A back-end can fail in ways that cost more than an error: by never
answering, or by answering without end. So every request has a deadline
(``backend.timeout_s``; a scan at the entrance must not wait on a server that
accepted the connection and went quiet), every answer is read up to a size
limit, and redirects are never followed (the bearer token goes only where
``backend.url`` says). docs/backend-protocol.md, "Limits", says the same to
vendors.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # Imported when a back-end is configured (start): a till without one, and
    # every test daemon without one, starts without loading aiohttp's client.
    import aiohttp

log = logging.getLogger("tilld.backend")

Reporter = Callable[[bool, str | None], None]

MiB = 1 << 20
# The largest answers the till reads. A catalog is kilobytes for a venue and
# megabytes for a big one; 32 MiB is some 100,000 articles. Every other answer
# is a result list of at most sync.batch_size (10,000) items or smaller.
CATALOG_MAX_BYTES = 32 * MiB
REPLY_MAX_BYTES = 4 * MiB
# The catalog may take this many timeouts to arrive in full over a slow uplink,
# but is never silent for longer than one: a stalled download still fails fast.
CATALOG_DEADLINE_FACTOR = 6
READ_CHUNK = 1 << 16


class BackendError(Exception):
    def __init__(self, message: str, *, status: int | None = None, transient: bool) -> None:
        super().__init__(message)
        self.status = status
        self.transient = transient
        self.message = message


class BackendClient:
    def __init__(
        self,
        base_url: str,
        till_id: str,
        *,
        token_file: str,
        timeout_s: float,
        report: Reporter | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.till_id = till_id
        self.token_file = token_file
        self.timeout_s = timeout_s
        self.report = report or (lambda ok, error: None)
        self._session: aiohttp.ClientSession | None = None
        self._token: str | None = None

    @property
    def configured(self) -> bool:
        return bool(self.base_url)

    async def start(self) -> None:
        if not self.configured:
            return  # every request says so (_request); backend.url is not reloaded
        import aiohttp

        self._token = self._read_token()
        # Each request sets its own deadlines (_request); none is left to a default.
        self._session = aiohttp.ClientSession(headers={"User-Agent": "tilld"})

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _read_token(self) -> str | None:
        if not self.token_file:
            return None
        try:
            return Path(self.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            log.error(
                "cannot read the back-end token from %s (%s); requests will be refused",
                self.token_file,
                exc.strerror,
            )
            return None

    # -- the protocol ------------------------------------------------------

    async def health(self, timeout_s: float | None = None) -> None:
        # The monitor records its probe's outcome itself; reported here as well,
        # one lost probe would count twice and defeat its hysteresis.
        await self._request("GET", "/v1/health", auth=False, timeout_s=timeout_s, probe=True)

    async def catalog(self, etag: str | None) -> tuple[bytes, str | None] | None:
        """The catalog and its ETag, or None when ``etag`` is still current (304)."""
        headers = {"If-None-Match": etag} if etag else {}
        status, body, response_headers = await self._request(
            "GET",
            f"/v1/tills/{self.till_id}/catalog",
            headers=headers,
            raw=True,
            total_s=CATALOG_DEADLINE_FACTOR * self.timeout_s,
            limit=CATALOG_MAX_BYTES,
        )
        if status == 304:
            return None
        return body, response_headers.get("ETag")

    async def post_journal(self, payload: bytes, count: int) -> list[dict[str, Any]]:
        """Post `{"entries": [...]}` already encoded (journal.OutboxBatch) with `count` entries."""
        path = f"/v1/tills/{self.till_id}/journal"
        reply = await self._request("POST", path, encoded=payload)
        return _results(reply, count, f"POST {path}")

    async def journal_head(self) -> dict[str, Any] | None:
        """The back-end's last accepted entry of this till, or None if it does not say (404).

        ``{"seq", "hash", "receipt_no"?, "z_no"?}``: the anchor the till's
        journal is checked against (integrity.py).
        """
        status, body, _ = await self._request(
            "GET", f"/v1/tills/{self.till_id}/journal/head", raw=True, accept=(404,)
        )
        if status == 404:
            return None
        head = _json(body)
        if (
            not isinstance(head, dict)
            or not _is_count(head.get("seq"))
            or not isinstance(head.get("hash"), str)
            or not all(_is_count(head.get(k, 0)) for k in ("receipt_no", "z_no"))
        ):
            raise BackendError(
                "the back-end's journal head is malformed: it needs seq, hash and whole "
                "receipt_no and z_no",
                transient=True,
            )
        return head

    async def post_scans(self, scans: list[dict[str, Any]]) -> list[dict[str, Any]]:
        path = f"/v1/tills/{self.till_id}/scans"
        reply = await self._request("POST", path, payload={"scans": scans})
        return _results(reply, len(scans), f"POST {path}")

    async def swish_create(self, uuid: str, amount: int, message: str) -> dict[str, Any]:
        return await self._request(
            "POST",
            f"/v1/tills/{self.till_id}/swish",
            payload={"uuid": uuid, "amount": amount, "message": message},
        )

    async def swish_status(self, request_id: str) -> dict[str, Any]:
        return await self._request("GET", f"/v1/tills/{self.till_id}/swish/{request_id}")

    async def swish_cancel(self, request_id: str) -> dict[str, Any]:
        return await self._request("POST", f"/v1/tills/{self.till_id}/swish/{request_id}/cancel")

    async def reserve(self, event_id: str, uuid: str, quantity: int) -> dict[str, Any] | None:
        """A reservation, or None when the event is sold out (409)."""
        status, body, _ = await self._request(
            "POST",
            f"/v1/events/{event_id}/reservations",
            payload={"uuid": uuid, "till_id": self.till_id, "quantity": quantity},
            raw=True,
            accept=(409,),
        )
        if status == 409:
            return None
        return _json(body)

    # -- plumbing ----------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        payload: Any = None,
        encoded: bytes | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
        raw: bool = False,
        accept: tuple[int, ...] = (),
        timeout_s: float | None = None,
        total_s: float | None = None,
        limit: int = REPLY_MAX_BYTES,
        probe: bool = False,
    ) -> Any:
        """One exchange, answered within ``total_s`` (default: the timeout) or failed.

        No more than ``timeout_s`` (default ``backend.timeout_s``) may pass
        without a byte from the back-end, and the whole exchange ends after
        ``total_s``. A ``probe`` does not report to the monitor (it records
        its probes itself).
        """
        if not self.configured or self._session is None:
            raise BackendError("no back-end is configured (backend.url)", transient=True)
        import aiohttp  # loaded by start() with the session

        what = f"{method} {path}"
        quiet_s = timeout_s or self.timeout_s
        total_s = max(total_s or quiet_s, quiet_s)
        report = (lambda ok, error: None) if probe else self.report
        all_headers = dict(headers or {})
        if auth and self._token:
            all_headers["Authorization"] = f"Bearer {self._token}"
        if encoded is not None:
            all_headers["Content-Type"] = "application/json"
        # sock_read is the longest silence, from sending the request on; the
        # asyncio deadline bounds everything, connecting and reading included.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=quiet_s, sock_read=quiet_s)
        deadline = asyncio.timeout(total_s)
        try:
            async with (
                deadline,
                self._session.request(
                    method,
                    self.base_url + path,
                    json=payload,
                    data=encoded,
                    headers=all_headers,
                    timeout=timeout,
                    allow_redirects=False,
                ) as response,
            ):
                status = response.status
                response_headers = response.headers.copy()  # names stay case-blind
                body = None if _is_redirect(status) else await _read_capped(response, limit)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            if isinstance(exc, TimeoutError):
                waited = total_s if deadline.expired() else quiet_s
                error = f"{what}: timed out (no answer within {waited:g} s)"
            else:
                error = f"{what}: {_describe(exc)}"
            report(False, error)
            raise BackendError(error, transient=True) from None
        if status >= 500:
            error = f"{what}: server error {status}"
            report(False, error)
            raise BackendError(error, status=status, transient=True)
        report(True, None)
        if _is_redirect(status):
            location = response_headers.get("Location", "(no Location)")[:200]
            raise BackendError(
                f"{what}: the back-end answered {status}, a redirect to {location}; tilld does "
                "not follow redirects, so its token goes nowhere else: set backend.url to the "
                "address the back-end really serves",
                status=status,
                transient=False,
            )
        if body is None:
            raise BackendError(
                f"{what}: the back-end's answer is larger than {limit // MiB} MiB, tilld's "
                "limit for it, so it was not read; the back-end is misbehaving, ask its vendor",
                status=status,
                transient=False,
            )
        if status == 401:
            raise BackendError(
                f"{what}: the back-end refused tilld's token (401); check backend.token_file",
                status=status,
                transient=False,
            )
        if status >= 400 and status not in accept:
            raise BackendError(
                f"{what}: {status} {_error_text(body)}", status=status, transient=False
            )
        if raw:
            return status, body, response_headers
        return _json(body)


def _is_redirect(status: int) -> bool:
    return 300 <= status < 400 and status != 304  # 304 Not Modified answers If-None-Match


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The body, or None (and the connection closed) once it proves longer than ``limit``."""
    if response.content_length is not None and response.content_length > limit:
        response.close()
        return None
    body = bytearray()
    async for chunk in response.content.iter_chunked(READ_CHUNK):
        body += chunk
        if len(body) > limit:
            response.close()
            return None
    return bytes(body)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        raise BackendError("the back-end sent a reply that is not JSON", transient=True) from None


def _results(reply: Any, expected: int, what: str) -> list[dict[str, Any]]:
    """The answer's ``results``: a list of one object per item sent (spec: journal, scans)."""
    results = reply.get("results") if isinstance(reply, dict) else None
    if not isinstance(results, list):
        problem = 'has no results list (expected {"results": [...]})'
    elif len(results) != expected:
        problem = f"has {len(results)} results for {expected} item(s) (expected one per item)"
    else:
        bad = next((i for i, result in enumerate(results) if not isinstance(result, dict)), None)
        if bad is None:
            return results
        problem = (
            f"has a result ({bad + 1} of {expected}) that is not an object: "
            f"{_shorten(results[bad])}"
        )
    # Transient: nothing was recorded, so the batch stays and is sent again later.
    raise BackendError(
        f"{what}: the back-end's answer {problem}; the items stay unsent and are retried. "
        "The back-end breaks the protocol (docs/backend-protocol.md): ask its vendor",
        transient=True,
    )


def _shorten(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def _error_text(body: bytes) -> str:
    return body[:200].decode("utf-8", errors="replace")


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
