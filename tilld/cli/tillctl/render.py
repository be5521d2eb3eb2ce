"""What tillctl prints for people: plain functions from the API's records to text.

Amounts are kronor with a decimal comma, times are the till's local clock
without milliseconds, and every waiting thing has its age, so an outage can
be read at a glance. Colour is a ``Style`` decision made once by the caller.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from ...money import format_sek

# Journal entries that go to the back-end with the sales but are not takings.
HOUSEKEEPING = ("drawer", "print")


@dataclass(frozen=True)
class Style:
    colour: bool = False

    @classmethod
    def for_stream(cls, stream: IO[str]) -> Style:
        """Colour on a terminal, plain when piped, with NO_COLOR set or TERM=dumb."""
        wanted = stream.isatty() and not os.environ.get("NO_COLOR")
        return cls(colour=wanted and os.environ.get("TERM") != "dumb")

    def _paint(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.colour else text

    def good(self, text: str) -> str:
        return self._paint("32", text)

    def bad(self, text: str) -> str:
        return self._paint("1;31", text)

    def warn(self, text: str) -> str:
        return self._paint("33", text)

    def dim(self, text: str) -> str:
        return self._paint("2", text)


PLAIN = Style()


def plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


def kronor(ore: int | None) -> str:
    return "-" if ore is None else f"{format_sek(ore)} kr"


def parse_time(stamp: str | None) -> datetime | None:
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp)
    except ValueError:
        return None


def clock(stamp: str | None, now: datetime | None = None) -> str:
    """13:05:09 today; 2026-11-26 13:05 another day; '-' for no time."""
    when = parse_time(stamp)
    if when is None:
        return stamp or "-"
    now = (now or datetime.now().astimezone()).astimezone(when.tzinfo)
    if when.date() == now.date():
        return when.strftime("%H:%M:%S")
    return when.strftime("%Y-%m-%d %H:%M")


def age(stamp: str | None, now: datetime | None = None) -> str:
    """How long ago: 42 s, 7 min, 3 h 05 min, 2 d 4 h."""
    when = parse_time(stamp)
    if when is None:
        return "-"
    seconds = max(0, int(((now or datetime.now().astimezone()) - when).total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def table(rows: list[dict[str, Any]], columns: list[str], right: tuple[str, ...] = ()) -> str:
    """Columns padded to their widest cell; `right` ones right-aligned; no trailing spaces."""
    if not rows:
        return "(none)"
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]

    def line(values: list[str]) -> str:
        padded = [
            v.rjust(w) if c in right else v.ljust(w)
            for v, w, c in zip(values, widths, columns, strict=True)
        ]
        return "  ".join(padded).rstrip()

    return "\n".join([line([c.upper() for c in columns]), *(line(r) for r in cells)])


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _row(label: str, text: str) -> str:
    return f"{label:<14} {text}".rstrip()


# -- status -------------------------------------------------------------------------


def render_status(
    st: dict[str, Any],
    style: Style = PLAIN,
    oldest: dict[str, str | None] | None = None,
    now: datetime | None = None,
) -> str:
    """The status at a glance: what an outage routine asks first comes first.

    ``oldest`` holds the creation time of the oldest unsynced entry, ticket
    and scan (tillctl asks for them); without it the counts stand alone.
    """
    mode = st["mode"]
    paint = style.good if mode == "online" else style.bad
    lines = [_row("till", f"{st['till_id']}  (tilld {st['version']})")]
    since = st.get("mode_since")
    held = f" since {clock(since, now)} ({age(since, now)})" if since else ""
    if st.get("probing"):
        # Both facts start down: until the first probes answer the mode is a guess.
        lines.append(
            _row(
                "mode",
                style.warn("starting") + " (the first connectivity checks have not answered yet)",
            )
        )
    else:
        lines.append(_row("mode", paint(mode) + held))
    errors = st.get("last_error") or {}
    for fact in ("server", "internet"):
        up = st.get(fact)
        why = errors.get(fact)
        word = style.good("up") if up else style.bad("down")
        lines.append(_row(f"  {fact}", word + (f": {why}" if why and not up else "")))
    sync = st.get("sync") or {}
    if sync:
        lines.append(_row("last sync", _last_sync(sync, style, now)))
    lines.append(_row("pending", _pending_counts(st["pending"], style, oldest or {}, now)))
    integrity = (st.get("journal") or {}).get("integrity") or {}
    if integrity.get("state", "ok") != "ok":
        lines.append(
            _row("journal", style.bad(integrity["state"].upper()) + f": {integrity.get('message')}")
        )
    card = st["offline_card"]
    budget = f"{card['stored']} of {card['limit']} stored offline"
    if card["stored"] >= card["limit"]:
        budget = style.bad(budget + " (full: cards need the internet)")
    lines.append(_row("offline card", budget))
    if "catalog" in st:
        cat = st["catalog"]
        lines.append(
            _row("catalog", f"{cat['version']} ({cat['articles']} articles from {cat['source']})")
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
        if state["available"]:
            mark = style.good("available")
        else:
            mark = style.bad(f"refused: {state.get('reason')}")
        lines.append(_row(f"  {method}", mark))
    devices = st.get("devices") or {}
    lines.append("devices" + ("" if devices else "      none configured"))
    for name, dev in devices.items():
        state = dev.get("state") or "-"
        word = style.good(state) if state == "ok" else style.bad(state)
        detail = dev.get("detail") or ""
        lines.append(_row(f"  {name}", f"{word} {detail}" if detail else word))
    return "\n".join(lines)


def _last_sync(sync: dict[str, Any], style: Style, now: datetime | None) -> str:
    if not sync.get("configured", True):
        return "no back-end configured"
    success = sync.get("last_success")
    text = f"{clock(success, now)} ({age(success, now)} ago)" if success else "never"
    if sync.get("last_error"):
        text += "; " + style.bad(f"last error: {sync['last_error']}")
    return text


def _pending_counts(
    pending: dict[str, int], style: Style, oldest: dict[str, str | None], now: datetime | None
) -> str:
    parts = []
    for key, one in (("entries", "entry"), ("tickets", "ticket"), ("scans", "scan")):
        count = pending.get(key, 0)
        text = plural(count, one, "entries" if key == "entries" else None)
        if count and oldest.get(key):
            text += f" (oldest {age(oldest[key], now)})"
        parts.append(text)
    text = ", ".join(parts)
    if any(pending.get(k) for k in ("entries", "tickets", "scans")):
        return style.warn(text)
    return style.good(text)


# -- pending and scans -----------------------------------------------------------------


def render_pending(p: dict[str, Any], now: datetime | None = None, show_all: bool = False) -> str:
    counts = p["counts"]
    entries = p["entries"]
    shown = entries if show_all else [e for e in entries if e["type"] not in HOUSEKEEPING]
    housekeeping = len(entries) - len(shown)
    out = [
        f"{plural(counts['entries'], 'entry', 'entries')}, "
        f"{plural(counts['tickets'], 'ticket')} not yet synced"
    ]
    if entries:
        first = entries[0]
        what = f"{first['type']}" + (
            f" receipt {first['receipt_no']}" if first.get("receipt_no") else ""
        )
        out.append(
            f"oldest unsynced: {what}, {clock(first['created_at'], now)} "
            f"({age(first['created_at'], now)} ago)"
        )
    rows = [
        {
            "seq": e["seq"],
            "type": e["type"],
            "time": clock(e["created_at"], now),
            "age": age(e["created_at"], now),
            "receipt": e.get("receipt_no"),
            "total": kronor(e["total"]) if e.get("total") is not None else None,
            "status": e["sync_status"],
        }
        for e in shown
    ]
    out += ["", table(rows, list(rows[0]) if rows else ["seq"], right=("seq", "total", "age"))]
    if housekeeping:
        out.append(
            f"(and {plural(housekeeping, 'drawer or print entry', 'drawer and print entries')}, "
            "sent with the sales; --all lists them)"
        )
    if p["tickets"]:
        tickets = [
            {
                "code": t["code"],
                "receipt": t["receipt_no"],
                "name": t["name"],
                "state": t["state"],
                "age": age(t["created_at"], now),
            }
            for t in p["tickets"]
        ]
        out += ["", table(tickets, list(tickets[0]), right=("age",))]
    return "\n".join(out)


def render_scans(result: dict[str, Any], now: datetime | None = None) -> str:
    waiting = result["pending"]
    rows = [
        {
            "seq": s["seq"],
            "code": s["code"],
            "scanned": clock(s["scanned_at"], now),
            "age": age(s["scanned_at"], now),
            "local check": s.get("local_check"),
            "state": s["state"],
            # The back-end may answer a time (when the ticket was first used).
            "detail": clock(s["detail"], now) if parse_time(s.get("detail")) else s.get("detail"),
        }
        for s in result["scans"]
    ]
    head = f"{plural(waiting, 'scan')} waiting to be registered"
    return head + "\n\n" + table(rows, list(rows[0]) if rows else ["seq"], right=("seq", "age"))


# -- reports, receipts, terminal ----------------------------------------------------------


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


def render_receipt(r: dict[str, Any], now: datetime | None = None) -> str:
    prints = r.get("prints") or []
    printed = [p for p in prints if p["state"] == "printed"]
    if not prints:
        said = "never printed"
    else:
        said = ", ".join(
            f"{'copy' if p['copy'] else 'original'} {p['state']}"
            + (f" {clock(p.get('updated_at'), now)}" if p.get("updated_at") else "")
            for p in prints
        )
    head = (
        f"receipt {r['receipt_no']} ({r['type']}, {clock(r['created_at'], now)}, "
        f"journal seq {r['seq']}); {said}"
    )
    if not printed:
        head += "; tillctl receipt print prints it"
    return head + "\n\n" + r["text"].rstrip("\n")


def render_controlunit(unit: dict[str, Any]) -> str:
    """status.get's control_unit: whether receipts can be issued, and what waits for whom."""
    if not unit.get("configured"):
        return "no control unit configured (not lawful in Sweden)"

    def numbers(items: list[int]) -> str:
        return ", ".join(str(n) for n in items) or "none"

    lines = [
        f"working:  {'yes' if unit['working'] else 'NO'}",
        f"detail:   {unit.get('detail') or '-'}",
        f"waiting:  {numbers(unit.get('waiting_receipts', []))}",
    ]
    doubts = unit.get("doubts", [])
    lines.append(
        "in doubt: " + (", ".join(f"{d['receipt_no']} ({d['kind']})" for d in doubts) or "none")
    )
    if unit.get("unregistrable_receipts"):
        lines.append(f"cannot be registered: {numbers(unit['unregistrable_receipts'])}")
    if doubts:
        lines.append(
            "settle each after reading the unit's journal: tillctl controlunit settle N "
            "--register-again | --code CODE (docs/fiscal.md)"
        )
    return "\n".join(lines)


