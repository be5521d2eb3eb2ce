"""Nothing the daemon awaits blocks its event loop (STYLE.md, lesson 17).

While the loop waits on one blocking call, no scan is read, no API client is
answered and the watchdog is not fed. `blockbuster` replaces the calls that
block (file and socket I/O, sqlite3, time.sleep, lock waits) with ones that
raise BlockingError when made on the thread of a running event loop; in a
worker thread they run as before. Each test below runs a part of tilld that
the loop awaits, in-process, under it: the journal's async API, the catalog
as the till looks articles up, and the back-end client against the reference
back-end. The last tests show that a blocking call is caught.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from blockbuster import BlockBuster, BlockingError, blockbuster_ctx
from conftest import DEMO_CATALOG
from sims import Backend

from tilld.backend import BackendClient
from tilld.catalog import Catalog, parse_catalog
from tilld.journal import Journal

TILL = "till-test"


@pytest.fixture
def blockbuster() -> Iterator[BlockBuster]:
    """Every blocking call on a running loop's thread raises, whoever makes it."""
    with blockbuster_ctx() as checker:
        yield checker


def allow(checker: BlockBuster, calls: str, filename: str, functions: set[str]) -> None:
    """Let the calls whose names start with ``calls`` block inside ``functions`` only."""
    for name, function in checker.functions.items():
        if name.startswith(calls):
            function.can_block_in(filename, functions)


def allow_known_blocking(checker: BlockBuster) -> None:
    """The one blocking call tilld makes once, at start and on reload, and no others.

    BackendClient.start reads the token file with ``Path.read_text`` on the
    loop (a few bytes from local storage). This file is where the next one
    will show up.
    """
    allow(checker, "", "tilld/backend.py", {"_read_token"})


# -- the journal -------------------------------------------------------------------


async def journal_round(path: Path) -> dict[str, object]:
    journal = Journal(path, TILL)
    await journal.open()
    try:
        for n in range(3):
            await journal.append("note", {"text": f"note {n}"})
        await journal.append("sale", {"total": 3500}, number="receipt_no")
        await journal.save_open_sale("s-1", {"sale_id": "s-1", "lines": []})
        marks = await journal.sync_marks()
        return {
            "open_sales": await journal.open_sales(),
            "pending": await journal.pending_counts(*marks),
            "outbox": await journal.outbox(0, 100),
            "batch": await journal.outbox_batch(0, 100),
            "head": journal.head,
        }
    finally:
        await journal.close()


def test_the_journal_api_never_blocks_the_loop(tmp_path, blockbuster):
    allow_known_blocking(blockbuster)
    result = asyncio.run(journal_round(tmp_path / "journal.sqlite"))
    assert [e.seq for e in result["outbox"]] == [1, 2, 3, 4]
    assert len(result["batch"]) == 4 and result["pending"]["entries"] == 4
    assert result["head"].seq == 4


# -- the catalog ---------------------------------------------------------------------


@pytest.fixture
def catalog(tmp_path) -> Iterator[Catalog]:
    """The demo catalog stored as the till stores it (built outside any loop)."""
    store = Catalog(tmp_path / "catalog.sqlite")
    store.open()
    document = parse_catalog(DEMO_CATALOG.read_bytes(), "test")
    store.use(store.replace(document, source="test", etag=None, digest=None))
    yield store
    store.close()


def allow_the_indexed_lookup(checker: BlockBuster) -> None:
    """A PLU or barcode lookup runs on the loop by design (tilld/catalog.py,
    `Catalog`): one indexed SQLite read, cheaper than a hop to a thread. That
    read is the only blocking call allowed, and only inside the lookup."""
    allow(checker, "sqlite3.", "tilld/catalog.py", {"_find"})


async def look_up_as_the_till_does(catalog: Catalog) -> tuple[object, object, list[object]]:
    by_plu = catalog.find(plu="300")
    by_barcode = catalog.find(barcode="7310000000001")
    # A name search reads every folded name: the till runs it in a thread.
    found = await asyncio.to_thread(catalog.search, "kaffe", 10)
    return by_plu, by_barcode, found


def test_catalog_lookups_block_the_loop_only_for_one_indexed_read(catalog, blockbuster):
    allow_the_indexed_lookup(blockbuster)
    by_plu, by_barcode, found = asyncio.run(look_up_as_the_till_does(catalog))
    assert by_plu is not None and by_plu.plu == "300"
    assert by_barcode == by_plu
    assert by_plu in found


def test_a_name_search_on_the_loop_is_caught(catalog, blockbuster):
    """The check can fail: the same search, made on the loop, is a blocking call."""
    allow_the_indexed_lookup(blockbuster)

    async def search_on_the_loop() -> None:
        catalog.search("kaffe", 10)

    with pytest.raises(BlockingError, match="sqlite3"):
        asyncio.run(search_on_the_loop())


# -- the back-end client -------------------------------------------------------------


@pytest.fixture
def backend(short_tmp) -> Iterator[Backend]:
    server = Backend(short_tmp)
    yield server
    server.stop()


async def talk_to_the_backend(client: BackendClient) -> tuple[object, ...]:
    await client.health(2)
    catalog = await client.catalog(None)
    assert catalog is not None
    _, etag = catalog
    unchanged = await client.catalog(etag)
    head = await client.journal_head()
    return catalog, unchanged, head


def test_the_backend_client_never_blocks_the_loop(backend, blockbuster):
    allow_known_blocking(blockbuster)
    client = BackendClient(backend.url, TILL, token_file=str(backend.token_file), timeout_s=5)

    async def session() -> tuple[object, ...]:
        await client.start()
        try:
            return await talk_to_the_backend(client)
        finally:
            await client.stop()

    (body, etag), unchanged, _ = asyncio.run(session())
    assert body and etag and unchanged is None


# -- the check itself --------------------------------------------------------------------


def test_a_sleep_on_the_loop_is_caught(blockbuster):
    async def dozes() -> None:
        time.sleep(0.01)

    with pytest.raises(BlockingError, match=r"time\.sleep"):
        asyncio.run(dozes())


def test_the_same_sleep_in_a_thread_is_not(blockbuster):
    async def hands_it_to_a_thread() -> None:
        await asyncio.to_thread(time.sleep, 0.01)

    asyncio.run(hands_it_to_a_thread())
