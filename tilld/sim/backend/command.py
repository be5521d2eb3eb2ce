"""Running the reference back-end: ``python -m tilld.sim.backend`` and ``tilld sim backend``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from ...errors import StartupError
from ...logs import setup_logging
from .. import stop_requested
from .protocol import (
    DEFAULT_EVENT_CAPACITY,
    DEFAULT_RESERVATION_HOLD_S,
    DEFAULT_SWISH_DELAY_S,
    SWISH_OUTCOMES,
    Catalog,
    Problem,
    load_catalog,
)
from .routes import DatabaseThread, ReferenceBackend
from .store import BackendStore, StoreSettings

log = logging.getLogger("tilld.sim.backend")

# -- running it ------------------------------------------------------------------------


@dataclass(frozen=True)
class BackendSettings:
    host: str
    port: int
    db_path: Path
    token: str | None
    catalog: Catalog | None
    store: StoreSettings
    answer_delay: tuple[float, float] | None = None  # seconds, lowest and highest


def parse_listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdecimal() or int(port) > 65535:
        raise StartupError(f"--listen {value!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host, int(port)


def read_token(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise StartupError(f"cannot read the token file {path}: {exc.strerror}") from None
    if not token:
        raise StartupError(f"the token file {path} is empty")
    return token


def read_start_catalog(seed: str | None, catalog_file: str | None) -> Catalog | None:
    if seed == "demo":
        raw = resources.files("tilld.demo").joinpath("catalog.json").read_bytes()
        source = "the demo catalog"
    elif catalog_file is not None:
        try:
            raw = Path(catalog_file).read_bytes()
        except OSError as exc:
            raise StartupError(f"cannot read --catalog {catalog_file}: {exc.strerror}") from None
        source = catalog_file
    else:
        return None
    try:
        return load_catalog(raw, source)
    except Problem as exc:
        raise StartupError(f"the catalog is not valid: {exc.message}") from None


def settings_from_args(args: argparse.Namespace) -> BackendSettings:
    host, port = parse_listen(args.listen)
    for name in ("swish_delay", "reservation_hold"):
        if getattr(args, name) < 0:
            raise StartupError(f"--{name.replace('_', '-')} must not be negative")
    answer_delay = tuple(args.answer_delay) if args.answer_delay else None
    if answer_delay is not None and not 0 <= answer_delay[0] <= answer_delay[1]:
        raise StartupError(
            f"--answer-delay {answer_delay[0]:g} {answer_delay[1]:g}: expected MIN MAX, "
            "0 <= MIN <= MAX, e.g. --answer-delay 0.2 0.9"
        )
    return BackendSettings(
        host=host,
        port=port,
        db_path=Path(args.db),
        token=read_token(args.token_file),
        catalog=read_start_catalog(args.seed, args.catalog),
        store=StoreSettings(
            event_capacity=args.event_capacity,
            reservation_hold_s=args.reservation_hold,
            swish_auto=args.swish_auto,
            swish_delay_s=args.swish_delay,
        ),
        answer_delay=answer_delay,
    )


async def serve(settings: BackendSettings) -> None:
    """Start-up reads like a list; shutdown is the same list in reverse (STYLE 16)."""
    store = BackendStore(settings.db_path, settings.store)
    db = DatabaseThread()
    try:
        await db.run(store.open)
        if settings.catalog is not None:
            await db.run(store.set_catalog, settings.catalog)
        runner = web.AppRunner(
            ReferenceBackend(store, db, settings.token, settings.answer_delay).app(),
            access_log=None,
            handle_signals=False,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, settings.host, settings.port)
            await site.start()
            announce_listening(runner)
            if settings.token is None:
                log.warning("no --token-file: every request is accepted without a token")
            await stop_requested()
            log.info("stopping")
        finally:
            await runner.cleanup()
    finally:
        await db.run(store.close)
        db.shutdown()


def announce_listening(runner: web.AppRunner) -> None:
    host, port = runner.addresses[0][:2]
    host = f"[{host}]" if ":" in host else host
    log.info("listening on http://%s:%d", host, port)
    print(f"listening=http://{host}:{port}", flush=True)


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT (port 0: any free)")
    parser.add_argument("--db", required=True, help="the back-end's SQLite file")
    parser.add_argument(
        "--token-file", help="file holding the bearer token (without it, every request is accepted)"
    )
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--seed", choices=["demo"], help="serve the demo catalog")
    start.add_argument("--catalog", metavar="FILE", help="serve this catalog document")
    parser.add_argument(
        "--swish-auto", choices=SWISH_OUTCOMES, help="Swish outcome after --swish-delay seconds"
    )
    parser.add_argument("--swish-delay", type=float, default=DEFAULT_SWISH_DELAY_S, metavar="S")
    parser.add_argument(
        "--event-capacity",
        type=int,
        default=DEFAULT_EVENT_CAPACITY,
        metavar="N",
        help="seats of each catalog event without a capacity set by /control/events",
    )
    parser.add_argument(
        "--reservation-hold",
        type=float,
        default=DEFAULT_RESERVATION_HOLD_S,
        metavar="S",
        help="seconds a reservation holds its seats unless a sale names it",
    )
    parser.add_argument(
        "--answer-delay",
        type=float,
        nargs=2,
        metavar=("MIN", "MAX"),
        help="a slow back-end: every /v1/ request waits a random MIN to MAX seconds",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])


def add_backend_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``backend`` to an argparse subparsers object (e.g. ``tilld sim backend``)."""
    parser = subparsers.add_parser(
        "backend",
        help="run the reference back-end (BACKEND-PROTOCOL.md)",
        description="The reference back-end: the protocol's server for the demo and the tests.",
    )
    add_backend_arguments(parser)
    parser.set_defaults(run=run_backend)
    return parser


def run_backend(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    try:
        settings = settings_from_args(args)
    except StartupError as exc:
        log.critical("cannot start the back-end: %s", exc)
        return os.EX_CONFIG
    try:
        asyncio.run(serve(settings))
    except (StartupError, OSError) as exc:
        log.critical("cannot start the back-end: %s", exc)
        return os.EX_CANTCREAT
    return os.EX_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tilld.sim.backend", description="The tilld reference back-end."
    )
    add_backend_arguments(parser)
    return run_backend(parser.parse_args(argv))
