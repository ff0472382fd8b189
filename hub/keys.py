"""Signing keys and the tokens they sign (docs/tokens.md): the hub's Ed25519 keys, published to
every store, and the pickup tokens of orders."""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timezone

from aiohttp import web

from edge.core import jws
from edge.core.clock import iso
from hub.bodies import OptionalReasonIn
from hub.changes import add_change
from hub.db import Conn
from hub.errors import HubError, not_found
from hub.http import answer, auth_admin, optional_body
from hub.state import Hub

log = logging.getLogger(__name__)

PICKUP_TOKEN_TTL = 7 * 86400       # seconds a pickup token is valid


def unix(moment: datetime) -> int:
    return int(moment.timestamp())


def iso_unix(seconds: int) -> str:
    return iso(datetime.fromtimestamp(seconds, timezone.utc))


async def create_signing_key(db: Conn, moment: datetime, now: str) -> dict:
    """A new key, published to every store (`key.published`, store_id NULL)."""
    private, public = jws.new_key()
    kid = jws.new_kid(moment)
    while await db.fetchrow("SELECT 1 FROM signing_keys WHERE kid = $1", kid):
        kid = jws.new_kid(moment)
    cursor, change_id = await add_change(db, None, "key.published",
                                         {"kid": kid, "alg": jws.KEY_ALG, "public_key": public}, now)
    await db.execute("INSERT INTO signing_keys (kid, alg, private_key, public_key, created_at, published_change_id) "
                     "VALUES ($1, $2, $3, $4, $5, $6)", kid, jws.KEY_ALG, private, public, now, change_id)
    return {"kid": kid, "alg": jws.KEY_ALG, "public_key": public, "created_at": now, "change_id": change_id,
            "cursor": cursor}


async def ensure_signing_key(db: Conn, moment: datetime) -> dict | None:
    """At start: a key if the hub has none that is not revoked (first start, or an upgraded hub)."""
    if db.dialect == "postgresql":  # hub processes starting together on one database: one of them makes it
        await db.execute("LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE")
    if await db.fetchrow("SELECT 1 FROM signing_keys WHERE revoked_at IS NULL"):
        return None
    return await create_signing_key(db, moment, iso(moment))


async def current_key(db: Conn) -> tuple[str, bytes]:
    """(kid, private key) of the key that signs: the newest not revoked."""
    row = await db.fetchrow("SELECT kid, private_key FROM signing_keys WHERE revoked_at IS NULL "
                            "ORDER BY created_at DESC, rowid DESC LIMIT 1")
    if row is None:
        raise HubError(409, "no_signing_key", "the hub has no signing key: create one with POST /admin/v1/keys")
    return row[0], bytes(row[1])


async def issue_pickup_token(db: Conn, order_id: str, store_id: str, moment: datetime, now: str) -> dict:
    kid, private = await current_key(db)
    iat = unix(moment)
    claims = {"sub": order_id, "sid": store_id, "iat": iat, "exp": iat + PICKUP_TOKEN_TTL,
              "jti": "p-" + secrets.token_hex(12)}
    token = jws.sign(private, kid, jws.TYP_PICKUP, claims)
    expires = iso_unix(claims["exp"])
    await db.execute("INSERT INTO pickup_tokens (jti, order_id, kid, issued_at, expires_at) VALUES ($1, $2, $3, $4, "
                     "$5)", claims["jti"], order_id, kid, now, expires)
    return {"pickup_token": token, "pickup_token_expires_at": expires}


def key_view(row) -> dict:
    return {k: row[k] for k in ("kid", "alg", "public_key", "created_at", "revoked_at", "revoke_reason")}


async def list_keys(db: Conn) -> dict:
    rows = await db.fetch("SELECT kid, alg, public_key, created_at, revoked_at, revoke_reason FROM signing_keys "
                          "ORDER BY created_at, rowid")
    signer = await db.fetchrow("SELECT kid FROM signing_keys WHERE revoked_at IS NULL ORDER BY created_at DESC, "
                               "rowid DESC LIMIT 1")
    return {"keys": [{**key_view(r), "signing": signer is not None and r["kid"] == signer[0]} for r in rows]}


async def admin_list_keys(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    return answer(request, await hub.db.read(list_keys))


async def admin_rotate_key(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    moment = hub.now()
    key = await hub.db.write(create_signing_key, moment, iso(moment))
    await hub.changed((None, key["cursor"]))
    log.info("signing key rotated", extra={"kv": {"kid": key["kid"], "cursor": key["cursor"]}})
    return answer(request, {**key, "signing": True}, 201)


async def admin_revoke_key(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    kid = request.match_info["kid"]
    body = await optional_body(request, OptionalReasonIn)

    async def revoke(db: Conn, now):
        if db.dialect == "postgresql":  # two revokes at once must not leave no key that signs
            await db.execute("LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE")
        row = await db.fetchrow("SELECT revoked_at FROM signing_keys WHERE kid = $1", kid)
        if row is None:
            raise not_found(f"no key {kid}")
        if row[0] is not None:
            raise HubError(409, "key_revoked", f"key {kid} is already revoked", revoked_at=row[0])
        if not await db.fetchrow("SELECT 1 FROM signing_keys WHERE revoked_at IS NULL AND kid <> $1", kid):
            raise HubError(409, "last_key", f"key {kid} is the only key left: rotate first (POST /admin/v1/keys), "
                           "then revoke it")
        payload = {"kid": kid} if body.reason is None else {"kid": kid, "reason": body.reason}
        cursor, change_id = await add_change(db, None, "key.revoked", payload, now)
        await db.execute("UPDATE signing_keys SET revoked_at = $1, revoke_reason = $2, revoked_change_id = $3 "
                         "WHERE kid = $4", now, body.reason, change_id, kid)
        return {"kid": kid, "revoked_at": now, "change_id": change_id, "cursor": cursor,
                "signing_kid": (await current_key(db))[0]}

    done = await hub.db.write(revoke, iso(hub.now()))
    await hub.changed((None, done["cursor"]))
    log.warning("signing key revoked", extra={"kv": {"kid": kid, "cursor": done["cursor"]}})
    return answer(request, done)



async def ensure_key(hub: Hub) -> None:
    """At start: the first key (or a new one when all were revoked), published to every store."""
    key = await hub.db.write(ensure_signing_key, hub.now())
    if key is not None:
        await hub.committed(cursor=key["cursor"])
        log.info("signing key created", extra={"kv": {"kid": key["kid"], "cursor": key["cursor"]}})
