"""A serial barcode scanner on a pty: codes typed or posted come out as scanner bytes.

The pty's slave side is what tilld opens, through a stable symlink (as udev
gives a real scanner /dev/tilld/scanner). "Unplugging" closes the pty and
removes the link; "plugging" makes a new pty and points the link at it, so
the driver's reconnect is exercised exactly as with a USB serial adapter.

    tilld sim scanner --link DIR/scanner [--stdin] [--control 127.0.0.1:0]

With --stdin every line typed on the terminal is scanned.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import logging
import os
import stat
import sys
import tty
from pathlib import Path
from typing import Any

from . import stop_requested
from .control import announce, start_control

log = logging.getLogger("drivers.sim.scanner")


class PtyScanner:
    def __init__(self, link: Path, suffix: bytes = b"\r") -> None:
        self.link = link
        self.suffix = suffix
        self.master: int | None = None
        self.slave: int | None = None
        self.pty_path = ""
        self.sent = 0

    def plug(self) -> str:
        if self.master is not None:
            return self.pty_path
        master, slave = os.openpty()
        # Raw mode: no echo back to the scanner, no line editing of codes.
        tty.setraw(slave)
        self.master, self.slave = master, slave
        self.pty_path = os.ttyname(slave)
        tmp = self.link.with_name(self.link.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(self.pty_path)
        tmp.replace(self.link)
        return self.pty_path

    def unplug(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()
        for fd in (self.master, self.slave):
            if fd is not None:
                os.close(fd)
        self.master = self.slave = None
        self.pty_path = ""

    def send(self, data: bytes) -> None:
        if self.master is None:
            raise ValueError("the scanner is unplugged; plug it in first")
        os.write(self.master, data)
        self.sent += 1

    def scan(self, code: str) -> None:
        self.send(code.encode("utf-8") + self.suffix)

    def describe(self) -> dict[str, Any]:
        return {
            "plugged": self.master is not None,
            "pty": self.pty_path,
            "link": str(self.link),
            "sent": self.sent,
        }


def stdin_can_be_watched() -> bool:
    """A terminal, a pipe or a socket; not /dev/null or a file, which epoll refuses (EPERM)."""
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (OSError, ValueError, AttributeError):
        return False
    return sys.stdin.isatty() or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


async def forward_stdin(scanner: PtyScanner) -> None:
    if not stdin_can_be_watched():
        log.warning(
            "standard input is not a terminal or a pipe; scan with the control port "
            "(POST /scan) instead"
        )
        return
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        code = line.decode("utf-8", "replace").strip()
        if code and scanner.master is not None:
            scanner.scan(code)


async def serve(link: Path, control: str, suffix: bytes, stdin: bool) -> None:
    scanner = PtyScanner(link, suffix)
    scanner.plug()

    def scan(body: dict[str, Any]) -> dict[str, Any]:
        if "hex" in body:
            scanner.send(bytes.fromhex(body["hex"]))
        elif "base64" in body:
            scanner.send(base64.b64decode(body["base64"]))
        else:
            scanner.scan(str(body["code"]))
        return scanner.describe()

    def unplug(_body: dict[str, Any]) -> dict[str, Any]:
        scanner.unplug()
        return scanner.describe()

    def plug(_body: dict[str, Any]) -> dict[str, Any]:
        scanner.plug()
        return scanner.describe()

    runner, control_address = await start_control(
        control, {"scan": scan, "unplug": unplug, "plug": plug}, scanner.describe
    )
    announce(pty=scanner.pty_path, link=link, control=control_address)
    tasks = [asyncio.create_task(forward_stdin(scanner))] if stdin else []
    try:
        await stop_requested()
    finally:
        for task in tasks:
            task.cancel()
        scanner.unplug()
        await runner.cleanup()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--link", type=Path, required=True, help="stable path to the pty")
    parser.add_argument("--control", default="127.0.0.1:0", help="HOST:PORT of the control API")
    parser.add_argument("--suffix", default="CR", choices=["CR", "LF", "CRLF"])
    parser.add_argument("--stdin", action="store_true", help="scan each line typed on stdin")


SUFFIXES = {"CR": b"\r", "LF": b"\n", "CRLF": b"\r\n"}


def run(args: argparse.Namespace) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.link, args.control, SUFFIXES[args.suffix], args.stdin))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tilld sim scanner", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
