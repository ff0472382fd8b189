"""The reference cloud hub (hub/) against docs/sync-protocol.md and docs/hub-admin-api.md.

In-process: each test starts the hub's aiohttp app on a temporary folder with aiohttp's
TestServer/TestClient, and a fake clock (stale stores and order days without sleeping). One test
runs the real command as a process and stops it with SIGTERM. Every test runs twice: on SQLite and
on a fresh PostgreSQL database (conftest's hub_db); the few that check SQLite's own file are skipped
on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.client
import io
import itertools
import json
import logging
import os
import queue
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hub.app import build_hub_app
from hub.highwater import HighWater
from tests.hub_database import HUB_DB as DB

ADMIN = "test-admin-token"
REPO = Path(__file__).resolve().parent.parent
EAN_WATER, EAN_CHIPS, EAN_TISSUE = "6921234500002", "6901234567892", "6971111222237"
CREATED_AT = "2026-11-21T08:00:00.000Z"


class Clock:
    def __init__(self):
        self.now = datetime(2026, 11, 21, 8, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


_ids = itertools.count(1)
@pytest.fixture(autouse=True)
def database(hub_database):
    """Every test of this module (and of the modules that import this fixture) on both stores."""


def event(store: str, seq: int, moves=(), etype: str = "stock.received", id: str | None = None, **payload) -> dict:
    """An envelope; moves as (sku, qty, reason) triples, None for no moves key."""
    if moves is not None:
        payload["moves"] = [{"sku": s, "qty": q, "reason": r} for s, q, r in moves]
    return {"id": id or f"ev-{next(_ids)}", "store_id": store, "seq": seq, "type": etype, "created_at": CREATED_AT,
            "payload": payload}


def product(sku: str, price: int = 100, **fields) -> dict:
    return {"sku": sku, "name": f"商品 {sku}", "price_fen": price, **fields}


class Hub:
    """A running hub app and a client of it."""

    def __init__(self, client: TestClient, data_dir: Path, clock: Clock):
        self.client, self.data_dir, self.clock = client, data_dir, clock
        self.tokens: dict[str, str] = {}

    async def call(self, method: str, path: str, body=None, *, token: str | None = ADMIN, raw: bytes | None = None,
                   params=None, headers=None) -> tuple[int, dict]:
        hdrs = {"Authorization": f"Bearer {token}"} if token else {}
        hdrs.update(headers or {})
        kwargs = {"data": io.BytesIO(raw)} if raw is not None else ({"json": body} if body is not None else {})
        resp = await self.client.request(method, path, params=params, headers=hdrs, **kwargs)
        text = await resp.text()
        assert resp.content_type == "application/json", (resp.status, text)
        return resp.status, json.loads(text)

    async def admin(self, method: str, path: str, body=None, status: int = 200, **kw) -> dict:
        code, data = await self.call(method, "/admin/v1" + path, body, **kw)
        assert code == status, data
        assert isinstance(data["epoch"], str)
        return data

    async def add_store(self, store_id: str) -> str:
        data = await self.admin("POST", "/stores", {"store_id": store_id, "name": f"门店 {store_id}"}, status=201)
        self.tokens[store_id] = data["token"]
        return data["token"]

    async def add_products(self, *products: dict, store_id: str | None = None) -> dict:
        return await self.admin("POST", "/products", {"products": list(products), "store_id": store_id})

    async def upload(self, store_id: str, events: list[dict], token: str | None = None) -> tuple[int, dict]:
        return await self.call("POST", f"/sync/v1/stores/{store_id}/events", {"protocol": 1, "events": events},
                               token=token or self.tokens[store_id])

    async def ok_upload(self, store_id: str, events: list[dict]) -> dict:
        code, data = await self.upload(store_id, events)
        assert code == 200, data
        return data

    async def sync(self, store_id: str, what: str, params=None, token: str | None = None) -> dict:
        code, data = await self.call("GET", f"/sync/v1/stores/{store_id}/{what}", params=params,
                                     token=token or self.tokens[store_id])
        assert code == 200, data
        return data

    async def order(self, store_id: str, lines: list[tuple[str, int]], status: int = 201, **fields) -> dict:
        return await self.admin("POST", f"/stores/{store_id}/orders",
                                {"kind": "pickup", "lines": [{"sku": s, "qty": q} for s, q in lines], **fields},
                                status=status)

    async def close(self) -> None:
        await self.client.close()


async def start_hub(data_dir: Path, clock: Clock | None = None, **options) -> Hub:
    clock = clock or Clock()
    client = TestClient(TestServer(build_hub_app(data_dir, admin_token=ADMIN, clock=clock, db_url=DB["url"],
                                                 **options)))
    await client.start_server()
    return Hub(client, data_dir, clock)


@pytest.fixture
async def hub(tmp_path):
    """A hub with stores s1 and s2 and a catalog of three products."""
    h = await start_hub(tmp_path / "hub")
    await h.add_store("s1")
    await h.add_store("s2")
    await h.add_products(product("DRK-001", 200, barcodes=[EAN_WATER]), product("SNK-001", 750),
                         product("DAI-001", 350))
    try:
        yield h
    finally:
        await h.close()


async def db_dump(data_dir: Path) -> str:
    """The whole database as text, to compare before and after."""
    if DB["url"] is None:
        conn = sqlite3.connect(f"file:{data_dir / 'hub.db'}?mode=ro", uri=True)
        try:
            return "\n".join(conn.iterdump())
        finally:
            conn.close()
    conn = await asyncpg.connect(DB["url"])
    try:
        out = []
        for (table,) in await conn.fetch("SELECT table_name FROM information_schema.tables WHERE table_schema = "
                                         "'public' ORDER BY table_name"):
            rows = await conn.fetch(f'SELECT * FROM "{table}" AS t ORDER BY t::text')
            out.append(f"{table} ({', '.join(rows[0].keys()) if rows else ''})")
            out += [repr(tuple(r)) for r in rows]
        return "\n".join(out)
    finally:
        await conn.close()


# -- upload ---------------------------------------------------------------------------------------

async def test_events_apply_in_seq_order_and_balances_follow_the_moves(hub):
    events = [event("s1", 1, [("DRK-001", 48, "receipt"), ("SNK-001", 20, "receipt")]),
              event("s1", 2, [("DRK-001", -2, "sale")], etype="sale.recorded", sale_id="x-1"),
              event("s1", 3, [("DRK-001", 3, "reserve"), ("DRK-001", -1, "release")], etype="stock.adjusted")]
    data = await hub.ok_upload("s1", events)
    assert data["next_seq"] == 4
    assert [(r["id"], r["seq"], r["status"]) for r in data["results"]] == \
        [(e["id"], e["seq"], "applied") for e in events]
    balances = await hub.sync("s1", "balances")
    assert balances["next_seq"] == 4
    assert balances["balances"] == [{"sku": "DRK-001", "on_hand": 46, "reserved": 2},
                                    {"sku": "SNK-001", "on_hand": 20, "reserved": 0}]
    assert (await hub.sync("s2", "balances"))["balances"] == []         # another store's copy is untouched
    assert (await hub.sync("s2", "state"))["next_seq"] == 1


async def test_resent_events_are_duplicates_and_change_nothing(hub):
    first = [event("s1", 1, [("DRK-001", 10, "receipt")]), event("s1", 2, [("DRK-001", -1, "sale")], "sale.recorded")]
    await hub.ok_upload("s1", first)
    before = await db_dump(hub.data_dir)
    again = await hub.ok_upload("s1", first)
    assert [r["status"] for r in again["results"]] == ["duplicate", "duplicate"]
    assert again["next_seq"] == 3
    # the same id with another body is still the same event: no effect
    changed = dict(first[1], payload={"moves": [{"sku": "DRK-001", "qty": -9, "reason": "sale"}]})
    assert (await hub.ok_upload("s1", [changed]))["results"][0]["status"] == "duplicate"
    assert await db_dump(hub.data_dir) == before
    # known events followed by new ones: duplicates, then applied
    mixed = await hub.ok_upload("s1", [first[1], event("s1", 3, [("DRK-001", 5, "receipt")])])
    assert [r["status"] for r in mixed["results"]] == ["duplicate", "applied"] and mixed["next_seq"] == 4
    assert (await hub.sync("s1", "balances"))["balances"] == [{"sku": "DRK-001", "on_hand": 14, "reserved": 0}]


async def test_a_gap_answers_409_with_expected_seq_and_what_was_done(hub):
    sent = [event("s1", n, [("DRK-001", 1, "receipt")]) for n in (1, 2, 3)]
    await hub.ok_upload("s1", sent)
    before = await db_dump(hub.data_dir)
    code, data = await hub.upload("s1", [event("s1", 6), event("s1", 7)])
    assert code == 409 and data["error"] == "sequence_gap" and data["expected_seq"] == 4 and data["results"] == []
    assert isinstance(data["epoch"], str) and data["message"]
    # the results before the stop are listed: a known id is a duplicate wherever it comes
    code, data = await hub.upload("s1", [dict(sent[1], seq=5), event("s1", 6)])
    assert code == 409 and data["error"] == "sequence_gap" and data["expected_seq"] == 4
    assert data["results"] == [{"id": sent[1]["id"], "seq": 5, "status": "duplicate"}]
    assert await db_dump(hub.data_dir) == before
    resend = await hub.ok_upload("s1", [event("s1", 4), event("s1", 5)])
    assert resend["next_seq"] == 6


async def test_a_lower_seq_holding_another_event_is_seq_taken(hub):
    sent = [event("s1", n, [("DRK-001", 1, "receipt")]) for n in (1, 2, 3)]
    await hub.ok_upload("s1", sent)
    before = await db_dump(hub.data_dir)
    code, data = await hub.upload("s1", [event("s1", 2, [("DRK-001", 1, "receipt")])])
    assert (code, data["error"], data["expected_seq"], data["results"]) == (409, "seq_taken", 4, [])
    code, data = await hub.upload("s1", [sent[0], event("s1", 2)])     # restored store: seq 2 is another event now
    assert (code, data["error"], data["expected_seq"]) == (409, "seq_taken", 4)
    assert data["results"] == [{"id": sent[0]["id"], "seq": 1, "status": "duplicate"}]
    assert await db_dump(hub.data_dir) == before


async def test_an_event_without_a_usable_id_is_recognised_by_its_digest_when_resent(hub):
    """No id to go by: the same envelope again at its seq gets the same rejection; another one is seq_taken."""
    idless = {k: v for k, v in event("s1", 1, [("DRK-001", 1, "receipt")]).items() if k != "id"}
    first = await hub.ok_upload("s1", [idless])
    assert first["results"][0]["status"] == "rejected" and first["next_seq"] == 2
    again = await hub.ok_upload("s1", [idless])                                  # its answer was lost
    assert again["results"] == first["results"] and again["next_seq"] == 2
    before = await db_dump(hub.data_dir)
    code, data = await hub.upload("s1", [dict(idless, created_at="2026-11-21T09:00:00.000Z")])
    assert (code, data["error"], data["expected_seq"]) == (409, "seq_taken", 2)
    assert await db_dump(hub.data_dir) == before
    await hub.ok_upload("s1", [event("s1", 2, [("DRK-001", 1, "receipt")])])   # an event with an id at seq 2 ...
    code, data = await hub.upload("s1", [{k: v for k, v in event("s1", 2).items() if k != "id"}])
    assert (code, data["error"]) == (409, "seq_taken")                          # ... is not an id-less one's


async def test_a_sku_found_in_the_catalog_is_not_looked_up_again_and_an_unknown_one_always_is(hub, monkeypatch):
    import hub.events as uploads

    real, looked_up = uploads._among, []

    async def among(db, sql, first, values):
        if "FROM products" in sql:
            looked_up.append(sorted(values))
        return await real(db, sql, first, values)

    monkeypatch.setattr(uploads, "_among", among)
    await hub.ok_upload("s1", [event("s1", 1, [("DRK-001", 5, "receipt")])])
    await hub.ok_upload("s1", [event("s1", 2, [("DRK-001", 1, "receipt"), ("NEW-001", 1, "receipt")])])
    assert looked_up == [["DRK-001"], ["NEW-001"]]
    assert (await hub.ok_upload("s1", [event("s1", 3, [("NEW-001", 1, "receipt")])]))["results"][0]["status"] \
        == "rejected"
    await hub.add_products(product("NEW-001"))                      # products are added, never removed
    assert (await hub.ok_upload("s1", [event("s1", 4, [("NEW-001", 1, "receipt")])]))["results"][0]["status"] \
        == "applied"
    assert looked_up[2:] == [["NEW-001"], ["NEW-001"]]


async def test_rejected_events_keep_their_seq_and_are_validated_again_when_resent(hub):
    good = event("s1", 1, [("DRK-001", 10, "receipt")])
    bad = [
        (event("s1", 0, [("NEW-001", 5, "receipt")], id="rej-sku"), "unknown_sku: NEW-001 is not in the chain catalog"),
        (event("s1", 0, [("DRK-001", 1, "pickup")], etype="pickup.teleported", id="rej-type"), "unknown_type: "),
        (event("s1", 0, [("DRK-001", 0, "adjustment")]), "invalid_moves: payload.moves[0].qty"),
        (event("s1", 0, [("DRK-001", "1", "adjustment")]), "invalid_moves: payload.moves[0].qty"),
        (event("s1", 0, [("DRK-001", 1.5, "adjustment")]), "invalid_moves: payload.moves[0].qty"),
        (event("s1", 0, [("DRK-001", 1, "adjustment"), ("DRK-001", True, "adjustment")]),
         "invalid_moves: payload.moves[1].qty"),
        (event("s1", 0, [("DRK-001", 10 ** 30, "adjustment")]), "invalid_moves: payload.moves[0].qty"),
        (event("s1", 0, [("DRK-001", -1, "theft")]), "invalid_moves: payload.moves[0].reason"),
        (dict(event("s1", 0), payload={"moves": {"sku": "DRK-001", "qty": 1, "reason": "sale"}}),
         "invalid_moves: payload.moves must"),
        (dict(event("s1", 0), payload={"moves": ["DRK-001"]}), "invalid_moves: payload.moves[0] must be an object"),
        (dict(event("s1", 0), payload={"moves": [{"qty": 1, "reason": "sale"}]}),
         "invalid_moves: payload.moves[0].sku"),
        (dict(event("s1", 0), payload={"moves": None}), "invalid_moves: payload.moves must"),
        (dict(event("s1", 0, [("DRK-001", 1, "receipt")]), store_id="s2"), "store_mismatch: "),
        ({k: v for k, v in event("s1", 0, [("DRK-001", 1, "receipt")]).items() if k != "created_at"},
         "invalid_envelope: created_at"),
        (dict(event("s1", 0), created_at="yesterday"), "invalid_envelope: created_at"),
        (dict(event("s1", 0), payload=[{"sku": "DRK-001"}]), "invalid_envelope: payload"),
        ({k: v for k, v in event("s1", 0).items() if k != "type"}, "invalid_envelope: type"),
        (dict(event("s1", 0), id=42), "invalid_envelope: id"),
        (dict(event("s1", 0), id="\ud800-lone-surrogate"), "invalid_envelope: id"),
        (dict(event("s1", 0), type="sale.\ud800"), "unknown_type: "),
        (event("s1", 0, [("DRK-001", 1, "receipt")], note="\udfff"), None),
        ({k: v for k, v in event("s1", 0).items() if k != "id"}, "invalid_envelope: id"),
        (event("s1", 0, [("DRK-001", 1, "reserve")], etype="order.received", order_id="o-unknown"), "unknown_order: "),
        (event("s1", 0, None, etype="order.conflict"), "invalid_payload: order_id"),
    ]
    batch = [good] + [dict(e, seq=n) for n, (e, _) in enumerate(bad, start=2)]
    data = await hub.ok_upload("s1", batch)
    assert data["next_seq"] == len(batch) + 1                       # every rejected event took its seq
    assert data["results"][0]["status"] == "applied"
    for seq, (result, (sent, reason)) in enumerate(zip(data["results"][1:], bad), start=2):
        if reason is None:   # a lone surrogate deep in a payload is the store's business: applied
            assert result["status"] == "applied", result
            continue
        assert result["status"] == "rejected" and result["reason"].startswith(reason), (result, reason)
        assert result["seq"] == seq and result["id"] == sent.get("id")
    assert data["results"][1]["reason"] == "unknown_sku: NEW-001 is not in the chain catalog"
    assert (await hub.sync("s1", "balances"))["balances"] == [{"sku": "DRK-001", "on_hand": 11, "reserved": 0}]

    # the answer was lost: the same batch again gives the same answers and changes nothing
    before = await db_dump(hub.data_dir)
    expected = [dict(r, status="duplicate") if r["status"] == "applied" else r for r in data["results"]]
    assert (await hub.ok_upload("s1", batch))["results"] == expected
    assert await db_dump(hub.data_dir) == before

    # a dead letter retried before its cause was fixed: validated again, rejected again, takes a new seq
    seq = data["next_seq"]
    again = await hub.ok_upload("s1", [dict(bad[1][0], seq=seq)])
    assert again["results"][0]["status"] == "rejected" and again["next_seq"] == seq + 1
    # after the product is published, the rejected id resent at a new seq applies
    await hub.add_products(product("NEW-001"))
    retried = await hub.ok_upload("s1", [dict(bad[0][0], seq=seq + 1)])
    assert retried["results"] == [{"id": "rej-sku", "seq": seq + 1, "status": "applied"}]
    assert (await hub.ok_upload("s1", [dict(bad[0][0], seq=seq + 2)]))["results"][0]["status"] == "duplicate"
    assert (await hub.sync("s1", "balances"))["balances"] == [{"sku": "DRK-001", "on_hand": 11, "reserved": 0},
                                                              {"sku": "NEW-001", "on_hand": 5, "reserved": 0}]
    listing = await hub.admin("GET", "/stores/s1/events", params={"status": "rejected", "limit": "1000"})
    assert len(listing["events"]) == len(bad)            # all but the applied one, plus the retry
    assert listing["events"][0]["seq"] == 2 and listing["events"][0]["reason"].startswith("unknown_sku")
    page = await hub.admin("GET", "/stores/s1/events",
                           params={"status": "applied", "after_seq": str(seq), "limit": "1"})
    assert [e["id"] for e in page["events"]] == ["rej-sku"] and page["next_after_seq"] is None
    first = await hub.admin("GET", "/stores/s1/events", params={"limit": "1"})
    assert [e["seq"] for e in first["events"]] == [1] and first["next_after_seq"] == 1


async def test_the_balances_checksum_is_the_documented_one(hub):
    await hub.add_products(product("b-lower"), product("B-upper"), product("ZERO-1"))
    await hub.ok_upload("s1", [
        event("s1", 1, [("DRK-001", 48, "receipt"), ("SNK-001", 20, "receipt"), ("b-lower", 5, "receipt"),
                        ("B-upper", 7, "receipt"), ("ZERO-1", 3, "receipt")]),
        event("s1", 2, [("DRK-001", -50, "sale"), ("ZERO-1", -3, "sale")], "sale.recorded"),
        event("s1", 3, [("SNK-001", 2, "reserve")], "stock.adjusted")])
    # by hand: non-zero SKUs in byte order ('B' 0x42 < 'D' < 'S' < 'b' 0x62); ZERO-1 nets to zero
    lines = "B-upper\t7\t0\nDRK-001\t-2\t0\nSNK-001\t20\t2\nb-lower\t5\t0\n"
    assert hashlib.sha256(lines.encode()).hexdigest() == \
        "25e2c45ac2f4c788c19c034845a9d50af918b4e5023cae7a9dac324467d40179"
    state = await hub.sync("s1", "state")
    assert state["balances_checksum"] == hashlib.sha256(lines.encode()).hexdigest()
    assert state["balances_count"] == 4 and state["next_seq"] == 4
    balances = await hub.sync("s1", "balances")
    assert [b["sku"] for b in balances["balances"]] == ["B-upper", "DRK-001", "SNK-001", "b-lower"]
    empty = await hub.sync("s2", "state")
    assert empty["balances_checksum"] == hashlib.sha256(b"").hexdigest() and empty["balances_count"] == 0


# -- download -------------------------------------------------------------------------------------

async def test_the_changes_feed_pages_in_cursor_order_with_the_stores_own_and_everyones(hub):
    # cursor 1: the hub's signing key (first start), 2-4: the fixture's products, all for everyone
    await hub.add_products(product("ONLY-S2"), store_id="s2")                                        # 5
    corr = await hub.admin("POST", "/stores/s1/corrections", {"sku": "DRK-001", "qty": -2, "reason": "调拨"},
                           status=201)                                                                # 6
    await hub.admin("POST", "/changes", {"store_id": None, "type": "coupon.defined",
                                         "payload": {"coupon_id": "CPN-1", "discount_fen": 500}}, status=201)  # 7
    assert corr["cursor"] == 6
    pages, after = [], 0
    while True:
        page = await hub.sync("s1", "changes", {"after": str(after), "limit": "2"})
        pages.append(([c["cursor"] for c in page["changes"]], page["more"]))
        after = page["next_cursor"]
        if not page["more"]:
            break
    assert pages == [([1, 2], True), ([3, 4], True), ([6, 7], False)]
    assert after == 7
    tail = await hub.sync("s1", "changes", {"after": "7"})
    assert tail["changes"] == [] and tail["next_cursor"] == 7 and tail["more"] is False
    whole = await hub.sync("s2", "changes")
    assert [c["cursor"] for c in whole["changes"]] == [1, 2, 3, 4, 5, 7]
    assert whole["changes"][0]["type"] == "key.published"
    change = (await hub.sync("s1", "changes", {"after": "5", "limit": "1"}))["changes"][0]
    assert change["type"] == "stock.correction" and change["id"] == corr["change_id"]
    assert change["payload"] == {"sku": "DRK-001", "qty": -2, "reason": "调拨"} and change["created_at"].endswith("Z")
    product_change = whole["changes"][1]
    assert product_change["type"] == "product.upserted"
    assert product_change["payload"] == {"sku": "DRK-001", "name": "商品 DRK-001", "price_fen": 200, "unit": "件",
                                         "category": None, "low_stock": 0, "barcodes": [EAN_WATER], "active": True}
    assert (await hub.sync("s1", "state"))["last_cursor"] == 7
    await hub.admin("POST", "/stores/s2/corrections", {"sku": "DRK-001", "qty": 1, "reason": "x"}, status=201)
    assert (await hub.sync("s1", "state"))["last_cursor"] == 7 and (await hub.sync("s2", "state"))["last_cursor"] == 8


async def test_hints_are_pushed_to_the_affected_stores_websockets(hub):
    path = "/sync/v1/stores/{}/hints"
    auth = {sid: {"Authorization": f"Bearer {tok}"} for sid, tok in hub.tokens.items()}
    for headers, status in (({}, 401), (auth["s2"], 403)):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await hub.client.ws_connect(path.format("s1"), headers=headers)
        assert refused.value.status == status
    code, data = await hub.call("GET", path.format("s1"), token=hub.tokens["s1"])    # not a WebSocket upgrade
    assert code == 400 and data["error"] == "invalid_request"

    ws1 = await hub.client.ws_connect(path.format("s1"), headers=auth["s1"])
    ws1b = await hub.client.ws_connect(path.format("s1"), headers=auth["s1"])
    ws2 = await hub.client.ws_connect(path.format("s2"), headers=auth["s2"])
    epoch = (await hub.sync("s1", "state"))["epoch"]
    for ws in (ws1, ws1b, ws2):
        assert await ws.receive_json(timeout=5) == {"type": "hello", "epoch": epoch, "cursor": 4}
    await hub.ok_upload("s1", [event("s1", 1, [("DRK-001", 5, "receipt")])])
    order = await hub.order("s1", [("DRK-001", 1)])
    for ws in (ws1, ws1b):
        assert await ws.receive_json(timeout=5) == {"type": "changes", "cursor": order["cursor"]}
    published = await hub.add_products(product("NEW-002"))          # for every store
    # s2's next message is this one: it was not told about s1's order
    assert await ws2.receive_json(timeout=5) == {"type": "changes", "cursor": published["last_cursor"]}
    for ws in (ws1, ws1b):
        assert await ws.receive_json(timeout=5) == {"type": "changes", "cursor": published["last_cursor"]}
    assert (await hub.admin("GET", "/stores/s1"))["hint_sockets"] == 2

    # a new epoch is told at once; a rotated token closes the store's sockets
    new = await hub.admin("POST", "/epoch")
    assert await ws2.receive_json(timeout=5) == \
        {"type": "hello", "epoch": new["epoch"], "cursor": published["last_cursor"]}
    await hub.admin("POST", "/stores", {"store_id": "s1", "name": "一号店"})
    for ws in (ws1, ws1b):
        message = await ws.receive(timeout=5)
        if message.type == aiohttp.WSMsgType.TEXT:   # the epoch's hello came first
            message = await ws.receive(timeout=5)
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
    await ws2.close()


# -- online orders --------------------------------------------------------------------------------

async def test_availability_counts_the_buffer_pending_orders_and_staleness(tmp_path):
    hub = await start_hub(tmp_path / "hub", safety_buffer=2, stale_after=600)
    try:
        await hub.add_store("s1")
        await hub.add_store("s2")
        await hub.add_products(product("DRK-001", 200), product("SNK-001", 750), product("OLD-001", active=False))

        def rows(data):
            return {i["sku"]: (i["balance_available"], i["pending"], i["buffer"], i["online_available"])
                    for i in data["items"]}

        never = await hub.admin("GET", "/stores/s1/availability")
        assert never["stale"] is True and never["last_upload_at"] is None
        assert all(i["online_available"] == 0 for i in never["items"])
        await hub.ok_upload("s1", [event("s1", 1, [("DRK-001", 10, "receipt"), ("SNK-001", 1, "receipt"),
                                                   ("OLD-001", 9, "receipt")])])
        fresh = await hub.admin("GET", "/stores/s1/availability")
        assert fresh["stale"] is False
        assert rows(fresh) == {"DRK-001": (10, 0, 2, 8), "SNK-001": (1, 0, 2, 0), "OLD-001": (9, 0, 2, 0)}
        order = await hub.order("s1", [("DRK-001", 2), ("DRK-001", 1)])
        assert rows(await hub.admin("GET", "/stores/s1/availability"))["DRK-001"] == (10, 3, 2, 5)
        # the store acknowledges it: the pending quantity becomes a reservation in the store's balances
        await hub.ok_upload("s1", [event("s1", 2, [("DRK-001", 3, "reserve")], "order.received",
                                         order_id=order["order_id"], short=[])])
        assert rows(await hub.admin("GET", "/stores/s1/availability"))["DRK-001"] == (7, 0, 2, 5)
        short = await hub.order("s1", [("DRK-001", 6)], status=409)
        assert (short["error"], short["sku"], short["available"]) == ("out_of_stock", "DRK-001", 5)
        assert (await hub.admin("GET", "/stores/s1/availability"))["items"] == \
            (await hub.admin("GET", "/stores/s1/availability"))["items"]
        assert (await hub.order("s1", [("OLD-001", 1)], status=409))["error"] == "product_inactive"
        assert rows(await hub.admin("GET", "/stores/s2/availability"))["DRK-001"] == (0, 0, 2, 0)

        hub.clock.advance(601)                                    # no upload for more than stale_after
        stale = await hub.admin("GET", "/stores/s1/availability")
        assert stale["stale"] is True and rows(stale)["DRK-001"] == (7, 0, 2, 0)
        refused = await hub.order("s1", [("DRK-001", 1)], status=409)
        assert (refused["error"], refused["available"]) == ("out_of_stock", 0)
        feed = await hub.sync("s1", "changes")     # a quiet store that only pulls is in touch: fresh again
        assert rows(await hub.admin("GET", "/stores/s1/availability"))["DRK-001"] == (7, 0, 2, 5)
        hub.clock.advance(601)
        await hub.ok_upload("s1", [event("s1", 3, [("SNK-001", 5, "receipt")])])
        assert rows(await hub.admin("GET", "/stores/s1/availability"))["DRK-001"] == (7, 0, 2, 5)
        assert [c["type"] for c in feed["changes"]].count("order.created") == 1   # refused orders left nothing
    finally:
        await hub.close()


async def test_orders_get_numbers_codes_and_catalog_prices(hub):
    await hub.ok_upload("s1", [event("s1", 1, [("DRK-001", 50, "receipt"), ("SNK-001", 50, "receipt")])])
    await hub.ok_upload("s2", [event("s2", 1, [("DRK-001", 50, "receipt")])])
    first = await hub.order("s1", [("DRK-001", 2), ("SNK-001", 1)], kind="delivery", customer_note="不要袋子",
                            pickup_after="2026-11-21T10:00:00.000Z", order_id="wx-1001")
    second = await hub.order("s1", [("DRK-001", 1)])
    other = await hub.order("s2", [("DRK-001", 1)])
    assert (first["number"], second["number"], other["number"]) == ("A001", "A002", "A001")
    assert first["order_id"] == "wx-1001" and second["order_id"].startswith("o-")
    assert re.fullmatch(r"[0-9]{6}", first["pickup_code"])
    assert first["total_fen"] == 2 * 200 + 750 and first["state"] == "created"
    assert first["lines"] == [{"sku": "DRK-001", "name": "商品 DRK-001", "qty": 2, "price_fen": 200},
                              {"sku": "SNK-001", "name": "商品 SNK-001", "qty": 1, "price_fen": 750}]
    change = next(c for c in (await hub.sync("s1", "changes"))["changes"] if c["type"] == "order.created")
    payload = change["payload"]
    assert change["id"] == first["change_id"] and change["cursor"] == first["cursor"]
    assert payload["pickup_code_sha256"] == hashlib.sha256(first["pickup_code"].encode()).hexdigest()
    assert first["pickup_code"] not in payload.values()
    assert {k: payload[k] for k in ("order_id", "number", "kind", "lines", "total_fen", "pickup_after",
                                    "customer_note")} == \
        {"order_id": "wx-1001", "number": "A001", "kind": "delivery", "lines": first["lines"], "total_fen": 1150,
         "pickup_after": "2026-11-21T10:00:00.000Z", "customer_note": "不要袋子"}
    assert (await hub.order("s1", [("DRK-001", 1)], status=409, order_id="wx-1001"))["error"] == "order_exists"
    assert (await hub.order("s1", [("NOPE-1", 1)], status=400))["error"] == "unknown_sku"
    assert (await hub.order("s9", [("DRK-001", 1)], status=404))["error"] == "not_found"
    hub.clock.advance(86400)                                      # the next day numbers start again
    await hub.ok_upload("s1", [event("s1", 2, [("DRK-001", 1, "receipt")])])
    assert (await hub.order("s1", [("DRK-001", 1)]))["number"] == "A001"


async def test_cancel_and_refund_only_open_orders(hub):
    await hub.ok_upload("s1", [event("s1", 1, [("DRK-001", 50, "receipt")])])
    o1, o2, o3 = [(await hub.order("s1", [("DRK-001", 2)]))["order_id"] for _ in range(3)]
    cancelled = await hub.admin("POST", f"/orders/{o1}/cancel", {"reason": "顾客取消"})
    assert cancelled["state"] == "cancelled"
    for action in ("cancel", "refund"):
        closed = await hub.admin("POST", f"/orders/{o1}/{action}", {"reason": "x"}, status=409)
        assert (closed["error"], closed["state"]) == ("order_closed", "cancelled")
    refunded = await hub.admin("POST", f"/orders/{o2}/refund", {"reason": "缺货退款"})
    assert refunded["state"] == "refunded"
    assert (await hub.admin("POST", f"/orders/{o2}/cancel", {"reason": "x"}, status=409))["state"] == "refunded"
    # o3 is received, prepared and handed over at the store
    await hub.ok_upload("s1", [
        event("s1", 2, [("DRK-001", 2, "reserve")], "order.received", order_id=o3, short=[]),
        event("s1", 3, [], "order.state_changed", order_id=o3, to="ready", operator="小王", **{"from": "received"}),
        event("s1", 4, [("DRK-001", -2, "release"), ("DRK-001", -2, "pickup")], "order.state_changed",
              order_id=o3, to="picked_up", operator="小王", **{"from": "ready"})])
    for action in ("cancel", "refund"):
        assert (await hub.admin("POST", f"/orders/{o3}/{action}", {"reason": "x"}, status=409))["state"] == "picked_up"
    feed = [(c["type"], c["payload"]) for c in (await hub.sync("s1", "changes"))["changes"]
            if c["type"] in ("order.cancelled", "order.refunded")]
    assert feed == [("order.cancelled", {"order_id": o1, "reason": "顾客取消"}),
                    ("order.refunded", {"order_id": o2, "reason": "缺货退款"})]
    assert (await hub.sync("s2", "changes"))["changes"][-1]["type"] == "product.upserted"   # not in s2's feed
    assert (await hub.admin("POST", "/orders/o-none/cancel", {"reason": "x"}, status=404))["error"] == "not_found"
    assert (await hub.admin("POST", f"/orders/{o3}/cancel", {}, status=400))["error"] == "invalid_request"
    view = await hub.admin("GET", "/stores/s1")
    assert view["orders"] == {"cancelled": 1, "refunded": 1, "picked_up": 1} and view["orders_pending"] == 0
    assert view["balances"][0]["on_hand"] == 48 and view["balances"][0]["reserved"] == 0
    assert all(i["pending"] == 0 for i in (await hub.admin("GET", "/stores/s1/availability"))["items"])


async def test_order_events_move_the_hubs_order_state(hub):
    await hub.ok_upload("s1", [event("s1", 1, [("DRK-001", 10, "receipt")])])
    o1 = await hub.order("s1", [("DRK-001", 4)])
    o2 = await hub.order("s1", [("DRK-001", 1)])
    s2_order = (await hub.order("s2", [("DRK-001", 1)], status=409))   # s2 never synced
    assert s2_order["error"] == "out_of_stock"
    got = await hub.admin("GET", f"/orders/{o1['order_id']}")
    assert got["state"] == "created" and got["pending"] is True and got["received_at"] is None
    short = [{"sku": "DRK-001", "qty": 4, "available": 3}]
    data = await hub.ok_upload("s1", [
        event("s1", 2, [("DRK-001", 4, "reserve")], "order.received", order_id=o1["order_id"], short=short),
        event("s1", 3, [], "order.state_changed", order_id=o1["order_id"], to="accepted", operator="小李"),
        event("s1", 4, None, "order.conflict", order_id=o1["order_id"], reason="cancelled upstream after hand-over"),
        event("s1", 5, None, "change.rejected", change_id=o2["change_id"], type="order.created",
              reason="unknown_sku"),
        event("s1", 6, [], "order.state_changed", order_id=o1["order_id"], to="lost", operator="x")])
    assert [r["status"] for r in data["results"]] == ["applied"] * 4 + ["rejected"]
    got = await hub.admin("GET", f"/orders/{o1['order_id']}")
    assert (got["state"], got["pending"], got["short"]) == ("accepted", False, short)
    assert got["received_at"] is not None and got["conflict"] == "cancelled upstream after hand-over"
    assert got["lines"] == [{"line_no": 1, "sku": "DRK-001", "name": "商品 DRK-001", "qty": 4, "price_fen": 200}]
    assert (await hub.admin("GET", f"/orders/{o2['order_id']}"))["state"] == "rejected"   # the store refused it
    item = next(i for i in (await hub.admin("GET", "/stores/s1/availability"))["items"] if i["sku"] == "DRK-001")
    assert (item["balance_available"], item["pending"], item["online_available"]) == (6, 0, 6)
    # an order of another store is not this store's to report on
    await hub.ok_upload("s2", [event("s2", 1, [("DRK-001", 3, "receipt")])])
    theirs = await hub.order("s2", [("DRK-001", 1)])
    wrong = await hub.ok_upload("s1", [event("s1", 7, [], "order.state_changed", order_id=theirs["order_id"],
                                             to="ready", operator="x")])
    assert wrong["results"][0]["reason"].startswith("unknown_order: ")


# -- print results --------------------------------------------------------------------------------

def print_result(store: str, seq: int, order_id: str | None, result: str = "printed", kind: str = "order_ticket",
                 id: str | None = None, moves=None, **fields) -> dict:
    """A print.result envelope: no moves key unless given; fields override (or, set to DROP, remove) the payload's."""
    payload = {"job_key": f"{kind}:{order_id}", "kind": kind, "order_id": order_id, "result": result,
               "printer": "前台小票机", "attempts": 1, "error": None, "at": CREATED_AT, "reprint": False, **fields}
    payload = {k: v for k, v in payload.items() if v is not DROP}
    return event(store, seq, moves, etype="print.result", id=id, **payload)


