"""A technician settles a control-unit registration in doubt (docs/fiscal.md).

A CCSP v1 unit cannot be asked by number, so a registration whose answer
was lost stays in doubt and stops the till. tilld runs as a process with
the CleanCash simulator (protocol v1) on a real pty and the printer
simulator on TCP; what the unit registered is read from the simulator, what
was printed from the printer simulator, what was decided from the journal.
That a cashier may not settle is checked for every technician's operation,
on both APIs, by tests/test_dbus_auth.py.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, RpcError
from sims import wait_for
from test_fiscal_controlunit import (
    Site,
    _assert_code_on_paper,
    _build,
    _cash_sale,
    _printed_with,
    _registered,
    _teardown,
)


@pytest.fixture
def doubt(short_tmp: Path) -> Iterator[tuple[Site, int]]:
    """A v1 site with one receipt in doubt: the unit registered it, its answer was lost."""
    site = _build(short_tmp, answer_wait_s=1.0, protocol=1)
    try:
        assert _cash_sale(site.client)["control"]["state"] == "registered"
        site.unit.lose_answer(1)
        reply = _cash_sale(site.client)
        assert reply["control"]["state"] == "waiting"
        wait_for(lambda: site.status()["control_unit"]["in_doubt"] == 1, 20, what="in doubt")
        yield site, reply["receipt_no"]
    finally:
        _teardown(site)


def _settle(site: Site, receipt_no: int, action: str, **more: Any) -> dict[str, Any]:
    return site.client.call(
        "admin.controlunit_settle",
        receipt_no=receipt_no,
        technician="Eva Tekniker",
        action=action,
        **more,
    )


def _tillctl(site: Site, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tilld.cli.tillctl", "--socket", str(site.till.socket_path), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )


def _sales_resume(site: Site) -> int:
    """Sales work again; the number of a new receipt that printed (prints go in order)."""
    site.unit_working(True)
    after = _cash_sale(site.client)
    assert after["control"]["state"] == "registered"
    wait_for(lambda: _printed_with(site, after["receipt_no"]), 10, what="the next receipt")
    return after["receipt_no"]


def test_status_lists_the_doubt_and_register_again_sends_it_once_and_prints_it_once(
    doubt: tuple[Site, int],
) -> None:
    site, receipt_no = doubt
    unit = site.status()["control_unit"]
    assert unit["doubts"] == [{"receipt_no": receipt_no, "kind": "normal"}]
    assert unit["working"] is False
    (lost,) = _registered(site, receipt_no)
    assert lost["answered"] is False

    settled = _settle(site, receipt_no, "register-again")
    assert settled["action"] == "register-again" and settled["state"] == "waiting"

    wait_for(lambda: site.status()["control_unit"]["waiting_receipts"] == [], 20, what="registered")
    held = _registered(site, receipt_no)
    assert len(held) == 2  # the lost one and exactly one new request
    assert held[1]["answered"] is True
    journal = site.journal()
    (decision,) = [e for e in journal if e["type"] == "control-unit-settled"]
    assert decision["body"] == {
        "receipt_no": receipt_no,
        "kind": "normal",
        "sequence": settled["sequence"],
        "action": "register-again",
        "technician": "Eva Tekniker",
    }
    (code,) = [
        e for e in journal if e["type"] == "control-code" and e["body"]["receipt_no"] == receipt_no
    ]
    # Journaled before the new request went out, so before its code.
    assert decision["seq"] < code["seq"]
    assert code["body"]["control_code"] == held[1]["control_code"]
    assert "entered_by_hand" not in code["body"]
    assert site.status()["control_unit"]["doubts"] == []

    _sales_resume(site)
    (paper,) = _printed_with(site, receipt_no)
    _assert_code_on_paper(site, paper, held[1]["control_code"])


def test_a_code_read_from_the_unit_is_journaled_by_hand_and_printed_and_nothing_is_sent(
    doubt: tuple[Site, int],
) -> None:
    site, receipt_no = doubt
    (held,) = _registered(site, receipt_no)
    registrations = len(site.unit.registrations())

    settled = _settle(site, receipt_no, "registered", control_code=held["control_code"])
    assert settled["state"] == "registered"
    assert settled["unit_id"] == site.unit.unit_id

    wait_for(lambda: _printed_with(site, receipt_no), 10, what="the settled receipt")
    (code,) = [b for b in site.codes() if b["receipt_no"] == receipt_no]
    assert code["control_code"] == held["control_code"]
    assert code["entered_by_hand"] is True and code["technician"] == "Eva Tekniker"
    assert len(site.unit.registrations()) == registrations  # nothing sent for it
    assert site.unit.verify(code["control_code"])["issued"] is True

    _sales_resume(site)
    (paper,) = _printed_with(site, receipt_no)
    _assert_code_on_paper(site, paper, held["control_code"])
    assert len(_registered(site, receipt_no)) == 1


def test_refusals_no_doubt_and_a_bad_code_journal_nothing(doubt: tuple[Site, int]) -> None:
    site, receipt_no = doubt
    with pytest.raises(RpcError) as refused:
        _settle(site, 1, "register-again")  # registered, not in doubt
    assert refused.value.reason == "control-unit-no-doubt"
    assert "no registration in doubt" in refused.value.error["message"]
    with pytest.raises(RpcError) as refused:
        _settle(site, receipt_no + 50, "register-again")
    assert refused.value.reason == "control-unit-no-doubt"
    for bad in ("abc123def456", "12 34 56 78", "SHORT"):
        with pytest.raises(RpcError) as refused:
            _settle(site, receipt_no, "registered", control_code=bad)
        assert refused.value.reason == "control-code-malformed"
    with pytest.raises(RpcError) as refused:
        _settle(site, receipt_no, "registered")
    assert refused.value.reason == "control-code-malformed"

    # Nothing of it was journaled, and the doubt still stops the till.
    assert [e for e in site.journal() if e["type"] == "control-unit-settled"] == []
    assert site.status()["control_unit"]["doubts"] == [{"receipt_no": receipt_no, "kind": "normal"}]
    assert site.status()["control_unit"]["working"] is False


def test_tillctl_shows_the_doubt_and_settles_only_with_yes(doubt: tuple[Site, int]) -> None:
    site, receipt_no = doubt
    shown = _tillctl(site, "controlunit")
    assert shown.returncode == 0, shown.stderr
    assert "working:  NO" in shown.stdout
    assert f"in doubt: {receipt_no} (normal)" in shown.stdout

    piped = _tillctl(
        site, "controlunit", "settle", str(receipt_no), "--register-again", stdin="yes\n"
    )
    assert piped.returncode != 0
    assert "--yes" in piped.stderr
    assert [e for e in site.journal() if e["type"] == "control-unit-settled"] == []

    done = _tillctl(
        site,
        "controlunit",
        "settle",
        str(receipt_no),
        "--register-again",
        "--technician",
        "Eva Tekniker",
        "--yes",
    )
    assert done.returncode == 0, done.stderr
    assert f"receipt {receipt_no}: sent to the control unit again" in done.stdout
    wait_for(lambda: _printed_with(site, receipt_no), 20, what="the settled receipt")
    (decision,) = [e for e in site.journal() if e["type"] == "control-unit-settled"]
    assert decision["body"]["technician"] == "Eva Tekniker"
    _sales_resume(site)
    assert len(_registered(site, receipt_no)) == 2
