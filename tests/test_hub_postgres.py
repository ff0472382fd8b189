"""The hub on PostgreSQL with several processes on one database (issue 13 parts 1 and 2).

What SQLite's single writer gave for free and PostgreSQL must be made to give: change cursors in
commit order; a change committed through one hub process wakes the stores connected to another; a hub
process killed while another serves loses nothing; a lost hint is made up by the store's polling.
Real `store-edge hub` processes (tests/helpers_daemon.py) and the tests' PostgreSQL (tests/postgres.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import threading
import time
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from helpers_daemon import Hub, child_env, request, store_edge_command, wait_for

import hub.events as uploads
import hub.orders as hub_orders
from edge.services.app_keys import SYNC
from hub.app import build_hub_app
from hub.changes import add_change
from hub.db_postgres import BULK_POOL_SIZE, POOL_SIZE, BulkTurns, PostgresDatabase, migrations, shown_url
from hub.state import HUB
from sync.engine import Timing
from tests.conftest import CATALOG
from tests.test_hub import ADMIN as HUB_ADMIN
from tests.test_hub import Clock, event, product
from tests.test_hub import Hub as InProcessHub
from tests.test_sync_e2e import FAST, edge_linked, products, until

ADMIN = "hub-admin-" + "5" * 24
NOW = "2026-12-06T08:00:00.000Z"
PASSWORD = "never-in-a-log-9f1c"   # the test server trusts loopback: a password is sent, and must not be shown


def with_password(url: str) -> str:
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@", 1)


def receipts(first_seq: int, count: int, sku: str = "PG-001") -> list[dict]:
    return [{"id": f"ev-{seq:06d}", "store_id": "s1", "seq": seq, "type": "stock.received", "created_at": NOW,
             "payload": {"moves": [{"sku": sku, "qty": 1, "reason": "receipt"}]}}
            for seq in range(first_seq, first_seq + count)]


class Process(Hub):
    """One `store-edge hub` process of several on one database; its store-side calls."""

    def __init__(self, root: Path, url: str, *, url_file: bool):
        root.mkdir()
        super().__init__(root, ADMIN)
        if url_file:   # the way an operator keeps the password out of the process list
            (root / "db-url").write_text(url + "\n", encoding="utf-8")
            self.db_args = ("--db-url-file", str(root / "db-url"))
        else:
            self.db_args = ("--db-url", url)

    def start(self) -> None:
        super().start(*self.db_args)

    def store_call(self, method: str, what: str, token: str, body=None, timeout: float = 15.0):
        return request(self.port, method, f"/sync/v1/stores/s1/{what}", body,
                       headers={"Authorization": f"Bearer {token}"}, timeout=timeout)

    def upload(self, token: str, events: list[dict]) -> dict:
        status, data, _ = self.store_call("POST", "events", token, {"protocol": 1, "events": events})
        assert status == 200, (status, data)
        return data


async def in_process_hub(folder: Path, url: str) -> InProcessHub:
    """tests/test_hub.py's in-process hub (aiohttp's test server, a fake clock) on this database."""
    clock = Clock()
    client = TestClient(TestServer(build_hub_app(folder, admin_token=HUB_ADMIN, clock=clock, db_url=url)))
    await client.start_server()
    return InProcessHub(client, folder, clock)


@pytest.fixture
def two_hubs(tmp_path, postgres_url):
    url = with_password(postgres_url)
    a, b = Process(tmp_path / "a", url, url_file=True), Process(tmp_path / "b", url, url_file=False)
    try:
        a.start()
        b.start()
        token = a.admin_ok("POST", "/stores", {"store_id": "s1", "name": "一号店"})["token"]
        a.admin_ok("POST", "/products", {"products": [{"sku": "PG-001", "name": "矿泉水", "price_fen": 200}]})
        yield a, b, token
    finally:
        a.stop_quietly()
        b.stop_quietly()
    for hub in (a, b):   # what the hub wrote; the harness's own "--- start:" line shows its command line
        own = [line for line in hub.log_path.read_text(encoding="utf-8").splitlines() if not line.startswith("---")]
        assert own and not [line for line in own if PASSWORD in line], hub.tail()


async def test_an_order_created_through_one_process_wakes_the_store_connected_to_another(two_hubs):
    a, b, token = two_hubs
    b.upload(token, receipts(1, 5))           # the store is fresh, with stock, as far as any process knows
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{b.url}/sync/v1/stores/s1/hints",
                                      headers={"Authorization": f"Bearer {token}"}) as ws:
            hello = await ws.receive_json(timeout=10)
            assert hello["type"] == "hello"
            orders = [await asyncio.to_thread(a.admin_ok, "POST", "/stores/s1/orders",
                                              {"kind": "pickup", "lines": [{"sku": "PG-001", "qty": 1}]})
                      for _ in range(3)]
            hint = await ws.receive_json(timeout=10)          # through B, which created nothing
            while hint["cursor"] < orders[-1]["cursor"]:        # coalesced: at most one per burst, maybe fewer
                hint = await ws.receive_json(timeout=10)
            assert hint == {"type": "changes", "cursor": orders[-1]["cursor"]}
    status, page, _ = b.store_call("GET", f"changes?after={hello['cursor']}", token)
    assert status == 200
    assert [c["payload"]["order_id"] for c in page["changes"] if c["type"] == "order.created"] == \
        [o["order_id"] for o in orders]


async def test_a_change_committed_late_is_not_skipped_by_a_cursor(postgres_url):
    """The first transaction takes cursor 1, the second cursor 2 and would commit first: a store that
    pulled then would move past 2 and never see 1. The advisory lock makes the second wait."""
    db = PostgresDatabase(postgres_url)
    await db.open()
    try:
        took, release = asyncio.Event(), asyncio.Event()

        async def first(conn):
            cursor = (await add_change(conn, None, "x.first", {}, NOW))[0]
            took.set()
            await release.wait()                # committed only when the test says so
            return cursor

        async def second(conn):
            return (await add_change(conn, None, "x.second", {}, NOW))[0]

        async def waiting_for_a_lock(conn):
            return await conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")

        async def feed(conn, after):
            return [r[0] for r in await conn.fetch("SELECT cursor FROM changes WHERE cursor > $1 ORDER BY cursor",
                                                   after)]

        late = asyncio.create_task(db.write(first))
        await asyncio.wait_for(took.wait(), 10)
        early = asyncio.create_task(db.write(second))
        await until(lambda: early.done() or db.read(waiting_for_a_lock), what="the second change committed or waiting")
        seen = await db.read(feed, 0)           # a store pulls now, between the two commits
        release.set()
        c1, c2 = await late, await early
        assert c1 < c2
        seen += await db.read(feed, max(seen, default=0))   # and again from where its cursor got to
        assert seen == [c1, c2]
    finally:
        await db.close()


def test_a_hub_process_killed_while_the_other_serves_loses_nothing(two_hubs):
    a, b, token = two_hubs
    batch, batches = 25, 24
    order_ids = []
    for n in range(batches // 2):               # the store and the chain both on A
        a.upload(token, receipts(1 + n * batch, batch))
        if n % 3 == 0:
            order_ids.append(a.admin_ok("POST", "/stores/s1/orders", {"kind": "pickup", "lines": [
                {"sku": "PG-001", "qty": 1}]})["order_id"])
    in_flight = batches // 2
    sent = threading.Thread(target=lambda: _try(a.upload, token, receipts(1 + in_flight * batch, batch)))
    sent.start()
    a.proc.kill()                               # SIGKILL, mid-upload or just after it
    a.proc.wait(30)
    sent.join(30)
    # the store and the chain go on through B; the store sends again what had no answer
    for n in range(in_flight, batches):
        results = b.upload(token, receipts(1 + n * batch, batch))["results"]
        assert {r["status"] for r in results} <= {"applied", "duplicate"}
        if n % 3 == 0:
            order_ids.append(b.admin_ok("POST", "/stores/s1/orders", {"kind": "pickup", "lines": [
                {"sku": "PG-001", "qty": 1}]})["order_id"])
    store = b.admin_ok("GET", "/stores/s1")
    total = batch * batches
    assert store["next_seq"] == total + 1 and store["events"] == {"applied": total, "rejected": 0}
    assert [(r["sku"], r["on_hand"]) for r in store["balances"]] == [("PG-001", total)]
    held = []
    for from_seq in range(1, total + 1, 500):
        status, page, _ = b.store_call("GET", f"events?from_seq={from_seq}&limit=500", token)
        held += [(r["seq"], r["id"], r["status"]) for r in page["results"]]
    assert held == [(seq, f"ev-{seq:06d}", "applied") for seq in range(1, total + 1)]   # each seq once
    listed = b.admin_ok("GET", "/orders?store_id=s1")["orders"]
    assert sorted(o["order_id"] for o in listed) == sorted(order_ids)
    status, feed, _ = b.store_call("GET", "changes?after=0&limit=1000", token)
    assert sorted(c["payload"]["order_id"] for c in feed["changes"] if c["type"] == "order.created") == \
        sorted(order_ids)


def _try(fn, *args):
    try:
        fn(*args)
    except (OSError, AssertionError):      # the process died under it: no answer, as a store sees it
        pass


async def test_a_lost_notify_is_made_up_by_the_stores_polling(tmp_path, postgres_url):
    """Hub A and hub B in one database, the store's real sync engine connected to B. While B's LISTEN
    works an order through A arrives by B's hint; with B deaf to NOTIFY, by the store's poll."""
    hub_a = TestServer(build_hub_app(tmp_path / "a", admin_token=ADMIN, db_url=postgres_url))
    hub_b = TestServer(build_hub_app(tmp_path / "b", admin_token=ADMIN, db_url=postgres_url))
    await hub_a.start_server()
    await hub_b.start_server()
    session = aiohttp.ClientSession()

    async def admin(server, method, path, body=None):
        async with session.request(method, str(server.make_url("/admin/v1" + path)), json=body,
                                   headers={"Authorization": f"Bearer {ADMIN}"}) as resp:
            data = await resp.json()
            assert resp.status in (200, 201), data
            return data

    try:
        token = (await admin(hub_a, "POST", "/stores", {"store_id": "test-store", "name": "测试门店"}))["token"]
        await admin(hub_a, "POST", "/products", {"products": products()})
        polling = Timing(**{**FAST.__dict__, "poll_with_hints": 3.0})
        async with edge_linked(tmp_path, str(hub_b.make_url("")).rstrip("/"), token, polling) as (edge, app, _):
            engine = app[SYNC]

            async def queue_empty():
                return (await edge.get("/sync/status"))[1]["queue"]["depth"] == 0

            await until(queue_empty, what="opening stock uploaded")
            await until(lambda: engine.link.hints_connected, what="hint socket to B")

            async def arrival(order_id):
                started = asyncio.get_running_loop().time()

                async def arrived():
                    return (await edge.get(f"/orders/{order_id}"))[0] == 200
                await until(arrived, timeout=10, what=f"order {order_id} at the store")
                return asyncio.get_running_loop().time() - started

            sku = next(iter(CATALOG))
            hinted = await admin(hub_a, "POST", "/stores/test-store/orders",
                                 {"kind": "pickup", "lines": [{"sku": sku, "qty": 1}]})
            assert await arrival(hinted["order_id"]) < 1.5          # B's hint, well before the 3 s poll
            b_db = hub_b.app[HUB].db
            b_db.listener.cancel()                                   # B hears no NOTIFY any more: every hint lost
            await asyncio.gather(b_db.listener, return_exceptions=True)
            polled = await admin(hub_a, "POST", "/stores/test-store/orders",
                                 {"kind": "pickup", "lines": [{"sku": sku, "qty": 1}]})
            took = await arrival(polled["order_id"])
            assert engine.link.hints_connected                      # the socket stayed up: it was the poll
            assert 0.1 < took < 3.0 + 2.0
    finally:
        await session.close()
        await hub_b.close()
        await hub_a.close()


# -- configuration and migrations ------------------------------------------------------------------

def test_the_password_of_a_url_is_never_shown():
    assert shown_url("postgresql://hub:s3cret@db.internal:5432/hub") == "postgresql://hub:***@db.internal:5432/hub"
    assert shown_url("postgresql://hub@127.0.0.1/hub") == "postgresql://hub@127.0.0.1/hub"


async def test_migrations_apply_once_in_order_and_a_newer_database_is_refused(postgres_url, tmp_path):
    from edge.core.sqlite import SchemaTooNew

    files = migrations()
    assert [n for n, _, _ in files] == sorted(n for n, _, _ in files) and files[0][1] == "001_initial.sql"
    for _ in range(2):                          # a restart applies nothing again
        db = PostgresDatabase(postgres_url)
        await db.open()
        await db.close()
    conn = await asyncpg.connect(postgres_url)
    try:
        assert [r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations ORDER BY version")] == \
            [name for _, name, _ in files]
        await conn.execute("INSERT INTO schema_migrations (version, name) VALUES (999, '999_from_the_future.sql')")
    finally:
        await conn.close()
    with pytest.raises(SchemaTooNew, match="999_from_the_future"):
        await PostgresDatabase(postgres_url).open()
    bad = tmp_path / "sql"
    bad.mkdir()
    (bad / "2_no_padding.sql").write_text("SELECT 1")
    with pytest.raises(ValueError, match="NNN_name.sql"):
        migrations(bad)


async def test_the_bulk_pool_s_turns_go_earliest_due_first_then_in_the_order_taken():
    """SQLite's bulk lane's order (test_group_commit.py) on PostgreSQL's bulk pool."""
    turns = BulkTurns(1)
    await turns.take(None)                          # the one connection is taken: the rest wait
    now, got = time.monotonic(), []

    async def wait(name, place):
        await turns.take(place)
        got.append(name)

    waiting = [asyncio.create_task(wait(name, place)) for name, place in [
        ("late", turns.place(due=now + 10)), ("soon", turns.place(due=now + 5)),
        ("soon too", turns.place(due=now + 5)), ("unplaced", None)]]
    await until(lambda: len(turns.waiting) == 4)
    for expected in (["unplaced"], ["unplaced", "soon"], ["unplaced", "soon", "soon too"]):
        turns.give()                                # one connection back: the earliest due takes it
        await until(lambda: len(got) == len(expected))
        assert got == expected
    turns.give()
    await asyncio.gather(*waiting)
    assert got[-1] == "late" and turns.free == 0


