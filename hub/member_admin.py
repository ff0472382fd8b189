"""The admin API of members' points and stored value (docs/hub-admin-api.md, "Members"): adjustments and
top-ups as the chain's own ledger rows, a member's ledgers, and the rows flagged for a person."""

from __future__ import annotations

import logging
from typing import Annotated

from aiohttp import web
from pydantic import AfterValidator, Field

from edge.core.clock import iso
from hub.bodies import Body, Reason
from hub.http import answer, auth_admin, model_body, query_int
from hub.member_ledgers import POINTS, VALUE, adjust, flagged, ledger_rows
from protocol.members import MAX_AMOUNT

log = logging.getLogger(__name__)



def not_zero(value: int) -> int:
    if value == 0:
        raise ValueError("a change of 0 changes nothing")
    return value


Delta = Annotated[int, Field(ge=-MAX_AMOUNT, le=MAX_AMOUNT, description="signed, not 0"), AfterValidator(not_zero)]


class PointsIn(Body):
    delta: Delta
    reason: Reason


class StoredValueIn(Body):
    amount_fen: Annotated[Delta, Field(description="a top-up (充值) > 0, a correction < 0")]
    reason: Reason


def adjuster(ledger: str, model: type[PointsIn] | type[StoredValueIn], field: str):
    """The handler of one ledger's adjustments: POST /admin/v1/members/{member_id}/points | /stored-value."""
    async def handler(request: web.Request) -> web.Response:
        hub = auth_admin(request)
        member_id = request.match_info["member_id"]
        body = await model_body(request, model)
        delta = getattr(body, field)
        done = await hub.db.write(adjust, ledger, member_id, delta, body.reason, iso(hub.now()))
        log.info("member ledger adjusted", extra={"kv": {"member": member_id, "ledger": ledger, "delta": delta}})
        return answer(request, done, 201)
    return handler


admin_points = adjuster(POINTS, PointsIn, "delta")
admin_stored_value = adjuster(VALUE, StoredValueIn, "amount_fen")


async def admin_ledger(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    limit = query_int(request, "limit", 100, 1, 1000)
    return answer(request, {"member_id": request.match_info["member_id"],
                            **await hub.db.read(ledger_rows, request.match_info["member_id"], limit)})


async def admin_flags(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    limit = query_int(request, "limit", 100, 1, 1000)
    return answer(request, {"flags": await hub.db.read(flagged, limit)})
