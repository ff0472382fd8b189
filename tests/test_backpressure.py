"""Back-pressure and fairness (issue 13 part 3, docs/sync-protocol.md 2.5): the hub's admission gate
(429/503 with Retry-After before a body is read), admin writes ahead of uploads, uploads whose store
went away, a store learning how far the hub got, and the edge keeping to Retry-After with jitter.

Uploads are held open by bodies that wait on an event, and the writer by a write that waits on one:
no test depends on how long anything takes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import threading

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from edge.core.sqlite import Store
from hub.admission import RETRY_AFTER_MAX, Admission
from hub.app import build_hub_app
from hub.errors import HubError
from tests.hub_database import HUB_DB
from tests.test_hub import ADMIN, Clock, Hub, event, product, start_hub


def body_of(events: list[dict]) -> bytes:
    return json.dumps({"protocol": 1, "events": events}).encode()


class Served:
    """The hub served as `store-edge hub` serves it (hub.app.serve: aiohttp does not cancel a handler
    whose client went away, unlike its test server), behind TestClient's few methods the tests use."""

    def __init__(self, app: web.Application, port: int):
        self.app, self.host, self.port = app, "127.0.0.1", port
        self.server = self

    async def start(self) -> None:
        import aiohttp

        from hub.app import serve

        self.stop = asyncio.Event()
        self.task = asyncio.create_task(serve(self.app, self.host, self.port, self.stop))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while True:
            try:
                _, writer = await asyncio.open_connection(self.host, self.port)
                writer.close()
                break
            except OSError:
                assert loop.time() < deadline and not self.task.done(), "the hub did not start"
                await asyncio.sleep(0.02)
        self.session = aiohttp.ClientSession()

    def request(self, method: str, path: str, **kw):
        return self.session.request(method, f"http://{self.host}:{self.port}{path}", **kw)

    def post(self, path: str, **kw):
        return self.request("POST", path, **kw)

    def get(self, path: str, **kw):
        return self.request("GET", path, **kw)

    async def close(self) -> None:
        await self.session.close()
        self.stop.set()
        await self.task


async def make_hub(tmp_path, how: str = "test server", port: int = 0):
    """A hub that works on at most 2 uploads and 4000 body bytes at once; stores s1-s4."""
    options = {"max_uploads": 2, "max_upload_bytes": 4000}
    if how == "test server":
        h = await start_hub(tmp_path / "hub", **options)
    else:
        clock = Clock()
        served = Served(build_hub_app(tmp_path / "hub", admin_token=ADMIN, clock=clock, db_url=HUB_DB["url"], **options),
                        port)
        await served.start()
        h = Hub(served, tmp_path / "hub", clock)
    for store in ("s1", "s2", "s3", "s4"):
        await h.add_store(store)
    await h.add_products(product("DRK-001", 200), product("SNK-001", 750))
    return h


# The hub's fixtures run each of their tests on SQLite and on PostgreSQL (tests/test_hub.py's database);
# the tests of the gate, the edge's retries and SQLite's own writer run once.
@pytest.fixture
async def small_hub(tmp_path, hub_database):
    h = await make_hub(tmp_path)
    try:
        yield h
    finally:
        await h.close()


@pytest.fixture(params=["test server", "served"])
async def either_hub(tmp_path, request, unused_tcp_port, hub_database):
    """small_hub, on aiohttp's test server (which cancels a handler whose client left) and served
    as in production (which does not)."""
    h = await make_hub(tmp_path, request.param, unused_tcp_port)
    try:
        yield h
    finally:
        await h.close()


class HeldUpload:
    """An upload whose headers (with Content-Length) are sent and whose body waits for `release`."""

    def __init__(self, hub, store: str, events: list[dict]):
        self.hub, self.store, self.raw = hub, store, body_of(events)
        self.release = asyncio.Event()
        self.task = asyncio.create_task(self._send())

    async def _body(self):
        yield self.raw[:10]
        await self.release.wait()
        yield self.raw[10:]

    async def _send(self):
        resp = await self.hub.client.post(
            f"/sync/v1/stores/{self.store}/events", data=self._body(),
            headers={"Authorization": f"Bearer {self.hub.tokens[self.store]}", "Content-Length": str(len(self.raw)),
                     "Content-Type": "application/json"})
        return resp.status, await resp.json()

    async def result(self):
        self.release.set()
        return await self.task