DROP = object()


async def test_an_order_s_hint_does_not_wait_for_the_high_water_file_but_its_answer_does(hub, monkeypatch):
    """The file is fsynced twice on a disk that may be busy (a reconnect storm): the store is hinted at
    once, as it would find the order by polling; the admin's answer still comes after the file."""
    ws = await hub.client.ws_connect("/sync/v1/stores/s1/hints",
                                     headers={"Authorization": f"Bearer {hub.tokens['s1']}"})
    assert (await ws.receive_json(timeout=5))["type"] == "hello"
    await hub.ok_upload("s1", [event("s1", 1, [("DRK-001", 5, "receipt")])])
    gate, entered, real_write = threading.Event(), threading.Event(), HighWater._write

    def slow_write(highwater):
        entered.set()
        gate.wait(5)
        real_write(highwater)

    monkeypatch.setattr(HighWater, "_write", slow_write)
    try:
        order = asyncio.create_task(hub.order("s1", [("DRK-001", 1)]))
        hint = await ws.receive_json(timeout=5)
        assert hint["type"] == "changes"
        assert await asyncio.get_running_loop().run_in_executor(None, entered.wait, 5)   # the file's write held
        assert not order.done()
    finally:
        gate.set()
    assert (await order)["cursor"] == hint["cursor"]
    await ws.close()


