"""Uploads (protocol section 2): a store's batch of events, checked, applied in seq order in slices
of the database's slice size, each one transaction, and answered event by event. The events' shapes are protocol.events'; what is checked
here is what only the hub's data can tell (the catalog, its orders and coupons)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from edge.core.clock import iso
from hub.admission import DUE_PER_EVENT
from hub.db import Conn, placeholders
from hub.errors import HubError, bad_request, clean, stored_json
from hub.http import answer, auth_store, json_body, query_int, unless_gone
from hub.member_ledgers import activity_problem, apply_activity
from hub.state import HUB
from protocol.events import (
    EVENT_ID,
    EVENT_PAYLOADS,
    ORDER_EVENT_TYPES,
    PICKUP_EVENT_TYPES,
    Batch,
    envelope_problem,
    payload_problem,
)
from protocol.fields import first_error, parse_time, sentence, show
from protocol.stock import RESERVATION_REASONS

log = logging.getLogger(__name__)

# A batch is applied in slices of `Database.slice_events` events (hub/db.py), each its own
# transaction. The sequence numbers keep it exactly once: a slice advances next_seq with its events,
# so an upload cut short (its store went away, the hub stopped) is answered `duplicate` for the
# slices already committed when the store sends it again, as after a 409 that stopped mid-batch.


def check_batch(data: Any) -> list[dict]:
    """The batch as a whole: 400 if it is not this protocol (the store cannot tell which event is at fault)."""
    if not isinstance(data, dict):
        raise bad_request('the body must be an object {"protocol": 1, "events": [...]}')
    try:
        Batch.model_validate(data)
    except ValidationError as exc:
        raise bad_request(sentence(first_error(exc))) from None
    return data["events"]


async def validate_event(db: Conn, store_id: str, event: dict, catalog: set[str]) -> str | None:
    """None if the event can be applied, else the reason it is rejected."""
    if (problem := envelope_problem(event)) is not None:
        return f"invalid_envelope: {problem}"
    if event["store_id"] != store_id:
        return f"store_mismatch: the event names store {show(event['store_id'])}, it was sent for {store_id}"
    etype, payload = event["type"], event["payload"]
    if etype not in EVENT_PAYLOADS:
        return f"unknown_type: {show(etype)} is not a version 1 event type"
    if (problem := payload_problem(etype, payload)) is not None:
        return f"{problem[0]}: {problem[1]}"
    for sku in dict.fromkeys(move["sku"] for move in payload.get("moves", ())):
        if sku not in catalog:
            return f"unknown_sku: {sku} is not in the chain catalog"
    if etype in ORDER_EVENT_TYPES:
        order_id = payload["order_id"]
        if not await db.fetchrow("SELECT 1 FROM orders WHERE order_id = $1 AND store_id = $2", order_id, store_id):
            return f"unknown_order: {show(order_id)} is not an order the hub created for store {store_id}"
        if etype in PICKUP_EVENT_TYPES:
            return await pickup_moves_problem(db, etype, payload)
    if etype == "coupon.redeemed":
        coupon_id, serial = payload["coupon_id"], payload["serial"]
        if not await db.fetchrow("SELECT 1 FROM coupons WHERE coupon_id = $1", coupon_id):
            return f"unknown_coupon: {show(coupon_id)} is not a coupon the hub defined"
        if not await db.fetchrow("SELECT 1 FROM coupon_serials WHERE serial = $1 AND coupon_id = $2", serial, coupon_id):
            return f"unknown_serial: {show(serial)} is not a serial the hub issued of coupon {show(coupon_id)}"
    if etype == "member.activity":
        return await activity_problem(db, store_id, payload)
    return None

async def pickup_moves_problem(db: Conn, etype: str, payload: dict) -> str | None:
    """A hand-over's moves are, per SKU of the order's lines, `release` -qty and `pickup` -qty; a reversal's
    the opposite (+qty), and only of an order the store handed over."""
    order_id, sign = payload["order_id"], -1 if etype == "pickup.verified" else 1
    want: dict[tuple[str, str], int] = {}
    for sku, qty in await db.fetch("SELECT sku, sum(qty) FROM order_lines WHERE order_id = $1 GROUP BY sku", order_id):
        want[(sku, "release")] = want[(sku, "pickup")] = sign * qty
    got: dict[tuple[str, str], int] = {}
    for move in payload["moves"]:
        if move["reason"] not in ("release", "pickup"):
            return f"invalid_moves: a {etype} moves stock only by release and pickup (got {move['reason']})"
        got[(move["sku"], move["reason"])] = got.get((move["sku"], move["reason"]), 0) + move["qty"]
    if {k: q for k, q in got.items() if q} != want:
        expected = ", ".join(f"{reason} {qty:+d} {sku}" for (sku, reason), qty in sorted(want.items()))
        return f"invalid_moves: the moves of a {etype} must match the order's lines: {expected}"
    if etype == "pickup.reversed":
        state = await db.fetchval("SELECT state FROM orders WHERE order_id = $1", order_id)
        handed = await db.fetchrow("SELECT 1 FROM order_pickups WHERE order_id = $1 AND reversed_at IS NULL", order_id)
        if handed is None and state != "picked_up":
            return f"not_picked_up: order {order_id} has no hand-over to reverse (it is {state})"
    return None


async def apply_event(db: Conn, store_id: str, event: dict, now: str, moved: dict[str, list[int]]) -> None:
    """The event's effects; its moves are added up in `moved` (sku -> [on_hand, reserved]) for the slice's
    one write of the balances (nothing in a slice reads them)."""
    payload = event["payload"]
    for move in payload.get("moves") or ():
        moved.setdefault(move["sku"], [0, 0])[move["reason"] in RESERVATION_REASONS] += move["qty"]
    etype, order_id = event["type"], payload.get("order_id")
    if etype == "order.received":
        await db.execute("UPDATE orders SET received_at = coalesce(received_at, $1), short = $2, updated_at = $1 "
                         "WHERE order_id = $3", now, stored_json(payload.get("short", [])), order_id)
    elif etype == "order.state_changed":
        # a step the store took before it learnt of a cancel or refund here must not reopen the order
        await db.execute("UPDATE orders SET state = CASE WHEN state IN ('cancelled', 'refunded') AND $1 IN "
                         "('accepted', 'ready') THEN state ELSE $1 END, received_at = coalesce(received_at, $2), "
                         "updated_at = $2 WHERE order_id = $3", payload["to"], now, order_id)
    elif etype == "order.conflict":
        reason = payload.get("reason")
        await db.execute("UPDATE orders SET conflict = $1, updated_at = $2 WHERE order_id = $3",
                         clean(reason) if isinstance(reason, str) else stored_json(reason), now, order_id)
    elif etype == "print.result":
        # events apply in seq order: the latest result of each kind replaces the one before (a reprint's too)
        await db.execute(
            "INSERT INTO order_prints (order_id, kind, job_key, result, at, printer, attempts, error, reprint, seq, "
            "event_id, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) "
            "ON CONFLICT (order_id, kind) DO UPDATE SET job_key = excluded.job_key, "
            "result = excluded.result, at = excluded.at, printer = excluded.printer, "
            "attempts = excluded.attempts, error = excluded.error, reprint = excluded.reprint, "
            "seq = excluded.seq, event_id = excluded.event_id, received_at = excluded.received_at",
            order_id, payload["kind"], clean(payload["job_key"], 200), payload["result"],
            clean(payload["at"], 40), clean(payload["printer"], 200), payload["attempts"],
            clean(payload["error"]) if payload.get("error") is not None else None,
            int(payload.get("reprint", False)), event["seq"], event["id"], now)
        await db.execute("UPDATE orders SET updated_at = $1 WHERE order_id = $2", now, order_id)
    elif etype == "pickup.verified":
        await apply_pickup_verified(db, event, now)
    elif etype == "pickup.reversed":
        await db.execute("UPDATE order_pickups SET reversed_at = $1, reversed_by = $2, reverse_reason = $3, "
                         "reverse_event_id = $4 WHERE order_id = $5 AND reversed_at IS NULL",
                         clean(event["created_at"], 40), clean(payload["operator"], 200), clean(payload["reason"]),
                         event["id"], order_id)
        # the goods are back on the shelf, reserved for the order again
        await db.execute("UPDATE orders SET state = CASE WHEN state = 'picked_up' THEN 'ready' ELSE state END, "
                         "updated_at = $1 WHERE order_id = $2", now, order_id)
    elif etype == "coupon.redeemed":
        await apply_coupon_redeemed(db, store_id, event, now)
    elif etype == "member.activity":
        await apply_activity(db, store_id, event, now)
    elif etype == "change.rejected" and isinstance(payload.get("change_id"), str):
        # the store could not take an order: it will never reserve it, so it no longer counts as pending
        await db.execute("UPDATE orders SET state = 'rejected', updated_at = $1 WHERE change_id = $2 AND "
                         "store_id = $3 AND state = 'created' AND received_at IS NULL",
                         now, payload["change_id"], store_id)


async def apply_pickup_verified(db: Conn, event: dict, now: str) -> None:
    """Record the hand-over. One the hub cannot agree with (the order was cancelled or refunded here
    meanwhile, or it was handed over already) is applied all the same, since the store's ledger moved,
    and the order is flagged with a conflict for a person."""
    payload = event["payload"]
    order_id = payload["order_id"]
    state = await db.fetchval("SELECT state FROM orders WHERE order_id = $1", order_id)
    before = await db.fetchrow("SELECT verified_at, operator FROM order_pickups WHERE order_id = $1 AND "
                               "reversed_at IS NULL", order_id)
    operator, verified_at = clean(payload["operator"], 200), clean(payload["verified_at"], 40)
    conflict = None
    if state in ("cancelled", "refunded"):
        conflict = f"handed over at the store ({verified_at} by {operator}) after the order was {state} here"
    elif before is not None:
        conflict = (f"handed over again at the store ({verified_at} by {operator}); first handed over "
                    f"{before['verified_at']} by {before['operator']}")
    manual = payload.get("manual_reason")
    # a whole new row (a hand-over after a reversal): every column set, the reversal's back to NULL
    await db.execute(
        "INSERT INTO order_pickups (order_id, verified_at, operator, method, device, provisional, jti, manual_reason, "
        "event_id, received_at, member_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
        "ON CONFLICT (order_id) DO UPDATE "
        "SET verified_at = excluded.verified_at, operator = excluded.operator, method = excluded.method, "
        "device = excluded.device, provisional = excluded.provisional, jti = excluded.jti, "
        "manual_reason = excluded.manual_reason, event_id = excluded.event_id, received_at = excluded.received_at, "
        "member_id = excluded.member_id, "
        "reversed_at = NULL, reversed_by = NULL, reverse_reason = NULL, reverse_event_id = NULL",
        order_id, verified_at, operator, payload["method"], clean(payload["device"], 200),
        int(payload["provisional"]), payload.get("jti"), manual and clean(manual, 500), event["id"], now,
        payload.get("member_id"))
    await db.execute("UPDATE orders SET state = CASE WHEN state IN ('cancelled', 'refunded') THEN state ELSE "
                     "'picked_up' END, conflict = coalesce($1, conflict), received_at = coalesce(received_at, $2), "
                     "updated_at = $2 WHERE order_id = $3", conflict, now, order_id)
    if conflict is not None:
        log.warning("pickup conflict", extra={"kv": {"order": order_id, "state": state, "conflict": conflict}})


async def apply_coupon_redeemed(db: Conn, store_id: str, event: dict, now: str) -> None:
    """Count the serial's use. A use the terms did not allow (offline double use, after a revoke, at
    another store) happened all the same: applied, and flagged for a person."""
    payload = event["payload"]
    serial = await db.fetchrow("SELECT s.store_id, c.definition, c.revoked_at FROM coupon_serials s JOIN coupons c "
                               "USING (coupon_id) WHERE s.serial = $1", payload["serial"])
    use_no = await db.fetchval("SELECT count(*) FROM coupon_redemptions WHERE serial = $1", payload["serial"]) + 1
    flags = []
    if use_no > json.loads(serial["definition"]).get("uses", 1):
        flags.append("over_use")
    if serial["revoked_at"] is not None and parse_time(event["created_at"]) >= parse_time(serial["revoked_at"]):
        flags.append("revoked")
    if serial["store_id"] is not None and serial["store_id"] != store_id:
        flags.append("wrong_store")
    await db.execute(
        "INSERT INTO coupon_redemptions (serial, coupon_id, store_id, use_no, sale_id, discount_fen, jti, "
        "provisional, redeemed_at, event_id, received_at, flags) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
        "$11, $12)", payload["serial"], payload["coupon_id"], store_id, use_no, clean(payload["sale_id"], 128),
        payload["discount_fen"], payload["jti"], int(payload["provisional"]), clean(event["created_at"], 40),
        event["id"], now, json.dumps(flags))
    if flags:
        log.warning("coupon redemption flagged", extra={"kv": {"store": store_id, "serial": payload["serial"],
                                                               "use": use_no, "flags": ",".join(flags)}})


def digest(event: dict) -> str:
    """What recognises a resent event that has no usable id (events.digest). An event with an id is
    recognised by its id, and its digest is left empty: hashing every event was a twentieth of an
    upload's work."""
    canonical = json.dumps(event, ensure_ascii=True, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _named(events: list[dict], pick) -> list[str]:
    """The strings `pick` finds in the events, each once: what a slice looks up in one query."""
    found: dict[str, None] = {}
    for event in events:
        try:
            for value in pick(event):
                if isinstance(value, str) and len(value) <= 200 and value.isprintable() and value.isascii():
                    found[value] = None   # anything else is no id or SKU, and its event will be rejected
        except (AttributeError, KeyError, TypeError):  # a malformed event: rejected later, by its checks
            continue
    return list(found)


async def _among(db: Conn, sql: str, first: list, values: list[str]) -> set[str]:
    """The values of the list that `sql` (its last condition `… IN ({})`) finds: one query, not one per event."""
    if not values:
        return set()
    return {r[0] for r in await db.fetch(sql.format(placeholders(len(first) + 1, len(values))), *first, *values)}


async def start_slice(db: Conn, store_id: str, ids: list[str]) -> tuple[int, set[str]]:
    """The store's next_seq, and which of these event ids it has applied already. On PostgreSQL the
    store's row is locked for the slice, so two uploads of one store (a retry beside its original)
    apply one after the other while other stores' go on in parallel; SQLite's one writer does that."""
    if db.dialect == "postgresql":
        # one round trip: the lock, then the ids read once it is held (004_slice_start.sql says why)
        row = await db.fetchrow("SELECT next_seq, applied FROM hub_slice_start($1, $2)", store_id, ids)
        return row["next_seq"], set(row["applied"])
    expected = await db.fetchval("SELECT next_seq FROM stores WHERE store_id = $1", store_id)
    # "+status": not an index term, so the lookup uses events_id; on events_status (store_id, status)
    # it scanned every applied event of the store, for each event uploaded (a backlog drained in O(n^2))
    return expected, await _among(db, "SELECT DISTINCT event_id FROM events WHERE store_id = $1 AND "
                                  "+status = 'applied' AND event_id IN ({})", [store_id], ids)


# A slice's writes on PostgreSQL, in one statement (one round trip, one execution): its event rows,
# its balance moves and the store's next_seq. The highest event row it wrote is for the high-water file.
END_SLICE_POSTGRESQL = """
WITH written AS (
    INSERT INTO events (store_id, seq, event_id, type, created_at, payload, digest, status, reason, received_at)
    SELECT $1::text, e.*, $2::text FROM unnest($3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[],
                                               $8::text[], $9::text[], $10::text[]) AS e
    RETURNING event_row
), moved AS (
    INSERT INTO balances AS b (store_id, sku, on_hand, reserved, updated_at)
    SELECT $1::text, m.*, $2::text FROM unnest($11::text[], $12::bigint[], $13::bigint[]) AS m
    ON CONFLICT (store_id, sku) DO UPDATE SET on_hand = b.on_hand + excluded.on_hand,
        reserved = b.reserved + excluded.reserved, updated_at = excluded.updated_at
)
UPDATE stores SET next_seq = $14, last_upload_at = coalesce($15, last_upload_at) WHERE store_id = $1
RETURNING (SELECT coalesce(max(event_row), 0) FROM written)"""


async def end_slice(db: Conn, store_id: str, rows: list[tuple], moved: dict[str, list[int]], next_seq: int,
                    now: str, *, finished: bool) -> int:
    """Write the slice's event rows (store_id, seq, event_id, type, created_at, payload, digest, status,
    reason, received_at), its balance moves (sku -> [on_hand, reserved]) and the store's next_seq; a
    slice that did not stop early is the store's last upload. An event row at least as high as the
    slice's last, for the high-water file (0: it wrote none, on PostgreSQL)."""
    uploaded_at = now if finished else None
    if db.dialect == "postgresql":
        columns = list(zip(*(row[1:9] for row in rows))) or [()] * 8
        skus = list(moved)
        return await db.fetchval(END_SLICE_POSTGRESQL, store_id, now, *columns, skus,
                                 [moved[sku][0] for sku in skus], [moved[sku][1] for sku in skus],
                                 next_seq, uploaded_at)
    await db.executemany("INSERT INTO events (store_id, seq, event_id, type, created_at, payload, digest, status, "
                         "reason, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)", rows)
    await db.executemany("INSERT INTO balances (store_id, sku, on_hand, reserved, updated_at) VALUES ($1, $2, $3, $4, "
                         "$5) ON CONFLICT (store_id, sku) DO UPDATE SET on_hand = balances.on_hand + excluded.on_hand, "
                         "reserved = balances.reserved + excluded.reserved, updated_at = excluded.updated_at",
                         [(store_id, sku, on_hand, reserved, now) for sku, (on_hand, reserved) in moved.items()])
    return await db.fetchval("UPDATE stores SET next_seq = $1, last_upload_at = coalesce($2, last_upload_at) "
                             "WHERE store_id = $3 RETURNING (SELECT coalesce(max(event_row), 0) FROM events)",
                             next_seq, uploaded_at, store_id)


async def process_batch(db: Conn, store_id: str, events: list[dict], now: str, catalog: set[str]) -> dict:
    """docs/sync-protocol.md 2.2, in the caller's (one) transaction. What each event needs looked up
    (is its id applied already, are its SKUs in the catalog) is looked up for the whole slice at once,
    and the events and balances are written once at its end: on PostgreSQL each statement is a round
    trip, and one per event made a slice several times slower than on SQLite."""
    expected, done_ids = await start_slice(db, store_id, _named(events, lambda e: [e["id"]]))
    # `catalog`: the SKUs this hub has found in the catalog so far (Hub.catalog): only the others are looked up
    skus = _named(events, lambda e: [m["sku"] for m in e["payload"].get("moves") or ()])
    catalog.update(await _among(db, "SELECT sku FROM products WHERE sku IN ({})", [],
                                [sku for sku in skus if sku not in catalog]))
    results, stop, rejected = [], None, []
    rows, written, moved = [], {}, {}
    for event in events:
        seq, event_id = event["seq"], event.get("id")
        known_id = isinstance(event_id, str) and EVENT_ID.match(event_id) is not None
        if known_id and event_id in done_ids:
            results.append({"id": event_id, "seq": seq, "status": "duplicate"})
            continue
        if seq > expected:
            stop = "sequence_gap"
            break
        if seq < expected:
            held = written.get(seq) or await db.fetchrow("SELECT event_id, status, reason, digest FROM events "
                                                         "WHERE store_id = $1 AND seq = $2", store_id, seq)
            same = held is not None and (held["event_id"] == event_id if known_id else held["digest"] == digest(event))
            if same and held["status"] == "rejected":
                # the same rejected event again at its own seq (the answer was lost): the same answer
                results.append({"id": event_id, "seq": seq, "status": "rejected", "reason": held["reason"]})
                continue
            stop = "seq_taken"
            break
        reason = await validate_event(db, store_id, event, catalog)
        if reason is None:
            await apply_event(db, store_id, event, now, moved)
            if known_id:
                done_ids.add(event_id)
        etype, created = event.get("type"), event.get("created_at")
        row = (store_id, seq, event_id if known_id else None, clean(etype, 64) if isinstance(etype, str) else None,
               clean(created, 40) if isinstance(created, str) else None, stored_json(event.get("payload")),
               "" if known_id else digest(event), "applied" if reason is None else "rejected", reason, now)
        rows.append(row)
        written[seq] = {"event_id": row[2], "digest": row[6], "status": row[7], "reason": reason}
        expected += 1
        result = {"id": event_id, "seq": seq, "status": "applied" if reason is None else "rejected"}
        if reason is not None:
            result["reason"] = reason
            rejected.append((seq, event_id, etype, reason))
        results.append(result)
    event_row = await end_slice(db, store_id, rows, moved, expected, now, finished=stop is None)
    return {"results": results, "next_seq": expected, "stop": stop, "rejected": rejected, "event_row": event_row}


async def post_events(request: web.Request) -> web.Response:
    """An upload passes the admission gate (hub/admission.py) before its body is read or its token
    looked up: beyond the hub's bounds it is answered 429/503 with Retry-After at once. Then it is
    applied in slices (`hub.db.slice_events`), and abandoned between them if its store went away."""
    hub = request.app[HUB]
    path_store = request.match_info["store_id"]
    ticket = hub.admission.admit(path_store, request.content_length)
    finished = False
    try:
        store_id = await auth_store(request)  # a read, before the body: a 413 below carries the epoch
        limit = hub.admission.body_limit
        if request.content_length is not None and request.content_length > limit:
            raise HubError(413, "body_too_large", f"an upload's body may hold at most {limit} bytes: send fewer "
                           "events per batch")
        events = check_batch(await json_body(request))
        done = {"results": [], "rejected": [], "event_row": 0}
        # its slices keep its place: uploads finish in turn, not all at the end; the fewer its events,
        # the sooner it is due (hub/admission.py, DUE_PER_EVENT)
        place = hub.db.bulk_place(due=time.monotonic() + len(events) * DUE_PER_EVENT)
        try:
            size = hub.db.slice_events
            for start in range(0, len(events), size):
                part = await unless_gone(request, hub.db.write_bulk(
                    process_batch, store_id, events[start:start + size], iso(hub.now()), hub.catalog, place=place))
                done = {**part, "results": done["results"] + part["results"],
                        "rejected": done["rejected"] + part["rejected"]}
                hub.metrics.events(part["results"])
                hub.admission.progress(ticket, size / len(events))  # the gate's pace counts it slice by slice
                if part["stop"] is not None:
                    break
        except (ConnectionResetError, asyncio.CancelledError):
            hub.admission.abandoned()  # the error middleware logs it: one info line, no traceback
            raise
        finally:
            if done["event_row"]:  # what was committed, also of an upload abandoned between slices
                await hub.committed(event_row=done["event_row"])
        finished = True
    finally:
        hub.admission.done(path_store, ticket, finished=finished)
    counts = {s: sum(1 for r in done["results"] if r["status"] == s) for s in ("applied", "duplicate", "rejected")}
    for seq, event_id, etype, reason in done["rejected"]:
        log.warning("event rejected", extra={"kv": {"store": store_id, "seq": seq, "id": show(event_id),
                                                    "type": show(etype), "reason": reason}})
    kv = {"store": store_id, "first_seq": events[0]["seq"], "events": len(events), **counts,
          "next_seq": done["next_seq"]}
    if done["stop"] is not None:
        log.info("upload stopped", extra={"kv": {**kv, "error": done["stop"]}})
        message = ("the batch skips sequence numbers: send from expected_seq" if done["stop"] == "sequence_gap" else
                   "a sequence number below expected_seq already holds another event")
        raise HubError(409, done["stop"], message, expected_seq=done["next_seq"], results=done["results"])
    log.info("events uploaded", extra={"kv": kv})
    return answer(request, {"next_seq": done["next_seq"], "results": done["results"]})


async def get_events(request: web.Request) -> web.Response:
    """`GET …/events?from_seq=N&limit=M`: what the hub holds of the store's events from seq N (each
    one's id, seq, status and a rejection's reason), so a store whose answer was lost (a timeout, a
    restart) learns how far the hub got instead of sending the same batch again (protocol 2.6)."""
    store_id = await auth_store(request)
    from_seq = query_int(request, "from_seq", 1, 1, 2**62)
    limit = query_int(request, "limit", 500, 1, 500)

    async def held(db: Conn):
        next_seq = await db.fetchval("SELECT next_seq FROM stores WHERE store_id = $1", store_id)
        rows = await db.fetch("SELECT seq, event_id, status, reason FROM events WHERE store_id = $1 AND seq >= $2 "
                              "ORDER BY seq LIMIT $3", store_id, from_seq, limit)
        results = []
        for seq, event_id, status, reason in rows:
            result = {"id": event_id, "seq": seq, "status": status}
            if status == "rejected":
                result["reason"] = reason
            results.append(result)
        return {"next_seq": next_seq, "results": results}

    return answer(request, await request.app[HUB].db.read(held))
