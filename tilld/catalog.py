"""The article catalog: parsed from the back-end's catalog format, searched in memory.

The catalog is cached in the journal database (see journal.py) so a till
restarted while the server is gone still sells. Search matches an exact PLU,
an exact barcode, or a name substring ignoring case and diacritics, because a
cashier typing "ost" on a Swedish keyboard-less screen means "Öst" too.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator

from .errors import ConfigError
from .rules import ARTICLE_KINDS, PAYMENT_METHODS, Fallback

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


class Catalog:
    """An immutable, indexed view of one catalog version."""

    def __init__(self, document: CatalogDocument) -> None:
        self.document = document
        self.by_plu: dict[str, Article] = {a.plu: a for a in document.articles}
        self.by_barcode: dict[str, Article] = {
            code: a for a in document.articles for code in a.barcodes
        }
        self._folded = [(fold(a.name), a) for a in document.articles]
        self.ticket_code_re = re.compile(document.ticket_code_pattern)

    @property
    def version(self) -> str:
        return self.document.version

    @property
    def payment_methods(self) -> dict[str, bool]:
        return self.document.payment_methods

    def find(self, *, plu: str | None = None, barcode: str | None = None) -> Article | None:
        if plu is not None:
            return self.by_plu.get(plu)
        if barcode is not None:
            return self.by_barcode.get(barcode)
        return None

    def fallback_for(self, article: Article) -> Fallback | None:
        target = self.by_plu.get(article.fallback_plu) if article.fallback_plu else None
        if target is None or target.kind == "event-ticket":
            return None
        return Fallback(plu=target.plu, name=target.name)

    def search(self, query: str, limit: int = 50) -> list[Article]:
        """Exact PLU and barcode hits first, then name matches in catalog order."""
        query = query.strip()
        if not query:
            return list(self.document.articles[:limit])
        found: list[Article] = []
        for exact in (self.by_plu.get(query), self.by_barcode.get(query)):
            if exact is not None and exact not in found:
                found.append(exact)
        needle = fold(query)
        for folded, article in self._folded:
            if len(found) >= limit:
                break
            if needle in folded and article not in found:
                found.append(article)
        return found[:limit]
