"""Benchmark: cold start to ready with a 50,000-article catalog and a 1,000,000-entry journal.

    .venv/bin/python tests/bench/cold_start.py [--starts N] [--cache DIR] [--append FILE]

The back-end is down (its port refuses connections) in every start, as after
a power cut in a venue whose server is gone too. Baseline: the same daemon
with an empty journal and the demo catalog, started the same way in the same
run. Each case is started once unmeasured (creating the database and caching
the catalog, as a first boot does), then N times measured.

"Ready": when tilld/sdnotify.py is in the build, the READY=1 datagram on a
NOTIFY_SOCKET of our own, as systemd would see it; otherwise the first
answer to status.get on the socket. Peak RSS is VmHWM from /proc/PID/status
read at that moment.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from conftest import DEMO_CATALOG, REPO, Client, TillProcess
from report import append_section, median, section, table, verdict
from workload import backend_down_config, big_journal, install_journal, verify, write_big_catalog

ARTICLES = 50_000
ENTRIES = 1_000_000
SDNOTIFY = (REPO / "tilld" / "sdnotify.py").exists()
READY_BY = (
    "the READY=1 datagram on NOTIFY_SOCKET"
    if SDNOTIFY
    else "the first status.get answer on the socket (tilld/sdnotify.py is not in this build)"
)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")


def wait_socket_answers(till: TillProcess, deadline: float) -> None:
    while time.perf_counter() < deadline:
        if till.proc.poll() is not None:
            raise RuntimeError(f"tilld exited with {till.proc.returncode}:\n{till.log()}")
        try:
            client = Client(till.socket_path, timeout=10)
        except OSError:
            time.sleep(0.002)
            continue
        try:
            client.call("status.get")
            return
        finally:
            client.close()
    raise RuntimeError(f"tilld was not ready in time:\n{till.log()}")


@contextlib.contextmanager
def notify_socket(base: Path):
    """A datagram socket as systemd's NOTIFY_SOCKET, passed on through the environment."""
    path = base / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(60)
    try:
        yield sock
    finally:
        sock.close()
        path.unlink(missing_ok=True)


def one_start(till: TillProcess) -> tuple[float, float]:
    """Seconds from spawning the daemon to ready, and its peak RSS in MB then."""
    till.socket_path.unlink(missing_ok=True)
    try:
        if SDNOTIFY:
            with notify_socket(till.base) as notify:
                started = time.perf_counter()
                till.start(wait=False, env={"NOTIFY_SOCKET": notify.getsockname()})
                while b"READY=1" not in notify.recv(4096).split(b"\n"):
                    pass
                seconds = time.perf_counter() - started
        else:
            started = time.perf_counter()
            till.start(wait=False)
            wait_socket_answers(till, started + 60)
            seconds = time.perf_counter() - started
        rss = peak_rss_mb(till.proc.pid)
    except BaseException:
        till.kill()  # a failed measurement must not leave a daemon behind
        raise
    till.stop(timeout=60)
    return seconds, rss


def measure(till: TillProcess, starts: int) -> tuple[list[float], list[float]]:
    one_start(till)  # first boot: creates the database, caches the catalog
    times, peaks = [], []
    for _ in range(starts):
        seconds, rss = one_start(till)
        times.append(seconds)
        peaks.append(rss)
    return times, peaks


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--entries", type=int, default=ENTRIES)
    parser.add_argument("--cache", type=Path, help="where the built journal is kept for reuse")
    parser.add_argument("--append", help="append the results as Markdown to this file")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="tilld-bench-"))
    cache = args.cache or base / "cache"
    holder, down = backend_down_config()
    catalog = write_big_catalog(base / "catalog-50k.json", ARTICLES)
    try:
        (base / "small").mkdir()
        small = TillProcess(base / "small", {**down, "catalog": {"file": str(DEMO_CATALOG)}})
        small_times, small_rss = measure(small, args.starts)

        built = time.perf_counter()
        template = big_journal(cache, args.entries, catalog)
        build_s = time.perf_counter() - built
        per_entry = template.stat().st_size / args.entries
        (base / "big").mkdir()
        big = TillProcess(base / "big", {**down, "catalog": {"file": str(catalog)}})
        install_journal(template, big.state_dir)
        big_times, big_rss = measure(big, args.starts)
        big.start()
        checked = time.perf_counter()
        verified = verify(big)
        verify_s = time.perf_counter() - checked
        big.stop(timeout=60)
    finally:
        holder.close()
        shutil.rmtree(base, ignore_errors=True)  # two copies of a 0.35 GB journal
    t_small, t_big = median(small_times), median(big_times)
    m_small, m_big = max(small_rss), max(big_rss)
    rows = [
        (
            "empty journal, demo catalog (baseline)",
            f"{t_small:.3f} s",
            f"{max(small_times):.3f} s",
            f"{m_small:.1f} MB",
            "",
            "",
        ),
        (
            f"{args.entries:,}-entry journal, {ARTICLES:,}-article catalog",
            f"{t_big:.3f} s",
            f"{max(big_times):.3f} s",
            f"{m_big:.1f} MB",
            f"{t_big / t_small:.2f}x time, {m_big / m_small:.2f}x RSS",
            verdict(t_big < 1, "< 1 s") + "; " + verdict(m_big < 80, "< 80 MB"),
        ),
    ]
    check = "ok" if verified.get("ok") and verified.get("entries") == args.entries else "FAILED"
    intro = [
        "Produced by `make bench` (`.venv/bin/python tests/bench/cold_start.py`): from",
        f"spawning `tilld run` to {READY_BY}, with the back-end down (its port refuses",
        f"connections). {args.starts} measured starts per case after one unmeasured first boot;",
        "peak RSS is VmHWM at ready, the worst of the starts. The journal was just written,",
        "so it is in the page cache (dropping caches needs root); a start after a real",
        "power cut reads it from disk.",
    ]
    body = [
        *table(("case", "median", "worst", "peak RSS", "vs baseline", "goal"), rows),
        "",
        f"The {args.entries:,}-entry journal (three sales to one ticket scan, all synced) was",
        f"seeded by the daemon and filled in SQLite in {build_s:.0f} s (0 s when reused from the",
        f"cache); the daemon's own `admin.journal_verify` over the whole of it: {check}",
        f"({verified.get('entries', 0):,} entries, {verify_s:.1f} s).",
        "",
        *table(
            ("journal on disk", "bytes per entry", "goal"),
            [
                (
                    f"{args.entries:,} entries, database file",
                    f"{per_entry:.0f}",
                    verdict(per_entry <= 400, "<= 400 bytes per entry"),
                )
            ],
        ),
    ]
    append_section(args.append, section("Cold start with a big catalog and journal", intro, body))
    return 0 if check == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
