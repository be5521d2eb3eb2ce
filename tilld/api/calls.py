"""One call of one operation, the same for every transport: role check, params, handler.

Both adapters (JSON-RPC on the socket, D-Bus) run every call through
``invoke`` and only translate its outcome: a result, or one of the errors
below, or a ``Refused`` from the Till. So the order of checks (role before
params), the messages and the refusal reasons cannot drift between them.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from ..errors import Refused
from ..till import Till
from .operations import Operation, Params
from .roles import Caller, Role

log = logging.getLogger("tilld.api")

Subscriber = Callable[[Params], dict[str, Any]]


class Forbidden(Exception):
    """The caller's role may not call this operation."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidParams(Exception):
    """The parameters do not fit the operation's model; ``problems`` names each one."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        self.message = "invalid params: " + "; ".join(problems)
        super().__init__(self.message)


class InternalFailure(Exception):
    """A bug: logged here with its traceback, reported to the caller without one."""

    def __init__(self, name: str) -> None:
        self.message = f"internal error in {name}; the tilld log has details"
        super().__init__(self.message)


def check_role(op: Operation, caller: Caller, role: Role) -> None:
    if role < op.role:
        raise Forbidden(
            f"{caller.describe()} may not call {op.name}: it needs the "
            f"{op.role.name.lower()} role (group tilld-cashier or tilld-tech)."
        )


def parse_params(op: Operation, params: dict[str, Any]) -> Params:
    try:
        return op.params.model_validate(params)
    except ValidationError as exc:
        raise InvalidParams([_param_problem(e) for e in exc.errors()]) from None


async def invoke(
    till: Till,
    op: Operation,
    params: dict[str, Any],
    caller: Caller,
    role: Role,
    subscribe: Subscriber | None = None,
) -> dict[str, Any]:
    """Run one call; raises Forbidden, InvalidParams, Refused or InternalFailure."""
    check_role(op, caller, role)
    parsed = parse_params(op, params)
    try:
        if op.handler is None:
            if subscribe is None:
                raise RuntimeError(f"{op.name} is served by the socket adapter only")
            return subscribe(parsed)
        result = op.handler(till, parsed)
        if inspect.isawaitable(result):
            result = await result
        return result
    except Refused:
        raise
    except Exception:
        log.exception("%s failed for %s", op.name, caller.describe())
        raise InternalFailure(op.name) from None


def _param_problem(err: Any) -> str:
    where = ".".join(str(part) for part in err["loc"]) or "params"
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown parameter"
    return f"{where}: {err['msg']}"