def test_the_hub_refuses_a_url_that_is_not_postgresql(tmp_path):
    with pytest.raises(ValueError, match="postgresql://"):
        build_hub_app(tmp_path, admin_token=ADMIN, db_url="mysql://x@y/z")


def test_two_processes_starting_together_make_one_schema_and_one_signing_key(tmp_path, postgres_url):
    a, b = Process(tmp_path / "a", postgres_url, url_file=False), Process(tmp_path / "b", postgres_url,
                                                                          url_file=False)
    try:
        for hub in (a, b):   # both started before either is ready: migrations and the first key race
            hub.spawn(["hub", "--data", str(hub.data), "--port", str(hub.port), "--admin-token-file",
                       str(hub.token_file), *hub.db_args])
        for hub in (a, b):
            hub.wait_ready(lambda hub=hub: hub.admin("GET", "/stores")[0] == 200)
        assert len(a.admin_ok("GET", "/keys")["keys"]) == 1 == len(b.admin_ok("GET", "/keys")["keys"])
        wait_for(lambda: json.loads((a.data / "hub.highwater").read_text())["epoch"] ==
                 json.loads((b.data / "hub.highwater").read_text())["epoch"], 10, "one epoch")
    finally:
        a.stop_quietly()
        b.stop_quietly()


async def test_an_order_goes_through_while_uploads_hold_every_bulk_connection(tmp_path, postgres_url, monkeypatch):
    """Admin writes are never queued behind uploads: with every connection of the bulk pool inside an
    upload's slice, an order still commits (SQLite's counterpart: test_backpressure.py, its writer's lane)."""
    hub = await in_process_hub(tmp_path / "hub", postgres_url)
    try:
        stores = [f"s{n}" for n in range(BULK_POOL_SIZE + 1)]
        for store in stores:
            await hub.add_store(store)
        await hub.add_products(product("DRK-001", 200))
        await hub.ok_upload("s0", [event("s0", 1, [("DRK-001", 10, "receipt")])])
        real, release, held = uploads.process_batch, asyncio.Event(), []

        async def holding(db, store_id, events, now, catalog):
            held.append(store_id)
            await release.wait()                  # the slice's transaction stays open, its connection taken
            return await real(db, store_id, events, now, catalog)

        monkeypatch.setattr(uploads, "process_batch", holding)
        sent = [asyncio.create_task(hub.upload(store, [event(store, 1, [("DRK-001", 1, "receipt")])]))
                for store in stores[1:]]
        await until(lambda: len(held) == BULK_POOL_SIZE, what="every bulk connection in a slice")
        order = await asyncio.wait_for(hub.order("s0", [("DRK-001", 1)]), 10)
        assert order["state"] == "created" and len(held) == BULK_POOL_SIZE   # no upload finished meanwhile
        release.set()
        assert [status for status, _ in await asyncio.gather(*sent)] == [200] * BULK_POOL_SIZE
    finally:
        await hub.close()


