"""Start-to-READY: from spawning `tilld run` to its READY=1 datagram, as systemd sees it.

    .venv/bin/python tests/bench/start_ready.py [--runs N] [--append FILE]

Each run starts the daemon on a fresh state folder with the demo catalog and
no back-end, listens on a real NOTIFY_SOCKET, and stops it with SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
CATALOG = REPO / "tilld" / "demo" / "catalog.json"


def one_start(base: Path) -> float:
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(base / "notify.sock"))
    notify.settimeout(30)
    config = base / "tilld.toml"
    config.write_text(
        f'[paths]\nstate_dir = "{base / "state"}"\n'
        f'[api]\nsocket_path = "{base / "tilld.sock"}"\ndbus = "none"\n'
        f'[catalog]\nfile = "{CATALOG}"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TILLD_")}
    env["NOTIFY_SOCKET"] = str(base / "notify.sock")
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tilld.cli.daemon", "--config", str(config)],
        env=env,
        cwd=REPO,
        stderr=subprocess.DEVNULL,
    )
    try:
        while b"READY=1" not in notify.recv(4096).split(b"\n"):
            pass
        return time.monotonic() - started
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        notify.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--append", help="append the result as Markdown to this file")
    args = parser.parse_args()
    times = []
    for _ in range(args.runs):
        base = Path(tempfile.mkdtemp(prefix="tilld-ready-"))
        try:
            times.append(one_start(base))
        finally:
            shutil.rmtree(base, ignore_errors=True)
    median_ms = statistics.median(times) * 1000
    text = (
        "\n## Start to READY=1\n\n"
        "From spawning `tilld run` to its READY=1 datagram on NOTIFY_SOCKET (fresh state\n"
        f"folder, demo catalog, no back-end), {args.runs} runs: **median {median_ms:.0f} ms**\n"
        f"(min {min(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms). The daemon's own\n"
        "start-up (journal, catalog, socket) is the few tens of ms its `ready in` log line\n"
        "reports; the rest is the interpreter starting and importing pydantic and aiohttp.\n"
        "READY=1 never waits for the back-end or a device.\n"
    )
    print(text)
    if args.append:
        with open(args.append, "a", encoding="utf-8") as out:
            out.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
