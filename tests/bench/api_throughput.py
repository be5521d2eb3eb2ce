"""Benchmark: status.get over the socket (JSON-RPC) and StatusGet over D-Bus, side by side.

    .venv/bin/python tests/bench/api_throughput.py [--calls N] [--clients 20] [--append FILE]

One till (a subprocess) serves both APIs; the D-Bus side goes through a real
private dbus-daemon with the shipped policy, so every D-Bus call is two hops
(client -> bus -> tilld) where a socket call is one. Clients are asyncio in
this process: sequential latency (p50/p99) and calls/s on one connection,
then calls/s with N concurrent connections. Not part of the test suite: the
figures depend on the machine; compare the two columns, not the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from conftest import TillProcess
from dbus_fast import Message
from dbus_fast.aio import MessageBus
from dbussims import Bus, Client, wait_for_name

from tilld.api import dbus_names as names


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class SocketClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.id = reader, writer, 0

    @classmethod
    async def open(cls, path: Path) -> SocketClient:
        return cls(*await asyncio.open_unix_connection(str(path), limit=1 << 22))

    async def status(self) -> None:
        self.id += 1
        request = {"jsonrpc": "2.0", "id": self.id, "method": "status.get"}
        self.writer.write(json.dumps(request).encode() + b"\n")
        reply = json.loads(await self.reader.readline())
        assert "result" in reply, reply

    def close(self) -> None:
        self.writer.close()


class DBusClient:
    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus

    @classmethod
    async def open(cls, address: str) -> DBusClient:
        return cls(await MessageBus(bus_address=address).connect())

    async def status(self) -> None:
        call = Message(
            destination=names.BUS_NAME,
            path=names.OBJECT_PATH,
            interface=names.INTERFACE,
            member="StatusGet",
        )
        reply = await self.bus.call(call)
        assert reply is not None and reply.error_name is None, reply

    def close(self) -> None:
        self.bus.disconnect()


async def sequential(client, calls: int) -> tuple[list[float], float]:
    for _ in range(50):  # warm-up: caches, credentials lookup
        await client.status()
    samples = []
    started = time.perf_counter()
    for _ in range(calls):
        t = time.perf_counter()
        await client.status()
        samples.append(time.perf_counter() - t)
    return samples, calls / (time.perf_counter() - started)


async def concurrent(open_client, clients: int, calls: int) -> float:
    opened = [await open_client() for _ in range(clients)]
    for c in opened:
        await c.status()
    per_client = max(1, calls // clients)

    async def run(c) -> None:
        for _ in range(per_client):
            await c.status()

    started = time.perf_counter()
    await asyncio.gather(*(run(c) for c in opened))
    rate = per_client * clients / (time.perf_counter() - started)
    for c in opened:
        c.close()
    return rate


async def measure(socket_path: Path, address: str, calls: int, clients: int) -> dict:
    figures = {}
    for name, open_client in (
        ("socket JSON-RPC status.get", lambda: SocketClient.open(socket_path)),
        ("D-Bus StatusGet", lambda: DBusClient.open(address)),
    ):
        client = await open_client()
        samples, rate = await sequential(client, calls)
        client.close()
        figures[name] = {
            "p50_ms": percentile(samples, 50) * 1000,
            "p99_ms": percentile(samples, 99) * 1000,
            "seq_per_s": rate,
            "conc_per_s": await concurrent(open_client, clients, calls),
        }
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--append", help="append the results as Markdown to this file")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="tilld-bench-"))
    bus = Bus(base)
    till = TillProcess(base, {"api": {"dbus": bus.address}}).start()
    try:
        probe = Client(bus.address)
        wait_for_name(probe)
        probe.close()
        figures = asyncio.run(measure(till.socket_path, bus.address, args.calls, args.clients))
    finally:
        till.stop()
        bus.stop()
        shutil.rmtree(base, ignore_errors=True)
    lines = [
        "\n## The two APIs: status.get over the socket and over D-Bus\n",
        f"{args.calls} sequential calls on one connection, then {args.clients} concurrent "
        "connections; clients and daemon on the same machine. D-Bus goes through dbus-daemon "
        "(two hops per call), the socket straight to tilld.\n",
        f"| API | p50 ms | p99 ms | calls/s sequential | calls/s {args.clients} clients |",
        "|---|---|---|---|---|",
    ]
    for name, f in figures.items():
        lines.append(
            f"| {name} | {f['p50_ms']:.2f} | {f['p99_ms']:.2f} | "
            f"{f['seq_per_s']:.0f} | {f['conc_per_s']:.0f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.append:
        with open(args.append, "a", encoding="utf-8") as out:
            out.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
