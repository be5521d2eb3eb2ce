"""Hardening: a catalog cannot freeze, bloat or overflow the till; a damaged journal says so.

Each test tries one abuse against the real daemon (or the pure rule it rests
on) and records it in the reliability table. The catalogs come from a file,
from a reload, or from the reference back-end as a real subprocess; the
journals are real SQLite files damaged on disk.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import journal_rows
import pytest
from conftest import DEMO_CATALOG, REPO, RpcError, TillProcess
from hypothesis import given, settings
from hypothesis import strategies as st
from sims import TOKEN, Backend, wait_for

from tilld import catalog as catalogs
from tilld import sales, ticketcodes
from tilld.errors import ConfigError

EX_CANTCREAT = 73
REDOS = "^(a|aa)+$"
REDOS_CODE = "a" * 36 + "b"  # 37 characters: 5.2 s of a frozen event loop before the fix
# In every subset a generator can make codes from (repeats of one letter), and
# still exponential for a backtracking matcher: 17 s for 61 characters with
# A{0,5} x 12; with A{0,4} x 15 far longer.
BACKTRACKER = "^" + "A{0,4}" * 15 + "B$"
BACKTRACKER_CODE = "A" * 60 + "C"


def demo_catalog(**changes: Any) -> dict[str, Any]:
    doc = json.loads(DEMO_CATALOG.read_text(encoding="utf-8"))
    doc.update(changes)
    return doc


def article(plu: str, name: str = "Artikel", **extra: Any) -> dict[str, Any]:
    return {
        "id": f"a{plu}",
        "plu": plu,
        "name": name,
        "price": 1000,
        "vat_rate": 12,
        "kind": "goods",
        "barcodes": [],
        "event_id": None,
        "fallback_plu": None,
        **extra,
    }


def problems_of(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        catalogs.parse_catalog(json.dumps(doc), "catalog.json")
    return caught.value.problems


def catalog_status(client) -> dict[str, Any]:
    return client.call("status.get")["catalog"]


def judged(client) -> dict[str, Any] | None:
    """The catalog status once the till has refused or taken a catalog other than the demo's."""
    status = catalog_status(client)
    return status if "refused" in status or status["version"] != "demo-2026-11-26" else None


def log_after(till: TillProcess, mark: int) -> str:
    return till.log()[mark:]


@pytest.fixture
def file_till(short_tmp):
    """A till selling from a catalog file of its own (a copy of the demo catalog)."""
    path = short_tmp / "catalog.json"
    shutil.copy(DEMO_CATALOG, path)
    till = TillProcess(short_tmp, {"catalog": {"file": str(path)}}).start()
    till.catalog_file = path
    yield till
    till.kill()


@pytest.fixture
def backend_till(short_tmp):
    """A till whose only catalog is the reference back-end's (a real subprocess)."""
    backend = Backend(short_tmp)
    till = TillProcess(
        short_tmp,
        {
            "catalog": {"file": ""},
            "backend": {
                "url": backend.url,
                "token_file": str(backend.token_file),
                "timeout_s": 5,
            },
            "connectivity": {"probe_interval_s": 0.2, "probe_timeout_s": 1, "backoff_cap_s": 1},
            "sync": {"catalog_refresh_s": 0.2},
        },
    ).start()
    till.backend = backend
    client = till.client()
    wait_for(
        lambda: catalog_status(client)["source"] == "back-end",
        what="the back-end's demo catalog at the till",
    )
    client.close()
    yield till
    till.kill()
    backend.stop()


