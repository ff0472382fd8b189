"""The hub's /metrics (hub/metrics.py, issue 13 part 5) against a running hub app: stores connected
through real hint WebSockets, events counted by their answer, uploads in flight and refused, the
change lag and the feed's delivery time, under the hub's fake clock (ages in whole seconds)."""

from __future__ import annotations

import asyncio

from prometheus_client.parser import text_string_to_metric_families

from tests.test_backpressure import HeldUpload
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
        assert before['hub_uploads_refused_total{status="429"}'] == before['hub_uploads_refused_total{status="503"}'] == 0
        assert before["hub_uploads_in_flight"] == 0

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
