"""tillctl's command line: one argparse tree, also the source of its completion and man page.

The global options (--socket, --json, --yes) are accepted before or after
the subcommand: each subcommand parser carries them too, with SUPPRESS as
default so a value given before the subcommand is not overwritten.
"""

from __future__ import annotations

import argparse
import getpass
import os

from ... import __version__
from ...events import TOPICS

DEFAULT_SOCKET = "/run/tilld/tilld.sock"

# The demo's switches and what each can be (tilld/demo checks them; this is for --help).
DEMO_SWITCHES = {
    "server": "up, down, blackhole",
    "internet": "up, down, blackhole",
    "printer": "up, down, paper-out, paper-low, cover-open",
    "scanner": "up, down",
    "card": "visa, mastercard, maestro, visa-electron, vpay, amex, decline",
    "controlunit": "up, down, warning, full",
}
SCAN_STATES = ("pending", "registered", "rejected")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < 86_400:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 86400 seconds")
    return value


def bounded_int(low: int, high: int) -> type[int] | object:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value

    parse.__name__ = "number"
    return parse


def kronor_amount(text: str) -> int:
    """'2000', '2000,50' or '2000.50' kronor -> öre."""
    whole, _, cents = text.strip().replace(",", ".").partition(".")
    if not whole.isdigit() or not (cents == "" or (cents.isdigit() and len(cents) <= 2)):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an amount in kronor, like 2000 or 2000,50"
        )
    ore = int(whole) * 100 + int(cents.ljust(2, "0") or 0)
    if ore > 100_000_000:
        raise argparse.ArgumentTypeError(f"{text} kr is more than a drawer's float (1 000 000 kr)")
    return ore


def global_options(suppress: bool) -> argparse.ArgumentParser:
    """--socket, --json and --yes; with ``suppress`` for the copies on each subcommand."""
    options = argparse.ArgumentParser(add_help=False)

    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    options.add_argument(
        "--socket",
        metavar="PATH",
        default=default(os.environ.get("TILLD_SOCKET", DEFAULT_SOCKET)),
        help=f"tilld's socket (default $TILLD_SOCKET or {DEFAULT_SOCKET})",
    )
    options.add_argument(
        "--json", action="store_true", default=default(False), help="machine-readable output"
    )
    options.add_argument(
        "-y",
        "--yes",
        action="store_true",
        default=default(False),
        help="do what closes or resets without asking (needed when not on a terminal)",
    )
    return options