def serve_catalog(backend: Backend, document: dict[str, Any]) -> str:
    """Have the reference back-end serve ``document`` as it is, even one a till must refuse."""
    request = urllib.request.Request(
        backend.url + "/control/catalog?validate=no",
        data=json.dumps(document).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["etag"]


# -- 8: ticket_code_pattern, the pure rule ------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (REDOS, "repeat"),
        ("^(a+)+$", "repeat"),
        ("^TK(?:[0-9]|[0-9][0-9])*$", "repeat"),
        ("(?i)tk[0-9]{8}", "flag"),
        (r"\bTK\d{8}\b", "anchor"),
        ("^TK$[0-9]{8}", "anchor"),
        ("^TK[0-9]{100}$", "64"),
        ("^[0-9]{8}" + "[A-Z]{12}" * 5 + "$", "64"),  # made codes would be 68 long
        ("^(TK)?$", "empty"),
        ("^TK(?=[0-9])[0-9]{8}$", "ASSERT"),
        ("^TK" + "[0-9]" * 200 + "$", "200"),
        ("^TK[^0-9]{8}$", "class"),
        ("^TK[\x1b]{8}$", "control character U+001B"),  # ESC, a printer command
        ("^TK[ -\x7f]{8}$", "control character U+007F"),
    ],
)
def test_a_pattern_outside_the_supported_subset_is_refused_naming_it_and_the_subset(
    pattern, why, reliability
):
    reliability.record("catalog abuse", f"ticket_code_pattern {pattern[:40]}", tries=1)
    with pytest.raises(ticketcodes.UnsupportedPattern) as caught:
        ticketcodes.compile_pattern(pattern)
    message = str(caught.value)
    assert repr(pattern[:60]).strip("'") in message or pattern in message, message
    assert why in message, message
    assert ticketcodes.SUPPORTED_SUBSET in message, message


SUPPORTED = [
    "^TK[0-9A-Z]{8,32}$",
    r"\d{10}",
    "[A-F0-9]{16}",
    "(AB|CD)-[0-9]{6}",
    "^(?:TK|TX)[0-9]{4}(?:-[A-Z]{2}){2}$",
    "^EV(2026|2027)_[a-z0-9]+$",
    "T?K[0-9]*Z",
    r"^[0-9]{3}\.[0-9]{3}$",
    "^(VIP|STD|KID)-[0-9]{2,4}-[A-HJ-NP-Z2-9]{6}$",
    r"\ATK.{10}\Z",
    BACKTRACKER,
]


@pytest.mark.parametrize("pattern", SUPPORTED)
def test_a_supported_pattern_makes_codes_that_it_matches(pattern):
    compiled = ticketcodes.compile_pattern(pattern)
    for _ in range(20):
        code = compiled.make_code()
        assert compiled.fullmatch(code) and re.fullmatch(pattern, code), (pattern, code)
        assert len(code) <= ticketcodes.MAX_TICKET_CODE_LENGTH


def test_a_code_longer_than_the_pattern_allows_is_no_ticket_without_matching():
    compiled = ticketcodes.compile_pattern("^TK[0-9A-Z]{8,32}$")
    assert compiled.longest == 34
    assert compiled.fullmatch("TK" + "A" * 32)
    assert not compiled.fullmatch("TK" + "A" * 33)
    assert not compiled.fullmatch("TK" + "A" * 100_000)
    assert ticketcodes.compile_pattern("^TK[0-9]+$").longest == ticketcodes.MAX_TICKET_CODE_LENGTH


def test_matching_does_not_backtrack_on_a_pattern_a_backtracker_chokes_on(reliability):
    reliability.record(
        "catalog abuse",
        f"{BACKTRACKER} against {len(BACKTRACKER_CODE)} characters (re: minutes)",
        tries=1,
        figure="no match, one pass over the code",
    )
    compiled = ticketcodes.compile_pattern(BACKTRACKER)
    assert not compiled.fullmatch(BACKTRACKER_CODE)  # re.fullmatch would run for minutes
    assert compiled.fullmatch("A" * 60 + "B")


# Patterns of the subset built from parts, to hold the matcher to re's answer.
ATOMS = st.sampled_from(["a", "b", "[ab]", "[a-c]", r"\d", ".", "-"])


