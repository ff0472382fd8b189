"""The transactional outbox and the upload queue on top of it.

A fact the cloud must learn is written here in the fact's own transaction (`emit`); the sync
uploader (sync/) sends events in `seq` order, and `id` is permanent, so the cloud can dedupe.
An event is unsent while its seq is above `acked_seq` and it is not a dead letter. Nothing leaves
the queue by age; only the cloud's answer or an operator's act moves an event.
Functions take a connection inside the caller's transaction (the store's writer or a reader).
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from dataclasses import dataclass

from edge.core.context import WriteContext
from edge.core.errors import InputError, NotFound
from protocol.events import check_payload


def emit(conn: sqlite3.Connection, event_type: str, payload: dict, created_at: str) -> str:
    """Write an event in the caller's transaction. A payload off the protocol raises (ValueError): it is
    this program's bug, and sent it would only come back rejected, after the fact was committed."""
    check_payload(event_type, payload)
    event_id = str(uuid.uuid4())
    conn.execute("INSERT INTO outbox (id, type, payload, created_at) VALUES (?, ?, ?, ?)",
                 (event_id, event_type, json.dumps(payload, ensure_ascii=False, separators=(",", ":")),
                  created_at))
    return event_id


def get_state(conn: sqlite3.Connection, key: str, default: str | None = None) -> str | None:
    row = conn.execute("SELECT value FROM sync_state WHERE key = ?", (key,)).fetchone()
    return row[0] if row else default


def set_state(conn: sqlite3.Connection, key: str, value) -> None:
    conn.execute("INSERT INTO sync_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = "
                 "excluded.value", (key, str(value)))


def acked_seq(conn) -> int:
    return int(get_state(conn, "acked_seq", "0"))


def seq_offset(conn) -> int:
    return int(get_state(conn, "seq_offset", "0"))


def max_seq(conn) -> int:
    return conn.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0]


def pending_batch(conn: sqlite3.Connection, store_id: str, limit: int) -> list[dict]:
    """The next unsent events as protocol envelopes, in seq order.

    A dead letter the operator already retried or discarded is sent again only when the cloud was
    restored and lost it, and then as `event.voided`: its fact went (or will never go) up as another
    event, so applying the original now would count it twice."""
    offset = seq_offset(conn)
    rows = conn.execute(
        "SELECT o.seq, o.id, o.type, o.payload, o.created_at, d.resolution FROM outbox o "
        "LEFT JOIN dead_letters d ON d.seq = o.seq WHERE o.seq > ? ORDER BY o.seq LIMIT ?",
        (acked_seq(conn), limit)).fetchall()
    batch = []
    for r in rows:
        event_type, payload = r["type"], json.loads(r["payload"])
        if r["resolution"] is not None:
            event_type, payload = "event.voided", {"voided_type": r["type"], "resolution": r["resolution"]}
        batch.append({"local_seq": r["seq"], "id": r["id"], "store_id": store_id, "seq": r["seq"] + offset,
                      "type": event_type, "created_at": r["created_at"], "payload": payload})
    return batch


def envelope(event: dict) -> dict:
    return {k: v for k, v in event.items() if k != "local_seq"}


@dataclass(frozen=True)
class Acked:
    applied: int
    rejected: int


def record_results(conn: sqlite3.Connection, batch: list[dict], results: list, now: str) -> Acked:
    """The per-event results of an answer: dead-letter the rejected ones."""
    by_id = {event["id"]: event for event in batch}
    applied = rejected = 0
    for result in results:
        event = by_id.get(result.get("id")) if isinstance(result, dict) else None
        if event is None:
            continue  # not ours: ignored, the seq bookkeeping below still holds
        if result.get("status") == "rejected":
            conn.execute("INSERT OR IGNORE INTO dead_letters (seq, reason, rejected_at) VALUES (?, ?, ?)",
                         (event["local_seq"], str(result.get("reason") or "rejected by the cloud")[:500], now))
            rejected += 1
        elif result.get("status") in ("applied", "duplicate"):
            # resent after the cloud was restored, and accepted this time: no longer a dead letter
            conn.execute("DELETE FROM dead_letters WHERE seq = ? AND resolution IS NULL", (event["local_seq"],))
            applied += 1
    return Acked(applied, rejected)


