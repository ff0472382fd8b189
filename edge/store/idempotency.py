"""Idempotency keys for every write (the IETF Idempotency-Key header).

The key's record is written in the same transaction as the write itself, so a retry after a crash
either finds the whole result or finds nothing and runs again. The same key with a different
request is refused; a failed request (4xx) stores nothing, so it can be corrected and resent.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from typing import Any, Callable

from edge.core.context import WriteContext
from edge.core.errors import InputError

KEY = re.compile(r"^[\x21-\x7e]{1,128}$")


def request_hash(method: str, path: str, body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


def check_key(key: str | None) -> str:
    if key is None:
        raise InputError("idempotency_key_missing", "every write needs an Idempotency-Key header "
                         "(a unique string per operation, e.g. a UUID)", field="Idempotency-Key", status=400)
    if not KEY.match(key):
        raise InputError("idempotency_key_invalid", "Idempotency-Key must be 1-128 visible ASCII characters",
                         field="Idempotency-Key", status=400)
    return key


def run_once(conn: sqlite3.Connection, key: str, req_hash: str, ctx: WriteContext,
             fn: Callable[[], dict]) -> tuple[int, dict, bool]:
    """(status, body, replayed): the stored answer for a known key, else fn's result, stored."""
    row = conn.execute("SELECT request_hash, status, response FROM idempotency_keys WHERE device = ? AND key = ?",
                       (ctx.device, key)).fetchone()
    if row is not None:
        if row["request_hash"] != req_hash:
            raise InputError("idempotency_key_reused", "this Idempotency-Key was already used for a different "
                             "request; use a new key for a new operation", field="Idempotency-Key")
        return row["status"], json.loads(row["response"]), True
    body = fn()
    conn.execute("INSERT INTO idempotency_keys (device, key, request_hash, status, response, created_at) "
                 "VALUES (?, ?, ?, ?, ?, ?)",
                 (ctx.device, key, req_hash, 201, json.dumps(body, ensure_ascii=False), ctx.now))
    return 201, body, False