@st.composite
def subset_patterns(draw) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        atom = draw(ATOMS)
        kind = draw(st.sampled_from(["", "?", "*", "+", "{n}", "{m,n}", "group", "alt"]))
        if kind in ("?", "*", "+"):
            atom += kind
        elif kind == "{n}":
            atom += f"{{{draw(st.integers(1, 3))}}}"
        elif kind == "{m,n}":
            low = draw(st.integers(0, 2))
            atom += f"{{{low},{low + draw(st.integers(0, 3))}}}"
        elif kind == "group":
            other = draw(ATOMS)
            atom = f"(?:{atom}{other}){{{draw(st.integers(1, 3))}}}"
        elif kind == "alt":
            atom = f"({atom}|{draw(ATOMS)}{draw(ATOMS)})"
        parts.append(atom)
    return "^" + "".join(parts) + "$"


@settings(max_examples=300, deadline=None)
@given(pattern=subset_patterns(), code=st.text(alphabet="ab-c1\n", max_size=12))
def test_the_matcher_agrees_with_re_on_the_subset(pattern, code):
    try:
        compiled = ticketcodes.compile_pattern(pattern)
    except ticketcodes.UnsupportedPattern:
        return  # e.g. one that only matches the empty code
    assert compiled.fullmatch(code) == bool(re.fullmatch(pattern, code, re.ASCII))
    made = compiled.make_code()
    assert compiled.fullmatch(made) and re.fullmatch(pattern, made, re.ASCII)


# -- 10: catalog values, the pure rule ---------------------------------------------


def test_a_ten_megabyte_name_is_refused_without_echoing_it(reliability):
    reliability.record("catalog abuse", "article name of 10 MB", tries=1, figure="refused")
    problems = problems_of(demo_catalog(articles=[article("1", "N" * 10_000_000)]))
    assert len(problems) == 1 and "articles.0.name" in problems[0]
    assert str(catalogs.MAX_NAME_LENGTH) in problems[0]
    assert len(problems[0]) < 300


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("price", 2**63, "articles.0.price"),
        ("price", 100_000_001, "articles.0.price"),
        ("price", -1, "articles.0.price"),
        ("plu", "9" * 65, "articles.0.plu"),
        ("barcodes", ["7" * 129], "articles.0.barcodes.0"),
        ("barcodes", [str(n) for n in range(33)], "articles.0.barcodes"),
        ("barcodes", [""], "articles.0.barcodes.0"),
        ("name", "Kaffe\x1bp\x00\x19\xfa", "articles.0.name"),  # ESC p: the cash drawer
        ("name", "Kaffe\nlock", "articles.0.name"),
        ("id", "x" * 1000, "articles.0.id"),
        ("event_id", "e" * 1000, "articles.0.event_id"),
        ("fallback_plu", "1" * 1000, "articles.0.fallback_plu"),
    ],
)
def test_an_unbounded_article_value_is_refused_naming_the_field(field, value, named, reliability):
    reliability.record("catalog abuse", f"article {field} = {str(value)[:24]!r}", tries=1)
    problems = problems_of(demo_catalog(articles=[{**article("1"), field: value}]))
    assert any(p.startswith(f"catalog.json: {named}:") for p in problems), problems


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"version": "v" * 1000}, "version"),
        ({"version": ""}, "version"),
        ({"currency": "SEK" * 100}, "currency"),
        ({"payment_methods": {f"m{n}": True for n in range(1000)}}, "payment_methods"),
    ],
)
def test_an_unbounded_catalog_value_is_refused_naming_it(changes, named):
    assert any(p.startswith(f"catalog.json: {named}") for p in problems_of(demo_catalog(**changes)))


def test_more_articles_than_the_till_keeps_are_refused(reliability):
    reliability.record(
        "catalog abuse", f"{catalogs.MAX_ARTICLES + 1} articles", tries=1, figure="refused"
    )
    many = [article(str(n)) for n in range(catalogs.MAX_ARTICLES + 1)]
    problems = problems_of(demo_catalog(articles=many))
    assert any("articles" in p and str(catalogs.MAX_ARTICLES) in p for p in problems), problems


