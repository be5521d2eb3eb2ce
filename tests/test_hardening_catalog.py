"""Hardening: a catalog cannot freeze, bloat or overflow the till; a damaged journal says so.

Each test tries one abuse against the real daemon (or the pure rule it rests
on) and records it in the reliability table. The catalogs come from a file,
from a reload, or from the reference back-end as a real subprocess; the
journals are real SQLite files damaged on disk.
"""

from __future__ import annotations

import json
import re
import shutil
import urllib.request
from typing import Any

import pytest
from conftest import DEMO_CATALOG, TillProcess
from hypothesis import given, settings
from hypothesis import strategies as st
from sims import TOKEN, Backend, wait_for

from tilld import catalog as catalogs
from tilld import ticketcodes
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
