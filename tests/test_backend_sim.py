"""The reference back-end as a real subprocess, spoken to over real HTTP (BACKEND-PROTOCOL.md).

Nothing of tilld is imported: entries are hashed here with hashlib and json,
exactly as the spec words it, so a back-end that hashed any other way fails.
"""

from __future__ import annotations

import copy
import hashlib
import http.client
import json
import select
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
DEMO_CATALOG = REPO / "tilld" / "demo" / "catalog.json"
TOKEN = "sim-token"
GENESIS = "0" * 64
T0 = "2026-11-26T18:01:02.123+01:00"


# -- the back-end process and a plain HTTP client ----------------------------------------


class BackendProcess:
    """``python -m tilld.sim.backend`` on a free port; ``listening=`` tells where."""

    def __init__(self, base: Path, *extra: str, token: str | None = TOKEN) -> None:
        self.base = base
        self.db = base / "backend.sqlite"
        self.token = token
        self.argv = [sys.executable, "-m", "tilld.sim.backend", "--listen", "127.0.0.1:0"]
        self.argv += ["--db", str(self.db), *extra]
        if token is not None:
            token_file = base / "token"
            token_file.write_text(token + "\n")
            self.argv += ["--token-file", str(token_file)]
        self.log_path = base / "backend.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> BackendProcess:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv, cwd=REPO, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL
            )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 20)
        line = self.proc.stdout.readline().decode() if ready else ""
        assert line.startswith("listening=http://"), f"no listening line: {line!r} {self.log()}"
        self.host, _, port = line.strip().removeprefix("listening=http://").rpartition(":")
        self.port = int(port)
        return self

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        token: str | bool | None = True,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        """(status, headers, JSON body or None); token=True sends this back-end's token."""
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        bearer = self.token if token is True else token
        if bearer:
            all_headers["Authorization"] = f"Bearer {bearer}"
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            connection.request(method, path, body=data, headers=all_headers)
            response = connection.getresponse()
            payload = response.read()
            reply_headers = {k.lower(): v for k, v in response.getheaders()}
        finally:
            connection.close()
        parsed = json.loads(payload) if payload else None
        return response.status, reply_headers, parsed

    def ok(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        got, _, reply = self.request(method, path, body)
        assert got == status, (got, reply)
        return reply

    # The protocol, spelled out.
    def post_entries(self, till: str, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self.ok("POST", f"/v1/tills/{till}/journal", {"entries": entries})["results"]

    def stored(self, till: str, after_seq: int = 0) -> list[dict[str, Any]]:
        return self.ok("GET", f"/v1/tills/{till}/journal?after_seq={after_seq}")["entries"]

    def scan(self, till: str, *scans: dict[str, Any]) -> list[dict[str, Any]]:
        return self.ok("POST", f"/v1/tills/{till}/scans", {"scans": list(scans)})["results"]

    def ticket_state(self, code: str) -> str:
        return self.ok("GET", f"/v1/tickets/{code}")["state"]

    def stats(self, till: str) -> dict[str, int]:
        return self.ok("GET", "/control/stats")["tills"][till]


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendProcess]:
    """One back-end for the module; each test uses its own till ids and ticket codes."""
    process = BackendProcess(tmp_path_factory.mktemp("backend"), "--seed", "demo").start()
    yield process
    assert process.stop() == 0


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[BackendProcess]:
    """A back-end of this test's own, for changes that are global (the catalog)."""
    process = BackendProcess(tmp_path, "--seed", "demo").start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def lenient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendProcess]:
    """No token file, Swish paid at once, reservations that hold no time at all."""
    process = BackendProcess(
        tmp_path_factory.mktemp("lenient"),
        "--seed",
        "demo",
        "--swish-auto",
        "PAID",
        "--swish-delay",
        "0",
        "--reservation-hold",
        "0",
        token=None,
    ).start()
    yield process
    process.stop()


@pytest.fixture
def till() -> str:
    return f"till-{uuid.uuid4().hex[:8]}"


# -- entries, hashed exactly as the spec says --------------------------------------------


