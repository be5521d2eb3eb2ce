"""Benchmark: status.get calls per second over the Unix socket, one client and twenty.

    .venv/bin/python tests/bench/socket_throughput.py [--seconds S] [--clients N] [--append FILE]

Clients are separate processes (no shared GIL with each other), each on its
own connection, calling as fast as answers come back. Baseline: a bare
asyncio Unix-socket server in Python that parses each request line and
answers with a canned copy of tilld's own status.get answer, driven by the
same clients in the same run: the floor of one JSON line per call in Python,
without tilld's dispatch, authorisation and status building.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from conftest import REPO, Client, TillProcess
from report import append_section, rate, section, table
from sims import wait_for

DBUS_BUILD = (REPO / "tilld" / "api" / "dbus.py").exists()


def serve_canned(path: str, reply_file: str) -> None:
    """The baseline server: one JSON-RPC line in, the canned status line out."""
    canned = json.loads(Path(reply_file).read_text())

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            request = json.loads(line)
            reply = {"jsonrpc": "2.0", "id": request["id"], "result": canned}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_unix_server(handle, path)
        print("listening", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def calls_for(path: str, start_at: float, seconds: float, results) -> None:
    client = Client(Path(path))
    while time.time() < start_at:
        time.sleep(0.001)
    calls = 0
    deadline = start_at + seconds
    while time.time() < deadline:
        client.call("status.get")
        calls += 1
    client.close()
    results.put(calls)


def calls_per_second(path: Path, clients: int, seconds: float) -> float:
    """All clients connect, start together and call for ``seconds``; total calls/s."""
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    start_at = time.time() + 0.5 + 0.05 * clients
    workers = [
        context.Process(target=calls_for, args=(str(path), start_at, seconds, results))
        for _ in range(clients)
    ]
    for worker in workers:
        worker.start()
    total = sum(results.get(timeout=seconds + 60) for _ in workers)
    for worker in workers:
        worker.join(10)
    return total / seconds


def dbus_throughput() -> str:
    # D-Bus arrives on another branch (tilld/api/dbus.py): the same sequential
    # and concurrent StatusGet figures go here, clients on a private bus.
    if not DBUS_BUILD:
        return "not measured: D-Bus not in this build"
    return "not measured: tilld/api/dbus.py is in this build, but this script has no D-Bus client"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--append", help="append the results as Markdown to this file")
    parser.add_argument(
        "--serve-canned", nargs=2, metavar=("SOCKET", "REPLY"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve_canned:
        serve_canned(*args.serve_canned)
        return 0
    base = Path(tempfile.mkdtemp(prefix="tilld-bench-"))
    till = TillProcess(base).start()
    try:
        client = till.client()
        reply_file = base / "status.json"
        reply_file.write_text(json.dumps(client.call("status.get")))
        client.close()
        canned_path = base / "canned.sock"
        canned = subprocess.Popen(
            [sys.executable, __file__, "--serve-canned", str(canned_path), str(reply_file)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert canned.stdout.readline().strip() == "listening"
            wait_for(canned_path.exists, 10, what="canned server")
            floor_one = calls_per_second(canned_path, 1, args.seconds)
            floor_many = calls_per_second(canned_path, args.clients, args.seconds)
        finally:
            canned.terminate()
            canned.wait(10)
        tilld_one = calls_per_second(till.socket_path, 1, args.seconds)
        tilld_many = calls_per_second(till.socket_path, args.clients, args.seconds)
    finally:
        till.stop()
    rows = [
        (
            "one client, sequential",
            rate(tilld_one, "calls"),
            rate(floor_one, "calls"),
            f"{tilld_one / floor_one:.2f}x",
        ),
        (
            f"{args.clients} concurrent clients (processes, own connections)",
            rate(tilld_many, "calls"),
            rate(floor_many, "calls"),
            f"{tilld_many / floor_many:.2f}x",
        ),
    ]
    intro = [
        "Produced by `make bench` (`.venv/bin/python tests/bench/socket_throughput.py`):",
        f"`status.get` over the Unix socket for {args.seconds:g} s per figure. Baseline: a bare",
        "asyncio server answering each line with a canned copy of tilld's status answer,",
        "driven by the same clients. No goal is set for these; the ratio is what the",
        "daemon's dispatch, authorisation and status building cost.",
    ]
    body = table(("status.get", "tilld", "bare asyncio server (baseline)", "ratio"), rows)
    body += ["", f"D-Bus `StatusGet`: {dbus_throughput()}."]
    append_section(args.append, section("API throughput", intro, body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
