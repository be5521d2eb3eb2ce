"""The card terminal simulator: real ZVT over TCP and over a pty, or nexo over HTTP.

    python -m drivers.sim.terminal --listen 127.0.0.1:20007 [--pty] --control 127.0.0.1:0
    tilld sim terminal --listen 127.0.0.1:0 --pty --control 127.0.0.1:0
    tilld sim terminal --protocol nexo --listen 127.0.0.1:11000 --control 127.0.0.1:0

With --protocol nexo the terminal is nexo_terminal.py's (same control channel
and script; no pty, no serial settings).

It prints ``listening=HOST:PORT``, ``pty=/dev/pts/N`` (with --pty) and
``control=HOST:PORT`` on stdout once each accepts, and stops on SIGTERM or
SIGINT. Over TCP it speaks raw APDUs; on the pty it speaks the serial framing
(DLE STX ... DLE ETX CRC, ACK/NAK), as a terminal on a serial cable does.

Control channel: one JSON object per line, one JSON answer per line.
    {"op": "set", "brand": "maestro", "online": false, ...}  change the script
    {"op": "state"}    the script, every booked transaction, the offline store
                       count, command counts and serial link counters
    {"op": "reset"}    forget transactions and go back to the default script
Script settings: brand (visa, mastercard, maestro, visa-electron, vpay, amex),
pan (a full test PAN; only its masked form is ever sent), online (false:
approvals flagged offline with BMP 19 = 40 and kept in the offline store),
offline_limit (store size at which it answers B1 memory full), decision
(approve, decline, customer-abort, hold = wait for the card until changed or
aborted), delay_s (slow answer before "please wait"), drop (before-approval /
after-approval: cut the link once, TCP reset or serial silence),
corrupt_crc (serial: send the next N frames with a bad CRC),
approve_online_only_offline (misbehave: approve Maestro & co offline).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import tty
from typing import Any

from ..zvt.link import SerialLink, SerialTiming, TcpLink
from . import stop_requested
from .terminal_script import ScriptError, follow_control
from .zvt_terminal import SimTerminal

log = logging.getLogger("drivers.sim.terminal")
MAX_CONTROL_LINE = 65536


class TerminalSimulator:
    """Owns the listeners, the pty and the control port around one SimTerminal."""

    def __init__(self, terminal: SimTerminal) -> None:
        self.terminal = terminal
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._tcp_links: set[TcpLink] = set()
        self._serial: SerialLink | None = None
        self._pty_fds: tuple[int, int] | None = None
        self.pty_path = ""

    async def listen_tcp(self, host: str, port: int) -> str:
        server = await asyncio.start_server(self._on_ecr, host, port)
        self._servers.append(server)
        sockname = server.sockets[0].getsockname()
        return f"{sockname[0]}:{sockname[1]}"

    async def listen_control(self, host: str, port: int) -> str:
        server = await asyncio.start_server(self._on_control, host, port, limit=MAX_CONTROL_LINE)
        self._servers.append(server)
        sockname = server.sockets[0].getsockname()
        return f"{sockname[0]}:{sockname[1]}"

    def open_pty(self) -> str:
        master, slave = os.openpty()
        # Raw mode: the line discipline must not translate bytes (0x0D, 0x11...).
        tty.setraw(slave)
        # Keeping the slave open ourselves means the master never reads EIO when
        # the driver closes and reopens the port.
        self._pty_fds = (master, slave)
        self.pty_path = os.ttyname(slave)
        self._serial = SerialLink(master, SerialTiming())
        self._spawn(self.terminal.serve(self._serial, drop=lambda: None))
        return self.pty_path

    async def _on_ecr(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = TcpLink(reader, writer)
        self._tcp_links.add(link)
        try:
            await self.terminal.serve(link, drop=link.abort)
        except asyncio.CancelledError:
            # The simulator is stopping. On Python 3.11 asyncio's stream
            # callback logs a cancelled handler as an error with a traceback.
            pass
        finally:
            self._tcp_links.discard(link)
            link.close()

    async def _on_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                answer = self.control(line)
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    def control(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            op = follow_control(self.terminal, request)
            if op == "set" and self._serial is not None and request.get("corrupt_crc"):
                self._serial.corrupt_next = int(request["corrupt_crc"])
                self.terminal.script.corrupt_crc = 0
        except (ScriptError, ValueError, TypeError) as exc:
            return {"ok": False, "error": str(exc)}
        state = self.terminal.state()
        if self._serial is not None:
            counters = self._serial.counters
            state["serial"] = {
                "frames_sent": counters.frames_sent,
                "resends": counters.resends,
                "naks_sent": counters.naks_sent,
                "naks_received": counters.naks_received,
            }
        return {"ok": True, **state}

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for link in list(self._tcp_links):
            link.close()
        if self._serial is not None:
            self._serial.close()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._pty_fds is not None:
            for fd in self._pty_fds:
                with contextlib.suppress(OSError):
                    os.close(fd)


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


async def serve(args: argparse.Namespace) -> None:
    terminal = SimTerminal(password=args.password, terminal_id=args.terminal_id)
    simulator = TerminalSimulator(terminal)
    try:
        if args.listen:
            print(f"listening={await simulator.listen_tcp(*args.listen)}", flush=True)
        if args.pty:
            print(f"pty={simulator.open_pty()}", flush=True)
        print(f"control={await simulator.listen_control(*args.control)}", flush=True)
        await stop_requested()
    finally:
        await simulator.close()


def add_terminal_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", type=_host_port, help="ZVT over TCP on HOST:PORT (0: any)")
    parser.add_argument("--pty", action="store_true", help="ZVT serial framing on a new pty")
    parser.add_argument(
        "--control", type=_host_port, default=("127.0.0.1", 0), help="control port HOST:PORT"
    )
    parser.add_argument("--password", default="000000", help="the terminal's ZVT password")
    parser.add_argument("--terminal-id", default="52500001", help="8-digit terminal id")
    parser.add_argument("--log-level", default="info", help="debug, info, warning, error")
    parser.add_argument(
        "--protocol",
        choices=("zvt", "nexo"),
        default="zvt",
        help="zvt (default) or nexo: nexo Retailer XML over HTTP on --listen (no --pty)",
    )
    parser.add_argument("--poi-id", default="SIM00001", help="nexo: the terminal's POIID")


def add_terminal_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``terminal`` to an argparse subparsers object (``tilld sim terminal``)."""
    parser = subparsers.add_parser(
        "terminal",
        help="run the card terminal simulator (ZVT or nexo)",
        description="A ZVT card terminal over TCP and/or a pty, or a nexo Retailer terminal "
        "over HTTP (--protocol nexo), scriptable on a control port.",
    )
    add_terminal_arguments(parser)
    parser.set_defaults(run=run_terminal)
    return parser