def spec_hash(entry: dict[str, Any], *, ensure_ascii: bool = False) -> str:
    """hex SHA-256 of prev_hash + "\\n" + canonical (the entry without hash, sorted keys...)."""
    unhashed = {k: v for k, v in entry.items() if k != "hash"}
    canonical = json.dumps(
        unhashed, sort_keys=True, separators=(",", ":"), ensure_ascii=ensure_ascii
    )
    return hashlib.sha256((entry["prev_hash"] + "\n" + canonical).encode("utf-8")).hexdigest()


class TillChain:
    """Makes a till's entries: seq from 1, each linked to the previous entry's hash."""

    def __init__(self) -> None:
        self.seq = 0
        self.head = GENESIS

    def next(self, type_: str = "sale", body: dict[str, Any] | None = None) -> dict[str, Any]:
        self.seq += 1
        entry = {
            "uuid": str(uuid.uuid4()),
            "seq": self.seq,
            "type": type_,
            "created_at": T0,
            "prev_hash": self.head,
            "body": body if body is not None else sale_body(),
        }
        entry["hash"] = spec_hash(entry)
        self.head = entry["hash"]
        return entry

    def many(self, count: int) -> list[dict[str, Any]]:
        return [self.next() for _ in range(count)]


def sale_body(codes: list[str] | None = None, reservations: list[str] | None = None) -> dict:
    codes = codes or []
    line: dict[str, Any] = {
        "line_id": 1,
        "plu": "100",
        "name": "Entré vuxen",
        "kind": "ticket",
        "quantity": max(len(codes), 1),
        "unit_price": 15000,
        "vat_rate": 6,
        "amount": 15000 * max(len(codes), 1),
        "ticket_codes": codes,
    }
    if reservations:
        line.update(event_id="ev-7", reservation_ids=reservations)
    return {
        "sale_id": str(uuid.uuid4()),
        "receipt_no": 1,
        "opened_at": T0,
        "lines": [line],
        "payments": [{"payment_id": "p1", "method": "cash", "amount": line["amount"]}],
        "total": line["amount"],
        "vat": [{"rate": 6, "gross": line["amount"], "net": 0, "vat": 0}],
        "mode": "online",
    }


def refund_body(codes: list[str]) -> dict[str, Any]:
    return {
        "original_receipt_no": 1,
        "original_sale_id": "s1",
        "receipt_no": 2,
        "reason": "customer",
        "lines": [{"line_id": 1, "plu": "100", "quantity": len(codes), "ticket_codes": codes}],
        "payments": [{"method": "cash", "amount": 15000}],
        "total": 15000,
        "vat": [],
        "mode": "online",
    }


def rehash(entry: dict[str, Any]) -> dict[str, Any]:
    entry["hash"] = spec_hash(entry)
    return entry


def statuses(results: list[dict[str, Any]]) -> list[str]:
    return [r["status"] for r in results]


def new_code() -> str:
    return "TK" + uuid.uuid4().hex[:16].upper()


def scan_of(code: str, scanned_at: str = T0) -> dict[str, Any]:
    return {"uuid": str(uuid.uuid4()), "code": code, "scanned_at": scanned_at}


def sell(backend: BackendProcess, till: str, *codes: str) -> TillChain:
    chain = TillChain()
    assert statuses(backend.post_entries(till, [chain.next(body=sale_body(list(codes)))])) == [
        "accepted"
    ]
    return chain


# -- common: health, auth, errors --------------------------------------------------------


def test_health_answers_without_a_token(backend):
    status, _, reply = backend.request("GET", "/v1/health", token=None)
    assert (status, reply) == (200, {"status": "ok"})


@pytest.mark.parametrize("token", [None, "wrong-token"])
@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/v1/tills/t1/catalog"),
        ("POST", "/v1/tills/t1/journal"),
        ("GET", "/v1/tickets/TK12345678"),
        ("GET", "/control/stats"),
    ],
)
def test_missing_or_wrong_token_is_401_with_a_json_error(backend, token, method, path):
    status, headers, reply = backend.request(method, path, {"entries": []}, token=token)
    assert status == 401
    assert reply["error"] == "unauthorized" and reply["message"]
    assert headers["www-authenticate"] == "Bearer"


