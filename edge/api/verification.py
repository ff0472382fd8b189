"""核销 on the local API: pickups by token or code (look up, hand over, reverse), coupon checks."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from edge.api.registry import LIMIT, Param, cursor, json_response, operation, parse_body, query_int, read, write
from edge.core.jws import COMPACT_PATTERN, MAX_TOKEN
from edge.core.schemas import Body
from edge.services.app_keys import CONFIG, DEVICE, LIMITER, STORE, pickup_checks
from edge.store import coupons, pickups

ORDER_ID = Param("order_id", "path", {"type": "string"}, "The order's id", True)


@operation("post", "/pickups/lookup", "Look up an online order by its pickup token (QR) or typed code",
           tag="verification", body=pickups.PickupIn, writes=False,
           responses={200: "order, method, provisional", 404: "unknown_order or bad_code",
                      409: "already_used (detail: used_at, used_by) or not_ready", 422: "a refused token",
                      429: "rate_limited"})
async def lookup(request):
    _, body = await parse_body(request, pickups.PickupIn)
    now = pickup_checks(request.app)
    return await request.app[LIMITER].guard(request[DEVICE], body.code,
                                            lambda: read(request, pickups.lookup, body, now))


@operation("post", "/pickups", "Hand an order over (核销): stock out, record, cloud event, pickup slip",
           tag="verification", body=pickups.HandOver,
           responses={201: "pickup, order, print_job", 404: "unknown_order or bad_code", 409: "already_used",
                      422: "a refused token", 429: "rate_limited"})
async def hand_over(request):
    _, body = await parse_body(request, pickups.HandOver)
    now = pickup_checks(request.app)

    async def run():
        # the token's signature is checked once, on a reader, not inside the store's one writer
        found = await request.app[STORE].read(pickups.identify, body, now)
        return await write(request, pickups.HandOver,
                           lambda conn, body, ctx: pickups.hand_over(conn, body, now, ctx, found))
    return await request.app[LIMITER].guard(request[DEVICE], body.code, run)


@operation("post", "/pickups/{order_id}/reverse", "Reverse a hand-over made by mistake (冲正), with a reason",
           tag="verification", body=pickups.Reversal, params=[ORDER_ID],
           responses={201: "pickup (reversed) and order (ready again)", 404: "no such order",
                      409: "not handed over"})
async def reverse(request):
    return await write(request, pickups.Reversal, pickups.reverse, request.match_info["order_id"])


@operation("get", "/pickups", "Hand-overs, newest first", tag="verification",
           params=[cursor("before", "The next_before of the previous page"), LIMIT],
           responses={200: "items and next_before"})
async def list_pickups(request):
    return await read(request, pickups.list_pickups, before=query_int(request, "before", None, 0, 2**63 - 1),
                      limit=query_int(request, "limit", 100, 1, 1000))


class CouponCheck(Body):
    token: Annotated[str, Field(min_length=1, max_length=MAX_TOKEN, json_schema_extra={"pattern": COMPACT_PATTERN})]


@operation("post", "/coupons/check", "What a scanned coupon grants, and whether it can be used now",
           tag="verification", body=CouponCheck, writes=False,
           responses={200: "the coupon's terms and uses left", 409: "already_used", 422: "a refused token"})
async def check_coupon(request):
    _, body = await parse_body(request, CouponCheck)
    now = pickup_checks(request.app)
    online_only = frozenset(request.app[CONFIG].verification.online_only_coupons)
    return json_response(await request.app[STORE].read(coupons.describe, body.token, now, online_only))

