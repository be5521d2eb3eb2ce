"""The durable journal: an append-only, hash-chained record of everything the till did.

Where things live:
- ``entry.py``: the values (Entry, TicketRecord, the SideEffect and Fill
  types, now_with_offset). No database and no threads: pure modules such as
  reports.py import entries from here.
- ``schema.py``: the tables, indexes and triggers, and the column lists.
- ``rows.py``: how an entry is stored in its row (compact) and read back
  (compact or as an older tilld wrote it). No database.
- ``migrate.py``: an older journal moved to the current schema at open.
- ``store.py``: ``JournalStore``, the core and its guarantees: open and
  close, the head and chain checks at open, the writer thread and its
  transaction, append, the rollback acknowledgement, the two reader threads.
- ``effects.py``: the tables beside the entries (tickets, open sales, card
  intents and counters, print jobs) changed inside an append, and
  ``SideTables``, their reads and writes outside one.
- ``control.py``: each receipt's registration with the control unit (its
  request, its state and its code), beside the receipt's entry.
- ``writer.py``: ``WriterThread``, the one thread that writes, and the rule
  that sync's bookkeeping waits while scans and sales are queued.
- ``outbox.py``: ``Outbox``, what sync reads and records.
- ``batches.py``: ``OutboxBatch``, a sync batch encoded as it is sent, and
  the process that reads and encodes a long backlog's batches.
- ``queries.py``: ``Queries``, the reads a cashier, a report or tillctl waits for.

``Journal`` is one object made of these parts: each part is a subclass of
``JournalStore`` holding the methods of its seam. They stay methods, not
module functions behind thin wrappers, because every one of them needs the
store's threads and connections (``_on_writer``, ``_read``, ``_transaction``)
and the callers hold one journal; a wrapper per method would say each
signature twice. The parts share no state but the store's.
"""

from .batches import OutboxBatch
from .control import (
    ControlCodeTables,
    expect_control_code,
    record_control_code,
    register_control_request_again,
)
from .effects import (
    IntentClosed,
    SideTables,
    close_card_intent,
    count_card,
    float_change,
    forget_open_sale,
    keep_open_sale,
    local_ticket_check,
    open_card_intent,
    set_ticket_state,
    since_last,
    start_print_job,
    store_tickets,
)
from .entry import Entry, Fill, SideEffect, TicketRecord, now_with_offset
from .outbox import Outbox
from .queries import Queries
from .rows import UnreadableEntry
from .schema import COLUMNS, NUMBER_SERIES, SCHEMA, SCHEMA_VERSION, TICKET_COLUMNS
from .store import JournalStore


class Journal(Queries, Outbox, SideTables, ControlCodeTables):
    """The journal a till holds: the store with its queries, its outbox and its side tables."""


__all__ = [
    "COLUMNS",
    "NUMBER_SERIES",
    "SCHEMA",
    "SCHEMA_VERSION",
    "TICKET_COLUMNS",
    "ControlCodeTables",
    "Entry",
    "Fill",
    "IntentClosed",
    "Journal",
    "JournalStore",
    "OutboxBatch",
    "SideEffect",
    "TicketRecord",
    "UnreadableEntry",
    "close_card_intent",
    "count_card",
    "expect_control_code",
    "float_change",
    "forget_open_sale",
    "keep_open_sale",
    "local_ticket_check",
    "now_with_offset",
    "open_card_intent",
    "record_control_code",
    "register_control_request_again",
    "set_ticket_state",
    "since_last",
    "start_print_job",
    "store_tickets",
]