async def order_prints(data_dir: Path) -> list[tuple]:
    if DB["url"] is not None:
        conn = await asyncpg.connect(DB["url"])
        try:
            return [tuple(r) for r in await conn.fetch("SELECT * FROM order_prints ORDER BY order_id, kind")]
        finally:
            await conn.close()
    conn = sqlite3.connect(f"file:{data_dir / 'hub.db'}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT * FROM order_prints ORDER BY order_id, kind").fetchall()
    finally:
        conn.close()


async def test_print_results_are_recorded_on_the_order_and_listed(hub):
    await hub.ok_upload("s1", [event("s1", 1, [("DRK-001", 10, "receipt")])])
    o1 = (await hub.order("s1", [("DRK-001", 1)], order_id="wx-1"))["order_id"]
    o2 = (await hub.order("s1", [("DRK-001", 1)], order_id="wx-2"))["order_id"]
    got = await hub.admin("GET", f"/orders/{o1}")
    assert (got["print"], got["prints"], got["printed"]) == (None, [], False)

    failed = print_result("s1", 2, o1, "failed", attempts=3, error="缺纸")
    data = await hub.ok_upload("s1", [failed])
    assert data["results"] == [{"id": failed["id"], "seq": 2, "status": "applied"}]
    got = await hub.admin("GET", f"/orders/{o1}")
    assert got["print"] == {"kind": "order_ticket", "job_key": f"order_ticket:{o1}", "result": "failed",
                            "at": CREATED_AT, "printer": "前台小票机", "attempts": 3, "error": "缺纸",
                            "reprint": False, "event_id": failed["id"], "received_at": "2026-11-21T08:00:00.000Z"}
    assert got["prints"] == [got["print"]] and got["printed"] is False
    assert got["state"] == "created" and got["pending"] is True        # a print result is not an acknowledgement
    # not printed: the failed one, and the one the store has not reported on yet
    unprinted = await hub.admin("GET", "/orders", params={"printed": "false"})
    assert [(o["order_id"], o["print"] and o["print"]["result"]) for o in unprinted["orders"]] == \
        [(o1, "failed"), (o2, None)]
    assert unprinted["next_after"] is None and "lines" not in unprinted["orders"][0]

    # a person asks for a reprint; the new job prints; then the pickup slip is uncertain until confirmed
    later = "2026-11-21T08:05:00.000Z"
    data = await hub.ok_upload("s1", [
        print_result("s1", 3, o1, "reprinted", attempts=3, error="缺纸", moves=[]),
        print_result("s1", 4, o1, "printed", at=later, reprint=True, job_key=f"order_ticket:{o1}:2"),
        print_result("s1", 5, o1, "uncertain", "pickup_slip", printer="取货单打印机", attempts=2, error=DROP,
                     reprint=DROP)])
    assert [r["status"] for r in data["results"]] == ["applied"] * 3
    got = await hub.admin("GET", f"/orders/{o1}")
    assert [(p["kind"], p["result"], p["attempts"], p["reprint"], p["error"]) for p in got["prints"]] == \
        [("order_ticket", "printed", 1, True, None), ("pickup_slip", "uncertain", 2, False, None)]
    assert (got["print"]["kind"], got["print"]["printer"], got["printed"]) == ("pickup_slip", "取货单打印机", False)
    assert got["prints"][0]["at"] == later and got["prints"][0]["job_key"] == f"order_ticket:{o1}:2"
    await hub.ok_upload("s1", [print_result("s1", 6, o1, "confirmed_printed", "pickup_slip", attempts=2)])
    got = await hub.admin("GET", f"/orders/{o1}")
    assert (got["print"]["result"], got["printed"]) == ("confirmed_printed", True)
    assert got["lines"][0]["sku"] == "DRK-001"
    assert [o["order_id"] for o in (await hub.admin("GET", "/orders", params={"printed": "true"}))["orders"]] == [o1]
    assert [o["order_id"] for o in (await hub.admin("GET", "/orders", params={"printed": "false"}))["orders"]] == [o2]
    # a print result has no stock effect
    assert (await hub.sync("s1", "balances"))["balances"] == [{"sku": "DRK-001", "on_hand": 10, "reserved": 0}]

    # a closed order still takes its print results: they are facts of the store
    await hub.admin("POST", f"/orders/{o2}/cancel", {"reason": "顾客取消"})
    await hub.ok_upload("s1", [print_result("s1", 7, o2, "expired", attempts=0)])
    got = await hub.admin("GET", f"/orders/{o2}")
    assert (got["state"], got["print"]["result"], got["printed"]) == ("cancelled", "expired", False)


