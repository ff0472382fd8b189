"""Pickup and coupon tokens signed by the cloud: JWS compact, EdDSA (Ed25519). See docs/tokens.md.

Only verification lives here (the store never signs). Keys come from the sync feed
(`verification_keys`); a token is checked completely before anything looks at the order or coupon
it names, and every refusal carries one reason code from docs/tokens.md.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass

from edge.core import jws

MAX_LENGTH = jws.MAX_TOKEN
CLOCK_SKEW = 60  # seconds a till's clock may be off against the cloud's
TYPES = {jws.TYP_PICKUP: "pickup", jws.TYP_COUPON: "coupon"}
_ID = re.compile(r"^[\x21-\x7e]{1,64}$")  # printable ASCII without spaces

# One refusal type from the form checks (edge/core/jws.py) to the claims checks here: the callers and
# the cashier screen only look at `reason`.
TokenRefused = jws.JwsError


@dataclass(frozen=True)
class Token:
    kind: str          # "pickup" or "coupon"
    kid: str
    subject: str       # pickup: the order id; coupon: the serial
    store: str | None  # sid; None: any store (coupons only)
    expires: int
    not_before: int | None
    issued: int | None
    jti: str
    coupon_id: str | None = None


def _int(claims: dict, name: str, required: bool = True) -> int | None:
    value = claims.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**40:
        raise TokenRefused("malformed", f"claim {name} must be Unix seconds")
    return value


def _id(claims: dict, name: str, required: bool = True) -> str | None:
    value = claims.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise TokenRefused("malformed", f"claim {name} must be 1 to 64 printable characters")
    return value


def public_key(conn: sqlite3.Connection, kid: str) -> str | None:
    """The base64 public key published as `kid`, unless it was revoked."""
    row = conn.execute("SELECT public_key FROM verification_keys WHERE kid = ? AND alg = 'Ed25519' "
                       "AND revoked_at IS NULL", (kid,)).fetchone()
    return None if row is None else row[0]


def verify(conn: sqlite3.Connection, text: str, *, store_id: str, now: float, kind: str | None = None) -> Token:
    """Check a token completely: form, key, signature, time, store. Raises TokenRefused."""
    typs = tuple(typ for typ, k in TYPES.items() if kind is None or k == kind)
    header, claims = jws.verify(text.strip() if isinstance(text, str) else text,
                                lambda kid: public_key(conn, kid), typs)
    token_kind = TYPES[header["typ"]]
    token = Token(kind=token_kind, kid=header["kid"], subject=_id(claims, "sub"),
                  store=_id(claims, "sid", required=token_kind == "pickup"), expires=_int(claims, "exp"),
                  not_before=_int(claims, "nbf", False), issued=_int(claims, "iat", False), jti=_id(claims, "jti"),
                  coupon_id=_id(claims, "cid") if token_kind == "coupon" else None)
    if now > token.expires + CLOCK_SKEW:
        raise TokenRefused("expired", "the code has expired")
    if token.not_before is not None and now < token.not_before - CLOCK_SKEW:
        raise TokenRefused("not_yet_valid", "the code is not valid yet")
    if token.store is not None and token.store != store_id:
        raise TokenRefused("wrong_store", f"the code is for store {token.store}, not this one")
    return token


def add_config_keys(conn: sqlite3.Connection, keys, now: str) -> int:
    """Keys from config.toml, for a store that must verify before its first sync. A key the feed
    published (or revoked) is left as the feed says."""
    added = 0
    for key in keys:
        added += conn.execute("INSERT INTO verification_keys (kid, alg, public_key, updated_at) "
                              "VALUES (?, 'Ed25519', ?, ?) ON CONFLICT (kid) DO NOTHING",
                              (key.kid, key.public_key, now)).rowcount
    return added


def publish_key(conn: sqlite3.Connection, kid: str, alg: str, public_key: str, now: str) -> None:
    """A key from the cloud's feed: trusted from now on (again, if it had been revoked)."""
    conn.execute("INSERT INTO verification_keys (kid, alg, public_key, updated_at) VALUES (?, ?, ?, ?) "
                 "ON CONFLICT (kid) DO UPDATE SET alg = excluded.alg, public_key = excluded.public_key, "
                 "revoked_at = NULL, updated_at = excluded.updated_at", (kid, alg, public_key, now))


def revoke_key(conn: sqlite3.Connection, kid: str, now: str) -> bool:
    """False if the key was never published here."""
    return conn.execute("UPDATE verification_keys SET revoked_at = ?, updated_at = ? WHERE kid = ?",
                        (now, now, kid)).rowcount > 0
