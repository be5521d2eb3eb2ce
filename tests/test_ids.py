"""Ids in time order (tilld/ids.py): a journal's sale ids go to the end of their index.

A random id puts each sale's key at a random leaf of ``entries_sale_id``;
after years on one till that leaf is anywhere in gigabytes (make
bench-scale's 10,000,000-entry sale). Here a real daemon sells, and the
sale ids its journal file holds must sort in the order the sales were made.
"""

from __future__ import annotations

import sqlite3
import time
import uuid

from tilld.ids import time_ordered_uuid
from tilld.journal.rows import pack_uuid


def test_an_id_is_a_version_7_uuid_with_the_time_first():
    before = time.time_ns() // 1_000_000
    text = time_ordered_uuid()
    after = time.time_ns() // 1_000_000
    parsed = uuid.UUID(text)
    assert str(parsed) == text  # canonical: the journal stores it as 16 bytes
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert before <= int.from_bytes(parsed.bytes[:6], "big") <= after
    assert isinstance(pack_uuid(text), bytes)


def test_ids_a_millisecond_apart_sort_in_the_order_they_were_made():
    ids = []
    for _ in range(20):
        ids.append(time_ordered_uuid())
        time.sleep(0.002)
    assert ids == sorted(ids)
    assert [pack_uuid(i) for i in ids] == sorted(pack_uuid(i) for i in ids)


def test_ids_made_in_one_millisecond_are_still_distinct():
    ids = [time_ordered_uuid(unix_ms=1_795_838_400_000) for _ in range(20_000)]
    assert len({i[:13] for i in ids}) == 1  # all of them in that one millisecond
    assert len(set(ids)) == len(ids)


def test_the_journal_keeps_sale_and_payment_ids_in_the_order_of_the_sales(till, client):
    payments = []
    for _ in range(8):
        sale_id = client.call("sale.open")["sale_id"]
        client.call("sale.add", sale_id=sale_id, plu="300")
        paid = client.call("sale.pay", sale_id=sale_id, method="cash", amount=3500)
        payments.append(paid["payment_id"])
        time.sleep(0.002)
    with sqlite3.connect(f"file:{till.state_dir / 'journal.sqlite'}?mode=ro", uri=True) as db:
        stored = [
            row[0]
            for row in db.execute("SELECT sale_id FROM entries WHERE type = 'sale' ORDER BY seq")
        ]
    assert len(stored) == 8
    # As the index orders them: the 16 bytes each is stored as.
    assert all(isinstance(s, bytes) and len(s) == 16 for s in stored)
    assert stored == sorted(stored)
    assert payments == sorted(payments)