async def test_a_replayed_print_result_changes_nothing(hub):
    await hub.ok_upload("s1", [event("s1", 1, [("DRK-001", 10, "receipt")])])
    o1 = (await hub.order("s1", [("DRK-001", 1)]))["order_id"]
    sent = [print_result("s1", 2, o1, "uncertain", attempts=2), print_result("s1", 3, o1, "confirmed_printed")]
    await hub.ok_upload("s1", sent)
    before, view = await db_dump(hub.data_dir), await hub.admin("GET", f"/orders/{o1}")
    again = await hub.ok_upload("s1", sent)
    assert [r["status"] for r in again["results"]] == ["duplicate", "duplicate"] and again["next_seq"] == 4
    # the same id at a new seq, even with another body, is the same event: no effect, the seq is not taken
    older = dict(sent[0], seq=4)
    assert (await hub.ok_upload("s1", [older]))["results"] == [{"id": sent[0]["id"], "seq": 4, "status": "duplicate"}]
    assert (await hub.ok_upload("s1", [dict(sent[1], seq=4, payload=dict(sent[1]["payload"], result="failed"))])
            )["results"][0]["status"] == "duplicate"
    assert await db_dump(hub.data_dir) == before
    assert await hub.admin("GET", f"/orders/{o1}") == view
    assert (view["print"]["result"], view["printed"]) == ("confirmed_printed", True)
    # later (only the store's last upload time moves): the order's print info and received_at stay as they were
    prints = await order_prints(hub.data_dir)
    hub.clock.advance(60)
    assert [r["status"] for r in (await hub.ok_upload("s1", sent))["results"]] == ["duplicate", "duplicate"]
    assert await order_prints(hub.data_dir) == prints and await hub.admin("GET", f"/orders/{o1}") == view


async def test_malformed_print_results_are_rejected_per_event_and_record_nothing(hub):
    await hub.ok_upload("s1", [event("s1", 1, [("DRK-001", 10, "receipt")])])
    await hub.ok_upload("s2", [event("s2", 1, [("DRK-001", 10, "receipt")])])
    o1 = (await hub.order("s1", [("DRK-001", 1)]))["order_id"]
    theirs = (await hub.order("s2", [("DRK-001", 1)]))["order_id"]
    view = await hub.admin("GET", f"/orders/{o1}")
    bad = [
        (print_result("s1", 0, o1, "done"), "invalid_payload: result must be one of printed, uncertain"),
        (print_result("s1", 0, o1, DROP), "invalid_payload: result must be"),
        (print_result("s1", 0, o1, ["printed"]), "invalid_payload: result must be"),
        (print_result("s1", 0, DROP), "invalid_payload: order_id must be a string"),
        (print_result("s1", 0, None), "invalid_payload: order_id must be a string"),
        (print_result("s1", 0, 42), "invalid_payload: order_id must be a string"),
        (print_result("s1", 0, "", job_key="order_ticket:x"), "invalid_payload: order_id must be a string"),
        (print_result("s1", 0, o1, kind="receipt"), "invalid_payload: kind must be one of order_ticket, pickup_slip"),
        (print_result("s1", 0, o1, kind=DROP), "invalid_payload: kind must be"),
        (print_result("s1", 0, o1, job_key=DROP), "invalid_payload: job_key must be"),
        (print_result("s1", 0, o1, job_key=""), "invalid_payload: job_key must be"),
        (print_result("s1", 0, o1, job_key=7), "invalid_payload: job_key must be"),
        (print_result("s1", 0, o1, printer=None), "invalid_payload: printer must be"),
        (print_result("s1", 0, o1, printer=""), "invalid_payload: printer must be"),
        (print_result("s1", 0, o1, printer=DROP), "invalid_payload: printer must be"),
        (print_result("s1", 0, o1, attempts="1"), "invalid_payload: attempts must be"),
        (print_result("s1", 0, o1, attempts=1.0), "invalid_payload: attempts must be"),
        (print_result("s1", 0, o1, attempts=True), "invalid_payload: attempts must be"),
        (print_result("s1", 0, o1, attempts=-1), "invalid_payload: attempts must be"),
        (print_result("s1", 0, o1, attempts=10 ** 30), "invalid_payload: attempts must be"),
        (print_result("s1", 0, o1, attempts=DROP), "invalid_payload: attempts must be"),
        (print_result("s1", 0, o1, error=5), "invalid_payload: error must be null or a string"),
        (print_result("s1", 0, o1, error={"code": 1}), "invalid_payload: error must be"),
        (print_result("s1", 0, o1, at="yesterday"), "invalid_payload: at must be an ISO 8601 time"),
        (print_result("s1", 0, o1, at="2026-11-21T08:00:00"), "invalid_payload: at must be"),
        (print_result("s1", 0, o1, at=DROP), "invalid_payload: at must be"),
        (print_result("s1", 0, o1, reprint="false"), "invalid_payload: reprint must be true or false"),
        (print_result("s1", 0, o1, reprint=0), "invalid_payload: reprint must be"),
        (print_result("s1", 0, o1, reprint=None), "invalid_payload: reprint must be"),
        (print_result("s1", 0, o1, moves=[("DRK-001", -1, "sale")]),
         "invalid_moves: a print.result has no stock effect"),
        (dict(print_result("s1", 0, o1), payload=dict(print_result("s1", 0, o1)["payload"], moves=None)),
         "invalid_moves: payload.moves must"),
        (dict(print_result("s1", 0, o1), payload=[]), "invalid_envelope: payload"),
        (print_result("s1", 0, "o-unknown"), "unknown_order: o-unknown is not an order the hub created for store s1"),
        (print_result("s1", 0, theirs), "unknown_order: "),                     # another store's order
    ]
    batch = [dict(e, seq=n) for n, (e, _) in enumerate(bad, start=2)]
    data = await hub.ok_upload("s1", batch)
    assert data["next_seq"] == len(batch) + 2                        # every rejected event kept its seq
    for result, (sent, reason) in zip(data["results"], bad):
        assert result["status"] == "rejected" and result["reason"].startswith(reason), (result, reason)
        assert result["id"] == sent["id"]
    assert await order_prints(hub.data_dir) == []
    assert await hub.admin("GET", f"/orders/{o1}") == view
    rejected = await hub.admin("GET", "/stores/s1/events", params={"status": "rejected", "limit": "1000"})
    assert [e["type"] for e in rejected["events"]] == ["print.result"] * len(bad)
    assert rejected["events"][0]["reason"] == "invalid_payload: result must be one of printed, uncertain, expired, " \
                                              "failed, confirmed_printed, reprinted (got done)"
    # unknown fields are ignored (protocol section 7); the order is unaffected by what went before
    ok = print_result("s1", len(batch) + 2, o1, "printed", copies=2)
    assert (await hub.ok_upload("s1", [ok]))["results"][0]["status"] == "applied"
    assert (await hub.admin("GET", f"/orders/{o1}"))["printed"] is True
    assert len(await order_prints(hub.data_dir)) == 1


async def test_the_order_listing_filters_and_pages(hub):
    await hub.ok_upload("s1", [event("s1", 1, [("DRK-001", 10, "receipt")])])
    await hub.ok_upload("s2", [event("s2", 1, [("DRK-001", 10, "receipt")])])
    ids = []
    for n in range(5):
        hub.clock.advance(1)
        ids.append((await hub.order("s1" if n != 2 else "s2", [("DRK-001", 1)], order_id=f"o-{5 - n}"))["order_id"])
    # created in the order o-5, o-4, o-3 (s2), o-2, o-1: listed by creation, not by id
    assert [o["order_id"] for o in (await hub.admin("GET", "/orders"))["orders"]] == ids
    await hub.ok_upload("s1", [print_result("s1", 2, "o-5", "printed"), print_result("s1", 3, "o-2", "failed"),
                               event("s1", 4, [], "order.state_changed", order_id="o-1", to="accepted",
                                     operator="小李"),
                               print_result("s1", 5, "o-1", "printed")])
    await hub.ok_upload("s2", [print_result("s2", 2, "o-3", "printed")])

    async def listed(**params):
        return [o["order_id"] for o in (await hub.admin("GET", "/orders", params=params))["orders"]]

    assert await listed(store_id="s1") == ["o-5", "o-4", "o-2", "o-1"]
    assert await listed(store_id="s2") == ["o-3"]
    assert await listed(store_id="s1", printed="false") == ["o-4", "o-2"]
    assert await listed(printed="true") == ["o-5", "o-3", "o-1"]
    assert await listed(printed="true", state="created") == ["o-5", "o-3"]
    assert await listed(state="created", store_id="s1", printed="") == ["o-5", "o-4", "o-2"]
    assert await listed(state="picked_up") == []
    pages, after = [], None
    while True:
        page = await hub.admin("GET", "/orders", params={"limit": "2", **({"after": after} if after else {})})
        pages.append([o["order_id"] for o in page["orders"]])
        if (after := page["next_after"]) is None:
            break
    assert pages == [["o-5", "o-4"], ["o-3", "o-2"], ["o-1"]]
    page = await hub.admin("GET", "/orders", params={"printed": "false", "limit": "1"})
    assert [o["order_id"] for o in page["orders"]] == ["o-4"] and page["next_after"] == "o-4"
    page = await hub.admin("GET", "/orders", params={"printed": "false", "limit": "1", "after": "o-4"})
    assert [o["order_id"] for o in page["orders"]] == ["o-2"] and page["next_after"] is None
    item = (await hub.admin("GET", "/orders", params={"after": "o-2"}))["orders"][0]
    assert (item["order_id"], item["state"], item["pending"], item["print"]["result"], item["printed"]) == \
        ("o-1", "accepted", False, "printed", True)
    for params, error in (({"printed": "yes"}, "printed must be"), ({"state": "lost"}, "state must be"),
                          ({"after": "o-none"}, "after: no order"), ({"limit": "0"}, "limit must be")):
        assert (await hub.admin("GET", "/orders", params=params, status=400))["message"].startswith(error), params
    assert (await hub.admin("GET", "/orders", params={"store_id": "s9"}, status=404))["error"] == "not_found"


@pytest.mark.sqlite_only("its migrations by user_version")
async def test_a_hub_database_of_schema_1_is_migrated(tmp_path):
    from edge.core.sqlite import open_db
    from hub.schema import HUB_MIGRATIONS

    data_dir = tmp_path / "hub"
    conn = open_db(data_dir / "hub.db", HUB_MIGRATIONS[:1])   # as the hub before print results left it
    conn.close()
    hub = await start_hub(data_dir)
    try:
        await hub.add_store("s1")
        await hub.add_products(product("DRK-001"))
        await hub.ok_upload("s1", [event("s1", 1, [("DRK-001", 5, "receipt")])])
        order = await hub.order("s1", [("DRK-001", 1)])
        await hub.ok_upload("s1", [print_result("s1", 2, order["order_id"], "printed")])
        assert (await hub.admin("GET", f"/orders/{order['order_id']}"))["printed"] is True
    finally:
        await hub.close()
    check = sqlite3.connect(data_dir / "hub.db")
    try:
        assert check.execute("PRAGMA user_version").fetchone()[0] == len(HUB_MIGRATIONS) == 7
    finally:
        check.close()


async def test_corrections_and_published_changes(hub):
    code, data = await hub.call("POST", "/admin/v1/changes", {"type": "key.published", "payload": {
        "kid": "k1", "alg": "Ed25519", "public_key": "A" * 43 + "="}})
    assert code == 201 and data["cursor"] == 5         # 1: the hub's own key, 2-4: the fixture's products
    for bad in ({"type": "order.created", "payload": {"order_id": "x"}},
                {"type": "coupon.revoked", "payload": {}},
                {"type": "key.published", "payload": {"kid": "k2", "alg": "RSA", "public_key": "A" * 43 + "="}},
                {"type": "key.published", "payload": {"kid": "k2", "alg": "Ed25519", "public_key": "short"}},
                {"type": "key.revoked", "payload": {"kid": "k1"}, "store_id": "s1", "extra": 1}):
        code, data = await hub.call("POST", "/admin/v1/changes", bad)
        assert code == 400 and data["error"] == "invalid_request", bad
    code, data = await hub.call("POST", "/admin/v1/changes", {"type": "key.revoked", "payload": {"kid": "k1"},
                                                              "store_id": "s9"})
    assert code == 404
    await hub.admin("POST", "/changes", {"type": "key.revoked", "payload": {"kid": "k1"}, "store_id": "s2"}, status=201)
    assert [c["type"] for c in (await hub.sync("s1", "changes", {"after": "4"}))["changes"]] == ["key.published"]
    assert [c["type"] for c in (await hub.sync("s2", "changes", {"after": "4"}))["changes"]] == \
        ["key.published", "key.revoked"]
    assert (await hub.admin("POST", "/stores/s1/corrections", {"sku": "DRK-001", "qty": 0, "reason": "x"},
                            status=400))["error"] == "invalid_request"
    assert (await hub.admin("POST", "/stores/s1/corrections", {"sku": "NOPE-1", "qty": 1, "reason": "x"},
                            status=400))["error"] == "unknown_sku"


