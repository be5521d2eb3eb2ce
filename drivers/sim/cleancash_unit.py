"""A simulated CleanCash control unit: what a real one answers to each CCSP message.

It gives every registration a control code it can later prove it made: an
HMAC of its manufacturing number, its own journal number and the receipt's
wire fields, under a key made at start that never leaves the process. It
keeps every registration (also those whose answer it was told to lose), so
tests can check a receipt was registered exactly once. Faults are set at run
time through the control API (controlunit.py).

Where controlunit.md is silent the simulator chooses, and says so: the reply
types of RR, ST, RH and SQ (drivers/controlunit/cleancash/messages.py), the
main status that goes with a storage state, and ST restarting a receipt.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from ..controlunit.cleancash import messages
from ..controlunit.cleancash.errors import CcspProtocolError
from ..controlunit.cleancash.messages import Message
from ..controlunit.cleancash.naks import NAK_ERRORS
from ..controlunit.unit import (
    MainStatus,
    ReceiptRegistration,
    Registration,
    StorageStatus,
    UnitIdentity,
)

STORAGE_STATES = ("ok", "warning", "last", "full")  # "last": room for one more receipt
NAK_SCOPES = ("register", "any")
CONTROL_CODE_BYTES = 16


class FaultError(ValueError):
    """A control request the simulator cannot follow."""


@dataclass
class SimRegistration:
    journal_no: int
    control_code: str
    protocol: int
    sequence: int | None  # RR's sequence number; None for v1
    fields: list[str]  # the eleven receipt fields exactly as they came over the wire
    receipt: dict[str, Any]
    answered: bool = True  # False: registered, then the answer was dropped as told
    at: float = field(default_factory=time.time)


def receipt_as_dict(receipt: ReceiptRegistration) -> dict[str, Any]:
    return {
        "date_time": receipt.date_time.isoformat(timespec="minutes"),
        "receipt_number": receipt.receipt_number,
        "till_id": receipt.till_id,
        "org_number": receipt.org_number,
        "total_ore": receipt.total_ore,
        "return_amount_ore": receipt.return_amount_ore,
        "kind": receipt.kind.value,
        "vat_ore": {str(rate): ore for rate, ore in receipt.vat_ore.items()},
    }


class SimUnit:
    def __init__(
        self,
        unit_id: str = "TILLDSIM00000001",
        firmware: str = "tilld-sim-1.0",
        protocol: int = 2,
    ) -> None:
        self.identity = UnitIdentity(unit_id, protocol, firmware)
        messages.identity_reply(self.identity)  # refuses an id the wire cannot carry
        self._key = secrets.token_bytes(32)
        self.registrations: list[SimRegistration] = []
        self.received: Counter[str] = Counter()
        self.storage = "ok"
        self.main_override: MainStatus | None = None
        self.nak_code = ""
        self.nak_times = 0
        self.nak_scope = "register"
        self.lose_answers = 0
        self.repeats = 0  # RRs answered with an earlier registration's code
        self._v1: ReceiptRegistration | str | None = None  # "started", then the header

    # Faults -----------------------------------------------------------------

    def set_protocol(self, version: int) -> None:
        if version not in (1, 2):
            raise FaultError("protocol version must be 1 or 2")
        self.identity = UnitIdentity(self.identity.unit_id, version, self.identity.firmware_version)
        self._v1 = None

    def set_nak(self, code: str, times: int = 1, scope: str = "register") -> None:
        if code not in NAK_ERRORS and not (len(code) == 3 and code.isdigit()):
            raise FaultError(f"NAK code must be 3 digits, e.g. {', '.join(NAK_ERRORS)}")
        if scope not in NAK_SCOPES:
            raise FaultError(f"scope must be one of {', '.join(NAK_SCOPES)}")
        if times < 0:
            raise FaultError("times must be 0 or more")
        self.nak_code, self.nak_times, self.nak_scope = code, times, scope

    def set_storage(self, state: str) -> None:
        if state not in STORAGE_STATES:
            raise FaultError(f"storage state must be one of {', '.join(STORAGE_STATES)}")
        self.storage = state

    def set_main_status(self, status: str | None) -> None:
        self.main_override = None if status is None else MainStatus(status)

    def reset_faults(self) -> None:
        self.storage, self.main_override = "ok", None
        self.nak_code, self.nak_times, self.lose_answers = "", 0, 0
        self._v1 = None

    # What the unit says about itself -------------------------------------------

    def main_status(self) -> MainStatus:
        if self.main_override is not None:
            return self.main_override
        # Our choice: a full memory is a non-fatal error, a nearly full one a warning.
        if self.storage == "full":
            return MainStatus.NON_FATAL_ERROR
        if self.storage in ("warning", "last"):
            return MainStatus.WARNING
        return MainStatus.OK

    def storage_status(self) -> StorageStatus:
        if self.storage == "ok":
            return StorageStatus.OK
        if self.storage == "warning":
            return StorageStatus.HIGH_LEVEL_WARNING
        return StorageStatus.MEMORY_FULL

    # Answering --------------------------------------------------------------

    def answer_damaged_frame(self) -> str:
        self.received["(bad LRC)"] += 1
        return messages.nak("001")

    def answer(self, text: str) -> str | None:
        """The reply to one message; None when the reply is to be lost."""
        try:
            message = messages.parse_message(text)
        except CcspProtocolError:
            return messages.nak("002")
        self.received[message.type] += 1
        if self.nak_times and (self.nak_scope == "any" or self._registers(message)):
            self.nak_times -= 1
            self._v1 = None
            return messages.nak(self.nak_code)
        if message.type == messages.STATUS_QUERY:
            return messages.status_reply(self.main_status())
        if message.type == messages.IDENTITY_QUERY:
            return messages.identity_reply(self.identity)
        if self.identity.protocol_version >= 2 and message.type == messages.REGISTER_RECEIPT:
            return self._register_receipt(message)
        if self.identity.protocol_version == 1:
            if message.type == messages.START_RECEIPT:
                self._v1 = "started"  # our choice: ST always starts afresh
                return messages.acknowledge()
            if message.type == messages.RECEIPT_HEADER:
                return self._receipt_header(message)
            if message.type == messages.SIGNATURE_QUERY:
                return self._signature_query()
        return messages.nak("002")

    def _registers(self, message: Message) -> bool:
        if self.identity.protocol_version >= 2:
            return message.type == messages.REGISTER_RECEIPT
        return message.type == messages.SIGNATURE_QUERY

    def _register_receipt(self, message: Message) -> str | None:
        number = message.fields[0] if message.fields else ""
        if not (number.isascii() and number.isdigit()) or int(number) < 1 or len(number) > 15:
            return messages.nak("011")
        try:
            sequence, receipt = messages.parse_register_receipt(message)
        except CcspProtocolError:
            return messages.nak("003")
        return self._register(receipt, list(message.fields[1:]), sequence)

    def _receipt_header(self, message: Message) -> str:
        if self._v1 != "started":
            self._v1 = None
            return messages.nak("004")
        try:
            self._v1 = messages.parse_receipt_header(message)
        except CcspProtocolError:
            self._v1 = None
            return messages.nak("003")
        return messages.acknowledge()

    def _signature_query(self) -> str | None:
        receipt, self._v1 = self._v1, None
        if not isinstance(receipt, ReceiptRegistration):
            return messages.nak("004")
        return self._register(receipt, messages.receipt_fields(receipt), None)

    def _register(
        self, receipt: ReceiptRegistration, wire_fields: list[str], sequence: int | None
    ) -> str | None:
        if sequence is not None:
            earlier = next((r for r in self.registrations if r.sequence == sequence), None)
            if earlier is not None:
                return self._repeat(earlier, wire_fields)
        if self.storage == "full":
            return messages.nak("010")
        journal_no = len(self.registrations) + 1
        code = self._control_code(journal_no, wire_fields)
        record = SimRegistration(
            journal_no,
            code,
            self.identity.protocol_version,
            sequence,
            wire_fields,
            receipt_as_dict(receipt),
        )
        self.registrations.append(record)
        if self.storage == "last":
            self.storage = "full"  # that receipt took the last room
        if self.lose_answers:
            self.lose_answers -= 1
            record.answered = False
            return None
        if sequence is None:
            return messages.signature_reply(code)
        registration = Registration(code, self.identity.unit_id, self.storage_status())
        return messages.registration_reply(registration, sequence)

    def _repeat(self, earlier: SimRegistration, wire_fields: list[str]) -> str | None:
        """RR sent again with a number already registered (our choice, to check).

        The same receipt again is a till asking after a registration whose
        answer it lost: it gets the first answer, and nothing is registered
        twice. Another receipt under a used number is NAK 011."""
        if earlier.fields != wire_fields:
            return messages.nak("011")
        self.repeats += 1
        if self.lose_answers:
            self.lose_answers -= 1
            return None
        earlier.answered = True
        registration = Registration(
            earlier.control_code, self.identity.unit_id, self.storage_status()
        )
        assert earlier.sequence is not None
        return messages.registration_reply(registration, earlier.sequence)

    # Proof ------------------------------------------------------------------

    def _control_code(self, journal_no: int, wire_fields: list[str]) -> str:
        text = "#".join((self.identity.unit_id, str(journal_no), *wire_fields))
        digest = hmac.new(self._key, text.encode("ascii"), hashlib.sha256).digest()
        return digest[:CONTROL_CODE_BYTES].hex().upper()

    def verify(self, control_code: str) -> SimRegistration | None:
        """The registration this unit made with `control_code`, if it made one."""
        for record in self.registrations:
            expected = self._control_code(record.journal_no, record.fields)
            if hmac.compare_digest(expected, control_code) and record.control_code == expected:
                return record
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "unit_id": self.identity.unit_id,
            "protocol": self.identity.protocol_version,
            "firmware": self.identity.firmware_version,
            "main_status": self.main_status().value,
            "storage": self.storage,
            "nak": {"code": self.nak_code, "times": self.nak_times, "scope": self.nak_scope},
            "lose_answers": self.lose_answers,
            "registered": len(self.registrations),
            "repeats": self.repeats,
            "received": dict(self.received),
        }

    def registrations_as_dicts(self) -> list[dict[str, Any]]:
        return [asdict(record) for record in self.registrations]
