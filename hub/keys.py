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
from hub.errors import HubError, not_found
from hub.http import answer, auth_admin, optional_body
from hub.state import Hub

log = logging.getLogger(__name__)

PICKUP_TOKEN_TTL = 7 * 86400       # seconds a pickup token is valid


def unix(moment: datetime) -> int:
    return int(moment.timestamp())


def iso_unix(seconds: int) -> str:
    return iso(datetime.fromtimestamp(seconds, timezone.utc))


def create_signing_key(conn, moment: datetime, now: str) -> dict:
    """A new key, published to every store (`key.published`, store_id NULL)."""
    private, public = jws.new_key()
    kid = jws.new_kid(moment)
    while conn.execute("SELECT 1 FROM signing_keys WHERE kid = ?", (kid,)).fetchone():
        kid = jws.new_kid(moment)
    cursor, change_id = add_change(conn, None, "key.published",
                                   {"kid": kid, "alg": jws.KEY_ALG, "public_key": public}, now)
    conn.execute("INSERT INTO signing_keys (kid, alg, private_key, public_key, created_at, published_change_id) "
                 "VALUES (?, ?, ?, ?, ?, ?)", (kid, jws.KEY_ALG, private, public, now, change_id))
    return {"kid": kid, "alg": jws.KEY_ALG, "public_key": public, "created_at": now, "change_id": change_id,
            "cursor": cursor}


def ensure_signing_key(conn, moment: datetime) -> dict | None:
    """At start: a key if the hub has none that is not revoked (first start, or an upgraded hub)."""
    if conn.execute("SELECT 1 FROM signing_keys WHERE revoked_at IS NULL").fetchone():
        return None
    return create_signing_key(conn, moment, iso(moment))


def current_key(conn) -> tuple[str, bytes]:
    """(kid, private key) of the key that signs: the newest not revoked."""
    row = conn.execute("SELECT kid, private_key FROM signing_keys WHERE revoked_at IS NULL "
                       "ORDER BY created_at DESC, rowid DESC LIMIT 1").fetchone()
    if row is None:
        raise HubError(409, "no_signing_key", "the hub has no signing key: create one with POST /admin/v1/keys")
    return row[0], bytes(row[1])


def issue_pickup_token(conn, order_id: str, store_id: str, moment: datetime, now: str) -> dict:
    kid, private = current_key(conn)
    iat = unix(moment)
    claims = {"sub": order_id, "sid": store_id, "iat": iat, "exp": iat + PICKUP_TOKEN_TTL,
              "jti": "p-" + secrets.token_hex(12)}
    token = jws.sign(private, kid, jws.TYP_PICKUP, claims)
    expires = iso_unix(claims["exp"])
    conn.execute("INSERT INTO pickup_tokens (jti, order_id, kid, issued_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                 (claims["jti"], order_id, kid, now, expires))
    return {"pickup_token": token, "pickup_token_expires_at": expires}


def key_view(row) -> dict:
    return {k: row[k] for k in ("kid", "alg", "public_key", "created_at", "revoked_at", "revoke_reason")}


def list_keys(conn) -> dict:
    rows = conn.execute("SELECT kid, alg, public_key, created_at, revoked_at, revoke_reason FROM signing_keys "
                        "ORDER BY created_at, rowid").fetchall()
    signer = conn.execute("SELECT kid FROM signing_keys WHERE revoked_at IS NULL ORDER BY created_at DESC, "
                          "rowid DESC LIMIT 1").fetchone()
    return {"keys": [{**key_view(r), "signing": signer is not None and r["kid"] == signer[0]} for r in rows]}


async def admin_list_keys(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    return answer(request, await hub.store.read(list_keys))


async def admin_rotate_key(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    moment = hub.now()
    key = await hub.store.write(create_signing_key, moment, iso(moment))
    await hub.committed(cursor=key["cursor"])
    await hub.notify(None, {"type": "changes", "cursor": key["cursor"]})
    log.info("signing key rotated", extra={"kv": {"kid": key["kid"], "cursor": key["cursor"]}})
    return answer(request, {**key, "signing": True}, 201)


async def admin_revoke_key(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    kid = request.match_info["kid"]
    body = await optional_body(request, OptionalReasonIn)

    def revoke(conn, now):
        row = conn.execute("SELECT revoked_at FROM signing_keys WHERE kid = ?", (kid,)).fetchone()
        if row is None:
            raise not_found(f"no key {kid}")
        if row[0] is not None:
            raise HubError(409, "key_revoked", f"key {kid} is already revoked", revoked_at=row[0])
        if not conn.execute("SELECT 1 FROM signing_keys WHERE revoked_at IS NULL AND kid <> ?", (kid,)).fetchone():
            raise HubError(409, "last_key", f"key {kid} is the only key left: rotate first (POST /admin/v1/keys), "
                           "then revoke it")
        payload = {"kid": kid} if body.reason is None else {"kid": kid, "reason": body.reason}
        cursor, change_id = add_change(conn, None, "key.revoked", payload, now)
        conn.execute("UPDATE signing_keys SET revoked_at = ?, revoke_reason = ?, revoked_change_id = ? WHERE kid = ?",
                     (now, body.reason, change_id, kid))
        return {"kid": kid, "revoked_at": now, "change_id": change_id, "cursor": cursor,
                "signing_kid": current_key(conn)[0]}

    done = await hub.store.write(revoke, iso(hub.now()))
    await hub.committed(cursor=done["cursor"])
    await hub.notify(None, {"type": "changes", "cursor": done["cursor"]})
    log.warning("signing key revoked", extra={"kv": {"kid": kid, "cursor": done["cursor"]}})
    return answer(request, done)



async def ensure_key(hub: Hub) -> None:
    """At start: the first key (or a new one when all were revoked), published to every store."""
    key = await hub.store.write(ensure_signing_key, hub.now())
    if key is not None:
        await hub.committed(cursor=key["cursor"])
        log.info("signing key created", extra={"kv": {"kid": key["kid"], "cursor": key["cursor"]}})