async def test_an_order_goes_through_while_reads_hold_every_read_connection(tmp_path, postgres_url):
    """Every upload reads its token first: in a storm the reads keep the read pool busy, and an order
    must not wait behind them (the write pool is its own)."""
    hub = await in_process_hub(tmp_path / "hub", postgres_url)
    try:
        await hub.add_store("s0")
        await hub.add_products(product("DRK-001", 200))
        await hub.ok_upload("s0", [event("s0", 1, [("DRK-001", 10, "receipt")])])
        db = hub.client.server.app[HUB].db
        release, held = asyncio.Event(), []

        async def holding(conn):
            held.append(await conn.fetchval("SELECT 1"))
            await release.wait()                  # the read's transaction stays open, its connection taken

        reads = [asyncio.create_task(db.read(holding)) for _ in range(POOL_SIZE)]
        try:
            await until(lambda: len(held) == POOL_SIZE, what="every read connection held")
            order = await asyncio.wait_for(hub.order("s0", [("DRK-001", 1)]), 10)
            assert order["state"] == "created" and not any(read.done() for read in reads)
        finally:
            release.set()
            await asyncio.gather(*reads)
    finally:
        await hub.close()


async def test_one_stores_batch_sent_to_two_processes_at_once_applies_once(tmp_path, postgres_url, monkeypatch):
    """A store's slices apply one at a time across processes too: the second waits for the store's
    row, then finds every event applied (duplicate), where it would otherwise have read the same
    next_seq and failed on the taken seq."""
    hubs = [await in_process_hub(tmp_path / name, postgres_url) for name in ("a", "b")]
    a, b = hubs
    try:
        await a.add_store("s1")
        b.tokens["s1"] = a.tokens["s1"]
        await a.add_products(product("DRK-001", 200))
        real, inside, release = uploads.process_batch, asyncio.Event(), asyncio.Event()

        async def commits_when_told(db, store_id, events, now, catalog):
            done = await real(db, store_id, events, now, catalog)
            if not inside.is_set():             # the first slice holds its transaction (and the row) open
                inside.set()
                await release.wait()
            return done

        async def waiting_for_a_row(conn):
            return await conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype IN ('transactionid', 'tuple') "
                                       "AND NOT granted")

        monkeypatch.setattr(uploads, "process_batch", commits_when_told)
        batch = [event("s1", seq, [("DRK-001", 1, "receipt")]) for seq in range(1, 11)]
        first = asyncio.create_task(a.upload("s1", batch))
        await asyncio.wait_for(inside.wait(), 10)
        second = asyncio.create_task(b.upload("s1", batch))
        await until(lambda: second.done() or a.client.server.app[HUB].db.read(waiting_for_a_row),
                    what="the second upload answered or waiting for the store's row")
        release.set()
        (status_a, data_a), (status_b, data_b) = await first, await second
        assert (status_a, status_b) == (200, 200), (data_a, data_b)
        assert {r["status"] for r in data_a["results"]} == {"applied"}
        assert {r["status"] for r in data_b["results"]} == {"duplicate"} and data_b["next_seq"] == 11
        store = await a.admin("GET", "/stores/s1")
        assert store["events"] == {"applied": 10, "rejected": 0} and store["balances"][0]["on_hand"] == 10
    finally:
        for hub in hubs:
            await hub.close()


