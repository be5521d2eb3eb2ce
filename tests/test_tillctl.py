"""tillctl against a running daemon: tables for people, --json for scripts, honest exit codes."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

from conftest import REPO


def tillctl(till_or_socket, *args, check=False):
    socket_path = getattr(till_or_socket, "socket_path", till_or_socket)
    result = subprocess.run(
        [sys.executable, "-m", "tilld.cli.tillctl", "--socket", str(socket_path), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def sell_coffee(till) -> str:
    sale_id = tillctl(till, "call", "sale.open", "--get", "sale_id", check=True).stdout.strip()
    tillctl(till, "call", "sale.add", f"sale_id={sale_id}", "plu=300", check=True)
    paid = tillctl(
        till,
        "--json",
        "call",
        "sale.pay",
        f"sale_id={sale_id}",
        "method=cash",
        "amount:=5000",
        check=True,
    )
    return json.loads(paid.stdout)


def test_a_newcomer_sells_a_coffee_sees_it_pending_and_the_journal_verifies(till):
    paid = sell_coffee(till)
    assert paid["status"] == "completed" and paid["change"] == 1500
    pending = tillctl(till, "pending", check=True).stdout
    assert "1 entry, 0 tickets" in pending and "sale" in pending and "35,00 kr" in pending
    verify = tillctl(till, "journal", "verify", check=True)
    assert verify.stdout.startswith("ok: 1 entry,")


def test_status_is_a_table_for_people_and_json_for_scripts(till):
    human = tillctl(till, "status", check=True).stdout
    assert "mode           no-internet" in human and "card         refused" in human
    machine = json.loads(tillctl(till, "--json", "status", check=True).stdout)
    assert machine["till_id"] == "till-test"


def test_call_accepts_one_json_object(till):
    found = tillctl(till, "--json", "call", "catalog.search", '{"query": "kaffe"}', check=True)
    assert [a["plu"] for a in json.loads(found.stdout)["articles"]] == ["300"]


def test_refusal_is_one_line_on_stderr_and_exit_code_1(till):
    sale_id = tillctl(till, "call", "sale.open", "--get", "sale_id", check=True).stdout.strip()
    result = tillctl(till, "call", "sale.add", f"sale_id={sale_id}", "plu=200")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tillctl: refused (event-ticket-offline)")


def test_daemon_not_running_is_exit_code_3_with_a_hint(short_tmp):
    result = tillctl(short_tmp / "nothing.sock", "status")
    assert result.returncode == 3
    assert "cannot reach tilld" in result.stderr and "Is it running?" in result.stderr


def test_journal_export_as_jsonl_and_csv_has_every_entry(till):
    for _ in range(3):
        sell_coffee(till)
    lines = tillctl(till, "journal", "export", "--format", "jsonl", check=True).stdout.splitlines()
    entries = [json.loads(line) for line in lines]
    assert [e["seq"] for e in entries] == [1, 2, 3]
    assert all(len(e["hash"]) == 64 for e in entries)
    rows = list(
        csv.DictReader(
            io.StringIO(tillctl(till, "journal", "export", "--format", "csv", check=True).stdout)
        )
    )
    assert [int(r["seq"]) for r in rows] == [1, 2, 3]
    assert json.loads(rows[0]["body"])["receipt_no"] == 1


def test_report_z_closes_the_day(till):
    sell_coffee(till)
    z = tillctl(till, "report", "z", "--yes", check=True).stdout
    assert z.startswith("Z report 1") and "35,00" in z
    x = json.loads(tillctl(till, "--json", "report", "x", check=True).stdout)
    assert x["sales"] == 0 and x["grand_total"] == 3500


def test_watch_prints_live_sale_events(till):
    watcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tilld.cli.tillctl",
            "--socket",
            str(till.socket_path),
            "--json",
            "watch",
            "sale",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert watcher.stderr.readline().startswith("tillctl: watching sale")
        sell_coffee(till)
        # The sale's life in order: opened, its line, completed.
        events = [json.loads(watcher.stdout.readline()) for _ in range(3)]
        assert [e["event"] for e in events] == ["opened", "line-added", "completed"]
        event = events[-1]
        assert event["topic"] == "sale" and event["event"] == "completed"
    finally:
        watcher.terminate()
        watcher.wait(10)
