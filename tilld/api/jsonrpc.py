"""JSON-RPC 2.0 over the operation table: envelope checks, roles, params, error mapping.

Transport-free: the socket adapter feeds it decoded messages and writes back
what it returns. No traceback ever reaches a client: unexpected errors are
logged in full (api/calls.py) and answered with -32603 and a pointer to the log.
"""

from __future__ import annotations

from typing import Any

from ..errors import Refused
from ..till import Till
from .calls import Forbidden, InternalFailure, InvalidParams, Subscriber, invoke
from .operations import BY_NAME
from .roles import Caller, Role, RoleMap

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
FORBIDDEN = -32001
REFUSED = -32010


def error(id_: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "id": id_, "error": err}


def _valid_id(value: Any) -> bool:
    return value is None or (isinstance(value, str | int) and not isinstance(value, bool))


def _is_unicode(text: str) -> bool:
    """False for a string holding a lone surrogate (a \\ud800 escape without its pair)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Dispatcher:
    def __init__(self, till: Till, roles: RoleMap) -> None:
        self.till = till
        self.roles = roles  # the configured group names, for the words of a refusal

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
        if isinstance(id_, str) and not _is_unicode(id_):
            # It could not be echoed as UTF-8, so the answer carries id null.
            return error(
                None,
                INVALID_REQUEST,
                "id is not valid Unicode: it holds a lone surrogate (a \\ud800-\\udfff "
                "escape without its pair); use an id of whole characters",
            )
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
        try:
            result = await invoke(self.till, op, params, caller, role, self.roles, subscribe)
        except Forbidden as exc:
            return error(id_, FORBIDDEN, "forbidden", {"message": exc.message})
        except InvalidParams as exc:
            return error(id_, INVALID_PARAMS, exc.message, {"errors": exc.problems})
        except Refused as refusal:
            data = {"reason": refusal.reason, "message": refusal.message, **refusal.details}
            return error(id_, REFUSED, refusal.message, data)
        except InternalFailure as exc:
            return error(id_, INTERNAL_ERROR, exc.message)
        return {"jsonrpc": "2.0", "id": id_, "result": result}
