"""The reference back-end's SQLite schema."""

from __future__ import annotations

SCHEMA = """
CREATE TABLE IF NOT EXISTS catalog (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    document BLOB NOT NULL,
    updated_at TEXT NOT NULL
);
-- The head of each till's chain: the last entry that took a place, accepted or held.
CREATE TABLE IF NOT EXISTS chains (
    till_id TEXT PRIMARY KEY,
    head_seq INTEGER NOT NULL,
    head_hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
    till_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    uuid TEXT NOT NULL,
    type TEXT NOT NULL,
    created_at TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    body TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (till_id, seq),
    UNIQUE (till_id, uuid)
);
-- Entries rejected in place (module docstring, step 4): they hold their seq.
CREATE TABLE IF NOT EXISTS held_entries (
    till_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    uuid TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    code TEXT NOT NULL,
    reason TEXT NOT NULL,
    entry TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (till_id, seq),
    UNIQUE (till_id, uuid)
);
CREATE TABLE IF NOT EXISTS tickets (
    code TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('pending', 'valid', 'used', 'invalid')),
    detail TEXT,
    sold_by TEXT,
    used_at TEXT,
    used_till TEXT,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS scans (
    till_id TEXT NOT NULL,
    uuid TEXT NOT NULL,
    code TEXT NOT NULL,
    scanned_at TEXT NOT NULL,
    status TEXT NOT NULL,
    detail TEXT,
    received_at TEXT NOT NULL,
    PRIMARY KEY (till_id, uuid)
);
CREATE TABLE IF NOT EXISTS swish (
    id TEXT PRIMARY KEY,
    till_id TEXT NOT NULL,
    uuid TEXT NOT NULL,
    amount INTEGER NOT NULL,
    message TEXT NOT NULL,
    token TEXT NOT NULL,
    status TEXT NOT NULL,
    created_epoch REAL NOT NULL,
    UNIQUE (till_id, uuid)
);
CREATE TABLE IF NOT EXISTS event_capacity (
    event_id TEXT PRIMARY KEY,
    capacity INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS reservations (
    reservation_id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    till_id TEXT NOT NULL,
    uuid TEXT NOT NULL,
    quantity INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('held', 'sold', 'released')),
    expires_at TEXT NOT NULL,
    expires_epoch REAL NOT NULL,
    UNIQUE (till_id, uuid)
);
CREATE INDEX IF NOT EXISTS reservations_event ON reservations (event_id, state);
-- What the tables do not show: duplicates answered, rejections not kept, repeated scans.
CREATE TABLE IF NOT EXISTS counters (
    till_id TEXT NOT NULL,
    name TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (till_id, name)
);
"""
