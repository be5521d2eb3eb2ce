"""A network receipt printer (TCP, port 9100 style) that decodes ESC/POS into text.

It answers real-time status queries from its state (ok, paper-low,
paper-out, cover-open, error), can run out of paper part-way through a job,
can be "pulled" (its port closes and every connection drops) and plugged
back, and keeps every receipt it cut as a text file, named by the receipt number it
prints (receipt-0009.txt, receipt-0009-kopia.txt, receipt-0009-ticket.txt),
never over a file an earlier run left. A receipt interrupted
by a fault is kept too, marked partial, so a test can tell a reprint from a
double print.

    tilld sim printer --listen 127.0.0.1:9100 --out DIR --control 127.0.0.1:0
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..escpos import status as escpos_status
from ..escpos.interpret import Interpreter
from ..escpos.status import PrinterStatus
from . import stop_requested
from .control import announce, parse_address, start_control

STATES = {
    "ok": PrinterStatus(),
    "paper-low": PrinterStatus(paper_low=True),
    "paper-out": PrinterStatus(paper_out=True),
    "cover-open": PrinterStatus(cover_open=True),
    "error": PrinterStatus(error=True),
}


@dataclass
class Receipt:
    number: int  # the cut's number in this run
    lines: list[str]
    partial: bool
    path: str
    receipt_no: int | None = None  # the receipt number printed on it, if any


RECEIPT_NO = re.compile(r"^\s*(?:Retur av kvitto nr|Kvitto nr)\s+(\d+)\s*$")


def paper_name(lines: list[str]) -> tuple[str, int | None]:
    """A file name for what was cut, from what it says: receipt-0009, -kopia, -ticket."""
    words = {line.strip() for line in lines}
    numbers = [int(m.group(1)) for line in lines if (m := RECEIPT_NO.match(line))]
    if "Retur av kvitto nr" in " ".join(lines):
        # A refund names the original too; its own number comes first.
        numbers = numbers[:1]
    receipt_no = numbers[0] if numbers else None
    if "TESTUTSKRIFT" in words:
        return "testpage", None
    if receipt_no is None:
        return "print", None
    name = f"receipt-{receipt_no:04d}"
    if "BILJETT" in words:
        name += "-ticket"
    if "KOPIA" in words:
        name += "-kopia"
    return name, receipt_no


@dataclass
class PrinterSim:
    out_dir: Path
    state: str = "ok"
    paper_left: int | None = None  # bytes of print data before the paper runs out
    receipts: list[Receipt] = field(default_factory=list)
    drawer_kicks: int = 0
    queries: int = 0
    plugged: bool = True

    @property
    def status(self) -> PrinterStatus:
        return STATES[self.state]

    def feed(self, interpreter: Interpreter, data: bytes) -> bytes:
        """Process bytes from a client; return what the printer answers."""
        answers = bytearray()
        for action in interpreter.feed(data):
            kind = action[0]
            if kind == "query":
                self.queries += 1
                answers.append(escpos_status.encode(self.status).get(action[1], 0x12))
            elif kind == "cut":
                self._keep(action[1], partial=False)
            elif kind == "kick":
                self.drawer_kicks += 1
        return bytes(answers)

    def printable(self, data: bytes) -> bytes:
        """What of `data` the print head gets before the paper runs out."""
        if not self.status.ready:
            return b""
        if self.paper_left is None:
            return data
        if len(data) < self.paper_left:
            self.paper_left -= len(data)
            return data
        kept, self.paper_left = data[: self.paper_left], None
        self.state = "paper-out"
        return kept

    def keep_unfinished(self, interpreter: Interpreter) -> None:
        """What was printed without a cut: a receipt that was cut short."""
        self._keep(interpreter.take_lines(), partial=True)

    def _keep(self, lines: list[str], *, partial: bool) -> None:
        # A printer feeds the paper past the cutter; those blank lines are not content.
        while lines and not lines[-1].strip():
            lines.pop()
        if not lines:
            return
        number = len(self.receipts) + 1
        name, receipt_no = paper_name(lines)
        suffix = ".partial.txt" if partial else ".txt"
        # Named by what it says, and never over an earlier paper (a reprint,
        # another ticket of the receipt, a run before a restart).
        path = self.out_dir / f"{name}{suffix}"
        again = 1
        while path.exists():
            again += 1
            path = self.out_dir / f"{name}-{again}{suffix}"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.receipts.append(Receipt(number, lines, partial, str(path), receipt_no))

    def describe(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "plugged": self.plugged,
            "paper_left": self.paper_left,
            "drawer_kicks": self.drawer_kicks,
            "queries": self.queries,
            "receipts": [asdict(r) for r in self.receipts],
        }


class PrinterServer:
    def __init__(self, sim: PrinterSim, host: str, port: int) -> None:
        self.sim = sim
        self.host, self.port = host, port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def plug(self) -> str:
        self._server = await asyncio.start_server(self._client, self.host, self.port)
        sockname = self._server.sockets[0].getsockname()
        self.port = sockname[1]  # keep the same port across pull and plug
        self.sim.plugged = True
        return f"{sockname[0]}:{sockname[1]}"

    async def pull(self) -> None:
        self.sim.plugged = False
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        interpreter = Interpreter()
        try:
            while data := await reader.read(4096):
                answer = self._process(interpreter, data)
                if answer:
                    writer.write(answer)
                    await writer.drain()
        except OSError:
            pass  # pulled, or the till went away; the next connection starts afresh
        finally:
            self._writers.discard(writer)
            # Whatever was printed without a cut is a partial receipt.
            self.sim.keep_unfinished(interpreter)
            writer.close()

    def _process(self, interpreter: Interpreter, data: bytes) -> bytes:
        # Status queries are answered even when the print head has stopped;
        # print data after the paper ran out is lost, as on a real printer.
        answers = bytearray()
        for chunk in _split_realtime(data):
            if chunk.startswith(b"\x10\x04"):
                answers += self.sim.feed(interpreter, chunk)
                continue
            ready_before = self.sim.status.ready
            kept = self.sim.printable(chunk)
            answers += self.sim.feed(interpreter, kept)
            if ready_before and len(kept) < len(chunk):
                self.sim.keep_unfinished(interpreter)
                interpreter.reset()  # the rest of the job is never printed
        return bytes(answers)


def _split_realtime(data: bytes) -> list[bytes]:
    """Separate DLE EOT n queries from print data so each is handled on its own."""
    parts: list[bytes] = []
    start = 0
    i = data.find(b"\x10\x04")
    while i >= 0 and i + 2 < len(data):
        if i > start:
            parts.append(data[start:i])
        parts.append(data[i : i + 3])
        start = i + 3
        i = data.find(b"\x10\x04", start)
    if start < len(data):
        parts.append(data[start:])
    return parts


async def serve(listen: str, out_dir: Path, control: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    sim = PrinterSim(out_dir)
    host, port = parse_address(listen)
    server = PrinterServer(sim, host, port)
    address = await server.plug()

    def set_state(body: dict[str, Any]) -> dict[str, Any]:
        state = body["state"]
        if state not in STATES:
            raise ValueError(f"state must be one of {sorted(STATES)}")
        sim.state = state
        if "paper_left" in body:
            sim.paper_left = body["paper_left"]
        return sim.describe()

    async def pull(_body: dict[str, Any]) -> dict[str, Any]:
        await server.pull()
        return sim.describe()

    async def plug(_body: dict[str, Any]) -> dict[str, Any]:
        if not sim.plugged:
            await server.plug()
        return sim.describe()

    def paper_out_after(body: dict[str, Any]) -> dict[str, Any]:
        sim.paper_left = int(body["bytes"])
        return sim.describe()

    runner, control_address = await start_control(
        control,
        {"state": set_state, "pull": pull, "plug": plug, "paper-out-after": paper_out_after},
        sim.describe,
    )
    announce(listening=address, control=control_address, out=out_dir)
    try:
        await stop_requested()
    finally:
        await server.pull()
        await runner.cleanup()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", default="127.0.0.1:9100", help="HOST:PORT (port 0: any)")
    parser.add_argument("--out", type=Path, required=True, help="folder for receipt files")
    parser.add_argument("--control", default="127.0.0.1:0", help="HOST:PORT of the control API")


def run(args: argparse.Namespace) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.listen, args.out, args.control))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tilld sim printer", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
