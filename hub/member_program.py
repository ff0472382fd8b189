"""The chain's member programme and member prices (docs/hub-admin-api.md, "Members"): checked as the stores
will check them (protocol.changes' models; an unknown top-level field refused here), then published in the
shared feed as `member.program` and `member.prices`. A body that fails is answered 400 and publishes nothing.
"""

from __future__ import annotations

import json
import logging

from aiohttp import web
from pydantic import ConfigDict

from edge.core.clock import iso
from hub.changes import add_change
from hub.db import Conn, placeholders
from hub.errors import HubError, not_found
from hub.http import answer, auth_admin, model_body
from hub.state import Hub
from protocol.changes import MemberPrices, MemberProgram

log = logging.getLogger(__name__)
STRICT = ConfigDict(extra="forbid", strict=True, frozen=True)


class MemberProgramIn(MemberProgram):
    """PUT /admin/v1/member-program: the `member.program` payload itself."""
    model_config = STRICT


class MemberPricesIn(MemberPrices):
    """POST /admin/v1/member-prices: the `member.prices` payload itself."""
    model_config = STRICT


async def publish_program(db: Conn, program: dict, now: str) -> tuple[int, str]:
    current = await db.fetchval("SELECT max(version) FROM member_programs")
    if current is not None and program["version"] <= current:
        raise HubError(409, "version_not_newer", f"version must be above {current}, the programme published last",
                       current_version=current)
    cursor, change_id = await add_change(db, None, "member.program", program, now)
    await db.execute("INSERT INTO member_programs (version, program, change_id, published_at) VALUES ($1, $2, $3, $4)",
                     program["version"], json.dumps(program, ensure_ascii=False), change_id, now)
    return cursor, change_id


async def current_program(db: Conn) -> dict | None:
    row = await db.fetchrow("SELECT program, change_id, published_at FROM member_programs ORDER BY version DESC "
                            "LIMIT 1")
    return None if row is None else {"program": json.loads(row["program"]), "change_id": row["change_id"],
                                     "published_at": row["published_at"]}


async def publish_prices(db: Conn, prices: dict, now: str) -> tuple[int, str]:
    skus = sorted({price["sku"] for price in prices["prices"]})
    known = {r[0] for r in await db.fetch(f"SELECT sku FROM products WHERE sku IN ({placeholders(1, len(skus))})",
                                          *skus)}
    if unknown := [sku for sku in skus if sku not in known]:
        raise HubError(400, "unknown_sku", f"not in the chain catalog: {', '.join(unknown[:10])}", skus=unknown)
    return await add_change(db, None, "member.prices", prices, now)


async def published(request: web.Request, hub: Hub, change: tuple[int, str], what: dict) -> web.Response:
    cursor, change_id = change
    await hub.changed((None, cursor))
    log.info("member change published", extra={"kv": {"cursor": cursor, **what}})
    return answer(request, {"change_id": change_id, "cursor": cursor}, 201)


async def admin_put_program(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    body = await model_body(request, MemberProgramIn)
    change = await hub.db.write(publish_program, body.model_dump(), iso(hub.now()))
    return await published(request, hub, change, {"type": "member.program", "version": body.version})


async def admin_get_program(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    current = await hub.db.read(current_program)
    if current is None:
        raise not_found("no member programme has been published")
    return answer(request, current)


async def admin_post_prices(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    body = await model_body(request, MemberPricesIn)
    change = await hub.db.write(publish_prices, body.model_dump(), iso(hub.now()))
    return await published(request, hub, change, {"type": "member.prices", "prices": len(body.prices)})
