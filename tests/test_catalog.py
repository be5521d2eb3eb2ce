"""The article catalog: the back-end's format parsed strictly, searched the way cashiers type."""

from __future__ import annotations

import functools
import json
import sqlite3
import tempfile
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tilld.catalog import Catalog, fold, parse_catalog
from tilld.errors import ConfigError
from tilld.rules import Fallback


def article(plu: str, name: str, kind: str = "goods", **extra) -> dict:
    return {
        "id": f"a{plu}",
        "plu": plu,
        "name": name,
        "price": 1000,
        "vat_rate": 12,
        "kind": kind,
        "barcodes": [],
        "event_id": None,
        "fallback_plu": None,
        **extra,
    }


ARTICLES = [
    article("100", "Entré vuxen", "ticket", price=15000, vat_rate=6),
    article("200", "Konsert 19:00", "event-ticket", event_id="ev-7", fallback_plu="100"),
    article("300", "Kaffe", barcodes=["7310000000001"]),
    article("302", "Ostsmörgås"),
    article("400", "Vykort Östersjön", vat_rate=25, barcodes=["7310000000032"]),
    article("401", "Crème brûlée 100 g"),
    article("7310000000001", "Kaffe lock"),  # a PLU equal to another article's barcode
    article("500", "Konsert 22:00", "event-ticket", event_id="ev-8", fallback_plu="200"),
    article("501", "Konsert 23:00", "event-ticket", event_id="ev-9", fallback_plu="999"),
    article("502", "Kaffepåse", fallback_plu="300"),
]


def document(**overrides) -> dict:
    doc = {
        "version": "2026-11-26T08:00:00Z",
        "currency": "SEK",
        "ticket_code_pattern": "^TK[0-9A-Z]{8,32}$",
        "payment_methods": {"cash": True, "swish-manual": True, "swish": True, "card": True},
        "articles": ARTICLES,
    }
    doc.update(overrides)
    return doc


def stored(raw: str | bytes, source: str = "test-catalog") -> Catalog:
    """A catalog as the till keeps it: parsed, then stored in its own SQLite file."""
    cat = Catalog(Path(tempfile.mkdtemp(prefix="tilld-catalog-")) / "catalog.sqlite")
    cat.open()
    cat.use(cat.replace(parse_catalog(raw, source), source=source, etag=None, digest=None))
    return cat


@functools.cache
def _default_catalog() -> Catalog:
    return stored(json.dumps(document()))


def catalog(**overrides) -> Catalog:
    return stored(json.dumps(document(**overrides))) if overrides else _default_catalog()


def plus(articles) -> list[str]:
    return [a.plu for a in articles]


def problems_of(doc: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_catalog(json.dumps(doc), "catalog.json")
    return caught.value.problems


# -- fold ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("Öst", "ost"),
        ("Crème", "creme"),
        ("ÅÄÖ åäö", "aao aao"),
        ("KAFFE", "kaffe"),
        ("Straße", "strasse"),
        ("ﬁka", "fika"),  # the fi ligature is two letters to a cashier
        ("", ""),
    ],
)
def test_fold_lowers_case_and_strips_diacritics(text, folded):
    assert fold(text) == folded


@given(st.text(max_size=30))
def test_fold_is_idempotent(text):
    assert fold(fold(text)) == fold(text)


@given(st.text(max_size=30))
def test_fold_leaves_no_combining_marks(text):
    assert not any(unicodedata.combining(ch) for ch in fold(text))


SWEDISH_TEXT = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzåäöéèüABCDEFGHIJKLMNOPQRSTUVWXYZÅÄÖÉÈÜ 0123456789-:"
)


@given(SWEDISH_TEXT)
def test_fold_makes_upper_and_lower_case_swedish_text_equal(text):
    assert fold(text.upper()) == fold(text.lower())


# -- search ----------------------------------------------------------------


def test_search_finds_an_article_by_exact_plu():
    assert plus(catalog().search("302")) == ["302"]


def test_search_finds_an_article_by_exact_barcode():
    assert plus(catalog().search("7310000000032")) == ["400"]


