"""Member codes (会员码) checked at the store, offline: the certificate's signature and claims, the
phone's signature over the time step, and each (member, step) accepted once. See docs/members.md.

The form and the phone's signature are edge/core/member_code.py's; the certificate's signature is the
one JWS check (edge/core/jws.py) with the keys of the feed (signed_tokens.public_key: a revoked key is
no key). Every refusal is a TokenRefused with a reason of edge/core/refusals.py and writes nothing:
the only row an accepted code writes is its (member, step) in member_code_uses.

What comes back is what the cashier screen and a receipt need, masked as the cloud masked it: the store
keeps no member's name or phone number (the certificate carries 张* and 138****5678, and the store
writes neither anywhere).
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from edge.core import jws, member_code
from edge.core.clock import iso
from edge.core.refusals import refusal
from edge.store.signed_tokens import CLOCK_SKEW, TokenRefused, public_key
from protocol.members import MASKED_NAME, MASKED_PHONE

_ID = re.compile(r"^[\x21-\x7e]{1,64}$")       # printable ASCII without spaces, as the feed's ids
# as a look-up's answer (protocol/members.py): 138****5678 and 张*, no more of them than a receipt needs
_MASKED_PHONE, _MASKED_NAME = re.compile(MASKED_PHONE), re.compile(MASKED_NAME)
KEEP_STEPS = 2 * member_code.MAX_STEP_DRIFT + 1  # uses older than the window are of no more use


def iso_unix(seconds: float) -> str:
    return iso(datetime.fromtimestamp(seconds, timezone.utc))


@dataclass(frozen=True)
class Member:
    member_id: str
    chain: str
    level: str
    name: str | None          # masked by the cloud: 张*
    phone: str | None         # masked by the cloud: 138****5678
    points: int
    balance_fen: int          # stored value (储值), fen
    snapshot_at: str          # when the cloud took points and balance (ISO 8601 UTC)
    expires_at: str           # the certificate's exp
    kid: str
    step: int

    def as_dict(self) -> dict:
        return asdict(self)


def _str(claims: dict, name: str, pattern: re.Pattern | None = None, required: bool = True,
         longest: int = 32) -> str | None:
    value = claims.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= longest or (pattern and not pattern.fullmatch(value)):
        raise TokenRefused("malformed", f"claim {name} is missing or not of its form")
    return value


def _int(claims: dict, name: str) -> int:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**40:
        raise TokenRefused("malformed", f"claim {name} must be a whole number, 0 or more")
    return value


def check(conn: sqlite3.Connection, text: str, *, chain: str | None, store_id: str, now: float) -> Member:
    """Everything but the replay: form, certificate key and signature, claims, time, chain, the phone's
    signature and step. Reads only. Raises TokenRefused."""
    parts = member_code.split(text)
    if parts is None:
        raise TokenRefused("malformed", "not a member code (certificate.step.signature)")
    certificate, step, signature = parts
    header, claims = jws.verify(certificate, lambda kid: public_key(conn, kid), (jws.TYP_MEMBER,))
    member_id = _str(claims, "sub", _ID, longest=64)
    member_chain = _str(claims, "chn", _ID, longest=64)
    shop = _str(claims, "sid", _ID, required=False, longest=64)
    level = _str(claims, "lv", longest=16)
    name = _str(claims, "nm", _MASKED_NAME, required=False, longest=8)
    phone = _str(claims, "ph", _MASKED_PHONE, required=False)
    points, balance, snapshot = _int(claims, "pts"), _int(claims, "bal"), _int(claims, "snp")
    expires = _int(claims, "exp")
    _int(claims, "iat")
    key = member_code.device_public_key(claims.get("dk"))
    if key is None:
        raise TokenRefused("malformed", "claim dk is not a 32-byte Ed25519 key in base64url")
    if now > expires + CLOCK_SKEW:
        raise TokenRefused("member_expired", "the member certificate has expired")
    if chain is None:
        raise TokenRefused("no_chain", "this store has no [store] chain configured: member codes cannot be checked")
    if member_chain != chain:
        raise TokenRefused("wrong_chain", f"a member of chain {member_chain}, not of {chain}")
    if shop is not None and shop != store_id:
        raise TokenRefused("wrong_store", f"a member of store {shop} only")
    if not member_code.device_signature_ok(key, certificate, step, signature):
        raise TokenRefused("device_signature", "the phone's signature does not match the certificate's device key")
    current = member_code.time_step(now)
    if step < current - member_code.MAX_STEP_DRIFT:
        raise TokenRefused("code_stale", f"time step {step} is older than {current} - 1")
    if step > current + member_code.MAX_STEP_DRIFT:
        raise TokenRefused("code_ahead", f"time step {step} is beyond {current} + 1: a clock is ahead")
    return Member(member_id=member_id, chain=member_chain, level=level, name=name, phone=phone, points=points,
                  balance_fen=balance, snapshot_at=iso_unix(snapshot), expires_at=iso_unix(expires),
                  kid=header["kid"], step=step)


def verify_member_code(conn: sqlite3.Connection, text: str, *, chain: str | None, store_id: str,
                       now: float) -> Member:
    """Check a scanned member code completely and take its (member, step): a second showing of the same
    code, or of another code of the same member in the same step, is refused as `replayed`. Run inside
    the writer's transaction. Raises TokenRefused, having written nothing."""
    member = check(conn, text, chain=chain, store_id=store_id, now=now)
    taken = conn.execute("INSERT INTO member_code_uses (member_id, step, used_at) VALUES (?, ?, ?) "
                         "ON CONFLICT DO NOTHING", (member.member_id, member.step, iso_unix(now))).rowcount
    if not taken:
        raise TokenRefused("replayed", f"member {member.member_id} already showed a code in step {member.step}")
    # a step this old can no longer be accepted: its row has done its work
    conn.execute("DELETE FROM member_code_uses WHERE step < ?",
                 (member_code.time_step(now) - KEEP_STEPS,))
    remember(conn, member.as_dict(), "code", iso_unix(now))
    return member


def remember(conn: sqlite3.Connection, m: dict, source: str, now: str) -> None:
    """The masked view of a member verified by code or looked up by phone: what a sale by id may use."""
    conn.execute("INSERT INTO members_seen (member_id, level, name, phone, points, balance_fen, snapshot_at, source, "
                 "seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (member_id) DO UPDATE SET "
                 "level = excluded.level, name = excluded.name, phone = excluded.phone, points = excluded.points, "
                 "balance_fen = excluded.balance_fen, snapshot_at = excluded.snapshot_at, source = excluded.source, "
                 "seen_at = excluded.seen_at",
                 (m["member_id"], m["level"], m.get("name"), m.get("phone"), m["points"], m["balance_fen"],
                  _same_form(m["snapshot_at"]), source, now))


def _same_form(stamp: str) -> str:
    # the cloud's times in the store's one form, so the offline caps compare them with activity times as text
    return iso(datetime.fromisoformat(stamp.replace("Z", "+00:00")))


def verify_for_till(conn: sqlite3.Connection, text: str, chain: str | None, store_id: str, now: float) -> dict:
    """verify_member_code for the API and the cashier screen: the member as a dict, or the refusal as the
    InputError they answer with (its Chinese words in detail.message_zh)."""
    try:
        return verify_member_code(conn, text, chain=chain, store_id=store_id, now=now).as_dict()
    except TokenRefused as exc:
        raise refusal(exc.reason, exc.message) from None
