"""Ed25519 signing keys and JWS compact tokens (EdDSA) for pickups and coupons: docs/tokens.md.

The hub signs; stores verify with the public keys the hub publishes (`key.published`). A key is kept
as its 32-byte raw private key (the seed); its public part travels as base64 (standard, padded) of
the 32-byte raw public key, as sync/changes.py takes it.
"""

from __future__ import annotations

import base64
import json
import secrets
from datetime import datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PrivateFormat, PublicFormat, NoEncryption

ALG = "EdDSA"            # the JWS header's alg (RFC 8037)
KEY_ALG = "Ed25519"      # the key.published payload's alg
TYP_PICKUP = "se-pickup+jwt"
TYP_COUPON = "se-coupon+jwt"
MAX_TOKEN = 1024


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    if not isinstance(text, str) or not text or any(c not in _B64URL for c in text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def new_kid(now: datetime) -> str:
    """`k-<yyyymm>-<random>`, e.g. k-202611-3f9c2a."""
    return f"k-{now:%Y%m}-{secrets.token_hex(3)}"


def new_key() -> tuple[bytes, str]:
    """A new key: (32-byte raw private key, base64 of the 32-byte raw public key)."""
    private = Ed25519PrivateKey.generate()
    raw = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return raw, public_key_b64(raw)


def public_key_b64(private_raw: bytes) -> str:
    public = Ed25519PrivateKey.from_private_bytes(private_raw).public_key()
    return base64.b64encode(public.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode("ascii")


def _json(obj: dict) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def sign(private_raw: bytes, kid: str, typ: str, claims: dict) -> str:
    """A JWS compact token: header {alg, kid, typ}, the claims, an Ed25519 signature over `h.p`."""
    signing_input = b64url(_json({"alg": ALG, "kid": kid, "typ": typ})) + "." + b64url(_json(claims))
    signature = Ed25519PrivateKey.from_private_bytes(private_raw).sign(signing_input.encode("ascii"))
    token = signing_input + "." + b64url(signature)
    if len(token) > MAX_TOKEN:
        raise ValueError(f"the token is {len(token)} characters, more than {MAX_TOKEN}")
    return token


def verify(token: str, public_keys: dict[str, str]) -> tuple[dict, dict]:
    """(header, claims) of a token signed by one of `public_keys` (kid -> base64 raw public key).

    Checks the form and the signature only (not exp/nbf/sid): ValueError with a docs/tokens.md reason
    code (`malformed`, `unknown_key`, `bad_signature`) otherwise. For the hub's own checks and tests."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN or token.count(".") != 2:
        raise ValueError("malformed")
    h, p, s = token.split(".")
    try:
        header, claims, signature = json.loads(b64url_decode(h)), json.loads(b64url_decode(p)), b64url_decode(s)
    except ValueError:
        raise ValueError("malformed") from None
    if not isinstance(header, dict) or set(header) != {"alg", "kid", "typ"} or header["alg"] != ALG \
            or not isinstance(claims, dict):
        raise ValueError("malformed")
    key = public_keys.get(header["kid"]) if isinstance(header["kid"], str) else None
    if key is None:
        raise ValueError("unknown_key")
    try:
        Ed25519PublicKey.from_public_bytes(base64.b64decode(key)).verify(signature, f"{h}.{p}".encode("ascii"))
    except (InvalidSignature, ValueError):
        raise ValueError("bad_signature") from None
    return header, claims