def test_every_problem_of_a_catalog_is_named_not_only_the_first():
    doc = demo_catalog(
        ticket_code_pattern=REDOS,
        articles=[
            article("1", "N" * 201),
            article("2"),
            article("3", price=2**63),
            article("4", barcodes=["x" * 200]),
        ],
    )
    problems = problems_of(doc)
    for named in ("ticket_code_pattern", "articles.0.name", "articles.2.price", "articles.3"):
        assert any(f": {named}" in p for p in problems), (named, problems)
    assert not any("articles.1" in p for p in problems)


def test_a_catalog_with_thousands_of_problems_lists_some_and_counts_the_rest():
    doc = demo_catalog(articles=[article(str(n), "N" * 201) for n in range(5000)])
    problems = problems_of(doc)
    assert len(problems) == catalogs.MAX_PROBLEMS_LISTED + 1
    assert problems[-1].endswith(f"and {5000 - catalogs.MAX_PROBLEMS_LISTED} more problems")


def test_the_largest_line_amount_cannot_overflow():
    """A line is at most MAX_QUANTITY x MAX_PRICE: far from SQLite's 2**63 and exact in JSON."""
    assert sales.MAX_QUANTITY * catalogs.MAX_PRICE < 2**53


def test_the_till_refuses_a_quantity_a_line_amount_could_overflow_with(client, reliability):
    reliability.record("sale abuse", "sale.add quantity 2**62", tries=2, figure="-32602")
    sale_id = client.call("sale.open")["sale_id"]
    for quantity in (2**62, sales.MAX_QUANTITY + 1):
        with pytest.raises(RpcError) as caught:
            client.call("sale.add", sale_id=sale_id, plu="300", quantity=quantity)
        assert caught.value.code == -32602
    assert client.call("sale.get", sale_id=sale_id)["lines"] == []


def test_the_catalog_limits_are_the_documented_ones():
    doc = (REPO / "docs" / "backend-protocol.md").read_text(encoding="utf-8")
    section = doc.split("### What the till accepts in a catalog")[1].split("\n## ")[0]
    for limit in (
        f"at most {catalogs.MAX_ARTICLES:,}",
        f"1 to {catalogs.MAX_NAME_LENGTH} characters",
        f"0 to {catalogs.MAX_PRICE:,} öre",
        f"1 to {catalogs.MAX_PLU_LENGTH} characters",
        f"at most {catalogs.MAX_BARCODES}, each 1 to {catalogs.MAX_BARCODE_LENGTH} characters",
        f"at most {catalogs.MAX_PAYMENT_METHODS} methods",
        f"at most {ticketcodes.MAX_PATTERN_LENGTH} characters",
        f"at most {ticketcodes.MAX_TICKET_CODE_LENGTH}",
        f"at most {sales.MAX_QUANTITY} of an article",
    ):
        assert limit in section, limit


def test_a_stored_catalog_with_a_pattern_now_refused_sells_goods_but_no_tickets(tmp_path):
    """catalog.sqlite written by a tilld that did not check patterns: no crash, no ReDoS."""
    stored = catalogs.Catalog(tmp_path / "catalog.sqlite")
    stored.open()
    document = catalogs.CatalogDocument.model_construct(
        **{**demo_catalog(ticket_code_pattern=REDOS), "articles": []}
    )
    document.articles = [catalogs.Article(**article("300", "Kaffe"))]
    stored.replace(document, source="back-end", etag=None, digest=None)
    stored.close()
    again = catalogs.Catalog(tmp_path / "catalog.sqlite")
    again.open()
    assert again.find(plu="300").name == "Kaffe"
    assert not again.is_ticket_code("aaaa") and not again.is_ticket_code(REDOS_CODE)
    with pytest.raises(ticketcodes.UnsupportedPattern) as caught:
        again.make_ticket_code()
    assert REDOS in str(caught.value)


