"""Registering receipts with the control unit (kontrollenhet), and holding the till to it.

Skatteverket's rules (docs/fiscal.md): no receipt is issued without the
control code the unit gives it, and a till whose unit does not work issues
none. How tilld keeps them:

- A receipt's entry and its duty to be registered commit together (a row in
  the journal's control_codes table, tilld/journal/control.py). One worker
  registers the rows in order, journals each code as a ``control-code``
  entry, and only then has the receipt printed, with the code on it.
- While the unit is known not to work, new sales, payments and refunds are
  refused (`require_working`), before any money is taken.
- A sale already paid when the unit fails completes; its receipt waits for
  its code (status shows it) and is registered and printed when the unit
  answers.
- Every request is sent with its own durable number. A request whose
  answer was lost, in this process or across a crash, is sent again with
  the same number, and the unit answers the registration it already made
  (docs/controlunit.md "In doubt"): nothing is registered twice. A protocol
  without numbers (CCSP v1) cannot be asked, so such a doubt stops the till
  until a technician settles it (`settle`): after reading the unit's own
  journal, by having it registered again or by entering the code the unit
  shows; either way the decision is journaled with the technician's name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

from drivers.controlunit import (
    VAT_RATES,
    ControlUnitError,
    ControlUnitUnavailable,
    ReceiptInvalid,
    ReceiptRegistration,
    RefusalReason,
    Registration,
    RegistrationInDoubt,
    UnitIdentity,
    UnitRefused,
)
from drivers.device import DeviceState, DeviceStatus

from .errors import Reason, Refused
from .events import EventBus
from .fiscal import (
    COPY,
    NORMAL,
    REGISTER_AGAIN,
    TRAINING,
    is_storage_warning,
    not_working_because,
    receipt_kind,
    registration_of,
    registration_request,
    settlement,
)
from .journal import (
    Entry,
    Journal,
    SideEffect,
    expect_control_code,
    record_control_code,
    register_control_request_again,
)
from .receipt import Seller

log = logging.getLogger("tilld.controlunit")

# While receipts wait, the unit is tried again this often (and at once when it comes back).
RETRY_S = 1.0
# Rows not registered yet; of them, those the worker leaves for a technician: in doubt
# with no way to ask the unit, or data the unit cannot take (a VAT rate it does not know).
UNFINISHED = ("waiting", "sent", "in-doubt", "invalid")
STUCK = ("in-doubt", "invalid")


class UnitDevice(Protocol):
    """The driver as the till holds it: a control unit (drivers/controlunit/unit.py's
    ControlUnit) that is also a supervised device, with a name and a status."""

    name: str

    @property
    def status(self) -> DeviceStatus: ...

    @property
    def identity(self) -> UnitIdentity | None: ...

    async def register(
        self, receipt: ReceiptRegistration, *, sequence: int | None = None
    ) -> Registration: ...


class Registering:
    def __init__(
        self,
        unit: UnitDevice | None,
        journal: Journal,
        events: EventBus,
        seller: Seller,
        *,
        answer_wait_s: float,
    ) -> None:
        self.unit = unit
        self.journal = journal
        self.events = events
        self.seller = seller
        self.answer_wait_s = answer_wait_s
        # Told when a receipt's own code is journaled (printing, set by the composition root).
        self.on_registered: Callable[[int], None] | None = None
        self._wake = asyncio.Event()
        self._waiters: dict[int, list[asyncio.Future[dict[str, Any]]]] = {}
        self._waiting: dict[int, dict[str, Any]] = {}  # sequence -> row, as last read
        self._in_doubt = 0
        # The unit's refusal of the last registration; cleared by the next code it gives.
        self._refusal: str | None = None
        self._last_status: DeviceStatus | None = None
        self._worker: asyncio.Task[None] | None = None
        # One settlement at a time, so one doubt is never acted on twice.
        self._settling = asyncio.Lock()

    @property
    def configured(self) -> bool:
        return self.unit is not None

    async def start(self) -> None:
        if self.unit is None:
            return
        rows = await self.journal.control_requests(*UNFINISHED)
        self._note(rows)
        if rows:
            log.warning(
                "%d receipt(s) wait for their control code; they are registered and printed "
                "once the control unit answers",
                len(rows),
            )
        self._worker = asyncio.create_task(self._work(), name="control unit registrations")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None

    # -- the rules ------------------------------------------------------------------

    def require_working(self) -> None:
        """Refuse what would take money or issue a receipt while the unit cannot give codes."""
        if self.unit is None:
            return
        why = not_working_because(self.unit.status, self._in_doubt, self._refusal)
        if why is not None:
            raise Refused(
                Reason.CONTROL_UNIT_UNAVAILABLE,
                f"The control unit is not working ({why}), so no receipt can be issued: tilld "
                "takes no new sales, payments or refunds until it is back. Check its cable and "
                "power; if it stays broken, follow the manual routine (docs/fiscal.md) and "
                "report it to Skatteverket.",
                detail=why,
            )

    def require_registrable(self, vat_rate: int, name: str) -> None:
        """Refuse an article whose receipt the unit could never register, before it is sold."""
        if self.unit is not None and vat_rate not in VAT_RATES:
            raise Refused(
                Reason.VAT_RATE_NOT_REGISTRABLE,
                f"'{name}' has VAT {vat_rate} %, which the control unit cannot register "
                "(only 25, 12, 6 and 0 %): no receipt could be issued for it. Fix the "
                "article's VAT rate in the catalog.",
                vat_rate=vat_rate,
            )

    def expect_code(self, entry_type: str) -> tuple[SideEffect, ...]:
        """The side effect that makes a sale or refund entry wait for its code (none if no unit)."""
        if self.unit is None:
            return ()
        return (expect_control_code_for(entry_type, self.seller),)

    async def issued(self, entry: Entry) -> dict[str, Any] | None:
        """A receipt just journaled: register it, waiting a little for its code."""
        if self.unit is None:
            return None
        receipt_no = entry.body["receipt_no"]
        future = self._future(receipt_no)
        self._wake.set()
        # The worker may have registered it already, before the future existed.
        row = await self.journal.control_request(receipt_no, receipt_kind(entry.body))
        if row is not None and row["state"] == "registered":
            self._forget(receipt_no, future)
            return {"state": "registered", **_code_of(row)}
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.answer_wait_s)
        except TimeoutError:
            return {"state": "waiting", "detail": self._why_waiting()}

    async def copy_code(self, receipt_no: int, entry: Entry) -> dict[str, Any] | None:
        """The code for the receipt's one copy, registered now if it has none yet."""
        if self.unit is None:
            return None
        row = await self.journal.control_request(receipt_no, COPY)
        if row is not None and row["state"] == "registered":
            return {"state": "registered", **_code_of(row)}
        self.require_working()
        request = registration_request(entry.type, entry.body, entry.created_at, COPY, self.seller)
        future = self._future(receipt_no, copy=True)
        row = await self.journal.add_control_request(receipt_no, COPY, request)
        self._note([row])
        self._wake.set()
        try:
            code = await asyncio.wait_for(asyncio.shield(future), self.answer_wait_s)
        except TimeoutError:
            code = {"state": "waiting"}
        if code.get("state") != "registered":
            raise Refused(
                Reason.CONTROL_UNIT_UNAVAILABLE,
                f"The copy of receipt {receipt_no} has no control code yet "
                f"({self._why_waiting()}); ask for it again once the unit answers.",
                detail=self._why_waiting(),
            )
        return code

    async def code_of(self, receipt_no: int, kind: str) -> dict[str, Any] | None:
        if self.unit is None:
            return None
        row = await self.journal.control_request(receipt_no, kind)
        return _code_of(row) if row is not None and row["state"] == "registered" else None

    def status(self) -> dict[str, Any]:
        if self.unit is None:
            return {"configured": False, "lawful_in_sweden": False}
        waiting = sorted(
            {r["receipt_no"] for r in self._waiting.values() if r["state"] != "invalid"}
        )
        why = not_working_because(self.unit.status, self._in_doubt, self._refusal)
        return {
            "configured": True,
            "working": why is None,
            "detail": why or self.unit.status.detail,
            "waiting_receipts": waiting,
            "in_doubt": self._in_doubt,
            "doubts": sorted(
                ({"receipt_no": r["receipt_no"], "kind": r["kind"]} for r in self._doubts()),
                key=lambda d: (d["receipt_no"], d["kind"]),
            ),
            "unregistrable_receipts": sorted(
                r["receipt_no"] for r in self._waiting.values() if r["state"] == "invalid"
            ),
        }

    # -- a technician's settlement -----------------------------------------------------

    async def settle(
        self,
        receipt_no: int,
        technician: str,
        action: str,
        control_code: str | None = None,
        unit_id: str | None = None,
    ) -> dict[str, Any]:
        """Settle the registration in doubt of ``receipt_no`` as the technician found it at
        the unit (docs/fiscal.md "A registration in doubt"); journaled before anything else."""
        async with self._settling:
            return await self._settle_doubt(receipt_no, technician, action, control_code, unit_id)

    async def _settle_doubt(
        self,
        receipt_no: int,
        technician: str,
        action: str,
        control_code: str | None,
        unit_id: str | None,
    ) -> dict[str, Any]:
        row = await self._doubt_of(receipt_no)
        if unit_id is None and self.unit is not None and self.unit.identity is not None:
            unit_id = self.unit.identity.unit_id
        body = settlement(row, receipt_no, action, control_code, unit_id)
        assert row is not None  # settlement() refuses otherwise
        if action == REGISTER_AGAIN:
            # The decision and the row's return to "waiting" commit together: a crash
            # after it sends the request, never without the decision on record.
            entry = await self.journal.append(
                "control-unit-settled",
                {**body, "technician": technician},
                effects=(register_control_request_again(row["sequence"]),),
            )
            self._note([{**row, "state": "waiting"}])
            self._wake.set()
            log.warning(
                "receipt %d: registration in doubt settled by %s: registered again",
                receipt_no,
                technician,
            )
            return {**body, "seq": entry.seq, "state": "waiting"}
        result = await self._journal_code(
            row,
            body["control_code"],
            body["unit_id"],
            entered_by_hand=True,
            technician=technician,
        )
        log.warning(
            "receipt %d: registration in doubt settled by %s with the code read from the unit",
            receipt_no,
            technician,
        )
        return {**result, "action": action}

    async def _doubt_of(self, receipt_no: int) -> dict[str, Any] | None:
        """The receipt's registration in doubt, else any registration of it (to say why not)."""
        if self.unit is None:
            return None
        rows = await self.journal.control_requests("in-doubt")
        for row in rows:
            if row["receipt_no"] == receipt_no:
                return row
        for kind in (NORMAL, TRAINING, COPY):
            row = await self.journal.control_request(receipt_no, kind)
            if row is not None:
                return row
        return None

    def _doubts(self) -> list[dict[str, Any]]:
        return [r for r in self._waiting.values() if r["state"] == "in-doubt"]

    # -- the unit's reports -------------------------------------------------------------

    def unit_status_changed(self, name: str, status: DeviceStatus) -> None:
        """Every status the driver reports (tilld/devices.py): log what the venue must act on."""
        if self.unit is None or name != self.unit.name:
            return
        before, self._last_status = self._last_status, status
        if before == status:
            return
        if status.state is DeviceState.ERROR or is_storage_warning(status):
            log.warning("control unit: %s", status.detail or status.state.value)
        elif status.state is DeviceState.OFFLINE:
            log.warning("control unit offline: %s; no receipts until it is back", status.detail)
        elif before is not None and before.state is not DeviceState.OK:
            log.info("control unit back: %s", status.detail or "ok")
        self._wake.set()

    # -- the worker -------------------------------------------------------------------------

    def _future(self, receipt_no: int, copy: bool = False) -> asyncio.Future[dict[str, Any]]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(_key(receipt_no, copy), []).append(future)
        return future

    def _forget(self, receipt_no: int, future: asyncio.Future[dict[str, Any]]) -> None:
        waiters = self._waiters.get(_key(receipt_no, False), [])
        if future in waiters:
            waiters.remove(future)
        if not waiters:
            self._waiters.pop(_key(receipt_no, False), None)

    def _note(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self._waiting[row["sequence"]] = row
        self._in_doubt = sum(1 for r in self._waiting.values() if r["state"] == "in-doubt")

    def _why_waiting(self) -> str:
        assert self.unit is not None
        why = not_working_because(self.unit.status, self._in_doubt, self._refusal)
        return why or "the control unit has not answered yet"

    async def _work(self) -> None:
        while True:
            woken = False
            with contextlib.suppress(TimeoutError):
                woken = await asyncio.wait_for(self._wake.wait(), RETRY_S)
            self._wake.clear()
            if not woken and all(r["state"] in STUCK for r in self._waiting.values()):
                continue  # nothing waits: no need to read the journal again
            try:
                await self._register_waiting()
            except Exception:
                # One bad row or a full disk must not stop every receipt after it.
                log.exception("registering receipts with the control unit failed; trying again")

    async def _register_waiting(self) -> None:
        assert self.unit is not None
        rows = await self.journal.control_requests(*UNFINISHED)
        self._waiting = {}
        self._note(rows)
        for row in rows:
            # A unit in error is still asked: a full memory is only known to be
            # emptied by a registration that succeeds (its status says nothing of it).
            if row["state"] in STUCK or self.unit.status.state is DeviceState.OFFLINE:
                continue
            if not await self._register(row):
                return  # the unit stopped answering: the rest wait for it

    async def _register(self, row: dict[str, Any]) -> bool:
        """Register one row; False when the unit cannot take more now."""
        assert self.unit is not None
        number = row["receipt_no"]
        try:
            receipt = registration_of(row["request"])
        except ReceiptInvalid as exc:
            log.error("receipt %d cannot be registered: %s", number, exc)
            await self.journal.mark_control_request(row["sequence"], "invalid")
            row["state"] = "invalid"
            self._note([row])
            self._settle(row, {"state": "invalid", "detail": str(exc)})
            return True
        identity = self.unit.identity
        if row["state"] == "sent" and identity is not None and identity.protocol_version < 2:
            # Sent before a crash, to a unit that cannot be asked by number (CCSP v1):
            # sending it again could register it twice.
            await self._doubt(row, number, "tilld stopped while registering it (CCSP v1)")
            return True
        if row["state"] == "waiting":
            await self.journal.mark_control_request(row["sequence"], "sent")
        try:
            answer = await self.unit.register(receipt, sequence=row["sequence"])
        except RegistrationInDoubt as exc:
            if exc.sequence is None:
                # No number to ask the unit with (CCSP v1): a technician decides.
                await self._doubt(row, number, str(exc))
            else:
                self._report(number, str(exc))
            return False
        except UnitRefused as exc:
            if exc.reason is not RefusalReason.PROTOCOL:  # a damaged message is just sent again
                self._refusal = f"the unit refused receipt {number}: {exc}"
            self._report(number, str(exc))
            return False
        except (ControlUnitUnavailable, ControlUnitError) as exc:
            self._report(number, str(exc))
            return False
        self._refusal = None
        await self._journal_code(row, answer.control_code, answer.unit_id)
        return True

    async def _doubt(self, row: dict[str, Any], number: int, why: str) -> None:
        await self.journal.mark_control_request(row["sequence"], "in-doubt")
        row["state"] = "in-doubt"
        self._note([row])
        self._report(number, f"registration in doubt, for a technician to settle: {why}")

    async def _journal_code(
        self, row: dict[str, Any], control_code: str, unit_id: str, **settled: Any
    ) -> dict[str, Any]:
        body = {
            "receipt_no": row["receipt_no"],
            "kind": row["kind"],
            "control_code": control_code,
            "unit_id": unit_id,
            "sequence": row["sequence"],
            **settled,  # entered by hand: who read it from the unit
        }
        entry = await self.journal.append(
            "control-code", body, effects=(record_control_code(row["sequence"]),)
        )
        self._waiting.pop(row["sequence"], None)
        self._note([])
        result = {"state": "registered", "seq": entry.seq, **body}
        self.events.publish("sale", event="registered", **body)
        self._settle(row, result)
        if row["kind"] != COPY and self.on_registered is not None:
            self.on_registered(row["receipt_no"])
        return result

    def _settle(self, row: dict[str, Any], result: dict[str, Any]) -> None:
        for future in self._waiters.pop(_key(row["receipt_no"], row["kind"] == COPY), []):
            if not future.done():
                future.set_result(result)

    def _report(self, receipt_no: int, message: str) -> None:
        log.warning("receipt %d waits for its control code: %s", receipt_no, message)
        self.events.publish(
            "device", device="controlunit", event="error", message=message, receipt_no=receipt_no
        )


def expect_control_code_for(entry_type: str, seller: Seller) -> SideEffect:
    def request_of(entry: Entry) -> dict[str, Any]:
        kind = receipt_kind(entry.body)
        return registration_request(entry_type, entry.body, entry.created_at, kind, seller)

    return expect_control_code(request_of)


def _code_of(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "receipt_no": row["receipt_no"],
        "kind": row["kind"],
        "control_code": row["control_code"],
        "unit_id": row["unit_id"],
        "sequence": row["sequence"],
    }


def _key(receipt_no: int, copy: bool) -> int:
    return -receipt_no if copy else receipt_no