async def test_admin_store_views(hub):
    code, data = await hub.call("POST", "/admin/v1/stores", {"store_id": "s1", "name": "一号店 新名"})
    assert code == 200 and data["created"] is False and data["token"] != hub.tokens["s1"]
    hub.tokens["s1"] = data["token"]
    await hub.ok_upload("s1", [event("s1", 1, [("DRK-001", 3, "receipt")]), event("s1", 2, etype="nope.nope")])
    view = await hub.admin("GET", "/stores/s1")
    assert (view["name"], view["next_seq"], view["events"]) == ("一号店 新名", 3, {"applied": 1, "rejected": 1})
    assert view["last_upload_at"] == "2026-11-21T08:00:00.000Z" and view["last_seen_at"] is not None
    assert view["balances"][0]["sku"] == "DRK-001" and view["balances"][0]["on_hand"] == 3
    stores = (await hub.admin("GET", "/stores"))["stores"]
    assert [s["store_id"] for s in stores] == ["s1", "s2"] and "token" not in json.dumps(stores)
    assert (await hub.admin("GET", "/stores/s9", status=404))["error"] == "not_found"
    assert (await hub.admin("GET", "/stores/s9/events", status=404))["error"] == "not_found"


# -- authentication -------------------------------------------------------------------------------

async def test_store_tokens_401_and_403(hub):
    old = hub.tokens["s1"]
    for what, method in (("events", "POST"), ("changes", "GET"), ("state", "GET"), ("balances", "GET")):
        path = f"/sync/v1/stores/s1/{what}"
        body = {"protocol": 1, "events": [event("s1", 1)]} if method == "POST" else None
        for token, headers, status, error in (
                (None, None, 401, "unauthorized"),
                (None, {"Authorization": f"Basic {old}"}, 401, "unauthorized"),
                ("st_not-a-token", None, 401, "unauthorized"),
                (hub.tokens["s2"], None, 403, "forbidden"),
                (ADMIN, None, 401, "unauthorized")):
            code, data = await hub.call(method, path, body, token=token, headers=headers)
            assert (code, data["error"]) == (status, error), (what, token, headers)
            assert "epoch" not in data and data["message"]
    code, data = await hub.call("GET", "/sync/v1/stores/s9/state", token=old)
    assert code == 403
    assert (await hub.sync("s1", "state"))["next_seq"] == 1
    assert (await hub.sync("s1", "state"))["epoch"]
    await hub.admin("POST", "/stores", {"store_id": "s1", "name": "一号店"})          # rotation
    code, data = await hub.call("GET", "/sync/v1/stores/s1/state", token=old)
    assert code == 401
    assert (await hub.sync("s2", "state"))["next_seq"] == 1


async def test_admin_api_needs_the_admin_token(hub):
    routes = [("GET", "/admin/v1/stores"), ("POST", "/admin/v1/stores"), ("GET", "/admin/v1/stores/s1"),
              ("GET", "/admin/v1/stores/s1/events"), ("GET", "/admin/v1/stores/s1/availability"),
              ("POST", "/admin/v1/stores/s1/orders"), ("POST", "/admin/v1/stores/s1/corrections"),
              ("POST", "/admin/v1/products"), ("GET", "/admin/v1/orders/o-1"), ("POST", "/admin/v1/orders/o-1/cancel"),
              ("POST", "/admin/v1/orders/o-1/refund"), ("POST", "/admin/v1/changes"), ("POST", "/admin/v1/epoch"),
              ("GET", "/admin/v1/orders")]
    before = await db_dump(hub.data_dir)
    for method, path in routes:
        for token in (None, "wrong", hub.tokens["s1"], ADMIN + "x"):
            code, data = await hub.call(method, path, {"store_id": "s3", "name": "x"}, token=token)
            assert (code, data["error"]) == (401, "unauthorized") and "epoch" not in data, (method, path, token)
    assert await db_dump(hub.data_dir) == before


# -- the epoch ------------------------------------------------------------------------------------

@pytest.mark.sqlite_only("a restored copy of hub.db")
async def test_a_restart_on_an_older_copy_of_the_database_starts_a_new_epoch(tmp_path, caplog):
    data_dir = tmp_path / "hub"
    hub = await start_hub(data_dir)
    token = await hub.add_store("s1")
    await hub.add_products(product("DRK-001"))
    await hub.ok_upload("s1", [event("s1", 1, [("DRK-001", 10, "receipt")])])
    epoch1 = (await hub.sync("s1", "state"))["epoch"]
    backup = tmp_path / "backup.db"
    src, dst = sqlite3.connect(data_dir / "hub.db"), sqlite3.connect(backup)
    src.backup(dst)                                               # the nightly copy
    src.close()
    dst.close()
    later = [event("s1", 2, [("DRK-001", -1, "sale")], "sale.recorded"),
             event("s1", 3, [("DRK-001", -1, "sale")], "sale.recorded")]
    await hub.ok_upload("s1", later)
    await hub.add_products(product("NEW-001"))
    await hub.close()
    mark = json.loads((data_dir / "hub.highwater").read_text())
    assert (mark["epoch"], mark["cursor"], mark["event_row"]) == (epoch1, 3, 3)    # the key, two products

    hub = await start_hub(data_dir)                               # a plain restart keeps the epoch
    assert (await hub.sync("s1", "state", token=token))["epoch"] == epoch1
    await hub.close()

    for suffix in ("", "-wal", "-shm"):
        (data_dir / f"hub.db{suffix}").unlink(missing_ok=True)
    shutil.copy(backup, data_dir / "hub.db")                      # restored, nobody told the hub
    caplog.set_level(logging.INFO, logger="hub.state")
    hub = await start_hub(data_dir)
    hub.tokens["s1"] = token
    try:
        state = await hub.sync("s1", "state")
        assert state["epoch"] != epoch1 and state["next_seq"] == 2
        warning = next(r for r in caplog.records if r.name == "hub.state" and r.getMessage() == "new epoch")
        assert warning.levelno == logging.WARNING and "older" in warning.kv["why"]
        assert warning.kv["previous"] == epoch1 and warning.kv["hw_event_row"] == 3
        # the store resends from next_seq; the hub dedupes what it still has
        resent = await hub.ok_upload("s1", later)
        assert [r["status"] for r in resent["results"]] == ["applied", "applied"]
        assert (await hub.sync("s1", "balances"))["balances"] == [{"sku": "DRK-001", "on_hand": 8, "reserved": 0}]
        mark = json.loads((data_dir / "hub.highwater").read_text())
        assert mark["epoch"] == state["epoch"] and mark["event_row"] == 3
    finally:
        await hub.close()


async def test_new_epoch_on_request(tmp_path):
    data_dir = tmp_path / "hub"
    epochs = []
    for new in (False, False, True, False):
        hub = await start_hub(data_dir, new_epoch=new)
        if not hub.tokens:
            hub.tokens["s1"] = (await hub.admin("POST", "/stores", {"store_id": "s1", "name": "x"},
                                                status=201 if not epochs else 200))["token"]
        epochs.append((await hub.sync("s1", "state"))["epoch"])
        await hub.close()
    assert epochs[0] == epochs[1] != epochs[2] == epochs[3]
    hub = await start_hub(data_dir)
    try:
        hub.tokens["s1"] = (await hub.admin("POST", "/stores", {"store_id": "s1", "name": "x"}))["token"]
        changed = await hub.admin("POST", "/epoch")
        assert changed["previous_epoch"] == epochs[3] and changed["epoch"] != epochs[3]
        assert (await hub.sync("s1", "state"))["epoch"] == changed["epoch"]
        assert json.loads((data_dir / "hub.highwater").read_text())["epoch"] == changed["epoch"]
    finally:
        await hub.close()


# -- bad input ------------------------------------------------------------------------------------

def _events(*seqs, **fields) -> dict:
    return {"protocol": 1, "events": [dict(event("s1", s), **fields) for s in seqs]}


S1 = "/sync/v1/stores/s1"
STORE = "store"    # the request carries s1's store token; otherwise the admin token
BAD = [
    # (id, method, path, json body or raw bytes, token, status, error)
    ("invalid-json", "POST", S1 + "/events", b'{"protocol": 1, "events": [', STORE, 400, "invalid_request"),
    ("empty-body", "POST", S1 + "/events", b"", STORE, 400, "invalid_request"),
    ("not-utf8", "POST", S1 + "/events", b'{"protocol": 1, "events": "\xff"}', STORE, 400, "invalid_request"),
    ("nan", "POST", S1 + "/events", b'{"protocol": NaN, "events": []}', STORE, 400, "invalid_request"),
    ("5000-digits", "POST", S1 + "/events", b'{"protocol": ' + b"9" * 5000 + b"}", STORE, 400, "invalid_request"),
    ("deep", "POST", S1 + "/events", b"[" * 100_000 + b"]" * 100_000, STORE, 400, "invalid_request"),
    ("array-body", "POST", S1 + "/events", [], STORE, 400, "invalid_request"),
    ("no-protocol", "POST", S1 + "/events", {"events": [event("s1", 1)]}, STORE, 400, "invalid_request"),
    ("protocol-2", "POST", S1 + "/events", dict(_events(1), protocol=2), STORE, 400, "invalid_request"),
    ("protocol-true", "POST", S1 + "/events", dict(_events(1), protocol=True), STORE, 400, "invalid_request"),
    ("protocol-string", "POST", S1 + "/events", dict(_events(1), protocol="1"), STORE, 400, "invalid_request"),
    ("events-missing", "POST", S1 + "/events", {"protocol": 1}, STORE, 400, "invalid_request"),
    ("events-empty", "POST", S1 + "/events", {"protocol": 1, "events": []}, STORE, 400, "invalid_request"),
    ("events-object", "POST", S1 + "/events", {"protocol": 1, "events": {}}, STORE, 400, "invalid_request"),
    ("501-events", "POST", S1 + "/events", _events(*range(1, 502)), STORE, 400, "invalid_request"),
    ("event-not-object", "POST", S1 + "/events", {"protocol": 1, "events": [1]}, STORE, 400, "invalid_request"),
    ("seq-missing", "POST", S1 + "/events", {"protocol": 1, "events": [{"id": "a"}]}, STORE, 400, "invalid_request"),
    ("seq-string", "POST", S1 + "/events", _events(1, seq="1"), STORE, 400, "invalid_request"),
    ("seq-float", "POST", S1 + "/events", _events(1, seq=1.0), STORE, 400, "invalid_request"),
    ("seq-bool", "POST", S1 + "/events", _events(1, seq=True), STORE, 400, "invalid_request"),
    ("seq-zero", "POST", S1 + "/events", _events(0), STORE, 400, "invalid_request"),
    ("seq-huge", "POST", S1 + "/events", _events(10 ** 30), STORE, 400, "invalid_request"),
    ("seq-not-consecutive", "POST", S1 + "/events", _events(1, 3), STORE, 400, "invalid_request"),
    ("seq-repeated", "POST", S1 + "/events", _events(1, 1), STORE, 400, "invalid_request"),
    ("too-large", "POST", S1 + "/events", b" " * (17 * 1024 * 1024), STORE, 413, "body_too_large"),
    ("after-negative", "GET", S1 + "/changes?after=-1", None, STORE, 400, "invalid_request"),
    ("after-text", "GET", S1 + "/changes?after=abc", None, STORE, 400, "invalid_request"),
    ("after-float", "GET", S1 + "/changes?after=1.5", None, STORE, 400, "invalid_request"),
    ("after-huge", "GET", S1 + "/changes?after=" + "9" * 40, None, STORE, 400, "invalid_request"),
    ("limit-zero", "GET", S1 + "/changes?limit=0", None, STORE, 400, "invalid_request"),
    ("limit-1001", "GET", S1 + "/changes?limit=1001", None, STORE, 400, "invalid_request"),
    ("unknown-path", "GET", S1 + "/nothing", None, STORE, 404, "not_found"),
    ("wrong-method", "DELETE", S1 + "/events", None, STORE, 405, "method_not_allowed"),
    ("put-events", "PUT", S1 + "/events", None, STORE, 405, "method_not_allowed"),
    ("held-from-0", "GET", S1 + "/events?from_seq=0", None, STORE, 400, "invalid_request"),
    ("held-limit-501", "GET", S1 + "/events?limit=501", None, STORE, 400, "invalid_request"),
    ("store-empty", "POST", "/admin/v1/stores", {}, ADMIN, 400, "invalid_request"),
    ("store-id-space", "POST", "/admin/v1/stores", {"store_id": "s 3", "name": "x"}, ADMIN, 400, "invalid_request"),
    ("store-name-empty", "POST", "/admin/v1/stores", {"store_id": "s3", "name": ""}, ADMIN, 400, "invalid_request"),
    ("store-name-number", "POST", "/admin/v1/stores", {"store_id": "s3", "name": 3}, ADMIN, 400, "invalid_request"),
    ("store-extra", "POST", "/admin/v1/stores", {"store_id": "s3", "name": "x", "t": 1}, ADMIN, 400,
     "invalid_request"),
    ("store-surrogate", "POST", "/admin/v1/stores", b'{"store_id": "s3", "name": "\\ud800"}', ADMIN, 400,
     "invalid_request"),
    ("store-bad-json", "POST", "/admin/v1/stores", b"{", ADMIN, 400, "invalid_request"),
    ("products-none", "POST", "/admin/v1/products", {"products": []}, ADMIN, 400, "invalid_request"),
    ("product-price-text", "POST", "/admin/v1/products", {"products": [product("X-1", "100")]}, ADMIN, 400,
     "invalid_request"),
    ("product-price-negative", "POST", "/admin/v1/products", {"products": [product("X-1", -1)]}, ADMIN, 400,
     "invalid_request"),
    ("product-bad-barcode", "POST", "/admin/v1/products", {"products": [product("X-1", barcodes=["6921234500003"])]},
     ADMIN, 400, "invalid_request"),
    ("product-bad-sku", "POST", "/admin/v1/products", {"products": [product("-X")]}, ADMIN, 400, "invalid_request"),
    ("product-unknown-store", "POST", "/admin/v1/products", {"products": [product("X-1")], "store_id": "s9"}, ADMIN,
     404, "not_found"),
    ("product-barcode-taken", "POST", "/admin/v1/products",
     {"products": [product("X-1"), product("X-2", barcodes=[EAN_WATER])]}, ADMIN, 409, "barcode_taken"),
    ("order-kind", "POST", "/admin/v1/stores/s1/orders", {"kind": "mail", "lines": [{"sku": "DRK-001", "qty": 1}]},
     ADMIN, 400, "invalid_request"),
    ("order-no-kind", "POST", "/admin/v1/stores/s1/orders", {"lines": [{"sku": "DRK-001", "qty": 1}]}, ADMIN, 400,
     "invalid_request"),
    ("order-no-lines", "POST", "/admin/v1/stores/s1/orders", {"kind": "pickup", "lines": []}, ADMIN, 400,
     "invalid_request"),
    ("order-qty-zero", "POST", "/admin/v1/stores/s1/orders",
     {"kind": "pickup", "lines": [{"sku": "DRK-001", "qty": 0}]},
     ADMIN, 400, "invalid_request"),
    ("order-qty-text", "POST", "/admin/v1/stores/s1/orders",
     {"kind": "pickup", "lines": [{"sku": "DRK-001", "qty": "1"}]}, ADMIN, 400, "invalid_request"),
    ("order-qty-huge", "POST", "/admin/v1/stores/s1/orders",
     {"kind": "pickup", "lines": [{"sku": "DRK-001", "qty": 10 ** 30}]}, ADMIN, 400, "invalid_request"),
    ("order-bad-id", "POST", "/admin/v1/stores/s1/orders",
     {"order_id": "a b", "kind": "pickup", "lines": [{"sku": "DRK-001", "qty": 1}]}, ADMIN, 400, "invalid_request"),
    ("order-bad-time", "POST", "/admin/v1/stores/s1/orders",
     {"kind": "pickup", "lines": [{"sku": "DRK-001", "qty": 1}], "pickup_after": "明天"}, ADMIN, 400,
     "invalid_request"),
    ("order-note-long", "POST", "/admin/v1/stores/s1/orders",
     {"kind": "pickup", "lines": [{"sku": "DRK-001", "qty": 1}], "customer_note": "x" * 201}, ADMIN, 400,
     "invalid_request"),
    ("order-unknown-sku", "POST", "/admin/v1/stores/s1/orders",
     {"kind": "pickup", "lines": [{"sku": "NO-1", "qty": 1}]},
     ADMIN, 400, "unknown_sku"),
    ("order-out-of-stock", "POST", "/admin/v1/stores/s1/orders",
     {"kind": "pickup", "lines": [{"sku": "DRK-001", "qty": 1}]}, ADMIN, 409, "out_of_stock"),
    ("order-unknown-store", "POST", "/admin/v1/stores/s9/orders",
     {"kind": "pickup", "lines": [{"sku": "DRK-001", "qty": 1}]}, ADMIN, 404, "not_found"),
    ("cancel-unknown", "POST", "/admin/v1/orders/o-x/cancel", {"reason": "x"}, ADMIN, 404, "not_found"),
    ("cancel-no-reason", "POST", "/admin/v1/orders/o-x/cancel", {}, ADMIN, 400, "invalid_request"),
    ("refund-reason-number", "POST", "/admin/v1/orders/o-x/refund", {"reason": 1}, ADMIN, 400, "invalid_request"),
    ("correction-zero", "POST", "/admin/v1/stores/s1/corrections", {"sku": "DRK-001", "qty": 0, "reason": "x"},
     ADMIN, 400, "invalid_request"),
    ("correction-unknown-store", "POST", "/admin/v1/stores/s9/corrections", {"sku": "DRK-001", "qty": 1, "reason": "x"},
     ADMIN, 404, "not_found"),
    ("change-type", "POST", "/admin/v1/changes", {"type": "stock.correction", "payload": {}}, ADMIN, 400,
     "invalid_request"),
    ("change-payload-list", "POST", "/admin/v1/changes", {"type": "coupon.defined", "payload": []}, ADMIN, 400,
     "invalid_request"),
    ("events-status", "GET", "/admin/v1/stores/s1/events?status=lost", None, ADMIN, 400, "invalid_request"),
    ("events-after", "GET", "/admin/v1/stores/s1/events?after_seq=-1", None, ADMIN, 400, "invalid_request"),
    ("events-limit", "GET", "/admin/v1/stores/s1/events?limit=5000", None, ADMIN, 400, "invalid_request"),
    ("availability-unknown", "GET", "/admin/v1/stores/s9/availability", None, ADMIN, 404, "not_found"),
    ("order-get-unknown", "GET", "/admin/v1/orders/o-x", None, ADMIN, 404, "not_found"),
    ("orders-printed", "GET", "/admin/v1/orders?printed=no", None, ADMIN, 400, "invalid_request"),
    ("orders-state", "GET", "/admin/v1/orders?state=lost", None, ADMIN, 400, "invalid_request"),
    ("orders-after", "GET", "/admin/v1/orders?after=o-x", None, ADMIN, 400, "invalid_request"),
    ("orders-limit", "GET", "/admin/v1/orders?limit=0", None, ADMIN, 400, "invalid_request"),
    ("orders-unknown-store", "GET", "/admin/v1/orders?store_id=s9", None, ADMIN, 404, "not_found"),
    ("admin-unknown-path", "GET", "/admin/v1/nothing", None, ADMIN, 404, "not_found"),
    ("root", "GET", "/", None, None, 404, "not_found"),
]


