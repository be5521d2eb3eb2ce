"""The journal database's tables, indexes and triggers, and the column lists read from them."""

SCHEMA_VERSION = 1

# Numbered series and the entry types that draw from them. Sales and refunds
# share the receipt series (a refund is a receipt too); Z reports count apart.
NUMBER_SERIES: dict[str, tuple[str, ...]] = {
    "receipt_no": ("sale", "refund"),
    "z_no": ("z-report",),
}

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    created_at TEXT NOT NULL,
    body TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS entries_no_update BEFORE UPDATE ON entries
BEGIN SELECT RAISE(ABORT, 'journal entries are append-only'); END;
CREATE TRIGGER IF NOT EXISTS entries_no_delete BEFORE DELETE ON entries
BEGIN SELECT RAISE(ABORT, 'journal entries are append-only'); END;
CREATE INDEX IF NOT EXISTS entries_receipt_no ON entries (json_extract(body, '$.receipt_no'))
    WHERE type IN ('sale', 'refund');
CREATE INDEX IF NOT EXISTS entries_z_no ON entries (json_extract(body, '$.z_no'))
    WHERE type IN ('z-report');
CREATE INDEX IF NOT EXISTS entries_refund_of
    ON entries (json_extract(body, '$.original_receipt_no')) WHERE type = 'refund';
CREATE INDEX IF NOT EXISTS entries_sale_id ON entries (json_extract(body, '$.sale_id'))
    WHERE type IN ('sale', 'void');
CREATE INDEX IF NOT EXISTS entries_type ON entries (type, seq);
CREATE TABLE IF NOT EXISTS sync_results (
    seq INTEGER PRIMARY KEY REFERENCES entries (seq),
    status TEXT NOT NULL,
    reason TEXT,
    at TEXT NOT NULL
);
-- Rejected entries are few; counting them at start must not walk every result.
CREATE INDEX IF NOT EXISTS sync_results_rejected ON sync_results (status)
    WHERE status = 'rejected';
CREATE TABLE IF NOT EXISTS scan_results (
    seq INTEGER PRIMARY KEY REFERENCES entries (seq),
    status TEXT NOT NULL,
    detail TEXT,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_scan_code ON entries (json_extract(body, '$.code'))
    WHERE type = 'scan';
CREATE TABLE IF NOT EXISTS tickets (
    code TEXT PRIMARY KEY,
    seq INTEGER NOT NULL REFERENCES entries (seq),
    receipt_no INTEGER NOT NULL,
    plu TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tickets_state ON tickets (state);
CREATE INDEX IF NOT EXISTS tickets_seq ON tickets (seq);
CREATE TABLE IF NOT EXISTS open_sales (
    sale_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS print_jobs (
    job_id TEXT PRIMARY KEY,
    receipt_no INTEGER NOT NULL,
    copy INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS print_jobs_receipt ON print_jobs (receipt_no);
CREATE TABLE IF NOT EXISTS card_intents (
    payment_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL REFERENCES entries (seq),
    open INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS card_intents_open ON card_intents (open) WHERE open = 1;
CREATE TABLE IF NOT EXISTS card_counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
-- One row per receipt (and per copy) to register with the control unit
-- (tilld/journal/control.py); sequence is the number its request is sent
-- with, never reused.
CREATE TABLE IF NOT EXISTS control_codes (
    sequence INTEGER PRIMARY KEY,
    receipt_no INTEGER NOT NULL,
    kind TEXT NOT NULL,
    request TEXT NOT NULL,
    state TEXT NOT NULL,
    control_code TEXT,
    unit_id TEXT,
    updated_at TEXT NOT NULL,
    UNIQUE (receipt_no, kind)
);
CREATE INDEX IF NOT EXISTS control_codes_state ON control_codes (state)
    WHERE state != 'registered';
CREATE TABLE IF NOT EXISTS catalog_cache (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    document TEXT NOT NULL,
    etag TEXT,
    source TEXT NOT NULL,
    stored_at TEXT NOT NULL
);
"""

# The entries table's columns in the order Entry.from_row takes them.
COLUMNS = "seq, uuid, type, created_at, body, prev_hash, hash"
TICKET_COLUMNS = ("code", "receipt_no", "plu", "name", "state", "created_at")
