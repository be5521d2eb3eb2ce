"""The D-Bus face of the operation table: methods, properties, signals, introspection.

Generated, never hand-written: each operation becomes one method (named by
``dbus_names.method_name``) whose required parameters are typed arguments
in the model's field order, followed by one ``a{sv} options`` argument when
the model has optional parameters. Every method returns one ``a{sv}``: the
same record JSON-RPC returns, in native types (``dbus_types``).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dbus_fast import Message
from dbus_fast import introspection as intr
from dbus_fast.constants import ArgDirection, PropertyAccess

from ..events import KINDS
from . import dbus_names as names
from .calls import InvalidParams
from .dbus_names import (
    INTERFACE,
    OBJECT_PATH,
    OPTIONS_ANNOTATION,
    PEER_INTERFACE,
    PROPERTIES_INTERFACE,
    SOCKET_ONLY,
    method_name,
)
from .dbus_types import signature_of, to_vardict, unwrap
from .operations import OPERATIONS, Operation


@dataclass(frozen=True)
class DBusMethod:
    name: str
    operation: Operation
    args: tuple[tuple[str, str], ...]  # required params: (name, D-Bus type), in order
    options: tuple[tuple[str, str], ...]  # optional params, passed in a{sv} options

    @property
    def signature(self) -> str:
        return "".join(sig for _, sig in self.args) + ("a{sv}" if self.options else "")

    @property
    def signatures(self) -> tuple[str, ...]:
        """What a call may carry: options may be left out entirely (dbus-send cannot build them)."""
        required = "".join(sig for _, sig in self.args)
        return (self.signature, required) if self.options else (self.signature,)


# No D-Bus call waits on a person or a peer: a model's ``wait`` is always
# false over D-Bus and is not in the XML (operations.Waiting, tilld/jobs.py).
NEVER_WAITS = "wait"


def _method(op: Operation) -> DBusMethod:
    args, options = [], []
    for name, field in op.params.model_fields.items():
        if name == NEVER_WAITS:
            continue
        # The wire name: `copy`, not the Python name `as_copy`.
        entry = (field.alias or name, signature_of(field.annotation))
        (args if field.is_required() else options).append(entry)
    return DBusMethod(method_name(op.name), op, tuple(args), tuple(options))


METHODS: dict[str, DBusMethod] = {
    m.name: m for m in (_method(op) for op in OPERATIONS if op.name not in SOCKET_ONLY)
}


@dataclass(frozen=True)
class DBusProperty:
    name: str
    signature: str
    read: Callable[[dict[str, Any]], Any]  # from the status.get record


# Read from status.get, so a property never says something status.get does not.
# Integers are x everywhere (properties, results, signals); a time not known is "".
PROPERTIES: tuple[DBusProperty, ...] = (
    DBusProperty(names.MODE, "s", lambda s: s["mode"]),
    DBusProperty(names.MODE_SINCE, "s", lambda s: s["mode_since"] or ""),
    DBusProperty(names.SERVER_REACHABLE, "b", lambda s: s["server"]),
    DBusProperty(names.INTERNET_REACHABLE, "b", lambda s: s["internet"]),
    DBusProperty(names.PENDING_ENTRIES, "x", lambda s: s["pending"]["entries"]),
    DBusProperty(names.PENDING_TICKETS, "x", lambda s: s["pending"]["tickets"]),
    DBusProperty(names.PENDING_SCANS, "x", lambda s: s["pending"]["scans"]),
    DBusProperty(names.OLDEST_PENDING_SINCE, "s", lambda s: s["oldest_pending_since"] or ""),
    DBusProperty(names.LAST_SYNC_SUCCESS, "s", lambda s: s["sync"]["last_success"] or ""),
    DBusProperty(names.OFFLINE_CARD_STORED, "x", lambda s: s["offline_card"]["stored"]),
    DBusProperty(names.OFFLINE_CARD_LIMIT, "x", lambda s: s["offline_card"]["limit"]),
)
PROPERTY_BY_NAME = {p.name: p for p in PROPERTIES}

# The contract's signals in their first shape (CONTRACT.md, "D-Bus").
SIGNALS: dict[str, tuple[tuple[str, str], ...]] = {
    names.MODE_CHANGED: (("mode", "s"),),
    names.SCANNED: (("code", "s"), ("result", "a{sv}")),
    names.SALE_COMPLETED: (("sale_id", "s"), ("summary", "a{sv}")),
    names.SYNC_PROGRESS: (("pending", "x"),),
    names.DEVICE_STATUS: (("device", "s"), ("state", "s"), ("detail", "s")),
}


@dataclass(frozen=True)
class EventSignal:
    """The signal one event kind becomes, with every fact the socket's event has."""

    topic: str
    kind: str
    name: str
    lead: str | None  # a fact given as a first "s" argument (the contract's shape), or None

    @property
    def args(self) -> tuple[tuple[str, str], ...]:
        return ((self.lead, "s"),) if self.lead else ()

    @property
    def signature(self) -> str:
        return "".join(sig for _, sig in self.args) + "a{sv}"