def run_terminal(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="%(name)s: %(message)s"
    )
    if args.protocol == "nexo":
        return run_nexo(args)
    if not args.listen and not args.pty:
        log.critical("nothing to serve: give --listen HOST:PORT, --pty, or both")
        return os.EX_CONFIG
    if len(args.password) != 6 or not args.password.isdigit():
        log.critical("--password must be six digits")
        return os.EX_CONFIG
    if len(args.terminal_id) != 8 or not args.terminal_id.isdigit():
        log.critical("--terminal-id must be eight digits")
        return os.EX_CONFIG
    try:
        asyncio.run(serve(args))
    except OSError as exc:
        log.critical("cannot start the terminal simulator: %s", exc)
        return os.EX_CANTCREAT
    return os.EX_OK


def run_nexo(args: argparse.Namespace) -> int:
    from .nexo_terminal import serve as serve_nexo

    if args.pty or not args.listen:
        log.critical("a nexo terminal listens on HTTP: give --listen HOST:PORT and no --pty")
        return os.EX_CONFIG
    if not args.poi_id or len(args.poi_id) > 32:
        log.critical("--poi-id must be 1 to 32 characters")
        return os.EX_CONFIG
    try:
        asyncio.run(serve_nexo(args.listen, args.control, args.poi_id))
    except OSError as exc:
        log.critical("cannot start the nexo terminal simulator: %s", exc)
        return os.EX_CANTCREAT
    return os.EX_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m drivers.sim.terminal", description="The tilld ZVT terminal simulator."
    )
    add_terminal_arguments(parser)
    return run_terminal(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