NO_ROUTE = {"unknown-path", "admin-unknown-path", "root"}


async def test_bad_input_gets_a_4xx_json_error_and_changes_nothing(hub):
    before = await db_dump(hub.data_dir)
    seen = set()
    for case_id, method, path, body, token, status, error in BAD:
        assert case_id not in seen
        seen.add(case_id)
        raw = body if isinstance(body, bytes) else None
        code, data = await hub.call(method, path, None if raw is not None else body, raw=raw,
                                    token=hub.tokens["s1"] if token == STORE else token)
        assert (code, data.get("error")) == (status, error), (case_id, data)
        assert isinstance(data.get("message"), str) and "Traceback" not in data["message"], case_id
        # authorised answers carry the epoch; a path or method no route has never reaches authorisation
        assert ("epoch" in data) == (token is not None and status not in (404, 405) or error == "not_found" and
                                     case_id not in NO_ROUTE), case_id
    assert await db_dump(hub.data_dir) == before


# -- the command, as a process --------------------------------------------------------------------

def hub_command(data_dir: Path) -> list[str]:
    """`store-edge hub`, from the console script next to this interpreter (as systemd would run it)."""
    script = Path(sys.executable).with_name("store-edge")
    return [*([str(script)] if script.exists() else [sys.executable, "-m", "edge"]), "hub", "--data", str(data_dir)]


@pytest.mark.sqlite_only("the command on PostgreSQL: tests/test_hub_postgres.py")
def test_the_command_starts_answers_and_stops_on_sigterm(tmp_path):
    data_dir = tmp_path / "hub"
    env = {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "NOTIFY_SOCKET")}
    proc = subprocess.Popen([*hub_command(data_dir), "--port", "0", "--safety-buffer", "1"], cwd=REPO, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    seen: list[str] = []
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()

    def wait_for(pattern: str, timeout: float = 30.0) -> re.Match:
        deadline = time.monotonic() + timeout
        while True:
            for line in seen:
                if match := re.search(pattern, line):
                    return match
            try:
                seen.append(lines.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r}; log:\n" + "".join(seen)) from None

    def request(method, path, body=None, token=None):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request(method, path, body=json.dumps(body) if body is not None else None,
                         headers={"Authorization": f"Bearer {token}"} if token else {})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())
        finally:
            conn.close()

    try:
        port = int(wait_for(r"msg=listening address=http://127\.0\.0\.1:([0-9]+)/").group(1))
        token_file = data_dir / "admin-token"
        assert wait_for(r'msg="admin token generated" path=(\S+)').group(1) == str(token_file)
        assert token_file.stat().st_mode & 0o777 == 0o600
        admin = token_file.read_text().strip()
        status, created = request("POST", "/admin/v1/stores", {"store_id": "s1", "name": "一号店"}, admin)
        assert status == 201 and created["token"]
        status, state = request("GET", "/sync/v1/stores/s1/state", token=created["token"])
        assert status == 200 and state["next_seq"] == 1 and state["epoch"] == created["epoch"]
        assert request("GET", "/sync/v1/stores/s1/state")[0] == 401
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        wait_for(r"msg=stopped")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stderr.close()


async def test_a_voided_event_is_applied_without_effect(hub):
    """A dead letter the store already retried, resent after a restore, must not count twice."""
    data = await hub.ok_upload("s1", [event("s1", 1, None, etype="event.voided", voided_type="sale.recorded",
                                            resolution="retried")])
    assert [r["status"] for r in data["results"]] == ["applied"]
    assert (await hub.sync("s1", "balances"))["balances"] == []
    code, data = await hub.upload("s1", [event("s1", 2, [("DRK-001", -1, "sale")], etype="event.voided")])
    assert code == 200 and data["results"][0]["status"] == "rejected"
    assert data["results"][0]["reason"].startswith("invalid_moves: an event.voided")


# -- signing keys, pickup tokens and codes, coupons (docs/tokens.md) --------------------------------

def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify_token(token: str, keys: dict[str, str]) -> tuple[dict, dict]:
    """Split, base64url-decode, and verify the Ed25519 signature over `h.p` with a published key."""
    assert len(token) <= 1024 and "=" not in token
    h, p, sig = token.split(".")
    header, claims = json.loads(b64url_decode(h)), json.loads(b64url_decode(p))
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(keys[header["kid"]]))
    public.verify(b64url_decode(sig), f"{h}.{p}".encode("ascii"))      # raises InvalidSignature
    return header, claims


async def feed_keys(hub, store_id: str) -> dict[str, str]:
    """The keys a store's feed leaves valid: published and not revoked, kid -> base64 public key."""
    keys: dict[str, str] = {}
    for change in (await hub.sync(store_id, "changes", {"limit": "1000"}))["changes"]:
        if change["type"] == "key.published":
            keys[change["payload"]["kid"]] = change["payload"]["public_key"]
        elif change["type"] == "key.revoked":
            keys.pop(change["payload"]["kid"], None)
    return keys


def hand_over(store: str, seq: int, order_id: str, lines, etype: str = "pickup.verified", method: str = "token",
              id: str | None = None, moves: list | None = None, **fields) -> dict:
    """A pickup.verified (or, with etype, pickup.reversed) envelope whose moves match `lines` unless given;
    fields override (or, set to DROP, remove) the payload's."""
    sign = -1 if etype == "pickup.verified" else 1
    if moves is None:
        moves = [(s, sign * q, r) for s, q in lines for r in ("release", "pickup")]
    if etype == "pickup.verified":
        payload = {"order_id": order_id, "method": method, "operator": "小王", "device": "till-1",
                   "provisional": False, "verified_at": CREATED_AT, "jti": "p-1" if method == "token" else None}
    else:
        payload = {"order_id": order_id, "operator": "店长", "reason": "顾客拿错了"}
    payload = {k: v for k, v in {**payload, **fields}.items() if v is not DROP}
    return event(store, seq, moves, etype=etype, id=id, **payload)


def redeemed(store: str, seq: int, coupon: str, serial: str, id: str | None = None, moves=None, **fields) -> dict:
    payload = {"coupon_id": coupon, "serial": serial, "jti": "c-1", "sale_id": "sale-1", "discount_fen": 2000,
               "provisional": False, **fields}
    payload = {k: v for k, v in payload.items() if v is not DROP}
    return event(store, seq, moves, etype="coupon.redeemed", id=id, **payload)


COUPON = {"coupon_id": "cpn-20off100", "title": "满100减20", "kind": "value", "value_fen": 2000,
          "min_spend_fen": 10000, "scope": {"categories": ["零食", "饮料"]},
          "valid_from": "2026-11-01T00:00:00Z", "valid_until": "2026-12-31T16:00:00Z"}


async def test_a_signing_key_is_created_at_first_start_and_published_to_every_store(tmp_path):
    hub = await start_hub(tmp_path / "hub")
    try:
        (key,) = (await hub.admin("GET", "/keys"))["keys"]
        assert re.fullmatch(r"k-202611-[0-9a-f]{6}", key["kid"])
        assert key["alg"] == "Ed25519" and key["signing"] is True and key["revoked_at"] is None
        assert set(key) == {"kid", "alg", "public_key", "created_at", "revoked_at", "revoke_reason", "signing"}
        assert len(base64.b64decode(key["public_key"], validate=True)) == 32
        await hub.add_store("s1")
        await hub.add_store("s2")        # registered after the key: every store's feed holds it
        for store_id in ("s1", "s2"):
            first = (await hub.sync(store_id, "changes"))["changes"][0]
            assert (first["cursor"], first["type"]) == (1, "key.published")
            assert first["payload"] == {"kid": key["kid"], "alg": "Ed25519", "public_key": key["public_key"]}
    finally:
        await hub.close()
    hub = await start_hub(tmp_path / "hub")                       # a restart keeps the key, publishes nothing
    try:
        assert [k["kid"] for k in (await hub.admin("GET", "/keys"))["keys"]] == [key["kid"]]
        assert (await hub.sync("s1", "state", token=hub.tokens.get("s1") or (await hub.admin(
            "POST", "/stores", {"store_id": "s1", "name": "x"}))["token"]))["last_cursor"] == 1
    finally:
        await hub.close()
    dump = await db_dump(tmp_path / "hub")
    assert "private_key" in dump      # kept in the hub's own database, never in an answer (checked above)