# Contract signals that already carry every fact: they are their kind's signal.
_FULL_CONTRACT = {
    ("scan", "scanned"): (names.SCANNED, "code"),
    ("sale", "completed"): (names.SALE_COMPLETED, "sale_id"),
}


def _event_signal(topic: str, kind: str) -> EventSignal:
    if (topic, kind) in _FULL_CONTRACT:
        name, lead = _FULL_CONTRACT[topic, kind]
        return EventSignal(topic, kind, name, lead)
    name = names.signal_name(topic, kind)
    if name in SIGNALS:
        name += names.DETAILS_SUFFIX  # ModeChanged(s) stays; ModeChangedDetails has it all
    return EventSignal(topic, kind, name, None)


EVENT_SIGNALS: dict[tuple[str, str], EventSignal] = {
    (topic, kind): _event_signal(topic, kind) for topic, kinds in KINDS.items() for kind in kinds
}
EVENT_SIGNAL_BY_NAME = {s.name: s for s in EVENT_SIGNALS.values()}

_OPERATION_WORDS = re.compile(
    r"\b("
    + "|".join(re.escape(op.name) for op in sorted(OPERATIONS, key=lambda o: -len(o.name)))
    + r")\b"
)


def dbus_words(text: str) -> str:
    """A message as a D-Bus client reads it: `sale.open` becomes `SaleOpen`."""
    return _OPERATION_WORDS.sub(lambda m: method_name(m.group(1)), text)


def event_facts(event: dict[str, Any]) -> dict[str, Any]:
    """What an event tells beside its topic and kind (D-Bus has no null: None is left out)."""
    return {k: v for k, v in event.items() if k not in ("topic", "event") and v is not None}


# What LastRefusal answers (docs/api.md, "Refusal details"); empty when none.
REFUSAL_KEYS = (
    "method: s, error: s, reason: s, message: s, serial: x, and the refusal's own details "
    "(fallback_plu: s, fallback_name: s, stored: x, limit: x, due: x, left: x, problems: as, "
    "...; errors: as for InvalidArgs)"
)


def _options_doc(options: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"{name}: {sig}" for name, sig in options)


def till_interface() -> intr.Interface:
    methods = []
    for m in METHODS.values():
        in_args = [intr.Arg(sig, ArgDirection.IN, name) for name, sig in m.args]
        if m.options:
            in_args.append(
                intr.Arg(
                    "a{sv}",
                    ArgDirection.IN,
                    "options",
                    annotations={OPTIONS_ANNOTATION: _options_doc(m.options)},
                )
            )
        out_args = [intr.Arg("a{sv}", ArgDirection.OUT, "result")]
        methods.append(intr.Method(m.name, in_args, out_args))
    methods.append(
        intr.Method(
            names.LAST_REFUSAL,
            [],
            [
                intr.Arg(
                    "a{sv}",
                    ArgDirection.OUT,
                    "refusal",
                    annotations={names.KEYS_ANNOTATION: REFUSAL_KEYS},
                )
            ],
        )
    )
    signals = [
        intr.Signal(name, [intr.Arg(sig, None, arg) for arg, sig in args])
        for name, args in SIGNALS.items()
    ]
    signals += [
        intr.Signal(
            s.name, [intr.Arg(sig, None, arg) for arg, sig in (*s.args, ("facts", "a{sv}"))]
        )
        for s in EVENT_SIGNALS.values()
        if s.name not in SIGNALS
    ]
    properties = [
        intr.Property(
            p.name,
            p.signature,
            PropertyAccess.READ,
            annotations={names.EMITS_CHANGED_SIGNAL: "true"},
        )
        for p in PROPERTIES
    ]
    return intr.Interface(INTERFACE, methods, signals, properties)


