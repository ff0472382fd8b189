"""The hub's /metrics and /health (hub/metrics.py, hub/health.py; issue 13 part 5) against a running
hub app: stores connected through real hint WebSockets, events counted by their answer, uploads in
flight and refused, the change lag and the feed's delivery time under the hub's fake clock (ages in
whole seconds), and the lag's query on SQLite and on the tests' PostgreSQL."""

from __future__ import annotations

import asyncio
import math
import sqlite3
from datetime import datetime

import asyncpg
from prometheus_client.parser import text_string_to_metric_families

from hub.db import on_sqlite
from hub.metrics import oldest_unpulled
from tests.test_backpressure import HeldUpload, hub_key
from tests.test_hub import ADMIN, database, event, product, start_hub  # noqa: F401 (database: autouse, both stores)


async def scrape(hub) -> dict[str, float]:
    """Every sample of /metrics as {'name{label="value"}': value}."""
    resp = await hub.client.get("/metrics", headers={"Authorization": f"Bearer {ADMIN}"})
    assert resp.status == 200
    samples = {}
    for family in text_string_to_metric_families(await resp.text()):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
    return samples


async def until_metric(hub, name: str, value: float, limit: float = 5.0) -> dict[str, float]:
    """Scrape until `name` reads `value` (the hub notices a closed socket when its handler ends)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while (samples := await scrape(hub))[name] != value:
        assert loop.time() < deadline, f"{name} stayed {samples[name]}, never {value}"
        await asyncio.sleep(0.01)
    return samples


async def hints(hub, store: str):
    ws = await hub.client.ws_connect(f"/sync/v1/stores/{store}/hints",
                                     headers={"Authorization": f"Bearer {hub.tokens[store]}"})
    assert (await ws.receive_json(timeout=5))["type"] == "hello"  # the socket is registered before its hello
    return ws


async def new_hub(tmp_path, *stores: str):
    hub = await start_hub(tmp_path / "hub")
    for store in stores:
        await hub.add_store(store)
    await hub.add_products(product("DRK-001", 200), product("SNK-001", 750))
    return hub


async def test_stores_connected_events_by_answer_and_uploads_in_flight_and_refused(tmp_path):
    hub = await new_hub(tmp_path, "s1", "s2", "s3")
    try:
        before = await scrape(hub)
        assert before["hub_stores_connected"] == 0 and before["hub_hint_sockets"] == 0
        assert {before[f'hub_events_total{{status="{s}"}}'] for s in ("applied", "duplicate", "rejected")} == {0}
        assert [before[f'hub_uploads_refused_total{{status="{s}"}}'] for s in ("429", "503")] == [0, 0]
        assert before["hub_uploads_in_flight"] == 0
        assert before["process_resident_memory_bytes"] > 0 and before["process_open_fds"] > 0

        sockets = [await hints(hub, "s1"), await hints(hub, "s1"), await hints(hub, "s2")]
        now = await scrape(hub)
        assert (now["hub_stores_connected"], now["hub_hint_sockets"]) == (2, 3)

        first = [event("s1", seq, [("DRK-001", 1, "receipt")]) for seq in (1, 2, 3)]
        await hub.ok_upload("s1", first)
        await hub.ok_upload("s1", first)                                         # answered duplicate
        rejected = await hub.ok_upload("s1", [event("s1", 4, [("NOPE-1", 1, "receipt")])])
        assert rejected["results"][0]["status"] == "rejected"
        # 120 events: three slices, each counted when it commits
        await hub.ok_upload("s2", [event("s2", seq, [("SNK-001", 1, "receipt")]) for seq in range(1, 121)])
        now = await scrape(hub)
        assert now['hub_events_total{status="applied"}'] == 123
        assert now['hub_events_total{status="duplicate"}'] == 3
        assert now['hub_events_total{status="rejected"}'] == 1

        # an upload in progress, and a second one of the same store refused with Retry-After
        held = HeldUpload(hub, "s3", [event("s3", 1, [("DRK-001", 2, "receipt")])])
        now = await until_metric(hub, "hub_uploads_in_flight", 1)
        code, data = await hub.upload("s3", [event("s3", 1, [("DRK-001", 2, "receipt")])])
        assert code == 429 and data["error"] == "rate_limited"
        now = await scrape(hub)
        assert now['hub_uploads_refused_total{status="429"}'] == 1
        assert (await held.result())[0] == 200
        now = await scrape(hub)
        assert now["hub_uploads_in_flight"] == 0 and now['hub_events_total{status="applied"}'] == 124

        await sockets[2].close()                                                 # s2's only socket
        now = await until_metric(hub, "hub_stores_connected", 1)
        assert now["hub_hint_sockets"] == 2
        for ws in sockets[:2]:
            await ws.close()
        await until_metric(hub, "hub_hint_sockets", 0)
    finally:
        await hub.close()


async def test_change_lag_is_the_age_of_the_oldest_change_a_connected_store_has_not_pulled(tmp_path):
    hub = await new_hub(tmp_path, "s1", "s2", "s3")
    lag = "hub_change_lag_seconds"
    try:
        for store in ("s1", "s2"):
            await hub.ok_upload(store, [event(store, 1, [("DRK-001", 5, "receipt")])])
        s1, s2 = await hints(hub, "s1"), await hints(hub, "s2")
        positions = {}
        for store in ("s1", "s2"):
            positions[store] = (await hub.sync(store, "changes"))["next_cursor"]   # the whole feed, from 0
        now = await scrape(hub)
        assert now[lag] == 0
        assert now["hub_change_delivery_seconds_count"] == 0   # a pull from the feed's start is not delivery

        async def pull(store: str) -> dict:
            page = await hub.sync(store, "changes", {"after": positions[store]})
            positions[store] = page["next_cursor"]
            return page

        hub.clock.advance(10)
        await hub.add_products(product("NEW-001"))       # for every store
        hub.clock.advance(7)
        assert (await scrape(hub))[lag] == 7
        assert len((await pull("s1"))["changes"]) == 1    # s2 still has it to come
        assert (await scrape(hub))[lag] == 7

        await hub.order("s1", [("DRK-001", 1)])          # s1's own change
        hub.clock.advance(3)
        assert (await scrape(hub))[lag] == 10             # s2's everyone-change, now 10 s old, is the oldest
        await pull("s2")
        assert (await scrape(hub))[lag] == 3              # s1's order
        await pull("s1")
        now = await scrape(hub)
        assert now[lag] == 0
        # delivered: the product to s1 after 7 s and to s2 after 10 s, the order to s1 after 3 s
        assert now["hub_change_delivery_seconds_count"] == 3 and now["hub_change_delivery_seconds_sum"] == 20
        assert now['hub_change_delivery_seconds_bucket{le="2.5"}'] == 0
        assert now['hub_change_delivery_seconds_bucket{le="5.0"}'] == 1
        assert now['hub_change_delivery_seconds_bucket{le="10.0"}'] == 3

        # s3 never connected and never pulled: a change for it is no connected store's lag
        await hub.ok_upload("s3", [event("s3", 1, [("DRK-001", 5, "receipt")])])
        await hub.order("s3", [("DRK-001", 1)])
        hub.clock.advance(30)
        assert (await scrape(hub))[lag] == 0
        # a store that goes away with a change not pulled leaves the figure with its socket
        await hub.order("s2", [("DRK-001", 1)])
        hub.clock.advance(4)
        assert (await scrape(hub))[lag] == 4
        await s2.close()
        now = await until_metric(hub, "hub_stores_connected", 1)
        assert now[lag] == 0
        await s1.close()
    finally:
        await hub.close()


async def test_health_answers_without_a_token_and_503_when_the_database_is_gone(tmp_path, caplog):
    hub = await new_hub(tmp_path, "s1")
    try:
        resp = await hub.client.get("/health")
        assert resp.status == 200 and await resp.json() == {"status": "ok"}
        assert (await scrape(hub))["hub_database_up"] == 1
        s1 = await hints(hub, "s1")
        await hub.sync("s1", "changes")           # a position: the scrape reads the lag from the database
        # the database closes under the running app (a lost PostgreSQL looks the same to the check)
        state = hub.client.server.app[hub_key()]
        await state.db.close()
        # a scrape alone sees it (nginx's free version never calls /health), and says it once
        assert (await scrape(hub))["hub_database_up"] == 0
        for _ in range(2):
            resp = await hub.client.get("/health")
            body = await resp.json()
            assert resp.status == 503 and resp.headers["Retry-After"] == "5", body
            assert body["error"] == "unavailable" and "epoch" not in body
        assert [r.getMessage() for r in caplog.records if r.name == "hub.health"] == ["database unreachable"]
        # /metrics still answers (Prometheus must see the process), the lag unknown
        now = await scrape(hub)
        assert now["hub_database_up"] == 0 and math.isnan(now["hub_change_lag_seconds"])
        assert now["hub_stores_connected"] == 1
        await s1.close()
    finally:
        await hub.close()


CHANGES = [  # cursor, store (None: every store), created_at
    (1, None, "2026-11-21T08:00:00.000Z"), (2, "s1", "2026-11-21T08:00:05.000Z"),
    (3, None, "2026-11-21T08:00:10.000Z"), (4, "s2", "2026-11-21T08:00:12.000Z"),
    (5, "s1", "2026-11-21T08:00:20.000Z"),
]
CASES = [  # positions -> the oldest change above any of them
    ([], None),
    ([("s1", 5), ("s2", 5)], None),
    ([("s1", 5), ("s2", 3)], "2026-11-21T08:00:12.000Z"),      # s2's own change 4
    ([("s1", 1), ("s2", 5)], "2026-11-21T08:00:05.000Z"),      # s1's own change 2
    ([("s1", 4), ("s2", 2)], "2026-11-21T08:00:10.000Z"),      # everyone's change 3, for s2
    ([("s9", 0), ("s1", 5)], "2026-11-21T08:00:00.000Z"),      # a store with nothing of its own
    ([(f"x{i}", 5) for i in range(1200)] + [("s1", 4)], "2026-11-21T08:00:20.000Z"),  # past one query's stores
]


def expected(text):
    return None if text is None else datetime.fromisoformat(text)


def test_the_oldest_unpulled_change_on_sqlite(tmp_path):
    conn = sqlite3.connect(tmp_path / "feed.db")
    conn.execute("CREATE TABLE changes (cursor INTEGER PRIMARY KEY, store_id TEXT, created_at TEXT NOT NULL)")
    conn.executemany("INSERT INTO changes VALUES (?, ?, ?)", CHANGES)
    for positions, oldest in CASES:
        assert on_sqlite(oldest_unpulled)(conn, positions) == expected(oldest), positions
    conn.close()


async def test_the_oldest_unpulled_change_on_postgresql(postgres_url):
    """The same statements through asyncpg (whose connection is a hub.db.Conn), created_at as PostgreSQL
    keeps a time (timestamptz) and as text."""
    for kind in ("timestamptz", "text"):
        conn = await asyncpg.connect(postgres_url)  # a connection per table: asyncpg caches statements' types
        try:
            await conn.execute(f"DROP TABLE IF EXISTS changes; CREATE TABLE changes (cursor bigint PRIMARY KEY, "
                               f"store_id text, created_at {kind} NOT NULL)")
            await conn.executemany("INSERT INTO changes VALUES ($1, $2, $3)",
                                   [(c, s, datetime.fromisoformat(t) if kind == "timestamptz" else t)
                                    for c, s, t in CHANGES])
            for positions, oldest in CASES:
                assert await oldest_unpulled(conn, positions) == expected(oldest), (kind, positions)
        finally:
            await conn.close()