def test_without_a_token_file_every_request_is_accepted(lenient):
    status, _, reply = lenient.request("GET", "/control/stats", token=None)
    assert status == 200 and "tills" in reply


def test_unknown_path_is_a_json_404(backend):
    status, _, reply = backend.request("GET", "/v1/nowhere")
    assert status == 404 and reply["error"] == "not-found"


def test_body_over_16_mib_is_refused_with_413(backend, till):
    big = b'{"entries": [], "pad": "' + b"x" * (16 * 1024 * 1024) + b'"}'
    status, _, reply = backend.request("POST", f"/v1/tills/{till}/journal", raw=big)
    assert status == 413 and reply["error"] == "too-large"


# -- catalog ----------------------------------------------------------------------------


def test_catalog_is_served_with_an_etag_and_304_while_unchanged(backend, till):
    status, headers, catalog = backend.request("GET", f"/v1/tills/{till}/catalog")
    assert status == 200 and catalog == json.loads(DEMO_CATALOG.read_text())
    etag = headers["etag"]
    assert etag.startswith('"') and etag.endswith('"')
    status, headers, body = backend.request(
        "GET", f"/v1/tills/{till}/catalog", headers={"If-None-Match": etag}
    )
    assert (status, body, headers["etag"]) == (304, None, etag)
    stale = backend.request("GET", f"/v1/tills/{till}/catalog", headers={"If-None-Match": '"x"'})
    assert stale[0] == 200


def test_control_catalog_replaces_the_document_and_its_etag(fresh, till):
    _, headers, catalog = fresh.request("GET", f"/v1/tills/{till}/catalog")
    changed = copy.deepcopy(catalog)
    changed["version"] = "2026-11-27"
    changed["articles"][0]["price"] = 16000
    reply = fresh.ok("POST", "/control/catalog", changed)
    assert reply["etag"] != headers["etag"]
    status, new_headers, served = fresh.request(
        "GET", f"/v1/tills/{till}/catalog", headers={"If-None-Match": headers["etag"]}
    )
    assert status == 200 and served == changed and new_headers["etag"] == reply["etag"]


def test_control_catalog_refuses_an_invalid_document(fresh):
    status, _, reply = fresh.request("POST", "/control/catalog", {"version": "x"})
    assert status == 400 and "articles" in reply["message"]


# -- journal: accepted and duplicate ------------------------------------------------------


def test_journal_accepts_a_chain_and_returns_it_as_stored(backend, till):
    chain = TillChain()
    entries = [chain.next(), chain.next("z-report", {"note": "Öst, ÅÄÖ ✓"}), chain.next()]
    results = backend.post_entries(till, entries)
    assert results == [{"uuid": e["uuid"], "status": "accepted"} for e in entries]
    assert backend.stored(till) == entries
    assert backend.stored(till, after_seq=2) == entries[2:]


def test_an_entry_type_the_back_end_does_not_know_is_stored(backend, till):
    entry = TillChain().next("coffee-machine-cleaned", {"by": "Anna", "minutes": 7})
    assert statuses(backend.post_entries(till, [entry])) == ["accepted"]
    assert backend.stored(till) == [entry]


def test_a_resent_batch_is_all_duplicate_and_stored_once(backend, till):
    entries = TillChain().many(5)
    backend.post_entries(till, entries)
    again = backend.post_entries(till, entries)
    assert again == [{"uuid": e["uuid"], "status": "duplicate"} for e in entries]
    assert backend.stored(till) == entries
    counts = backend.stats(till)
    assert (counts["entries"], counts["entries.duplicate"], counts["head_seq"]) == (5, 5, 5)


