"""Scans on the local API: poll or stream (WebSocket) from a consumer's position, acknowledge, type one in.

A payment code (付款码) is in the journal masked; the till that asked for one
(`POST /scans/payment-request`) gets the whole code on that scan, as `payment_code`, over its own
reads with the same token (edge/services/payment_codes.py, docs/api.md).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Annotated

from aiohttp import WSMsgType, web
from pydantic import Field

from drivers.scan import Scan
from edge.api.registry import Param, json_response, operation, parse_body, query_int, write
from edge.core import context
from edge.core.classify import classify
from edge.core.errors import InputError
from edge.core.schemas import Body
from edge.services.app_keys import CONFIG, DEVICE, DEVICES, SCANS, STORE
from edge.store import scans

CONSUMER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
CONSUMER = Param("consumer", "query", {"type": "string", "pattern": CONSUMER_PATTERN},
                 "Who reads (a till's POS, the cashier screen): each name has its own position", True)
Consumer = Annotated[str, Field(pattern=CONSUMER_PATTERN)]


class Ack(Body):
    consumer: Consumer
    seq: Annotated[int, Field(ge=0, le=2**62)]


class PaymentRequest(Body):
    consumer: Consumer = Field(description="The reader (this till's POS) that gets the whole payment code")
    scanner: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$",
                                  description="Take the code from this scanner only (its config name)")] | None = None


class ScanIn(Body):
    text: Annotated[str, Field(min_length=1, max_length=2048, description="The code as scanned or typed")]
    typed: bool = Field(False, description="Typed by a person (6-8 digits are then a pickup code)")


def _consumer(request: web.Request) -> str:
    name = request.query.get("consumer", "")
    if not re.fullmatch(CONSUMER_PATTERN, name):
        raise InputError("invalid_query", "consumer must be 1-64 letters, digits, _ . -", field="consumer",
                         status=400)
    return name


async def _position(request: web.Request, consumer: str) -> int:
    """The consumer's position; the first time a consumer is seen it is registered at the newest scan
    (bookkeeping, not data: from then on nothing is missed between polls)."""
    store = request.app[STORE]
    known = await store.read(scans.position, consumer)
    if known is not None:
        return known
    return await store.write(scans.register, consumer, context.make(request[DEVICE], request.app[CONFIG].tz, request.app[CONFIG].day_cutoff))


@operation("get", "/scans", "Scans after the consumer's acknowledged position (long poll with wait)",
           tag="scans", params=[CONSUMER, Param("wait", "query", {"type": "integer", "minimum": 0, "maximum": 30},
                                                 "Seconds to wait for a scan when there is none yet"),
                                Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 500,
                                                         "default": 100}, "Page size")],
           responses={200: "position and items (seq, device, source, text, kind, detail, scanned_at)"})
async def list_scans(request):
    consumer = _consumer(request)
    wait = query_int(request, "wait", 0, 0, 30)
    limit = query_int(request, "limit", 100, 1, 500)
    pos = await _position(request, consumer)
    if wait:
        await request.app[SCANS].wait_after(pos, wait)
    items = await request.app[STORE].read(scans.after, pos, limit)
    return json_response({"consumer": consumer, "position": pos, "items": _reveal(request, consumer, items)})


def _reveal(request: web.Request, consumer: str, items: list[dict]) -> list[dict]:
    """The whole payment code on the scans claimed for this consumer and this till's token."""
    payments = request.app[SCANS].payments
    out = []
    for item in items:
        if item["kind"] == "payment_code":
            code = payments.whole(item["seq"], consumer, request[DEVICE])
            if code is not None:
                item = {**item, "payment_code": code}
        out.append(item)
    return out


@operation("post", "/scans/payment-request", "The till is about to take a payment: the next payment code "
           "(付款码) is handed whole to this consumer, on this token, for 60 s", tag="scans", body=PaymentRequest,
           writes=False, responses={200: "consumer, scanner, wait_seconds"})
async def request_payment_code(request):
    _, body = await parse_body(request, PaymentRequest)
    wait = request.app[SCANS].payments.request(body.consumer, request[DEVICE], body.scanner)
    return json_response({"consumer": body.consumer, "scanner": body.scanner, "wait_seconds": wait})


@operation("post", "/scans/ack", "Acknowledge scans up to seq: they are not delivered to this consumer again",
           tag="scans", body=Ack, responses={201: "consumer and acked_seq"})
async def ack_scans(request):
    response = await write(request, Ack, lambda conn, body, ctx: scans.ack(conn, body.consumer, body.seq, ctx))
    acked = json.loads(response.body)
    request.app[SCANS].payments.acked(acked["consumer"], acked["acked_seq"])
    return response


@operation("post", "/scans", "A code typed by a person or sent by a till: classified and queued like a scan",
           tag="scans", body=ScanIn, responses={201: "the scan as stored, with its kind"})
async def post_scan(request):
    router = request.app[SCANS]
    _, sent = await parse_body(request, ScanIn)
    # classified once, here, before the write transaction; stored with the scan for every later reader
    classified = classify(sent.text, router.formats, typed=sent.typed)

    def run(conn, body, ctx):
        scan = Scan(device=request[DEVICE], source="typed" if body.typed else "api", text=body.text,
                    raw=body.text.encode("utf-8"), at=time.time())
        return router.record(conn, scan, classified)

    response = await write(request, ScanIn, run)
    await router.announce(json.loads(response.body)["seq"])
    return response


@operation("get", "/scans/ws", "WebSocket: every scan after the consumer's position as it happens; send "
           '{"ack": seq} to move the position', tag="scans", params=[CONSUMER],
           responses={101: "switching to WebSocket", 400: "bad consumer"})
async def scans_ws(request):
    consumer = _consumer(request)
    router, store = request.app[SCANS], request.app[STORE]
    sent = await _position(request, consumer)  # before the handshake: a scan after it is never missed
    ws = web.WebSocketResponse(heartbeat=20)
    await ws.prepare(request)

    async def push():
        nonlocal sent
        while True:
            for item in _reveal(request, consumer, await store.read(scans.after, sent, 100)):
                await ws.send_json(item, dumps=lambda o: json.dumps(o, ensure_ascii=False))
                sent = item["seq"]
            await router.wait_after(sent, 25)

    pusher = asyncio.create_task(push())
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                seq = json.loads(msg.data)["ack"]
                if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
                    raise ValueError
            except (ValueError, KeyError, TypeError):
                await ws.send_json({"error": 'send {"ack": <seq>}'})
                continue
            ctx = context.make(request[DEVICE], request.app[CONFIG].tz, request.app[CONFIG].day_cutoff)
            acked = await store.write(scans.ack, consumer, seq, ctx)
            router.payments.acked(consumer, acked["acked_seq"])
    finally:
        pusher.cancel()
        await asyncio.gather(pusher, return_exceptions=True)
    return ws


@operation("get", "/scanners", "Scanners and cameras: state, last error, counters, the last scan (raw bytes)",
           tag="scans", responses={200: "items"})
async def list_scanners(request):
    return json_response({"items": request.app[DEVICES].states()})
