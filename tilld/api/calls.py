"""One call of one operation, the same for every transport: role check, params, handler.

Both adapters (JSON-RPC on the socket, D-Bus) run every call through
``invoke`` and only translate its outcome: a result, or one of the errors
below, or a ``Refused`` from the Till. So the order of checks (role before
params), the messages and the refusal reasons cannot drift between them.
"""

from __future__ import annotations

import inspect
import logging
import typing
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from ..errors import Refused
from ..till import Till
from .operations import Operation, Params
from .roles import Caller, Role, RoleMap

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


def check_role(op: Operation, caller: Caller, role: Role, roles: RoleMap) -> None:
    """Forbidden unless ``role`` (``roles.role_of(caller)``) may call ``op``.

    The message names the groups as configured (api.cashier_group, api.tech_group).
    """
    if role < op.role:
        raise Forbidden(
            f"{caller.describe()} may not call {op.name}: it needs the "
            f"{op.role.name.lower()} role (group {roles.cashier_group} or {roles.tech_group})."
        )


def parse_params(op: Operation, params: dict[str, Any]) -> Params:
    try:
        return op.params.model_validate(params)
    except ValidationError as exc:
        raise InvalidParams([_param_problem(op.params, e) for e in exc.errors()]) from None


async def invoke(
    till: Till,
    op: Operation,
    params: dict[str, Any],
    caller: Caller,
    role: Role,
    roles: RoleMap,
    subscribe: Subscriber | None = None,
) -> dict[str, Any]:
    """Run one call; raises Forbidden, InvalidParams, Refused or InternalFailure."""
    check_role(op, caller, role, roles)
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


BOUND_ERRORS = {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}


def _param_problem(model: type[Params], err: Any) -> str:
    # A key may hold a lone surrogate; the message must still be UTF-8.
    where = ".".join(_printable(part) for part in err["loc"]) or "params"
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown parameter"
    if err["type"] in BOUND_ERRORS and isinstance(err.get("input"), int):
        bounds = _integer_bounds(model, err["loc"])
        if bounds is not None:
            return f"{where}: must be an integer from {bounds[0]} to {bounds[1]}"
    return f"{where}: {err['msg']}"


def _printable(part: Any) -> str:
    return str(part).encode("utf-8", "backslashreplace").decode("utf-8")


def _integer_bounds(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[int, int] | None:
    """The (lowest, highest) an integer field at ``loc`` allows, or None if it is not bounded."""
    field: FieldInfo | None = None
    current: type[BaseModel] | None = model
    for part in loc:
        if isinstance(part, int):
            continue  # an index into a list
        if current is None:
            return None
        field = next(
            (f for name, f in current.model_fields.items() if part in (name, f.alias)), None
        )
        if field is None:
            return None
        current = _model_in(field.annotation)
    if field is None:
        return None
    # Field(ge=..., le=...) leaves one constraint object per bound in the metadata.
    low = next((m.ge for m in field.metadata if hasattr(m, "ge")), None)
    high = next((m.le for m in field.metadata if hasattr(m, "le")), None)
    return None if low is None or high is None else (low, high)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds, also inside a list or an optional."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
