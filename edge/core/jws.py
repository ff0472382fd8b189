"""Ed25519 signing keys and JWS compact tokens (EdDSA) for pickups and coupons: docs/tokens.md.

The one JWS implementation of the project, on joserfc: the hub signs with `sign`, the store verifies
with `verify` (edge/store/signed_tokens.py) and the scan classifier reads a token's header with
`unverified_header`. joserfc is used because it enforces what docs/tokens.md fixes: canonical
base64url only (a part re-spelled with other padding bits, with `=` or `+/` is refused), an
allow-list of algorithms, and a strict header registry (a member outside it is refused).

A key is kept as its 32-byte raw private key (the seed); its public part travels as base64
(standard, padded) of the 32-byte raw public key, as sync/changes.py takes it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from collections.abc import Callable, Collection, Mapping
from datetime import datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from joserfc import jws as _jws
from joserfc.errors import BadSignatureError, InvalidKeyTypeError, JoseError
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import OKPKey
from joserfc.registry import HeaderParameter, in_choices
from joserfc.util import urlsafe_b64decode, urlsafe_b64encode

ALG = "EdDSA"            # the JWS header's alg (RFC 8037)
KEY_ALG = "Ed25519"      # the key.published payload's alg
TYP_PICKUP = "se-pickup+jwt"
TYP_COUPON = "se-coupon+jwt"
TYP_MEMBER = "se-member+jwt"   # a member certificate (docs/members.md): never accepted where a pickup or coupon is
TYPES = (TYP_PICKUP, TYP_COUPON)
ALL_TYPES = TYPES + (TYP_MEMBER,)  # every typ the header registry knows; `verify` takes only those it is asked for
MAX_TOKEN = 1024
# The form of a token (three base64url parts; a scanner may add spaces or a line end around it), for the
# OpenAPI document: a string of another form is refused by `verify` as `malformed` (422), not as an
# invalid body, so that a till shows the same refusal for any code that is no token of ours.
COMPACT_PATTERN = r"^\s*[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\s*$"
_KID = re.compile(r"^[\x21-\x7e]{1,64}$")  # printable ASCII without spaces, as the sync feed's kids


class JwsError(ValueError):
    """A token not accepted; `reason` is one of the codes of docs/tokens.md (malformed, unknown_key,
    bad_signature here; the store adds expired, wrong_store ... on the claims). A ValueError, as the
    hub's callers of `verify` have always caught."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def _kid(value) -> None:
    if not isinstance(value, str) or not _KID.fullmatch(value):
        raise ValueError("must be 1 to 64 printable characters")


class _Ed25519Only(JWSAlgModel):
    """"EdDSA" over Ed25519 keys only. joserfc's own EdDSA also takes Ed448 keys and warns on every use
    that RFC 9864 deprecates the name; our tokens are fixed as "EdDSA" + Ed25519 (docs/tokens.md)."""

    name = ALG
    description = "EdDSA with Ed25519 keys (RFC 8037), as docs/tokens.md fixes"
    key_type = "OKP"

    def sign(self, msg: bytes, key: OKPKey) -> bytes:
        private = key.get_op_key("sign")
        if not isinstance(private, Ed25519PrivateKey):
            raise InvalidKeyTypeError("tokens are signed with Ed25519 keys only")
        return private.sign(msg)

    def verify(self, msg: bytes, sig: bytes, key: OKPKey) -> bool:
        public = key.get_op_key("verify")
        if not isinstance(public, Ed25519PublicKey):
            return False
        try:
            public.verify(sig, msg)
        except InvalidSignature:
            return False
        return True


class _TokenRegistry(_jws.JWSRegistry):
    """Exactly alg, kid and typ, all required; strict checking refuses any other member (jku, crit, b64 ...)."""

    default_header_registry = {
        "alg": HeaderParameter("Algorithm", in_choices([ALG]), True),
        "kid": HeaderParameter("Key ID", _kid, True),
        "typ": HeaderParameter("Type", in_choices(list(ALL_TYPES)), True),
    }
    # a class attribute of its own: JWSRegistry.register() fills the shared class-wide table
    algorithms = {ALG: _Ed25519Only()}
    max_header_length = MAX_TOKEN


