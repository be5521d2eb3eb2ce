"""The sync engine: hands the journal to the back-end, exactly once, and replays scans.

- Entries go in seq order, in batches, each carrying its client-made uuid.
  The back-end treats a repeated uuid as the same request, so a batch resent
  after a crash or a lost reply is answered `duplicate`, never stored twice.
- Each entry's result is recorded; a `rejected` entry keeps its reason, stays
  visible in `sync.pending`, and is never resent unchanged. A whole-request
  400 is split in halves until the malformed entry is isolated and rejected
  alone, so one bad entry cannot block the ones after it.
- Scans are registered after the entries (a ticket sold offline must reach
  the back-end before its first passage), in the order they were made and
  with their original scan times.
- Transient failures (no connection, timeouts, 5xx) are retried with backoff
  and full jitter; selling never waits for any of this.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from drivers.backoff import backoff_delay

from .backend import BackendClient, BackendError
from .integrity import Head
from .journal import Entry, Journal, OutboxBatch, UnreadableEntry, now_with_offset
from .outbox import Outbox

log = logging.getLogger("tilld.sync")

ENTRY_STATUSES = ("accepted", "duplicate", "rejected")
# How often a connected till re-reads the back-end's head of its journal; it
# is read at once after a start and after every failed request too.
ANCHOR_CHECK_S = 300.0
SCAN_STATUSES = ("registered", "already-used", "invalid", "unknown")
# How long a live scan waits for another exchange about scans to finish. Its
# answer is due within backend.timeout_s and a second (one request of its own
# plus this); past it, the scan is captured and replayed like an offline one.
LIVE_SCAN_WAIT_S = 0.5
RECENT_SCAN_RESULTS = 1000
# How many of a batch's results are looked at on the event loop before it
# lets the rest of the till run: a gate's scan waits for at most that many
# (about 0.1 ms), not for a whole 1,000-entry batch's.
LOOP_SLICE = 200


class CatalogSink(Protocol):
    """Where a refreshed catalog goes (tilld/catalog_loading.py)."""

    @property
    def etag(self) -> str | None: ...

    async def use_fetched_catalog(self, raw: bytes, etag: str | None) -> None: ...


class SyncEngine:
    """Reports through the outbox (counts and `sync` events); woken by its doorbell."""

    def __init__(
        self,
        outbox: Outbox,
        catalog: CatalogSink,
        journal: Journal,
        backend: BackendClient,
        *,
        batch_size: int,
        backoff_cap_s: float,
        catalog_refresh_s: float,
        server_up: Callable[[], bool],
        rng: random.Random | None = None,
    ) -> None:
        self.outbox = outbox
        self.catalog = catalog
        self.journal = journal
        self.backend = backend
        self.batch_size = batch_size
        self.backoff_cap_s = backoff_cap_s
        self.catalog_refresh_s = catalog_refresh_s
        self.server_up = server_up
        self.scan_mark = 0
        self.last_error: str | None = None
        self.last_success: str | None = None
        self.scan_lock = asyncio.Lock()
        # The last scans' answers from the back-end, by seq: a live scan the
        # loop's batch registered first reads its answer here.
        self._recent_results: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self._wanted = outbox.wanted
        self._drained = outbox.drained
        self._rng = rng or random.Random()
        self._task: asyncio.Task[None] | None = None
        self._catalog_due = 0.0
        self._catalog_timer: asyncio.TimerHandle | None = None
        self.anchor: Head | None = None  # the back-end's head of this journal, as last read
        self._anchor_due = 0.0

    async def start(self) -> None:
        self.outbox.entry_mark, self.scan_mark = await self.journal.sync_marks()
        if self.backend.configured:
            self._task = asyncio.create_task(self._run())
            self.kick()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def kick(self) -> None:
        """Something may be worth sending: a new entry, the server back, a technician's request."""
        self.outbox.kick()

    @property
    def unsent(self) -> int:
        return self.outbox.unsent

    async def wait_drained(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._drained.wait(), timeout)
            return True
        except TimeoutError:
            return False

    # -- the loop ----------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            if not self.server_up():
                continue  # the mode change back to reachable kicks us
            try:
                if not await self._anchor_holds():
                    continue  # stopped until the journal is restored or acknowledged
                # The journal first: what was sold matters more than new prices,
                # and a catalog that fails to come must not hold the sales back.
                while await self._send_entries():
                    pass
                while await self._replay_scans():
                    pass
                await self._refresh_catalog_if_due()
            except BackendError as exc:
                self.last_error = exc.message
                self._anchor_due = 0.0  # whatever happened meanwhile, look again first
                delay = self._retry_delay(attempt, exc)
                attempt += 1
                log.warning("sync paused: %s; retrying in %.1f s", exc.message, delay)
                self.outbox.sync_progress(error=exc.message)
                await asyncio.sleep(delay)
                self._wanted.set()
                continue
            except UnreadableEntry as exc:
                # Nothing after it may go (the back-end judges each entry
                # against the one before), so sync waits here, and says why
                # where a technician looks: status, the sync event, the log.
                if self.last_error != str(exc):
                    log.critical("sync stopped: %s", exc)
                self.last_error = str(exc)
                self.outbox.sync_progress(error=self.last_error)
                await asyncio.sleep(self.backoff_cap_s)
                self._wanted.set()
                continue
            except Exception:
                log.exception("sync failed unexpectedly; retrying")
                await asyncio.sleep(self.backoff_cap_s)
                self._wanted.set()
                continue
            attempt = 0
            self.last_error = None
            if self.unsent == 0 and self.outbox.pending_scans == 0:
                self._drained.set()
            self._schedule_catalog_refresh()

    def _retry_delay(self, attempt: int, exc: BackendError) -> float:
        if not exc.transient:
            return self.backoff_cap_s  # a configuration problem: do not hammer the server
        return backoff_delay(attempt, 0.5, self.backoff_cap_s, self._rng.random)

    def _schedule_catalog_refresh(self) -> None:
        # One timer at a time: every sale wakes this loop, and each pass must
        # not leave another timer behind.
        if self._catalog_timer is not None:
            self._catalog_timer.cancel()
        remaining = max(0.0, self._catalog_due - time.monotonic())
        self._catalog_timer = asyncio.get_running_loop().call_later(remaining, self._wanted.set)

    # -- the anchor ---------------------------------------------------------

    async def _anchor_holds(self) -> bool:
        """Is what the back-end holds of this journal still in it? (integrity.py)

        A journal that went backwards or whose synced history was rewritten
        is not sent: its entries would take places the back-end already gave
        to others, or hide the rewrite behind accepted-looking results.
        """
        if time.monotonic() >= self._anchor_due:
            try:
                head = await self.backend.journal_head()
            except BackendError as exc:
                # Not a reason to hold the journal back: the batch that follows
                # goes to the same server and fails or succeeds on its own, and
                # a back-end that cuts every answer still stores what it gets.
                # The head is asked for again before the next batch.
                log.info("the back-end's journal head was not read (%s)", exc.message)
                return self._integrity_allows_sending()
            self._anchor_due = time.monotonic() + ANCHOR_CHECK_S
            if head is None:
                self._anchor_due = float("inf")
                log.info("the back-end does not tell its journal head; the anchor check is off")
            else:
                self.anchor = Head(
                    head["seq"], head["hash"], head.get("receipt_no", 0), head.get("z_no", 0)
                )
                await self.journal.judge_witness(self.anchor, "the back-end")
        return self._integrity_allows_sending()

    def _integrity_allows_sending(self) -> bool:
        integrity = self.journal.integrity
        if integrity.state in ("rolled-back", "diverged"):
            if self.last_error != integrity.message:
                log.warning("sync stopped: %s", integrity.message)
                self.last_error = integrity.message
                self.outbox.sync_progress(error=integrity.message)
            return False
        return True

    def journal_acknowledged(self) -> None:
        """A technician acknowledged a rollback: check the anchor afresh and send again."""
        self._anchor_due = 0.0
        self.last_error = None
        self.kick()

    # -- entries -----------------------------------------------------------

    async def _send_entries(self) -> bool:
        """Send the unsent entries, batch after batch, while they come in full batches.

        Over a long link the round trip is most of a batch's time, so the
        till's own work overlaps it: the next batch is read while this one is
        on its way, and this one's results are recorded while the next is. A
        batch still goes out only once the one before is answered: the
        back-end judges entries against its chain head, so a batch that
        overtook the one before would be rejected. A crash between posting a
        batch and recording the one before sends both again, which the
        back-end answers ``duplicate``. Returns False: nothing is left that
        was there when it began.
        """
        batch = await self.journal.outbox_batch(self.outbox.entry_mark, self.batch_size)
        recording: asyncio.Task[None] | None = None
        try:
            while batch:
                reading = (
                    asyncio.create_task(self.journal.outbox_batch(batch.seqs[-1], self.batch_size))
                    if len(batch) == self.batch_size
                    else None
                )
                try:
                    results = await self._post_entries(batch)
                    if recording is not None:
                        await recording  # the batch before's, recorded meanwhile
                        recording = None
                except BaseException:
                    if reading is not None:
                        reading.cancel()
                        await asyncio.gather(reading, return_exceptions=True)
                    raise
                recording = asyncio.create_task(self._record_entries(batch, results))
                batch = await reading if reading is not None else None
        finally:
            if recording is not None:
                # Whatever stopped the loop, the answers already had are kept.
                await recording
        return False

    async def _record_entries(self, batch: OutboxBatch, results: list[dict[str, Any]]) -> None:
        recorded: list[tuple[int, str, str | None]] = []
        accepted_sales: list[int] = []
        for n, (seq, type_, result) in enumerate(
            zip(batch.seqs, batch.types, results, strict=True), 1
        ):
            if n % LOOP_SLICE == 0:
                await asyncio.sleep(0)
            status = result["status"]
            recorded.append((seq, status, result.get("reason")))
            if status == "rejected":
                log.error("back-end rejected entry %d (%s): %s", seq, type_, result.get("reason"))
            elif type_ == "sale":
                accepted_sales.append(seq)
        try:
            made_valid = await self.journal.record_sync_results(recorded, accepted_sales)
        except Exception:
            # Results are recorded in slices: those before the failed one
            # stand, and their tickets left the pending count. Counted again,
            # or the count stays high until a restart (a retry changes nothing).
            with contextlib.suppress(Exception):
                await self.outbox.recount_tickets()
            raise
        done = sum(1 for _, status, _ in recorded if status != "rejected")
        if done:
            self.last_success = now_with_offset()
        self.outbox.entries_synced(
            done, made_valid, batch.seqs[-1], self.last_success if done else None
        )

    async def _post_entries(self, batch: OutboxBatch) -> list[dict[str, Any]]:
        try:
            results = await self.backend.post_journal(batch.payload(), len(batch))
        except BackendError as exc:
            if exc.status != 400:
                raise
            if len(batch) == 1:
                return [{"uuid": batch.uuids[0], "status": "rejected", "reason": exc.message}]
            first, second = batch.halves()
            return await self._post_entries(first) + await self._post_entries(second)
        for n, (seq, uuid, result) in enumerate(
            zip(batch.seqs, batch.uuids, results, strict=True), 1
        ):
            _check_result(f"entry {seq}", uuid, result, ENTRY_STATUSES, "reason")
            if n % LOOP_SLICE == 0:
                await asyncio.sleep(0)  # a gate's scan is not held behind 1,000 checks
        return results

    # -- scans -------------------------------------------------------------

    async def _replay_scans(self) -> bool:
        async with self.scan_lock:
            scans = await self.journal.outbox(self.scan_mark, self.batch_size, type_="scan")
            if not scans:
                return False
            await self._register(scans)
            return len(scans) == self.batch_size

    async def register_now(self, entry: Entry) -> dict[str, Any] | None:
        """Register one fresh scan at once, if no older scan is still waiting.

        Older scans go first so that every passage is registered in the order
        it happened; while they wait, a new scan waits with them (None). So
        does a scan that would have to wait more than LIVE_SCAN_WAIT_S for
        another exchange about scans: the guest at the entrance does not.
        """
        if not self.server_up():
            return None
        if entry.seq > self.scan_mark and (
            await self.journal.first_scan_after(self.scan_mark) != entry.seq
        ):
            return None
        try:
            async with asyncio.timeout(LIVE_SCAN_WAIT_S):
                await self.scan_lock.acquire()
        except TimeoutError:
            log.info("scan %d kept for later: the back-end is still busy with others", entry.seq)
            return None
        try:
            if entry.seq <= self.scan_mark:
                # The sync loop took it in its batch while this call waited for
                # the lock: its answer is the gate's answer too.
                return self._recent_results.get(entry.seq)
            if await self.journal.first_scan_after(self.scan_mark) != entry.seq:
                return None
            return (await self._register([entry]))[0]
        finally:
            self.scan_lock.release()

    async def _register(self, scans: list[Entry]) -> list[dict[str, Any]]:
        payload = [
            {"uuid": e.uuid, "code": e.body["code"], "scanned_at": e.body["scanned_at"]}
            for e in scans
        ]
        results = await self.backend.post_scans(payload)
        for entry, result in zip(scans, results, strict=True):
            _check_result(f"scan {entry.seq}", entry.uuid, result, SCAN_STATUSES, "detail")
        await self.journal.record_scan_results(
            [(e.seq, r["status"], r.get("detail")) for e, r in zip(scans, results, strict=True)]
        )
        self.scan_mark = scans[-1].seq
        for entry, result in zip(scans, results, strict=True):
            self._recent_results[entry.seq] = result
        while len(self._recent_results) > RECENT_SCAN_RESULTS:
            self._recent_results.popitem(last=False)
        self.outbox.scans_registered(scans, results)
        return results

    # -- catalog -----------------------------------------------------------

    async def _refresh_catalog_if_due(self) -> None:
        if time.monotonic() < self._catalog_due:
            return
        fetched = await self.backend.catalog(self.catalog.etag)
        self._catalog_due = time.monotonic() + self.catalog_refresh_s
        if fetched is not None:
            raw, etag = fetched
            await self.catalog.use_fetched_catalog(raw, etag)


def _check_result(
    what: str, uuid: str, result: dict[str, Any], statuses: tuple[str, ...], text: str
) -> None:
    """One result object of the back-end: this item's uuid, a known status, text or nothing."""
    if (
        result.get("uuid") != uuid
        or result.get("status") not in statuses
        or not isinstance(result.get(text), str | None)
    ):
        shown = str(result)
        shown = shown if len(shown) <= 200 else shown[:197] + "..."
        raise BackendError(
            f"the back-end's result for {what} does not match it: {shown}; expected its uuid, "
            f"a status among {', '.join(statuses)} and a text {text} or none. The back-end "
            "breaks the protocol: ask its vendor",
            transient=True,
        )