async def test_an_order_comes_with_a_pickup_code_and_a_signed_pickup_token(hub):
    await hub.ok_upload("s1", [event("s1", 1, [("DRK-001", 10, "receipt")])])
    order = await hub.order("s1", [("DRK-001", 2)], order_id="wx-7")
    keys = await feed_keys(hub, "s1")
    header, claims = verify_token(order["pickup_token"], keys)
    (kid,) = keys
    assert header == {"alg": "EdDSA", "kid": kid, "typ": "se-pickup+jwt"}
    now = int(hub.clock.now.timestamp())
    assert set(claims) == {"sub", "sid", "iat", "exp", "jti"}
    assert (claims["sub"], claims["sid"], claims["iat"], claims["exp"]) == ("wx-7", "s1", now, now + 7 * 86400)
    assert re.fullmatch(r"p-[0-9a-f]{24}", claims["jti"])
    assert order["pickup_token_expires_at"] == "2026-11-28T08:00:00.000Z"
    # the code: 6 digits, only its SHA-256 goes to the store and into the hub's database
    assert re.fullmatch(r"[0-9]{6}", order["pickup_code"])
    change = next(c for c in (await hub.sync("s1", "changes"))["changes"] if c["type"] == "order.created")
    assert change["payload"]["pickup_code_sha256"] == hashlib.sha256(order["pickup_code"].encode()).hexdigest()
    assert order["pickup_code"] not in json.dumps(change)
    assert f"'{order['pickup_code']}'" not in await db_dump(hub.data_dir)
    # a tampered token does not verify
    h, p, sig = order["pickup_token"].split(".")
    forged = base64.urlsafe_b64encode(json.dumps(dict(claims, sid="s2")).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidSignature):
        verify_token(f"{h}.{forged}.{sig}", keys)

    # a new token for the same order (no new code); only for an open order of that store
    again = await hub.admin("POST", "/stores/s1/orders/wx-7/pickup-token", status=201)
    assert set(again) == {"epoch", "order_id", "store_id", "pickup_token", "pickup_token_expires_at"}
    _, claims2 = verify_token(again["pickup_token"], keys)
    assert (claims2["sub"], claims2["sid"]) == ("wx-7", "s1") and claims2["jti"] != claims["jti"]
    assert (await hub.admin("POST", "/stores/s2/orders/wx-7/pickup-token", status=404))["error"] == "not_found"
    assert (await hub.admin("POST", "/stores/s9/orders/wx-7/pickup-token", status=404))["error"] == "not_found"
    await hub.admin("POST", "/orders/wx-7/cancel", {"reason": "顾客取消"})
    closed = await hub.admin("POST", "/stores/s1/orders/wx-7/pickup-token", status=409)
    assert (closed["error"], closed["state"]) == ("order_closed", "cancelled")


async def test_pickup_codes_are_unique_among_the_stores_open_orders(hub, monkeypatch):
    import hub.orders as hub_mod
    await hub.ok_upload("s1", [event("s1", 1, [("DRK-001", 10, "receipt")])])
    await hub.ok_upload("s2", [event("s2", 1, [("DRK-001", 10, "receipt")])])
    draws = iter([123456, 123456, 123456, 654321, 123456])
    monkeypatch.setattr(hub_mod.secrets, "randbelow", lambda n: next(draws))
    first = await hub.order("s1", [("DRK-001", 1)])
    other_store = await hub.order("s2", [("DRK-001", 1)])           # another store may hold the same code
    second = await hub.order("s1", [("DRK-001", 1)])                # 123456 is taken at s1: drawn again
    assert (first["pickup_code"], other_store["pickup_code"], second["pickup_code"]) == ("123456", "123456", "654321")
    await hub.admin("POST", f"/orders/{first['order_id']}/cancel", {"reason": "x"})
    assert (await hub.order("s1", [("DRK-001", 1)]))["pickup_code"] == "123456"   # free again once closed


async def test_key_rotation_and_revocation_publish_changes(hub):
    (first,) = (await hub.admin("GET", "/keys"))["keys"]
    rotated = await hub.admin("POST", "/keys", status=201)
    assert rotated["kid"] != first["kid"] and rotated["signing"] is True and "private_key" not in rotated
    listed = (await hub.admin("GET", "/keys"))["keys"]
    assert [(k["kid"], k["signing"], k["revoked_at"]) for k in listed] == \
        [(first["kid"], False, None), (rotated["kid"], True, None)]
    for store_id in ("s1", "s2"):
        last = (await hub.sync(store_id, "changes"))["changes"][-1]
        assert (last["cursor"], last["type"]) == (rotated["cursor"], "key.published")
        assert last["payload"] == {"kid": rotated["kid"], "alg": "Ed25519", "public_key": rotated["public_key"]}
    await hub.ok_upload("s1", [event("s1", 1, [("DRK-001", 10, "receipt")])])
    order = await hub.order("s1", [("DRK-001", 1)])
    header, _ = verify_token(order["pickup_token"], await feed_keys(hub, "s1"))
    assert header["kid"] == rotated["kid"]                                # the newest key signs

    revoked = await hub.admin("POST", f"/keys/{first['kid']}/revoke", {"reason": "rotated"})
    assert revoked["kid"] == first["kid"] and revoked["signing_kid"] == rotated["kid"]
    for store_id in ("s1", "s2"):
        last = (await hub.sync(store_id, "changes"))["changes"][-1]
        assert (last["type"], last["payload"]) == ("key.revoked", {"kid": first["kid"], "reason": "rotated"})
    assert list(await feed_keys(hub, "s2")) == [rotated["kid"]]
    listed = {k["kid"]: k for k in (await hub.admin("GET", "/keys"))["keys"]}
    assert listed[first["kid"]]["revoked_at"] is not None and listed[first["kid"]]["revoke_reason"] == "rotated"
    assert (await hub.admin("POST", f"/keys/{first['kid']}/revoke", status=409))["error"] == "key_revoked"
    assert (await hub.admin("POST", f"/keys/{rotated['kid']}/revoke", status=409))["error"] == "last_key"
    assert (await hub.admin("POST", "/keys/k-none/revoke", status=404))["error"] == "not_found"
    assert (await hub.admin("POST", f"/keys/{rotated['kid']}/revoke", {"why": "x"}, status=400))["error"] == \
        "invalid_request"
    assert "private" not in json.dumps(await hub.admin("GET", "/keys"))


async def test_coupons_are_defined_issued_and_revoked(hub):
    defined = await hub.admin("POST", "/coupons", COUPON, status=201)
    definition = {**COUPON, "uses": 1, "online_only": False}
    assert defined["definition"] == definition and defined["store_ids"] is None and defined["serials_issued"] == 0
    for store_id in ("s1", "s2"):
        last = (await hub.sync(store_id, "changes"))["changes"][-1]
        assert (last["type"], last["payload"]) == ("coupon.defined", definition)
    only_s1 = {"coupon_id": "cpn-9折", "title": "九折", "kind": "percent", "percent_off": 10,
               "max_discount_fen": 500, "valid_from": "2026-12-01T00:00:00+08:00",
               "valid_until": "2026-12-02T00:00:00+08:00", "uses": 2, "store_ids": ["s1"]}
    assert (await hub.admin("POST", "/coupons", only_s1, status=400))["error"] == "invalid_request"   # the id
    only_s1["coupon_id"] = "cpn-90pct"
    await hub.admin("POST", "/coupons", only_s1, status=201)
    assert (await hub.sync("s1", "changes"))["changes"][-1]["payload"]["coupon_id"] == "cpn-90pct"
    assert (await hub.sync("s2", "changes"))["changes"][-1]["payload"]["coupon_id"] == "cpn-20off100"
    assert (await hub.admin("POST", "/coupons", COUPON, status=409))["error"] == "coupon_exists"
    for bad in ({"kind": "value", "value_fen": None}, {"kind": "percent"}, {"kind": "percent", "value_fen": None,
                 "percent_off": 100}, {"value_fen": "2000"}, {"value_fen": 0}, {"scope": {"skus": ["DRK-001"],
                 "categories": ["饮料"]}}, {"scope": {}}, {"valid_until": "2026-10-01T00:00:00Z"},
                {"valid_from": "tomorrow"}, {"uses": 0}, {"online_only": "no"}, {"title": ""}, {"extra": 1},
                {"percent_off": 10}):
        body = {k: v for k, v in {**COUPON, "coupon_id": "cpn-bad", **bad}.items() if v is not None}
        assert (await hub.admin("POST", "/coupons", body, status=400))["error"] == "invalid_request", bad
    missing = await hub.admin("POST", "/coupons", {**COUPON, "coupon_id": "cpn-x", "store_ids": ["s9"]}, status=404)
    assert missing["error"] == "not_found"

    keys = await feed_keys(hub, "s1")
    bound = await hub.admin("POST", "/coupons/cpn-20off100/issue", {"store_id": "s1"}, status=201)
    header, claims = verify_token(bound["coupon_token"], keys)
    assert header == {"alg": "EdDSA", "kid": bound["kid"], "typ": "se-coupon+jwt"}
    now = int(hub.clock.now.timestamp())
    valid_until = int(datetime(2026, 12, 31, 16, tzinfo=timezone.utc).timestamp())
    assert claims == {"sub": bound["serial"], "cid": "cpn-20off100", "sid": "s1", "iat": now, "exp": valid_until,
                      "jti": bound["jti"]}
    anywhere = await hub.admin("POST", "/coupons/cpn-20off100/issue", status=201)           # no body: any store
    _, claims = verify_token(anywhere["coupon_token"], keys)
    assert "sid" not in claims and claims["sub"] == anywhere["serial"] != bound["serial"]
    soon = await hub.admin("POST", "/coupons/cpn-90pct/issue", {"store_id": "s1",
                                                                "expires_at": "2026-12-01T12:00:00+08:00"}, status=201)
    _, claims = verify_token(soon["coupon_token"], keys)
    assert claims["nbf"] == int(datetime(2026, 11, 30, 16, tzinfo=timezone.utc).timestamp())   # valid_from ahead
    assert claims["exp"] == int(datetime(2026, 12, 1, 4, tzinfo=timezone.utc).timestamp())
    assert (await hub.admin("POST", "/coupons/cpn-90pct/issue", {"store_id": "s2"}, status=409))["error"] == \
        "wrong_store"
    assert (await hub.admin("POST", "/coupons/cpn-none/issue", status=404))["error"] == "not_found"
    assert (await hub.admin("POST", "/coupons/cpn-90pct/issue", {"store_id": 1}, status=400))["error"] == \
        "invalid_request"
    view = await hub.admin("GET", "/coupons/cpn-20off100")
    assert [(s["serial"], s["store_id"], s["uses"], s["uses_allowed"], s["over_used"]) for s in view["serials"]] == \
        [(bound["serial"], "s1", 0, 1, False), (anywhere["serial"], None, 0, 1, False)]

    revoked = await hub.admin("POST", "/coupons/cpn-90pct/revoke", {"reason": "活动取消"})
    assert revoked["coupon_id"] == "cpn-90pct" and len(revoked["cursors"]) == 1
    last = (await hub.sync("s1", "changes"))["changes"][-1]
    assert (last["type"], last["payload"]) == ("coupon.revoked", {"coupon_id": "cpn-90pct", "reason": "活动取消"})
    assert (await hub.sync("s2", "changes"))["changes"][-1]["type"] == "coupon.defined"      # not s2's coupon
    assert (await hub.admin("POST", "/coupons/cpn-90pct/issue", status=409))["error"] == "coupon_revoked"
    assert (await hub.admin("POST", "/coupons/cpn-90pct/revoke", {"reason": "x"}, status=409))["error"] == \
        "coupon_revoked"
    listing = (await hub.admin("GET", "/coupons"))["coupons"]
    assert [(c["coupon_id"], c["serials_issued"], c["revoked_at"] is not None) for c in listing] == \
        [("cpn-20off100", 2, False), ("cpn-90pct", 1, True)]


async def test_hand_overs_reversals_and_redemptions_are_recorded(hub):
    await hub.ok_upload("s1", [event("s1", 1, [("DRK-001", 10, "receipt"), ("SNK-001", 5, "receipt")])])
    order = await hub.order("s1", [("DRK-001", 2), ("SNK-001", 1), ("DRK-001", 1)])
    oid, lines = order["order_id"], [("DRK-001", 3), ("SNK-001", 1)]
    verified = hand_over("s1", 3, oid, lines, jti="p-abc", provisional=True)
    data = await hub.ok_upload("s1", [
        event("s1", 2, [("DRK-001", 3, "reserve"), ("SNK-001", 1, "reserve")], "order.received", order_id=oid,
              short=[]),
        verified])
    assert [r["status"] for r in data["results"]] == ["applied", "applied"]
    got = await hub.admin("GET", f"/orders/{oid}")
    assert (got["state"], got["conflict"]) == ("picked_up", None)
    assert got["pickup"] == {"verified_at": CREATED_AT, "operator": "小王", "method": "token", "device": "till-1",
                             "provisional": True, "jti": "p-abc", "manual_reason": None, "member_id": None,
                             "event_id": verified["id"],
                             "received_at": "2026-11-21T08:00:00.000Z", "reversed_at": None, "reversed_by": None,
                             "reverse_reason": None, "reverse_event_id": None}
    assert (await hub.sync("s1", "balances"))["balances"] == [{"sku": "DRK-001", "on_hand": 7, "reserved": 0},
                                                              {"sku": "SNK-001", "on_hand": 4, "reserved": 0}]
    reversal = hand_over("s1", 4, oid, lines, etype="pickup.reversed")
    assert (await hub.ok_upload("s1", [reversal]))["results"][0]["status"] == "applied"
    got = await hub.admin("GET", f"/orders/{oid}")
    assert got["state"] == "ready" and got["pickup"]["reversed_by"] == "店长"
    assert (got["pickup"]["reverse_reason"], got["pickup"]["reverse_event_id"]) == ("顾客拿错了", reversal["id"])
    assert (await hub.sync("s1", "balances"))["balances"] == [{"sku": "DRK-001", "on_hand": 10, "reserved": 3},
                                                              {"sku": "SNK-001", "on_hand": 5, "reserved": 1}]
    by_code = hand_over("s1", 5, oid, [("SNK-001", 1), ("DRK-001", 3)], method="code")
    assert (await hub.ok_upload("s1", [by_code]))["results"][0]["status"] == "applied"
    got = await hub.admin("GET", f"/orders/{oid}")
    assert (got["state"], got["conflict"], got["pickup"]["method"], got["pickup"]["jti"]) == \
        ("picked_up", None, "code", None)
    assert got["pickup"]["reversed_at"] is None

    # coupons: uses counted per serial; a use beyond the definition's is applied and flagged
    await hub.admin("POST", "/coupons", COUPON, status=201)
    serial = (await hub.admin("POST", "/coupons/cpn-20off100/issue", {"store_id": "s1"}, status=201))["serial"]
    first = redeemed("s1", 6, "cpn-20off100", serial, sale_id="sale-1")
    double = redeemed("s1", 7, "cpn-20off100", serial, sale_id="sale-2", provisional=True, moves=[])
    data = await hub.ok_upload("s1", [first, double])
    assert [r["status"] for r in data["results"]] == ["applied", "applied"]
    (row,) = (await hub.admin("GET", "/coupons/cpn-20off100"))["serials"]
    assert (row["uses"], row["uses_allowed"], row["over_used"]) == (2, 1, True)
    assert [(r["use_no"], r["sale_id"], r["provisional"], r["flags"], r["event_id"]) for r in row["redemptions"]] == \
        [(1, "sale-1", False, [], first["id"]), (2, "sale-2", True, ["over_use"], double["id"])]
    assert row["redemptions"][0]["store_id"] == "s1" and row["redemptions"][0]["discount_fen"] == 2000
    summary = (await hub.admin("GET", "/coupons"))["coupons"][0]
    assert (summary["redemptions"], summary["flagged_redemptions"]) == (2, 1)
    # the same events again: duplicates, nothing counted twice
    assert [r["status"] for r in (await hub.ok_upload("s1", [first, double]))["results"]] == ["duplicate"] * 2
    assert (await hub.admin("GET", "/coupons/cpn-20off100"))["serials"][0]["uses"] == 2