def _standard_interfaces() -> list[intr.Interface]:
    def arg(sig: str, direction: ArgDirection | None, name: str) -> intr.Arg:
        return intr.Arg(sig, direction, name)

    IN, OUT = ArgDirection.IN, ArgDirection.OUT
    return [
        intr.Interface(
            names.INTROSPECTABLE_INTERFACE,
            [intr.Method(names.INTROSPECT, [], [arg("s", OUT, "xml_data")])],
        ),
        intr.Interface(
            PEER_INTERFACE,
            [
                intr.Method(names.PING),
                intr.Method(names.GET_MACHINE_ID, [], [arg("s", OUT, "machine_uuid")]),
            ],
        ),
        intr.Interface(
            PROPERTIES_INTERFACE,
            [
                intr.Method(
                    names.PROPERTIES_GET,
                    [arg("s", IN, "interface_name"), arg("s", IN, "property_name")],
                    [arg("v", OUT, "value")],
                ),
                intr.Method(
                    names.PROPERTIES_GET_ALL,
                    [arg("s", IN, "interface_name")],
                    [arg("a{sv}", OUT, "props")],
                ),
                intr.Method(
                    names.PROPERTIES_SET,
                    [
                        arg("s", IN, "interface_name"),
                        arg("s", IN, "property_name"),
                        arg("v", IN, "value"),
                    ],
                ),
            ],
            [
                intr.Signal(
                    names.PROPERTIES_CHANGED,
                    [
                        arg("s", None, "interface_name"),
                        arg("a{sv}", None, "changed_properties"),
                        arg("as", None, "invalidated_properties"),
                    ],
                )
            ],
        ),
    ]


def introspect(path: str) -> str | None:
    """The introspection XML of ``path``: the object itself, or a node on the way to it."""
    if path == OBJECT_PATH:
        return _xml(intr.Node(None, [*_standard_interfaces(), till_interface()]))
    prefix = "" if path == "/" else path
    if OBJECT_PATH.startswith(prefix + "/"):
        node = intr.Node(None, _standard_interfaces()[:1])
        child = OBJECT_PATH.removeprefix(prefix + "/").split("/")[0]
        node.nodes.append(intr.Node(child, is_root=False))
        return _xml(node)
    return None


DOCTYPE = (
    '<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"\n'
    '"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">\n'
)


def _xml(node: intr.Node) -> str:
    # dbus-fast's own tostring() indents unevenly; docs/dbus/ should read well.
    element = node.to_xml()
    ET.indent(element, "  ")
    return DOCTYPE + ET.tostring(element, encoding="unicode") + "\n"


def params_of(method: DBusMethod, msg: Message) -> dict[str, Any]:
    """The call's arguments as the named params the operation's model validates."""
    if msg.signature not in method.signatures:
        wanted = ", ".join(f"{sig} {name}" for name, sig in method.args)
        if method.options:
            wanted += (", " if wanted else "") + "a{sv} options"
        raise InvalidParams(
            [f"{method.name} takes ({wanted}), not signature {msg.signature!r}; see docs/api.md"]
        )
    body = list(msg.body)
    # Unwrapped too: a required list of records (a checkout's lines) holds variants.
    names_ = (name for name, _ in method.args)
    params = {name: unwrap(value) for name, value in zip(names_, body, strict=False)}
    if len(body) > len(method.args):
        options = unwrap(body[-1])
        clashes = sorted(set(options) & set(params))
        if clashes:
            raise InvalidParams([f"options.{k}: give it as the {k} argument" for k in clashes])
        if NEVER_WAITS in options:
            raise InvalidParams(
                [f"options.{NEVER_WAITS}: D-Bus calls never wait; the outcome arrives as a signal"]
            )
        params.update(options)
    if NEVER_WAITS in method.operation.params.model_fields:
        params[NEVER_WAITS] = False
    return params


def signals_for(event: dict[str, Any]) -> list[tuple[str, str, list[Any]]]:
    """The D-Bus signals one Till event becomes: its kind's signal, and the contract's shape."""
    topic, kind = event["topic"], event.get("event")
    facts = event_facts(event)
    # A job's refusal is read by a D-Bus client: its words name D-Bus methods.
    if isinstance(facts.get("message"), str):
        facts["message"] = dbus_words(facts["message"])
    if isinstance(facts.get("data"), dict) and isinstance(facts["data"].get("message"), str):
        facts["data"] = {**facts["data"], "message": dbus_words(facts["data"]["message"])}
    out: list[tuple[str, str, list[Any]]] = []
    if topic == "mode":
        out.append((names.MODE_CHANGED, "s", [event["mode"]]))
    elif topic == "sync":
        out.append((names.SYNC_PROGRESS, "x", [int(event["pending"]["entries"])]))
    elif topic == "device" and kind == "status":
        device, state, detail = (str(event.get(k, "")) for k in ("device", "state", "detail"))
        out.append((names.DEVICE_STATUS, "sss", [device, state, detail]))
    signal = EVENT_SIGNALS.get((topic, str(kind)))
    if signal is None:
        return out  # not in events.KINDS: logged where it was published
    if signal.lead is not None:
        lead = str(facts.pop(signal.lead, ""))
        out.append((signal.name, signal.signature, [lead, to_vardict(facts)]))
    elif signal.name not in {name for name, _, _ in out}:
        out.append((signal.name, signal.signature, [to_vardict(facts)]))
    return out
