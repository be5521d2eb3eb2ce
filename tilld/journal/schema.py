"""The journal database's tables, indexes and triggers, and the column lists read from them."""

# Numbered series and the entry types that draw from them. Sales and refunds
# share the receipt series (a refund is a receipt too); Z reports count apart.
NUMBER_SERIES: dict[str, tuple[str, ...]] = {
    "receipt_no": ("sale", "refund"),
    "z_no": ("z-report",),
}

# Schema 2 stores entries compactly (rows.py) and keeps their looked-up fields
# in columns of their own; schema 1 (tilld up to 2026-11) kept canonical JSON
# text and hex hashes and indexed the fields inside the JSON. migrate.py moves
# a schema-1 journal to schema 2 in one transaction, its rows as they are.
SCHEMA_VERSION = 2

# uuid has no index: it is a fresh uuid4 per entry and nothing looks it up
# (the back-end recognises repeats by it). Column types say what a new row
# holds; an old row keeps its TEXT values (rows.py reads both).
ENTRIES_TABLE = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY,
    uuid BLOB NOT NULL,
    type TEXT NOT NULL,
    created_at TEXT NOT NULL,
    body BLOB NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL,
    receipt_no INTEGER,
    sale_id BLOB,
    code TEXT,
    z_no INTEGER,
    original_receipt_no INTEGER
);
"""
ENTRIES_INDEXES = """
CREATE TRIGGER IF NOT EXISTS entries_no_update BEFORE UPDATE ON entries
BEGIN SELECT RAISE(ABORT, 'journal entries are append-only'); END;
CREATE TRIGGER IF NOT EXISTS entries_no_delete BEFORE DELETE ON entries
BEGIN SELECT RAISE(ABORT, 'journal entries are append-only'); END;
CREATE INDEX IF NOT EXISTS entries_receipt_no ON entries (receipt_no)
    WHERE receipt_no IS NOT NULL;
CREATE INDEX IF NOT EXISTS entries_z_no ON entries (z_no) WHERE z_no IS NOT NULL;
CREATE INDEX IF NOT EXISTS entries_refund_of ON entries (original_receipt_no)
    WHERE original_receipt_no IS NOT NULL;
CREATE INDEX IF NOT EXISTS entries_sale_id ON entries (sale_id) WHERE sale_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS entries_type ON entries (type, seq);
CREATE INDEX IF NOT EXISTS entries_scan_code ON entries (code) WHERE code IS NOT NULL;
"""

META_TABLE = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);\n"

SCHEMA = (
    META_TABLE
    + ENTRIES_TABLE
    + ENTRIES_INDEXES
    + """
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
)

# The entries table's columns in the order Entry.from_row takes them, and
# those rows.stored_row fills (the lookup columns follow).
COLUMNS = "seq, uuid, type, created_at, body, prev_hash, hash"
STORED_COLUMNS = COLUMNS + ", receipt_no, sale_id, code, z_no, original_receipt_no"
TICKET_COLUMNS = ("code", "receipt_no", "plu", "name", "state", "created_at")
