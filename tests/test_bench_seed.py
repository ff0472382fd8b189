"""bench/ledger.py's catalog seed on sqlite-utils: it writes inside the caller's transaction, never commits it."""

from __future__ import annotations

import random

from bench import ledger
from edge.core.gtin import gtin_valid
from edge.store import db


def test_seed_catalog_stays_in_the_callers_transaction(tmp_path):
    conn = db.open_store_db(tmp_path / "store.db")
    try:
        conn.execute("BEGIN IMMEDIATE")
        ledger.seed_catalog(conn, random.Random(ledger.SEED), count=300)
        assert conn.in_transaction                          # nothing committed it half-way
        assert conn.execute("SELECT count(*) FROM products").fetchone()[0] == 300
        conn.execute("ROLLBACK")
        assert conn.execute("SELECT count(*) FROM products").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM barcodes").fetchone()[0] == 0

        with db.transaction(conn):
            ledger.seed_catalog(conn, random.Random(ledger.SEED), count=300)
        rows = conn.execute("SELECT p.sku, p.name, p.price_fen, p.unit, b.code FROM products p "
                            "JOIN barcodes b ON b.sku = p.sku ORDER BY p.sku").fetchall()
        assert len(rows) == 300 and rows[0][0] == ledger.sku_of(0) and rows[0][3] == "件"
        assert all(gtin_valid(row[4]) and 150 <= row[2] <= 19_900 for row in rows)
        # the same rows as the plain tuples the generator makes: the seed stays reproducible
        expected = [row[:4] for row in ledger.product_rows(random.Random(ledger.SEED), 300)]
        assert [tuple(row[:4]) for row in rows] == expected
    finally:
        conn.close()
