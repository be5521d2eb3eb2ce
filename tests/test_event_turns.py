"""A burst of events leaves the event loop a turn between every few of them.

Sync answers a batch of scans with a `registered` event each. A pump that
sends a whole burst in one go holds the loop for it (10-26 ms were measured
with a few hundred), and a gate's next scan is read only after it. Each pump
sends at most EVENTS_PER_TURN events before the loop runs what else is ready:
here, a callback queued right after the burst, which counts what has gone out
by then. In-process till (tests/inprocess.py) with its real socket API and a
real dbus-daemon.
"""

from __future__ import annotations

import asyncio
import json
import socket
import tempfile
from pathlib import Path

import pytest
from dbussims import Bus
from inprocess import running_till

from tilld.events import EVENTS_PER_TURN

BURST = 10 * EVENTS_PER_TURN


def publish_burst(events) -> None:
    for i in range(BURST):
        events.publish(
            "scan", event="registered", code=f"TKBURST{i:05d}", status="valid", detail=""
        )


async def subscribed_socket(path: Path) -> socket.socket:
    """A client of the till's socket, subscribed to scan events, reply read."""
    loop = asyncio.get_running_loop()
    client = socket.socket(socket.AF_UNIX)
    client.setblocking(False)
    await loop.sock_connect(client, str(path))
    request = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "events.subscribe",
        "params": {"topics": ["scan"]},
    }
    await loop.sock_sendall(client, json.dumps(request).encode() + b"\n")
    reply = b""
    while not reply.endswith(b"\n"):
        reply += await loop.sock_recv(client, 4096)
    assert json.loads(reply)["result"]["topics"] == ["scan"], reply
    return client


def lines_waiting(client: socket.socket) -> int:
    """Events the till has written to the client so far (read without taking them)."""
    try:
        return client.recv(1 << 20, socket.MSG_PEEK | socket.MSG_DONTWAIT).count(b"\n")
    except BlockingIOError:
        return 0


async def read_lines(client: socket.socket, n: int) -> list[dict]:
    loop = asyncio.get_running_loop()
    data = b""
    while data.count(b"\n") < n:
        data += await asyncio.wait_for(loop.sock_recv(client, 1 << 20), 10)
    return [json.loads(line) for line in data.splitlines()]


def test_the_socket_sends_a_burst_a_few_events_a_turn(tmp_path):
    async def main() -> None:
        async with running_till(tmp_path) as running:
            client = await subscribed_socket(tmp_path / "tilld.sock")
            try:
                await asyncio.sleep(0.2)  # whatever the start published has gone out
                before = lines_waiting(client)
                seen: list[int] = []
                publish_burst(running.till.events)
                asyncio.get_running_loop().call_soon(lambda: seen.append(lines_waiting(client)))
                events = await read_lines(client, before + BURST)
                # The callback queued after the burst ran once the pump had
                # sent one turn's worth, not the whole burst.
                assert seen == [before + EVENTS_PER_TURN]
                codes = [e["params"]["code"] for e in events[before:]]
                assert codes == [f"TKBURST{i:05d}" for i in range(BURST)]
            finally:
                client.close()

    asyncio.run(main())


@pytest.fixture
def bus():
    # dbus-daemon's socket path must fit in sun_path: not under pytest's tmp_path.
    with tempfile.TemporaryDirectory(prefix="tilld-turns-") as folder:
        bus = Bus(Path(folder))
        try:
            yield bus
        finally:
            bus.stop()


def test_d_bus_sends_a_burst_as_signals_a_few_a_turn_and_the_properties_after(tmp_path, bus):
    async def main() -> None:
        async with running_till(tmp_path, {"api": {"dbus": bus.address}}) as running:
            service = running.daemon.dbus
            await running.wait_for(lambda: service.bus is not None, what="on the bus")
            await asyncio.sleep(0.2)  # whatever the start published has gone out
            emitted: list[str] = []
            properties_read = 0
            emit, read_properties = service._emit, service._read_properties

            def counted_emit(member: str, signature: str, body: list) -> None:
                emitted.append(member)
                emit(member, signature, body)

            def counted_properties() -> dict:
                nonlocal properties_read
                properties_read += 1
                return read_properties()

            service._emit = counted_emit
            service._read_properties = counted_properties
            seen: list[int] = []
            publish_burst(running.till.events)
            asyncio.get_running_loop().call_soon(lambda: seen.append(len(emitted)))
            await running.wait_for(lambda: len(emitted) >= BURST, what="the burst's signals")
            await asyncio.sleep(0.1)
            assert seen == [EVENTS_PER_TURN]
            assert emitted == ["ScanRegistered"] * BURST
            # The till's status is read for PropertiesChanged after the burst
            # (and every few turns of it), not once a turn.
            assert 1 <= properties_read < BURST // EVENTS_PER_TURN

    asyncio.run(main())
