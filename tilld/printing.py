"""Receipts, tickets and drawer kicks through the configured printer, journaled.

Every attempt to print is a `print` journal entry written *before* the
bytes go out, with its job's state kept beside it (printing, printed,
interrupted). So whatever happens — paper out, cable pulled, tilld killed
mid-job — the journal says the receipt may have printed, and:

- an interrupted job is printed again once the printer is back, marked
  "Ny utskrift efter skrivarfel (n)", so a second paper is never unexplained;
- a copy prints at most once per receipt and says KOPIA.

Jobs run one at a time in order on a worker task; a sale never waits for
paper.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drivers.escpos import profiles
from drivers.escpos.document import Document
from drivers.escpos.interpret import Interpreter
from drivers.escpos.printer import PrinterNotReady, PrintOutcome, ReceiptPrinter
from drivers.escpos.render import preload, render

from .errors import Reason, Refused
from .fiscal import COPY, receipt_kind
from .ids import time_ordered_uuid
from .journal import Entry, Journal, start_print_job
from .receipt import (
    PrintMarks,
    Seller,
    printer_test_page,
    receipt_document,
    report_document,
    ticket_documents,
)
from .registering import Registering

if TYPE_CHECKING:
    from .events import EventBus

log = logging.getLogger("tilld.printing")

# How long a caller of receipt.print waits for the paper before hearing "queued".
ANSWER_WAIT_S = 10.0
RETRY_PAUSE_S = 1.0


@dataclass
class PrintJob:
    receipt_no: int
    copy: bool
    job_id: str = field(default_factory=time_ordered_uuid)
    attempts: int = 0
    done: asyncio.Future[dict[str, Any]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Printing:
    def __init__(
        self,
        printer: ReceiptPrinter | None,
        journal: Journal,
        events: EventBus,
        seller: Seller,
        registering: Registering,
        *,
        width: int,
        code_page: str,
        drawer_pin: int,
        cache_dir: Path,
    ) -> None:
        self.printer = printer
        self.cache_dir = cache_dir
        self.journal = journal
        self.events = events
        self.seller = seller
        # No receipt is printed without its control code (tilld/registering.py).
        self.registering = registering
        self.width = width
        self.code_page = code_page
        self.drawer_pin = drawer_pin
        self._queue: asyncio.Queue[PrintJob] = asyncio.Queue()
        # Jobs queued or printing, by (receipt_no, copy): asking again joins
        # the job instead of printing the receipt twice.
        self._active: dict[tuple[int, bool], PrintJob] = {}
        self._worker: asyncio.Task[None] | None = None
        self._preload: asyncio.Task[None] | None = None

    @property
    def configured(self) -> bool:
        return self.printer is not None

    async def start(self) -> None:
        stale = await self.journal.interrupt_unfinished_print_jobs()
        if stale:
            log.warning(
                "%d print job(s) were cut short when tilld stopped; "
                "print them again with receipt.print if the customer needs them",
                stale,
            )
        await asyncio.to_thread(profiles.cache, self.cache_dir)
        if self.printer is not None:
            self._worker = asyncio.create_task(self._work(), name="print jobs")
            self._preload = asyncio.create_task(asyncio.to_thread(preload), name="escpos import")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
        if self._preload is not None:
            # A thread cannot be cancelled; this waits at most for one import,
            # and a failed one is told here rather than lost with its task.
            (failed,) = await asyncio.gather(self._preload, return_exceptions=True)
            if isinstance(failed, Exception):
                log.warning("python-escpos could not be imported ahead: %s", failed)
            self._preload = None

    # -- requests -------------------------------------------------------------

    def enqueue_receipt(self, receipt_no: int) -> PrintJob | None:
        if self.printer is None:
            return None
        return self._submit(receipt_no, copy=False)

    def _submit(self, receipt_no: int, copy: bool, earlier_attempts: int = 0) -> PrintJob:
        job = self._active.get((receipt_no, copy))
        if job is None:
            job = PrintJob(receipt_no, copy=copy, attempts=earlier_attempts)
            self._active[(receipt_no, copy)] = job
            self._queue.put_nowait(job)
        return job

    async def print_receipt(self, receipt_no: int, copy: bool) -> dict[str, Any]:
        printer = self._require_printer()
        entry = await self.journal.find_receipt(receipt_no)
        if entry is None:
            raise Refused(
                Reason.UNKNOWN_RECEIPT,
                f"There is no receipt number {receipt_no} in this till's journal.",
                receipt_no=receipt_no,
            )
        original = self._active.get((receipt_no, False))
        if copy and original is not None:
            # Whether the customer got the original decides what a copy is,
            # and that is only known once the original's job has finished.
            try:
                await asyncio.wait_for(asyncio.shield(original.done), ANSWER_WAIT_S)
            except TimeoutError:
                raise Refused(
                    Reason.RECEIPT_PRINTING,
                    f"The original of receipt {receipt_no} is still waiting for the printer "
                    f"({printer.status.detail or 'busy'}); ask for the copy once it has printed.",
                    receipt_no=receipt_no,
                ) from None
        jobs = await self.journal.print_jobs_of(receipt_no)
        originals = [j for j in jobs if not j["copy"]]
        if copy:
            if any(j["copy"] for j in jobs) and (receipt_no, True) not in self._active:
                raise Refused(
                    Reason.COPY_ALREADY_PRINTED,
                    f"A copy of receipt {receipt_no} has already been printed; "
                    "only one copy may be printed.",
                    receipt_no=receipt_no,
                )
            if not any(j["state"] == "printed" for j in originals):
                # The customer never got the original: print it, not a copy.
                copy = False
        if not copy and any(j["state"] == "printed" for j in originals):
            raise Refused(
                Reason.RECEIPT_ALREADY_PRINTED,
                f"Receipt {receipt_no} has already been printed; ask for a copy (copy: true).",
                receipt_no=receipt_no,
            )
        if copy:
            # The copy is a receipt of its own: registered before it is printed.
            await self.registering.copy_code(receipt_no, entry)
        elif self.registering.configured and (
            await self.registering.code_of(receipt_no, receipt_kind(entry.body)) is None
        ):
            raise Refused(
                Reason.CONTROL_UNIT_UNAVAILABLE,
                f"Receipt {receipt_no} waits for its control code; it prints by itself once "
                "the control unit has registered it.",
                receipt_no=receipt_no,
                detail=self.registering.status()["detail"],
            )
        # Attempts cut short earlier (even before a restart) count, so the
        # paper says this is not the first try.
        earlier = sum(j["attempts"] for j in jobs if j["copy"] == copy and j["state"] != "printed")
        job = self._submit(receipt_no, copy, earlier)
        try:
            return await asyncio.wait_for(asyncio.shield(job.done), ANSWER_WAIT_S)
        except TimeoutError:
            return {
                "job_id": job.job_id,
                "receipt_no": receipt_no,
                "copy": copy,
                "state": "queued",
                "detail": printer.status.detail or "waiting for the printer",
            }

    async def receipt_text(self, receipt_no: int) -> dict[str, Any]:
        """A receipt as the printer would print it, read from the journal; nothing is printed."""
        entry = await self.journal.find_receipt(receipt_no)
        if entry is None:
            raise Refused(
                Reason.UNKNOWN_RECEIPT,
                f"There is no receipt number {receipt_no} in this till's journal.",
                receipt_no=receipt_no,
            )
        document = receipt_document(
            entry.type, entry.body, entry.created_at, self.seller, PrintMarks()
        )
        # The printer's own bytes read back: the text is what the paper says.
        data = await asyncio.to_thread(self._bytes, document)
        interpreter = Interpreter()
        lines: list[str] = []
        for action in interpreter.feed(data):
            if action[0] == "cut":
                lines += action[1]
        lines += interpreter.take_lines()
        while lines and not lines[-1].strip():
            lines.pop()
        return {
            "receipt_no": receipt_no,
            "type": entry.type,
            "seq": entry.seq,
            "created_at": entry.created_at,
            "total": entry.body.get("total"),
            "text": "\n".join(line.rstrip() for line in lines) + "\n",
            "prints": await self.journal.print_jobs_of(receipt_no),
        }

    async def print_test_page(self) -> dict[str, Any]:
        printer = self._require_printer()
        try:
            data = await asyncio.to_thread(self._bytes, printer_test_page(self.seller))
            result = await printer.print_job(data)
        except PrinterNotReady as exc:
            raise _not_ready(exc) from None
        return {"state": result.outcome.value, "detail": result.detail, "status": self.status()}

    async def print_report(self, report: dict[str, Any]) -> dict[str, Any] | None:
        """An X or Z report on paper, if there is a printer; how it went, never a refusal:
        the report itself stands (a Z is journaled) whether or not the paper came out."""
        if self.printer is None:
            return None
        try:
            data = await asyncio.to_thread(self._bytes, report_document(report, self.seller))
            result = await asyncio.wait_for(self.printer.print_job(data), ANSWER_WAIT_S)
        except PrinterNotReady as exc:
            log.warning("%s report not printed: the printer is not ready (%s)", report["kind"], exc)
            return {"state": "not-printed", "detail": exc.detail}
        except TimeoutError:
            return {"state": "not-printed", "detail": "the printer did not finish in time"}
        return {"state": result.outcome.value, "detail": result.detail}

    async def open_drawer(self, reason: str, receipt_no: int | None = None) -> dict[str, Any]:
        printer = self._require_printer()
        body: dict[str, Any] = {"reason": reason}
        if receipt_no is not None:
            body["receipt_no"] = receipt_no
        if not printer.connected:
            raise _not_ready(PrinterNotReady(printer.status.detail or "offline"))
        # Journaled first: an opened drawer is a fact an auditor asks about.
        entry = await self.journal.append("drawer", body)
        try:
            await printer.kick_drawer(self.drawer_pin)
        except PrinterNotReady as exc:
            raise _not_ready(exc) from None
        self.events.publish(
            "device", device="printer", event="drawer-opened", reason=reason, receipt_no=receipt_no
        )
        return {"opened": True, "seq": entry.seq}

    def status(self) -> dict[str, Any]:
        if self.printer is None:
            return {"state": "offline", "detail": "not configured"}
        return {**self.printer.status.as_dict(), "queued": self._queue.qsize()}

    def _require_printer(self) -> ReceiptPrinter:
        if self.printer is None:
            raise Refused(
                Reason.PRINTER_NOT_CONFIGURED,
                "This till has no receipt printer configured ([devices.printer] kind).",
            )
        return self.printer

    # -- the worker ---------------------------------------------------------------

    async def _work(self) -> None:
        assert self.printer is not None
        while True:
            job = await self._queue.get()
            try:
                outcome = await self._until_printed(job)
            except Exception as exc:
                # One job that cannot be printed (a full disk, a bug) must not
                # stop every receipt after it.
                log.exception("receipt %d could not be printed", job.receipt_no)
                outcome = {"job_id": job.job_id, "state": "failed", "detail": str(exc)}
            self._active.pop((job.receipt_no, job.copy), None)
            if not job.done.done():
                job.done.set_result(outcome)

    async def _until_printed(self, job: PrintJob) -> dict[str, Any]:
        assert self.printer is not None
        while True:
            await self.printer.wait_ready()
            outcome = await self._attempt(job)
            if outcome is not None:
                return outcome
            # Every attempt is a journal entry: a printer flapping between
            # ready and not must not fill the journal with them.
            await asyncio.sleep(RETRY_PAUSE_S)

    async def _attempt(self, job: PrintJob) -> dict[str, Any] | None:
        """Print once; None means "interrupted, try again when the printer is back"."""
        assert self.printer is not None
        if not self.printer.ready:
            return None
        entry = await self.journal.find_receipt(job.receipt_no)
        if entry is None:
            return {"job_id": job.job_id, "state": "failed", "detail": "receipt not found"}
        done_by_another = [
            j
            for j in await self.journal.print_jobs_of(job.receipt_no)
            if j["copy"] == job.copy and j["state"] == "printed" and j["job_id"] != job.job_id
        ]
        if done_by_another:
            # Asked twice in a race: the other job printed it; printing again
            # would be a second, unmarked original (or a second copy).
            return {"job_id": job.job_id, "state": "already-printed", "copy": job.copy}
        kind = COPY if job.copy else receipt_kind(entry.body)
        control = await self.registering.code_of(job.receipt_no, kind)
        if self.registering.configured and control is None:
            return {"job_id": job.job_id, "state": "failed", "detail": "no control code yet"}
        job.attempts += 1
        # Rendering imports python-escpos the first time: off the event loop.
        data = await asyncio.to_thread(self._bytes, self._documents(entry, job, control))
        await self.journal.append(
            "print",
            {
                "job_id": job.job_id,
                "receipt_no": job.receipt_no,
                "copy": job.copy,
                "attempt": job.attempts,
                # A copy's amount counts in the daily reports (SKVFS 2014:9 7 kap.).
                "amount": (-1 if entry.type == "refund" else 1) * entry.body["total"],
            },
            effects=(start_print_job(job.job_id, job.receipt_no, job.copy),),
        )
        try:
            result = await self.printer.print_job(data)
        except PrinterNotReady as exc:
            # Nothing was sent; the journal still says an attempt was begun,
            # so the retry carries its attempt number on paper.
            await self.journal.finish_print_job(job.job_id, "interrupted", exc.detail)
            return None
        if result.outcome is PrintOutcome.INTERRUPTED:
            log.warning(
                "receipt %d: printing interrupted (%s); printing it again, marked, "
                "when the printer is back",
                job.receipt_no,
                result.detail,
            )
            await self.journal.finish_print_job(job.job_id, "interrupted", result.detail)
            self.events.publish(
                "device",
                device="printer",
                event="print-interrupted",
                receipt_no=job.receipt_no,
                detail=result.detail,
            )
            return None
        await self.journal.finish_print_job(job.job_id, "printed", "")
        self.events.publish(
            "device", device="printer", event="printed", receipt_no=job.receipt_no, copy=job.copy
        )
        return {
            "job_id": job.job_id,
            "receipt_no": job.receipt_no,
            "copy": job.copy,
            "state": "printed",
            "attempts": job.attempts,
        }

    def _documents(
        self, entry: Entry, job: PrintJob, control: dict[str, Any] | None = None
    ) -> Document:
        marks = PrintMarks(
            copy=job.copy,
            reprint_attempt=job.attempts,
            unit_id=control["unit_id"] if control else "",
            control_code=control["control_code"] if control else "",
        )
        document = receipt_document(entry.type, entry.body, entry.created_at, self.seller, marks)
        if entry.type == "sale" and not job.copy:
            document += ticket_documents(entry.body, entry.created_at, self.seller)
        return document

    def _bytes(self, document: Document) -> bytes:
        return render(document, width=self.width, code_page=self.code_page)


def _not_ready(exc: PrinterNotReady) -> Refused:
    return Refused(
        Reason.PRINTER_NOT_READY,
        f"The receipt printer is not ready ({exc.detail}). "
        "Check paper, cover and cable; tilld retries by itself.",
        detail=exc.detail,
    )
