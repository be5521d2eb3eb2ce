"""Python values <-> native D-Bus values, for the D-Bus adapter and its clients.

The rules (docs/api.md, "D-Bus types"):
- a record (dict) is ``a{sv}``; a key whose value is null is left out,
  because D-Bus has no null;
- a list of records is ``aa{sv}``, of strings ``as``, of integers ``ax``
  (what a code generator can use); an empty list has its key's type
  (STRING_LISTS names the string lists, every other list holds records);
- integers are ``x`` (int64: öre amounts, counts, ids), strings ``s``,
  booleans ``b``, fractions ``d``.
Parameters arrive typed by the method's signature and go through the same
strict pydantic model as JSON-RPC params, so the same value is accepted or
refused with the same words on both APIs.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal

from dbus_fast import Variant
from pydantic import BaseModel

# Keys whose lists hold strings (when empty they still need a type).
STRING_LISTS = frozenset(
    {
        "ticket_codes",
        "problems",
        "errors",
        "topics",
        "changed",
        "needs_restart",
        "restart_required",
        "applied",
        "slip",
        "terminal_receipt",
        "original_cards",
        "reservation_ids",
        "codes",
        "missing",
    }
)
_ITEM_TYPES = ((bool, "b"), (int, "x"), (float, "d"), (str, "s"), (dict, "a{sv}"))


def list_signature(items: list[Any], key: str | None) -> str:
    """The array type of a list: by what it holds, or by its key when empty."""
    if not items:
        return "as" if key in STRING_LISTS else "aa{sv}"
    for kind, sig in _ITEM_TYPES:
        if all(
            isinstance(item, kind) and (kind is bool) == isinstance(item, bool) for item in items
        ):
            return "a" + sig
    return "av"  # mixed items: never made by tilld, still sendable


def to_variant(value: Any, key: str | None = None) -> Variant:
    if isinstance(value, bool):
        return Variant("b", value)
    if isinstance(value, int):
        return Variant("x", value)
    if isinstance(value, float):
        return Variant("d", value)
    if isinstance(value, str):
        return Variant("s", value)
    if isinstance(value, dict):
        return Variant("a{sv}", to_vardict(value))
    if isinstance(value, list | tuple):
        items = [item for item in value if item is not None]
        sig = list_signature(items, key)
        if sig == "aa{sv}":
            return Variant(sig, [to_vardict(item) for item in items])
        if sig == "av":
            return Variant(sig, [to_variant(item) for item in items])
        return Variant(sig, items)
    # Only JSON-shaped values leave the Till; anything else is a bug worth seeing.
    raise TypeError(f"no D-Bus type for {type(value).__name__}")


def to_vardict(record: dict[str, Any]) -> dict[str, Variant]:
    return {
        str(key): to_variant(value, str(key)) for key, value in record.items() if value is not None
    }


def unwrap(value: Any) -> Any:
    """Plain Python values from D-Bus ones: variants opened, dicts and lists walked."""
    if isinstance(value, Variant):
        return unwrap(value.value)
    if isinstance(value, dict):
        return {key: unwrap(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [unwrap(item) for item in value]
    return value


def signature_of(annotation: Any) -> str:
    """The D-Bus type of a parameter model's field annotation."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        # StrictInt and friends: the constraint is pydantic's, the type is the first argument.
        return signature_of(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return signature_of(members[0])
    elif origin is Literal:
        if all(isinstance(v, str) for v in typing.get_args(annotation)):
            return "s"
    elif origin is list:
        (item,) = typing.get_args(annotation)
        return "a" + signature_of(item)
    elif annotation is bool:
        return "b"
    elif annotation is int:
        return "x"
    elif annotation is str:
        return "s"
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "a{sv}"
    raise TypeError(f"no D-Bus type for parameter annotation {annotation!r}")
