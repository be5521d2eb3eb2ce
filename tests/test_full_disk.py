"""A real full disk under the journal: a tmpfs of a few MiB that tilld fills up.

A sale on a full disk must be refused with `storage-full` and leave nothing
half-written; reads keep working; selling resumes once space is freed.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import pytest
from conftest import Client, RpcError, TillProcess

TMPFS_SIZE = "6m"


@pytest.fixture
def small_disk(short_tmp: Path):
    mount_point = short_tmp / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0755", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(path: Path, leave_bytes: int) -> None:
    """Write a filler file until only about `leave_bytes` are free."""
    stat = os.statvfs(path.parent)
    free = stat.f_bavail * stat.f_frsize
    # Unbuffered, so the write that fails is the one that hits the end of the disk.
    with contextlib.suppress(OSError), open(path, "wb", buffering=0) as handle:
        handle.write(b"\0" * max(0, free - leave_bytes))
        while True:
            handle.write(b"\0" * 4096)


def sell(client: Client) -> int:
    sale_id = client.call("sale.open")["sale_id"]
    client.call("sale.add", sale_id=sale_id, plu="300", quantity=1)
    return client.call("sale.pay", sale_id=sale_id, method="cash", amount=3500)["receipt_no"]


def test_a_full_disk_refuses_sales_cleanly_and_recovers(small_disk: Path) -> None:
    till = TillProcess(small_disk).start()
    client = till.client()
    try:
        receipts = [sell(client) for _ in range(5)]
        filler = small_disk / "filler"
        fill(filler, leave_bytes=0)

        refused = 0
        for _ in range(20):
            try:
                receipts.append(sell(client))
            except RpcError as exc:
                assert exc.reason == "storage-full", exc.error
                assert "free space" in exc.error["data"]["message"]
                refused += 1
        assert refused > 0, "the disk never filled up"

        # Reads go on: the cashier can still look things up and see the state.
        assert client.call("status.get")["till_id"] == "till-test"
        assert client.call("catalog.search", query="kaffe")["articles"]
        assert client.call("admin.journal_verify")["ok"] is True

        filler.unlink()
        receipts.append(sell(client))
        receipts.append(sell(client))
        verify = client.call("admin.journal_verify")
        assert verify["ok"] is True
        # Gap-free: a refused sale burnt no receipt number.
        assert receipts == list(range(1, len(receipts) + 1))
    finally:
        client.close()
        till.stop()

    # And all of it is still there after a restart.
    again = TillProcess(small_disk).start()
    client = again.client()
    try:
        assert client.call("admin.journal_verify")["entries"] == len(receipts)
    finally:
        client.close()
        again.stop()