def test_tillctl_status_shows_a_refused_catalog():
    from tilld.cli.tillctl import render_status

    shown = render_status(
        {
            "till_id": "t",
            "version": "0",
            "mode": "online",
            "server": True,
            "internet": True,
            "pending": {"entries": 0, "tickets": 0, "scans": 0},
            "offline_card": {"stored": 0, "limit": 3},
            "catalog": {
                "version": "v1",
                "articles": 9,
                "source": "back-end",
                "refused": {
                    "source": "back-end",
                    "at": "2026-11-26T08:00:00+01:00",
                    "problems": ["back-end catalog: articles.3.price: too big", "another"],
                },
            },
            "payment_methods": {},
        }
    )
    assert "refused   a catalog from back-end" in shown and "articles.3.price" in shown
    assert "(and 1 more)" in shown


# -- 8 and 10 at the daemon: file, reload, back-end -----------------------------------


def test_a_redos_pattern_in_the_catalog_file_is_refused_at_reload_and_start(file_till, reliability):
    reliability.record(
        "catalog abuse",
        f"ReDoS ticket_code_pattern {REDOS} (catalog file, reload and restart)",
        tries=2,
        figure="refused at load; old catalog kept",
    )
    client = file_till.client()
    before = catalog_status(client)
    file_till.catalog_file.write_text(
        json.dumps(demo_catalog(version="redos", ticket_code_pattern=REDOS)), encoding="utf-8"
    )
    mark = len(file_till.log())
    client.call("admin.reload")
    status = catalog_status(client)
    assert status["version"] == before["version"] == "demo-2026-11-26"
    assert status["refused"]["source"] == str(file_till.catalog_file)
    assert any(REDOS in p for p in status["refused"]["problems"]), status
    said = log_after(file_till, mark)
    assert REDOS in said and ticketcodes.SUPPORTED_SUBSET in said, said
    # The daemon answers, and the code that froze it is no ticket of the kept pattern.
    assert client.call("scan.submit", code=REDOS_CODE)["kind"] == "unknown"
    assert client.call("scan.submit", code="TK00000000DEMO1")["kind"] == "ticket"
    client.close()

    assert file_till.stop() == 0
    mark = len(file_till.log())
    file_till.start()  # the file is still bad: the cached catalog sells
    client = file_till.client()
    assert catalog_status(client)["version"] == "demo-2026-11-26"
    assert REDOS in log_after(file_till, mark)
    client.close()


def test_a_scan_cannot_make_the_pattern_backtrack(file_till, reliability):
    reliability.record(
        "catalog abuse",
        f"scan of {len(BACKTRACKER_CODE)} characters against {BACKTRACKER}",
        tries=1,
        figure="answered 'unknown'; re would backtrack for minutes",
    )
    file_till.catalog_file.write_text(
        json.dumps(demo_catalog(version="backtracker", ticket_code_pattern=BACKTRACKER)),
        encoding="utf-8",
    )
    client = file_till.client()
    client.call("admin.reload")
    assert catalog_status(client)["version"] == "backtracker"  # in the subset: accepted
    assert client.call("scan.submit", code=BACKTRACKER_CODE)["kind"] == "unknown"
    assert client.call("scan.submit", code="A" * 60 + "B")["kind"] == "ticket"
    assert client.call("status.get")["catalog"]["version"] == "backtracker"
    client.close()


def test_a_redos_pattern_from_the_back_end_is_refused_and_status_says_why(
    backend_till, reliability
):
    reliability.record(
        "catalog abuse",
        f"ReDoS ticket_code_pattern {REDOS} (back-end catalog)",
        tries=1,
        figure="refused at fetch; old catalog kept",
    )
    client = backend_till.client()
    mark = len(backend_till.log())
    serve_catalog(backend_till.backend, demo_catalog(version="redos", ticket_code_pattern=REDOS))
    status = wait_for(lambda: judged(client), what="the till to judge the new catalog")
    assert status["version"] == "demo-2026-11-26", status
    refused = status["refused"]
    assert refused["source"] == "back-end"
    assert any(REDOS in p for p in refused["problems"])
    said = log_after(backend_till, mark)
    told = [line for line in said.splitlines() if REDOS in line]
    assert told and told[0].startswith("<4>tilld.till: the back-end's catalog"), said
    assert "Traceback" not in said
    assert client.call("scan.submit", code=REDOS_CODE)["kind"] == "unknown"
    client.close()


