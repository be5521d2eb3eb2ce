"""The loads the benchmarks put on a till: offline sales and scans, a big catalog, a big journal.

Everything goes through real parts: the daemon as a subprocess, the reference
back-end and the fault proxy as subprocesses, JSON-RPC batches over the real
socket. Only the million-entry journal is written straight into SQLite (a
million sales through the socket would take the better part of an hour); it
is seeded by a real daemon, keeps tilld's schema and hash chain, and the
benchmarks that use it have the daemon verify it (`admin.journal_verify`).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from conftest import DEMO_CATALOG, Client, TillProcess
from sims import Backend, Proxy, online_config, wait_for

from tilld.chain import canonical_json, entry_hash
from tilld.ids import time_ordered_uuid
from tilld.journal import SCHEMA
from tilld.journal.rows import body_text, hash_text, row_values
from tilld.journal.schema import STORED_COLUMNS

BATCH = 100
TILL_ID = "till-test"  # TillProcess's default till.id


# -- JSON-RPC batches ----------------------------------------------------------


def rpc_batch(client: Client, calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    """One JSON-RPC batch on one line; the daemon still handles (and journals) each call."""
    requests = [
        {"jsonrpc": "2.0", "id": i, "method": method, "params": params}
        for i, (method, params) in enumerate(calls)
    ]
    client.send_raw(json.dumps(requests).encode() + b"\n")
    replies = sorted(client.read(), key=lambda r: r["id"])
    errors = [r["error"] for r in replies if "error" in r]
    if errors:
        raise RuntimeError(f"{len(errors)} calls of a batch failed, first: {errors[0]}")
    return [r["result"] for r in replies]


def sale_latencies(client: Client, rounds: int) -> tuple[list[float], list[float]]:
    """Durable cash sales (open, three lines, pay): seconds for each whole sale and its pay."""
    whole, pay_only = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        sale_id = client.call("sale.open")["sale_id"]
        for plu in ("300", "301", "400"):
            client.call("sale.add", sale_id=sale_id, plu=plu)
        before_pay = time.perf_counter()
        client.call("sale.pay", sale_id=sale_id, method="cash", amount=10000)
        ended = time.perf_counter()
        whole.append(ended - started)
        pay_only.append(ended - before_pay)
    return whole, pay_only


def in_turn(clients: dict[str, Client], n: int, measure: Callable[[Client], float]) -> dict:
    """``n`` measurements on each daemon, one on each in turn, the first of each
    pair alternating: load from elsewhere on the machine falls on both alike.
    (Thirty on one daemon and then thirty on the other moved a p50 ratio by up
    to 40 % either way on this machine.)"""
    names = list(clients)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for i in range(n):
        for name in names if i % 2 == 0 else reversed(names):
            samples[name].append(measure(clients[name]))
    return samples


def one_sale(client: Client) -> float:
    """Seconds for one durable cash sale (open, three lines, pay)."""
    return sale_latencies(client, 1)[0][0]


def sell_offline(client: Client, n: int, plu: str = "300") -> None:
    """``n`` one-line cash sales, a hundred at a time: n journal entries."""
    for start in range(0, n, BATCH):
        size = min(BATCH, n - start)
        ids = [r["sale_id"] for r in rpc_batch(client, [("sale.open", {})] * size)]
        rpc_batch(client, [("sale.add", {"sale_id": s, "plu": plu}) for s in ids])
        rpc_batch(
            client, [("sale.pay", {"sale_id": s, "method": "cash", "amount": 3500}) for s in ids]
        )


def capture_scans(client: Client, n: int, prefix: str) -> None:
    """``n`` distinct ticket scans through scan.submit, a hundred at a time."""
    for start in range(0, n, BATCH):
        codes = [f"{prefix}{i:08d}" for i in range(start, min(n, start + BATCH))]
        results = rpc_batch(client, [("scan.submit", {"code": c}) for c in codes])
        if any(r["status"] != "captured" for r in results):
            raise RuntimeError(f"a scan was not captured offline: {results[0]}")


# -- a till with the reference back-end behind a fault proxy -------------------


@dataclass
class Site:
    backend: Backend
    server: Proxy
    till: TillProcess
    client: Client
    backend_db: Path | None = None  # a database kept off the till's disk, removed at stop

    def status(self) -> dict[str, Any]:
        return self.client.call("status.get")

    def wait_mode(self, mode: str, timeout: float = 30) -> None:
        wait_for(lambda: self.status()["mode"] == mode, timeout, what=f"mode {mode}")

    def stop(self) -> None:
        self.client.close()
        self.till.stop()
        self.server.stop()
        self.backend.stop()
        if self.backend_db is not None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.backend_db}{suffix}").unlink(missing_ok=True)


def start_site(
    base: Path, extra: dict[str, dict[str, Any]] | None = None, *, elsewhere: bool = False
) -> Site:
    """A till on fast probes (tests' online_config) against the back-end; back online.

    ``elsewhere``: the back-end and the proxy stand for a server and a network
    that are not on the till, as at a venue. They run under SCHED_IDLE (a core
    only when the till and the script leave one), and the back-end's database
    is on tmpfs, so its writes do not queue on the till's disk. For figures of
    the till's own answers while it syncs; a drain's rate needs the back-end's
    full share, and keeps it.
    """
    backend_db = _off_this_disk(base) if elsewhere else None
    backend = Backend(base, backend_db)
    server = Proxy(base, "server", backend.address)
    if elsewhere:
        for process in (backend.proc, server.proc):
            _idle_priority(process.pid)
    config = online_config(backend, server, None)
    for key, values in (extra or {}).items():
        config.setdefault(key, {}).update(values)
    till = TillProcess(base, config).start()
    site = Site(backend, server, till, till.client(), backend_db)
    site.wait_mode("online")
    return site


def _off_this_disk(base: Path) -> Path:
    """Where the back-end's database goes to stay off the till's disk: tmpfs if there is one."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm / f"tilld-bench-backend-{os.getpid()}-{base.name}.sqlite"
    return base / "backend.sqlite"


def _idle_priority(pid: int) -> None:
    """SCHED_IDLE for every thread of ``pid``; threads it starts later inherit it."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setscheduler(int(tid), os.SCHED_IDLE, os.sched_param(0))


def backend_down_config() -> tuple[socket.socket, dict[str, dict[str, Any]]]:
    """A back-end URL on a bound but never-listening port: every connection is refused.

    The socket is returned so the caller holds the port for as long as the till runs.
    """
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    return holder, {"backend": {"url": f"http://127.0.0.1:{port}"}}


# -- a 50,000-article catalog ------------------------------------------------------

WORDS = [
    "Kaffe",
    "Te",
    "Bulle",
    "Kaka",
    "Smörgås",
    "Vykort",
    "Affisch",
    "Bok",
    "Kasse",
    "Mugg",
    "Penna",
    "Magnet",
    "Karta",
    "Guide",
    "Tröja",
    "Keps",
    "Halsduk",
    "Vante",
    "Sockerkaka",
    "Äppelpaj",
    "Öl",
    "Läsk",
    "Vatten",
    "Glass",
    "Choklad",
    "Godis",
]
COLOURS = ["röd", "blå", "grön", "gul", "svart", "vit", "grå", "rosa", "brun", "lila"]


def write_big_catalog(path: Path, articles: int) -> Path:
    """The demo catalog's articles first (so its PLUs and barcodes work), then generated ones."""
    document = json.loads(DEMO_CATALOG.read_text(encoding="utf-8"))
    generated = []
    for n in range(articles - len(document["articles"])):
        word = WORDS[n % len(WORDS)]
        colour = COLOURS[(n // len(WORDS)) % len(COLOURS)]
        generated.append(
            {
                "id": f"g{n}",
                "plu": str(10_000 + n),
                "name": f"{word} {colour} nr {n}",
                "price": 500 + (n * 37) % 50_000,
                "vat_rate": (25, 12, 6)[n % 3],
                "kind": "goods",
                "barcodes": [f"20{n:011d}"],
                "event_id": None,
                "fallback_plu": None,
            }
        )
    document["version"] = f"bench-{articles}"
    document["articles"] += generated
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return path


# -- a 1,000,000-entry journal --------------------------------------------------------

JOURNAL_NAME = "journal.sqlite"
# The expression indexes are dropped for the bulk insert and rebuilt from
# tilld's own SCHEMA afterwards: building an index once is much faster than
# keeping it up to date through a million inserts, and the result is the same.
BULK_DROPPED = (
    "entries_receipt_no",
    "entries_z_no",
    "entries_refund_of",
    "entries_sale_id",
    "entries_type",
    "entries_scan_code",
)


def big_journal(cache: Path, entries: int, catalog: Path) -> Path:
    """A journal database of ``entries`` entries for TILL_ID, built once per cache folder.

    Seeded by a real daemon (three sales and a scan over the socket, with
    ``catalog`` cached in it), then filled to ``entries`` with sales and ticket
    scans in the same proportions a busy museum shop sees (three sales to one
    scan), each with its own uuid, receipt number and a correct hash chain.
    Everything is marked synced, as a till that has run for years would be.
    """
    target = cache / f"journal-{entries}.sqlite"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    seed_dir = cache / "seed"
    shutil.rmtree(seed_dir, ignore_errors=True)
    seed_dir.mkdir()
    till = TillProcess(seed_dir, {"catalog": {"file": str(catalog)}}).start()
    try:
        client = till.client()
        for _ in range(3):
            sale_id = client.call("sale.open")["sale_id"]
            for plu in ("300", "301", "400"):
                client.call("sale.add", sale_id=sale_id, plu=plu)
            client.call("sale.pay", sale_id=sale_id, method="cash", amount=10000)
        client.call("scan.submit", code="TKSEED000001")
        client.close()
    finally:
        till.stop()
    building = cache / "building.sqlite"
    for suffix in ("", "-wal", "-shm"):
        src = seed_dir / "state" / (JOURNAL_NAME + suffix)
        if src.exists():
            shutil.copyfile(src, Path(str(building) + suffix))
    _fill(building, entries)
    building.rename(target)
    shutil.rmtree(seed_dir, ignore_errors=True)
    return target


def _fill(path: Path, entries: int) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous = OFF")
    db.execute("PRAGMA cache_size = -200000")
    rows = [
        (seq, type_, body_text(body), hash_text(hash_))
        for seq, type_, body, hash_ in db.execute(
            "SELECT seq, type, body, hash FROM entries ORDER BY seq"
        )
    ]
    templates = {type_: json.loads(body) for _seq, type_, body, _hash in rows}
    head_seq, head_hash = rows[-1][0], rows[-1][3]
    receipt_no = max(json.loads(b).get("receipt_no", 0) for _s, _t, b, _h in rows)
    for name in BULK_DROPPED:
        db.execute(f"DROP INDEX IF EXISTS {name}")
    # Each body is its type's canonical JSON with the changing values put in
    # (much cheaper than encoding a dict per entry); every 10,007th entry is
    # checked against tilld's own encoding and chain code below.
    sale_json = canonical_json(
        {
            **templates["sale"],
            "opened_at": "@AT@",
            "payments": [{**templates["sale"]["payments"][0], "payment_id": "@PAYMENT@"}],
            "receipt_no": 987654321987,
            "sale_id": "@SALE@",
        }
    ).replace("987654321987", "@NO@")
    scan_json = canonical_json({**templates["scan"], "code": "@CODE@", "scanned_at": "@AT@"})
    clock = datetime.now(UTC) - timedelta(seconds=entries)
    step = timedelta(milliseconds=900)
    seq, prev_hash = head_seq, head_hash
    while seq < entries:
        chunk = []
        size = min(50_000, entries - seq)
        uuids = _uuid4s(size)
        for n in range(size):
            seq += 1
            clock += step
            at = clock.isoformat(timespec="milliseconds")
            uuid = uuids[n]
            if seq % 4 == 0:
                type_ = "scan"
                keys = {"code": f"TKB{seq:010d}"}
                body_json = scan_json.replace("@CODE@", keys["code"]).replace("@AT@", at)
            else:
                type_ = "sale"
                receipt_no += 1
                # As tilld makes them (tilld/ids.py): in time order.
                unix_ms = int(clock.timestamp() * 1000)
                keys = {"receipt_no": receipt_no, "sale_id": time_ordered_uuid(unix_ms)}
                body_json = (
                    sale_json.replace("@AT@", at)
                    .replace("@PAYMENT@", time_ordered_uuid(unix_ms))
                    .replace("@NO@", str(receipt_no))
                    .replace("@SALE@", keys["sale_id"])
                )
            entry_hash_ = _hash(uuid, seq, type_, at, prev_hash, body_json)
            if seq % 10_007 == 0:  # the shortcut must agree with tilld's own chain code
                body = json.loads(body_json)
                assert canonical_json(body) == body_json, seq
                fields = {
                    "uuid": uuid,
                    "seq": seq,
                    "type": type_,
                    "created_at": at,
                    "prev_hash": prev_hash,
                    "body": body,
                }
                assert entry_hash(fields) == entry_hash_, seq
                assert all(body[k] == v for k, v in keys.items()), seq
            chunk.append(row_values(seq, uuid, type_, at, body_json, prev_hash, entry_hash_, keys))
            prev_hash = entry_hash_
        db.execute("BEGIN")
        db.executemany(
            f"INSERT INTO entries ({STORED_COLUMNS}) VALUES ({', '.join('?' * len(chunk[0]))})",
            chunk,
        )
        db.execute("COMMIT")
    synced_at = datetime.now(UTC).isoformat(timespec="milliseconds")
    db.execute("BEGIN")
    db.execute(
        "INSERT OR REPLACE INTO sync_results (seq, status, reason, at)"
        " SELECT seq, 'accepted', NULL, ? FROM entries",
        (synced_at,),
    )
    db.execute(
        "INSERT OR REPLACE INTO scan_results (seq, status, detail, at)"
        " SELECT seq, 'registered', NULL, ? FROM entries WHERE type = 'scan'",
        (synced_at,),
    )
    db.execute("COMMIT")
    db.executescript(SCHEMA)  # rebuilds the dropped indexes exactly as tilld declares them
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def _uuid4s(count: int) -> list[str]:
    """``count`` random version-4 UUIDs as text, as str(uuid.uuid4()) gives them."""
    raw = bytearray(os.urandom(16 * count))
    out = []
    for i in range(0, len(raw), 16):
        raw[i + 6] = (raw[i + 6] & 0x0F) | 0x40
        raw[i + 8] = (raw[i + 8] & 0x3F) | 0x80
        h = raw[i : i + 16].hex()
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out


def _hash(uuid: str, seq: int, type_: str, at: str, prev_hash: str, body_json: str) -> str:
    """tilld.chain.entry_hash with the body serialised once (keys in canonical order)."""
    canonical = (
        f'{{"body":{body_json},"created_at":{json.dumps(at)},"prev_hash":"{prev_hash}",'
        f'"seq":{seq},"type":"{type_}","uuid":"{uuid}"}}'
    )
    return sha256((prev_hash + "\n" + canonical).encode("utf-8")).hexdigest()


def install_journal(template: Path, state_dir: Path) -> None:
    """A private copy of a built journal as a till's state folder."""
    state_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, state_dir / JOURNAL_NAME)


def verify(till: TillProcess) -> dict[str, Any]:
    """The daemon's own whole-journal check (a million entries take a while)."""
    client = Client(till.socket_path, timeout=900)
    try:
        return client.call("admin.journal_verify")
    finally:
        client.close()


# -- the one-request-per-entry client ----------------------------------------------


def post_one_by_one(address: str, path: str, key: str, items: list[Any]) -> float:
    """Items per second, each posted alone as ``{key: [item]}`` on one kept-alive connection.

    The baseline a till without batching would be: one request and one round
    trip per entry or scan, but not a new connection for each.
    """
    import http.client

    from sims import TOKEN

    host, _, port = address.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    started = time.perf_counter()
    try:
        for item in items:
            conn.request("POST", path, json.dumps({key: [item]}), headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"POST {path} answered {response.status}")
    finally:
        conn.close()
    return len(items) / (time.perf_counter() - started)
