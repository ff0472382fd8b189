"""edge.core.jws: the one JWS implementation (the hub signs, the store verifies, the classifier reads)."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PrivateKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge.core import jws

CLAIMS = {"sub": "ord_20261122_0001", "sid": "store-001", "iat": 1795000000, "exp": 1795604800, "jti": "p-9f2c"}
_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def key():
    private, public = jws.new_key()
    return private, {"k-1": public}


def by_hand(private: bytes, header: dict | bytes, claims: dict = CLAIMS) -> str:
    """A token signed without edge.core.jws, as any JWT library or another cloud would make it."""
    head = b64url(header if isinstance(header, bytes) else json.dumps(header).encode())
    signing_input = f"{head}.{b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64url(Ed25519PrivateKey.from_private_bytes(private).sign(signing_input.encode()))}"


def reason(token: str, keys: dict) -> str:
    with pytest.raises(jws.JwsError) as refused:
        jws.verify(token, keys)
    return refused.value.reason


def test_sign_is_the_documented_form(key):
    private, keys = key
    token = jws.sign(private, "k-1", jws.TYP_PICKUP, CLAIMS | {"sub": "订单-1"})
    head, body, signature = token.split(".")
    assert "=" not in token and len(token) <= jws.MAX_TOKEN
    assert json.loads(base64.urlsafe_b64decode(head + "==")) == {"alg": "EdDSA", "kid": "k-1", "typ": "se-pickup+jwt"}
    assert json.loads(base64.urlsafe_b64decode(body + "==").decode()) == CLAIMS | {"sub": "订单-1"}
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(keys["k-1"]))
    public.verify(base64.urlsafe_b64decode(signature + "=="), f"{head}.{body}".encode())   # raises if wrong
    assert jws.verify(token, keys) == ({"alg": "EdDSA", "kid": "k-1", "typ": "se-pickup+jwt"},
                                       CLAIMS | {"sub": "订单-1"})
    assert jws.verify(token, keys.get)[1]["sub"] == "订单-1"                 # a lookup function works too


def test_tokens_made_elsewhere_verify(key):
    private, keys = key
    header = {"typ": "se-coupon+jwt", "kid": "k-1", "alg": "EdDSA"}        # member order is free
    assert jws.verify(by_hand(private, header), keys)[0] == header


def test_every_part_respelled_with_other_padding_bits_is_refused(key):
    private, keys = key
    token = jws.sign(private, "k-1", jws.TYP_PICKUP, CLAIMS)
    respelled = 0
    for index, part in enumerate(token.split(".")):
        unused = {2: 4, 3: 2}.get(len(part) % 4)     # bits of the last character that carry no data
        if unused is None:
            continue
        for bit in range(unused):
            chars = list(part)
            chars[-1] = _B64URL[_B64URL.index(chars[-1]) ^ (1 << bit)]
            parts = token.split(".")
            parts[index] = "".join(chars)
            assert base64.urlsafe_b64decode(parts[index] + "==") == base64.urlsafe_b64decode(part + "==")
            assert reason(".".join(parts), keys) == "malformed"
            respelled += 1
    assert respelled >= 2       # the 64-byte signature always has unused bits


@pytest.mark.parametrize("mangle", [
    lambda t: t.replace(".", "=.", 1),                   # padding
    lambda t: t.replace(".", "==.", 1),
    lambda t: t + "=",
    lambda t: t.replace("-", "+").replace("_", "/") if ("-" in t or "_" in t) else "+" + t,   # plain base64
    lambda t: t.replace(".", ". ", 1),
    lambda t: t.rsplit(".", 1)[0] + ".",                 # no signature
    lambda t: t + ".e30",                                # four parts
])
def test_non_base64url_spellings_are_malformed(key, mangle):
    private, keys = key
    assert reason(mangle(jws.sign(private, "k-1", jws.TYP_PICKUP, CLAIMS)), keys) == "malformed"


@pytest.mark.parametrize("header", [
    {"alg": "Ed25519", "kid": "k-1", "typ": "se-pickup+jwt"},    # RFC 9864's name: not what the tokens use
    {"alg": "HS256", "kid": "k-1", "typ": "se-pickup+jwt"},
    {"alg": "none", "kid": "k-1", "typ": "se-pickup+jwt"},
    {"alg": "EdDSA", "kid": "k-1", "typ": "JWT"},
    {"alg": "EdDSA", "kid": "k-1"},
    {"alg": "EdDSA", "typ": "se-pickup+jwt"},
    {"alg": "EdDSA", "kid": "k-1", "typ": "se-pickup+jwt", "cty": "JWT"},
    {"alg": "EdDSA", "kid": "k-1", "typ": "se-pickup+jwt", "jwk": {"kty": "OKP"}},
    {"alg": "EdDSA", "kid": "k-1", "typ": "se-pickup+jwt", "b64": False, "crit": ["b64"]},
    {"alg": "EdDSA", "kid": "k 1", "typ": "se-pickup+jwt"},
    b'{"alg":"EdDSA","kid":"k-1","typ":"se-coupon+jwt","typ":"se-pickup+jwt"}',   # a member twice
    b'["alg", "kid", "typ"]',
])
def test_anything_but_the_exact_header_is_malformed(key, header):
    private, keys = key
    assert reason(by_hand(private, header), keys) == "malformed"


def test_claims_must_be_one_json_object(key):
    private, keys = key
    head = b64url(json.dumps({"alg": "EdDSA", "kid": "k-1", "typ": "se-pickup+jwt"}).encode())
    for body in (b"[1]", b"not json", b'{"sub":"a","sub":"b"}', b"\xff"):
        signing_input = f"{head}.{b64url(body)}"
        signature = Ed25519PrivateKey.from_private_bytes(private).sign(signing_input.encode())
        assert reason(f"{signing_input}.{b64url(signature)}", keys) == "malformed", body


def test_keys_and_signatures(key):
    private, keys = key
    token = jws.sign(private, "k-1", jws.TYP_COUPON, CLAIMS)
    assert reason(token, {}) == "unknown_key"
    assert reason(token, {"k-1": "not a key"}) == "unknown_key"            # never a valid Ed25519 key
    other, other_public = jws.new_key()
    assert reason(token, {"k-1": other_public}) == "bad_signature"
    head, body, signature = token.split(".")
    assert reason(f"{head}.{b64url(b'{}')}.{signature}", keys) == "bad_signature"
    assert reason(f"{head}.{body}.{b64url(b'x' * 64)}", keys) == "bad_signature"
    with pytest.raises(jws.JwsError) as refused:
        jws.verify(token, keys, typs=(jws.TYP_PICKUP,))
    assert refused.value.reason == "malformed"                              # a coupon where a pickup was asked


def test_an_ed448_key_is_not_an_ed25519_key(key):
    _, keys = key
    ed448 = Ed448PrivateKey.generate()
    head = b64url(json.dumps({"alg": "EdDSA", "kid": "k-1", "typ": "se-pickup+jwt"}).encode())
    signing_input = f"{head}.{b64url(json.dumps(CLAIMS).encode())}"
    assert reason(f"{signing_input}.{b64url(ed448.sign(signing_input.encode()))}", keys) == "bad_signature"


def test_length_and_header_reading(key):
    private, keys = key
    with pytest.raises(ValueError):
        jws.sign(private, "k-1", jws.TYP_PICKUP, CLAIMS | {"pad": "x" * 1000})
    assert reason("e30." * 300, keys) == "malformed"
    token = jws.sign(private, "k-1", jws.TYP_PICKUP, CLAIMS)
    assert jws.unverified_header(token) == {"alg": "EdDSA", "kid": "k-1", "typ": "se-pickup+jwt"}
    for bad in ("", "a", "e30=", "\u00e9"):
        with pytest.raises(ValueError):
            jws.unverified_header(bad)
