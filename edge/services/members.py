"""Members at the till (docs/members.md): the look-up by phone number, asked of the cloud only while it
answers, and the hold a sale with points or stored value asks the cloud for before its transaction.

The store keeps no member's phone number: the number typed at the till goes to the cloud, in a request
body (never a URL, which proxies log), and what comes back is masked by the cloud. Offline the answer is the
refusal `cloud_unavailable` (503, 云端不可用); with no cloud configured `no_cloud` (422, 云端不可用 too): the
member code still works either way.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid

from edge.core.clock import iso, utcnow
from edge.core.refusals import refusal
from edge.core.schemas import SaleIn
from edge.services.app_keys import CONFIG, STORE, SYNC
from edge.store import member_sales, members
from protocol import members as protocol_members
from sync.client import SyncError

log = logging.getLogger("edge.services.members")

PHONE = re.compile(protocol_members.PHONE)  # a mainland mobile number, as the mini-program registers it
LOOKUP_TIMEOUT = 3.0                       # seconds a cashier waits for the cloud
HOLD_TIMEOUT = 3.0                         # ...and for a hold: then the sale goes on offline, within the caps
_releasing: set[asyncio.Task] = set()      # releases under way (a task needs a reference until it is done)
_FIELDS = ("member_id", "level", "name", "phone", "points", "balance_fen", "snapshot_at")


def check_phone(phone: str) -> str:
    if not isinstance(phone, str) or not PHONE.fullmatch(phone):
        raise refusal("bad_phone", "a phone number is 11 digits starting with 1", field="phone")
    return phone


async def lookup_by_phone(app, phone: str) -> list[dict]:
    """The cloud's members with this number, masked; refusal `cloud_unavailable` when it does not answer."""
    check_phone(phone)
    engine = app.get(SYNC)
    if engine is None:
        # not "try later" (503): this store runs alone, the answer will not change
        raise refusal("no_cloud", "no cloud is configured")
    try:
        answer = await engine.client.lookup_member(phone, LOOKUP_TIMEOUT)
    except SyncError as exc:
        # the number is not logged: only that the cloud did not answer
        log.info("member lookup: cloud unavailable", extra={"kv": {"error": str(exc)[:200]}})
        raise refusal("cloud_unavailable", "the cloud did not answer") from None
    found = [{k: m.get(k) for k in _FIELDS} for m in answer.body["members"] if isinstance(m, dict)]
    if found:
        # a member found by phone may be named by id in a sale for the next 30 minutes (masked, as found)
        now = iso(utcnow())
        await app[STORE].write(lambda conn: [members.remember(conn, m, "lookup", now) for m in found])
    return found


def member_checks(app, hold: member_sales.Hold | None) -> member_sales.MemberChecks:
    config = app[CONFIG]
    return member_sales.MemberChecks(chain=config.store.chain, store_id=config.store.id, now=time.time(), hold=hold,
                                     points_cap=config.members.offline_points_cap,
                                     stored_value_cap_fen=config.members.offline_stored_value_cap_fen)


def _member_and_points(conn, body: SaleIn, checks: member_sales.MemberChecks, points_fen: int) -> tuple[str, int]:
    # the member (not taken: the sale takes the code in its own transaction) and the points the payment is
    member = member_sales.resolve(conn, body.member, checks, take=False)
    fen_per_point = member_sales.programme(conn).fen_per_point
    return member.member_id, points_fen // fen_per_point if fen_per_point else 0


async def hold_for_sale(app, body: SaleIn) -> member_sales.Hold | None:
    """The cloud's hold on what this sale spends of the member's points and stored value, asked before the
    sale's transaction; None when it spends nothing, or offline (the sale is then held to the offline caps).
    A refusal by the cloud is the till's refusal; a bad member is refused before the cloud is asked."""
    points_fen = sum(p.amount_fen for p in body.payments if p.method == "points")
    stored = sum(p.amount_fen for p in body.payments if p.method == "stored_value")
    engine = app.get(SYNC)
    # nothing to hold, or no cloud to ask: the sale's transaction checks the member, once
    if body.member is None or not (points_fen or stored) or engine is None or engine.link.state == "offline":
        return None
    checks = member_checks(app, None)
    member_id, points = await app[STORE].read(lambda conn: _member_and_points(conn, body, checks, points_fen))
    if not (points or stored):
        return None       # points with no programme yet: the sale refuses them
    request = protocol_members.HoldIn(hold_id=f"h-{uuid.uuid4()}", member_id=member_id, points=points,
                                      amount_fen=stored)
    try:
        answer = await engine.client.hold_member(request, HOLD_TIMEOUT)
    except SyncError as exc:
        log.info("member hold: cloud unavailable, the sale is held to the offline caps",
                 extra={"kv": {"error": str(exc)[:200]}})
        return None
    found = answer.body
    if answer.status == 404:
        raise refusal("unknown_member", f"the cloud has no member {member_id}", field="member")
    if answer.status == 409:
        reason = found.get("error") if found.get("error") in ("insufficient_points", "insufficient_balance") \
            else "hold_mismatch"
        raise refusal(reason, str(found.get("message") or reason)[:200], field="payments",
                      points_available=found.get("points_available"),
                      balance_fen_available=found.get("balance_fen_available"))
    return member_sales.Hold(hold_id=found["hold_id"], points=found["points"], amount_fen=found["amount_fen"],
                             points_left=found["points_left"], balance_fen_left=found["balance_fen_left"])


def release_soon(app, hold: member_sales.Hold | None) -> None:
    """Give back a hold its sale did not capture (refused, or a retry answered with the sale already made).
    In the background: the till has its answer; a hold not released expires at the cloud in 600 s."""
    engine = app.get(SYNC)
    if hold is None or engine is None:
        return

    async def release():
        try:
            await engine.client.release_hold(hold.hold_id, HOLD_TIMEOUT)
        except SyncError as exc:
            log.info("member hold not released: it expires at the cloud", extra={"kv": {
                "hold_id": hold.hold_id, "error": str(exc)[:200]}})

    task = asyncio.get_running_loop().create_task(release())
    _releasing.add(task)
    task.add_done_callback(_releasing.discard)


async def sale_with_hold(app, body: SaleIn, write):
    """`write(member_checks)` (the sale's transaction: the API's or a page's) under the cloud's hold of what
    the sale spends; the hold is released when the write raises. Returns (what write returned, the hold)."""
    hold = await hold_for_sale(app, body)
    try:
        return await write(member_checks(app, hold)), hold
    except BaseException:
        release_soon(app, hold)   # the sale was not made: nothing captures the hold
        raise
