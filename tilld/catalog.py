"""The article catalog: parsed from the back-end's catalog format, kept and searched in SQLite.

The catalog lives in its own database in the state directory, so a till
restarted while the server is gone still sells, and a start does not parse
it again. Search matches an exact PLU, an exact barcode, or a name substring
ignoring case and diacritics, because a cashier typing "ost" on a Swedish
keyboard-less screen means "Öst" too.

It is one file, just over 500 lines: parsing, storing and finding all
follow the one schema of the catalog's database, and split they would each
need it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import unicodedata
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    ValidationError,
    field_validator,
)

from .errors import ConfigError, Reason, Refused
from .rules import ARTICLE_KINDS, PAYMENT_METHODS, Fallback
from .ticketcodes import TicketCodePattern, UnsupportedPattern, compile_pattern

log = logging.getLogger("tilld.catalog")

DEFAULT_TICKET_CODE_PATTERN = "^TK[0-9A-Z]{8,32}$"

# What the till accepts in a catalog (docs/backend-protocol.md, "What the
# till accepts in a catalog"). A value past them is a mistake or an attack,
# never a real article: a 10 MB name was copied into every sale's journal
# entry, a price of 2**63 did not fit SQLite's integers. The whole catalog
# is refused then, never a part.
MAX_ARTICLES = 100_000
MAX_NAME_LENGTH = 200
# 1 000 000 kr in öre, the most one payment may be (sale.pay). With at most
# 999 of an article on a sale a line stays below 10**11 öre: exact in any
# JSON reader and far from SQLite's 2**63.
MAX_PRICE = 100_000_000
MAX_PLU_LENGTH = 64  # what sale.add accepts as a PLU
MAX_BARCODE_LENGTH = 128  # what sale.add accepts as a barcode
MAX_BARCODES = 32  # per article
MAX_ID_LENGTH = 64  # article ids, event ids and the catalog version
MAX_PAYMENT_METHODS = 16
MAX_PROBLEMS_LISTED = 20  # a catalog with 100,000 bad names is refused in 21 lines


# Control characters, line and paragraph separators. A name reaches the
# receipt printer, where ESC p opens the cash drawer and a newline breaks the
# receipt's layout.
_CONTROL = ("Cc", "Zl", "Zp")


def _printable(text: str) -> str:
    bad = sorted({f"U+{ord(ch):04X}" for ch in text if unicodedata.category(ch) in _CONTROL})
    if bad:
        raise ValueError(f"control characters are not allowed ({', '.join(bad[:5])})")
    return text


def _text(max_length: int, min_length: int = 1) -> Any:
    return Annotated[
        str,
        StringConstraints(min_length=min_length, max_length=max_length),
        AfterValidator(_printable),
    ]


Plu = _text(MAX_PLU_LENGTH)
Barcode = _text(MAX_BARCODE_LENGTH)
Identifier = _text(MAX_ID_LENGTH)


class Article(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    id: _text(MAX_ID_LENGTH, min_length=0)  # type: ignore[valid-type]
    plu: Plu  # type: ignore[valid-type]
    name: _text(MAX_NAME_LENGTH)  # type: ignore[valid-type]
    price: StrictInt = Field(ge=0, le=MAX_PRICE)
    vat_rate: StrictInt = Field(ge=0, le=100)
    kind: Literal[ARTICLE_KINDS]  # type: ignore[valid-type]
    barcodes: tuple[Barcode, ...] = Field(default=(), max_length=MAX_BARCODES)  # type: ignore[valid-type]
    event_id: Identifier | None = None  # type: ignore[valid-type]
    fallback_plu: Plu | None = None  # type: ignore[valid-type]

    def summary(self) -> dict[str, object]:
        return self.model_dump(mode="json")


class CatalogDocument(BaseModel):
    """The catalog as the back-end sends it (BACKEND-PROTOCOL.md, GET .../catalog)."""

    model_config = ConfigDict(extra="ignore")

    version: Identifier  # type: ignore[valid-type]
    currency: str = Field(default="SEK", pattern="^[A-Z]{3}$")  # ISO 4217
    ticket_code_pattern: str = DEFAULT_TICKET_CODE_PATTERN
    payment_methods: dict[Annotated[str, StringConstraints(max_length=32)], bool] = Field(
        default_factory=lambda: dict.fromkeys(PAYMENT_METHODS, True),
        max_length=MAX_PAYMENT_METHODS,
    )
    articles: list[Article] = Field(max_length=MAX_ARTICLES)

    @field_validator("ticket_code_pattern")
    @classmethod
    def _pattern_supported(cls, pattern: str) -> str:
        # Checked here, when the catalog is loaded, not at the first ticket
        # sale or scan: a pattern the till cannot match safely keeps the
        # catalog from being used at all.
        compile_pattern(pattern)  # UnsupportedPattern is a ValueError naming the subset
        return pattern


def parse_catalog(raw: bytes | str, source: str) -> CatalogDocument:
    """Parse and validate a catalog; a bad one is a ConfigError naming each bad field.

    Every problem is found (pydantic goes on past the first), and the first
    MAX_PROBLEMS_LISTED are named; the values themselves are never quoted,
    so a 10 MB name does not become a 10 MB log line."""
    try:
        return CatalogDocument.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        problems = [
            f"{source}: {'.'.join(str(p) for p in err['loc']) or '(document)'}: {err['msg']}"
            for err in errors[:MAX_PROBLEMS_LISTED]
        ]
        if len(errors) > MAX_PROBLEMS_LISTED:
            problems.append(f"{source}: and {len(errors) - MAX_PROBLEMS_LISTED} more problems")
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


class CatalogRefusal(BaseModel):
    """The newest catalog the till refused and kept selling from the one it had."""

    model_config = ConfigDict(frozen=True)

    source: str  # a file path or "back-end"
    at: str
    problems: list[str]
    etag: str | None = None  # the back-end's: the same catalog refused again is not news


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
# Articles kept in memory once found (Catalog.find); a till sells a few hundred.
FOUND_KEPT = 4096


class Catalog:
    """The catalog the till sells from, kept in its own SQLite file, not in memory
    (but for the articles found since it was loaded: ``find``).

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
        self.refusal: CatalogRefusal | None = None
        # The articles found since the catalog in use last changed, by (plu, barcode).
        self._found: dict[tuple[str | None, str | None], Article] = {}
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
            Reason.CATALOG_DAMAGED,
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
        self._found = {}  # found in the catalog before this one
        try:
            self._ticket_codes: TicketCodePattern | None = compile_pattern(info.ticket_code_pattern)
            self._ticket_problem = ""
        except UnsupportedPattern as exc:
            # Stored by a tilld that did not check patterns when loading a
            # catalog: keep selling its goods, but take no scanned code for a
            # ticket and make none, until a catalog with a supported pattern comes.
            self._ticket_codes, self._ticket_problem = None, str(exc)
            log.error(
                "catalog %s: %s. Until a catalog with a supported pattern is loaded, "
                "no scanned code is taken for a ticket and ticket sales are refused",
                info.version,
                exc,
            )

    def is_ticket_code(self, code: str) -> bool:
        return self._ticket_codes is not None and self._ticket_codes.fullmatch(code)

    def make_ticket_code(self) -> str:
        """A fresh code of this catalog's pattern; UnsupportedPattern if it has none usable."""
        if self._ticket_codes is None:
            raise UnsupportedPattern(self._ticket_problem)
        return self._ticket_codes.make_code()

    def refuse(self, source: str, problems: list[str], etag: str | None = None) -> None:
        """Remember why a catalog from ``source`` was refused (status.get: catalog.refused)."""
        self.refusal = CatalogRefusal(
            source=source,
            at=datetime.now().astimezone().isoformat(timespec="seconds"),
            problems=problems,
            etag=etag,
        )

    def usable_from(self, source: str) -> None:
        """``source`` gave a catalog the till uses: a refusal of its earlier one is over."""
        if self.refusal is not None and self.refusal.source == source:
            self.refusal = None

    def refusal_status(self) -> dict[str, object]:
        """``{"refused": {source, at, problems}}`` while a refusal stands, else nothing."""
        if self.refusal is None:
            return {}
        return {"refused": self.refusal.model_dump(exclude={"etag"})}

    def find(self, *, plu: str | None = None, barcode: str | None = None) -> Article | None:
        """The article, from memory if it was found since the catalog in use changed.

        A sale finds the same few articles again and again: a read of the file
        each time costs the event loop more than the rest of a `sale.add`.
        Articles are frozen, and ``use`` forgets them all when a catalog comes."""
        key = (plu, barcode)
        # This catalog's dict: a search thread that read a row just before
        # ``use`` took a new catalog stores it in the old dict, not the new.
        found = self._found
        article = found.get(key)
        if article is not None:
            return article
        try:
            article = self._find(plu, barcode)
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from None
        if article is not None:
            if len(found) >= FOUND_KEPT:
                found.clear()
            found[key] = article
        return article

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
