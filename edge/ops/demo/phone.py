"""A simulated member's phone (the mini-program's side of docs/members.md), for the demo and the tests.

It holds a device key (Ed25519) that never leaves it, asks the cloud for a member certificate naming
that key, and shows a dynamic code for any moment with no network: the certificate, the time step and
its own signature (edge/core/member_code.py). A real phone does the same in the mini-program.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from edge.core import member_code


def _new_device_key() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


@dataclass
class Phone:
    device_private: bytes = field(default_factory=_new_device_key, repr=False)
    certificate: str | None = None      # set from the cloud's answer (hub: POST /admin/v1/members/{id}/certificates)

    @property
    def device_key(self) -> str:
        """What the phone sends the cloud to be certified: `dk`, base64url of its raw public key."""
        return member_code.device_key_b64url(self.device_private)

    def code(self, unix: float | None = None) -> str:
        """The dynamic code shown at `unix` (now by default): changes every 30 s."""
        if self.certificate is None:
            raise RuntimeError("the phone has no member certificate yet")
        return member_code.make_code(self.certificate, self.device_private, time.time() if unix is None else unix)