def test_one_result_per_entry_in_order_for_a_mixed_batch(backend, till):
    chain = TillChain()
    first, second = chain.next(), chain.next()
    backend.post_entries(till, [first])
    third = chain.next()
    gap = chain.next()
    gap["seq"] = 9
    rehash(gap)
    results = backend.post_entries(till, [first, second, gap, third])
    assert [r["uuid"] for r in results] == [
        first["uuid"],
        second["uuid"],
        gap["uuid"],
        third["uuid"],
    ]
    assert statuses(results) == ["duplicate", "accepted", "rejected", "accepted"]


def test_state_survives_a_restart_on_the_same_database(tmp_path, till):
    process = BackendProcess(tmp_path, "--seed", "demo").start()
    chain = TillChain()
    entries = chain.many(3)
    code = new_code()
    entries.append(chain.next(body=sale_body([code])))
    process.post_entries(till, entries)
    assert process.stop() == 0
    process.start()
    try:
        assert statuses(process.post_entries(till, entries)) == ["duplicate"] * 4
        assert statuses(process.post_entries(till, [chain.next()])) == ["accepted"]
        assert process.ticket_state(code) == "valid"
    finally:
        process.stop()


# -- journal: the chain is verified on arrival -----------------------------------------------


def test_an_entry_whose_hash_does_not_recompute_is_rejected(backend, till):
    entry = TillChain().next()
    entry["body"]["total"] = 1  # tampered after hashing
    [result] = backend.post_entries(till, [entry])
    assert result["status"] == "rejected" and result["code"] == "bad-hash"
    assert "hash" in result["reason"]
    assert backend.stored(till) == []


def test_the_hash_keeps_non_ascii_characters_as_they_are(backend, till):
    entry = TillChain().next("note", {"text": "Ostsmörgås"})
    entry["hash"] = spec_hash(entry, ensure_ascii=True)  # \u00f6 instead of ö: not the spec
    [result] = backend.post_entries(till, [entry])
    assert (result["status"], result["code"]) == ("rejected", "bad-hash")


def test_a_rejected_entry_does_not_block_the_entries_after_it(backend, till):
    chain = TillChain()
    one, two, three, four = chain.many(4)
    two["body"]["total"] = 1  # the till's hash for it stays what it claims; 3 links to that
    results = backend.post_entries(till, [one, two])
    assert statuses(results) == ["accepted", "rejected"]
    assert statuses(backend.post_entries(till, [three, four])) == ["accepted", "accepted"]
    assert [e["seq"] for e in backend.stored(till)] == [1, 3, 4]
    counts = backend.stats(till)
    assert (counts["entries"], counts["held"], counts["head_seq"]) == (3, 1, 4)


def test_a_rejected_entry_sent_again_gets_the_same_rejection(backend, till):
    entry = TillChain().next()
    entry["body"]["total"] = 1
    first = backend.post_entries(till, [entry])
    assert backend.post_entries(till, [entry]) == first


def test_the_place_of_a_rejected_entry_is_filled_only_by_its_repaired_original(backend, till):
    chain = TillChain()
    one, two = chain.many(2)
    original = copy.deepcopy(one)
    one["body"]["total"] = 1
    backend.post_entries(till, [one, two])
    impostor = rehash({**copy.deepcopy(original), "uuid": str(uuid.uuid4())})
    [refused] = backend.post_entries(till, [impostor])
    assert (refused["status"], refused["code"]) == ("rejected", "seq-taken")
    assert statuses(backend.post_entries(till, [original])) == ["accepted"]
    assert backend.stored(till) == [original, two]


def test_a_seq_gap_is_rejected_and_judged_again_when_resent(backend, till):
    chain = TillChain()
    one, two, three = chain.many(3)
    backend.post_entries(till, [one])
    [gap] = backend.post_entries(till, [three])
    assert (gap["status"], gap["code"]) == ("rejected", "seq-gap")
    assert "expected 2" in gap["reason"]
    assert statuses(backend.post_entries(till, [two, three])) == ["accepted", "accepted"]


def test_entries_after_a_misplaced_one_in_the_same_batch_are_rejected_too(backend, till):
    chain = TillChain()
    entries = chain.many(3)
    entries[0]["prev_hash"] = "f" * 64
    rehash(entries[0])  # a correct hash over a wrong link: the chain itself is broken
    results = backend.post_entries(till, entries)
    assert [r["code"] for r in results] == ["prev-hash-mismatch", "seq-gap", "seq-gap"]
    assert backend.stored(till) == []