def test_a_catalog_file_with_a_huge_name_and_price_is_refused_whole(file_till, reliability):
    reliability.record(
        "catalog abuse",
        "catalog file: 10 MB article name and price 2**63 (reload and restart)",
        tries=2,
        figure="refused whole; old catalog kept; sales journaled small",
    )
    client = file_till.client()
    bad = demo_catalog(version="bloated")
    bad["articles"][3] = {**bad["articles"][3], "name": "K" * 10_000_000}  # PLU 300
    bad["articles"][4] = {**bad["articles"][4], "price": 2**63}  # PLU 301
    file_till.catalog_file.write_text(json.dumps(bad), encoding="utf-8")
    mark = len(file_till.log())
    client.call("admin.reload")
    status = catalog_status(client)
    assert status["version"] == "demo-2026-11-26"
    problems = status["refused"]["problems"]
    assert any("articles.3.name" in p for p in problems), problems
    assert any("articles.4.price" in p for p in problems), problems
    said = log_after(file_till, mark)
    assert "articles.3.name" in said and "articles.4.price" in said
    assert "Traceback" not in said and len(said) < 10_000

    sale_id = client.call("sale.open")["sale_id"]
    line = client.call("sale.add", sale_id=sale_id, plu="300")["sale"]["lines"][0]
    assert (line["name"], line["unit_price"]) == ("Kaffe", 3500)
    client.call("sale.pay", sale_id=sale_id, method="cash", amount=3500)
    client.close()
    assert file_till.stop() == 0
    with journal_rows.connect(file_till.state_dir / "journal.sqlite") as db:
        (longest,) = db.execute("SELECT max(length(body_text(body))) FROM entries").fetchone()
    assert longest < 10_000

    mark = len(file_till.log())
    file_till.start()
    client = file_till.client()
    assert catalog_status(client)["version"] == "demo-2026-11-26"
    assert "articles.4.price" in log_after(file_till, mark)
    client.close()


def test_a_back_end_catalog_with_a_price_of_2_63_is_refused_with_a_warning(
    backend_till, reliability
):
    reliability.record(
        "catalog abuse",
        "back-end catalog: price 2**63 and a 201-character name",
        tries=1,
        figure="refused at fetch with a warning; sync not paused",
    )
    client = backend_till.client()
    bad = demo_catalog(version="overflow")
    bad["articles"][3] = {**bad["articles"][3], "price": 2**63}
    bad["articles"][4] = {**bad["articles"][4], "name": "B" * 201}
    mark = len(backend_till.log())
    serve_catalog(backend_till.backend, bad)
    refused = wait_for(
        lambda: catalog_status(client).get("refused"),
        what="the till to refuse the back-end's catalog",
    )
    problems = refused["problems"]
    assert any("articles.3.price" in p for p in problems), problems
    assert any("articles.4.name" in p for p in problems), problems
    assert catalog_status(client)["version"] == "demo-2026-11-26"
    said = log_after(backend_till, mark)
    assert "Traceback" not in said and "sync failed" not in said, said
    assert any(line.startswith("<4>") and "articles.3.price" in line for line in said.splitlines())
    # Sync goes on: a sale reaches the back-end.
    sale_id = client.call("sale.open")["sale_id"]
    client.call("sale.add", sale_id=sale_id, plu="300")
    client.call("sale.pay", sale_id=sale_id, method="cash", amount=3500)
    assert client.call("admin.sync_now", wait=True, timeout_s=20)["drained"]
    assert client.call("status.get")["sync"]["last_error"] is None
    client.close()


