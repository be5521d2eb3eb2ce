"""The till's HTTP client for its back-end (BACKEND-PROTOCOL.md).

Every call reports its outcome to the connectivity monitor: a failed real
request is as good as a failed probe, and a success proves the server is
there. Failures are classified once, here: connection errors, timeouts and
5xx are transient (retry with backoff); 400 means the request itself is
malformed (never resend it unchanged); 401 means the token is wrong (a
configuration problem, not an outage).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

log = logging.getLogger("tilld.backend")

Reporter = Callable[[bool, str | None], None]


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
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.report = report or (lambda ok, error: None)
        self._session: aiohttp.ClientSession | None = None
        self._token: str | None = None

    @property
    def configured(self) -> bool:
        return bool(self.base_url)

    async def start(self) -> None:
        self._token = self._read_token()
        self._session = aiohttp.ClientSession(timeout=self.timeout, headers={"User-Agent": "tilld"})

    async def close(self) -> None:
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
        await self._request("GET", "/v1/health", auth=False, timeout_s=timeout_s)

    async def catalog(self, etag: str | None) -> tuple[bytes, str | None] | None:
        """The catalog and its ETag, or None when ``etag`` is still current (304)."""
        headers = {"If-None-Match": etag} if etag else {}
        status, body, response_headers = await self._request(
            "GET", f"/v1/tills/{self.till_id}/catalog", headers=headers, raw=True
        )
        if status == 304:
            return None
        return body, response_headers.get("ETag")

    async def post_journal(self, payload: bytes, count: int) -> list[dict[str, Any]]:
        """Post `{"entries": [...]}` already encoded (journal.OutboxBatch) with `count` entries."""
        reply = await self._request("POST", f"/v1/tills/{self.till_id}/journal", encoded=payload)
        return _results(reply, count)

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
        reply = await self._request(
            "POST", f"/v1/tills/{self.till_id}/scans", payload={"scans": scans}
        )
        return _results(reply, len(scans))

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
    ) -> Any:
        if not self.configured or self._session is None:
            raise BackendError("no back-end is configured (backend.url)", transient=True)
        all_headers = dict(headers or {})
        if auth and self._token:
            all_headers["Authorization"] = f"Bearer {self._token}"
        timeout = aiohttp.ClientTimeout(total=timeout_s) if timeout_s else None
        if encoded is not None:
            all_headers["Content-Type"] = "application/json"
        try:
            async with self._session.request(
                method,
                self.base_url + path,
                json=payload,
                data=encoded,
                headers=all_headers,
                timeout=timeout,
            ) as response:
                body = await response.read()
                status = response.status
                response_headers = dict(response.headers)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = f"{method} {path}: {_describe(exc)}"
            self.report(False, error)
            raise BackendError(error, transient=True) from None
        if status >= 500:
            error = f"{method} {path}: server error {status}"
            self.report(False, error)
            raise BackendError(error, status=status, transient=True)
        self.report(True, None)
        if status == 401:
            raise BackendError(
                f"{method} {path}: the back-end refused tilld's token (401); check "
                "backend.token_file",
                status=status,
                transient=False,
            )
        if status >= 400 and status not in accept:
            raise BackendError(
                f"{method} {path}: {status} {_error_text(body)}", status=status, transient=False
            )
        if raw:
            return status, body, response_headers
        return _json(body)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        raise BackendError("the back-end sent a reply that is not JSON", transient=True) from None


def _results(reply: Any, expected: int) -> list[dict[str, Any]]:
    results = reply.get("results") if isinstance(reply, dict) else None
    if not isinstance(results, list) or len(results) != expected:
        raise BackendError(
            f"the back-end answered {expected} items with a malformed results list",
            transient=True,
        )
    return results


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def _error_text(body: bytes) -> str:
    return body[:200].decode("utf-8", errors="replace")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