def test_the_same_seq_with_another_uuid_is_rejected(backend, till):
    chain = TillChain()
    first = chain.next()
    backend.post_entries(till, [first])
    other = rehash({**first, "uuid": str(uuid.uuid4())})
    [result] = backend.post_entries(till, [other])
    assert (result["status"], result["code"]) == ("rejected", "seq-taken")
    assert first["uuid"] in result["reason"]
    assert backend.stored(till) == [first]


@pytest.mark.parametrize(
    "change",
    [
        {"extra": 1},
        {"type": ""},
        {"created_at": "yesterday"},
        {"body": "not an object"},
        {"body": {**sale_body(), "total": "150"}},
        {"body": {**sale_body(), "lines": [{"ticket_codes": "TK1234567890"}]}},
    ],
    ids=["extra-field", "empty-type", "bad-time", "body-not-object", "total-text", "codes-text"],
)
def test_a_malformed_entry_is_rejected_with_a_reason_and_blocks_nothing(backend, till, change):
    chain = TillChain()
    bad = rehash({**chain.next(), **change})
    chain.head = bad["hash"]
    after = chain.next()
    results = backend.post_entries(till, [bad, after])
    assert statuses(results) == ["rejected", "accepted"]
    assert results[0]["code"] == "malformed" and results[0]["reason"]


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"[]",
        b"{}",
        b'{"entries": {}}',
        b'{"entries": [1]}',
        b'{"entries": [{"uuid": "a", "seq": NaN}]}',
        b'{"entries": [{"seq": 1e999}]}',
        b"\xff\xfe",
        b"[" * 100000,
    ],
    ids=[
        "not-json",
        "array",
        "no-entries",
        "entries-object",
        "entry-number",
        "nan",
        "inf",
        "not-utf8",
        "deep",
    ],
)
def test_a_malformed_journal_request_is_400_as_a_whole(backend, till, raw):
    status, _, reply = backend.request("POST", f"/v1/tills/{till}/journal", raw=raw)
    assert status == 400 and reply["error"] == "bad-request" and reply["message"]
    assert backend.stored(till) == []


def test_a_bad_after_seq_is_400(backend, till):
    status, _, reply = backend.request("GET", f"/v1/tills/{till}/journal?after_seq=-1")
    assert status == 400 and "after_seq" in reply["message"]


# -- tickets and scans -------------------------------------------------------------------


def test_a_ticket_is_valid_once_its_sale_is_accepted(backend, till):
    code = new_code()
    status, _, reply = backend.request("GET", f"/v1/tickets/{code}")
    assert status == 404 and reply["error"] == "unknown-ticket"
    sell(backend, till, code)
    assert backend.ok("GET", f"/v1/tickets/{code}") == {"code": code, "state": "valid"}


def test_a_scan_registers_a_valid_ticket_and_a_second_is_already_used(backend, till):
    code = new_code()
    sell(backend, till, code)
    [first] = backend.scan(till, scan_of(code, T0))
    assert (first["status"], first["detail"]) == ("registered", T0)
    assert backend.ticket_state(code) == "used"
    [second] = backend.scan("gate-2", scan_of(code, "2026-11-26T18:05:00.000+01:00"))
    assert second["status"] == "already-used"
    assert T0 in second["detail"] and till in second["detail"]


def test_a_batch_of_scans_is_answered_in_order_with_original_times(backend, till):
    code = new_code()
    sell(backend, till, code)
    scans = [scan_of(code, T0), scan_of("TKNOSUCHCODE123"), scan_of(code, "2026-11-26T19:00+01:00")]
    results = backend.scan(till, *scans)
    assert [r["uuid"] for r in results] == [s["uuid"] for s in scans]
    assert statuses(results) == ["registered", "unknown", "already-used"]
    assert backend.ticket_state(code) == "used"


