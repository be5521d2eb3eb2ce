"""``tilld``: run the daemon, check its configuration, or run the demo.

Exit codes follow sysexits(3) so systemd units can tell a broken
configuration (78, do not restart) from a transient failure.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from pathlib import Path

from .. import __version__
from ..config import effective_toml, load_settings
from ..errors import ConfigError, StartupError
from ..logs import setup_logging

# Exit codes: sysexits(3) from os (EX_CONFIG, EX_CANTCREAT, EX_SOFTWARE when it
# stopped but the journal did not close cleanly; SQLite recovers it), and 1 for
# `tilld config check` finding an invalid configuration.
EX_INVALID = 1
# Tasks still running once the daemon has stopped get this long to end when cancelled.
LEFTOVER_TASKS_S = 0.25

log = logging.getLogger("tilld")


def build_parser(with_simulators: bool = True) -> argparse.ArgumentParser:
    """The command line; ``with_simulators=False`` leaves out the `sim` commands' own
    arguments, whose modules (aiohttp's web server, the terminal simulators)
    the daemon never needs: `tilld run` starts without importing them."""
    parser = argparse.ArgumentParser(
        prog="tilld", description="tilld: a till daemon that keeps selling when the network fails."
    )
    parser.add_argument("--version", action="version", version=f"tilld {__version__}")
    parser.add_argument("--config", help="configuration file (default /etc/tilld/tilld.toml)")
    commands = parser.add_subparsers(dest="command")
    run = commands.add_parser("run", help="run the daemon in the foreground (the default)")
    run.add_argument("--config", dest="run_config", help=argparse.SUPPRESS)
    config = commands.add_parser("config", help="configuration tools")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    check = config_commands.add_parser("check", help="print the effective configuration or errors")
    check.add_argument("--config", dest="check_config", help="configuration file to check")
    demo = commands.add_parser("demo", help="run the embedded demo till in the foreground")
    demo.add_argument("--state-dir", default="./.tilld-demo", help="demo state folder")
    demo.add_argument(
        "--terminal",
        choices=("zvt", "nexo"),
        default="zvt",
        help="the card terminal simulator's protocol (default zvt)",
    )
    sim = commands.add_parser("sim", help="simulators for tests and technicians")
    if not with_simulators:
        return parser
    sims = sim.add_subparsers(dest="sim_command", required=True)
    from ..sim.backend import add_backend_command
    from ..sim.faultproxy import add_proxy_command

    add_backend_command(sims)
    add_proxy_command(sims)
    add_device_simulators(sims)
    from drivers.sim.terminal import add_terminal_command

    add_terminal_command(sims)
    return parser


def add_device_simulators(sims: argparse._SubParsersAction) -> None:
    from drivers.sim import controlunit, printer, scanner

    for name, module, text in (
        ("printer", printer, "a network ESC/POS printer that keeps each receipt as text"),
        ("scanner", scanner, "a serial barcode scanner on a pty"),
        ("controlunit", controlunit, "a CleanCash control unit (kontrollenhet) on a pty"),
    ):
        parser = sims.add_parser(name, help=text, description=module.__doc__)
        module.add_arguments(parser)
        parser.set_defaults(run=module.run)


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    args = build_parser(with_simulators="sim" in words).parse_args(argv)
    config_file = getattr(args, "run_config", None) or getattr(args, "check_config", None)
    config_file = config_file or args.config
    if args.command == "config":
        return config_check(config_file)
    if args.command == "sim":
        return args.run(args)
    if args.command == "demo":
        setup_logging("info")
        from ..demo.run import run_demo

        try:
            return run_demo(Path(args.state_dir), args.terminal)
        except StartupError as exc:
            log.critical("cannot start the demo: %s", exc)
            return os.EX_CANTCREAT
    return run_daemon(config_file)


def config_check(config_file: str | None) -> int:
    try:
        settings, path = load_settings(config_file)
    except ConfigError as exc:
        print("configuration is invalid:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EX_INVALID
    print(f"# effective configuration (file: {path or 'none, built-in defaults'})")
    print(effective_toml(settings), end="")
    return os.EX_OK


def run_daemon(config_file: str | None) -> int:
    try:
        settings, path = load_settings(config_file)
    except ConfigError as exc:
        setup_logging("info")
        for problem in exc.problems:
            log.critical("configuration: %s", problem)
        log.critical("not starting: fix the configuration (tilld config check shows it)")
        return os.EX_CONFIG
    setup_logging(settings.log.level)
    log.info("tilld %s, configuration %s", __version__, path or "built-in defaults")
    from ..app import Daemon
    from ..sdnotify import Notifier, forget_environment, watchdog_interval
    from ..shutdown import EXIT_S, exit_now, run_until_stopped

    try:
        notifier = Notifier.from_environment()
    except ValueError as exc:
        log.warning("not talking to systemd: %s", exc)
        notifier = Notifier(None)
    watchdog_s = watchdog_interval()
    forget_environment()  # programs the daemon starts must not speak for it
    daemon: Daemon | None = None
    try:
        daemon = Daemon(
            settings,
            load_settings=lambda: load_settings(config_file)[0],
            notifier=notifier,
            watchdog_s=watchdog_s,
        )
        # Not asyncio.run: it waits without limit for leftover tasks and threads.
        run_until_stopped(daemon.run(), cleanup_s=LEFTOVER_TASKS_S)
    except StartupError as exc:
        log.critical("cannot start: %s", exc)
        notifier.status(f"cannot start: {exc}")  # shown by `systemctl status tilld`
        return os.EX_CANTCREAT
    except KeyboardInterrupt:
        pass
    finally:
        notifier.close()
    if daemon is None:
        return os.EX_OK
    code = os.EX_OK if daemon.journal_closed else os.EX_SOFTWARE
    deadline = daemon.exit_deadline
    if deadline == math.inf:  # interrupted before the stop began
        deadline = time.monotonic() + EXIT_S
    exit_now(code, deadline)


if __name__ == "__main__":
    sys.exit(main())