def test_search_puts_the_exact_plu_first_then_the_exact_barcode():
    # "7310000000001" is one article's PLU and another's barcode.
    assert plus(catalog().search("7310000000001"))[:2] == ["7310000000001", "300"]


def test_search_puts_an_exact_plu_before_name_matches():
    # "100" is PLU 100 and also in the name "Crème brûlée 100 g".
    assert plus(catalog().search("100")) == ["100", "401"]


def test_search_matches_a_name_substring_ignoring_case():
    assert plus(catalog().search("KAFF")) == ["300", "7310000000001", "502"]


def test_search_matches_a_name_substring_ignoring_diacritics():
    assert plus(catalog().search("ostersjon")) == ["400"]


def test_search_query_with_diacritics_matches_a_plain_name():
    assert plus(catalog().search("Kâffé lóck")) == ["7310000000001"]


def test_search_for_ost_finds_ost_and_ost_with_diacritics():
    assert set(plus(catalog().search("ost"))) == {"302", "400"}


def test_search_ignores_surrounding_whitespace():
    assert plus(catalog().search("  302 ")) == ["302"]


def test_search_returns_nothing_when_nothing_matches():
    assert catalog().search("zzz") == []


def test_an_empty_query_returns_the_catalog_in_order_up_to_the_limit():
    assert plus(catalog().search("", limit=3)) == ["100", "200", "300"]


def test_a_blank_query_returns_articles_like_an_empty_one():
    assert plus(catalog().search("   ", limit=4)) == plus(catalog().search("", limit=4))


def test_an_empty_query_with_a_large_limit_returns_every_article():
    assert len(catalog().search("", limit=1000)) == len(ARTICLES)


@given(limit=st.integers(0, 15), query=st.sampled_from(["", "a", "k", "KONSERT", "100", "ö"]))
def test_search_never_returns_more_than_the_limit(limit, query):
    assert len(catalog().search(query, limit=limit)) <= limit


def test_search_limit_cuts_name_matches_in_catalog_order():
    assert plus(catalog().search("konsert", limit=2)) == ["200", "500"]


def test_search_never_repeats_an_article():
    found = plus(catalog().search("7310000000001"))
    assert len(found) == len(set(found))


def test_find_by_plu_and_by_barcode():
    cat = catalog()
    assert cat.find(plu="300").name == "Kaffe"
    assert cat.find(barcode="7310000000001").plu == "300"
    assert cat.find(plu="nope") is None
    assert cat.find() is None


def test_an_article_found_before_a_new_catalog_is_found_as_the_new_catalog_has_it():
    cat = stored(json.dumps(document()))
    assert cat.find(plu="300").price == 1000
    assert cat.find(barcode="7310000000001").price == 1000
    dearer = [dict(a, price=2500) if a["plu"] == "300" else a for a in ARTICLES]
    raw = json.dumps(document(version="v2", articles=dearer))
    cat.use(cat.replace(parse_catalog(raw, "v2"), source="v2", etag=None, digest=None))
    assert cat.find(plu="300").price == 2500
    assert cat.find(barcode="7310000000001").price == 2500


def test_an_article_read_while_a_new_catalog_comes_is_not_kept_for_the_new_one():
    """A search on a thread reads a row of the old catalog; the loop takes the
    new one before the thread stores what it read. The new catalog must not
    answer with the old article (its price) from memory afterwards."""
    cat = stored(json.dumps(document()))
    dearer = [dict(a, price=2500) if a["plu"] == "300" else a for a in ARTICLES]
    raw = json.dumps(document(version="v2", articles=dearer))
    old_read = cat._find

    def read_then_new_catalog_comes(plu, barcode):
        article = old_read(plu, barcode)  # the old catalog's row, read first
        cat.use(cat.replace(parse_catalog(raw, "v2"), source="v2", etag=None, digest=None))
        return article

    cat._find = read_then_new_catalog_comes
    assert cat.find(plu="300").price == 1000  # the caller gets what it read
    cat._find = old_read
    assert cat.find(plu="300").price == 2500  # the new catalog, not the old article


