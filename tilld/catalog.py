"""The article catalog: parsed from the back-end's catalog format, kept and searched in SQLite.

The catalog lives in its own database in the state directory, so a till
restarted while the server is gone still sells, and a start does not parse
it again. Search matches an exact PLU, an exact barcode, or a name substring
ignoring case and diacritics, because a cashier typing "ost" on a Swedish
keyboard-less screen means "Öst" too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sqlite3
import threading
import unicodedata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator

from .errors import ConfigError, Refused
from .rules import ARTICLE_KINDS, PAYMENT_METHODS, Fallback

log = logging.getLogger("tilld.catalog")

DEFAULT_TICKET_CODE_PATTERN = "^TK[0-9A-Z]{8,32}$"


class Article(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    plu: str = Field(min_length=1)
    name: str = Field(min_length=1)
    price: StrictInt = Field(ge=0)
    vat_rate: StrictInt = Field(ge=0, le=100)
    kind: Literal[ARTICLE_KINDS]  # type: ignore[valid-type]
    barcodes: tuple[str, ...] = ()
    event_id: str | None = None
    fallback_plu: str | None = None

    def summary(self) -> dict[str, object]:
        return self.model_dump(mode="json")


class CatalogDocument(BaseModel):
    """The catalog as the back-end sends it (BACKEND-PROTOCOL.md, GET .../catalog)."""

    model_config = ConfigDict(extra="ignore")

    version: str
    currency: str = "SEK"
    ticket_code_pattern: str = DEFAULT_TICKET_CODE_PATTERN
    payment_methods: dict[str, bool] = Field(
        default_factory=lambda: dict.fromkeys(PAYMENT_METHODS, True)
    )
    articles: list[Article]

    @field_validator("ticket_code_pattern")
    @classmethod
    def _pattern_compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return pattern


def parse_catalog(raw: bytes | str, source: str) -> CatalogDocument:
    """Parse and validate a catalog; a bad one is a ConfigError naming each bad field."""
    try:
        return CatalogDocument.model_validate_json(raw)
    except ValidationError as exc:
        problems = [
            f"{source}: {'.'.join(str(p) for p in err['loc']) or '(document)'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise ConfigError(problems) from None


def fold(text: str) -> str:
    """Lower-case, strip diacritics: 'Öst' -> 'ost', 'Crème' -> 'creme'."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


class CatalogInfo(BaseModel):
    """What the till knows of the catalog it sells from, apart from the articles."""

    model_config = ConfigDict(frozen=True)

    version: str = "none"
    currency: str = "SEK"
    ticket_code_pattern: str = DEFAULT_TICKET_CODE_PATTERN
    payment_methods: dict[str, bool] = Field(default_factory=dict)
    articles: int = 0
    source: str = "none"  # a file path, "back-end", or "none"
    etag: str | None = None  # the back-end's, for If-None-Match
    digest: str | None = None  # sha256 of the catalog file's bytes


SCHEMA = """
CREATE TABLE IF NOT EXISTS info (id INTEGER PRIMARY KEY CHECK (id = 1), data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS articles (
    pos INTEGER PRIMARY KEY,
    id TEXT NOT NULL, plu TEXT NOT NULL, name TEXT NOT NULL, folded TEXT NOT NULL,
    price INTEGER NOT NULL, vat_rate INTEGER NOT NULL, kind TEXT NOT NULL,
    barcodes TEXT NOT NULL, event_id TEXT, fallback_plu TEXT
);
CREATE INDEX IF NOT EXISTS articles_plu ON articles (plu);
CREATE TABLE IF NOT EXISTS barcodes (code TEXT NOT NULL, pos INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS barcodes_code ON barcodes (code);
"""
COLUMNS = "id, plu, name, price, vat_rate, kind, barcodes, event_id, fallback_plu"


