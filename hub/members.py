"""Members (会员) at the reference cloud (docs/members.md, docs/hub-admin-api.md): the chain creates a
member, certifies a member's phone (a member certificate signed with the hub's current key, naming the
phone's device key), and a store looks a member up by phone number while it is online.

The hub is the one place that holds a member's name and whole phone number. Whatever leaves it for a
store (a certificate, a look-up's answer) carries them masked: 张*, 138****5678.
"""

from __future__ import annotations

import logging
import secrets
from typing import Annotated

from aiohttp import web
from pydantic import Field

from edge.core import jws, member_code
from edge.core.clock import iso
from hub.bodies import Body, Name
from hub.db import Conn
from hub.errors import HubError, not_found
from hub.http import answer, auth_admin, auth_store, model_body
from hub.keys import current_key, iso_unix, unix
from hub.member_ledgers import add_openings, money, with_balances
from hub.state import HUB, Hub
from protocol.members import MAX_MEMBERS, PHONE, MemberLookup

log = logging.getLogger(__name__)

MEMBER_ID = r"^[\x21-\x7e]{1,64}$"
DEFAULT_DAYS = 30                          # a certificate's life: the phone renews it when online
MAX_DAYS = 366

class MemberIn(Body):
    member_id: Annotated[str, Field(pattern=MEMBER_ID)] | None = None   # default: a new m-… id
    name: Name
    phone: Annotated[str, Field(pattern=PHONE)]
    level: Annotated[str, Field(min_length=1, max_length=16)]
    points: Annotated[int, Field(ge=0, lt=2**40)] = 0
    balance_fen: Annotated[int, Field(ge=0, lt=2**40)] = 0


class CertificateIn(Body):
    device_key: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{43}$",
                                     description="base64url of the phone's 32-byte Ed25519 public key")]
    days: Annotated[int, Field(ge=1, le=MAX_DAYS)] = DEFAULT_DAYS


def mask_name(name: str) -> str:
    """张三 -> 张*, 欧阳娜娜 -> 欧***: the first character, the rest hidden (at most 8 in all, as the claim)."""
    return name[0] + "*" * min(max(len(name) - 1, 1), 7)


def mask_phone(phone: str) -> str:
    return f"{phone[:3]}****{phone[-4:]}"


def masked(row, snapshot_at: str) -> dict:
    """A member as a store may see it."""
    return {"member_id": row["member_id"], "level": row["level"], "name": mask_name(row["name"]),
            "phone": mask_phone(row["phone"]), "points": row["points"], "balance_fen": row["balance_fen"],
            "snapshot_at": snapshot_at}


def certificate_claims(row, chain: str, device_key: str, iat: int, days: int) -> dict:
    """A member certificate's claims (docs/members.md): short names, a QR code a phone shows."""
    return {"sub": row["member_id"], "chn": chain, "lv": row["level"], "nm": mask_name(row["name"]),
            "ph": mask_phone(row["phone"]), "pts": row["points"], "bal": row["balance_fen"], "snp": iat,
            "dk": device_key, "iat": iat, "exp": iat + days * 86400}


async def admin_create_member(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    body = await model_body(request, MemberIn)
    member_id = body.member_id or "m-" + secrets.token_hex(6)

    async def create(db: Conn, now):
        if await db.fetchrow("SELECT 1 FROM members WHERE member_id = $1", member_id):
            raise HubError(409, "member_exists", f"member {member_id} exists already")
        await db.execute("INSERT INTO members (member_id, name, phone, level, points, balance_fen, created_at, "
                         "updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                         member_id, body.name, body.phone, body.level, body.points, body.balance_fen, now)
        await add_openings(db, member_id, body.points, body.balance_fen, now)
        return dict(await db.fetchrow("SELECT * FROM members WHERE member_id = $1", member_id))

    member = await hub.db.write(create, iso(hub.now()))
    log.info("member created", extra={"kv": {"member": member_id}})   # no name, no phone in the log
    return answer(request, member, 201)


async def admin_get_member(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    member_id = request.match_info["member_id"]

    async def member(db: Conn):
        return await db.fetchrow("SELECT * FROM members WHERE member_id = $1", member_id)

    row = await hub.db.read(member)
    if row is None:
        raise not_found(f"no member {member_id}")
    return answer(request, {**dict(row), **await hub.db.read(money, member_id, iso(hub.now()))})


async def admin_issue_certificate(request: web.Request) -> web.Response:
    """A certificate for the phone whose device key is given, signed with the hub's current key."""
    hub: Hub = auth_admin(request)
    member_id = request.match_info["member_id"]
    body = await model_body(request, CertificateIn)
    if member_code.device_public_key(body.device_key) is None:
        raise HubError(400, "invalid_request", "device_key is not an Ed25519 public key in base64url")
    moment = hub.now()

    async def issue(db: Conn, now):
        row = await db.fetchrow("SELECT * FROM members WHERE member_id = $1", member_id)
        if row is None:
            raise not_found(f"no member {member_id}")
        row = (await with_balances(db, [row]))[0]   # the ledgers' points and balance, not the opening ones
        kid, private = await current_key(db)
        claims = certificate_claims(row, hub.chain, body.device_key, unix(moment), body.days)
        certificate = jws.sign(private, kid, jws.TYP_MEMBER, claims)
        expires = iso_unix(claims["exp"])
        await db.execute("INSERT INTO member_certificates (member_id, device_key, kid, issued_at, expires_at) "
                         "VALUES ($1, $2, $3, $4, $5)", member_id, body.device_key, kid, now, expires)
        return {"member_id": member_id, "certificate": certificate, "kid": kid, "chain": hub.chain,
                "expires_at": expires}

    issued = await hub.db.write(issue, iso(moment))
    log.info("member certificate issued", extra={"kv": {"member": member_id, "kid": issued["kid"]}})
    return answer(request, issued, 201)


async def store_lookup_member(request: web.Request) -> web.Response:
    """POST /sync/v1/stores/{store_id}/members/lookup: the members with this phone, masked. The number is in
    the body, never the URL (proxies log URLs), and is not logged here either."""
    await auth_store(request)
    body = await model_body(request, MemberLookup)
    hub = request.app[HUB]
    snapshot = iso(hub.now())

    async def with_phone(db: Conn):
        rows = await db.fetch("SELECT * FROM members WHERE phone = $1 ORDER BY member_id LIMIT $2", body.phone,
                              MAX_MEMBERS)
        return await with_balances(db, rows)   # the ledgers' points and balance, not the opening ones

    rows = await hub.db.read(with_phone)
    return answer(request, {"members": [masked(r, snapshot) for r in rows]})
