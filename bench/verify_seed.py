"""The verification benchmark's store: a catalog, a published Ed25519 key and 100,000 open online orders.

Everything arrives the way the cloud sends it: `sync.changes.apply_page` pages of `key.published` and
`order.created` changes (so each order goes through `edge.orders.receive`: the order, its lines, the
stock reservation moves, the `order.received` event, the picking ticket, the inbox row), in big
transactions. The catalog and the opening stock are bench/sync.py's (edge.catalog, edge.store.stock).

Cached in bench/.cache/ keyed by the schema (a migration reseeds) and the seed's version and size:
`verify-schema…-s1-200x100000.db` and next to it `….json`, what the cloud would keep and the store
never has: the private key (to sign pickup tokens at run time, with a fresh exp) and each order's
typed code (the store holds only its SHA-256).
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from bench.ledger import BenchError, cached
from bench.sync import CACHE_DIR, OPENING_QTY, SKUS, STORE_ID, TZ, catalog_products
from edge.core.context import WriteContext
from edge.core.context import make as make_context
from edge.core.schemas import ReceiptIn
from edge.store import catalog, db, migrations, stock
from protocol.changes import ProductIn
from sync.changes import apply_page

SEED = 20261122
SEED_VERSION = 1  # bump when the generated orders change, so a stale cache is not reused
ORDERS = 100_000
KID = "k-bench-2026"
PAGE = 500            # changes per apply_page call (the sync client's pages are of this order)
PAGES_PER_TXN = 20    # 10,000 orders per transaction
CTX = WriteContext("cloud", "2026-11-22T01:00:00.000Z", "2026-11-22")


def progress(message: str) -> None:
    import sys  # noqa: PLC0415
    print(f"[scan {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def cache_paths(orders: int = ORDERS) -> tuple[Path, Path]:
    schema = len(migrations.MIGRATIONS)
    digest = hashlib.sha256("\n".join(sql for _, sql in migrations.MIGRATIONS).encode()).hexdigest()[:10]
    base = CACHE_DIR / f"verify-schema{schema}-{digest}-s{SEED_VERSION}-{SKUS}x{orders}"
    return base.with_suffix(".db"), base.with_suffix(".json")


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


def order_change(n: int, code: str, rng: random.Random, products: list[dict]) -> dict:
    lines = [{"sku": p["sku"], "name": p["name"], "qty": rng.randint(1, 2), "price_fen": p["price_fen"]}
             for p in rng.sample(products, rng.randint(1, 3))]
    return {"order_id": f"ord_bench_{n:06d}", "number": f"B{n:06d}", "kind": rng.choice(("pickup", "pickup", "delivery")),
            "total_fen": sum(line["qty"] * line["price_fen"] for line in lines), "lines": lines,
            "pickup_code_sha256": code_hash(code), "created_at": CTX.now}


def seed(path: Path, orders: int) -> dict:
    rng = random.Random(SEED)
    key = Ed25519PrivateKey.generate()
    public = base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
    private = base64.b64encode(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())).decode()
    codes = [str(c) for c in rng.sample(range(100_000, 100_000_000), orders)]  # distinct, 6 to 8 digits
    products = catalog_products()
    started = time.perf_counter()
    conn = db.open_store_db(path)
    try:
        with db.transaction(conn):
            ctx = make_context("backoffice", TZ)
            for product in products:
                catalog.upsert_product(conn, ProductIn.model_validate(product), ctx.now)
            stock.record_receipt(conn, ReceiptIn.model_validate(
                {"lines": [{"sku": p["sku"], "qty": OPENING_QTY} for p in products], "supplier": "基准供应商"}), ctx)
        changes = [("key.published", {"kid": KID, "alg": "Ed25519", "public_key": public})]
        changes += [("order.created", order_change(n + 1, code, rng, products)) for n, code in enumerate(codes)]
        cursor = 0
        applied = 0
        while cursor < len(changes):
            with db.transaction(conn):
                for _ in range(PAGES_PER_TXN):
                    chunk = changes[cursor:cursor + PAGE]
                    if not chunk:
                        break
                    page = [{"cursor": cursor + i + 1, "id": f"ch-{cursor + i + 1}", "type": t, "created_at": CTX.now,
                             "payload": p} for i, (t, p) in enumerate(chunk)]
                    result = apply_page(conn, page, cursor + len(page), CTX)
                    if result["rejected"]:
                        raise BenchError(f"seeding: apply_page rejected {result}")
                    applied += result["applied"]
                    cursor += len(page)
            progress(f"seed: {cursor - 1:,} of {orders:,} orders ({time.perf_counter() - started:.1f} s)")
        count = conn.execute("SELECT count(*) FROM orders WHERE state IN ('received', 'accepted', 'ready') "
                             "AND pickup_code_sha256 IS NOT NULL").fetchone()[0]
        if count != orders or applied != orders + 1:
            raise BenchError(f"seeding went wrong: {count} open orders, {applied} changes applied")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return {"store_id": STORE_ID, "kid": KID, "private_key": private,
            "orders": [[f"ord_bench_{n + 1:06d}", code] for n, code in enumerate(codes)]}


def seeded(orders: int = ORDERS) -> tuple[Path, dict, float | None]:
    """(database, {store_id, kid, private_key, orders: [[order_id, code], ...]}, seconds spent seeding or None)."""
    path, secrets = cache_paths(orders)
    if not secrets.exists():  # the keys and codes are part of the dataset: without them, seed again
        path.unlink(missing_ok=True)
    made: dict = {}
    path, took = cached(path, f"verify-*x{orders}.*", f"{orders:,} orders through apply_page",
                        lambda file: made.update(seed(file, orders)), progress)
    if made:
        secrets.write_text(json.dumps(made), encoding="utf-8")
    return path, made or json.loads(secrets.read_text(encoding="utf-8")), took
