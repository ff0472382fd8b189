"""Member codes (会员码) that verify offline: the pure part, no I/O (docs/members.md).

A *member certificate* is a JWS compact token (edge/core/jws.py, typ `se-member+jwt`) the cloud signs
with a key the store trusts from its feed. The member's phone turns it into a *dynamic code* every
30 seconds, with no network:

    <certificate> "." <time step, decimal> "." BASE64URL(Ed25519 signature of the device key)

The device signs SHA-256(certificate) followed by the time step as an 8-byte big-endian integer (the
counter of RFC 4226 §5.2, the time step of RFC 6238 §4: T0 = 0, X = 30 s, T = floor(unix / 30)).
The device key is the certificate's `dk` claim, so a copied certificate without its phone cannot
make a code, and a code stops working a step and a half after it was shown.

Here: the form, the time step, the device's signature (made by the simulated phone, checked by the
store), and what may be kept of a code (`mask`). The certificate's own signature and its claims are
checked by edge/store/members.py, as edge/store/signed_tokens.py does for pickups.
"""

from __future__ import annotations

import hashlib
import re

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edge.core import jws

STEP_SECONDS = 30           # RFC 6238's X: the code the phone shows changes every 30 s
T0 = 0                      # RFC 6238's T0: steps count from the Unix epoch
MAX_STEP_DRIFT = 1          # RFC 6238 §5.2: at most one step either way (network delay, clock drift)
MAX_CODE = jws.MAX_TOKEN + 120   # a certificate at most jws.MAX_TOKEN, then ".<step>.<86 characters>"
# The whole form: three base64url parts (the certificate), the step's decimal digits, the device signature
# (64 bytes: 86 base64url characters). A scanner may add spaces or a line end around it.
CODE = re.compile(r"([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)\.([0-9]{1,12})\.([A-Za-z0-9_-]{86})")
CODE_PATTERN = r"^\s*[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[0-9]{1,12}\.[A-Za-z0-9_-]{86}\s*$"


def time_step(unix: float) -> int:
    """RFC 6238's T: floor((unix - T0) / X)."""
    return int((unix - T0) // STEP_SECONDS)


def split(text: str) -> tuple[str, int, str] | None:
    """(certificate, step, device signature) of a code's text, or None if it is not of the form."""
    if not isinstance(text, str) or len(text) > MAX_CODE:
        return None
    match = CODE.fullmatch(text.strip())
    if match is None:
        return None
    return match.group(1), int(match.group(2)), match.group(3)


def signed_bytes(certificate: str, step: int) -> bytes:
    """What the device signs: SHA-256 of the certificate's ASCII text, then the step (8 bytes, big-endian)."""
    return hashlib.sha256(certificate.encode("ascii")).digest() + step.to_bytes(8, "big")


def device_key_b64url(private_raw: bytes) -> str:
    """The `dk` claim: base64url (no padding) of the device's 32-byte raw Ed25519 public key."""
    public = Ed25519PrivateKey.from_private_bytes(private_raw).public_key()
    return jws.b64url(public.public_bytes(Encoding.Raw, PublicFormat.Raw))


def device_public_key(dk: object) -> Ed25519PublicKey | None:
    """The device key of a `dk` claim; None if it is not canonical base64url of 32 bytes."""
    try:
        raw = jws.b64url_decode(dk)
        return Ed25519PublicKey.from_public_bytes(raw) if len(raw) == 32 else None
    except ValueError:
        return None


def make_code(certificate: str, device_private_raw: bytes, unix: float) -> str:
    """The dynamic code a phone shows at `unix` (the simulated phone's side, edge/ops/demo/phone.py)."""
    step = time_step(unix)
    signature = Ed25519PrivateKey.from_private_bytes(device_private_raw).sign(signed_bytes(certificate, step))
    return f"{certificate}.{step}.{jws.b64url(signature)}"


def device_signature_ok(key: Ed25519PublicKey, certificate: str, step: int, signature: str) -> bool:
    try:
        key.verify(jws.b64url_decode(signature), signed_bytes(certificate, step))
    except (InvalidSignature, ValueError):
        return False
    return True


def mask(text: str) -> str:
    """What a journal or a log may keep of a member code: the certificate's first 12 characters (the
    start of its header: which kind of code), its time step (two codes of one phone are two rows of the
    last scans, not one run) and its length; never the device signature nor the certificate whole (a
    copied certificate names the member and its device key)."""
    text = text.strip() if isinstance(text, str) else ""
    parts = split(text)
    step = f" step {parts[1]}," if parts else ""
    return f"{text[:12]}…[member code,{step} {len(text)} characters]"