class Commands:
    """Adds subcommands that carry the global options; names each level's missing command."""

    def __init__(self, parser: argparse.ArgumentParser, dest: str, title: str) -> None:
        self.action = parser.add_subparsers(dest=dest, required=True, metavar=title)
        self.common = global_options(suppress=True)

    def add(self, name: str, help: str, **kwargs: object) -> argparse.ArgumentParser:
        return self.action.add_parser(
            name, help=help, description=help, parents=[self.common], **kwargs
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tillctl",
        description="Talk to a running tilld: the technician's view of the till.",
        epilog="Exit codes: 0 done, 1 refused or failed, 2 usage, 3 tilld not reachable.",
        parents=[global_options(suppress=False)],
    )
    parser.add_argument("--version", action="version", version=f"tillctl {__version__}")
    sub = Commands(parser, "command", "COMMAND")

    sub.add("status", "mode (since when, why), payments, pending, devices").set_defaults(
        run="status"
    )

    pending = sub.add("pending", "sales, refunds and tickets not yet synced, with ages")
    pending.add_argument(
        "--limit", type=bounded_int(1, 1000), default=100, help="at most N entries"
    )
    pending.add_argument(
        "--type", action="append", metavar="TYPE", help="only entries of TYPE (sale, refund, ...)"
    )
    pending.add_argument("--all", action="store_true", help="also drawer and print entries")
    pending.set_defaults(run="pending")

    sync = sub.add("sync", "send everything to the back-end now; fails while it is unreachable")
    sync.add_argument("--wait", action="store_true", help="show progress until drained")
    sync.add_argument(
        "--timeout", type=positive_float, default=120, metavar="S", help="give up waiting after S"
    )
    sync.set_defaults(run="sync")

    scans = sub.add("scans", "ticket scans and their registration, with ages")
    which = scans.add_mutually_exclusive_group()
    which.add_argument("--pending", action="store_true", help="only those not yet registered")
    which.add_argument("--state", choices=SCAN_STATES, help="only scans in this state")
    scans.add_argument("--code", help="only codes containing CODE")
    scans.add_argument("--limit", type=bounded_int(1, 10_000), default=100, help="at most N scans")
    scans.set_defaults(run="scans")

    journal = sub.add("journal", "verify or export the journal")
    jsub = Commands(journal, "journal_command", "{verify,export,acknowledge-rollback}")
    jsub.add("verify", "check the hash chain and that the journal did not go back")
    ack = jsub.add(
        "acknowledge-rollback",
        "accept that a rolled-back journal lost its last entries; sales resume (asks first)",
    )
    ack.add_argument(
        "--technician",
        default=os.environ.get("SUDO_USER") or getpass.getuser(),
        help="who acknowledges (default: the login name)",
    )
    export = jsub.add("export", "write the journal to stdout")
    export.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    export.add_argument("--since-seq", type=bounded_int(0, 2**63 - 1), default=0)
    export.add_argument(
        "--type", action="append", metavar="TYPE", help="only entries of TYPE (sale, refund, ...)"
    )
    export.add_argument(
        "--receipt",
        type=bounded_int(1, 2**63 - 1),
        metavar="N",
        help="only receipt N's entries (its sale, refunds of it, its prints)",
    )
    journal.set_defaults(run="journal")

    report = sub.add("report", "X report (a look) or Z report (closes the day; asks first)")
    report.add_argument("kind", choices=["x", "z"])
    report.set_defaults(run="report")

    receipt = sub.add("receipt", "show a receipt from the journal, or print it again")
    rsub = Commands(receipt, "receipt_command", "{show,print}")
    show = rsub.add("show", "the receipt as text from the journal (prints nothing)")
    show.add_argument("receipt_no", type=bounded_int(1, 2**63 - 1), metavar="N")
    again = rsub.add("print", "print receipt N; an original printed once needs --copy")
    again.add_argument("receipt_no", type=bounded_int(1, 2**63 - 1), metavar="N")
    again.add_argument("--copy", action="store_true", help="the one allowed copy (KOPIA)")
    receipt.set_defaults(run="receipt")

    terminal = sub.add("terminal", "the card terminal: state, offline budget, flush")
    tsub = terminal.add_subparsers(dest="terminal_command", metavar="{status,flush}")
    tsub.add_parser("status", help="the default", parents=[global_options(suppress=True)])
    tsub.add_parser(
        "flush",
        help="send the card payments stored offline now and close the terminal's day (asks first)",
        parents=[global_options(suppress=True)],
    )
    terminal.set_defaults(run="terminal", terminal_command="status")

    unit = sub.add("controlunit", "the control unit: working, waiting receipts, doubts, settle")
    usub = unit.add_subparsers(dest="controlunit_command", metavar="{status,settle}")
    usub.add_parser("status", help="the default", parents=[global_options(suppress=True)])
    settle = usub.add_parser(
        "settle",
        help="settle receipt N's registration in doubt as found at the unit (asks first)",
        description="Settle receipt N's registration in doubt, after reading the unit's own "
        "journal (docs/fiscal.md): --register-again if the unit does not hold it, --code with "
        "the code it shows if it does.",
        parents=[global_options(suppress=True)],
    )
    settle.add_argument("receipt_no", type=bounded_int(1, 2**63 - 1), metavar="N")
    how = settle.add_mutually_exclusive_group(required=True)
    how.add_argument(
        "--register-again",
        action="store_true",
        help="the unit does not hold it: register it again as a new request",
    )
    how.add_argument("--code", metavar="CODE", help="the unit holds it: its control code")
    settle.add_argument(
        "--unit-id", metavar="ID", help="with --code: the unit's id, if not the one connected"
    )
    settle.add_argument(
        "--technician",
        default=os.environ.get("SUDO_USER") or getpass.getuser(),
        help="who settles it (journaled; default: the login name)",
    )
    unit.set_defaults(run="controlunit", controlunit_command="status")

    sub.add("devices", "devices and their state").set_defaults(run="devices")
    printer = sub.add("printer", "the receipt printer")
    printer.add_argument("action", choices=["test"], help="test: print a test page")
    printer.set_defaults(run="printer")
    sub.add("drawer", "open the cash drawer (journaled)").set_defaults(run="drawer")
    float_ = sub.add("float", "register the float (växelkassa) now in the drawer")
    float_.add_argument("amount", type=kronor_amount, metavar="KRONOR", help="e.g. 2000 or 2000,50")
    float_.add_argument("--note", default="", help="why it changed")
    float_.set_defaults(run="float")

    logs = sub.add("logs", "tilld's log: journalctl -u tilld, or the demo's log file")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument("-n", "--lines", type=bounded_int(0, 1_000_000), default=50)
    logs.set_defaults(run="logs")

    watch = sub.add("watch", "print live events, one line each with its time, until Ctrl-C")
    watch.add_argument(
        "topics",
        nargs="*",
        default=[],
        choices=[[], *TOPICS],
        metavar="TOPIC",
        help=f"any of {', '.join(TOPICS)} (default all); --json prints each event raw",
    )
    watch.set_defaults(run="watch")

    demo = sub.add("demo", "switch one of the demo's simulators (tilld demo only)")
    demo.add_argument("target", choices=list(DEMO_SWITCHES))
    demo.add_argument(
        "state", help="; ".join(f"{target}: {states}" for target, states in DEMO_SWITCHES.items())
    )
    demo.set_defaults(run="demo")

    call = sub.add("call", "call any API method (docs/api.md)")
    call.add_argument("method")
    call.add_argument(
        "params", nargs="*", default=[], help="one JSON object, or key=value / key:=json pairs"
    )
    call.add_argument("--get", metavar="PATH", help="print only this field (a.b.0 for nested)")
    call.set_defaults(run="call")

    completion = sub.add("completion", "print a shell completion script")
    completion.add_argument("shell", choices=["bash", "zsh"])
    completion.set_defaults(run="completion")
    return parser
