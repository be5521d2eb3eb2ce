"""The reliability table: what each hardening test tried against tilld, and whether tilld held.

A test asks for the ``reliability`` fixture and records the attack or fault it
tried with its figures. Whether tilld *held* is not the test's word: it is the
test's own outcome (passed = held), taken when the test ends. With
``TILLD_RELIABILITY_LOG`` set (``make test-long`` sets it), each record is
appended to that file as one JSON line; ``python tests/reliability.py LOG DOC``
turns the lines into docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

LOG_ENV = "TILLD_RELIABILITY_LOG"


@dataclass
class Attempt:
    kind: str  # e.g. "fiscal integrity", "back-end faults", "socket abuse"
    attack: str  # what was tried, in words
    tries: int  # how many times (sales raced, connections held, calls made)
    figure: str = ""  # the measured figure, with its unit
    test: str = ""
    held: bool = False
    notes: list[str] = field(default_factory=list)


class Recorder:
    def __init__(self, test: str) -> None:
        self.test = test
        self.attempts: list[Attempt] = []

    def record(self, kind: str, attack: str, *, tries: int, figure: str = "") -> None:
        self.attempts.append(Attempt(kind, attack, tries, figure, self.test))

    def finish(self, passed: bool) -> None:
        path = os.environ.get(LOG_ENV)
        if not path or not self.attempts:
            return
        # Several pytest-xdist workers append to the same file at once. Each
        # line goes out in one write(2) on an O_APPEND descriptor: the kernel
        # puts every such write at the end of the file whole, so lines from
        # different workers never interleave (a buffered file object may split
        # a line over two writes).
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            for attempt in self.attempts:
                attempt.held = passed
                line = (json.dumps(asdict(attempt), ensure_ascii=False) + "\n").encode()
                written = os.write(fd, line)
                if written != len(line):  # a full disk: say so rather than leave half a line
                    raise OSError(f"{path}: wrote {written} of {len(line)} bytes of a record")
        finally:
            os.close(fd)


def write_table(log: Path, doc: Path) -> None:
    attempts = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line]
    # Workers finish in any order: sort on every column that tells rows apart,
    # so the same run writes the same table.
    attempts.sort(key=lambda a: (a["kind"], a["attack"], a["test"], a["tries"], a["figure"]))
    lines = [
        "# Reliability: attacks and faults tried",
        "",
        "Written by `make test-long` from the hardening tests themselves: each row is",
        "one test's attempt, *held* when the test passed. Regenerate with `make test-long`",
        f"(the rows below: {len(attempts)} attempts,"
        f" {sum(not a['held'] for a in attempts)} not held).",
        "",
        "| kind | attack or fault | tries | figure | result | test |",
        "|---|---|---:|---|---|---|",
    ]
    for a in attempts:
        result = "held" if a["held"] else "**not held**"
        test = a["test"].split("::")[-1]
        cells = (a["kind"], a["attack"], str(a["tries"]), a["figure"], result, f"`{test}`")
        # A pattern such as ^(a|aa)+$ in a cell must not split the row.
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    doc.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write_table(Path(sys.argv[1]), Path(sys.argv[2]))
