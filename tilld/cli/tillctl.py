"""``tillctl``: the technician's client for a running tilld.

A thin client of the socket API: every command is one or more JSON-RPC calls
and a rendering of the answer, never a second implementation of the logic.
Exit codes: 0 success, 1 the daemon refused or reported a problem, 2 usage,
3 the daemon cannot be reached.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import socket
import struct
import sys
from typing import Any

from ..money import format_sek

DEFAULT_SOCKET = "/run/tilld/tilld.sock"
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


class Unreachable(Exception):
    pass


class RpcError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("message", "error"))
        self.error = error

    def one_line(self) -> str:
        data = self.error.get("data") or {}
        reason = data.get("reason") if isinstance(data, dict) else None
        message = (data.get("message") if isinstance(data, dict) else None) or self.error.get(
            "message"
        )
        if reason:
            return f"refused ({reason}): {message}"
        return f"error {self.error.get('code')}: {message}"


class Client:
    def __init__(self, path: str, timeout: float | None = 60) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX)
        # A blocking connect() waits for room in the daemon's accept queue,
        # which a burst of clients can fill; one with a Python timeout is
        # non-blocking and would fail at once (EAGAIN). SO_SNDTIMEO bounds the wait.
        if timeout is not None:
            seconds, fraction = divmod(timeout, 1)
            timeval = struct.pack("ll", int(seconds), int(fraction * 1e6))
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        try:
            self.sock.connect(path)
        except BlockingIOError:
            self.sock.close()
            raise Unreachable(
                f"tilld at {path} accepted no connection for {timeout:g} s (its queue is "
                "full: too many clients connecting, or the daemon is stuck); try again, "
                "or see journalctl -u tilld"
            ) from None
        except OSError as exc:
            self.sock.close()
            raise Unreachable(
                f"cannot reach tilld at {path}: {exc.strerror or exc}. Is it running? "
                "(systemctl status tilld; or pass --socket / set TILLD_SOCKET)"
            ) from None
        self.sock.settimeout(timeout)
        self.file = self.sock.makefile("rwb")
        self.next_id = 0

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        self.next_id += 1
        request = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params or {}}
        try:
            self.file.write(json.dumps(request).encode() + b"\n")
            self.file.flush()
        except OSError as exc:
            # The daemon hung up first (it refused the connection, or is
            # stopping); its last words may still wait to be read.
            self._lost(exc)
        while True:
            reply = self.read()
            if reply.get("id") == self.next_id:
                break
            if reply.get("id") is None and "error" in reply:
                # About the connection, not one request: a refusal before a hang-up.
                raise RpcError(reply["error"])
        if "error" in reply:
            raise RpcError(reply["error"])
        return reply["result"]

    def read(self) -> dict[str, Any]:
        try:
            line = self.file.readline()
        except TimeoutError:
            raise  # the caller decides what waiting too long means
        except OSError as exc:
            raise Unreachable(self._hung_up(exc)) from None
        if not line:
            raise Unreachable(f"tilld at {self.path} closed the connection")
        try:
            reply = json.loads(line)
        except ValueError:
            raise Unreachable(f"tilld at {self.path} answered something not JSON-RPC") from None
        if not isinstance(reply, dict):
            raise Unreachable(f"tilld at {self.path} answered something not JSON-RPC")
        return reply

    def _lost(self, exc: OSError) -> None:
        """After a failed write: raise what the daemon said last, or that it hung up."""
        with contextlib.suppress(OSError, ValueError):
            self.sock.settimeout(1)  # its last words are already here, or never coming
            line = self.file.readline()
            reply = json.loads(line) if line else None
            if isinstance(reply, dict) and isinstance(reply.get("error"), dict):
                raise RpcError(reply["error"])
        raise Unreachable(self._hung_up(exc))

    def _hung_up(self, exc: OSError) -> str:
        if isinstance(exc, ConnectionResetError):
            what = "reset the connection"
        elif isinstance(exc, BrokenPipeError):
            what = "closed the connection"
        else:
            what = f"connection failed ({exc.strerror or exc})"
        return (
            f"tilld at {self.path} {what}; it may be restarting or refusing this user "
            "(journalctl -u tilld says why); try again"
        )


# -- rendering --------------------------------------------------------------


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def render_status(st: dict[str, Any]) -> str:
    pending = st["pending"]
    lines = [
        f"till        {st['till_id']}  (tilld {st['version']})",
        f"mode        {st['mode']}  (server {'up' if st['server'] else 'down'}, "
        f"internet {'up' if st['internet'] else 'down'})",
        f"pending     {pending['entries']} entries, {pending['tickets']} tickets, "
        f"{pending['scans']} scans",
        f"offline card {st['offline_card']['stored']} of {st['offline_card']['limit']}",
    ]
    integrity = st.get("journal", {}).get("integrity", {})
    if integrity.get("state", "ok") != "ok":
        lines.append(f"journal     {integrity['state'].upper()}: {integrity.get('message', '')}")
    if "catalog" in st:
        cat = st["catalog"]
        lines.append(
            f"catalog     {cat['version']} ({cat['articles']} articles from {cat['source']})"
        )
        refused = cat.get("refused")
        if refused:
            more = len(refused["problems"]) - 1
            lines.append(
                f"  refused   a catalog from {refused['source']} at {refused['at']}: "
                f"{refused['problems'][0]}" + (f" (and {more} more)" if more else "")
            )
    lines.append("payments")
    for method, state in st["payment_methods"].items():
        mark = "available" if state["available"] else f"refused: {state.get('reason')}"
        lines.append(f"  {method:<13} {mark}")
    devices = st.get("devices") or {}
    lines.append("devices" + ("" if devices else "     none configured"))
    for name, dev in devices.items():
        lines.append(f"  {name:<13} {dev.get('state')} {dev.get('detail') or ''}".rstrip())
    return "\n".join(lines)


def render_pending(p: dict[str, Any]) -> str:
    counts = p["counts"]
    out = [
        f"{counts['entries']} entries, {counts['tickets']} tickets not yet synced",
        "",
        table(p["entries"], ["seq", "type", "created_at", "receipt_no", "total", "sync_status"]),
    ]
    if p["tickets"]:
        out += ["", table(p["tickets"], ["code", "receipt_no", "name", "state", "created_at"])]
    return "\n".join(out)


def render_report(r: dict[str, Any]) -> str:
    title = f"Z report {r['z_no']}" if r["kind"] == "z" else "X report (the day so far)"
    lines = [
        title,
        f"till {r['till_id']}  {r['seller']} {r.get('org_number') or ''}".rstrip(),
        f"period {r['period_start'] or '-'} .. {r['period_end'] or '-'}",
        f"receipts {r['first_receipt_no'] or '-'} .. {r['last_receipt_no'] or '-'}",
        f"sales    {r['sales']:>6}  {format_sek(r['gross_sales']):>14}",
        f"refunds  {r['refunds']:>6}  {format_sek(-r['gross_refunds']):>14}",
        f"net               {format_sek(r['net']):>14}",
        f"voided sales {r['voids']}, tickets {r['tickets']}",
        "payments",
    ]
    lines += [f"  {m:<13} {format_sek(a):>14}" for m, a in r["payments"].items()]
    lines.append("VAT")
    lines += [
        f"  {v['rate']:>3} %  net {format_sek(v['net']):>12}  VAT {format_sek(v['vat']):>10}"
        for v in r["vat"]
    ]
    lines.append(f"grand total       {format_sek(r['grand_total']):>14}")
    return "\n".join(lines)


# -- commands ---------------------------------------------------------------


def parse_params(items: list[str]) -> dict[str, Any]:
    """Either one JSON object, or key=value (string) and key:=json pairs."""
    if len(items) == 1 and items[0].lstrip().startswith("{"):
        params = json.loads(items[0])
        if not isinstance(params, dict):
            raise ValueError("params must be a JSON object")
        return params
    params: dict[str, Any] = {}
    for item in items:
        if ":=" in item:
            key, raw = item.split(":=", 1)
            params[key] = json.loads(raw)
        elif "=" in item:
            key, value = item.split("=", 1)
            params[key] = value
        else:
            raise ValueError(f"{item!r}: use key=value, key:=json or one JSON object")
    return params


def emit(args: argparse.Namespace, result: Any, human: str | None = None) -> None:
    if args.json or human is None:
        print(json.dumps(result, ensure_ascii=False, indent=None if args.json else 2))
    else:
        print(human)


def cmd_status(client: Client, args: argparse.Namespace) -> int:
    st = client.call("status.get")
    emit(args, st, render_status(st))
    return 0


def cmd_pending(client: Client, args: argparse.Namespace) -> int:
    p = client.call("sync.pending", {"limit": args.limit})
    emit(args, p, render_pending(p))
    return 0


def cmd_journal(client: Client, args: argparse.Namespace) -> int:
    if args.journal_command == "verify":
        v = client.call("admin.journal_verify")
        if v["ok"]:
            human = f"ok: {v['entries']} entries, hash chain intact"
        elif "first_bad_seq" in v:
            human = f"BROKEN: {v['entries']} entries, first bad seq {v['first_bad_seq']}"
        else:
            human = f"{v['integrity']['state'].upper()}: {v['integrity']['message']}"
        emit(args, v, human)
        return 0 if v["ok"] else EXIT_REFUSED
    if args.journal_command == "acknowledge-rollback":
        if not args.yes:
            print(
                "tillctl: acknowledging a rollback accepts that the journal's lost entries are "
                "gone for good; pass --yes once the journal cannot be restored",
                file=sys.stderr,
            )
            return EXIT_USAGE
        r = client.call("admin.acknowledge_rollback", {"technician": args.technician})
        emit(
            args,
            r,
            f"acknowledged in journal entry {r['seq']}: the journal goes on after entry "
            f"{r['continues_from']['seq']}; the next receipt is number {r['next_receipt_no']}",
        )
        return 0
    since = args.since_seq
    while True:
        page = client.call(
            "admin.journal_export", {"since_seq": since, "format": args.format, "limit": 5000}
        )
        sys.stdout.write(page["content"])
        if page["next_since_seq"] is None:
            return 0
        since = page["next_since_seq"]


def cmd_report(client: Client, args: argparse.Namespace) -> int:
    r = client.call("admin.report", {"kind": args.kind})
    emit(args, r, render_report(r))
    return 0


def cmd_devices(client: Client, args: argparse.Namespace) -> int:
    d = client.call("admin.devices")["devices"]
    rows = [{"device": n, **v} for n, v in d.items()]
    emit(
        args,
        d,
        table(rows, ["device", "kind", "state", "detail"]) if rows else "no devices configured",
    )
    return 0


def cmd_printer(client: Client, args: argparse.Namespace) -> int:
    r = client.call("admin.printer_test")
    status = r["status"]
    detail = f" ({status['detail']})" if status.get("detail") else ""
    emit(args, r, f"test page {r['state']}; printer {status['state']}{detail}")
    return 0 if r["state"] == "printed" else EXIT_REFUSED


def cmd_drawer(client: Client, args: argparse.Namespace) -> int:
    r = client.call("drawer.open")
    emit(args, r, f"drawer opened (journal seq {r['seq']})")
    return 0


def cmd_float(client: Client, args: argparse.Namespace) -> int:
    r = client.call("float.set", {"amount": args.amount, "note": args.note})
    emit(args, r, f"float {r['amount']} öre (change {r['change']:+d}; journal seq {r['seq']})")
    return 0


def cmd_receipt(client: Client, args: argparse.Namespace) -> int:
    r = client.call("receipt.print", {"receipt_no": args.receipt_no, "copy": args.copy})
    detail = f" ({r['detail']})" if r.get("detail") else ""
    emit(
        args,
        r,
        f"receipt {args.receipt_no}{' copy' if r.get('copy') else ''}: {r['state']}{detail}",
    )
    return 0


def cmd_watch(client: Client, args: argparse.Namespace) -> int:
    params = {"topics": args.topics} if args.topics else {}
    topics = client.call("events.subscribe", params)["topics"]
    print(f"tillctl: watching {', '.join(topics)} (Ctrl-C stops)", file=sys.stderr, flush=True)
    client.sock.settimeout(None)
    try:
        while True:
            message = client.read()
            if message.get("method") == "event":
                event = message["params"]
                if args.json:
                    print(json.dumps(event, ensure_ascii=False), flush=True)
                else:
                    rest = {k: v for k, v in event.items() if k != "topic"}
                    print(f"{event['topic']:<7} {json.dumps(rest, ensure_ascii=False)}", flush=True)
    except KeyboardInterrupt:
        return 0


def cmd_sync(client: Client, args: argparse.Namespace) -> int:
    if not args.wait:
        result = client.call("admin.sync_now", {"wait": False})
        emit(args, result, f"sync started: {_pending_words(result['pending'])}")
        return 0
    # Follow progress through events while the daemon drains, then ask for
    # the verdict: the events draw the bar, admin.sync_now gives the answer.
    watcher = Client(client.path)
    watcher.call("events.subscribe", {"topics": ["sync", "mode"]})
    start = client.call("admin.sync_now", {"wait": False})
    total = max(1, start["unsent"] + start["pending"]["scans"])
    show_bar = sys.stderr.isatty() and not args.json
    watcher.sock.settimeout(args.timeout)
    result = None
    try:
        while True:
            if start["unsent"] == 0 and start["pending"]["scans"] == 0:
                break
            event = watcher.read()
            if event.get("method") != "event":
                continue
            params = event["params"]
            if params["topic"] == "sync":
                left = params["unsent"] + params["pending"]["scans"]
                if show_bar:
                    _draw_bar(total - left, total)
                if left == 0 or params.get("error"):
                    break
            elif params["topic"] == "mode" and not params["server"]:
                break
    except TimeoutError:
        pass
    finally:
        if show_bar:
            print(file=sys.stderr)
    result = client.call("admin.sync_now", {"wait": True, "timeout_s": 1})
    if result["drained"]:
        emit(args, result, f"synced: {_pending_words(result['pending'])}")
        return 0
    emit(args, result, f"not drained: {result.get('why')}; {_pending_words(result['pending'])}")
    return EXIT_REFUSED


def _pending_words(pending: dict[str, int]) -> str:
    return (
        f"{pending['entries']} entries, {pending['tickets']} tickets, "
        f"{pending['scans']} scans pending"
    )


def _draw_bar(done: int, total: int, width: int = 40) -> None:
    filled = width * done // total
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    sys.stderr.flush()


def cmd_scans(client: Client, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.pending:
        params["state"] = "pending"
    result = client.call("scans.list", params)
    human = f"{result['pending']} scans waiting to be registered\n\n" + table(
        result["scans"], ["seq", "code", "scanned_at", "local_check", "state", "detail"]
    )
    emit(args, result, human)
    return 0


def cmd_demo(client: Client, args: argparse.Namespace) -> int:
    result = client.call("demo.set", {"target": args.target, "state": args.state})
    emit(args, result, f"demo {args.target} is now {result['state']}")
    return 0


def cmd_call(client: Client, args: argparse.Namespace) -> int:
    try:
        params = parse_params(args.params)
    except ValueError as exc:
        print(f"tillctl: bad params: {exc}", file=sys.stderr)
        return 2
    result = client.call(args.method, params)
    if args.get:
        value = result
        for key in args.get.split("."):
            value = value[key]
        print(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
        return 0
    emit(args, result)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tillctl", description="Talk to a running tilld.")
    parser.add_argument(
        "--socket",
        default=os.environ.get("TILLD_SOCKET", DEFAULT_SOCKET),
        help=f"tilld's socket (default $TILLD_SOCKET or {DEFAULT_SOCKET})",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="mode, pending counts, payment methods").set_defaults(
        run=cmd_status
    )
    pending = sub.add_parser("pending", help="entries and tickets not yet synced")
    pending.add_argument("--limit", type=int, default=100)
    pending.set_defaults(run=cmd_pending)
    journal = sub.add_parser("journal", help="verify or export the journal")
    jsub = journal.add_subparsers(dest="journal_command", required=True)
    jsub.add_parser("verify", help="check the hash chain and that the journal did not go back")
    ack = jsub.add_parser(
        "acknowledge-rollback",
        help="accept that a rolled-back journal lost its last entries; sales resume",
    )
    ack.add_argument("--yes", action="store_true", help="really acknowledge (journaled)")
    ack.add_argument(
        "--technician",
        default=os.environ.get("SUDO_USER") or getpass.getuser(),
        help="who acknowledges (default: the login name)",
    )
    export = jsub.add_parser("export", help="write the journal to stdout")
    export.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    export.add_argument("--since-seq", type=int, default=0)
    journal.set_defaults(run=cmd_journal)
    report = sub.add_parser("report", help="X report (a look) or Z report (closes the day)")
    report.add_argument("kind", choices=["x", "z"])
    report.set_defaults(run=cmd_report)
    sub.add_parser("devices", help="devices and their state").set_defaults(run=cmd_devices)
    printer = sub.add_parser("printer", help="the receipt printer")
    printer.add_argument("action", choices=["test"], help="test: print a test page")
    printer.set_defaults(run=cmd_printer)
    sub.add_parser("drawer", help="open the cash drawer (journaled)").set_defaults(run=cmd_drawer)
    float_ = sub.add_parser("float", help="register the float (växelkassa) now in the drawer")
    float_.add_argument("amount", type=int, help="öre in the drawer as float")
    float_.add_argument("--note", default="", help="why it changed")
    float_.set_defaults(run=cmd_float)
    receipt = sub.add_parser("receipt", help="print a receipt again")
    receipt.add_argument("receipt_no", type=int)
    receipt.add_argument("--copy", action="store_true", help="the one allowed copy (KOPIA)")
    receipt.set_defaults(run=cmd_receipt)
    sync = sub.add_parser("sync", help="sync with the back-end now")
    sync.add_argument("--wait", action="store_true", help="show progress until drained")
    sync.add_argument("--timeout", type=float, default=120, help="give up waiting after S")
    sync.set_defaults(run=cmd_sync)
    scans = sub.add_parser("scans", help="ticket scans and their registration")
    scans.add_argument("--pending", action="store_true", help="only those not yet registered")
    scans.add_argument("--limit", type=int, default=100)
    scans.set_defaults(run=cmd_scans)
    demo = sub.add_parser(
        "demo",
        help="switch the demo's server, internet, printer, scanner, card terminal or control unit",
    )
    targets = ["server", "internet", "printer", "scanner", "card", "controlunit"]
    demo.add_argument("target", choices=targets)
    demo.add_argument(
        "state",
        help="up, down, blackhole; printer: paper-out, paper-low, cover-open; "
        "card: visa, mastercard, maestro, visa-electron, vpay, amex, decline; "
        "controlunit: up, down, warning, full",
    )
    demo.set_defaults(run=cmd_demo)
    watch = sub.add_parser("watch", help="print live events until Ctrl-C")
    watch.add_argument("topics", nargs="*", help="mode, scan, sale, sync, device (default all)")
    watch.set_defaults(run=cmd_watch)
    call = sub.add_parser("call", help="call any API method")
    call.add_argument("method")
    call.add_argument("params", nargs="*", help="one JSON object, or key=value / key:=json pairs")
    call.add_argument("--get", help="print only this field of the result (a.b for nested)")
    call.set_defaults(run=cmd_call)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        client = Client(args.socket)
        return args.run(client, args)
    except Unreachable as exc:
        print(f"tillctl: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except RpcError as exc:
        print(f"tillctl: {exc.one_line()}", file=sys.stderr)
        return EXIT_REFUSED
    except BrokenPipeError:
        return 0  # our reader went away (tillctl ... | head); socket errors are Unreachable
    except TimeoutError:
        print(
            f"tillctl: tilld at {args.socket} did not answer in time; it may be busy or stuck "
            "(journalctl -u tilld)",
            file=sys.stderr,
        )
        return EXIT_UNREACHABLE


if __name__ == "__main__":
    sys.exit(main())