def test_an_overflowing_catalog_cached_in_the_journal_does_not_stop_the_start(short_tmp):
    """A till upgraded from a tilld that kept the catalog in the journal (test_durability)."""
    till = TillProcess(short_tmp, {"catalog": {"file": ""}}).start()
    till.client().close()
    assert till.stop() == 0
    (till.state_dir / "catalog.sqlite").unlink()
    bad = demo_catalog()
    bad["articles"][3] = {**bad["articles"][3], "price": 2**63}
    with sqlite3.connect(till.state_dir / "journal.sqlite") as db:
        db.execute(
            "INSERT INTO catalog_cache (id, document, etag, source, stored_at)"
            " VALUES (1, ?, 'etag-1', 'back-end', '2026-11-26T08:00:00+00:00')",
            (json.dumps(bad),),
        )
    till.start()
    client = till.client()
    assert catalog_status(client)["source"] == "none"
    client.close()
    till.kill()
    assert "articles.3.price" in till.log() and "Traceback" not in till.log()


# -- 12a: a damaged journal --------------------------------------------------------


def damaged_start(till: TillProcess) -> str:
    till.start(wait=False)
    assert till.proc is not None
    assert till.proc.wait(30) == EX_CANTCREAT, till.log()
    return till.log().split("stopped")[-1]


def a_journal_with_sales(short_tmp: Path, sales: int = 200) -> TillProcess:
    till = TillProcess(short_tmp).start()
    client = till.client()
    for _ in range(sales):
        sale_id = client.call("sale.open")["sale_id"]
        client.call("sale.add", sale_id=sale_id, plu="300")
        client.call("sale.pay", sale_id=sale_id, method="cash", amount=3500)
    client.close()
    assert till.stop() == 0
    with sqlite3.connect(till.state_dir / "journal.sqlite") as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return till


@pytest.mark.parametrize("damage", ["garbage", "page-1", "past-page-1"])
def test_a_damaged_journal_exits_saying_so_and_where_the_recovery_steps_are(
    short_tmp, damage, reliability
):
    reliability.record(
        "storage faults",
        f"journal.sqlite damaged on disk ({damage})",
        tries=1,
        figure="exit 73 'journal damaged', recovery steps in docs/install.md",
    )
    till = a_journal_with_sales(short_tmp)
    journal = till.state_dir / "journal.sqlite"
    data = bytearray(journal.read_bytes())
    if damage == "garbage":
        data = bytearray(b"this is not a journal\n" * 4000)
    elif damage == "page-1":
        data[100:4096] = b"\xab" * 3996  # the header is intact, the schema is not
    else:
        # The schema page is fine, the tables are not: found only when they are read.
        data[4096:] = b"\xab" * (len(data) - 4096)
    journal.write_bytes(bytes(data))
    said = damaged_start(till)
    assert "journal damaged" in said, said
    assert "docs/install.md" in said and str(journal) in said, said
    assert "writable" not in said and "disk is not full" not in said, said
    assert "Traceback" not in said, said
    assert journal.read_bytes() == bytes(data)  # nothing touched: the evidence is kept


def test_the_documented_recovery_of_a_damaged_journal_keeps_the_receipt_numbers(short_tmp):
    """docs/install.md, "Recovering a journal", without a backup: followed step by step."""
    till = a_journal_with_sales(short_tmp, sales=3)
    journal = till.state_dir / "journal.sqlite"
    journal.write_bytes(b"this is not a journal\n" * 4000)
    assert "journal damaged" in damaged_start(till)
    aside = short_tmp / "damaged"
    aside.mkdir()
    for path in till.state_dir.glob("journal.sqlite*"):  # journal.head stays
        path.rename(aside / path.name)
    till.start()
    try:
        client = till.client()
        assert client.call("status.get")["journal"]["integrity"]["state"] == "rolled-back"
        with pytest.raises(RpcError) as refused:
            client.call("sale.open")
        assert refused.value.reason == "journal-rolled-back"
        acknowledged = client.call("admin.acknowledge_rollback", technician="anna")
        assert acknowledged["next_receipt_no"] == 4
        sale_id = client.call("sale.open")["sale_id"]
        client.call("sale.add", sale_id=sale_id, plu="300")
        paid = client.call("sale.pay", sale_id=sale_id, method="cash", amount=3500)
        assert paid["receipt_no"] == 4
        assert client.call("admin.journal_verify")["ok"]
        client.close()
    finally:
        till.kill()
    assert (aside / "journal.sqlite").read_bytes().startswith(b"this is not a journal")


