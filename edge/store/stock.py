"""The stock ledger: append-only moves, balances updated in the same transaction, and the check
that every balance equals the sum of its moves.

Functions take a connection inside an open transaction (the writer thread's, or the CLI's).
"""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from edge.core import sqlite
from edge.core.context import WriteContext
from edge.core.errors import InputError, NotFound
from edge.core.schemas import AdjustmentIn, CountIn, ReceiptIn
from edge.store import outbox
from edge.store.catalog import resolve_sku
from edge.store.pinyin import search_key
from protocol.stock import MOVE_REASONS, RESERVATION_REASONS

_RES = ", ".join(f"'{r}'" for r in RESERVATION_REASONS)


@dataclass(frozen=True)
class Move:
    sku: str
    qty: int
    reason: str
    note: str | None = None


def apply_moves(conn: sqlite3.Connection, moves: Iterable[Move], ref_type: str, ref_id: str,
                ctx: WriteContext) -> list[dict]:
    """Append moves and update their balances; both or neither (the caller's transaction).

    Returns the moves as the sync protocol carries them in an event's payload."""
    done = []
    for move in moves:
        if move.reason not in MOVE_REASONS:
            raise ValueError(f"unknown move reason {move.reason!r}")
        done.append({"sku": move.sku, "qty": move.qty, "reason": move.reason})
        reserved = move.reason in RESERVATION_REASONS
        conn.execute(
            "INSERT INTO stock_moves (sku, qty, reason, ref_type, ref_id, device, note, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (move.sku, move.qty, move.reason, ref_type, ref_id, ctx.device, move.note, ctx.now))
        conn.execute(
            "INSERT INTO stock_balances (sku, on_hand, reserved, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (sku) DO UPDATE SET on_hand = on_hand + excluded.on_hand, "
            "reserved = reserved + excluded.reserved, updated_at = excluded.updated_at",
            (move.sku, 0 if reserved else move.qty, move.qty if reserved else 0, ctx.now))
    return done


# -- queries --------------------------------------------------------------------------------------

BALANCE_COLUMNS = ("p.sku, p.name, p.unit, p.price_fen, p.low_stock, p.category, p.active, "
                   "coalesce(b.on_hand, 0) AS on_hand, coalesce(b.reserved, 0) AS reserved, "
                   "coalesce(b.available, 0) AS available, b.updated_at")


def balance_row(row: sqlite3.Row) -> dict:
    out = dict(row)
    out["active"] = bool(out["active"])
    out["low"] = out["available"] <= out["low_stock"]
    return out


def get_balance(conn: sqlite3.Connection, sku: str) -> dict:
    row = conn.execute(f"SELECT {BALANCE_COLUMNS} FROM products p LEFT JOIN stock_balances b USING (sku) "
                       "WHERE p.sku = ?", (sku,)).fetchone()
    if row is None:
        raise NotFound("unknown_sku", f"no product with SKU {sku}", field="sku")
    return balance_row(row)


def list_balances(conn: sqlite3.Connection, *, q: str | None = None, low: bool = False,
                  category: str | None = None, after: str | None = None, limit: int = 100) -> dict:
    """Products with their stock, in SKU order, one page at a time (`after` = the last SKU seen).

    q matches part of a SKU or name, a whole barcode, or part of the name's pinyin or initials
    (`kele`, `kl` or `ke` find 可乐), ASCII case ignored."""
    where, args = ["p.active = 1"], []
    if q:
        match = ["p.sku LIKE ? ESCAPE '\\'", "p.name LIKE ? ESCAPE '\\'",
                 "p.sku IN (SELECT sku FROM barcodes WHERE code = ?)"]
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        args += [pattern, pattern, q]
        key = search_key(q)
        if key is not None:   # only letters and digits: nothing to escape
            match += ["p.name_pinyin LIKE ?", "p.name_initials LIKE ?"]
            args += [f"%{key}%", f"%{key}%"]
        where.append(f"({' OR '.join(match)})")
    if low:
        where.append("coalesce(b.available, 0) <= p.low_stock")
    if category:
        where.append("p.category = ?")
        args.append(category)
    if after:
        where.append("p.sku > ?")
        args.append(after)
    rows = conn.execute(f"SELECT {BALANCE_COLUMNS} FROM products p LEFT JOIN stock_balances b USING (sku) "
                        f"WHERE {' AND '.join(where)} ORDER BY p.sku LIMIT ?", (*args, limit + 1)).fetchall()
    items = [balance_row(r) for r in rows[:limit]]
    return {"items": items, "next_after": items[-1]["sku"] if len(rows) > limit else None}


def move_history(conn: sqlite3.Connection, sku: str, *, before: int | None = None, limit: int = 100) -> dict:
    get_balance(conn, sku)  # 404 for an unknown SKU
    rows = conn.execute(
        "SELECT id, qty, reason, ref_type, ref_id, device, note, created_at FROM stock_moves "
        "WHERE sku = ? AND id < ? ORDER BY id DESC LIMIT ?",
        (sku, before if before is not None else 2**63 - 1, limit + 1)).fetchall()
    items = [dict(r) for r in rows[:limit]]
    return {"items": items, "next_before": items[-1]["id"] if len(rows) > limit else None}


# -- the invariant --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Mismatch:
    sku: str
    on_hand: int | None
    reserved: int | None
    moves_on_hand: int
    moves_reserved: int

    def __str__(self) -> str:
        if self.on_hand is None:
            return f"{self.sku}: has moves (on hand {self.moves_on_hand}, reserved {self.moves_reserved}) but no balance"
        return (f"{self.sku}: balance on hand {self.on_hand}, reserved {self.reserved}; "
                f"moves sum to on hand {self.moves_on_hand}, reserved {self.moves_reserved}")


def verify(conn: sqlite3.Connection) -> tuple[int, list[Mismatch]]:
    """Compare every balance with the sum of its moves. Returns (moves checked, mismatches)."""
    sums = (f"SELECT sku, sum(CASE WHEN reason IN ({_RES}) THEN 0 ELSE qty END) AS oh, "
            f"sum(CASE WHEN reason IN ({_RES}) THEN qty ELSE 0 END) AS rs, count(*) AS n "
            "FROM stock_moves GROUP BY sku")
    rows = conn.execute(
        f"WITH m AS ({sums}) "
        "SELECT b.sku, b.on_hand, b.reserved, coalesce(m.oh, 0) AS oh, coalesce(m.rs, 0) AS rs "
        "FROM stock_balances b LEFT JOIN m USING (sku) "
        "WHERE b.on_hand <> coalesce(m.oh, 0) OR b.reserved <> coalesce(m.rs, 0) "
        "UNION ALL "
        "SELECT m.sku, NULL, NULL, m.oh, m.rs FROM m WHERE m.sku NOT IN (SELECT sku FROM stock_balances) "
        "ORDER BY 1").fetchall()
    moves = conn.execute("SELECT count(*) FROM stock_moves").fetchone()[0]
    return moves, [Mismatch(*r) for r in rows]


# -- stock documents: goods received, adjustments, counts ----------------------------------------

EVENTS = {"receipt": "stock.received", "adjustment": "stock.adjusted", "count": "stock.counted"}


def _resolve(conn: sqlite3.Connection, lines, *, unique: bool) -> list[str]:
    skus = [resolve_sku(conn, line, f"lines[{i}]") for i, line in enumerate(lines)]
    seen: set[str] = set()
    for index, sku in enumerate(skus if unique else ()):
        if sku in seen:
            raise InputError("duplicate_line", f"SKU {sku} is on more than one line", field=f"lines[{index}]")
        seen.add(sku)
    return skus


def _record_document(conn: sqlite3.Connection, kind: str, ctx: WriteContext, rows: list[tuple], *,
                     supplier: str | None = None, note: str | None = None) -> dict:
    """Write a document, its lines (sku, qty, counted, expected, cost_fen), a `kind` move for each
    non-zero qty, and its outbox event."""
    doc_id = str(uuid.uuid4())
    conn.execute("INSERT INTO stock_documents (id, kind, device, supplier, note, created_at) "
                 "VALUES (?, ?, ?, ?, ?, ?)", (doc_id, kind, ctx.device, supplier, note, ctx.now))
    conn.executemany("INSERT INTO stock_document_lines (document_id, line_no, sku, qty, counted, expected, cost_fen) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?)", [(doc_id, no, *row) for no, row in enumerate(rows, start=1)])
    move_note = note if kind == "adjustment" else None
    moves = apply_moves(conn, (Move(row[0], row[1], kind, move_note) for row in rows if row[1]), kind, doc_id, ctx)
    doc = get_document(conn, doc_id)
    outbox.emit(conn, EVENTS[kind], {**doc, "moves": moves}, ctx.now)
    return doc


def record_receipt(conn: sqlite3.Connection, body: ReceiptIn, ctx: WriteContext) -> dict:
    skus = _resolve(conn, body.lines, unique=False)
    return _record_document(conn, "receipt", ctx, [(sku, line.qty, None, None, line.cost_fen)
                                                    for sku, line in zip(skus, body.lines)],
                            supplier=body.supplier, note=body.note)


def record_adjustment(conn: sqlite3.Connection, body: AdjustmentIn, ctx: WriteContext) -> dict:
    skus = _resolve(conn, body.lines, unique=True)
    return _record_document(conn, "adjustment", ctx, [(sku, line.qty, None, None, None)
                                                       for sku, line in zip(skus, body.lines)], note=body.note)


def record_count(conn: sqlite3.Connection, body: CountIn, ctx: WriteContext) -> dict:
    """A stocktake: the counted quantity is recorded and the difference becomes a 'count' move."""
    skus = _resolve(conn, body.lines, unique=True)
    rows = []
    for sku, line in zip(skus, body.lines):
        row = conn.execute("SELECT on_hand FROM stock_balances WHERE sku = ?", (sku,)).fetchone()
        expected = row[0] if row else 0
        rows.append((sku, line.counted - expected, line.counted, expected, None))
    return _record_document(conn, "count", ctx, rows, note=body.note)


def get_document(conn: sqlite3.Connection, doc_id: str) -> dict:
    doc = conn.execute("SELECT * FROM stock_documents WHERE id = ?", (doc_id,)).fetchone()
    if doc is None:
        raise NotFound("unknown_document", f"no stock document {doc_id}")
    lines = conn.execute(
        "SELECT l.line_no, l.sku, p.name, l.qty, l.counted, l.expected, l.cost_fen, "
        "coalesce(b.on_hand, 0) AS on_hand_now FROM stock_document_lines l JOIN products p USING (sku) "
        "LEFT JOIN stock_balances b USING (sku) WHERE l.document_id = ? ORDER BY l.line_no", (doc_id,))
    out = dict(doc)
    out["lines"] = [{k: v for k, v in dict(r).items() if v is not None or k in ("qty",)} for r in lines]
    return out


def verify_file(db_path: str | Path) -> tuple[int, list]:
    """`verify` on a read-only connection of its own, in one snapshot (a running daemon may be writing)."""
    conn = sqlite.connect(db_path, readonly=True)
    try:
        with sqlite.snapshot(conn):
            return verify(conn)
    finally:
        conn.close()