class Catalog:
    """The catalog the till sells from, kept in its own SQLite file, not in memory.

    A venue's catalog can hold tens of thousands of articles; as Python
    objects they cost more memory than the rest of the daemon and take most
    of a cold start to parse (docs/benchmarks.md). In SQLite a start reads
    only the small `info` row. A PLU or barcode lookup is one indexed read,
    cheap enough for the event loop; a name search reads every folded name
    and is run in a thread (`Till.search`). It is a cache: losing the file
    costs a re-read of the catalog file or the back-end, never a sale.

    Duplicate PLUs or barcodes in a catalog are kept; a lookup finds the
    last one, a search lists all of them.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._generation = 0  # bumped when a damaged file is set aside: reconnect
        self.use(CatalogInfo())

    def open(self) -> None:
        """Create or read the catalog file; a damaged one is set aside, not fatal."""
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):
                raise  # locked, unreadable, disk full: not damage, and not ours to discard
            self._set_aside(exc)
            self._open()

    def _open(self) -> None:
        db = self._db()
        db.execute("PRAGMA journal_mode = WAL")
        db.executescript(SCHEMA)
        # The first pages can be fine and the articles not: check the whole
        # file once (about 20 ms for 50,000 articles) rather than fail a sale.
        (verdict,) = db.execute("PRAGMA quick_check(1)").fetchone()
        if verdict != "ok":
            raise sqlite3.DatabaseError("quick_check: " + " ".join(verdict.split()))
        self.use(self._read_info())

    def _set_aside(self, exc: Exception) -> None:
        broken = self.path.with_name(self.path.name + ".broken")
        log.error(
            "the catalog cache %s is damaged (%s); moved to %s, the catalog is read "
            "again from catalog.file or the back-end",
            self.path,
            exc,
            broken,
        )
        self.close()
        self._generation += 1
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(f"{self.path}{suffix}").replace(f"{broken}{suffix}")
        self.use(CatalogInfo())

    def _db(self) -> sqlite3.Connection:
        # One connection per thread: the loop's for lookups, a worker's for
        # searches and for replacing the catalog.
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is not None and self._local.generation != self._generation:
            db.close()  # still open on the file that was set aside
            db = None
        if db is None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
            db.execute("PRAGMA synchronous = NORMAL")
            self._local.db, self._local.generation = db, self._generation
        return db

    def _damaged(self, exc: sqlite3.DatabaseError) -> Refused:
        log.error("the catalog cache %s is damaged: %s", self.path, exc)
        return Refused(
            "catalog-damaged",
            f"The till's copy of the catalog ({self.path}) is damaged, so articles cannot "
            "be looked up. Restart tilld (systemctl restart tilld): it sets the file aside "
            "and reads the catalog again from catalog.file or the back-end.",
        )

    def _read_info(self) -> CatalogInfo:
        row = self._db().execute("SELECT data FROM info WHERE id = 1").fetchone()
        return CatalogInfo.model_validate_json(row[0]) if row else CatalogInfo()

    @property
    def version(self) -> str:
        return self.info.version

    @property
    def payment_methods(self) -> dict[str, bool]:
        return self.info.payment_methods

    def replace(
        self, document: CatalogDocument, *, source: str, etag: str | None, digest: str | None
    ) -> CatalogInfo:
        """Store a new catalog in one transaction (blocking: call it in a thread).

        Returns its info; `use` makes it the one the till reports."""
        info = CatalogInfo(
            version=document.version,
            currency=document.currency,
            ticket_code_pattern=document.ticket_code_pattern,
            payment_methods=document.payment_methods,
            articles=len(document.articles),
            source=source,
            etag=etag,
            digest=digest,
        )
        try:
            self._write(document, info)
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):
                raise
            self._set_aside(exc)
            self._open()
            self._write(document, info)
        return info

    def _write(self, document: CatalogDocument, info: CatalogInfo) -> None:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM articles")
            db.execute("DELETE FROM barcodes")
            db.executemany(
                f"INSERT INTO articles (pos, folded, {COLUMNS}) VALUES ({', '.join('?' * 11)})",
                (
                    (
                        pos,
                        fold(a.name),
                        a.id,
                        a.plu,
                        a.name,
                        a.price,
                        a.vat_rate,
                        a.kind,
                        json.dumps(a.barcodes),
                        a.event_id,
                        a.fallback_plu,
                    )
                    for pos, a in enumerate(document.articles)
                ),
            )
            db.executemany(
                "INSERT INTO barcodes (code, pos) VALUES (?, ?)",
                ((code, pos) for pos, a in enumerate(document.articles) for code in a.barcodes),
            )
            db.execute(
                "INSERT INTO info (id, data) VALUES (1, ?)"
                " ON CONFLICT (id) DO UPDATE SET data = excluded.data",
                (info.model_dump_json(),),
            )
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise

    def use(self, info: CatalogInfo) -> None:
        self.info = info
        self.ticket_code_re = re.compile(info.ticket_code_pattern)

    def find(self, *, plu: str | None = None, barcode: str | None = None) -> Article | None:
        try:
            return self._find(plu, barcode)
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from None

    def _find(self, plu: str | None, barcode: str | None) -> Article | None:
        if plu is not None:
            row = (
                self._db()
                .execute(
                    f"SELECT {COLUMNS} FROM articles WHERE plu = ? ORDER BY pos DESC LIMIT 1",
                    (plu,),
                )
                .fetchone()
            )
        elif barcode is not None:
            row = (
                self._db()
                .execute(
                    f"SELECT {COLUMNS} FROM articles WHERE pos = (SELECT max(pos) FROM barcodes"
                    " WHERE code = ?)",
                    (barcode,),
                )
                .fetchone()
            )
        else:
            return None
        return _article(row) if row else None

    def fallback_for(self, article: Article) -> Fallback | None:
        target = self.find(plu=article.fallback_plu) if article.fallback_plu else None
        if target is None or target.kind == "event-ticket":
            return None
        return Fallback(plu=target.plu, name=target.name)

    def search(self, query: str, limit: int = 50) -> list[Article]:
        """Exact PLU and barcode hits first, then name matches in catalog order."""
        try:
            return self._search(query.strip(), limit)
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from None

    def _search(self, query: str, limit: int) -> list[Article]:
        db = self._db()
        if not query:
            rows = db.execute(f"SELECT {COLUMNS} FROM articles ORDER BY pos LIMIT ?", (limit,))
            return [_article(row) for row in rows]
        found: list[Article] = []
        for exact in (self.find(plu=query), self.find(barcode=query)):
            if exact is not None and exact not in found:
                found.append(exact)
        rows = db.execute(
            f"SELECT {COLUMNS} FROM articles WHERE instr(folded, ?) > 0 ORDER BY pos LIMIT ?",
            (fold(query), limit + len(found)),
        )
        for row in rows:
            article = _article(row)
            if article not in found:
                found.append(article)
        return found[:limit]

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


def _article(row: tuple[Any, ...]) -> Article:
    id_, plu, name, price, vat_rate, kind, barcodes, event_id, fallback_plu = row
    # Validated when the catalog was parsed; constructing again is just cost.
    return Article.model_construct(
        id=id_,
        plu=plu,
        name=name,
        price=price,
        vat_rate=vat_rate,
        kind=kind,
        barcodes=tuple(json.loads(barcodes)),
        event_id=event_id,
        fallback_plu=fallback_plu,
    )
