"""JSON-RPC 2.0 over the operation table: envelope checks, roles, params, error mapping.

Transport-free: the socket adapter feeds it decoded messages and writes back
what it returns. No traceback ever reaches a client: unexpected errors are
logged in full here and answered with -32603 and a pointer to the log.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from ..errors import Refused
from ..till import Till
from .operations import BY_NAME, Operation, Params
from .roles import Caller, Role

log = logging.getLogger("tilld.api")

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
FORBIDDEN = -32001
REFUSED = -32010

Subscriber = Callable[[Params], dict[str, Any]]


def error(id_: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "id": id_, "error": err}


def _valid_id(value: Any) -> bool:
    return value is None or (isinstance(value, str | int) and not isinstance(value, bool))


class Dispatcher:
    def __init__(self, till: Till) -> None:
        self.till = till

    async def handle(
        self, message: Any, caller: Caller, role: Role, subscribe: Subscriber
    ) -> dict[str, Any] | list[dict[str, Any]] | None:
        """Answer one decoded JSON value: a request, a notification or a batch."""
        if isinstance(message, list):
            if not message:
                return error(None, INVALID_REQUEST, "empty batch")
            replies = [await self._one(m, caller, role, subscribe) for m in message]
            answered = [r for r in replies if r is not None]
            return answered or None
        return await self._one(message, caller, role, subscribe)

    async def _one(
        self, request: Any, caller: Caller, role: Role, subscribe: Subscriber
    ) -> dict[str, Any] | None:
        if not isinstance(request, dict):
            return error(None, INVALID_REQUEST, "a request must be a JSON object")
        id_ = request.get("id")
        is_notification = "id" not in request
        if not _valid_id(id_):
            return error(None, INVALID_REQUEST, "id must be a string, an integer or null")
        if request.get("jsonrpc") != "2.0":
            return error(id_, INVALID_REQUEST, 'jsonrpc must be "2.0"')
        name = request.get("method")
        if not isinstance(name, str):
            return error(id_, INVALID_REQUEST, "method must be a string")
        params = request.get("params", {})
        if not isinstance(params, dict):
            return error(id_, INVALID_PARAMS, "params must be an object (by name)")
        reply = await self._call(id_, name, params, caller, role, subscribe)
        return None if is_notification else reply

    async def _call(
        self,
        id_: Any,
        name: str,
        params: dict[str, Any],
        caller: Caller,
        role: Role,
        subscribe: Subscriber,
    ) -> dict[str, Any]:
        op = BY_NAME.get(name)
        if op is None:
            return error(id_, METHOD_NOT_FOUND, f"no method {name!r}; see docs/api.md")
        if role < op.role:
            return error(
                id_,
                FORBIDDEN,
                "forbidden",
                {
                    "message": f"{caller.describe()} may not call {name}: it needs the "
                    f"{op.role.name.lower()} role (group tilld-cashier or tilld-tech)."
                },
            )
        try:
            parsed = op.params.model_validate(params)
        except ValidationError as exc:
            problems = [_param_problem(e) for e in exc.errors()]
            return error(
                id_, INVALID_PARAMS, "invalid params: " + "; ".join(problems), {"errors": problems}
            )
        try:
            result = await self._run(op, parsed, subscribe)
        except Refused as refusal:
            data = {"reason": refusal.reason, "message": refusal.message, **refusal.details}
            return error(id_, REFUSED, refusal.message, data)
        except Exception:
            log.exception("%s failed for %s", name, caller.describe())
            return error(
                id_, INTERNAL_ERROR, f"internal error in {name}; the tilld log has details"
            )
        return {"jsonrpc": "2.0", "id": id_, "result": result}

    async def _run(self, op: Operation, params: Params, subscribe: Subscriber) -> Any:
        if op.handler is None:
            return subscribe(params)
        result = op.handler(self.till, params)
        if inspect.isawaitable(result):
            result = await result
        return result


def _param_problem(err: Any) -> str:
    where = ".".join(str(part) for part in err["loc"]) or "params"
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown parameter"
    return f"{where}: {err['msg']}"