def render_terminal(st: dict[str, Any], style: Style = PLAIN) -> str:
    terminal = (st.get("devices") or {}).get("terminal")
    card = st["offline_card"]
    decision = st["payment_methods"].get("card", {})
    lines = []
    if terminal is None:
        lines.append(_row("terminal", "none configured ([devices.terminal] kind)"))
    else:
        state = terminal.get("state") or "-"
        word = style.good(state) if state == "ok" else style.bad(state)
        detail = terminal.get("detail") or ""
        lines.append(_row("terminal", f"{word} {detail}".rstrip()))
    lines.append(_row("internet", style.good("up") if st.get("internet") else style.bad("down")))
    if decision.get("available"):
        lines.append(_row("card", style.good("available")))
    else:
        lines.append(
            _row("card", style.bad(f"refused: {decision.get('reason')}: {decision.get('message')}"))
        )
    left = max(0, card["limit"] - card["stored"])
    lines.append(
        _row(
            "offline",
            f"{card['stored']} of {card['limit']} card payments stored in the terminal "
            f"(room for {left} more without the internet)",
        )
    )
    return "\n".join(lines)


# -- events ---------------------------------------------------------------------------


def event_line(event: dict[str, Any], at: datetime) -> str:
    """One readable line per event: its time, its topic, then what happened."""
    topic = event.get("topic", "?")
    rest = {k: v for k, v in event.items() if k not in ("topic",)}
    text = _describe_event(topic, rest)
    return f"{at.strftime('%H:%M:%S')}  {topic:<8} {text}".rstrip()


