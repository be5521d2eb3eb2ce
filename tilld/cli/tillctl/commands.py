"""tillctl's commands: each is API calls and a rendering, never logic of its own."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from .client import Client
from .confirm import call_confirmed
from .export_filter import ExportFilter
from .render import (
    Style,
    event_line,
    kronor,
    plural,
    render_controlunit,
    render_pending,
    render_receipt,
    render_report,
    render_scans,
    render_status,
    render_terminal,
    table,
)

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

# The demo writes the daemon's log beside its socket (tilld/demo).
DEMO_LOG = "tilld.log"
SYSTEMD_UNIT = "tilld"


class Failed(Exception):
    """A command that ran but did not get what it wanted: one line, exit 1."""


def emit(args: argparse.Namespace, result: Any, human: str | None = None) -> None:
    if args.json or human is None:
        print(json.dumps(result, ensure_ascii=False, indent=None if args.json else 2))
    else:
        print(human)


def style(args: argparse.Namespace) -> Style:
    return Style.for_stream(sys.stdout)


def oldest_pending(client: Client, counts: dict[str, int]) -> dict[str, str | None]:
    """When the oldest unsynced entry, ticket and scan were made (for the status line)."""
    oldest: dict[str, str | None] = {}
    if counts.get("entries") or counts.get("tickets"):
        listed = client.call("sync.pending", {"limit": 1})
        if listed["entries"]:
            oldest["entries"] = listed["entries"][0]["created_at"]
        if listed["tickets"]:
            oldest["tickets"] = listed["tickets"][0]["created_at"]
    if counts.get("scans"):
        # Newest first: the last of the pending ones is the oldest.
        scans = client.call("scans.list", {"state": "pending", "limit": 10_000})["scans"]
        if scans:
            oldest["scans"] = scans[-1]["scanned_at"]
    return oldest


def cmd_status(client: Client, args: argparse.Namespace) -> int:
    st = client.call("status.get")
    if args.json:
        emit(args, st)
        return EXIT_OK
    print(render_status(st, style(args), oldest_pending(client, st["pending"])))
    return EXIT_OK


def cmd_pending(client: Client, args: argparse.Namespace) -> int:
    p = client.call("sync.pending", {"limit": args.limit})
    if args.type:
        p["entries"] = [e for e in p["entries"] if e["type"] in args.type]
    if args.json:
        emit(args, p)  # as the API answers: scripts get every entry unless --type
        return EXIT_OK
    print(render_pending(p, show_all=args.all or bool(args.type)))
    return EXIT_OK


def cmd_scans(client: Client, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    state = "pending" if args.pending else args.state
    if state:
        params["state"] = state
    result = client.call("scans.list", params)
    if args.code:
        result["scans"] = [s for s in result["scans"] if args.code in s["code"]]
    emit(args, result, render_scans(result))
    return EXIT_OK


def cmd_journal(client: Client, args: argparse.Namespace) -> int:
    if args.journal_command == "verify":
        v = client.call("admin.journal_verify")
        if v["ok"]:
            human = f"ok: {plural(v['entries'], 'entry', 'entries')}, hash chain intact"
        elif "first_bad_seq" in v:
            human = f"BROKEN: {v['entries']} entries, first bad seq {v['first_bad_seq']}"
        else:
            human = f"{v['integrity']['state'].upper()}: {v['integrity']['message']}"
        emit(args, v, human)
        return EXIT_OK if v["ok"] else EXIT_REFUSED
    if args.journal_command == "acknowledge-rollback":
        r = call_confirmed(
            client, "admin.acknowledge_rollback", {"technician": args.technician}, args.yes
        )
        emit(
            args,
            r,
            f"acknowledged in journal entry {r['seq']}: the journal goes on after entry "
            f"{r['continues_from']['seq']}; the next receipt is number {r['next_receipt_no']}",
        )
        return EXIT_OK
    since = args.since_seq
    wanted = ExportFilter(args.type or [], args.receipt)
    while True:
        page = client.call(
            "admin.journal_export", {"since_seq": since, "format": args.format, "limit": 5000}
        )
        sys.stdout.write(wanted.apply(page["content"], args.format, first=since == args.since_seq))
        if page["next_since_seq"] is None:
            return EXIT_OK
        since = page["next_since_seq"]


def cmd_report(client: Client, args: argparse.Namespace) -> int:
    r = call_confirmed(client, "admin.report", {"kind": args.kind}, args.yes)
    emit(args, r, render_report(r))
    return EXIT_OK


def cmd_devices(client: Client, args: argparse.Namespace) -> int:
    d = client.call("admin.devices")["devices"]
    rows = [{"device": n, **v} for n, v in d.items()]
    emit(
        args,
        d,
        table(rows, ["device", "kind", "state", "detail"]) if rows else "no devices configured",
    )
    return EXIT_OK


def cmd_printer(client: Client, args: argparse.Namespace) -> int:
    r = client.call("admin.printer_test")
    status = r["status"]
    detail = f" ({status['detail']})" if status.get("detail") else ""
    emit(args, r, f"test page {r['state']}; printer {status['state']}{detail}")
    return EXIT_OK if r["state"] == "printed" else EXIT_REFUSED


def cmd_drawer(client: Client, args: argparse.Namespace) -> int:
    r = client.call("drawer.open")
    emit(args, r, f"drawer opened (journal seq {r['seq']})")
    return EXIT_OK


def cmd_float(client: Client, args: argparse.Namespace) -> int:
    r = client.call("float.set", {"amount": args.amount, "note": args.note})
    change = f"{'+' if r['change'] >= 0 else '-'}{kronor(abs(r['change']))}"
    emit(args, r, f"float {kronor(r['amount'])} (change {change}; journal seq {r['seq']})")
    return EXIT_OK


def cmd_receipt(client: Client, args: argparse.Namespace) -> int:
    if args.receipt_command == "show":
        r = client.call("receipt.get", {"receipt_no": args.receipt_no})
        emit(args, r, render_receipt(r))
        return EXIT_OK
    r = client.call("receipt.print", {"receipt_no": args.receipt_no, "copy": args.copy})
    detail = f" ({r['detail']})" if r.get("detail") else ""
    emit(
        args,
        r,
        f"receipt {args.receipt_no}{' copy' if r.get('copy') else ''}: {r['state']}{detail}",
    )
    return EXIT_OK


def cmd_terminal(client: Client, args: argparse.Namespace) -> int:
    if args.terminal_command == "flush":
        r = call_confirmed(client, "admin.terminal_flush", {}, args.yes)
        emit(
            args,
            r,
            f"sending {plural(r['offline_stored'], 'stored card payment')} from the terminal"
            if r["started"]
            else f"nothing sent: {r['why']}",
        )
        return EXIT_OK if r["started"] or r["offline_stored"] == 0 else EXIT_REFUSED
    st = client.call("status.get")
    view = {
        "terminal": (st.get("devices") or {}).get("terminal"),
        "card": st["payment_methods"].get("card"),
        "offline_card": st["offline_card"],
        "internet": st["internet"],
    }
    emit(args, view, render_terminal(st, style(args)))
    return EXIT_OK


def cmd_controlunit(client: Client, args: argparse.Namespace) -> int:
    if args.controlunit_command == "settle":
        params: dict[str, Any] = {"receipt_no": args.receipt_no, "technician": args.technician}
        if args.register_again:
            params["action"] = "register-again"
        else:
            params.update(action="registered", control_code=args.code)
            if args.unit_id:
                params["unit_id"] = args.unit_id
        r = call_confirmed(client, "admin.controlunit_settle", params, args.yes)
        human = (
            f"receipt {args.receipt_no}: sent to the control unit again (journal seq {r['seq']})"
            if args.register_again
            else f"receipt {args.receipt_no}: control code {r['control_code']} journaled "
            f"(seq {r['seq']}); it prints now"
        )
        emit(args, r, human)
        return EXIT_OK
    unit = client.call("status.get")["control_unit"]
    emit(args, unit, render_controlunit(unit))
    return EXIT_OK


def cmd_watch(client: Client, args: argparse.Namespace) -> int:
    params = {"topics": args.topics} if args.topics else {}
    topics = client.call("events.subscribe", params)["topics"]
    print(f"tillctl: watching {', '.join(topics)} (Ctrl-C stops)", file=sys.stderr, flush=True)
    client.sock.settimeout(None)
    try:
        while True:
            message = client.read()
            if message.get("method") != "event":
                continue
            event = message["params"]
            if args.json:
                print(json.dumps(event, ensure_ascii=False), flush=True)
            else:
                print(event_line(event, datetime.now().astimezone()), flush=True)
            if event.get("topic") == "overflow":
                raise Failed("tilld dropped this watch: it read too slowly; start it again")
    except KeyboardInterrupt:
        return EXIT_OK


def _why(result: dict[str, Any]) -> str:
    return str(result.get("why") or result.get("last_error") or "not drained")


def cmd_sync(client: Client, args: argparse.Namespace) -> int:
    if not args.wait:
        st = client.call("status.get")
        if not st["server"]:
            client.call("admin.sync_now", {"wait": False})  # probes again at once
            raise Failed(
                f"the back-end is unreachable ({_server_error(st)}); "
                f"{_pending_words(st['pending'])}. tilld retries by itself and sends "
                "everything once it answers (tillctl sync --wait waits for it)"
            )
        result = client.call("admin.sync_now", {"wait": False})
        emit(args, result, f"sync started: {_pending_words(result['pending'])}")
        return EXIT_OK
    # Follow progress through events while the daemon drains, then ask for
    # the verdict: the events draw the bar, admin.sync_now gives the answer.
    watcher = Client(client.path)
    deadline = time.monotonic() + args.timeout
    try:
        watcher.call("events.subscribe", {"topics": ["sync", "mode"]})
        start = client.call("admin.sync_now", {"wait": False})
        if not client.call("status.get")["server"]:
            _wait_for_the_server(client, watcher, deadline)
            start = client.call("admin.sync_now", {"wait": False})
        _follow(watcher, start, deadline, show_bar=sys.stderr.isatty() and not args.json)
    finally:
        watcher.close()
    result = client.call("admin.sync_now", {"wait": True, "timeout_s": 1})
    if result["drained"]:
        emit(args, result, f"synced: {_pending_words(result['pending'])}")
        return EXIT_OK
    emit(args, result, f"not drained: {_why(result)}; {_pending_words(result['pending'])}")
    return EXIT_REFUSED


def _server_error(st: dict[str, Any]) -> str:
    return (st.get("last_error") or {}).get("server") or "no answer"


def _wait_for_the_server(client: Client, watcher: Client, deadline: float) -> None:
    """Until a mode event says the back-end answers, or the deadline: then Failed."""
    print("tillctl: waiting for the back-end to answer...", file=sys.stderr, flush=True)
    try:
        while True:
            watcher.sock.settimeout(max(0.01, deadline - time.monotonic()))
            event = watcher.read()
            params = event.get("params") or {}
            mode = event.get("method") == "event" and params.get("topic") == "mode"
            if mode and params.get("server"):
                return
    except TimeoutError:
        st = client.call("status.get")
        raise Failed(
            f"the back-end is still unreachable ({_server_error(st)}); "
            f"{_pending_words(st['pending'])}. tilld keeps retrying by itself"
        ) from None


def _follow(watcher: Client, start: dict[str, Any], deadline: float, show_bar: bool) -> None:
    total = max(1, start["unsent"] + start["pending"]["scans"])
    try:
        while start["unsent"] or start["pending"]["scans"]:
            watcher.sock.settimeout(max(0.01, deadline - time.monotonic()))
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


def _pending_words(pending: dict[str, int]) -> str:
    return (
        f"{plural(pending['entries'], 'entry', 'entries')}, "
        f"{plural(pending['tickets'], 'ticket')}, {plural(pending['scans'], 'scan')} pending"
    )


def _draw_bar(done: int, total: int, width: int = 40) -> None:
    filled = width * done // total
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    sys.stderr.flush()


def cmd_demo(client: Client, args: argparse.Namespace) -> int:
    result = client.call("demo.set", {"target": args.target, "state": args.state})
    emit(args, result, f"demo {args.target} is now {result['state']}")
    return EXIT_OK


def parse_params(items: list[str]) -> dict[str, Any]:
    """Either one JSON object, or key=value (string) and key:=json pairs."""
    if len(items) == 1 and items[0].lstrip().startswith("{"):
        try:
            params = json.loads(items[0])
        except ValueError as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not isinstance(params, dict):
            raise ValueError("params must be a JSON object")
        return params
    params: dict[str, Any] = {}
    for item in items:
        if ":=" in item:
            key, raw = item.split(":=", 1)
            try:
                params[key] = json.loads(raw)
            except ValueError:
                raise ValueError(f"{item!r}: the value after := must be JSON") from None
        elif "=" in item:
            key, value = item.split("=", 1)
            params[key] = value
        else:
            raise ValueError(f"{item!r}: use key=value, key:=json or one JSON object")
    return params


def pick(value: Any, path: str) -> Any:
    """a.b.0.c: dict keys and list indexes; Failed names the step that is not there."""
    walked = []
    for key in path.split("."):
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif (
            isinstance(value, list)
            and key.lstrip("-").isdigit()
            and -len(value) <= int(key) < len(value)
        ):
            value = value[int(key)]
        else:
            where = ".".join(walked) or "the result"
            if isinstance(value, dict):
                has = f"its fields are {', '.join(value) or 'none'}"
            elif isinstance(value, list):
                has = f"it is a list of {len(value)}"
            else:
                has = f"it is {json.dumps(value, ensure_ascii=False)}"
            raise Failed(f"--get {path}: {where} has no {key!r} ({has})")
        walked.append(key)
    return value


def cmd_call(client: Client, args: argparse.Namespace) -> int:
    try:
        params = parse_params(args.params)
    except ValueError as exc:
        print(f"tillctl: bad params: {exc}", file=sys.stderr)
        return EXIT_USAGE
    result = call_confirmed(client, args.method, params, args.yes)
    if args.get:
        value = pick(result, args.get)
        print(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
        return EXIT_OK
    emit(args, result)
    return EXIT_OK


# -- commands that need no daemon -----------------------------------------------------------


def cmd_logs(args: argparse.Namespace) -> int:
    demo_log = Path(args.socket).parent / DEMO_LOG
    if demo_log.is_file():
        return _tail(demo_log, args.lines, args.follow)
    journalctl = shutil.which("journalctl")
    if journalctl and Path("/run/systemd/system").is_dir():
        argv = [journalctl, "-u", SYSTEMD_UNIT, "-n", str(args.lines), "--no-pager"]
        if args.follow:
            argv.append("-f")
        try:
            return subprocess.call(argv)
        except KeyboardInterrupt:
            return EXIT_OK
    raise Failed(
        f"no log to show: no {demo_log} (the demo's) and no systemd here for journalctl -u "
        f"{SYSTEMD_UNIT}; tilld writes its log to its standard error"
    )


def _tail(path: Path, lines: int, follow: bool) -> int:
    with path.open("r", encoding="utf-8", errors="replace") as log:
        for line in log.readlines()[-lines:] if lines else []:
            sys.stdout.write(line)
        sys.stdout.flush()
        if not follow:
            return EXIT_OK
        try:
            while True:
                line = log.readline()
                if line:
                    sys.stdout.write(line)
                    sys.stdout.flush()
                else:
                    time.sleep(0.25)  # a file has no readiness to wait on
        except KeyboardInterrupt:
            return EXIT_OK


def cmd_completion(args: argparse.Namespace) -> int:
    from ..completion import bash_completion, zsh_completion
    from .parser import build_parser

    parser = build_parser()
    print(bash_completion(parser) if args.shell == "bash" else zsh_completion(parser), end="")
    return EXIT_OK


LOCAL_COMMANDS = {"logs": cmd_logs, "completion": cmd_completion}
