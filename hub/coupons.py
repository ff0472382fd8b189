"""Coupons (docs/hub-admin-api.md, docs/tokens.md): definitions published to stores, serials
issued as signed tokens, and the redemptions the stores reported."""

from __future__ import annotations

import json
import logging
import secrets

from aiohttp import web

from edge.core import jws
from edge.core.clock import iso
from hub.admin_api import store_exists
from hub.bodies import CouponIn, IssueIn, ReasonIn
from hub.changes import add_change
from hub.db import Conn
from hub.errors import HubError, not_found, stored_json
from hub.http import answer, auth_admin, model_body, optional_body
from hub.keys import current_key, iso_unix, unix
from protocol.fields import parse_time

log = logging.getLogger(__name__)


async def _coupon_row(db: Conn, coupon_id: str):
    row = await db.fetchrow("SELECT coupon_id, definition, store_ids, created_at, revoked_at, revoke_reason FROM coupons "
                            "WHERE coupon_id = $1", coupon_id)
    if row is None:
        raise not_found(f"no coupon {coupon_id}")
    return row


async def coupon_summary(db: Conn, row) -> dict:
    stats = await db.fetchrow("SELECT (SELECT count(*) FROM coupon_serials WHERE coupon_id = $1), "
                              "(SELECT count(*) FROM coupon_redemptions WHERE coupon_id = $1), "
                              "(SELECT count(*) FROM coupon_redemptions WHERE coupon_id = $1 AND flags <> '[]')",
                              row["coupon_id"])
    return {"coupon_id": row["coupon_id"], "definition": json.loads(row["definition"]),
            "store_ids": json.loads(row["store_ids"]) if row["store_ids"] is not None else None,
            "created_at": row["created_at"], "revoked_at": row["revoked_at"], "revoke_reason": row["revoke_reason"],
            "serials_issued": stats[0], "redemptions": stats[1], "flagged_redemptions": stats[2]}


async def coupon_detail(db: Conn, coupon_id: str) -> dict:
    row = await _coupon_row(db, coupon_id)
    coupon = await coupon_summary(db, row)
    allowed = coupon["definition"].get("uses", 1)
    uses: dict[str, list] = {}
    for r in await db.fetch("SELECT serial, use_no, store_id, sale_id, discount_fen, jti, provisional, redeemed_at, "
                            "event_id, received_at, flags FROM coupon_redemptions WHERE coupon_id = $1 ORDER BY id",
                            coupon_id):
        uses.setdefault(r["serial"], []).append({**{k: r[k] for k in r.keys() if k != "serial"},
                                                 "provisional": bool(r["provisional"]),
                                                 "flags": json.loads(r["flags"])})
    coupon["serials"] = [
        {"serial": r["serial"], "store_id": r["store_id"], "jti": r["jti"], "kid": r["kid"],
         "issued_at": r["issued_at"], "expires_at": r["expires_at"], "uses": len(uses.get(r["serial"], ())),
         "uses_allowed": allowed, "over_used": len(uses.get(r["serial"], ())) > allowed,
         "redemptions": uses.get(r["serial"], [])}
        for r in await db.fetch("SELECT serial, store_id, jti, kid, issued_at, expires_at FROM coupon_serials "
                                "WHERE coupon_id = $1 ORDER BY issued_at, rowid", coupon_id)]
    return coupon