def resync(conn: sqlite3.Connection, expected_wire_seq: int, cap: int) -> None:
    """The cloud expects `expected_wire_seq` next: it holds everything before it (up to `cap`, the
    last event this answer can speak for)."""
    through = min(expected_wire_seq - 1 - seq_offset(conn), cap)
    set_state(conn, "acked_seq", max(0, through))


def renumber(conn: sqlite3.Connection, expected_wire_seq: int) -> None:
    """seq_taken: the cloud holds events this store no longer has (restored from a backup).
    Number the unsent events from what the cloud expects."""
    set_state(conn, "seq_offset", expected_wire_seq - (acked_seq(conn) + 1))


# -- dead letters -----------------------------------------------------------------------------------

def dead_letters(conn: sqlite3.Connection, *, include_resolved: bool = False, limit: int = 200) -> list[dict]:
    where = "" if include_resolved else "WHERE d.resolution IS NULL"
    return [{**dict(r), "payload": json.loads(r["payload"])} for r in conn.execute(
        "SELECT d.seq, o.id AS event_id, o.type, o.created_at, d.reason, d.rejected_at, d.resolution, "
        f"d.resolved_at, d.operator, d.note, o.payload FROM dead_letters d JOIN outbox o USING (seq) {where} "
        "ORDER BY d.seq LIMIT ?", (limit,))]


def _open_dead_letter(conn, seq: int) -> sqlite3.Row:
    row = conn.execute("SELECT d.seq, d.resolution, o.id, o.type, o.payload FROM dead_letters d "
                       "JOIN outbox o USING (seq) WHERE d.seq = ?", (seq,)).fetchone()
    if row is None:
        raise NotFound("unknown_dead_letter", f"no dead letter with seq {seq}")
    if row["resolution"] is not None:
        raise InputError("already_resolved", f"dead letter {seq} was already {row['resolution']}", status=409)
    return row


def retry_dead_letter(conn: sqlite3.Connection, seq: int, operator: str, note: str | None,
                      ctx: WriteContext) -> dict:
    """Send the rejected fact again as a new event (new id, next seq), after its cause was fixed."""
    row = _open_dead_letter(conn, seq)
    payload = {**json.loads(row["payload"]), "retry_of": row["id"]}
    new_id = emit(conn, row["type"], payload, ctx.now)
    conn.execute("UPDATE dead_letters SET resolution = 'retried', resolved_at = ?, operator = ?, note = ? "
                 "WHERE seq = ?", (ctx.now, operator, note, seq))
    return {"seq": seq, "resolution": "retried", "new_event_id": new_id}


def discard_dead_letter(conn: sqlite3.Connection, seq: int, operator: str, note: str | None,
                        ctx: WriteContext) -> dict:
    """Give up on a rejected event; the cloud is told, so both sides know it will never apply."""
    row = _open_dead_letter(conn, seq)
    emit(conn, "dead_letter.discarded", {"event_id": row["id"], "type": row["type"], "operator": operator,
                                                "reason": note}, ctx.now)
    conn.execute("UPDATE dead_letters SET resolution = 'discarded', resolved_at = ?, operator = ?, note = ? "
                 "WHERE seq = ?", (ctx.now, operator, note, seq))
    return {"seq": seq, "resolution": "discarded"}


# -- status -----------------------------------------------------------------------------------------

def queue_status(conn: sqlite3.Connection) -> dict:
    acked = acked_seq(conn)
    # everything above acked_seq is due, dead letters too (after a cloud restore they are resent)
    by_type = {t: n for t, n in conn.execute(
        "SELECT type, count(*) FROM outbox WHERE seq > ? GROUP BY type ORDER BY type", (acked,))}
    oldest = conn.execute("SELECT min(created_at) FROM outbox WHERE seq > ?", (acked,)).fetchone()[0]
    return {
        "depth": sum(by_type.values()), "by_type": by_type, "oldest_unsent_at": oldest,
        "acked_seq": acked, "last_seq": max_seq(conn),
        "dead_letters": conn.execute("SELECT count(*) FROM dead_letters WHERE resolution IS NULL").fetchone()[0],
        "rejected_changes": conn.execute("SELECT count(*) FROM inbox WHERE status = 'rejected'").fetchone()[0],
        "cursor": int(get_state(conn, "cursor", "0")), "epoch": get_state(conn, "epoch"),
    }
