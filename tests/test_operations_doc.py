"""docs/operations.md's outage routine, run command by command against `tilld demo`.

Every `$ ` line of the section's console blocks runs in one bash session
(so $SALE and $CODE carry over), with `tillctl` talking to the demo. The
lines after a command are what it must print: numbers, times and ages may
differ, `…` stands for anything, and each shown line must be a line of the
real output. A command that only reads (status, pending, scans, terminal,
receipt show) is asked again until its answer matches or a deadline passes,
since the till notices an outage a moment after the switch is flipped.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time

from conftest import REPO
from test_demo_cli import Demo

SECTION = "## The outage routine, command by command"
DEADLINE_S = 60
READ_ONLY = ("tillctl status", "tillctl pending", "tillctl scans", "tillctl terminal",
             "tillctl receipt show")  # fmt: skip
AGE = r"\d+ (?:s|min|h \d+ min|d \d+ h)"


def steps() -> list[tuple[str, list[str]]]:
    """(command, the lines it must print) for each `$ ` line of the section, in order."""
    doc = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    section = doc.split(SECTION, 1)[1].split("\n## ", 1)[0]
    found: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", section, re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                found.append((line[2:], []))
            elif line.strip():
                found[-1][1].append(line)
    return found


def pattern(shown: str) -> re.Pattern[str]:
    text = re.sub(AGE, "\0", shown.rstrip())
    parts = []
    for piece in re.split(r"(\0|…|\d+|\s+)", text):
        if piece == "\0":
            parts.append(AGE)
        elif piece == "…":
            parts.append(".*")
        elif piece.isdigit():
            parts.append(r"\d+")
        elif piece and piece.isspace():
            parts.append(r"\s+")
        elif piece:
            parts.append(re.escape(piece))
    return re.compile("^" + "".join(parts) + r"\s*$", re.M)


class Shell:
    """One bash with `tillctl` aimed at the demo; runs a line, returns its output."""

    def __init__(self, socket_path) -> None:
        self.proc = subprocess.Popen(
            ["bash", "--norc", "--noprofile"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, "NO_COLOR": "1"},
        )
        self.run(
            f'tillctl() {{ "{sys.executable}" -m tilld.cli.tillctl --socket {socket_path} "$@"; }}'
        )

    def run(self, line: str) -> str:
        marker = f"__done_{time.monotonic_ns()}__"
        self.proc.stdin.write(f"{line}\necho {marker}\n".encode())
        self.proc.stdin.flush()
        out = b""
        deadline = time.monotonic() + DEADLINE_S
        while marker.encode() not in out:
            ready, _, _ = select.select([self.proc.stdout], [], [], deadline - time.monotonic())
            assert ready, f"{line!r} did not finish: {out!r}"
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            assert chunk, f"bash exited during {line!r}"
            out += chunk
        return out.decode().split(marker)[0]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(10)


def test_the_outage_routine_in_operations_md_runs_as_written(short_tmp):
    walked = steps()
    assert len(walked) > 15 and any(c.startswith("tillctl status") for c, _ in walked)
    demo = Demo(short_tmp / "demo").start()
    shell = Shell(demo.socket)
    try:
        # Step 1 expects an online till: its first probes must have answered.
        deadline = time.monotonic() + DEADLINE_S
        while "probing" not in demo.ok("--json", "status") or '"probing": true' in demo.ok(
            "--json", "status"
        ):
            assert time.monotonic() < deadline, "the demo never finished its first probes"
            time.sleep(0.1)
        for command, shown in walked:
            deadline = time.monotonic() + DEADLINE_S
            while True:
                out = shell.run(command)
                assert "Traceback" not in out, (command, out)
                missing = [line for line in shown if not pattern(line).search(out)]
                if not missing or not command.startswith(READ_ONLY):
                    break
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)  # a read-only command, asked again until the till caught up
            assert not missing, f"{command}: {missing} not in\n{out}"
    finally:
        shell.close()
        demo.stop()