# -- fallback --------------------------------------------------------------


def test_event_ticket_falls_back_to_its_configured_ticket():
    cat = catalog()
    assert cat.fallback_for(cat.find(plu="200")) == Fallback(plu="100", name="Entré vuxen")


def test_a_fallback_that_is_itself_an_event_ticket_gives_none():
    cat = catalog()
    assert cat.fallback_for(cat.find(plu="500")) is None


def test_a_fallback_plu_missing_from_the_catalog_gives_none():
    cat = catalog()
    assert cat.fallback_for(cat.find(plu="501")) is None


def test_an_article_without_a_fallback_plu_gives_none():
    cat = catalog()
    assert cat.fallback_for(cat.find(plu="300")) is None


# -- parsing ---------------------------------------------------------------


def test_a_valid_catalog_parses_with_its_version_pattern_and_methods():
    cat = catalog()
    assert cat.version == "2026-11-26T08:00:00Z"
    assert cat.info.ticket_code_pattern == "^TK[0-9A-Z]{8,32}$"
    assert cat.payment_methods == {"cash": True, "swish-manual": True, "swish": True, "card": True}


def test_the_protocol_example_catalog_parses():
    # The example in BACKEND-PROTOCOL.md, GET /v1/tills/{till_id}/catalog, verbatim.
    raw = """{"version": "2026-11-26T08:00:00Z", "currency": "SEK",
 "ticket_code_pattern": "^TK[0-9A-Z]{8,32}$",
 "payment_methods": {"cash": true, "swish-manual": true, "swish": true, "card": true},
 "articles": [
  {"id": "a1", "plu": "100", "name": "Entré vuxen", "price": 15000, "vat_rate": 6,
   "kind": "ticket", "barcodes": [], "event_id": null, "fallback_plu": null},
  {"id": "a2", "plu": "200", "name": "Konsert 19:00", "price": 35000, "vat_rate": 6,
   "kind": "event-ticket", "barcodes": [], "event_id": "ev-7", "fallback_plu": "100"},
  {"id": "a3", "plu": "300", "name": "Kaffe", "price": 3500, "vat_rate": 12,
   "kind": "goods", "barcodes": ["7310000000001"], "event_id": null, "fallback_plu": null}
 ]}"""
    cat = stored(raw, "protocol-example")
    assert plus(cat.search("")) == ["100", "200", "300"]
    assert cat.find(barcode="7310000000001").price == 3500


def test_missing_optional_fields_take_defaults():
    doc = {
        "version": "v1",
        "articles": [
            {"id": "x", "plu": "1", "name": "N", "price": 0, "vat_rate": 0, "kind": "goods"}
        ],
    }
    cat = stored(json.dumps(doc), "minimal")
    assert cat.info.ticket_code_pattern == "^TK[0-9A-Z]{8,32}$"
    assert cat.payment_methods == {"cash": True, "swish-manual": True, "swish": True, "card": True}


def test_a_float_price_is_rejected_naming_the_field():
    problems = problems_of(document(articles=[article("1", "A", price=10.5)]))
    assert any("articles.0.price" in p for p in problems)


def test_a_price_as_a_string_is_rejected_naming_the_field():
    problems = problems_of(document(articles=[article("1", "A", price="1000")]))
    assert any("articles.0.price" in p for p in problems)


def test_a_negative_price_is_rejected_naming_the_field():
    problems = problems_of(document(articles=[article("1", "A", price=-1)]))
    assert any("articles.0.price" in p for p in problems)


def test_an_unknown_kind_is_rejected_naming_the_field():
    problems = problems_of(document(articles=[article("1", "A"), article("2", "B", "voucher")]))
    assert any("articles.1.kind" in p for p in problems)


def test_a_bad_ticket_code_regex_is_rejected_naming_the_field():
    problems = problems_of(document(ticket_code_pattern="^TK[0-9"))
    assert any("ticket_code_pattern" in p for p in problems)


def test_a_missing_version_is_rejected_naming_the_field():
    doc = document()
    del doc["version"]
    assert any("version" in p for p in problems_of(doc))


