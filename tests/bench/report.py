"""What every benchmark script shares: percentiles, the machine line and the Markdown it writes.

`make bench` runs the scripts in order into one docs/benchmarks.md: the first
(sale_latency.py --write) writes the header through `write_header`, every
other appends its section through `append_section`, and

    .venv/bin/python tests/bench/report.py finish docs/benchmarks.md

closes the file with the list of goals met and missed in this run, then the
hand-written "Reading the figures" section carried over from the previous
file (it explains the figures of the run it was written for; its date says
which). `make bench-scale`'s section (the 10,000,000-entry journal, an hour's
work not part of `make bench`) is carried over the same way, before the
goals, and says its own date; `place_section` puts a new one there.
Figures are never pass/fail: a missed goal is written down, not raised.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

COMMAND = "make bench"
READING = "## Reading the figures"
GOALS = "## Goals in this run"
# Written by `make bench-scale` alone; `make bench` keeps the last one.
KEPT_SECTION = "## Seven years on one till: a big journal"
MET, MISSED = "MET", "MISSED"


def percentile(samples: Sequence[float], p: float) -> float:
    """The nearest-rank percentile (p in 0..100) of ``samples``."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def rate(per_second: float, unit: str) -> str:
    return f"{per_second:,.0f} {unit}/s"


def ratio(value: float, baseline: float) -> str:
    return f"{value / baseline:.2f}x" if baseline else "n/a"


def verdict(met: bool, goal: str) -> str:
    """A goal cell: the goal in words and whether this run met it."""
    return f"{goal}: {MET if met else MISSED}"


def machine() -> str:
    cpu = _cpu_model() or platform.processor() or platform.machine()
    memory = _meminfo_gib()
    return (
        f"{platform.node()}, {os.cpu_count()} cores ({cpu}), {memory}, Python "
        f"{platform.python_version()}, {platform.system()} {platform.release()}; "
        f"state folders on {tempfile.gettempdir()} ({_filesystem(tempfile.gettempdir())})"
    )


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return ""


def _meminfo_gib() -> str:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.0f} GiB RAM"
    return "RAM unknown"


def _filesystem(path: str) -> str:
    """The filesystem type under ``path``: the longest matching mount point wins."""
    best, kind = "", "unknown filesystem"
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            _dev, mount, fstype, *_ = line.split()
            if path.startswith(mount) and len(mount) > len(best):
                best, kind = mount, fstype
    return kind


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def section(title: str, intro: Sequence[str], body: Sequence[str]) -> str:
    return "\n".join(["", f"## {title}", "", *intro, "", *body]) + "\n"


def _stash_path(path: Path, what: str = "reading") -> Path:
    key = re.sub(r"[^A-Za-z0-9]+", "-", str(path.resolve())).strip("-")
    return Path(tempfile.gettempdir()) / f"tilld-bench-{what}-{os.getuid()}-{key}.md"


def cut_section(text: str, heading: str) -> tuple[str, str]:
    """The section under ``heading`` (to the next "## " heading or the end), and the rest."""
    start = text.find(heading + "\n")
    if start < 0:
        return "", text
    end = text.find("\n## ", start + len(heading))
    end = len(text) if end < 0 else end + 1
    return text[start:end].rstrip("\n") + "\n", text[:start] + text[end:]


def write_header(path: Path) -> None:
    """Start a new benchmarks file, keeping its old reading and bench-scale section for `finish`."""
    if path.exists():
        old = path.read_text(encoding="utf-8")
        kept, old = cut_section(old, KEPT_SECTION)
        if kept:
            _stash_path(path, "kept").write_text(kept, encoding="utf-8")
        if READING in old:
            _stash_path(path).write_text(old[old.index(READING) :], encoding="utf-8")
    text = "\n".join(
        [
            "# tilld benchmarks",
            "",
            f"Produced by one `{COMMAND}` run on "
            f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}: each script in tests/bench/",
            "appends its section (the Makefile's `bench` target lists them).",
            f"Machine: {machine()}.",
            "The machine is a shared VM: other engineers' test runs may have been running",
            "at the same time, so absolute figures vary between runs; each figure is set",
            "against a baseline measured in the same run, and the ratio is the comparable",
            "number. Figures never pass or fail a build; a missed goal is written down.",
            "",
        ]
    )
    path.write_text(text, encoding="utf-8")


