"""Dashboard users, sessions and the audit log (SQLite; called inside the caller's transaction).

Passwords are hashed with scrypt (standard library): half a second of CPU and 128 MiB on purpose, so never
inside a write transaction, where it would hold the store's one writer (and every sale behind it).
A new password is hashed first (`new_password`) and its hash handed to `add_user`; a login reads the
stored hash (`login_hash`), checks it outside any transaction (`password_matches`), then opens the
session in a short write (`open_session`). A session is a random token in an HttpOnly,
SameSite=Strict cookie; the store keeps only its SHA-256, with a CSRF token every form and action
must send back, and an expiry that slides while the person is active.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import re
import secrets
import sqlite3
import threading
from datetime import datetime, timedelta

from edge.core.errors import InputError

ROLES = ("cashier", "manager")
SESSION_COOKIE = "se_session"  # the dashboard's session cookie (the status page at / reads it too)
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
MIN_PASSWORD = 8
# OWASP's current guidance for scrypt (N=2^17, r=8, p=1): 128 MiB and, measured on a 2-core AMD EPYC
# virtual machine under load, 0.59 s a hash (2^14, the cost before, 0.07 s). The cost is written
# into each hash, so a hash made with an older, cheaper cost still verifies. Never on the store's
# writer thread: see the module note.
SCRYPT_GUIDANCE = {"n": 2**17, "r": 8, "p": 1}
SCRYPT = dict(SCRYPT_GUIDANCE)
# At 128 MiB a check, two at once at most: a burst of logins must not take the PC's memory.
_HASHING = threading.BoundedSemaphore(2)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    with _HASHING:
        return hashlib.scrypt(password.encode("utf-8"), salt=salt, dklen=32, n=n, r=r, p=p,
                              maxmem=2 * 128 * r * n + 2**20)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    cost = dict(SCRYPT)
    digest = _scrypt(password, salt, cost["n"], cost["r"], cost["p"])
    return "scrypt$%d$%d$%d$%s$%s" % (cost["n"], cost["r"], cost["p"],
                                      base64.b64encode(salt).decode(), base64.b64encode(digest).decode())


def check_password(password: str, stored: str) -> bool:
    try:
        _, n, r, p, salt, digest = stored.split("$")
        got = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


@functools.lru_cache(maxsize=4)
def _nobody(n: int, r: int, p: int) -> str:
    """A hash at the current cost to check when the user does not exist: the answer takes as long
    either way. Made on first use, not at import (a cost of a second would slow every command)."""
    return hash_password(secrets.token_hex(16))


class PasswordHash(str):
    """A password already hashed by `new_password`: what `add_user` stores."""


def check_user(name: str, role: str) -> None:
    """Refuse a bad name or role before anything is hashed or written."""
    if not NAME.fullmatch(name):
        raise InputError("invalid_name", "a user name is 1-32 letters, digits, _ . - (starting with a letter "
                         "or digit)", field="name")
    if role not in ROLES:
        raise InputError("invalid_role", f"role must be one of {', '.join(ROLES)}", field="role")


def new_password(password: str) -> PasswordHash:
    """The hash of a new password, made before (never inside) the transaction that stores it."""
    if len(password) < MIN_PASSWORD:
        raise InputError("weak_password", f"a password has at least {MIN_PASSWORD} characters", field="password")
    return PasswordHash(hash_password(password))


def add_user(conn: sqlite3.Connection, name: str, display_name: str, role: str, password: PasswordHash,
             now: str) -> dict:
    """Create or update a user with a hash from `new_password` (scrypt is slow on purpose: never in here)."""
    check_user(name, role)
    if not isinstance(password, PasswordHash):
        raise TypeError("add_user takes users.new_password(...), hashed before the transaction")
    conn.execute("INSERT INTO users (name, display_name, role, password_hash, created_at, updated_at) "
                 "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET display_name = excluded.display_name, "
                 "role = excluded.role, password_hash = excluded.password_hash, active = 1, "
                 "updated_at = excluded.updated_at",
                 (name, display_name or name, role, str(password), now, now))
    # a new password ends every session of the old one
    conn.execute("DELETE FROM sessions WHERE user_name = ?", (name,))
    return get_user(conn, name)


def get_user(conn: sqlite3.Connection, name: str) -> dict | None:
    row = conn.execute("SELECT name, display_name, role, active, created_at FROM users WHERE name = ?",
                       (name,)).fetchone()
    return dict(row) if row else None


def list_users(conn: sqlite3.Connection) -> list[dict]:
    return [dict(r) for r in conn.execute("SELECT name, display_name, role, active, created_at FROM users "
                                          "ORDER BY name")]


def disable_user(conn: sqlite3.Connection, name: str, now: str) -> bool:
    conn.execute("DELETE FROM sessions WHERE user_name = ?", (name,))
    return conn.execute("UPDATE users SET active = 0, updated_at = ? WHERE name = ?", (now, name)).rowcount == 1


def _later(now: str, hours: float) -> str:
    moment = datetime.fromisoformat(now.replace("Z", "+00:00")) + timedelta(hours=hours)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def login_hash(conn: sqlite3.Connection, name: str) -> str | None:
    """The stored hash of an active user (a read: the check itself runs outside any transaction)."""
    row = conn.execute("SELECT password_hash FROM users WHERE name = ? AND active = 1", (name,)).fetchone()
    return row[0] if row else None


def password_matches(password: str, stored: str | None) -> bool:
    """Whether the password is right; for an unknown user it checks a fixed hash, so the answer takes
    as long either way. CPU-heavy: call it on a worker thread."""
    ok = check_password(password, stored if stored is not None else _nobody(**SCRYPT))
    return ok and stored is not None


def open_session(conn: sqlite3.Connection, name: str, checked_hash: str, now: str,
                 hours: float) -> tuple[str, dict] | None:
    """(cookie token, session) for a user whose password was checked against `checked_hash`; None if
    the user was disabled or given a new password since that check."""
    if login_hash(conn, name) != checked_hash:
        return None
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    conn.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))
    conn.execute("INSERT INTO sessions (token_sha256, user_name, csrf, created_at, expires_at, last_seen_at) "
                 "VALUES (?, ?, ?, ?, ?, ?)", (_sha(token), name, csrf, now, _later(now, hours), now))
    return token, session(conn, token, now)


def session(conn: sqlite3.Connection, token: str, now: str) -> dict | None:
    """The live session of a cookie token: user, role, csrf; None when unknown, expired or disabled."""
    if not token or len(token) > 100:
        return None
    row = conn.execute("SELECT s.user_name, s.csrf, s.expires_at, s.last_seen_at, u.display_name, u.role "
                       "FROM sessions s JOIN users u ON u.name = s.user_name "
                       "WHERE s.token_sha256 = ? AND s.expires_at > ? AND u.active = 1", (_sha(token), now)).fetchone()
    if row is None:
        return None
    return {"user": row[0], "csrf": row[1], "expires_at": row[2], "last_seen_at": row[3], "display_name": row[4],
            "role": row[5]}


def touch(conn: sqlite3.Connection, token: str, now: str, hours: float) -> None:
    """Slide the expiry while the person works (called at most once a minute per session)."""
    conn.execute("UPDATE sessions SET last_seen_at = ?, expires_at = ? WHERE token_sha256 = ?",
                 (now, _later(now, hours), _sha(token)))


def log_out(conn: sqlite3.Connection, token: str) -> None:
    conn.execute("DELETE FROM sessions WHERE token_sha256 = ?", (_sha(token),))


def audit(conn: sqlite3.Connection, who: dict, action: str, target: str | None, detail: dict | None,
          now: str) -> None:
    """One line of the audit log, in the transaction of what it records."""
    conn.execute("INSERT INTO audit_log (at, user_name, role, action, target, detail) VALUES (?, ?, ?, ?, ?, ?)",
                 (now, who["user"], who["role"], action, target,
                  json.dumps(detail, ensure_ascii=False) if detail else None))


def audit_login(conn: sqlite3.Connection, name: str, action: str, detail: dict, now: str) -> bool:
    """A refused login in the audit log, under the account it was tried on; False for a name that is no
    account (the log names only real accounts: the caller logs those instead)."""
    row = conn.execute("SELECT role FROM users WHERE name = ?", (name,)).fetchone()
    if row is None:
        return False
    audit(conn, {"user": name, "role": row[0]}, action, name, detail, now)
    return True


def audit_entries(conn: sqlite3.Connection, *, before: int | None = None, limit: int = 100) -> dict:
    rows = conn.execute("SELECT * FROM audit_log WHERE id < ? ORDER BY id DESC LIMIT ?",
                        (before or 2**63 - 1, limit + 1)).fetchall()
    items = [{**dict(r), "detail": json.loads(r["detail"]) if r["detail"] else None} for r in rows[:limit]]
    return {"items": items, "next_before": items[-1]["id"] if len(rows) > limit else None}