_REGISTRY = _TokenRegistry(algorithms=[ALG], strict_check_header=True)


def b64url(data: bytes) -> str:
    return urlsafe_b64encode(data).decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Canonical base64url without padding only: ValueError for anything else, including a last
    character whose unused bits are not zero (the same bytes spelled another way)."""
    if not isinstance(text, str) or not text or not text.isascii():
        raise ValueError("not base64url")
    try:
        return urlsafe_b64decode(text.encode("ascii"))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None


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


def public_key(b64: str) -> Ed25519PublicKey | None:
    """The key of a `key.published` payload's public_key, or None if it never was an Ed25519 key."""
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(b64, validate=True))
    except (binascii.Error, ValueError, TypeError):
        return None


def _json(obj: dict) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def sign(private_raw: bytes, kid: str, typ: str, claims: dict) -> str:
    """A JWS compact token: header {alg, kid, typ}, the claims, an Ed25519 signature over `h.p`."""
    key = OKPKey.import_key(Ed25519PrivateKey.from_private_bytes(private_raw))
    token = _jws.serialize_compact({"alg": ALG, "kid": kid, "typ": typ}, _json(claims), key, registry=_REGISTRY)
    if len(token) > MAX_TOKEN:
        raise ValueError(f"the token is {len(token)} characters, more than {MAX_TOKEN}")
    return token


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("a member appears twice")
    return dict(pairs)


def unverified_header(token: str) -> object:
    """The decoded header (the first part) of a compact JWS, NOT checked against any key: for telling
    a scan's kind only. ValueError if it is not canonical base64url of duplicate-free UTF-8 JSON."""
    head = token.split(".", 1)[0] if isinstance(token, str) else None
    try:
        return json.loads(b64url_decode(head).decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(f"not JSON ({exc.__class__.__name__})") from None


KeyLookup = Mapping[str, str] | Callable[[str], str | None]


def verify(token: str, public_keys: KeyLookup, typs: Collection[str] = TYPES) -> tuple[dict, dict]:
    """(header, claims) of a token signed by one of `public_keys`: kid -> base64 raw public key, as a
    mapping or a function (None: not known); its typ must be one of `typs`.

    Checks the form and the signature only (not exp/nbf/sid, which are the caller's): JwsError with a
    docs/tokens.md reason otherwise, in this order: `malformed` (not three canonical base64url parts,
    not JSON objects, a duplicate member, a header other than exactly {alg: EdDSA, kid, typ}),
    `unknown_key`, `bad_signature`."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN or not token.isascii():
        raise JwsError("malformed", "not a token or longer than a token may be")
    try:
        obj = _jws.extract_compact(token.encode("ascii"), registry=_REGISTRY)
        header = unverified_header(token)
        claims = json.loads(obj.payload.decode("utf-8"), object_pairs_hook=_no_duplicates)
        b64url_decode(token.rsplit(".", 1)[1])       # joserfc decodes the signature only when verifying
    except (JoseError, ValueError, UnicodeDecodeError, RecursionError):
        raise JwsError("malformed", "not three base64url parts of JSON") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise JwsError("malformed", "not JSON objects")
    try:
        _REGISTRY.check_header(header)
    except JoseError:
        raise JwsError("malformed", "the header must be exactly alg EdDSA, kid and a known typ") from None
    if header["typ"] not in typs:
        raise JwsError("malformed", f"a {header['typ']} token where {' or '.join(typs)} was expected")
    kid = header["kid"]
    encoded = public_keys(kid) if callable(public_keys) else public_keys.get(kid)
    key = public_key(encoded) if encoded is not None else None
    if key is None:
        raise JwsError("unknown_key", f"key {kid} is not known here (or was revoked)")
    try:
        _jws.deserialize_compact(token, OKPKey.import_key(key), registry=_REGISTRY)
    except BadSignatureError:
        raise JwsError("bad_signature", "the signature does not match: forged or altered") from None
    except JoseError:
        raise JwsError("malformed", "refused by the JWS checks") from None
    return header, claims
