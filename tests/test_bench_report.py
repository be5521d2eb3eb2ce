"""docs/benchmarks.md across runs (tests/bench/report.py): what `make bench` keeps.

`make bench` writes the file anew; the hand-written reading and `make
bench-scale`'s section (an hour's work, not part of `make bench`) must come
through it. The scale section was lost once this way, and the note that
quoted it pointed at nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "bench"))
from report import (
    GOALS,
    KEPT_SECTION,
    READING,
    append_section,
    finish,
    place_section,
    section,
    write_header,
)

SCALE_ROW = "| disk use | 355 bytes/entry | <= 400 bytes per entry: MET |"
READ = f"{READING}\n\nThe sale was slow because of the moon.\n"


def scale_section(row: str = SCALE_ROW) -> str:
    return section(KEPT_SECTION.removeprefix("## "), ["Produced by `make bench-scale`."], [row])


def one_run(path: Path, sale_row: str) -> None:
    write_header(path)
    append_section(str(path), section("Sale", ["Produced by `make bench`."], [sale_row]))
    finish(path)


def test_a_bench_run_keeps_the_reading_and_the_scale_section_with_its_goal(tmp_path):
    doc = tmp_path / "benchmarks.md"
    one_run(doc, "| sale | 2 ms | <= 3 ms: MET |")
    place_section(str(doc), KEPT_SECTION, scale_section())
    text = doc.read_text()
    doc.write_text(text.replace(f"{READING}\n\n(none yet)\n", READ))

    one_run(doc, "| sale | 4 ms | <= 3 ms: MISSED |")

    text = doc.read_text()
    assert "| sale | 4 ms |" in text and "| sale | 2 ms |" not in text
    assert text.count(KEPT_SECTION) == 1 and SCALE_ROW in text
    assert text.index(KEPT_SECTION) < text.index(GOALS) < text.index(READING)
    goals = text[text.index(GOALS) : text.index(READING)]
    assert "- MISSED: Sale: sale" in goals
    assert "- MET: Seven years on one till: a big journal: disk use" in goals
    assert text.endswith(READ)


def test_a_new_scale_run_replaces_the_old_section_and_the_goals_follow(tmp_path):
    doc = tmp_path / "benchmarks.md"
    one_run(doc, "| sale | 2 ms | <= 3 ms: MET |")
    place_section(str(doc), KEPT_SECTION, scale_section())
    worse = "| disk use | 450 bytes/entry | <= 400 bytes per entry: MISSED |"
    place_section(str(doc), KEPT_SECTION, scale_section(worse))

    text = doc.read_text()
    assert SCALE_ROW not in text and worse in text and text.count(KEPT_SECTION) == 1
    goals = text[text.index(GOALS) : text.index(READING)]
    assert "- MISSED: Seven years on one till: a big journal: disk use" in goals
    assert "- MET: Sale: sale" in goals
    assert text.count(GOALS) == 1 and text.count(READING) == 1
