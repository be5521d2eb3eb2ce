"""The D-Bus face of the operation table: methods, properties, signals, introspection.

Generated, never hand-written: each operation becomes one method (named by
``dbus_names.method_name``) whose required parameters are typed arguments
in the model's field order, followed by one ``a{sv} options`` argument when
the model has optional parameters. Every method returns one ``a{sv}``: the
same record JSON-RPC returns, in native types (``dbus_types``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dbus_fast import Message
from dbus_fast import introspection as intr
from dbus_fast.constants import ArgDirection, PropertyAccess

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


def _method(op: Operation) -> DBusMethod:
    args, options = [], []
    for name, field in op.params.model_fields.items():
        entry = (name, signature_of(field.annotation))
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
PROPERTIES: tuple[DBusProperty, ...] = (
    DBusProperty(names.MODE, "s", lambda s: s["mode"]),
    DBusProperty(names.SERVER_REACHABLE, "b", lambda s: s["server"]),
    DBusProperty(names.INTERNET_REACHABLE, "b", lambda s: s["internet"]),
    DBusProperty(names.PENDING_ENTRIES, "u", lambda s: s["pending"]["entries"]),
    DBusProperty(names.PENDING_TICKETS, "u", lambda s: s["pending"]["tickets"]),
    DBusProperty(names.OFFLINE_CARD_STORED, "u", lambda s: s["offline_card"]["stored"]),
    DBusProperty(names.OFFLINE_CARD_LIMIT, "u", lambda s: s["offline_card"]["limit"]),
)
PROPERTY_BY_NAME = {p.name: p for p in PROPERTIES}

SIGNALS: dict[str, tuple[tuple[str, str], ...]] = {
    names.MODE_CHANGED: (("mode", "s"),),
    names.SCANNED: (("code", "s"), ("result", "a{sv}")),
    names.SALE_COMPLETED: (("sale_id", "s"), ("summary", "a{sv}")),
    names.SYNC_PROGRESS: (("pending", "u"),),
    names.DEVICE_STATUS: (("device", "s"), ("state", "s"), ("detail", "s")),
}


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
    signals = [
        intr.Signal(name, [intr.Arg(sig, None, arg) for arg, sig in args])
        for name, args in SIGNALS.items()
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
    params = dict(zip((name for name, _ in method.args), body, strict=False))
    if len(body) > len(method.args):
        options = unwrap(body[-1])
        clashes = sorted(set(options) & set(params))
        if clashes:
            raise InvalidParams([f"options.{k}: give it as the {k} argument" for k in clashes])
        params.update(options)
    return params


def signals_for(event: dict[str, Any]) -> list[tuple[str, str, list[Any]]]:
    """The D-Bus signals one Till event becomes (the event fields are set in till.py)."""
    topic = event["topic"]
    rest = {k: v for k, v in event.items() if k != "topic"}
    if topic == "mode":
        return [(names.MODE_CHANGED, "s", [event["mode"]])]
    if topic == "scan":
        code = rest.pop("code")
        return [(names.SCANNED, "sa{sv}", [code, to_vardict(rest)])]
    if topic == "sale" and event.get("event") == "completed":
        sale_id = rest.pop("sale_id")
        return [(names.SALE_COMPLETED, "sa{sv}", [sale_id, to_vardict(rest)])]
    if topic == "sync":
        return [(names.SYNC_PROGRESS, "u", [max(0, int(event["pending"]["entries"]))])]
    if topic == "device" and event.get("event") == "status":
        # Only state changes: garbage reports and print results are not a status.
        device, state, detail = (str(event.get(k, "")) for k in ("device", "state", "detail"))
        return [(names.DEVICE_STATUS, "sss", [device, state, detail])]
    return []
