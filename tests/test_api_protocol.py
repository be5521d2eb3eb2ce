"""The socket's JSON-RPC framing and error handling: the daemon never dies of a client."""

from __future__ import annotations

import json
import socket

import pytest
from conftest import Client, RpcError


def raw_reply(client: Client, data: bytes) -> dict:
    client.send_raw(data)
    return client.read()


def test_malformed_json_is_a_parse_error_and_the_connection_stays_usable(client):
    reply = raw_reply(client, b"{not json\n")
    assert reply["error"]["code"] == -32700 and reply["id"] is None
    assert client.call("status.get")["till_id"] == "till-test"


def test_invalid_utf8_is_a_parse_error(client):
    assert raw_reply(client, b'{"jsonrpc": "2.0", "\xff\xfe": 1}\n')["error"]["code"] == -32700


@pytest.mark.parametrize(
    "request_",
    [
        [1, 2],
        "just a string",
        {"jsonrpc": "1.0", "id": 1, "method": "status.get"},
        {"jsonrpc": "2.0", "id": 1, "method": 42},
        {"jsonrpc": "2.0", "id": {"no": "objects"}, "method": "status.get"},
    ],
)
def test_requests_that_are_not_json_rpc_are_invalid_requests(client, request_):
    reply = raw_reply(client, json.dumps(request_).encode() + b"\n")
    replies = reply if isinstance(reply, list) else [reply]
    assert all(r["error"]["code"] == -32600 for r in replies)


def test_unknown_method_is_method_not_found(client):
    with pytest.raises(RpcError) as err:
        client.call("sale.teleport")
    assert err.value.code == -32601


@pytest.mark.parametrize(
    ("params", "bad"),
    [
        ({"method": "cash", "amount": 10.5}, "amount"),
        ({"method": "cash", "amount": -100}, "amount"),
        ({"method": "cash", "amount": "100"}, "amount"),
        ({"method": "cash", "amount": True}, "amount"),
        ({"method": "bitcoin", "amount": 100}, "method"),
        ({"method": "cash", "amount": 100, "tip": 5}, "tip"),
    ],
)
def test_wrong_types_and_bad_money_are_invalid_params_naming_the_field(client, params, bad):
    sale_id = client.call("sale.open")["sale_id"]
    client.call("sale.add", sale_id=sale_id, plu="300")
    reply = client.request("sale.pay", sale_id=sale_id, **params)
    assert reply["error"]["code"] == -32602
    assert any(e.startswith(bad) for e in reply["error"]["data"]["errors"]), reply
    assert client.call("sale.get", sale_id=sale_id)["paid"] == 0


def test_params_must_be_named(client):
    reply = raw_reply(
        client, b'{"jsonrpc":"2.0","id":7,"method":"catalog.search","params":["x"]}\n'
    )
    assert reply["id"] == 7 and reply["error"]["code"] == -32602


def test_domain_refusal_has_code_reason_and_plain_message(client):
    sale_id = client.call("sale.open")["sale_id"]
    reply = client.request("sale.add", sale_id=sale_id, plu="999999")
    error = reply["error"]
    assert error["code"] == -32010
    assert error["data"]["reason"] == "unknown-article"
    assert "999999" in error["data"]["message"]


def test_request_over_one_mebibyte_is_refused_and_the_connection_stays_usable(client):
    huge = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "catalog.search", "params": {"query": "x" * 2**21}}
    ).encode()
    reply = raw_reply(client, huge + b"\n")
    assert reply["error"]["code"] == -32600 and "1 MiB" in reply["error"]["message"]
    assert client.call("status.get")["mode"] == "no-internet"


def test_request_split_across_slow_partial_writes_is_answered(client):
    message = b'{"jsonrpc": "2.0", "id": 5, "method": "status.get"}\n'
    for i in range(0, len(message), 7):
        client.send_raw(message[i : i + 7])
    assert client.read()["result"]["till_id"] == "till-test"


def test_client_that_disconnects_mid_request_does_not_hurt_the_daemon(till):
    for _ in range(20):
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(till.socket_path))
        s.sendall(b'{"jsonrpc": "2.0", "id": 1, "method": "sale.op')
        s.close()
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(till.socket_path))
        s.sendall(b'{"jsonrpc": "2.0", "id": 1, "method": "sale.open"}\n')
        s.close()  # gone before the answer
    c = till.client()
    assert c.call("status.get")["till_id"] == "till-test"
    c.close()


def test_notifications_get_no_reply_and_batches_get_one_reply_each(client):
    batch = [
        {"jsonrpc": "2.0", "id": "a", "method": "status.get"},
        {"jsonrpc": "2.0", "method": "status.get"},
        {"jsonrpc": "2.0", "id": "b", "method": "nope"},
    ]
    replies = raw_reply(client, json.dumps(batch).encode() + b"\n")
    assert [r["id"] for r in replies] == ["a", "b"]
    assert "result" in replies[0] and replies[1]["error"]["code"] == -32601


def test_subscriber_gets_only_its_topics(till, client):
    listener = till.client()
    assert listener.call("events.subscribe", topics=["mode"]) == {"topics": ["mode"]}
    sale_id = client.call("sale.open")["sale_id"]
    client.call("sale.add", sale_id=sale_id, plu="300")
    client.call("sale.pay", sale_id=sale_id, method="cash", amount=3500)
    listener.sock.settimeout(0.5)
    with pytest.raises(TimeoutError):
        listener.read()
    listener.close()


def test_many_clients_at_once_are_all_served(till):
    clients = [till.client() for _ in range(100)]
    for c in clients:
        c.send_raw(b'{"jsonrpc":"2.0","id":1,"method":"status.get"}\n')
    assert all(c.read()["result"]["till_id"] == "till-test" for c in clients)
    for c in clients:
        c.close()


def test_subscribing_again_replaces_the_topics(till, client):
    listener = till.client()
    listener.call("events.subscribe", topics=["mode"])
    assert listener.call("events.subscribe", topics=["sale"]) == {"topics": ["sale"]}
    sale_id = client.call("sale.open")["sale_id"]
    client.call("sale.add", sale_id=sale_id, plu="300")
    client.call("sale.pay", sale_id=sale_id, method="cash", amount=3500)
    events = [listener.next_event() for _ in range(3)]
    assert [(e["topic"], e["event"], e["sale_id"]) for e in events] == [
        ("sale", "opened", sale_id),
        ("sale", "line-added", sale_id),
        ("sale", "completed", sale_id),
    ]
    listener.close()
