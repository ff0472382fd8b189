"""Reconciliation's side in the store: the balances the cloud should hold, and the differences found,
each recorded for the manager and corrected by a `stock.corrected` event (sync/reconcile.py asks the
cloud and decides when)."""

from __future__ import annotations

import json
import sqlite3

from edge.core.clock import iso, utcnow
from edge.store import outbox
from protocol.stock import RESERVATION_REASONS, checksum


def expected_cloud_balances(conn: sqlite3.Connection) -> dict[str, tuple[int, int]]:
    """The store's balances less the moves of events the cloud rejected (and was not sent again)."""
    balances = {sku: (on_hand, reserved) for sku, on_hand, reserved in conn.execute(
        "SELECT sku, on_hand, reserved FROM stock_balances")}
    for (payload,) in conn.execute("SELECT o.payload FROM dead_letters d JOIN outbox o USING (seq) "
                                   "WHERE d.resolution IS NULL OR d.resolution = 'discarded'"):
        for move in json.loads(payload).get("moves", []):
            on_hand, reserved = balances.get(move["sku"], (0, 0))
            if move["reason"] in RESERVATION_REASONS:
                reserved -= move["qty"]
            else:
                on_hand -= move["qty"]
            balances[move["sku"]] = (on_hand, reserved)
    return balances


def snapshot(conn: sqlite3.Connection) -> tuple[int, int, dict, str]:
    """(acked seq, queue depth, expected balances, their checksum) from one snapshot; the checksum is
    computed here so that hashing every balance runs on the long-job thread, not the event loop."""
    status = outbox.queue_status(conn)
    expected = expected_cloud_balances(conn)
    return status["acked_seq"], status["depth"], expected, checksum(expected)


def correct(conn: sqlite3.Connection, expected: dict, cloud: dict, acked: int) -> list[dict]:
    if outbox.queue_status(conn)["acked_seq"] != acked or outbox.queue_status(conn)["depth"]:
        return []  # something was written meanwhile: the next run compares again
    now = iso(utcnow())
    diffs, moves = [], []
    for sku in sorted(set(expected) | set(cloud)):
        mine, theirs = expected.get(sku, (0, 0)), cloud.get(sku, (0, 0))
        if mine == theirs:
            continue
        diffs.append((sku, mine, theirs))
        if mine[0] != theirs[0]:
            moves.append({"sku": sku, "qty": mine[0] - theirs[0], "reason": "correction"})
        if mine[1] != theirs[1]:
            delta = mine[1] - theirs[1]
            moves.append({"sku": sku, "qty": delta, "reason": "reserve" if delta > 0 else "release"})
    if not diffs:
        return []
    event_id = outbox.emit(conn, "stock.corrected", {
        "source": "reconciliation", "reason": "the cloud's copy differed from the store's ledger",
        "differences": [{"sku": s, "store": {"on_hand": m[0], "reserved": m[1]},
                         "cloud": {"on_hand": t[0], "reserved": t[1]}} for s, m, t in diffs],
        "moves": moves}, now)
    conn.executemany("INSERT INTO reconciliations (run_at, sku, store_on_hand, store_reserved, cloud_on_hand, "
                     "cloud_reserved, event_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                     [(now, s, m[0], m[1], t[0], t[1], event_id) for s, m, t in diffs])
    return [{"sku": s, "store": m, "cloud": t} for s, m, t in diffs]


def list_reconciliations(conn: sqlite3.Connection, limit: int = 200) -> list[dict]:
    return [dict(r) for r in conn.execute("SELECT * FROM reconciliations ORDER BY id DESC LIMIT ?", (limit,))]
