"""Moving a journal written by an older tilld to the current schema, at open.

Schema 1 indexed the looked-up fields inside the JSON bodies; schema 2
(schema.py) keeps them in columns of their own. The move copies every row
into a table of the new shape, as it is (an old row's text is not
recompressed, so its bytes, and any evidence in them, stay exactly as
written), fills the lookup columns from the JSON, and swaps the tables, all in
one transaction: a crash or power cut in the middle leaves schema 1 whole, and
the next start moves it again.
"""

from __future__ import annotations

import logging
import sqlite3
import time

from ..errors import StartupError
from ..sdnotify import Notifier
from .rows import LOOKUP_FIELDS, pack_uuid
from .schema import ENTRIES_INDEXES, ENTRIES_TABLE, SCHEMA_VERSION, STORED_COLUMNS

log = logging.getLogger("tilld.journal")


def stored_version(db: sqlite3.Connection) -> int | None:
    """The schema version of the journal on disk, or None for a new one."""
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_schema WHERE type='table'")}
    if "entries" not in tables:
        return None
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 1


def migrate(db: sqlite3.Connection, path: object, systemd: Notifier) -> None:
    """Bring the journal to SCHEMA_VERSION; call with foreign keys off (a table is swapped).

    ``systemd`` is asked for more start-up time while the move runs."""
    version = stored_version(db)
    if version is None or version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise StartupError(
            f"the journal {path} was written by a newer tilld (schema {version}; this one "
            f"knows {SCHEMA_VERSION}). Install that tilld again; do not edit the journal."
        )
    started = time.monotonic()
    db.create_function("tilld_uuid_key", 1, pack_uuid, deterministic=True)
    log.warning("journal %s: moving it from schema %d to %d", path, version, SCHEMA_VERSION)
    db.set_progress_handler(_keep_systemd_waiting(systemd), 1_000_000)
    db.execute("BEGIN IMMEDIATE")
    try:
        count = db.execute("SELECT count(*) FROM entries").fetchone()[0]
        db.execute(ENTRIES_TABLE.replace("entries (", "entries_new (", 1))
        db.execute(
            f"INSERT INTO entries_new ({STORED_COLUMNS}) SELECT "
            f"seq, uuid, type, created_at, body, prev_hash, hash, {_lookups()} "
            "FROM entries ORDER BY seq"
        )
        db.execute("DROP TABLE entries")  # its indexes and triggers go with it
        db.execute("ALTER TABLE entries_new RENAME TO entries")
        for statement in _statements(ENTRIES_INDEXES):
            db.execute(statement)
        db.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?) ON CONFLICT (key)"
            " DO UPDATE SET value = excluded.value",
            (str(SCHEMA_VERSION),),
        )
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    finally:
        db.set_progress_handler(None, 0)
    log.warning(
        "journal %s moved from schema %d to %d (%d entries kept as they were) in %.1f s",
        path,
        version,
        SCHEMA_VERSION,
        count,
        time.monotonic() - started,
    )


def _keep_systemd_waiting(systemd: Notifier):
    """A progress handler: a journal of millions of entries takes longer to move than
    the unit's start timeout, so systemd is asked for more time while it moves."""
    last = time.monotonic()
    systemd.notify("EXTEND_TIMEOUT_USEC=30000000", "STATUS=moving the journal to schema 2")

    def handler() -> int:
        nonlocal last
        now = time.monotonic()
        if now - last >= 5:
            last = now
            systemd.notify("EXTEND_TIMEOUT_USEC=30000000", "STATUS=moving the journal to schema 2")
        return 0  # go on

    return handler


def _lookups() -> str:
    """Each lookup column's value from a schema-1 row's JSON body (NULL if it is not JSON)."""
    columns = []
    for name, types in LOOKUP_FIELDS.items():
        kinds = ", ".join(f"'{t}'" for t in types)
        value = f"json_extract(body, '$.{name}')"
        if name == "sale_id":
            value = f"tilld_uuid_key({value})"
        columns.append(f"CASE WHEN type IN ({kinds}) AND json_valid(body) THEN {value} END")
    return ", ".join(columns)


def _statements(script: str) -> list[str]:
    """The statements of a script, each whole (a trigger's body holds semicolons)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return statements