async def test_malformed_pickup_and_coupon_events_are_rejected_per_event(hub):
    await hub.ok_upload("s1", [event("s1", 1, [("DRK-001", 10, "receipt")])])
    await hub.ok_upload("s2", [event("s2", 1, [("DRK-001", 10, "receipt")])])
    oid = (await hub.order("s1", [("DRK-001", 2)]))["order_id"]
    theirs = (await hub.order("s2", [("DRK-001", 1)]))["order_id"]
    await hub.ok_upload("s1", [event("s1", 2, [("DRK-001", 2, "reserve")], "order.received", order_id=oid, short=[])])
    await hub.admin("POST", "/coupons", COUPON, status=201)
    await hub.admin("POST", "/coupons", {**COUPON, "coupon_id": "cpn-other"}, status=201)
    serial = (await hub.admin("POST", "/coupons/cpn-20off100/issue", status=201))["serial"]
    other = (await hub.admin("POST", "/coupons/cpn-other/issue", status=201))["serial"]
    lines = [("DRK-001", 2)]
    bad = [
        (hand_over("s1", 0, oid, lines, method=DROP), "invalid_payload: method must be one of token, code"),
        (hand_over("s1", 0, oid, lines, method="face"), "invalid_payload: method"),
        (hand_over("s1", 0, oid, lines, operator=DROP), "invalid_payload: operator"),
        (hand_over("s1", 0, oid, lines, device=""), "invalid_payload: device"),
        (hand_over("s1", 0, oid, lines, provisional="no"), "invalid_payload: provisional must be true or false"),
        (hand_over("s1", 0, oid, lines, provisional=DROP), "invalid_payload: provisional"),
        (hand_over("s1", 0, oid, lines, verified_at="今天"), "invalid_payload: verified_at"),
        (hand_over("s1", 0, oid, lines, jti=DROP), "invalid_payload: jti must be a string"),
        (hand_over("s1", 0, oid, lines, method="code", jti="p-1"), "invalid_payload: jti is for method token"),
        (hand_over("s1", 0, oid, lines, manual_reason="丢了"), "invalid_payload: manual_reason is for a hand-over"),
        (hand_over("s1", 0, oid, lines, method="code", manual_reason=""), "invalid_payload: manual_reason"),
        (hand_over("s1", 0, oid, lines, method="code", manual_reason=7), "invalid_payload: manual_reason"),
        (hand_over("s1", 0, 42, lines), "invalid_payload: order_id"),
        (dict(hand_over("s1", 0, oid, lines), payload={k: v for k, v in hand_over("s1", 0, oid, lines)["payload"]
                                                       .items() if k != "moves"}), "invalid_moves: a pickup.verified"),
        (hand_over("s1", 0, oid, lines, moves=[]), "invalid_moves: the moves of a pickup.verified must match "
                                                  "the order's lines: pickup -2 DRK-001, release -2 DRK-001"),
        (hand_over("s1", 0, oid, lines, moves=[("DRK-001", -2, "release")]), "invalid_moves: the moves of"),
        (hand_over("s1", 0, oid, lines, moves=[("DRK-001", -1, "release"), ("DRK-001", -2, "pickup")]),
         "invalid_moves: the moves of"),
        (hand_over("s1", 0, oid, lines, moves=[("DRK-001", 2, "release"), ("DRK-001", 2, "pickup")]),
         "invalid_moves: the moves of"),
        (hand_over("s1", 0, oid, [("DRK-001", 2), ("SNK-001", 1)]), "invalid_moves: the moves of"),
        (hand_over("s1", 0, oid, lines, moves=[("DRK-001", -2, "release"), ("DRK-001", -2, "sale")]),
         "invalid_moves: a pickup.verified moves stock only by release and pickup"),
        (hand_over("s1", 0, oid, lines, moves=[("DRK-001", "-2", "release")]), "invalid_moves: payload.moves[0].qty"),
        (hand_over("s1", 0, "o-unknown", lines), "unknown_order: "),
        (hand_over("s1", 0, theirs, [("DRK-001", 1)]), "unknown_order: "),
        (hand_over("s1", 0, oid, lines, etype="pickup.reversed"), "not_picked_up: "),
        (hand_over("s1", 0, oid, lines, etype="pickup.reversed", reason=DROP), "invalid_payload: reason"),
        (hand_over("s1", 0, oid, lines, etype="pickup.reversed", operator=7), "invalid_payload: operator"),
        (hand_over("s1", 0, oid, lines, etype="pickup.reversed", moves=[("DRK-001", -2, "release"),
                                                                        ("DRK-001", -2, "pickup")]),
         "invalid_moves: the moves of a pickup.reversed must match the order's lines: pickup +2 DRK-001"),
        (redeemed("s1", 0, "cpn-20off100", serial, discount_fen="2000"), "invalid_payload: discount_fen"),
        (redeemed("s1", 0, "cpn-20off100", serial, discount_fen=-1), "invalid_payload: discount_fen"),
        (redeemed("s1", 0, "cpn-20off100", serial, provisional=DROP), "invalid_payload: provisional"),
        (redeemed("s1", 0, "cpn-20off100", serial, sale_id=DROP), "invalid_payload: sale_id"),
        (redeemed("s1", 0, "cpn-20off100", serial, jti=None), "invalid_payload: jti"),
        (redeemed("s1", 0, "cpn-20off100", serial, coupon_id=DROP), "invalid_payload: coupon_id"),
        (redeemed("s1", 0, "cpn-20off100", serial, moves=[("DRK-001", -1, "sale")]), "invalid_moves: "),
        (redeemed("s1", 0, "cpn-none", serial), "unknown_coupon: "),
        (redeemed("s1", 0, "cpn-20off100", "cs-none"), "unknown_serial: "),
        (redeemed("s1", 0, "cpn-20off100", other), "unknown_serial: "),
    ]
    before = await hub.sync("s1", "balances")
    batch = [dict(e, seq=n) for n, (e, _) in enumerate(bad, start=3)]
    data = await hub.ok_upload("s1", batch)
    for result, (sent, reason) in zip(data["results"], bad):
        assert result["status"] == "rejected" and result["reason"].startswith(reason), (result, reason)
    assert (await hub.sync("s1", "balances"))["balances"] == before["balances"]
    got = await hub.admin("GET", f"/orders/{oid}")
    assert (got["state"], got["pickup"], got["conflict"]) == ("created", None, None)
    assert all(s["uses"] == 0 for s in (await hub.admin("GET", "/coupons/cpn-20off100"))["serials"])
    listing = await hub.admin("GET", "/stores/s1/events", params={"status": "rejected", "limit": "1000"})
    assert len(listing["events"]) == len(bad)


async def test_the_customers_phone_goes_to_the_store_as_its_last_four_digits(hub):
    await hub.ok_upload("s1", [event("s1", 1, [("DRK-001", 10, "receipt")])])
    order = await hub.order("s1", [("DRK-001", 1)], customer_phone="+8613912345678")
    assert order["customer_phone_last4"] == "5678"
    (change,) = [c for c in (await hub.sync("s1", "changes"))["changes"] if c["type"] == "order.created"]
    assert change["payload"]["customer_phone_last4"] == "5678"
    assert "13912345678" not in json.dumps(change) and "13912345678" not in await db_dump(hub.data_dir)
    assert (await hub.admin("GET", f"/orders/{order['order_id']}"))["customer_phone_last4"] == "5678"
    without = await hub.order("s1", [("DRK-001", 1)])          # no phone: no field, as older stores expect
    (change,) = [c for c in (await hub.sync("s1", "changes"))["changes"]
                 if c["payload"].get("order_id") == without["order_id"]]
    assert "customer_phone_last4" not in change["payload"] and without["customer_phone_last4"] is None
    for bad in ("5678", "13912345678x", "+86 139 1234 5678", 13912345678):
        answer = await hub.order("s1", [("DRK-001", 1)], status=400, customer_phone=bad)
        assert answer["error"] == "invalid_request", (bad, answer)


async def test_a_hand_over_without_the_code_is_recorded_with_its_reason(hub):
    await hub.ok_upload("s1", [event("s1", 1, [("DRK-001", 10, "receipt")])])
    oid = (await hub.order("s1", [("DRK-001", 2)]))["order_id"]
    lines = [("DRK-001", 2)]
    data = await hub.ok_upload("s1", [
        event("s1", 2, [("DRK-001", 2, "reserve")], "order.received", order_id=oid, short=[]),
        hand_over("s1", 3, oid, lines, method="code", manual_reason="顾客手机没电，已核对身份")])
    assert [r["status"] for r in data["results"]] == ["applied", "applied"]
    got = await hub.admin("GET", f"/orders/{oid}")
    assert got["state"] == "picked_up" and got["pickup"]["method"] == "code"
    assert got["pickup"]["manual_reason"] == "顾客手机没电，已核对身份" and got["pickup"]["jti"] is None


async def test_a_hand_over_to_a_member_keeps_the_member(hub):
    """The cashier's screen carried the member who collected (pickup.verified's optional member_id)."""
    await hub.ok_upload("s1", [event("s1", 1, [("DRK-001", 10, "receipt")])])
    oid = (await hub.order("s1", [("DRK-001", 2)]))["order_id"]
    data = await hub.ok_upload("s1", [
        event("s1", 2, [("DRK-001", 2, "reserve")], "order.received", order_id=oid, short=[]),
        hand_over("s1", 3, oid, [("DRK-001", 2)], member_id="m-000123")])
    assert [r["status"] for r in data["results"]] == ["applied", "applied"]
    assert (await hub.admin("GET", f"/orders/{oid}"))["pickup"]["member_id"] == "m-000123"


async def test_a_hand_over_after_a_refund_is_applied_and_flagged(hub):
    await hub.ok_upload("s1", [event("s1", 1, [("DRK-001", 10, "receipt")])])
    oid = (await hub.order("s1", [("DRK-001", 2)]))["order_id"]
    await hub.ok_upload("s1", [event("s1", 2, [("DRK-001", 2, "reserve")], "order.received", order_id=oid, short=[])])
    await hub.admin("POST", f"/orders/{oid}/refund", {"reason": "顾客申请退款"})
    # the store was offline: it handed the goods over before it learnt of the refund
    late = hand_over("s1", 3, oid, [("DRK-001", 2)], provisional=True)
    assert (await hub.ok_upload("s1", [late]))["results"][0]["status"] == "applied"
    got = await hub.admin("GET", f"/orders/{oid}")
    assert got["state"] == "refunded" and got["pickup"]["event_id"] == late["id"] and got["pickup"]["provisional"]
    assert "after the order was refunded" in got["conflict"]
    assert (await hub.sync("s1", "balances"))["balances"] == [{"sku": "DRK-001", "on_hand": 8, "reserved": 0}]
    flagged = await hub.admin("GET", "/orders", params={"conflict": "true"})
    assert [o["order_id"] for o in flagged["orders"]] == [oid] and flagged["orders"][0]["pickup"] is not None
    assert (await hub.admin("GET", "/orders", params={"conflict": "false"}))["orders"] == []
    assert (await hub.admin("GET", "/orders", params={"conflict": "yes"}, status=400))["error"] == "invalid_request"


async def test_a_store_that_disconnects_mid_upload_is_one_info_line(tmp_path, caplog):
    """Issue 15 item 10: a killed daemon drops its connection mid-body. The hub served as
    `store-edge hub` serves (aiohttp's runner, handlers not cancelled on disconnect) logs one info
    line, no error and no traceback."""
    from aiohttp import web

    from edge.core.serving import SHUTDOWN_TIMEOUT
    from hub.state import HUB
    from tests.helpers_daemon import drop_mid_body

    app = build_hub_app(tmp_path / "hub", admin_token=ADMIN, clock=Clock(), db_url=DB["url"])
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"http://127.0.0.1:{port}/admin/v1/stores", json={"store_id": "s1", "name": "s1"},
                                    headers={"Authorization": f"Bearer {ADMIN}"}) as resp:
                token = (await resp.json())["token"]
        caplog.set_level(logging.INFO)
        caplog.clear()
        body = json.dumps({"protocol": 1, "events": [event("s1", 1)]}).encode()
        await drop_mid_body(port, f"POST /sync/v1/stores/s1/events HTTP/1.1\r\nHost: hub\r\n"
                            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n", body)
    finally:
        await runner.cleanup()  # waits for the handler to end
    assert [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info] == []
    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records if r.name.startswith("hub")
            and "disconnected" in r.getMessage()] == [("hub.http", "INFO", "client disconnected mid-request")]
    assert "s1" in app[HUB].last_seen  # the upload was authorised: the disconnect came mid-body