async def admin_define_coupon(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    body = await model_body(request, CouponIn)
    definition = body.definition()

    async def define(db: Conn, now):
        for store_id in body.store_ids or ():
            await store_exists(db, store_id)
        # inserted first, and only if new: two defines of one id at once on PostgreSQL, one is 409
        if await db.fetchval("INSERT INTO coupons (coupon_id, definition, store_ids, created_at) VALUES ($1, $2, $3, "
                             "$4) ON CONFLICT (coupon_id) DO NOTHING RETURNING 1", body.coupon_id,
                             stored_json(definition),
                             stored_json(body.store_ids) if body.store_ids is not None else None, now) is None:
            raise HubError(409, "coupon_exists", f"coupon {body.coupon_id} is already defined: define a new one")
        cursors = [(await add_change(db, store_id, "coupon.defined", definition, now))[0]
                   for store_id in (body.store_ids or [None])]
        return {**await coupon_summary(db, await _coupon_row(db, body.coupon_id)), "cursors": cursors}

    done = await hub.db.write(define, iso(hub.now()))
    await hub.changed(*zip(body.store_ids or [None], done["cursors"]))
    log.info("coupon defined", extra={"kv": {"coupon": body.coupon_id, "stores": len(body.store_ids or ()) or "all"}})
    return answer(request, done, 201)


async def admin_list_coupons(request: web.Request) -> web.Response:
    hub = auth_admin(request)

    async def listing(db: Conn):
        return {"coupons": [await coupon_summary(db, r) for r in await db.fetch(
            "SELECT coupon_id, definition, store_ids, created_at, revoked_at, revoke_reason FROM coupons "
            "ORDER BY created_at, coupon_id")]}

    return answer(request, await hub.db.read(listing))


async def admin_get_coupon(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    return answer(request, await hub.db.read(coupon_detail, request.match_info["coupon_id"]))


async def admin_issue_coupon(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    coupon_id = request.match_info["coupon_id"]
    body = await optional_body(request, IssueIn)
    moment = hub.now()

    async def issue(db: Conn, now):
        row = await _coupon_row(db, coupon_id)
        if row["revoked_at"] is not None:
            raise HubError(409, "coupon_revoked", f"coupon {coupon_id} is revoked", revoked_at=row["revoked_at"])
        definition = json.loads(row["definition"])
        stores = json.loads(row["store_ids"]) if row["store_ids"] is not None else None
        if body.store_id is not None:
            await store_exists(db, body.store_id)
            if stores is not None and body.store_id not in stores:
                raise HubError(409, "wrong_store", f"coupon {coupon_id} is not published to store {body.store_id}",
                               store_ids=stores)
        iat = unix(moment)
        exp = unix(parse_time(definition["valid_until"]))
        if body.expires_at is not None:
            exp = min(exp, unix(parse_time(body.expires_at)))
        if exp <= iat:
            raise HubError(409, "coupon_expired", f"coupon {coupon_id} (or the asked expires_at) has expired")
        kid, private = await current_key(db)
        serial, jti = "cs-" + secrets.token_hex(8), "c-" + secrets.token_hex(12)
        claims = {"sub": serial, "cid": coupon_id}
        if body.store_id is not None:
            claims["sid"] = body.store_id
        claims["iat"] = iat
        valid_from = unix(parse_time(definition["valid_from"]))
        if valid_from > iat:
            claims["nbf"] = valid_from
        claims.update(exp=exp, jti=jti)
        token = jws.sign(private, kid, jws.TYP_COUPON, claims)
        await db.execute("INSERT INTO coupon_serials (serial, coupon_id, store_id, jti, kid, issued_at, expires_at) "
                         "VALUES ($1, $2, $3, $4, $5, $6, $7)", serial, coupon_id, body.store_id, jti, kid, now,
                         iso_unix(exp))
        return {"coupon_id": coupon_id, "serial": serial, "store_id": body.store_id, "coupon_token": token,
                "jti": jti, "kid": kid, "expires_at": iso_unix(exp)}

    done = await hub.db.write(issue, iso(moment))
    log.info("coupon issued", extra={"kv": {"coupon": coupon_id, "serial": done["serial"],
                                            "store": body.store_id or "all"}})
    return answer(request, done, 201)


async def admin_revoke_coupon(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    coupon_id = request.match_info["coupon_id"]
    body = await model_body(request, ReasonIn)

    async def revoke(db: Conn, now):
        if db.dialect == "postgresql":  # a second revoke waits, then finds it revoked
            await db.execute("SELECT 1 FROM coupons WHERE coupon_id = $1 FOR UPDATE", coupon_id)
        row = await _coupon_row(db, coupon_id)
        if row["revoked_at"] is not None:
            raise HubError(409, "coupon_revoked", f"coupon {coupon_id} is already revoked", revoked_at=row["revoked_at"])
        stores = json.loads(row["store_ids"]) if row["store_ids"] is not None else [None]
        cursors = [(await add_change(db, store_id, "coupon.revoked", {"coupon_id": coupon_id, "reason": body.reason},
                                     now))[0] for store_id in stores]
        await db.execute("UPDATE coupons SET revoked_at = $1, revoke_reason = $2 WHERE coupon_id = $3",
                         now, body.reason, coupon_id)
        return {"coupon_id": coupon_id, "revoked_at": now, "stores": stores, "cursors": cursors}

    done = await hub.db.write(revoke, iso(hub.now()))
    await hub.changed(*zip(done.pop("stores"), done["cursors"]))
    log.info("coupon revoked", extra={"kv": {"coupon": coupon_id}})
    return answer(request, done)
