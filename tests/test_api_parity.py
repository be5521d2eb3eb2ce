"""One operation table, two APIs: every operation exists on both and behaves the same.

Two fresh tills run the same script of calls, one over the socket (JSON-RPC)
and one over D-Bus. Each step must give the same result, or the same refusal
reason and message, or the same invalid-params words. Ids, times and hashes
differ between two tills by nature and are masked; nothing else is.
(Roles: tests/test_dbus_auth.py checks every operation as a cashier on both.)
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from conftest import REPO, RpcError, TillProcess
from dbus_fast import Variant
from dbussims import Bus, Client, DBusCallError, wait_for_name

from tilld.api.dbus_names import SOCKET_ONLY
from tilld.api.dbus_schema import METHODS, dbus_words
from tilld.api.dbus_types import to_vardict
from tilld.api.operations import OPERATIONS

TICKET_CODE = "TK00000000DEMO1"
SALE, SALE2 = "$SALE", "$SALE2"

# Every operation D-Bus serves, with refusals and invalid params among them.
SCRIPT: list[tuple[str, dict[str, Any]]] = [
    ("status.get", {}),
    ("catalog.search", {"query": "kaffe", "limit": 5}),
    ("sale.open", {}),
    ("sale.add", {"sale_id": SALE, "plu": "300", "quantity": 2}),
    ("sale.add", {"sale_id": SALE, "plu": "no-such-plu"}),
    ("sale.add", {"sale_id": SALE, "plu": "300", "barcode": "1"}),
    ("sale.remove", {"sale_id": SALE, "line_id": 1}),
    ("sale.add", {"sale_id": SALE, "plu": "300"}),
    ("sale.list", {}),
    ("sale.get", {"sale_id": SALE}),
    ("sale.pay", {"sale_id": SALE, "method": "swish", "amount": 100}),
    ("sale.pay", {"sale_id": SALE, "method": "cash", "amount": -1}),
    ("sale.pay", {"sale_id": SALE, "method": "cash", "amount": 5000, "reference": "r1"}),
    ("sale.cancel_payment", {"sale_id": SALE, "payment_id": "p1"}),
    ("sale.refund", {"receipt_no": 1, "method": "cash", "lines": [{"line_id": 2}]}),
    ("sale.refund", {"receipt_no": 1, "method": "cash"}),
    (
        "sale.checkout",
        {
            "lines": [{"plu": "300", "quantity": 2}, {"barcode": "7310000000018"}],
            "payments": [
                {"method": "swish-manual", "amount": 5000, "reference": "r2"},
                {"method": "cash", "amount": 10000},
            ],
        },
    ),
    (
        "sale.checkout",
        {"lines": [{"plu": "300"}], "payments": [{"method": "card", "amount": 3500}]},
    ),
    ("sale.checkout", {"lines": [{"plu": "300"}], "payments": [{"method": "cash", "amount": 100}]}),
    ("sale.checkout", {"lines": [{"plu": "300", "barcode": "1"}], "payments": []}),
    ("sale.open", {}),
    ("sale.void", {"sale_id": SALE2, "reason": "customer left"}),
    ("sync.pending", {"limit": 10}),
    ("scan.submit", {"code": TICKET_CODE}),
    ("scan.submit", {"code": TICKET_CODE}),
    ("scans.list", {"state": "pending"}),
    ("admin.sync_now", {"wait": False}),
    ("demo.set", {"target": "server", "state": "down"}),
    ("admin.journal_verify", {}),
    ("admin.acknowledge_rollback", {"technician": "Kim"}),  # refused: nothing went back
    # Refused: no control unit, so no registration in doubt (with and without the options).
    (
        "admin.controlunit_settle",
        {"receipt_no": 1, "technician": "Kim", "action": "register-again"},
    ),
    (
        "admin.controlunit_settle",
        {"receipt_no": 1, "technician": "Kim", "action": "registered", "control_code": "AB12CD34"},
    ),
    ("admin.journal_export", {"format": "csv"}),
    ("float.set", {"amount": 50000, "note": "start of the day"}),
    ("float.set", {"amount": -1}),
    ("admin.report", {"kind": "x"}),
    ("admin.devices", {}),
    # No printer in these tills: the same refusals on both.
    ("receipt.print", {"receipt_no": 1}),
    ("receipt.print", {"receipt_no": 1, "sale_id": SALE}),
    ("receipt.get", {"receipt_no": 1}),
    ("receipt.get", {"receipt_no": 99}),
    ("drawer.open", {}),
    ("admin.printer_test", {}),
    ("admin.terminal_flush", {}),
    ("sale.open", {"training": True}),
    ("admin.reload", {}),
]

VOLATILE = [
    re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),
    re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d|Z)"),
    re.compile(r"\b[0-9a-f]{64}\b"),
    re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d"),  # a receipt's printed date (receipt.get)
]


def masked(value: Any) -> Any:
    """Ids, times and hashes masked; nulls dropped (D-Bus has none, so a{sv} leaves them out)."""
    if isinstance(value, dict):
        return {k: masked(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [masked(v) for v in value]
    if isinstance(value, str):
        for pattern in VOLATILE:
            value = pattern.sub("*", value)
    return value


def outcome_of(call) -> tuple[str, Any]:
    try:
        return ("result", masked(call()))
    except RpcError as exc:
        if exc.code == -32602:
            return ("invalid", exc.error["message"])
        data = exc.error["data"]
        details = {k: v for k, v in data.items() if k not in ("reason", "message")}
        # Over D-Bus the same words name D-Bus methods: `CatalogSearch`, not `catalog.search`.
        return ("refused", (exc.reason, masked(dbus_words(data["message"])), masked(details)))
    except DBusCallError as exc:
        if exc.name == "org.freedesktop.DBus.Error.InvalidArgs":
            return ("invalid", exc.text)
        # The details come through LastRefusal (docs/api.md, "Refusal details").
        last = exc.last_refusal
        assert last["message"] == exc.text and last["reason"] == exc.reason
        details = {
            k: v
            for k, v in last.items()
            if k not in ("reason", "message", "method", "error", "serial")
        }
        return ("refused", (exc.reason, masked(exc.text), masked(details)))


def dbus_args(name: str, params: dict[str, Any]) -> tuple[str, list[Any]]:
    method = METHODS[METHODS_BY_OP[name]]
    args = [
        [to_vardict(v) for v in params[arg]] if sig == "aa{sv}" else params[arg]
        for arg, sig in method.args
    ]
    if not method.options:
        return method.signature, args
    opts = {}
    for key, sig in method.options:
        if key in params:
            value = params[key]
            opts[key] = Variant(sig, [to_vardict(v) for v in value] if sig == "aa{sv}" else value)
    return method.signature, [*args, opts]


@pytest.fixture
def two_tills(short_tmp):
    socket_till = TillProcess(_dir(short_tmp, "a")).start()
    bus = Bus(_dir(short_tmp, "b"))
    dbus_till = TillProcess(_dir(short_tmp, "b"), {"api": {"dbus": bus.address}}).start()
    client = Client(bus.address)
    wait_for_name(client)
    yield socket_till, client
    client.close()
    dbus_till.kill()
    socket_till.kill()
    bus.stop()


def _dir(base, name):
    path = base / name
    path.mkdir(exist_ok=True)
    return path


def test_the_script_covers_every_operation_dbus_serves():
    scripted = {name for name, _ in SCRIPT}
    served = {op.name for op in OPERATIONS} - set(SOCKET_ONLY)
    assert scripted == served
    assert {m.operation.name for m in METHODS.values()} == served
    doc = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    for name, why in SOCKET_ONLY.items():
        assert f"`{name}` is socket-only" in doc, why


def test_the_same_calls_give_the_same_outcomes_on_both_apis(two_tills):
    socket_till, dbus = two_tills
    rpc = socket_till.client()
    latest: dict[str, str] = {}

    def over_socket(name: str, params: dict[str, Any]) -> Any:
        result = rpc.call(name, **params)
        if name == "sale.open":
            latest["socket"] = result["sale_id"]
        return result

    def over_dbus(name: str, params: dict[str, Any]) -> Any:
        signature, args = dbus_args(name, params)
        try:
            result = dbus.call(METHODS_BY_OP[name], signature, *args)
        except DBusCallError as exc:
            exc.last_refusal = dbus.call("LastRefusal")
            raise
        if name == "sale.open":
            latest["dbus"] = result["sale_id"]
        return result

    socket_outcomes = _run(over_socket, latest, "socket")
    dbus_outcomes = _run(over_dbus, latest, "dbus")
    rpc.close()
    for (name, on_socket), (_, on_dbus) in zip(socket_outcomes, dbus_outcomes, strict=True):
        assert on_socket == on_dbus, name
    kinds = {kind for _, (kind, _) in socket_outcomes}
    assert kinds == {"result", "refused", "invalid"}  # the script exercises all three


METHODS_BY_OP = {m.operation.name: m.name for m in METHODS.values()}


def _run(call, latest: dict[str, str], side: str) -> list[tuple[str, Any]]:
    sales: list[str] = []
    outcomes = []
    for name, params in SCRIPT:
        ids = {SALE: sales[0] if sales else "", SALE2: sales[1] if len(sales) > 1 else ""}
        params = {k: ids.get(v, v) if isinstance(v, str) else v for k, v in params.items()}
        outcomes.append((name, outcome_of(lambda name=name, params=params: call(name, params))))
        if name == "sale.open":
            sales.append(latest[side])
    return outcomes
