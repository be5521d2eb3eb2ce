"""What a simulated card terminal does with the next transactions: its `Script`.

Tests and the demo change it at run time through the control channel
(terminal.py); the ZVT terminal (zvt_terminal.py) and the nexo one
(nexo_terminal.py) read it for each request alike. The
test cards it presents and what it records as booked live here too, so a
test can name them without the terminal's protocol.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field, fields

from ..zvt import codes

# Well-known public test card numbers, one per brand.
TEST_PANS = {
    "visa": "4111111111111111",
    "mastercard": "5555555555554444",
    "maestro": "6759649826438453",
    "visa-electron": "4917300800000000",
    "vpay": "4370000000000006",
    "amex": "378282246310005",
}
ONLINE_ONLY = frozenset({"visa-electron", "maestro", "vpay"})
DECISIONS = ("approve", "decline", "customer-abort", "hold")
DROPS = (None, "before-approval", "after-approval")


class ScriptError(ValueError):
    """A control request the simulator cannot follow."""


@dataclass
class Script:
    brand: str = "visa"
    pan: str = ""  # empty: the brand's test PAN
    online: bool = True
    decision: str = "approve"
    delay_s: float = 0.0  # before answering an authorisation ("slow answers")
    drop: str | None = None  # one-shot: drop the link before/after booking the next approval
    corrupt_crc: int = 0  # serial: send this many next frames with a bad CRC
    offline_limit: int = 250
    approve_online_only_offline: bool = False  # misbehave: approve Maestro & co offline

    def update(self, changes: dict[str, object]) -> None:
        known = {f.name: f for f in fields(self)}
        for key, value in changes.items():
            if key not in known:
                raise ScriptError(f"unknown setting {key!r}; settings are {', '.join(known)}")
            setattr(self, key, value)
        if self.brand not in codes.BRAND_IDS and self.brand != "amex":
            raise ScriptError(f"unknown brand {self.brand!r}; brands are {', '.join(TEST_PANS)}")
        if self.decision not in DECISIONS:
            raise ScriptError(f"decision must be one of {', '.join(DECISIONS)}")
        if self.drop not in DROPS:
            raise ScriptError("drop must be null, before-approval or after-approval")
        if self.pan and not (self.pan.isdigit() and 12 <= len(self.pan) <= 19):
            raise ScriptError("pan must be 12 to 19 digits")

    @property
    def card_pan(self) -> str:
        return self.pan or TEST_PANS.get(self.brand, TEST_PANS["visa"])


@dataclass
class Booked:
    kind: str  # authorisation | refund | reversal
    amount: int
    receipt_no: int
    trace: int
    brand: str
    masked_pan: str
    offline: bool
    reversed: bool = False
    reverses: int | None = None  # for a reversal: the receipt number it voids


@dataclass
class TerminalBook:
    """What a simulated terminal keeps whatever protocol it speaks: its script, what
    it booked, its offline store and day's batch, the commands it was sent."""

    script: Script = field(default_factory=Script)
    booked: list[Booked] = field(default_factory=list)
    offline_store: list[Booked] = field(default_factory=list)
    batch: list[Booked] = field(default_factory=list)  # since the last end of day
    commands: Counter[str] = field(default_factory=Counter)

    def state(self) -> dict[str, object]:
        return {
            "script": asdict(self.script),
            "booked": [asdict(b) for b in self.booked],
            "approved": sum(1 for b in self.booked if b.kind == "authorisation"),
            "refunded": sum(1 for b in self.booked if b.kind == "refund"),
            "offline_stored": len(self.offline_store),
            "commands": dict(self.commands),
        }

    def reset(self) -> None:
        self.script = Script()
        self.booked.clear()
        self.offline_store.clear()
        self.batch.clear()
        self.commands.clear()


def follow_control(terminal: TerminalBook, request: object) -> str:
    """Carry out one control request (``{"op": "set" | "state" | "reset", ...}``); its op."""
    if not isinstance(request, dict):
        raise ScriptError("a control request is a JSON object")
    op = request.pop("op", None)
    if op == "set":
        terminal.script.update(request)
    elif op == "reset":
        terminal.reset()
    elif op != "state":
        raise ScriptError(f"unknown op {op!r}; ops are set, state, reset")
    return op
