"""The reference back-end's HTTP adapter (aiohttp): routes, token check, JSON errors."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from aiohttp import web

from .protocol import (
    HEALTH_PATH,
    MAX_BODY_BYTES,
    SWISH_STATUSES,
    Problem,
    bad_request,
    etag_matches,
    is_int,
    load_catalog,
    parse_entries,
    parse_json,
    parse_reservation,
    parse_scans,
    parse_swish_create,
    unchecked_catalog,
)
from .store import BackendStore

log = logging.getLogger("tilld.sim.backend")

T = TypeVar("T")


class DatabaseThread:
    """The one thread that runs the store's blocking methods (STYLE lesson 6: one owner)."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="backend-db")

    async def run(self, method: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, partial(method, *args))

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


# -- HTTP --------------------------------------------------------------------------


async def read_json(request: web.Request) -> Any:
    """The body as JSON; aiohttp refuses one over MAX_BODY_BYTES with 413."""
    return parse_json(await request.read())


class ReferenceBackend:
    """The HTTP adapter: parses requests, asks the store, answers JSON. It decides nothing."""

    def __init__(
        self,
        store: BackendStore,
        db: DatabaseThread,
        token: str | None,
        answer_delay: tuple[float, float] | None = None,
    ) -> None:
        self.store = store
        self.db = db
        self.token = token
        self.answer_delay = answer_delay
        self.slow_answered: dict[str, int] = {}  # delayed answers sent, by path
        self.delays: list[float] = []  # the quickest and slowest delay so far

    def app(self) -> web.Application:
        middlewares = [json_errors, self.require_token]
        if self.answer_delay is not None:
            middlewares.insert(0, self.slow_answers)
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=middlewares)
        app.add_routes(
            [
                web.get(HEALTH_PATH, self.health),
                web.get("/v1/tills/{till_id}/catalog", self.get_catalog),
                web.post("/v1/tills/{till_id}/journal", self.post_journal),
                web.get("/v1/tills/{till_id}/journal", self.get_journal),
                web.get("/v1/tills/{till_id}/journal/head", self.get_journal_head),
                web.post("/v1/tills/{till_id}/scans", self.post_scans),
                web.post("/v1/tills/{till_id}/swish", self.post_swish),
                web.get("/v1/tills/{till_id}/swish/{swish_id}", self.get_swish),
                web.post("/v1/tills/{till_id}/swish/{swish_id}/cancel", self.cancel_swish),
                web.post("/v1/events/{event_id}/reservations", self.post_reservation),
                web.get("/v1/tickets/{code}", self.get_ticket),
                web.post("/control/catalog", self.control_catalog),
                web.post("/control/swish/{swish_id}", self.control_swish),
                web.post("/control/events/{event_id}", self.control_event),
                web.get("/control/stats", self.control_stats),
                web.get("/control/slow", self.control_slow),
            ]
        )
        return app

    @web.middleware
    async def slow_answers(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """``--answer-delay``: every protocol request waits a random while before its answer.

        A back-end that works, but slowly: the till must not take it for one
        that is gone. The control endpoints answer at once, for the tests.
        """
        assert self.answer_delay is not None
        if not request.path.startswith("/v1/"):
            return await handler(request)
        delay = random.uniform(*self.answer_delay)
        await asyncio.sleep(delay)
        response = await handler(request)
        self.slow_answered[request.path] = self.slow_answered.get(request.path, 0) + 1
        self.delays = [min([delay, *self.delays]), max([delay, *self.delays])]
        return response

    @web.middleware
    async def require_token(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """spec: Common, "Every request but /v1/health carries Authorization: Bearer"."""
        if self.token is None or request.path == HEALTH_PATH:
            return await handler(request)
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), self.token.encode()
        ):
            response = error_response(401, "unauthorized", "missing or wrong bearer token")
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        return await handler(request)

    # -- the protocol ------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def get_catalog(self, request: web.Request) -> web.Response:
        catalog = await self.db.run(self.store.catalog)
        if catalog is None:
            raise Problem(404, "no-catalog", "no catalog yet: start with --seed or --catalog")
        headers = {"ETag": catalog.etag}
        if etag_matches(request.headers.get("If-None-Match"), catalog.etag):
            return web.Response(status=304, headers=headers)
        return web.Response(
            body=catalog.document, content_type="application/json", charset="utf-8", headers=headers
        )

    async def post_journal(self, request: web.Request) -> web.Response:
        till_id = request.match_info["till_id"]
        entries = parse_entries(await read_json(request))
        results = await self.db.run(self.store.append_entries, till_id, entries)
        log_journal_results(till_id, results)
        return web.json_response({"results": results})

    async def get_journal(self, request: web.Request) -> web.Response:
        after = request.query.get("after_seq", "0")
        if not after.isdecimal():
            raise bad_request("after_seq must be a non-negative integer")
        entries = await self.db.run(
            self.store.entries_after, request.match_info["till_id"], int(after)
        )
        return json_response({"entries": entries})

    async def get_journal_head(self, request: web.Request) -> web.Response:
        head = await self.db.run(self.store.journal_head, request.match_info["till_id"])
        return json_response(head)

    async def post_scans(self, request: web.Request) -> web.Response:
        till_id = request.match_info["till_id"]
        scans = parse_scans(await read_json(request))
        results = await self.db.run(self.store.register_scans, till_id, scans)
        log.info("till %s: %d scan(s): %s", till_id, len(results), tally(results))
        return web.json_response({"results": results})

    async def get_ticket(self, request: web.Request) -> web.Response:
        code = request.match_info["code"]
        ticket = await self.db.run(self.store.ticket, code)
        if ticket is None:
            raise Problem(404, "unknown-ticket", f"no ticket {code!r}")
        view: dict[str, Any] = {"code": ticket.code, "state": ticket.state}
        if ticket.state == "used":
            view.update(used_at=ticket.used_at, used_till=ticket.used_till)
        elif ticket.detail:
            view["detail"] = ticket.detail
        return web.json_response(view)

    async def post_swish(self, request: web.Request) -> web.Response:
        till_id = request.match_info["till_id"]
        create = parse_swish_create(await read_json(request))
        reply = await self.db.run(self.store.create_swish, till_id, create)
        log.info("till %s: Swish request %s for %d öre", till_id, reply["id"], create.amount)
        return web.json_response(reply, status=201)

    async def get_swish(self, request: web.Request) -> web.Response:
        info = request.match_info
        return web.json_response(
            found(await self.db.run(self.store.swish, info["till_id"], info["swish_id"]), info)
        )

    async def cancel_swish(self, request: web.Request) -> web.Response:
        info = request.match_info
        reply = await self.db.run(self.store.cancel_swish, info["till_id"], info["swish_id"])
        return web.json_response(found(reply, info))

    async def post_reservation(self, request: web.Request) -> web.Response:
        event_id = request.match_info["event_id"]
        wanted = parse_reservation(await read_json(request))
        reservation = await self.db.run(self.store.reserve, event_id, wanted)
        if reservation is None:
            log.info("event %s: sold out for %s (%d)", event_id, wanted.till_id, wanted.quantity)
            return web.json_response({"reason": "sold-out"}, status=409)
        return web.json_response(reservation, status=201)

    # -- control (reference back-end only) --------------------------------------

    async def control_catalog(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if request.query.get("validate") == "no":
            catalog = unchecked_catalog(raw)
        else:
            catalog = load_catalog(raw, "POST /control/catalog")
        etag = await self.db.run(self.store.set_catalog, catalog)
        log.info("catalog replaced; ETag %s", etag)
        return web.json_response({"etag": etag})

    async def control_swish(self, request: web.Request) -> web.Response:
        document = await read_json(request)
        status = document.get("status") if isinstance(document, dict) else None
        if status not in SWISH_STATUSES:
            raise bad_request(f"status must be one of {', '.join(SWISH_STATUSES)}")
        swish_id = request.match_info["swish_id"]
        reply = await self.db.run(self.store.set_swish_status, swish_id, status)
        log.info("Swish request %s set to %s", swish_id, status)
        return web.json_response(found(reply, request.match_info))

    async def control_event(self, request: web.Request) -> web.Response:
        document = await read_json(request)
        capacity = document.get("capacity") if isinstance(document, dict) else None
        if not is_int(capacity) or capacity < 0:
            raise bad_request("capacity must be a non-negative integer")
        event_id = request.match_info["event_id"]
        return web.json_response(await self.db.run(self.store.set_capacity, event_id, capacity))

    async def control_slow(self, request: web.Request) -> web.Response:
        """What ``--answer-delay`` did: answers delayed, by path, and the delays' range."""
        quickest, slowest = self.delays or (None, None)
        return web.json_response(
            {
                "answer_delay": self.answer_delay,
                "answered": self.slow_answered,
                "quickest_s": quickest,
                "slowest_s": slowest,
            }
        )

    async def control_stats(self, request: web.Request) -> web.Response:
        return web.json_response(await self.db.run(self.store.stats))


def found(reply: dict[str, Any] | None, match_info: Any) -> dict[str, Any]:
    if reply is None:
        raise Problem(404, "unknown-swish", f"no Swish request {match_info['swish_id']!r}")
    return reply


def json_response(data: Any) -> web.Response:
    """JSON with non-ASCII kept, as the till's own entries are."""
    return web.json_response(data, dumps=partial(json.dumps, ensure_ascii=False))


def tally(results: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for result in results:
        counts[result["status"]] = counts.get(result["status"], 0) + 1
    return ", ".join(f"{n} {status}" for status, n in counts.items()) or "none"


def log_journal_results(till_id: str, results: list[dict[str, Any]]) -> None:
    log.info("till %s: %d entr%s: %s", till_id, len(results), "y" if len(results) == 1 else "ies",
             tally(results))  # fmt: skip
    for result in results:
        if result["status"] == "rejected":
            log.warning("till %s: entry %s rejected: %s", till_id, result["uuid"], result["reason"])


HTTP_ERROR_CODES = {
    400: "bad-request",
    401: "unauthorized",
    404: "not-found",
    405: "method-not-allowed",
    413: "too-large",
}


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every error as JSON with a stable code; never a traceback across the API (STYLE 15)."""
    try:
        return await handler(request)
    except Problem as exc:
        return error_response(exc.status, exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = HTTP_ERROR_CODES.get(exc.status, "http-error")
        message = exc.text or exc.reason
        if exc.status in (404, 405):
            message = f"{exc.reason}: {request.method} {request.path}"
        return error_response(exc.status, code, message)
    except Exception:
        log.exception("internal error answering %s %s", request.method, request.path)
        return error_response(500, "internal", "the back-end failed; see its log")
