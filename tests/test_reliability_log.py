"""The reliability log survives several pytest-xdist workers appending to it at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO
from reliability import LOG_ENV, write_table

WORKERS = 4
RECORDS = 50
ATTEMPTS = 4
# A test that records several long attempts, as the hardening tests do. The
# recorder writes each line with one O_APPEND write(2), so no worker's line can
# land inside another's, whatever Python's file buffering would do.
APPEND = f"""
import sys
from reliability import Recorder
worker = sys.argv[1]
for n in range({RECORDS}):
    recorder = Recorder(f"tests/test_x.py::test_{{worker}}_{{n}}")
    for a in range({ATTEMPTS}):
        recorder.record("kind", "attack " + "x" * 3000, tries=a, figure=worker)
    recorder.finish(n % 2 == 0)
"""


def test_workers_appending_at_once_leave_whole_lines(tmp_path: Path) -> None:
    log = tmp_path / "reliability.jsonl"
    env = {**os.environ, LOG_ENV: str(log), "PYTHONPATH": str(REPO / "tests")}
    workers = [
        subprocess.Popen([sys.executable, "-c", APPEND, str(w)], env=env) for w in range(WORKERS)
    ]
    assert [w.wait(60) for w in workers] == [0] * WORKERS
    records = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert len(records) == WORKERS * RECORDS * ATTEMPTS
    assert len({(r["test"], r["tries"]) for r in records}) == len(records)

    doc = tmp_path / "reliability.md"
    write_table(log, doc)
    rows = [
        line
        for line in doc.read_text(encoding="utf-8").splitlines()
        if line.startswith("| kind | attack x")
    ]
    assert len(rows) == len(records)
    assert f"{len(records)} attempts, {len(records) // 2} not held" in doc.read_text()