def test_an_empty_plu_is_rejected_naming_the_field():
    problems = problems_of(document(articles=[article("", "A")]))
    assert any("articles.0.plu" in p for p in problems)


def test_every_bad_field_is_reported_with_the_source_name():
    problems = problems_of(
        document(ticket_code_pattern="(", articles=[article("1", "A", price=1.5, kind="x")])
    )
    assert len(problems) >= 3
    assert all(p.startswith("catalog.json") for p in problems)


def test_a_catalog_that_is_not_json_is_a_config_error():
    with pytest.raises(ConfigError):
        parse_catalog("{not json", "broken.json")


# -- the catalog on disk ---------------------------------------------------------


def test_a_stored_catalog_is_there_after_a_restart_without_parsing_it_again(tmp_path):
    path = tmp_path / "catalog.sqlite"
    first = Catalog(path)
    first.open()
    info = first.replace(
        parse_catalog(json.dumps(document()), "f"), source="/etc/c.json", etag="e1", digest="d1"
    )
    first.use(info)
    first.close()
    again = Catalog(path)
    again.open()
    assert again.info == info
    assert (again.info.articles, again.info.digest, again.info.etag) == (len(ARTICLES), "d1", "e1")
    assert again.find(plu="300").name == "Kaffe"
    assert plus(again.search("kaffe")) == ["300", "7310000000001", "502"]


def test_replacing_the_catalog_drops_articles_that_are_gone(tmp_path):
    cat = Catalog(tmp_path / "catalog.sqlite")
    cat.open()
    cat.replace(parse_catalog(json.dumps(document()), "a"), source="a", etag=None, digest=None)
    smaller = document(version="v2", articles=[article("900", "Paraply", barcodes=["555"])])
    cat.use(
        cat.replace(parse_catalog(json.dumps(smaller), "b"), source="b", etag=None, digest=None)
    )
    assert cat.version == "v2" and cat.info.articles == 1
    assert cat.find(plu="300") is None and cat.find(barcode="7310000000001") is None
    assert cat.find(barcode="555").plu == "900"


def test_a_duplicate_plu_or_barcode_finds_the_last_and_searches_both():
    cat = catalog(
        articles=[
            article("1", "Karta", barcodes=["77"]),
            article("1", "Karta ny", barcodes=["77"]),
        ]
    )
    assert cat.find(plu="1").name == "Karta ny"
    assert cat.find(barcode="77").name == "Karta ny"
    assert [a.name for a in cat.search("karta")] == ["Karta", "Karta ny"]  # catalog order


def test_a_damaged_catalog_file_is_set_aside_and_the_till_starts_empty(tmp_path):
    path = tmp_path / "catalog.sqlite"
    path.write_bytes(b"this is not a database" * 1000)
    cat = Catalog(path)
    cat.open()
    assert cat.info.source == "none" and cat.find(plu="300") is None
    assert (tmp_path / "catalog.sqlite.broken").read_bytes().startswith(b"this is not")
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_catalog_file_damaged_past_its_first_pages_is_set_aside_at_open(tmp_path):
    path = tmp_path / "catalog.sqlite"
    many = [article(str(10_000 + n), f"Artikel {n}", barcodes=[f"70{n:011d}"]) for n in range(3000)]
    first = Catalog(path)
    first.open()
    first.replace(
        parse_catalog(json.dumps(document(articles=many)), "many"),
        source="/etc/c.json",
        etag=None,
        digest="d1",
    )
    first.close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16 * 4096] = b"\xab" * (16 * 4096)
    path.write_bytes(bytes(data))
    again = Catalog(path)
    again.open()  # the header and the info row are fine; the articles are not
    assert again.info.source == "none" and again.info.digest is None
    assert (tmp_path / "catalog.sqlite.broken").exists()
    # Empty, not broken: the next catalog is stored and found.
    again.use(
        again.replace(
            parse_catalog(json.dumps(document()), "f"), source="f", etag=None, digest=None
        )
    )
    assert again.find(plu="300").name == "Kaffe"
