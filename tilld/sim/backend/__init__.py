"""The reference back-end: BACKEND-PROTOCOL.md v1 as a real HTTP server over its own SQLite file.

It is the demo's server, the tests' server and the protocol's living example
for vendors, so every rule it applies is written down here and cited in the
code as "spec: <section>".

    python -m tilld.sim.backend --listen 127.0.0.1:8080 --db backend.sqlite \\
        --token-file backend.token --seed demo

The package: ``protocol`` (pure: request bodies, judging entries and scans),
``schema`` and ``store`` (the SQLite file), ``routes`` (the aiohttp adapter)
and ``command`` (the command line and start-up).

``--answer-delay MIN MAX`` makes it a slow back-end: every ``/v1/`` request
waits a random MIN to MAX seconds before it is answered (the control
endpoints answer at once); ``GET /control/slow`` counts the answers delayed,
by path, with the quickest and slowest delay.

It prints ``listening=http://HOST:PORT`` on stdout once it accepts connections
(``--listen 127.0.0.1:0`` picks a free port) and stops on SIGTERM or SIGINT.

Authentication (spec: Common)
    Every request but ``GET /v1/health`` needs ``Authorization: Bearer <token>``
    with the token from ``--token-file``, the control endpoints included;
    anything else is 401. WITHOUT ``--token-file`` EVERY REQUEST IS ACCEPTED
    (a warning is logged at start): for quick experiments only.

Errors
    A malformed request is 400, a missing token 401, an unknown path or id 404,
    a body over 16 MiB 413, always as ``{"error": "<code>", "message": "..."}``.
    Bad input never causes a 500. More than 1000 journal entries or scans in
    one request is 400 too (the till then splits its batch in halves).

Catalog (spec: GET /v1/tills/{till_id}/catalog)
    Served byte for byte as given; the ETag is a hash of those bytes, so only a
    real change makes a new one. ``--seed demo`` or ``--catalog FILE`` replaces
    the stored catalog at every start; without either the stored one is served
    (404 ``no-catalog`` if there is none).

Journal: how an entry is judged (spec: POST /v1/tills/{till_id}/journal)
    Entries are judged one at a time, in the order given, against the till's
    chain head: the seq and hash of the last entry that took a place in the
    chain (seq 0 and 64 zeros for a new till). A batch is judged exactly as if
    its entries came one per request, and stored in one transaction.

    1. Its uuid is already stored for this till: ``duplicate`` (success).
    2. Its seq already holds another entry: ``rejected`` (code ``seq-taken``).
    3. Its seq is not head + 1 (``seq-gap``), or its prev_hash is not the
       head's hash (``prev-hash-mismatch``): ``rejected``. The entry does not
       fit the chain, so nothing of it is kept; resent, it is judged afresh.
    4. It fits (right seq, right prev_hash, a 64-hex hash) but its content is
       wrong: the hash does not recompute (``bad-hash``) or a field is missing
       or of the wrong type (``malformed``). It is ``rejected in place``: kept
       aside, never in the journal, while the chain head moves on to its seq
       and to the hash the till claims for it. The till keeps a rejected entry,
       reports it and goes on with the next one, whose prev_hash is that
       claimed hash; following it lets every later correct entry be accepted.
    5. Otherwise it is ``accepted``: stored, and the head moves to it.

    A rejected result has the spec's ``reason`` for people and an optional
    ``code`` (the names in brackets above) for programs.

    An entry that fails step 3 therefore also fails every entry of the batch
    that depends on it (each is a seq gap), while one that fails step 4 blocks
    nothing. Exactly-once holds because every (till, uuid) and every
    (till, seq) is decided once: an accepted entry is stored once and answered
    ``duplicate`` ever after; a place held by a rejected entry can be filled by
    no other uuid, and its own uuid gets the same rejection again unless the
    entry now hashes to the claimed hash (it was repaired at the till, e.g.
    restored from a backup), in which case it is accepted into its place.

    Every entry field is covered by the hash (tilld.chain.entry_hash), so an
    entry carrying a top-level field beyond uuid, seq, type, created_at,
    prev_hash, hash and body is ``malformed``: the extra field would be
    unprotected. Unknown entry types are stored like any other.

Journal head (optional extension tilld uses: GET /v1/tills/{till_id}/journal/head)
    ``{"seq", "hash", "receipt_no", "z_no"}``: the till's last accepted entry
    (seq 0 and 64 zeros before the first) and the highest receipt and Z
    numbers accepted. The till checks its journal against it: an entry held
    here must still be in the till's journal with the same hash.

Tickets and scans (spec: POST /v1/tills/{till_id}/scans)
    A ticket is ``valid`` once the sale naming it in a line's ``ticket_codes``
    is accepted, ``used`` once a scan registers it, ``invalid`` once an
    accepted refund names it (also before its sale arrives, e.g. a refund at
    another till), and ``pending`` while the only sale naming it was rejected
    in place: known, not valid; it becomes valid if that sale is repaired.
    Scans are answered in the order given: ``registered`` (detail: the
    scanned_at), ``already-used`` (detail: when and where first used),
    ``invalid`` (pending or refunded; detail says which) or ``unknown``. Order
    of arrival decides, not scanned_at: a passage replayed after an outage
    finds a ticket used meanwhile ``already-used``. A repeated (till, uuid)
    returns its first answer. A ticket code sold twice keeps its first sale.

Inspection (spec: Inspection)
    ``GET /v1/tills/{till_id}/journal?after_seq=N`` lists the accepted entries
    with exactly the fields the till sent; held entries are not in the
    journal. ``GET /v1/tickets/{code}`` adds ``invalid`` to the spec's states,
    ``used_at`` and ``used_till`` for a used ticket and ``detail`` for a pending
    or invalid one; an unknown code is 404 ``unknown-ticket``.

Integrated Swish (spec: POST /v1/tills/{till_id}/swish)
    A request is idempotent by (till, uuid) and starts ``CREATED``. Its outcome
    comes from ``POST /control/swish/{id}``, or, with ``--swish-auto STATUS``,
    becomes STATUS once ``--swish-delay`` seconds have passed (decided when the
    request is next read, so it survives restarts and needs no timers).
    Optional extension (tilld uses it): ``POST .../swish/{id}/cancel`` turns a
    ``CREATED`` request ``CANCELLED``; a request already final keeps its status
    (a customer who paid stays ``PAID``).

Event reservations (spec: POST /v1/events/{event_id}/reservations)
    Capacity per event: set by ``POST /control/events/{event_id}``, else
    ``--event-capacity`` (100) for every event_id named by an event-ticket
    article of the current catalog; any other event is 404 ``unknown-event``.
    A reservation holds its seats until ``expires_at`` (``--reservation-hold``,
    15 min), for good once an accepted sale names it in a line's
    ``reservation_ids``, and no longer once an accepted void names it.
    Idempotent by (till_id, uuid); a sold-out answer is not remembered.

Control endpoints (reference back-end only; same token)
    POST /control/catalog            body: a catalog document -> {"etag"}; validated with
                                     the till's own model (400 naming each problem) unless
                                     ``?validate=no``, which serves it as given, so a test
                                     can show a till refusing what a vendor back-end might send
    POST /control/swish/{id}         {"status": "PAID"|...} -> {"id", "status"}
    POST /control/events/{event_id}  {"capacity": N} -> {"event_id", "capacity", "taken"}
    GET  /control/stats              counts per till (entries, rejections,
                                     duplicates, scans, repeated scans) and totals
    GET  /control/slow               with --answer-delay: answers delayed, by path,
                                     and the quickest and slowest delay
"""

from .command import add_backend_arguments, add_backend_command, main, run_backend, serve
from .protocol import Catalog, Problem, content_problem, gate_answer, load_catalog, place_problem
from .routes import DatabaseThread, ReferenceBackend
from .store import BackendStore, StoreSettings

__all__ = [
    "BackendStore",
    "Catalog",
    "DatabaseThread",
    "Problem",
    "ReferenceBackend",
    "StoreSettings",
    "add_backend_arguments",
    "add_backend_command",
    "content_problem",
    "gate_answer",
    "load_catalog",
    "main",
    "place_problem",
    "run_backend",
    "serve",
]
