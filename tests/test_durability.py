"""What survives a crash or a restart, and what refuses to start (with a reason and exit code)."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import time
from typing import ClassVar

import journal_rows
import pytest
from conftest import DEMO_CATALOG, RpcError, TillProcess, to_toml

EX_CANTCREAT = 73


class Till(TillProcess):
    """A TillProcess that the fixture below kills at teardown, even when the test fails."""

    made: ClassVar[list[TillProcess]] = []

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        Till.made.append(self)


@pytest.fixture(autouse=True)
def kill_leftovers():
    yield
    while Till.made:
        Till.made.pop().kill()


def sell(client, plu="300", quantity=1):
    sale_id = client.call("sale.open")["sale_id"]
    sale = client.call("sale.add", sale_id=sale_id, plu=plu, quantity=quantity)["sale"]
    return client.call("sale.pay", sale_id=sale_id, method="cash", amount=sale["total"])


def exit_of_failed_start(till: Till, timeout: float = 20) -> int:
    till.start(wait=False)
    assert till.proc is not None
    try:
        return till.proc.wait(timeout)
    except Exception:
        till.kill()
        raise


def test_partial_payment_survives_sigkill_and_completes_after_restart(short_tmp):
    till = Till(short_tmp).start()
    client = till.client()
    assert sell(client)["receipt_no"] == 1
    sale_id = client.call("sale.open")["sale_id"]
    client.call("sale.add", sale_id=sale_id, plu="401")  # 249,00
    client.call("sale.add", sale_id=sale_id, plu="100", quantity=2)  # 2 x 150,00
    first = client.call("sale.pay", sale_id=sale_id, method="cash", amount=20000)
    assert first["status"] == "accepted" and first["sale"]["due"] == 54900 - 20000
    unpaid = client.call("sale.open")["sale_id"]  # no payment: nothing to keep
    client.call("sale.add", sale_id=unpaid, plu="300")
    client.close()
    till.kill()  # SIGKILL
    assert till.proc.returncode == -signal.SIGKILL

    till.start()
    client = till.client()
    listed = client.call("sale.list")["sales"]
    assert [s["sale_id"] for s in listed] == [sale_id]
    restored = client.call("sale.get", sale_id=sale_id)
    assert restored == listed[0]
    assert restored["state"] == "open"
    assert (restored["total"], restored["paid"], restored["due"]) == (54900, 20000, 34900)
    assert [(p["payment_id"], p["method"], p["amount"]) for p in restored["payments"]] == [
        (first["payment_id"], "cash", 20000)
    ]
    assert [(ln["plu"], ln["quantity"]) for ln in restored["lines"]] == [("401", 1), ("100", 2)]
    assert client.call("status.get")["open_sales"] == 1

    rest = client.call(
        "sale.pay", sale_id=sale_id, method="swish-manual", amount=34900, reference="SW1"
    )
    assert rest["status"] == "completed" and rest["receipt_no"] == 2
    assert len(rest["sale"]["lines"][1]["ticket_codes"]) == 2
    assert client.call("sale.list")["sales"] == []
    assert sell(client)["receipt_no"] == 3
    client.close()
    assert till.stop() == 0

    db = journal_rows.connect(till.state_dir / "journal.sqlite")
    body = db.execute(
        "SELECT body_text(body) FROM entries WHERE type = 'sale'"
        " AND json_extract(body_text(body), '$.sale_id') = ?",
        (sale_id,),
    ).fetchone()[0]
    assert db.execute("SELECT count(*) FROM open_sales").fetchone()[0] == 0
    db.close()
    assert '"receipt_no":2' in body and first["payment_id"] in body


def test_restart_without_catalog_file_sells_from_the_cached_catalog(short_tmp):
    catalog = short_tmp / "catalog.json"
    shutil.copy(DEMO_CATALOG, catalog)
    till = Till(short_tmp, {"catalog": {"file": str(catalog)}}).start()
    client = till.client()
    before = client.call("status.get")["catalog"]
    assert before == {"version": "demo-2026-11-26", "articles": 9, "source": str(catalog)}
    client.close()
    assert till.stop() == 0

    # The [catalog] section gone from the configuration altogether.
    sections = {
        "till": {"id": "till-test"},
        "paths": {"state_dir": str(till.state_dir)},
        "api": {"socket_path": str(till.socket_path), "dbus": "none"},
    }
    till.config_path.write_text(to_toml(sections), encoding="utf-8")
    till.start()
    client = till.client()
    assert client.call("status.get")["catalog"] == before  # the cache says where it came from
    assert client.call("catalog.search", query="300")["articles"][0]["name"] == "Kaffe"
    assert sell(client, "302")["receipt_no"] == 1
    client.close()
    assert till.stop() == 0

    # The configured file deleted: the cache still sells, and the log says why.
    catalog.unlink()
    till = Till(short_tmp, {"catalog": {"file": str(catalog)}}).start()
    client = till.client()
    assert client.call("status.get")["catalog"]["articles"] == 9
    assert sell(client, "100", 2)["receipt_no"] == 2
    client.close()
    assert till.stop() == 0
    assert f"catalog file {catalog} is unusable" in till.log()


def test_an_edited_catalog_file_is_read_again_and_an_unchanged_one_is_not_parsed(short_tmp):
    catalog = short_tmp / "catalog.json"
    shutil.copy(DEMO_CATALOG, catalog)
    till = Till(short_tmp, {"catalog": {"file": str(catalog)}}).start()
    till.client().close()
    assert till.stop() == 0
    till.start()  # the same bytes: the stored catalog is used as it is
    client = till.client()
    assert client.call("status.get")["catalog"]["version"] == "demo-2026-11-26"
    client.close()
    assert till.stop() == 0
    assert "demo-2026-11-26 from " + str(catalog) + ": unchanged" in till.log()
    edited = json.loads(catalog.read_text(encoding="utf-8"))
    edited["version"] = "edited"
    edited["articles"] = [a for a in edited["articles"] if a["plu"] != "302"]
    catalog.write_text(json.dumps(edited), encoding="utf-8")
    till.start()
    client = till.client()
    assert client.call("status.get")["catalog"] == {
        "version": "edited",
        "articles": 8,
        "source": str(catalog),
    }
    with pytest.raises(RpcError) as gone:
        sell(client, "302")
    assert gone.value.reason == "unknown-article"
    client.close()


def test_a_till_upgraded_from_the_journal_catalog_cache_keeps_selling(short_tmp):
    """Earlier tilld kept the catalog in the journal database; an upgrade must not lose it."""
    till = Till(short_tmp, {}).start()
    till.client().close()
    assert till.stop() == 0
    (till.state_dir / "catalog.sqlite").unlink()
    sections = {
        "till": {"id": "till-test"},
        "paths": {"state_dir": str(till.state_dir)},
        "api": {"socket_path": str(till.socket_path), "dbus": "none"},
    }
    till.config_path.write_text(to_toml(sections), encoding="utf-8")
    with sqlite3.connect(till.state_dir / "journal.sqlite") as db:
        db.execute(
            "INSERT INTO catalog_cache (id, document, etag, source, stored_at)"
            " VALUES (1, ?, 'etag-1', 'back-end', '2026-11-26T08:00:00+00:00')",
            (DEMO_CATALOG.read_text(encoding="utf-8"),),
        )
    till.start()
    client = till.client()
    assert client.call("status.get")["catalog"]["source"] == "back-end"
    assert sell(client, "302")["receipt_no"] == 1
    client.close()


def test_a_journal_of_another_till_refuses_to_start(short_tmp):
    first = Till(short_tmp, {"till": {"id": "till-a"}}).start()
    client = first.client()
    sell(client)
    client.close()
    assert first.stop() == 0

    other = Till(short_tmp, {"till": {"id": "till-b"}})
    assert exit_of_failed_start(other) == EX_CANTCREAT
    log = other.log().split("stopped")[-1]  # what the second start said
    assert "'till-a'" in log and "'till-b'" in log, log
    assert str(other.state_dir / "journal.sqlite") in log
    assert not other.socket_path.exists()

    # Nothing was touched: till-a starts again with its sale.
    again = Till(short_tmp, {"till": {"id": "till-a"}}).start()
    client = again.client()
    assert client.call("admin.journal_verify") == {
        "ok": True,
        "entries": 1,
        "integrity": {"state": "ok"},
    }
    client.close()
    assert again.stop() == 0


@pytest.mark.parametrize("shape", ["under-a-file", "is-a-file"])
def test_an_unusable_state_dir_exits_73_naming_it(short_tmp, shape):
    blocker = short_tmp / "not-a-dir"
    blocker.write_text("a regular file\n")
    state_dir = blocker / "state" if shape == "under-a-file" else blocker
    till = Till(short_tmp, {"paths": {"state_dir": str(state_dir)}})
    assert exit_of_failed_start(till) == EX_CANTCREAT
    log = till.log()
    assert f"state directory {state_dir}" in log, log
    assert "Traceback" not in log
    assert not till.socket_path.exists()


def test_a_second_daemon_on_the_same_socket_refuses_and_the_first_keeps_serving(short_tmp):
    first = Till(short_tmp).start()
    client = first.client()
    assert sell(client)["receipt_no"] == 1

    second_base = short_tmp / "second"
    second_base.mkdir()
    second = Till(second_base, {"api": {"socket_path": str(first.socket_path)}})
    assert exit_of_failed_start(second) == EX_CANTCREAT
    assert f"another tilld is already serving {first.socket_path}" in second.log()

    # The very same configuration is refused as well, by the state directory's lock.
    twin = Till(short_tmp)
    twin.log_path = short_tmp / "twin.log"
    assert exit_of_failed_start(twin) == EX_CANTCREAT
    assert f"another tilld is already using the state directory {first.state_dir}" in twin.log()

    assert first.proc.poll() is None and first.socket_path.exists()
    assert sell(client)["receipt_no"] == 2  # on the connection it already had
    fresh = first.client()
    assert sell(fresh)["receipt_no"] == 3
    assert fresh.call("admin.journal_verify") == {
        "ok": True,
        "entries": 3,
        "integrity": {"state": "ok"},
    }
    fresh.close()
    client.close()
    assert first.stop() == 0


def test_a_second_daemon_on_the_same_state_dir_refuses_and_the_first_keeps_serving(short_tmp):
    """Another socket path, the same journal: two writers would fight over one seq series."""
    first = Till(short_tmp).start()
    client = first.client()
    assert sell(client)["receipt_no"] == 1

    second_base = short_tmp / "second"
    second_base.mkdir()
    second = Till(second_base, {"paths": {"state_dir": str(first.state_dir)}})
    second.start(wait=False)
    try:
        second.wait_ready()
    except AssertionError:
        code = second.proc.wait()  # it exited, as it should
    else:
        # It came up: show what two writers on one journal do to sales before failing.
        other = second.client()
        outcomes = []
        for name, c in (("second", other), ("first", client)):
            try:
                outcomes.append(f"{name}: receipt {sell(c)['receipt_no']}")
            except Exception as exc:
                outcomes.append(f"{name}: {exc}")
        other.close()
        second.kill()
        client.close()
        first.stop()
        pytest.fail(f"a second tilld started on state dir {first.state_dir}; sales: {outcomes}")
    assert code == EX_CANTCREAT
    assert str(first.state_dir) in second.log()
    assert sell(client)["receipt_no"] == 2
    assert client.call("admin.journal_verify") == {
        "ok": True,
        "entries": 2,
        "integrity": {"state": "ok"},
    }
    client.close()
    assert first.stop() == 0


def test_sigterm_exits_0_and_removes_the_socket(short_tmp):
    till = Till(short_tmp).start()
    client = till.client()
    sell(client)
    client.close()
    assert till.socket_path.exists()
    started = time.monotonic()
    assert till.stop() == 0
    assert time.monotonic() - started < 5
    assert not till.socket_path.exists()
    assert till.log().rstrip().endswith("stopped")