def test_an_unopenable_journal_that_is_not_damaged_keeps_the_permission_and_disk_advice(
    short_tmp,
):
    till = TillProcess(short_tmp)
    (till.state_dir / "journal.sqlite").mkdir(parents=True)  # cannot be opened, not damaged
    said = damaged_start(till)
    assert "writable by the tilld user" in said, said
    assert "damaged" not in said, said


def test_the_recovery_steps_for_a_damaged_journal_are_in_the_install_guide():
    guide = (REPO / "docs" / "install.md").read_text(encoding="utf-8")
    section = guide.split("## Recovering a journal")[1].split("\n## ")[0]
    for step in (
        "systemctl stop tilld",
        "journal.sqlite*",
        "journal.head",
        "backup",
        "acknowledge-rollback",
        "tillctl pending",
        "lost",
    ):
        assert step in section, step


# -- 12b: the demo's state is private ----------------------------------------------


def readable_by_others(folder: Path) -> dict[str, int]:
    """Files under ``folder`` that its group or others may use (skipping files gone meanwhile)."""
    found = {}
    for path in folder.rglob("*"):
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            continue  # e.g. a SQLite rollback journal, there only during a write
        if stat.S_ISREG(mode) and mode & 0o077:
            found[str(path.relative_to(folder))] = mode & 0o777
    return found


def end_demo(demo: subprocess.Popen[str]) -> None:
    """Ctrl-C, and the demo's whole process group after 30 s if it has not stopped by then.

    What is checked here was read before; a demo slow to stop (the daemon's
    stop can wait on a device being closed) must not leave it running."""
    demo.send_signal(signal.SIGINT)
    try:
        demo.wait(30)
    except subprocess.TimeoutExpired:
        # Not reaped, so its id is still its own: the group it leads, simulators too.
        os.killpg(demo.pid, signal.SIGKILL)
        demo.wait(30)
    demo.stdout.close()


@pytest.mark.parametrize("existing", [False, True])
def test_the_demo_keeps_its_state_folder_and_files_private(short_tmp, existing, reliability):
    reliability.record(
        "local access",
        "tilld demo state under umask 022" + (" (folder existing 0755)" if existing else ""),
        tries=1,
        figure="folder 0700, files 0600",
    )
    state = short_tmp / "demo"
    if existing:
        state.mkdir(mode=0o755)
        state.chmod(0o755)
    demo = subprocess.Popen(
        [sys.executable, "-m", "tilld.cli.daemon", "demo", "--state-dir", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
        preexec_fn=lambda: os.umask(0o022),  # a login shell's usual umask
        start_new_session=True,  # its simulators in its process group, to end them all
    )
    try:
        announced: dict[str, str] = {}
        while "socket" not in announced:
            line = demo.stdout.readline()
            assert line, "the demo exited before it announced its socket"
            key, _, value = line.strip().partition("=")
            announced[key] = value
        modes = {
            path.name: path.stat().st_mode & 0o777
            for path in (
                state,
                state / "journal.sqlite",
                state / "catalog.sqlite",
                state / "backend.token",
                state / "backend.sqlite",
            )
        }
        others = readable_by_others(state)
    finally:
        end_demo(demo)
    assert modes == {
        "demo": 0o700,
        "journal.sqlite": 0o600,
        "catalog.sqlite": 0o600,
        "backend.token": 0o600,
        "backend.sqlite": 0o600,
    }
    assert others == {}
