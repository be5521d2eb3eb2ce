"""Start-to-READY: from spawning `tilld run` to its READY=1 datagram, as systemd sees it.

    .venv/bin/python tests/bench/start_ready.py [--rounds N] [--runs N] [--append FILE]

Each start runs the daemon on a fresh state folder with the demo catalog and
no back-end, listens on a real NOTIFY_SOCKET, and stops it with SIGTERM. The
baseline, measured in the same round and interleaved with the starts, is a
fresh interpreter importing the daemon's modules and nothing else
(`python -c 'import tilld.app'`, spawned the same way, until it exits). The
daemon's own `ready in` log line (from the start of `Daemon.run` to READY=1)
says how much of the rest is the till's start-up itself.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import append_section, median, ms, section, table, verdict

REPO = Path(__file__).resolve().parent.parent.parent
CATALOG = REPO / "tilld" / "demo" / "catalog.json"
GOAL = 1.3  # start to READY=1 at most this many times the import of tilld.app
READY_IN = re.compile(rb"ready in (\d+) ms")


def _environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TILLD_")}
    env.update(extra)
    return env


def one_start(base: Path) -> tuple[float, float]:
    """Seconds from spawning `tilld run` to READY=1, and its own `ready in` figure."""
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(base / "notify.sock"))
    notify.settimeout(30)
    config = base / "tilld.toml"
    config.write_text(
        f'[paths]\nstate_dir = "{base / "state"}"\n'
        f'[api]\nsocket_path = "{base / "tilld.sock"}"\ndbus = "none"\n'
        f'[catalog]\nfile = "{CATALOG}"\n'
    )
    log = open(base / "tilld.log", "w+b")  # noqa: SIM115 (read back after the stop)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tilld.cli.daemon", "--config", str(config)],
        env=_environment(NOTIFY_SOCKET=str(base / "notify.sock")),
        cwd=REPO,
        stderr=log,
    )
    try:
        while b"READY=1" not in notify.recv(4096).split(b"\n"):
            pass
        took = time.perf_counter() - started
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        notify.close()
    log.seek(0)
    found = READY_IN.search(log.read())
    log.close()
    return took, (int(found.group(1)) / 1000 if found else float("nan"))


def one_import() -> float:
    """Seconds for a fresh interpreter to import the daemon's modules and exit."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "import tilld.app"], env=_environment(), cwd=REPO, check=True
    )
    return time.perf_counter() - started


def one_round(runs: int) -> tuple[list[float], list[float], list[float]]:
    starts, imports, own = [], [], []
    for _ in range(runs):
        imports.append(one_import())
        base = Path(tempfile.mkdtemp(prefix="tilld-ready-"))
        try:
            took, ready_in = one_start(base)
        finally:
            shutil.rmtree(base, ignore_errors=True)
        starts.append(took)
        own.append(ready_in)
    return starts, imports, own


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=7, help="starts (and imports) per round")
    parser.add_argument("--append", help="append the result as Markdown to this file")
    args = parser.parse_args()
    one_round(1)  # warm-up: the page cache and .pyc files, not counted
    rounds = [one_round(args.runs) for _ in range(args.rounds)]
    ratios = [median(s) / median(i) for s, i, _ in rounds]
    rows = [
        (
            f"round {n}",
            ms(median(i)),
            ms(median(s)),
            ms(median(o)),
            ms(median(s) - median(i)),
            f"{r:.2f}x",
        )
        for n, ((s, i, o), r) in enumerate(zip(rounds, ratios, strict=True), 1)
    ]
    ratio = median(ratios)
    rows.append(
        (
            f"median of {args.rounds} rounds (spread)",
            ms(median([median(i) for _, i, _ in rounds])),
            ms(median([median(s) for s, _, _ in rounds])),
            ms(median([median(o) for _, _, o in rounds])),
            "",
            f"{ratio:.2f}x ({min(ratios):.2f}-{max(ratios):.2f}), "
            + verdict(ratio <= GOAL, f"<= {GOAL}x the import"),
        )
    )
    intro = [
        "Produced by `make bench` (`.venv/bin/python tests/bench/start_ready.py`): from",
        "spawning `tilld run` to its READY=1 datagram on NOTIFY_SOCKET (fresh state folder,",
        "demo catalog, no back-end, no D-Bus), against a fresh interpreter importing the",
        "daemon's modules alone (`python -c 'import tilld.app'`, to its exit), interleaved",
        f"in the same round; {args.rounds} rounds of {args.runs} starts, medians.",
        "`ready in` is the daemon's own log line: from `Daemon.run` to READY=1 (journal,",
        "catalog, socket). READY=1 never waits for the back-end or a device.",
    ]
    body = table(
        (
            "round",
            "import tilld.app (baseline)",
            "start to READY=1",
            "`ready in`",
            "start - import",
            "start / import",
        ),
        rows,
    )
    append_section(args.append, section("Start to READY=1", intro, body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
