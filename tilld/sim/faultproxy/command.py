"""The command line: ``python -m tilld.sim.faultproxy`` and ``tilld sim proxy``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from typing import Any

from ...logs import setup_logging
from .. import stop_requested
from .control import ControlApi
from .modes import (
    DEFAULT_AFTER_BYTES,
    DEFAULT_DELAY_S,
    DEFAULT_DOWN_S,
    DEFAULT_JITTER_S,
    DEFAULT_UP_S,
    MODES,
    InvalidMode,
    Mode,
)
from .proxy import FaultProxy, host_port

log = logging.getLogger("tilld.sim.faultproxy")


def parse_address(value: str) -> tuple[str, int]:
    """HOST:PORT (``[::1]:PORT`` for IPv6) for argparse."""
    host, _, port = value.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdecimal() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"{value!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host, int(port)


async def serve(
    listen: tuple[str, int],
    target: tuple[str, int] | None,
    control: tuple[str, int],
    mode: str,
    options: dict[str, Any],
) -> None:
    """Start-up reads like a list; shutdown is the same list in reverse (STYLE 16)."""
    proxy = FaultProxy(*listen, *(target or (None, None)))
    proxy.set_mode(mode, **options)
    await proxy.start()
    try:
        control_server = ControlApi(proxy).server()
        control_bound = await control_server.start(*control)
        try:
            print(f"listening={host_port(proxy.host, proxy.port)}", flush=True)
            print(f"control={host_port(*control_bound)}", flush=True)
            await stop_requested()
            log.info("stopping")
        finally:
            await control_server.cleanup()
    finally:
        await proxy.stop()


def add_proxy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen", type=parse_address, default="127.0.0.1:0", help="HOST:PORT (port 0: any free)"
    )
    parser.add_argument(
        "--target",
        type=parse_address,
        help="HOST:PORT to forward to; without it, connections are accepted and closed",
    )
    parser.add_argument(
        "--control",
        type=parse_address,
        default="127.0.0.1:0",
        help="HOST:PORT of the control API (port 0: any free)",
    )
    parser.add_argument("--mode", choices=MODES, default="pass", help="the mode at start")
    parser.add_argument(
        "--delay-s", type=float, default=DEFAULT_DELAY_S, help="slow: seconds each chunk waits"
    )
    parser.add_argument(
        "--up-s",
        type=float,
        default=DEFAULT_UP_S,
        help="latency: seconds each chunk to the target waits",
    )
    parser.add_argument(
        "--down-s",
        type=float,
        default=DEFAULT_DOWN_S,
        help="latency: seconds each chunk to the client waits",
    )
    parser.add_argument(
        "--jitter-s",
        type=float,
        default=DEFAULT_JITTER_S,
        help="latency: up to this many seconds more, at random (bytes never overtake)",
    )
    parser.add_argument(
        "--after-bytes",
        type=int,
        default=DEFAULT_AFTER_BYTES,
        help="reset: response bytes let through before the RST",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])


def add_proxy_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``proxy`` to an argparse subparsers object (e.g. ``tilld sim proxy``)."""
    parser = subparsers.add_parser(
        "proxy",
        help="run the fault-injecting TCP proxy",
        description="A TCP proxy that refuses, black-holes (all connections or only new "
        "ones), resets, slows, delays like a long link or answers HTTP errors on command, for "
        "outage tests, benchmarks and the demo.",
    )
    add_proxy_arguments(parser)
    parser.set_defaults(run=run_proxy)
    return parser


def run_proxy(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    options = {
        "slow": {"delay_s": args.delay_s},
        "reset": {"after_bytes": args.after_bytes},
        "latency": {"up_s": args.up_s, "down_s": args.down_s, "jitter_s": args.jitter_s},
    }.get(args.mode, {})
    try:
        Mode.parse(args.mode, **options)
    except InvalidMode as exc:
        log.critical("cannot start the proxy: %s", exc)
        return os.EX_CONFIG
    try:
        asyncio.run(serve(args.listen, args.target, args.control, args.mode, options))
    except OSError as exc:
        log.critical("cannot start the proxy: %s", exc)
        return os.EX_CANTCREAT
    return os.EX_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tilld.sim.faultproxy", description="The tilld fault-injecting TCP proxy."
    )
    add_proxy_arguments(parser)
    return run_proxy(parser.parse_args(argv))