async def test_orders_created_at_once_for_one_store_get_their_own_numbers_and_never_oversell(
        tmp_path, postgres_url, monkeypatch):
    """Transactions run side by side on PostgreSQL: a store's new orders take turns (as on SQLite's one
    writer), so two never read the same next number or the same stock left. Each order here lingers
    after reading its number, long enough for another to read the same one if it were let in."""
    hub = await in_process_hub(tmp_path / "hub", postgres_url)
    real, inside, crowded = hub_orders.order_number, [], asyncio.Event()

    async def lingering(db, store_id, day):
        number = await real(db, store_id, day)
        inside.append(number)
        if len(inside) - len(done) > 1:
            crowded.set()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(crowded.wait(), 0.3)
        done.append(number)
        return number

    done: list[str] = []
    try:
        await hub.add_store("s1")
        await hub.add_products(product("DRK-001", 200))
        await hub.ok_upload("s1", [event("s1", 1, [("DRK-001", 2, "receipt")])])
        monkeypatch.setattr(hub_orders, "order_number", lingering)
        answers = await asyncio.gather(*(hub.call("POST", "/admin/v1/stores/s1/orders", {
            "kind": "pickup", "lines": [{"sku": "DRK-001", "qty": 1}]}) for _ in range(3)))
        assert not crowded.is_set()                       # never two orders of the store in flight
        assert sorted(status for status, _ in answers) == [201, 201, 409], answers
        assert sorted(data["number"] for status, data in answers if status == 201) == ["A001", "A002"]
    finally:
        await hub.close()


