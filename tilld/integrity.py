"""Is the journal still the one this till wrote? Its head kept apart, and the back-end's anchor.

The hash chain proves that entries follow each other; it cannot prove that
none are missing at the end, nor stop whoever owns the till from rewriting
the chain and every hash after an edit. Two witnesses outside the journal
file do (the threat model is in docs/architecture.md):

- the head file beside the journal, written after every commit: a journal
  that lost its last transactions (a deleted WAL after a crash, a restored
  copy) is behind its own head file;
- the back-end's last accepted seq and hash: entries it holds must still be
  in the journal, with the same hash, or the synced history was rewritten.

A journal that went backwards would issue receipt numbers a second time, so
it takes no entries until a technician restores it or acknowledges the loss
(a ``rollback-acknowledged`` entry continues the chain from the lost head).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("tilld.integrity")

# The entry a technician's acknowledgement writes; the chain may jump there.
ROLLBACK_ACKNOWLEDGED = "rollback-acknowledged"


@dataclass(frozen=True)
class Head:
    """The last entry of a journal and the last numbers it issued."""

    seq: int
    hash: str
    receipt_no: int = 0
    z_no: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Verdict:
    state: str  # "ok", "rolled-back", "diverged" or "chain-broken"
    message: str = ""
    lost: Head | None = None  # rolled back: the head this journal no longer has

    @property
    def ok(self) -> bool:
        return self.state == "ok"

    def as_dict(self) -> dict[str, Any]:
        view: dict[str, Any] = {"state": self.state}
        if self.message:
            view["message"] = self.message
        if self.lost is not None:
            view["lost_head"] = self.lost.as_dict()
        return view


OK = Verdict("ok")
# Worse verdicts win: a rolled-back journal must not be reported as merely diverged.
SEVERITY = {"ok": 0, "chain-broken": 1, "diverged": 2, "rolled-back": 3}

RESTORE_OR_ACKNOWLEDGE = (
    "Sales are stopped so that no receipt number is issued twice. Restore the journal "
    "(docs/install.md, recovering a journal), or have a technician acknowledge the loss "
    "with `tillctl journal acknowledge-rollback --yes`: numbering then continues after "
    "the lost entries."
)


def worse(a: Verdict, b: Verdict) -> Verdict:
    return b if SEVERITY[b.state] > SEVERITY[a.state] else a


def judge(local: Head, hash_at: Callable[[int], str | None], witness: Head, who: str) -> Verdict:
    """Compare the journal's head with a witness of it (the head file or the back-end).

    ``hash_at(seq)`` reads the journal's hash at ``seq`` (None: no such entry).
    """
    if witness.seq > local.seq:
        return Verdict(
            "rolled-back",
            f"The journal went backwards: {who} knows entry {witness.seq} "
            f"(receipt {witness.receipt_no}), but the journal ends at entry {local.seq}. "
            f"Its last {witness.seq - local.seq} entries are lost. {RESTORE_OR_ACKNOWLEDGE}",
            lost=witness,
        )
    if witness.seq == 0:
        return OK
    found = hash_at(witness.seq)
    if found is None:
        return OK  # inside a gap a technician acknowledged: nothing left to compare
    if found != witness.hash:
        return Verdict(
            "diverged",
            f"The journal's entry {witness.seq} is not the one {who} holds (hash "
            f"{found[:12]}… instead of {witness.hash[:12]}…): the history was rewritten or "
            "replaced. Syncing is stopped; keep the state folder as it is and call the "
            "venue's technician (docs/operations.md, a journal that does not match).",
        )
    return OK


class HeadFile:
    """The journal's head in a small file of its own, beside the journal.

    Rewritten in place after every commit with one ``pwrite`` and not
    fsynced: after a kill -9 the kernel still holds it, which is the case
    that matters (the WAL deleted or lost with the crash). After a power cut
    it may be older than the journal, which only weakens the check: it can
    never claim entries the journal did not commit, because it is written
    after the commit.
    """

    FORMAT = re.compile(r"tilld-head (\d+) ([0-9a-f]{64}) (\d+) (\d+) ([0-9a-f]{16})\n")

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._failing = False

    def read(self) -> Head | None:
        """The recorded head; None when there is none (a new or upgraded till) or it is torn."""
        try:
            text = self.path.read_text(encoding="ascii", errors="replace").rstrip(" ")
        except FileNotFoundError:
            return None
        match = self.FORMAT.fullmatch(text)
        if match is None or _check(text[: match.start(5)]) != match.group(5):
            log.warning(
                "the journal's head file %s is unreadable (torn by a power cut?); the journal "
                "is checked against the back-end only until the next entry rewrites it",
                self.path,
            )
            return None
        seq, hash_, receipt_no, z_no, _ = match.groups()
        return Head(int(seq), hash_, int(receipt_no), int(z_no))

    def write(self, head: Head) -> None:
        line = f"tilld-head {head.seq} {head.hash} {head.receipt_no} {head.z_no} "
        record = (line + _check(line) + "\n").ljust(160).encode("ascii")
        # Never fails the append it follows: that entry is committed, and an
        # error here would make its caller believe it was not.
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
            # Fixed length, so one write replaces the whole record at once.
            os.pwrite(self._fd, record, 0)
        except OSError as exc:
            if not self._failing:
                log.error(
                    "cannot write the journal's head file %s (%s); a lost journal tail is "
                    "then noticed by the back-end only. Check the state folder's disk.",
                    self.path,
                    exc.strerror,
                )
            self._failing = True
        else:
            self._failing = False

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _check(text: str) -> str:
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:16]