def append_section(path: str | None, text: str) -> None:
    print(text)
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(text)


def place_section(path: str | None, heading: str, text: str) -> None:
    """Put ``text`` in place of the file's section under ``heading``, before the goals.

    For `make bench-scale`, which runs after a `make bench` has finished the
    file: its section goes with the other figures, and its goals into the
    list, which is made again from the tables."""
    print(text)
    if not path:
        return
    file = Path(path)
    _, rest = cut_section(file.read_text(encoding="utf-8") if file.exists() else "", heading)
    if GOALS not in rest:
        file.write_text(rest + text, encoding="utf-8")
        return
    figures = rest[: rest.index(GOALS)].rstrip("\n") + "\n" + text
    file.write_text(figures + _goals(figures) + "\n" + _reading_of(rest), encoding="utf-8")


def _reading_of(text: str) -> str:
    return text[text.index(READING) :] if READING in text else f"{READING}\n\n(none yet)\n"


def _goals(text: str) -> str:
    """The "Goals in this run" section for the figures in ``text``."""
    met, missed = [], []
    heading = ""
    for line in text.splitlines():
        if line.startswith("## "):
            heading = line[3:].strip()
        if not line.startswith("| "):
            continue
        figure = f"{heading}: {line.split('|')[1].strip()}"
        if f": {MISSED}" in line:
            missed.append(figure)
        elif f": {MET}" in line:
            met.append(figure)
    lines = ["", GOALS, ""]
    lines += [f"- {MISSED}: {figure}" for figure in missed]
    lines += [f"- {MET}: {figure}" for figure in met]
    return "\n".join(lines) + "\n"


def finish(path: Path) -> None:
    """The kept bench-scale section, the goals of this run, then the carried-over reading."""
    kept = _stash_path(path, "kept")
    if kept.exists():
        with open(path, "a", encoding="utf-8") as out:
            out.write("\n" + kept.read_text(encoding="utf-8"))
        kept.unlink()
    stash = _stash_path(path)
    reading = stash.read_text(encoding="utf-8") if stash.exists() else _reading_of("")
    with open(path, "a", encoding="utf-8") as out:
        out.write(_goals(path.read_text(encoding="utf-8")) + "\n" + reading)
    stash.unlink(missing_ok=True)


def fsync_samples(directory: Path, rounds: int) -> list[float]:
    """Seconds to write 4 KiB and fsync it in ``directory``: the least one WAL commit costs."""
    path = directory / "fsync-probe"
    samples = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        block = os.urandom(4096)
        for _ in range(rounds):
            started = time.perf_counter()
            os.write(fd, block)
            os.fsync(fd)
            samples.append(time.perf_counter() - started)
    finally:
        os.close(fd)
        path.unlink()
    return samples


def spread(values: Sequence[float], show: Callable[[float], str]) -> str:
    """The median of rounds with their spread: "median (min-max)"."""
    return f"{show(median(values))} ({show(min(values))}-{show(max(values))})"


# -- a real network's round trips (the fault proxy's latency mode) -----------------

# A 50 ms round trip with 5 ms jitter each way, as a till on a shop's DSL or 4G link sees.
LONG_LINK = {"up_s": 0.025, "down_s": 0.025, "jitter_s": 0.005}
LINKS = {"loopback": ("pass", {}), "50 ms round trip": ("latency", LONG_LINK)}


def main() -> int:
    parser = argparse.ArgumentParser(description="close a benchmarks file written by make bench")
    parser.add_argument("action", choices=["finish"])
    parser.add_argument("file", type=Path)
    args = parser.parse_args()
    finish(args.file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
