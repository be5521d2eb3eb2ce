"""Benchmark: does a till slow down as its journal grows? Empty vs 1,000,000 entries.

    .venv/bin/python tests/bench/growth.py [--rounds N] [--cache DIR] [--append FILE]

Two daemons run side by side with the same 50,000-article catalog and no
back-end: one on an empty journal (the baseline), one on the million-entry
journal cold_start.py builds (reused from --cache). The two are called in
turn, one call each, so a burst of load from elsewhere on the machine falls
on both alike. Figures: the durable cash sale (open, three
lines, pay) and catalog.search for a name (many hits, stops at the limit)
and for a name nothing matches (every article's name is looked at).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from conftest import Client, TillProcess
from report import append_section, median, ms, percentile, section, table, verdict
from workload import (
    big_journal,
    in_turn,
    install_journal,
    one_sale,
    sale_latencies,
    write_big_catalog,
)

ARTICLES = 50_000
ENTRIES = 1_000_000
QUERIES = {"name": "kaffe", "miss": "ingen träff här"}


def search_latencies(client: Client, query: str, rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        client.call("catalog.search", query=query)
        samples.append(time.perf_counter() - started)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--per-round", type=int, default=30)
    parser.add_argument("--entries", type=int, default=ENTRIES)
    parser.add_argument("--cache", type=Path, help="where cold_start.py kept the built journal")
    parser.add_argument("--append", help="append the results as Markdown to this file")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="tilld-bench-"))
    catalog = write_big_catalog(base / "catalog-50k.json", ARTICLES)
    template = big_journal(args.cache or base / "cache", args.entries, catalog)
    tills = {}
    for name in ("empty", "big"):
        (base / name).mkdir()
        tills[name] = TillProcess(base / name, {"catalog": {"file": str(catalog)}})
    install_journal(template, tills["big"].state_dir)
    samples: dict[tuple[str, str], list[float]] = {}
    try:
        clients = {name: till.start().client() for name, till in tills.items()}
        assert clients["big"].call("status.get")["journal"]["last_seq"] == args.entries
        for client in clients.values():  # warm-up, not counted
            sale_latencies(client, 5)
            search_latencies(client, QUERIES["miss"], 5)
        measures = {"sale": one_sale}
        for kind, query in QUERIES.items():
            measures[kind] = lambda c, q=query: search_latencies(c, q, 1)[0]
        for _ in range(args.rounds):
            for kind, measure in measures.items():
                for name, taken in in_turn(clients, args.per_round, measure).items():
                    samples.setdefault((name, kind), []).extend(taken)
        for client in clients.values():
            client.close()
    finally:
        for till in tills.values():
            if till.proc is not None:
                till.stop(timeout=60)
        shutil.rmtree(base, ignore_errors=True)  # a copy of a 0.35 GB journal
    figures = {
        "sale": "durable cash sale: open, 3 lines, pay",
        "name": f"catalog.search '{QUERIES['name']}' (name, stops at 50 hits)",
        "miss": f"catalog.search '{QUERIES['miss']}' (no match: all {ARTICLES:,} names)",
    }
    rows = []
    for kind, name in figures.items():
        empty, big = samples[("empty", kind)], samples[("big", kind)]
        change = median(big) / median(empty) - 1
        rows.append(
            (
                name,
                f"{ms(median(empty))} / {ms(percentile(empty, 99))}",
                f"{ms(median(big))} / {ms(percentile(big, 99))}",
                f"{change:+.1%}",
                verdict(change <= 0.10, "p50 at most 10 % slower"),
            )
        )
    intro = [
        "Produced by `make bench` (`.venv/bin/python tests/bench/growth.py`): two daemons",
        f"side by side, same {ARTICLES:,}-article catalog, no back-end; one on an empty journal",
        f"(baseline), one on the {args.entries:,}-entry journal of the cold-start figures.",
        f"{args.rounds} rounds of {args.per_round} calls of each kind per daemon, the two called",
        "in turn, one call each.",
    ]
    body = table(
        (
            "figure",
            "empty journal p50 / p99",
            f"{args.entries:,} entries p50 / p99",
            "p50 change",
            "goal",
        ),
        rows,
    )
    append_section(args.append, section("Growth: empty journal vs a million entries", intro, body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
