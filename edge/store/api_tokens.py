"""Per-device API tokens for tills on the LAN. Only a SHA-256 of each token is stored."""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3

from edge.core.errors import InputError

DEVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create(conn: sqlite3.Connection, device: str, now: str) -> str:
    """A new token for a device (replacing any earlier one); the only time it is shown."""
    if not DEVICE_NAME.match(device):
        raise InputError("bad_device_name", "a device name is 1-32 letters, digits, _ or -, e.g. till-1")
    token = "se_" + secrets.token_urlsafe(32)
    conn.execute("INSERT INTO api_tokens (device, token_hash, created_at) VALUES (?, ?, ?) "
                 "ON CONFLICT (device) DO UPDATE SET token_hash = excluded.token_hash, "
                 "created_at = excluded.created_at, revoked_at = NULL", (device, _hash(token), now))
    return token


def revoke(conn: sqlite3.Connection, device: str, now: str) -> bool:
    return conn.execute("UPDATE api_tokens SET revoked_at = ? WHERE device = ? AND revoked_at IS NULL",
                        (now, device)).rowcount == 1


def listing(conn: sqlite3.Connection) -> list[dict]:
    return [dict(r) for r in conn.execute("SELECT device, created_at, revoked_at FROM api_tokens ORDER BY device")]


def device_for(conn: sqlite3.Connection, token: str) -> str | None:
    row = conn.execute("SELECT device FROM api_tokens WHERE token_hash = ? AND revoked_at IS NULL",
                       (_hash(token),)).fetchone()
    return row[0] if row else None