def test_a_refunded_ticket_scans_invalid(backend, till):
    code = new_code()
    chain = sell(backend, till, code)
    refund = chain.next("refund", refund_body([code]))
    assert statuses(backend.post_entries(till, [refund])) == ["accepted"]
    assert backend.ticket_state(code) == "invalid"
    [result] = backend.scan(till, scan_of(code))
    assert result["status"] == "invalid" and "refunded" in result["detail"]


def test_an_unknown_code_scans_unknown(backend, till):
    [result] = backend.scan(till, scan_of(new_code()))
    assert result["status"] == "unknown"


def test_a_repeated_scan_uuid_returns_the_first_answer(backend, till):
    code = new_code()
    sell(backend, till, code)
    scan = scan_of(code)
    first = backend.scan(till, scan)
    assert (
        backend.scan(till, scan)
        == first
        == [{"uuid": scan["uuid"], "status": "registered", "detail": T0}]
    )
    counts = backend.stats(till)
    assert (counts["scans"], counts["scans.repeated"]) == (1, 1)


def test_a_ticket_of_a_rejected_sale_is_pending_and_not_let_in(backend, till):
    code = new_code()
    chain = TillChain()
    sale = chain.next(body=sale_body([code]))
    original = copy.deepcopy(sale)
    sale["body"]["total"] = 1
    assert statuses(backend.post_entries(till, [sale])) == ["rejected"]
    assert backend.ticket_state(code) == "pending"
    [result] = backend.scan(till, scan_of(code))
    assert result["status"] == "invalid"
    assert statuses(backend.post_entries(till, [original])) == ["accepted"]
    assert backend.ticket_state(code) == "valid"


@pytest.mark.parametrize(
    "body",
    [
        {"scan": []},
        {"scans": [{"uuid": "u", "code": "TK12345678"}]},
        {"scans": [{"uuid": "u", "code": "TK12345678", "scanned_at": "18:01"}]},
        {"scans": [{"uuid": "", "code": "TK12345678", "scanned_at": T0}]},
        {"scans": [{"uuid": "u", "code": 7, "scanned_at": T0}]},
    ],
    ids=["no-scans", "no-time", "time-without-date", "empty-uuid", "code-number"],
)
def test_a_malformed_scans_request_is_400(backend, till, body):
    status, _, reply = backend.request("POST", f"/v1/tills/{till}/scans", body)
    assert status == 400 and reply["message"]


# -- event reservations --------------------------------------------------------------------


def reserve(backend: BackendProcess, event: str, quantity: int, key: str | None = None) -> Any:
    body = {"uuid": key or str(uuid.uuid4()), "till_id": "t1", "quantity": quantity}
    status, _, reply = backend.request("POST", f"/v1/events/{event}/reservations", body)
    return status, reply


def test_reservations_are_granted_until_the_event_is_sold_out(backend):
    event = f"ev-{uuid.uuid4().hex[:6]}"
    assert backend.ok("POST", f"/control/events/{event}", {"capacity": 5})["capacity"] == 5
    status, first = reserve(backend, event, 3)
    assert status == 201 and first["reservation_id"] and first["expires_at"]
    assert reserve(backend, event, 3) == (409, {"reason": "sold-out"})
    assert reserve(backend, event, 2)[0] == 201
    assert reserve(backend, event, 1) == (409, {"reason": "sold-out"})


def test_a_repeated_reservation_uuid_gets_the_same_reservation(backend):
    event = f"ev-{uuid.uuid4().hex[:6]}"
    backend.ok("POST", f"/control/events/{event}", {"capacity": 2})
    key = str(uuid.uuid4())
    assert reserve(backend, event, 2, key) == reserve(backend, event, 2, key)
    assert reserve(backend, event, 1)[0] == 409


def test_a_catalog_event_has_the_default_capacity_and_others_are_unknown(backend):
    assert backend.ok("GET", "/control/stats")["events"]["ev-7"]["capacity"] == 100
    status, reply = reserve(backend, "ev-nobody-sells", 1)
    assert status == 404 and reply["error"] == "unknown-event"


