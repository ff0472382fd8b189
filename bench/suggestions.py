"""The purchase-suggestion benchmark: edge.store.purchase.suggestions on the ledger benchmark's store
(100,000 SKUs, 1,000,000 moves over a year; bench/ledger.py seeds and caches it), at the end of that
year, with the default [stock] settings (28 days of sales). The query reads the window's demand
moves through their partial index (stock_moves_demand), then joins every active product.

Target: median <= 500 ms (the 补货建议 page and GET /api/v1/purchase-suggestions run it on a reader).
"""

from __future__ import annotations

import os
import statistics
import sys
import time

from bench.ledger import DAY, START, load_at_start, seeded_database, stamp, stats
from edge.core import sqlite
from edge.core.config import StockSection
from edge.store import purchase

TARGETS = {"suggestions_median_ms": 500}
COUNTS = {False: 20, True: 5}
WARMUP = 2


def progress(message: str) -> None:
    print(f"[suggestions {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(quick: bool = False) -> dict:
    path, _ = seeded_database()
    load_start = load_at_start(progress)
    settings, now = StockSection(), stamp(START + 365 * DAY)
    conn = sqlite.connect(path, readonly=True)
    try:
        times, found = [], None
        for i in range(WARMUP + COUNTS[quick]):
            started = time.perf_counter()
            found = purchase.suggestions(conn, settings, now)
            if i >= WARMUP:
                times.append((time.perf_counter() - started) * 1000)
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + purchase._QUERY, (now, 1, 1))]
    finally:
        conn.close()
    median = statistics.median(times)
    progress(f"{len(found['items']):,} suggestions, median {median:.0f} ms")
    return {"benchmark": "suggestions", "quick": quick, "runs": len(times), "items": len(found["items"]),
            "suggestions_median_ms": round(median, 1), "suggestions_ms": stats(times), "plan": plan,
            "load_start": round(load_start, 2), "load_end": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
            "targets": TARGETS, "met": {"suggestions_median_ms": median <= TARGETS["suggestions_median_ms"]}}
