"""Edge and reference hub together, in one process over loopback HTTP: the real sync engine, the
real hub, its hint WebSocket. Waits are on observable state with a deadline, never fixed sleeps."""

import asyncio
import contextlib

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from edge.app import build_app
from edge.core import config as config_mod
from edge.services.app_keys import STORE, SYNC
from hub.app import build_hub_app
from hub.state import HUB
from sync.engine import Timing
from tests.conftest import CATALOG, OPENING, Api, ledger_mismatches, seed

ADMIN = "admin-secret"
FAST = Timing(backoff_base=0.02, backoff_cap=0.2, person_retry=0.2, poll_with_hints=5, poll_without_hints=0.2)


async def until(check, timeout=10.0, what="condition"):
    """Await an async or plain predicate, polling the observable state, with a deadline."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class Hub:
    def __init__(self, server: TestServer, session: ClientSession):
        self.server, self.session = server, session
        self.url = str(server.make_url("")).rstrip("/")

    async def admin(self, method, path, body=None, expect=(200, 201)):
        async with self.session.request(method, self.url + "/admin/v1" + path, json=body,
                                        headers={"Authorization": f"Bearer {ADMIN}"}) as resp:
            data = await resp.json()
            assert resp.status in expect, (resp.status, data)
            return data


def products(skus=None):
    return [{"sku": sku, "name": spec[0], "price_fen": spec[1], "unit": spec[2], "category": spec[3],
             "low_stock": spec[4], "barcodes": spec[5]} for sku, spec in CATALOG.items() if not skus or sku in skus]


@pytest.fixture
async def linked(tmp_path, hub_db):
    """A hub with the chain catalog (less HOM-001, which only this store sells), and an edge linked to it;
    the hub on SQLite and on PostgreSQL (conftest's hub_db)."""
    hub_server = TestServer(build_hub_app(tmp_path / "hub", admin_token=ADMIN, db_url=hub_db))
    await hub_server.start_server()
    session = ClientSession()
    hub = Hub(hub_server, session)
    token = (await hub.admin("POST", "/stores", {"store_id": "test-store", "name": "测试门店"}))["token"]
    await hub.admin("POST", "/products", {"products": products([s for s in CATALOG if s != "HOM-001"])})
    try:
        async with edge_linked(tmp_path, hub.url, token) as (edge, app, config):
            yield hub, edge, app, config
    finally:
        await session.close()
        await hub_server.close()
    assert ledger_mismatches(config.db_path) == []


@contextlib.asynccontextmanager
async def edge_linked(folder, hub_url: str, token: str, timing: Timing = FAST, chain: str | None = None):
    """The store's daemon app (seeded, in `folder`) syncing with the hub at hub_url as test-store (of `chain`,
    for member codes, when given)."""
    (folder / "cloud-token").write_text(token)
    (folder / "config.toml").write_text(
        '[store]\nid = "test-store"\nname = "测试门店"\ndata_dir = "var"\n'
        + (f'chain = "{chain}"\n' if chain else "") +
        f'[cloud]\nurl = "{hub_url}"\ntoken = {{ file = "cloud-token" }}\nreconcile_minutes = 0\n',
        encoding="utf-8")
    config = config_mod.load(folder / "config.toml")
    seed(config.db_path)
    app = build_app(config)
    edge_server = TestServer(app)
    await edge_server.start_server()
    app[SYNC].timing.__dict__.update(timing.__dict__)
    client_session = ClientSession(base_url=str(edge_server.make_url("")))
    try:
        yield Api(client_session), app, config
    finally:
        await client_session.close()
        await edge_server.close()


async def queue_empty(edge):
    status, body = await edge.get("/sync/status")
    return body["queue"]["depth"] == 0


async def test_sales_reach_the_hub_and_balances_agree(linked):
    hub, edge, app, config = linked
    await until(lambda: queue_empty(edge), what="opening stock uploaded")
    await edge.ok("/sales", {"lines": [{"sku": "DRK-001", "qty": 2}], "payments": [{"method": "wechat",
                                                                                  "amount_fen": 400}]})
    await until(lambda: queue_empty(edge), what="sale uploaded")
    store = await hub.admin("GET", "/stores/test-store")
    balances = {row["sku"]: (row["on_hand"], row["reserved"]) for row in store["balances"]}
    assert balances["DRK-001"] == (OPENING["DRK-001"] - 2, 0)
    status, body = await edge.get("/sync/status")
    assert body["link"]["state"] == "online" and body["link"]["last_success_at"]
    assert body["queue"]["dead_letters"] == 0
    async with edge.client.get("/") as resp:
        assert "云端：已连接" in await resp.text()


async def test_an_online_order_arrives_within_a_second_and_a_cancel_releases_it(linked):
    hub, edge, app, config = linked
    await until(lambda: queue_empty(edge), what="opening stock uploaded")
    await until(lambda: app[SYNC].link.hints_connected, what="hint socket")
    started = asyncio.get_running_loop().time()
    order = await hub.admin("POST", "/stores/test-store/orders", {
        "kind": "pickup", "lines": [{"sku": "SNK-001", "qty": 2}], "customer_note": "到店自提"})

    async def arrived():
        status, body = await edge.get(f"/orders/{order['order_id']}")
        return body if status == 200 else None
    stored = await until(arrived, timeout=5, what="order at the edge")
    assert asyncio.get_running_loop().time() - started < 1.0
    assert stored["number"] == order["number"] and stored["state"] == "received" and not stored["short"]
    status, stock = await edge.get("/stock/SNK-001")
    assert stock["reserved"] == 2

    await edge.ok(f"/orders/{order['order_id']}/state", {"to": "accepted", "operator": "小李"})
    await hub.admin("POST", f"/orders/{order['order_id']}/cancel", {"reason": "顾客取消"})

    async def cancelled():
        return (await edge.get(f"/orders/{order['order_id']}"))[1]["state"] == "cancelled"
    await until(cancelled, what="cancel at the edge")
    assert (await edge.get("/stock/SNK-001"))[1]["reserved"] == 0
    await until(lambda: queue_empty(edge), what="acks uploaded")
    hub_order = await hub.admin("GET", f"/orders/{order['order_id']}")
    assert hub_order["state"] == "cancelled"


async def test_a_rejected_event_is_a_dead_letter_until_the_operator_retries(linked):
    hub, edge, app, config = linked
    await until(lambda: queue_empty(edge), what="first upload")
    # HOM-001 is in the store's catalog only: the chain rejects a sale of it
    await edge.ok("/sales", {"lines": [{"sku": "HOM-001", "qty": 1}], "payments": [{"method": "cash",
                                                                                  "amount_fen": 1590}]})
    await until(lambda: queue_empty(edge), what="upload")
    status, body = await edge.get("/sync/dead-letters")
    (letter,) = body["items"]
    assert letter["type"] == "sale.recorded" and "HOM-001" in letter["reason"]
    rejected = await hub.admin("GET", "/stores/test-store/events?status=rejected")
    assert [e["id"] for e in rejected["events"]] == [letter["event_id"]]

    await hub.admin("POST", "/products", {"products": products(["HOM-001"])})
    await edge.ok(f"/sync/dead-letters/{letter['seq']}/retry", {"operator": "店长", "note": "总部已上架"})
    await until(lambda: queue_empty(edge), what="retry uploaded")
    assert (await edge.get("/sync/dead-letters"))[1]["items"] == []
    store = await hub.admin("GET", "/stores/test-store")
    assert {r["sku"]: r["on_hand"] for r in store["balances"]}["HOM-001"] == -1


async def test_reconciliation_matches_then_corrects_a_divergent_cloud(linked, tmp_path):
    from sync.reconcile import reconcile
    hub, edge, app, config = linked
    await until(lambda: queue_empty(edge), what="first upload")
    engine = app[SYNC]
    assert (await reconcile(app[STORE], engine.client))["result"] == "match"

    async def drift(conn):   # the cloud's copy drifts behind everyone's back
        await conn.execute("UPDATE balances SET on_hand = on_hand + 5 WHERE store_id = 'test-store' AND "
                           "sku = 'DRK-002'")

    await hub.server.app[HUB].db.write(drift)
    result = await reconcile(app[STORE], engine.client)
    assert result["result"] == "corrected" and [d["sku"] for d in result["differences"]] == ["DRK-002"]
    await until(lambda: queue_empty(edge), what="correction uploaded")
    assert (await reconcile(app[STORE], engine.client))["result"] == "match"
    status, body = await edge.get("/sync/reconciliations")
    assert body["items"][0]["sku"] == "DRK-002" and body["items"][0]["cloud_on_hand"] == OPENING["DRK-002"] + 5


async def test_pickup_token_from_the_hub_verified_at_the_edge_and_reported_back(linked):
    hub, edge, app, config = linked
    await until(lambda: queue_empty(edge), what="opening stock uploaded")
    order = await hub.admin("POST", "/stores/test-store/orders", {
        "kind": "pickup", "lines": [{"sku": "DRK-001", "qty": 1}, {"sku": "SNK-001", "qty": 2}]})

    async def arrived():
        return (await edge.get(f"/orders/{order['order_id']}"))[0] == 200
    await until(arrived, what="order and key at the edge")
    status, found, _ = await edge.post("/pickups/lookup", {"token": order["pickup_token"]}, key=None)
    assert status == 200 and found["order"]["id"] == order["order_id"], found
    done = await edge.ok("/pickups", {"code": order["pickup_code"], "operator": "小王"})
    assert done["pickup"]["method"] == "code" and done["pickup"]["provisional"] is False
    status, again, _ = await edge.post("/pickups/lookup", {"token": order["pickup_token"]}, key=None)
    assert status == 409 and again["error"]["detail"]["used_by"] == "小王"
    await until(lambda: queue_empty(edge), what="hand-over uploaded")
    hub_order = await hub.admin("GET", f"/orders/{order['order_id']}")
    assert hub_order["pickup"]["operator"] == "小王" and hub_order["pickup"]["method"] == "code"
    assert (await edge.get("/sync/dead-letters"))[1]["items"] == []
    store = await hub.admin("GET", "/stores/test-store")
    hub_balances = {r["sku"]: (r["on_hand"], r["reserved"]) for r in store["balances"]}
    edge_snk = (await edge.get("/stock/SNK-001"))[1]
    assert hub_balances["SNK-001"] == (edge_snk["on_hand"], edge_snk["reserved"]) == (OPENING["SNK-001"] - 2, 0)


async def test_coupon_from_the_hub_redeemed_with_a_sale(linked):
    hub, edge, app, config = linked
    await until(lambda: queue_empty(edge), what="opening stock uploaded")
    await hub.admin("POST", "/coupons", {"coupon_id": "c-5off", "title": "立减5元", "kind": "value",
                                         "value_fen": 500, "min_spend_fen": 1000,
                                         "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2099-01-01T00:00:00Z"})
    issued = await hub.admin("POST", "/coupons/c-5off/issue", {"store_id": "test-store"})

    async def known():
        status, body, _ = await edge.post("/coupons/check", {"token": issued["coupon_token"]}, key=None)
        return status == 200
    await until(known, what="coupon definition and key at the edge")
    sale = await edge.ok("/sales", {"lines": [{"sku": "SNK-001", "qty": 2}], "coupons": [issued["coupon_token"]],
                                    "payments": [{"method": "wechat", "amount_fen": 1000}]})
    assert sale["sale"]["total_fen"] == 1000 and sale["sale"]["coupons"][0]["amount_fen"] == 500
    await until(lambda: queue_empty(edge), what="sale and redemption uploaded")
    coupon = await hub.admin("GET", "/coupons/c-5off")
    (serial,) = coupon["serials"]
    assert serial["uses"] == 1 and serial["redemptions"][0]["sale_id"] == sale["sale"]["id"]
    assert (await edge.get("/sync/dead-letters"))[1]["items"] == []


async def test_hand_over_while_the_cloud_is_down_is_provisional(linked):
    hub, edge, app, config = linked
    await until(lambda: queue_empty(edge), what="opening stock uploaded")
    order = await hub.admin("POST", "/stores/test-store/orders", {"kind": "pickup",
                                                                  "lines": [{"sku": "DRK-001", "qty": 1}]})
    await until(lambda: _has_order(edge, order["order_id"]), what="order at the edge")
    await hub.server.close()  # the internet goes down
    await edge.ok("/sales", {"lines": [{"sku": "DRK-002", "qty": 1}], "payments": [{"method": "cash",
                                                                                  "amount_fen": 350}]})
    await until(lambda: app[SYNC].link.state not in ("online", "connecting"), what="link down")
    done = await edge.ok("/pickups", {"token": order["pickup_token"], "operator": "小王"})
    assert done["pickup"]["provisional"] is True and done["order"]["state"] == "picked_up"
    status, again, _ = await edge.post("/pickups/lookup", {"token": order["pickup_token"]}, key=None)
    assert status == 409  # enforced once, locally, while offline


async def _has_order(edge, order_id):
    return (await edge.get(f"/orders/{order_id}"))[0] == 200
