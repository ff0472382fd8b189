"""Pickup and coupon tokens signed by the cloud: JWS compact, EdDSA (Ed25519). See docs/tokens.md.

Only verification lives here (the store never signs). Keys come from the sync feed
(`verification_keys`); a token is checked completely before anything looks at the order or coupon
it names, and every refusal carries one reason code from docs/tokens.md.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import sqlite3
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

MAX_LENGTH = 1024
CLOCK_SKEW = 60  # seconds a till's clock may be off against the cloud's
TYPES = {"se-pickup+jwt": "pickup", "se-coupon+jwt": "coupon"}
_PART = re.compile(r"^[A-Za-z0-9_-]+$")
_ID = re.compile(r"^[\x21-\x7e]{1,64}$")  # printable ASCII without spaces


class TokenRefused(Exception):
    """The token is not accepted; `reason` is one of the codes of docs/tokens.md."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


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


def _b64(part: str) -> bytes:
    if not _PART.fullmatch(part):
        raise TokenRefused("malformed", "not base64url")
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise TokenRefused("malformed", "not base64url") from None


def _json(part: str) -> dict:
    try:
        value = json.loads(_b64(part).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise TokenRefused("malformed", "not JSON") from None
    if not isinstance(value, dict):
        raise TokenRefused("malformed", "not a JSON object")
    return value


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


def parse(text: str) -> tuple[dict, dict, bytes, bytes]:
    """(header, claims, signing input, signature) of a well-formed token, or TokenRefused('malformed')."""
    if not isinstance(text, str) or len(text) > MAX_LENGTH:
        raise TokenRefused("malformed", "longer than a token may be")
    parts = text.strip().split(".")
    if len(parts) != 3:
        raise TokenRefused("malformed", "not three parts")
    header, claims, signature = _json(parts[0]), _json(parts[1]), _b64(parts[2])
    if set(header) != {"alg", "kid", "typ"} or header["alg"] != "EdDSA" or header["typ"] not in TYPES \
            or not isinstance(header["kid"], str) or not _ID.fullmatch(header["kid"]):
        raise TokenRefused("malformed", "header must be exactly alg EdDSA, kid and a known typ")
    return header, claims, f"{parts[0]}.{parts[1]}".encode("ascii"), signature


def public_key(conn: sqlite3.Connection, kid: str) -> Ed25519PublicKey | None:
    row = conn.execute("SELECT public_key FROM verification_keys WHERE kid = ? AND alg = 'Ed25519' "
                       "AND revoked_at IS NULL", (kid,)).fetchone()
    if row is None:
        return None
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(row[0], validate=True))
    except (binascii.Error, ValueError):
        return None  # a key that never was a valid Ed25519 key verifies nothing


def verify(conn: sqlite3.Connection, text: str, *, store_id: str, now: float, kind: str | None = None) -> Token:
    """Check a token completely: form, key, signature, time, store. Raises TokenRefused."""
    header, claims, signing_input, signature = parse(text)
    token_kind = TYPES[header["typ"]]
    if kind is not None and token_kind != kind:
        raise TokenRefused("malformed", f"a {token_kind} token where a {kind} token was expected")
    key = public_key(conn, header["kid"])
    if key is None:
        raise TokenRefused("unknown_key", f"key {header['kid']} is not known here (or was revoked)")
    try:
        key.verify(signature, signing_input)
    except InvalidSignature:
        raise TokenRefused("bad_signature", "the signature does not match: forged or altered") from None
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