async def test_a_cancel_and_a_refund_of_one_order_at_once_close_it_once(tmp_path, postgres_url, monkeypatch):
    """The second waits for the order's row, then finds it closed (409), as on SQLite's one writer; each
    lingers after reading the order, long enough for the other to read it open if it were let in."""
    hub = await in_process_hub(tmp_path / "hub", postgres_url)
    real, reading, crowded = hub_orders.get_order, [], asyncio.Event()

    async def lingering(db, order_id):
        order = await real(db, order_id)
        reading.append(order_id)
        if len(reading) > 1:
            crowded.set()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(crowded.wait(), 0.3)
        reading.remove(order_id)
        return order

    try:
        await hub.add_store("s1")
        await hub.add_products(product("DRK-001", 200))
        await hub.ok_upload("s1", [event("s1", 1, [("DRK-001", 2, "receipt")])])
        order = await hub.order("s1", [("DRK-001", 1)])
        monkeypatch.setattr(hub_orders, "get_order", lingering)
        answers = await asyncio.gather(*(hub.call("POST", f"/admin/v1/orders/{order['order_id']}/{how}",
                                                  {"reason": "顾客取消"}) for how in ("cancel", "refund")))
        assert not crowded.is_set()
        assert sorted(status for status, _ in answers) == [200, 409], answers
        feed = (await hub.sync("s1", "changes"))["changes"]
        assert len([c for c in feed if c["type"] in ("order.cancelled", "order.refunded")]) == 1
    finally:
        await hub.close()


def test_a_database_url_file_that_is_empty_unreadable_or_not_postgresql_stops_the_start(tmp_path):
    url_file = tmp_path / "db-url"
    for content, why in [("", "is empty"), ("sqlite:///x.db\n", "must start with postgresql://"),
                         (None, "cannot read the database URL file")]:
        if content is None:
            url_file.unlink()
        else:
            url_file.write_text(content, encoding="utf-8")
        done = subprocess.run([*store_edge_command(), "hub", "--data", str(tmp_path / "hub"), "--port", "0",
                               "--db-url-file", str(url_file)], capture_output=True, text=True, env=child_env(),
                              timeout=60)
        assert done.returncode == 2 and why in done.stderr, done.stderr
    both = subprocess.run([*store_edge_command(), "hub", "--data", "x", "--db-url", "postgresql://a@b/c",
                           "--db-url-file", str(url_file)], capture_output=True, text=True, env=child_env(), timeout=60)
    assert both.returncode == 2 and "not allowed with argument" in both.stderr   # one or the other