def _describe_event(topic: str, e: dict[str, Any]) -> str:
    kind = e.get("event")
    if topic == "mode":
        errors = e.get("last_error") or {}
        why = "; ".join(f"{k}: {v}" for k, v in errors.items())
        return f"{e.get('mode')}" + (f" ({why})" if why else "")
    if topic == "sync":
        pending = e.get("pending") or {}
        text = (
            f"{e.get('unsent')} unsent; pending {pending.get('entries')} entries, "
            f"{pending.get('tickets')} tickets, {pending.get('scans')} scans"
        )
        return text + (f"; error: {e['error']}" if e.get("error") else "")
    if topic == "sale" and kind == "completed":
        return (
            f"completed receipt {e.get('receipt_no')}, {kronor(e.get('total'))} ({e.get('mode')})"
        )
    if topic == "sale" and kind == "refunded":
        return (
            f"refund receipt {e.get('receipt_no')} of {e.get('original_receipt_no')}, "
            f"{kronor(e.get('total'))}"
        )
    if topic == "scan" and kind == "scanned":
        if e.get("kind") == "ticket":
            return f"ticket {e.get('code')}: {e.get('local_check')}, {e.get('status')}" + (
                f" ({e['detail']})" if e.get("detail") else ""
            )
        if e.get("kind") == "article":
            article = e.get("article") or {}
            return f"article {e.get('code')}: {article.get('name')}"
        return f"{e.get('kind')} {e.get('code')}"
    if topic == "scan" and kind == "registered":
        return f"registered {e.get('code')}: {e.get('status')} {e.get('detail') or ''}".rstrip()
    if topic == "device" and kind == "status":
        return f"{e.get('device')} {e.get('state')} {e.get('detail') or ''}".rstrip()
    words = [str(kind)] if kind else []
    words += [f"{k}={_cell(v)}" for k, v in e.items() if k != "event" and v is not None and v != ""]
    return " ".join(words)
