"""The demo store's catalog with opening stock and its two logins, made on the first run."""

from __future__ import annotations

import sys
from importlib import resources

from edge.core import config as config_mod
from edge.core.clock import iso, utcnow
from edge.core.context import make as make_context
from edge.core.schemas import ReceiptIn
from edge.store import catalog, db, stock

OPENING_QTY = 40             # opening stock of the demo catalog (first run)
DEMO_USERS = (("manager", "张店长", "manager", "manager-demo"), ("cashier", "王芳", "cashier", "cashier-demo"))


def seed_store(config: config_mod.Config) -> list[tuple[str, str, str]]:
    """The demo catalog with opening stock (first run only) and the demo logins; the logins that work."""
    from edge.ops.config_file import open_db

    conn = open_db(config)
    try:
        if next(catalog.iter_products(conn), None) is None:
            data = resources.files("edge").joinpath("data/demo-catalog.csv").read_bytes()
            with db.transaction(conn):
                report = catalog.import_products(conn, catalog.read_rows(data, "csv"), "csv", iso(utcnow()))
                ctx = make_context("demo", config.tz, config.day_cutoff)
                lines = [{"sku": p["sku"], "qty": OPENING_QTY} for p in catalog.iter_products(conn)]
                stock.record_receipt(conn, ReceiptIn.model_validate({"lines": lines, "supplier": "演示供应商"}),
                                     ctx)
            print(f"demo catalog: {report.imported} products with opening stock", file=sys.stderr)
        return demo_users(conn)
    finally:
        conn.close()


def store_products(config: config_mod.Config) -> list[dict]:
    """The store's catalog as the chain's cloud holds it: without the shelf, which is this store's own."""
    conn = db.open_store_db(config.db_path)
    try:
        return [{k: v for k, v in p.items() if k != "shelf"} for p in catalog.iter_products(conn)]
    finally:
        conn.close()


def demo_users(conn) -> list[tuple[str, str, str]]:
    """The demo's two accounts, created on the first run; the logins that still work (a password may
    have been changed since)."""
    from edge.store import users  # noqa: PLC0415

    if not users.list_users(conn):
        hashed = [(name, display, role, users.new_password(password)) for name, display, role, password in DEMO_USERS]
        with db.transaction(conn):
            for name, display, role, password_hash in hashed:
                users.add_user(conn, name, display, role, password_hash, iso(utcnow()))
    out = []
    for name, _, role, password in DEMO_USERS:
        stored = users.login_hash(conn, name)
        if stored is not None and users.check_password(password, stored):
            out.append((name, role, password))
    return out