async def unsent(hub, store: str, length: int) -> tuple[int, dict, dict]:
    """An upload's headers (Content-Length: length) on a raw socket, its body never sent: the answer.
    (aiohttp's client reads no answer before it has sent the whole body.)"""
    reader, writer = await asyncio.open_connection(hub.client.server.host, hub.client.server.port)
    try:
        writer.write(f"POST /sync/v1/stores/{store}/events HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json"
                     f"\r\nAuthorization: Bearer {hub.tokens[store]}\r\nContent-Length: {length}\r\n\r\n".encode())
        await writer.drain()
        status = int((await asyncio.wait_for(reader.readline(), 5)).split()[1])
        headers = {}
        while (line := (await reader.readline()).decode().strip()):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers["content-length"]))
        return status, headers, json.loads(body)
    finally:
        writer.close()


async def until(condition, what: str, limit: float = 5.0):
    """Let the loop run until `condition()` holds (a state the hub reaches, not a time that passes)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not condition():
        assert loop.time() < deadline, f"never: {what}"
        await asyncio.sleep(0.005)


def gate(hub) -> Admission:
    return hub.client.server.app[hub_key()].admission


def hub_key():
    from hub.state import HUB
    return HUB


# -- the admission gate ------------------------------------------------------------------------------

async def test_a_full_hub_answers_503_with_retry_after_at_once_and_an_admin_order_goes_through(small_hub):
    hub = small_hub
    await hub.ok_upload("s4", [event("s4", 1, [("DRK-001", 10, "receipt")])])   # stock to order from
    held = [HeldUpload(hub, "s1", [event("s1", 1, [("DRK-001", 10, "receipt")])]),
            HeldUpload(hub, "s2", [event("s2", 1, [("DRK-001", 5, "receipt")])])]
    await until(lambda: gate(hub).in_flight == 2, "both uploads admitted")
    # a third store: refused before its token is looked up or its body read (the body never comes)
    status, headers, data = await unsent(hub, "s3", 300)
    assert (status, data["error"]) == (503, "unavailable") and "Traceback" not in data["message"]
    assert 1 <= int(headers["retry-after"]) <= RETRY_AFTER_MAX
    resp = await hub.client.post("/sync/v1/stores/s4/events", data=body_of([event("s4", 2)]),
                                 headers={"Authorization": f"Bearer {hub.tokens['s4']}"})
    assert resp.status == 503 and 1 <= int(resp.headers["Retry-After"]) <= RETRY_AFTER_MAX
    # the chain's admin writes are not behind the uploads: an order is created while both are held
    order = await asyncio.wait_for(hub.order("s4", [("DRK-001", 1)]), 5)
    assert order["order_id"] and all(not h.task.done() for h in held)
    for h in held:
        status, data = await h.result()
        assert status == 200 and data["next_seq"] == 2, data
    assert gate(hub).in_flight == 0 and gate(hub).bytes_held == 0
    await hub.ok_upload("s3", [event("s3", 1, [("DRK-001", 1, "receipt")])])   # room again
    metrics = await hub.client.get("/metrics", headers={"Authorization": f"Bearer {ADMIN}"})
    text = await metrics.text()
    assert metrics.status == 200 and 'hub_uploads_refused_total{status="503"} 2.0' in text
    assert "hub_uploads_in_flight 0.0" in text
    assert (await hub.client.get("/metrics")).status == 401


async def test_bodies_over_the_byte_bound_are_refused_before_they_are_read(small_hub):
    hub = small_hub
    big = [event("s1", seq, [("DRK-001", 1, "receipt")], note="x" * 100) for seq in range(1, 12)]
    assert 2000 < len(body_of(big)) < 4000
    first = HeldUpload(hub, "s1", big)
    await until(lambda: gate(hub).in_flight == 1, "the first upload admitted")
    # 2 uploads are allowed, but their bodies together would be over 4000 bytes: the second's body
    # is never sent, and it is answered all the same
    status, headers, data = await unsent(hub, "s2", len(body_of(big)))
    assert (status, data["error"]) == (503, "unavailable") and int(headers["retry-after"]) >= 1
    status, _, data = await unsent(hub, "s2", 20_000_000)   # over the hub's body limit: never admitted whole
    assert (status, data["error"]) == (503, "unavailable")
    assert (await first.result())[0] == 200
    status, _, data = await unsent(hub, "s2", 20_000_000)   # alone: refused as too large, also unread
    assert (status, data["error"]) == (413, "body_too_large") and data["epoch"]


async def test_a_second_upload_of_the_same_store_at_once_is_429(small_hub):
    hub = small_hub
    first = HeldUpload(hub, "s1", [event("s1", 1, [("DRK-001", 1, "receipt")])])
    await until(lambda: gate(hub).in_flight == 1, "the first upload admitted")
    resp = await hub.client.post("/sync/v1/stores/s1/events", data=body_of([event("s1", 1)]),
                                 headers={"Authorization": f"Bearer {hub.tokens['s1']}"})
    data = await resp.json()
    assert (resp.status, data["error"]) == (429, "rate_limited") and int(resp.headers["Retry-After"]) >= 1
    assert (await first.result())[0] == 200


def test_retry_after_spreads_the_refused_over_the_hub_s_pace():
    now = [100.0]
    g = Admission(max_uploads=2, max_body_bytes=10, clock=lambda: now[0])
    tickets = {"a": g.admit("a", 5), "b": g.admit("b", 1)}
    for n in range(15):  # busy, an upload finishing every 0.5 s and another taking its place
        now[0] += 0.5
        store = "a" if n % 2 else "b"
        g.done(store, tickets[store])
        tickets[store] = g.admit(store, 5 if store == "a" else 1)
    assert 0.45 < g.per_upload <= 0.5
    waits = []
    for store in range(200):
        with pytest.raises(HubError) as info:
            g.admit(f"x{store}", 1)
        assert info.value.status == 503
        waits.append(int(info.value.headers["Retry-After"]))
    # two in progress at ~0.5 s each, then its own turn: ~1.5 s, rounded; then ~0.5 s apart
    assert waits == sorted(waits) and waits[0] in (1, 2) and waits[-1] == RETRY_AFTER_MAX
    assert waits[100] in (50, 51, 52)
    assert len(set(waits)) > 30  # spread, not all told the same second


def test_a_burst_worked_on_in_turn_is_paced_by_its_slices_not_by_its_first_finish():
    """A storm's first uploads are admitted together and their slices worked on in turn: few finish
    in the first second. Their slices count as they commit, so the pace stays one upload's work
    and the refused are not booked far ahead of a hub that will soon be idle."""
    now = [0.0]
    g = Admission(max_uploads=100, max_wait=60.0, clock=lambda: now[0])
    tickets = [g.admit(f"s{n}", 10_000) for n in range(100)]
    for _ in range(3):                       # three of each upload's four slices, 5 ms each, in turn
        for ticket in tickets:
            now[0] += 0.005
            g.progress(ticket, 0.25)
    now[0] += 0.005
    g.done("s0", tickets[0])                 # the first to finish, after 1.5 s of the burst
    assert 0.019 < g.per_upload < 0.021      # 20 ms an upload, not 1.5 s
    g.admit("s0", 10_000)                    # its next batch takes the place it gave back
    waits = []
    for n in range(100):
        with pytest.raises(HubError) as info:
            g.admit(f"x{n}", 10_000)
        waits.append(int(info.value.headers["Retry-After"]))
    # 100 uploads ahead (~0.5 s of work left, counted as whole uploads: ~2 s), then 100 x 20 ms
    assert waits[0] in (2, 3) and waits[-1] in (4, 5)


# -- the writer's lanes ------------------------------------------------------------------------------

async def test_a_write_goes_before_queued_bulk_writes_and_abandoned_bulk_work_never_runs(tmp_path):
    store = Store(tmp_path / "t.db", [("t", "CREATE TABLE t (what TEXT);")])
    store.open()
    try:
        gate_open = threading.Event()
        blocker = asyncio.create_task(store.write(lambda conn: gate_open.wait(5)))
        await asyncio.sleep(0)
        bulk = [asyncio.create_task(store.write_bulk(lambda conn, n=n: conn.execute(
            "INSERT INTO t VALUES (?)", (f"bulk{n}",)))) for n in range(3)]
        await asyncio.sleep(0)
        bulk[2].cancel()                         # its caller went away while it was queued
        urgent = asyncio.create_task(store.write(lambda conn: conn.execute("INSERT INTO t VALUES ('admin')")))
        kept = asyncio.create_task(store.write(lambda conn: conn.execute("INSERT INTO t VALUES ('kept')")))
        await asyncio.sleep(0)
        kept.cancel()                            # a write, unlike bulk work, runs once queued
        gate_open.set()
        await asyncio.gather(blocker, urgent, *bulk[:2])
        for task in (bulk[2], kept):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        rows = await store.read(lambda conn: [r[0] for r in conn.execute("SELECT what FROM t ORDER BY rowid")])
        assert rows == ["admin", "kept", "bulk0", "bulk1"]
    finally:
        store.close()


# -- abandoned uploads -------------------------------------------------------------------------------

@pytest.mark.sqlite_only("SQLite's writer queue; tests/test_hub_postgres.py has PostgreSQL's bulk pool")
async def test_an_upload_whose_store_went_away_is_abandoned_quietly_and_the_resend_applies_once(either_hub, caplog):
    hub = either_hub
    caplog.set_level(logging.INFO)
    store = hub.client.server.app[hub_key()].db.store  # SQLite's: its writer thread and queue
    writer_busy, writer_free = threading.Event(), threading.Event()

    def busy(conn):
        writer_busy.set()
        writer_free.wait(5)

    blocker = asyncio.create_task(store.write(busy))  # the writer is busy with something else
    await until(writer_busy.is_set, "the writer busy")
    batch = [event("s1", 1, [("DRK-001", 10, "receipt")]), event("s1", 2, [("DRK-001", -1, "sale")], "sale.recorded")]
    sent = asyncio.create_task(hub.upload("s1", batch))
    await until(lambda: store._queue.qsize() >= 1, "the batch queued at the writer")
    sent.cancel()                                 # the store's timeout: it closes the connection
    with contextlib.suppress(asyncio.CancelledError):
        await sent
    await until(lambda: any("client disconnected mid-request" in r.getMessage() for r in caplog.records), "abandoned")
    writer_free.set()
    await blocker
    await until(lambda: gate(hub).in_flight == 0, "the place given back")
    assert (await hub.sync("s1", "state"))["next_seq"] == 1   # not applied: nobody was waiting for it
    data = await hub.ok_upload("s1", batch)
    assert [r["status"] for r in data["results"]] == ["applied", "applied"]
    again = await hub.ok_upload("s1", batch)
    assert [r["status"] for r in again["results"]] == ["duplicate", "duplicate"]
    assert (await hub.sync("s1", "balances"))["balances"] == [{"sku": "DRK-001", "on_hand": 9, "reserved": 0}]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_an_upload_committed_after_its_store_went_away_logs_no_error(either_hub, caplog, monkeypatch):
    hub = either_hub
    caplog.set_level(logging.INFO)
    state = hub.client.server.app[hub_key()]
    committed, answer_held = asyncio.Event(), asyncio.Event()
    real = state.committed

    async def held(**kw):
        await real(**kw)
        committed.set()
        await answer_held.wait()                  # the store gives up between the commit and the answer

    monkeypatch.setattr(state, "committed", held)
    batch = [event("s1", 1, [("DRK-001", 10, "receipt")])]
    sent = asyncio.create_task(hub.upload("s1", batch))
    await asyncio.wait_for(committed.wait(), 5)
    sent.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sent
    monkeypatch.setattr(state, "committed", real)
    answer_held.set()
    await until(lambda: gate(hub).in_flight == 0, "the upload finished")
    again = await hub.ok_upload("s1", batch)     # the store resends: the hub holds it once
    assert [r["status"] for r in again["results"]] == ["duplicate"] and again["next_seq"] == 2
    await asyncio.sleep(0.05)  # let aiohttp finish with the closed connection: it must not log an error
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], \
        [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# -- the edge keeps to Retry-After -------------------------------------------------------------------

def test_retry_wait_is_never_early_and_adds_up_to_a_fifth():
    from sync.engine import retry_wait

    rng = random.Random(7)
    waits = [retry_wait(10.0, rng) for _ in range(200)]
    assert all(10.0 <= w <= 12.0 for w in waits) and max(waits) - min(waits) > 1.5
    assert [retry_wait(10.0, random.Random(7)) for _ in range(1)] == waits[:1]   # the seeded rng decides
    assert retry_wait(600.0, rng) == 600.0 and retry_wait(0.0, rng) == 0.0


@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_the_uploader_waits_retry_after_with_jitter_and_its_backoff_does_not_grow(config, monkeypatch, form):
    from datetime import timedelta
    from email.utils import format_datetime

    import sync.engine
    from edge.core.clock import utcnow
    from edge.store import outbox
    from edge.store.db import open_store
    from sync.client import CloudClient
    from sync.engine import SyncEngine, Timing

    answers = ["503", "503", "ok"]
    seen = []

    async def events(request):
        body = await request.json()
        seen.append(len(body["events"]))
        if answers.pop(0) == "503":
            after = "30" if form == "seconds" else format_datetime(utcnow().replace(microsecond=0)
                                                                   + timedelta(seconds=31), usegmt=True)
            return web.json_response({"error": "unavailable", "message": "busy"}, status=503,
                                     headers={"Retry-After": after})
        last = body["events"][-1]["seq"]
        return web.json_response({"epoch": "e-1", "next_seq": last + 1, "results": [
            {"id": e["id"], "seq": e["seq"], "status": "applied"} for e in body["events"]]})

    async def changes(request):
        return web.json_response({"epoch": "e-1", "changes": [], "next_cursor": 0, "more": False})

    app = web.Application()
    app.router.add_post("/sync/v1/stores/{store_id}/events", events)
    app.router.add_get("/sync/v1/stores/{store_id}/changes", changes)
    server = TestServer(app)
    await server.start_server()
    waited, backoffs = [], []
    real_wait = sync.engine.retry_wait

    def recorded(seconds, rng):
        waited.append((seconds, real_wait(seconds, rng)))
        return 0.0

    monkeypatch.setattr(sync.engine, "retry_wait", recorded)
    monkeypatch.setattr(sync.engine, "backoff", lambda attempt, timing, rng: backoffs.append(attempt) or 300.0)
    store = open_store(config.db_path)
    store.open()
    pending = await store.read(outbox.pending_batch, "test-store", 500)
    assert pending, "the seeded store has events to send"
    engine = SyncEngine(store, CloudClient(str(server.make_url("")), "test-store", "t"), tz=config.tz,
                        timing=Timing(poll_without_hints=300), seed=1)
    engine._hints = lambda: asyncio.Event().wait()   # no hint socket in this stub
    states = []
    engine.link.listeners.append(lambda: states.append(engine.link.state))
    await engine.start()
    try:
        await until(lambda: not answers, "the third upload answered")
        await until(lambda: engine.link.state == "online", "the queue sent")
    finally:
        await engine.stop()
        store.close()
        await server.close()
    assert len(seen) == 3
    assert len(waited) == 2
    # the cloud answered with a time to come back: the store says it is busy, never "disconnected"
    assert "busy" in states and "offline" not in states, states
    for asked, wait in waited:
        assert (asked == 30.0) if form == "seconds" else (29.0 <= asked <= 31.0)
        assert asked <= wait <= asked * 1.2
    assert waited[0][1] != waited[1][1]  # jittered: two waits for the same Retry-After differ
    assert backoffs == []  # a Retry-After is not a failure: the backoff was never consulted


# -- reconnect: the store asks how far the hub got -------------------------------------------------

async def test_a_store_whose_answer_was_lost_learns_what_the_hub_holds_instead_of_resending(config, tmp_path):
    from edge.store import outbox
    from edge.store.db import open_store
    from sync.client import CloudClient
    from sync.engine import SyncEngine

    hub = await start_hub(tmp_path / "hub")
    token = await hub.add_store("test-store")
    await hub.add_products(product("DRK-001", 200))
    store = open_store(config.db_path)
    store.open()
    client = CloudClient(str(hub.client.make_url("")), "test-store", token)
    await client.open()
    try:
        for sku in ("DRK-001", "LOCAL-9"):     # the hub applies the first, rejects the second
            await store.write(outbox.emit, "stock.adjusted", {"moves": [{"sku": sku, "qty": 2, "reason": "adjustment"}],
                                                               "note": "count"}, "2026-11-21T08:30:00.000Z")
        pending = await store.read(outbox.pending_batch, "test-store", 500)
        assert len(pending) >= 3
        # the store sent its queue and the hub applied it, but the answer never came back (a timeout)
        lost = await client.post_events([outbox.envelope(e) for e in pending])
        rejected = {r["seq"] for r in lost.body["results"] if r["status"] == "rejected"}
        assert lost.body["next_seq"] == pending[-1]["seq"] + 1 and rejected  # SKUs the hub's catalog lacks
        posted = []
        real_post = client.post_events

        async def counted(envelopes):
            posted.append(len(envelopes))
            return await real_post(envelopes)

        client.post_events = counted
        engine = SyncEngine(store, client, tz=config.tz, seed=1)   # a restart: it asks first
        assert await engine.upload_once() is True
        assert posted == [] and await engine.upload_once() is False
        assert await store.read(outbox.acked_seq) == pending[-1]["local_seq"]
        dead = {d["seq"] for d in await store.read(outbox.dead_letters)}
        assert dead == {e["local_seq"] for e in pending if e["seq"] in rejected}  # as from the lost answer
        # a new event after that is sent, not asked about: one upload, applied once
        await store.write(outbox.emit, "stock.adjusted", {"moves": [
            {"sku": "DRK-001", "qty": 1, "reason": "adjustment"}], "note": "found one"}, "2026-11-21T09:00:00.000Z")
        assert await engine.upload_once() is True and posted == [1]
        held = (await hub.sync("test-store", "events", params={"from_seq": "1"}))["results"]
        assert [r["seq"] for r in held] == list(range(1, pending[-1]["seq"] + 2))   # each seq once
    finally:
        await client.close()
        store.close()
        await hub.close()


@pytest.mark.sqlite_only("SQLite's writer queue; tests/test_hub_postgres.py has PostgreSQL's bulk pool")
async def test_an_order_goes_between_the_slices_of_a_large_upload(small_hub, monkeypatch):
    import hub.events as uploads

    hub = small_hub
    await hub.ok_upload("s4", [event("s4", 1, [("DRK-001", 10, "receipt")])])
    real, go, seen = uploads.process_batch, threading.Event(), []

    async def watched(db, store_id, events, now, catalog):
        seen.append((events[0]["seq"], len(events), await db.fetchval("SELECT count(*) FROM orders")))
        if len(seen) == 1:
            go.wait(5)                            # the first slice is running when the order comes
        return await real(db, store_id, events, now, catalog)

    monkeypatch.setattr(uploads, "process_batch", watched)
    store = hub.client.server.app[hub_key()].db.store  # SQLite's: its writer thread and queue
    batch = [event("s1", seq, [("DRK-001", 1, "receipt")]) for seq in range(1, 121)]
    upload = asyncio.create_task(hub.upload("s1", batch))
    await until(lambda: len(seen) == 1, "the first slice running")
    order = asyncio.create_task(hub.order("s4", [("DRK-001", 1)]))
    await until(lambda: store._queue.qsize() >= 1, "the order queued at the writer")
    go.set()
    status, data = await upload
    await order
    assert status == 200 and data["next_seq"] == 121 and len(data["results"]) == 120
    assert seen == [(1, 50, 0), (51, 50, 1), (101, 20, 1)]  # the order was written after the first slice


@pytest.mark.sqlite_only("SQLite's writer queue; test_hub_postgres.py has PostgreSQL's bulk turns")
async def test_a_store_s_few_events_go_ahead_of_a_large_batch_that_came_just_before(tmp_path, hub_database,
                                                                                   monkeypatch):
    """Uploads are worked on earliest due first, an upload due DUE_PER_EVENT seconds an event after it
    was read: a till's fresh events do not wait behind a reconnecting store's batch of 200."""
    import hub.events as uploads

    hub = await start_hub(tmp_path / "hub")
    try:
        for store in ("s1", "s2", "s3"):
            await hub.add_store(store)
        await hub.add_products(product("DRK-001", 200))
        real, go, seen = uploads.process_batch, threading.Event(), []

        async def watched(db, store_id, events, now, catalog):
            seen.append((store_id, events[0]["seq"]))
            if len(seen) == 1:
                go.wait(5)                        # the writer is busy while the others queue
            return await real(db, store_id, events, now, catalog)

        monkeypatch.setattr(uploads, "process_batch", watched)
        queue = hub.client.server.app[hub_key()].db.store._queue
        busy = asyncio.create_task(hub.upload("s3", [event("s3", 1, [("DRK-001", 1, "receipt")])]))
        await until(lambda: len(seen) == 1, "the writer busy")
        batch = asyncio.create_task(hub.upload("s1", [event("s1", seq, [("DRK-001", 1, "receipt")])
                                                      for seq in range(1, 201)]))
        await until(lambda: queue.qsize() == 1, "the batch queued")
        few = asyncio.create_task(hub.upload("s2", [event("s2", seq, [("DRK-001", 1, "receipt")])
                                                    for seq in (1, 2, 3)]))
        await until(lambda: queue.qsize() == 2, "the few events queued behind it")
        go.set()
        assert [status for status, _ in await asyncio.gather(busy, batch, few)] == [200, 200, 200]
        assert seen == [("s3", 1), ("s2", 1), ("s1", 1), ("s1", 51), ("s1", 101), ("s1", 151)]
    finally:
        await hub.close()


def test_the_gate_is_bounded_by_the_work_ahead_as_well_as_by_count():
    g = Admission(max_uploads=100, max_body_bytes=10_000, max_wait=1.0, clock=lambda: 0.0)
    g.per_upload = 0.5                          # as measured: half a second of the hub's work each
    g.admit("a", 1)
    g.admit("b", 1)                             # one second of work ahead of the next: enough
    with pytest.raises(HubError) as info:
        g.admit("c", 1)
    assert info.value.status == 503 and int(info.value.headers["Retry-After"]) >= 1


async def test_a_cloud_that_fails_the_question_still_gets_the_batch(config):
    """A 5xx to GET …/events must not hold the queue up for ever: the next round sends the batch."""
    from edge.store.db import open_store
    from sync.client import Answer, RetryLater
    from sync.engine import SyncEngine

    store = open_store(config.db_path)
    store.open()
    posted = []

    class Client:
        store_id = "test-store"

        async def get_held(self, from_seq, limit):
            raise RetryLater("cloud error 500", 500)

        async def post_events(self, envelopes):
            posted.append(len(envelopes))
            last = envelopes[-1]["seq"]
            return Answer(200, {"next_seq": last + 1, "results": [
                {"id": e["id"], "seq": e["seq"], "status": "applied"} for e in envelopes]})

    try:
        engine = SyncEngine(store, Client(), tz=config.tz, seed=1)
        with pytest.raises(RetryLater):
            await engine.upload_once()
        assert posted == [] and await engine.upload_once() is True and len(posted) == 1
    finally:
        store.close()
