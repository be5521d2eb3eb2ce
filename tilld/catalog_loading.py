"""Catalog loading: from the configured file, from the back-end (via sync), or the old cache.

Whatever the source, a catalog is parsed off the event loop (the till may be
selling), stored in catalog.sqlite first and used for selling only then; a
catalog that does not parse is refused whole and the till keeps selling from
the one it has.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sqlite3
from collections.abc import Callable
from typing import Any

from .catalog import Catalog, CatalogDocument, parse_catalog
from .config import Settings
from .errors import ConfigError
from .journal import Journal

# The till's logger: operators filter catalog trouble under tilld.till, as
# before catalog loading had a module of its own.
log = logging.getLogger("tilld.till")


class CatalogLoader:
    def __init__(
        self, catalog: Catalog, journal: Journal, settings: Callable[[], Settings]
    ) -> None:
        self.catalog = catalog
        self.journal = journal
        self.settings = settings  # the running configuration (a reload replaces it)

    async def start(self) -> None:
        self.catalog.open()
        await self.load()

    async def reconfigure(self, settings: Settings) -> None:
        if settings.catalog.file:
            # Read again even if the name is unchanged: reloading after editing
            # the catalog file is how a technician updates prices offline.
            await self.load()

    @property
    def etag(self) -> str | None:
        # A refused catalog is not fetched again until the back-end changes it.
        refusal = self.catalog.refusal
        if refusal is not None and refusal.source == "back-end" and refusal.etag:
            return refusal.etag
        return self.catalog.info.etag

    async def search(self, query: str, limit: int) -> dict[str, Any]:
        # A name search reads every name of the catalog: not on the loop.
        found = await asyncio.to_thread(self.catalog.search, query, limit)
        return {"articles": [a.summary() for a in found], "catalog_version": self.catalog.version}

    async def load(self) -> None:
        info = self.catalog.info
        path = self.settings().catalog.file
        if path:
            known = info.digest if info.source == path else None
            try:
                # Read (and, if it changed, parse) off the loop, which may be
                # selling: a reload reads the file again.
                digest, document = await asyncio.to_thread(_read_catalog_file, path, known)
            except OSError as exc:
                log.error("catalog file %s is unusable (%s); using the cached catalog", path, exc)
            except ConfigError as exc:
                self.catalog.refuse(path, exc.problems)
                log.error(
                    "catalog file %s refused, still selling from catalog %s: %s",
                    path,
                    info.version,
                    exc,
                )
            else:
                if document is not None:
                    await self._store(document, source=path, etag=None, digest=digest)
                else:
                    self.catalog.usable_from(path)
                    log.info("catalog %s from %s: unchanged", info.version, path)
                return
        if info.source == "none":
            await self._adopt_journal_cache()
        if self.catalog.info.source == "none":
            log.warning("no catalog: configure catalog.file or a back-end; nothing can be sold")
        else:
            info = self.catalog.info
            log.info("catalog %s from %s: %d articles", info.version, info.source, info.articles)

    async def _adopt_journal_cache(self) -> None:
        """A till upgraded from a tilld that kept the catalog in the journal keeps selling.

        Adopted once, then dropped: a catalog.sqlite lost later must not bring
        back prices from before the upgrade."""
        cached = await self.journal.cached_catalog()
        if cached is None:
            return
        document_json, etag, source = cached
        try:
            document = await asyncio.to_thread(parse_catalog, document_json, "cached catalog")
        except ConfigError as exc:
            log.warning("the catalog cached in the journal is not used: %s", exc)
            return
        if await self._store(document, source=source, etag=etag, digest=None):
            await self.journal.forget_cached_catalog()

    async def use_fetched_catalog(self, raw: bytes, etag: str | None) -> None:
        """A catalog from the back-end: stored first, then used for selling."""
        try:
            document = await asyncio.to_thread(parse_catalog, raw, "back-end catalog")
        except ConfigError as exc:
            # The back-end's to fix, and asked again every sync.catalog_refresh_s:
            # a warning (once per catalog it serves), never a paused sync.
            seen = self.catalog.refusal
            again = seen is not None and seen.source == "back-end" and seen.etag == etag
            self.catalog.refuse("back-end", exc.problems, etag=etag)
            (log.info if again else log.warning)(
                "the back-end's catalog (ETag %s) refused, still selling from catalog %s: %s",
                etag,
                self.catalog.version,
                exc,
            )
            return
        await self._store(document, source="back-end", etag=etag, digest=None)

    async def _store(
        self, document: CatalogDocument, *, source: str, etag: str | None, digest: str | None
    ) -> bool:
        try:
            info = await asyncio.to_thread(
                self.catalog.replace, document, source=source, etag=etag, digest=digest
            )
        except sqlite3.Error as exc:
            log.error(
                "cannot store catalog %s from %s in %s (%s); still selling from %s. Free "
                "space in the state directory or check the disk",
                document.version,
                source,
                self.catalog.path,
                exc,
                self.catalog.version,
            )
            return False
        self.catalog.use(info)
        self.catalog.usable_from(source)
        log.info("catalog %s from %s: %d articles", info.version, source, info.articles)
        return True


def _read_catalog_file(path: str, known_digest: str | None) -> tuple[str, CatalogDocument | None]:
    """The file's digest, and its parsed catalog unless the digest is the one stored."""
    with open(path, "rb") as handle:
        raw = handle.read()
    digest = hashlib.sha256(raw).hexdigest()
    if digest == known_digest:
        return digest, None
    return digest, parse_catalog(raw, path)
