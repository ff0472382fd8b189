"""The transactional outbox: facts the cloud must learn, written in the fact's own transaction.

The sync uploader (sync/) sends them in `seq` order; `id` is permanent, so the cloud can dedupe.
"""

from __future__ import annotations

import json
import sqlite3
import uuid


def emit(conn: sqlite3.Connection, event_type: str, payload: dict, created_at: str) -> str:
    event_id = str(uuid.uuid4())
    conn.execute("INSERT INTO outbox (id, type, payload, created_at) VALUES (?, ?, ?, ?)",
                 (event_id, event_type, json.dumps(payload, ensure_ascii=False, separators=(",", ":")),
                  created_at))
    return event_id