def test_seats_named_by_a_sale_stay_taken_after_the_hold_expires(lenient, till):
    event = "ev-7"
    lenient.ok("POST", f"/control/events/{event}", {"capacity": 2})
    status, held = reserve(lenient, event, 2)
    assert status == 201
    assert reserve(lenient, event, 2)[0] == 201  # holds last 0 s here: the first has lapsed
    chain = TillChain()
    sale = chain.next(body=sale_body([new_code(), new_code()], [held["reservation_id"]]))
    assert statuses(lenient.post_entries(till, [sale])) == ["accepted"]
    assert reserve(lenient, event, 1) == (409, {"reason": "sold-out"})


# -- integrated Swish ----------------------------------------------------------------------


def create_swish(backend: BackendProcess, till: str, key: str | None = None) -> dict[str, Any]:
    body = {"uuid": key or str(uuid.uuid4()), "amount": 24900, "message": "Kvitto 17"}
    return backend.ok("POST", f"/v1/tills/{till}/swish", body, status=201)


def test_swish_request_is_created_idempotently_and_its_outcome_set_by_control(backend, till):
    key = str(uuid.uuid4())
    created = create_swish(backend, till, key)
    assert created["status"] == "CREATED" and created["token"] and created["id"]
    assert create_swish(backend, till, key) == created
    path = f"/v1/tills/{till}/swish/{created['id']}"
    assert backend.ok("GET", path) == {"id": created["id"], "status": "CREATED"}
    backend.ok("POST", f"/control/swish/{created['id']}", {"status": "PAID"})
    assert backend.ok("GET", path) == {"id": created["id"], "status": "PAID"}


def test_swish_cancel_cancels_a_created_request_but_not_a_paid_one(backend, till):
    waiting, paid = create_swish(backend, till), create_swish(backend, till)
    backend.ok("POST", f"/control/swish/{paid['id']}", {"status": "PAID"})
    cancel = "/v1/tills/{}/swish/{}/cancel"
    assert backend.ok("POST", cancel.format(till, waiting["id"]))["status"] == "CANCELLED"
    assert backend.ok("POST", cancel.format(till, paid["id"]))["status"] == "PAID"


def test_swish_request_of_another_till_or_unknown_is_404(backend, till):
    created = create_swish(backend, till)
    assert backend.request("GET", f"/v1/tills/other/swish/{created['id']}")[0] == 404
    status, _, reply = backend.request("GET", f"/v1/tills/{till}/swish/sw-nothing")
    assert status == 404 and reply["error"] == "unknown-swish"


@pytest.mark.parametrize(
    "path,body",
    [
        ("/v1/tills/t1/swish", {"uuid": "u", "amount": 0}),
        ("/v1/tills/t1/swish", {"uuid": "u", "amount": True}),
        ("/v1/tills/t1/swish", [1, 2]),
        ("/control/swish/sw-x", {"status": "MAYBE"}),
        ("/v1/events/ev-7/reservations", {"uuid": "u", "till_id": "t1", "quantity": "2"}),
        ("/control/events/ev-7", {"capacity": -1}),
    ],
)
def test_bad_input_elsewhere_is_400_never_500(backend, path, body):
    status, _, reply = backend.request("POST", path, body)
    assert status == 400 and reply["error"] == "bad-request"


def test_swish_auto_outcome_applies_after_the_delay(lenient, till):
    created = create_swish(lenient, till)
    reply = lenient.ok("GET", f"/v1/tills/{till}/swish/{created['id']}")
    assert reply["status"] == "PAID"  # --swish-delay 0


# -- throughput -------------------------------------------------------------------------


def test_ten_thousand_entries_in_batches_of_200_are_all_stored(fresh, till):
    # Its speed is make bench's (tests/bench/outage_figures.py: the drain and
    # the one-request-per-entry baseline), never a timed assertion here.
    chain = TillChain()
    batches = [chain.many(200) for _ in range(50)]
    for batch in batches:
        assert statuses(fresh.post_entries(till, batch)) == ["accepted"] * 200
    assert fresh.stats(till)["entries"] == 10_000
