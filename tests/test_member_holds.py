"""A sale with a member against the real reference hub (in one process over loopback HTTP, as
tests/test_sync_e2e.py): the till's hold before the sale's transaction, its capture by the sale's
`member.activity` at the cloud, a hold the cloud refuses (nothing written), a hold released when the sale is
then refused, and the offline caps when the cloud is gone."""

from __future__ import annotations

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from edge.core.clock import iso, utcnow
from edge.ops.demo.phone import Phone
from edge.services.app_keys import STORE
from edge.store import members
from hub.app import build_hub_app
from tests.conftest import CATALOG, Api, ledger_mismatches, query
from tests.test_member_sales import PROGRAM
from tests.test_sync_e2e import ADMIN, Hub, edge_linked, products, queue_empty, until

CHAIN = "chain-1"


class Linked:
    def __init__(self, hub: Hub, edge: Api, app, config, hub_server):
        self.hub, self.edge, self.app, self.config, self.hub_server = hub, edge, app, config, hub_server

    async def phone(self, member_id: str = "m-1") -> Phone:
        phone = Phone()
        phone.certificate = (await self.hub.admin("POST", f"/members/{member_id}/certificates",
                                                  {"device_key": phone.device_key}))["certificate"]
        return phone

    async def member(self, member_id: str = "m-1") -> dict:
        return await self.hub.admin("GET", f"/members/{member_id}")

    def counts(self) -> tuple:
        return tuple(query(self.config.db_path, f"SELECT count(*) FROM {t}")[0][0]
                     for t in ("sales", "stock_moves", "member_activity", "member_code_uses"))


@pytest.fixture
async def linked(tmp_path):
    hub_server = TestServer(build_hub_app(tmp_path / "hub", admin_token=ADMIN, chain=CHAIN))
    await hub_server.start_server()
    session = ClientSession()
    hub = Hub(hub_server, session)
    token = (await hub.admin("POST", "/stores", {"store_id": "test-store", "name": "测试门店"}))["token"]
    await hub.admin("POST", "/products", {"products": products(list(CATALOG))})
    await hub.admin("POST", "/members", {"member_id": "m-1", "name": "张三", "phone": "13812345678", "level": "金卡",
                                         "points": 1000, "balance_fen": 5000})
    await hub.admin("PUT", "/member-program", PROGRAM)
    try:
        async with edge_linked(tmp_path, hub.url, token, chain=CHAIN) as (edge, app, config):
            # the store has the hub's key and the programme once the feed came down
            await until(lambda: query(config.db_path, "SELECT count(*) FROM member_program")[0][0] == 1
                        and query(config.db_path, "SELECT count(*) FROM verification_keys")[0][0] >= 1,
                        what="the feed")
            yield Linked(hub, edge, app, config, hub_server)
    finally:
        await session.close()
        await hub_server.close()
    assert ledger_mismatches(config.db_path) == []


SNACKS = [{"sku": "SNK-001", "qty": 2}]          # 2 × 713 (金卡: 750 × 95 %) = 1426


async def test_an_online_sale_holds_then_its_activity_captures_at_the_cloud(linked):
    phone = await linked.phone()
    code, body, _ = await linked.edge.post("/sales", {"lines": SNACKS, "member": {"code": phone.code()},
                                                      "payments": [{"method": "points", "amount_fen": 300},
                                                                   {"method": "stored_value", "amount_fen": 500},
                                                                   {"method": "wechat", "amount_fen": 626}]})
    assert code == 201, body
    m = body["sale"]["member"]
    assert m["offline"] is False and (m["points_spent"], m["stored_value_fen"]) == (300, 500)
    earned = (1426 - 300) * 150 // 10000
    assert (m["points_balance"], m["stored_value_balance_fen"]) == (1000 - 300 + earned, 4500)
    held = await linked.member()
    assert (held["points_held"], held["balance_fen_held"]) in ((300, 500), (0, 0))   # captured once uploaded
    await until(lambda: queue_empty(linked.edge), what="the upload")
    after = await linked.member()
    assert (after["points"], after["balance_fen"], after["holds"]) == (1000 - 300 + earned, 4500, [])
    # a whole return: the cloud's balances are back where they were
    await linked.edge.ok(f"/sales/{body['sale']['id']}/returns", {"lines": [{"line_no": 1, "qty": 2}],
                                                                  "refund_method": "wechat"})
    await until(lambda: queue_empty(linked.edge), what="the return's upload")
    back = await linked.member()
    assert (back["points"], back["balance_fen"]) == (1000, 5000)
    # the sale (paid partly by points and stored value), its return and both activities: none refused
    assert (await linked.hub.admin("GET", "/stores/test-store/events?status=rejected"))["events"] == []


@pytest.mark.parametrize("payments, reason", [
    ([{"method": "stored_value", "amount_fen": 5001}, {"method": "points", "amount_fen": 1}], "insufficient_balance"),
    ([{"method": "points", "amount_fen": 1001}, {"method": "cash", "amount_fen": 2000}], "insufficient_points"),
])
async def test_a_hold_the_cloud_refuses_is_the_tills_refusal_and_nothing_is_written(linked, payments, reason):
    phone = await linked.phone()
    lines = [{"sku": "HOM-001", "qty": 4}]       # 4 × 1511 = 6044: points may pay up to 3022
    before = linked.counts()
    code, body, _ = await linked.edge.post("/sales", {"lines": lines, "member": {"code": phone.code()},
                                                      "payments": payments})
    assert code == 422 and body["error"]["code"] == reason, body
    assert body["error"]["detail"]["message_zh"]
    assert linked.counts() == before            # no sale, no move, no activity, the code not even taken
    assert (await linked.member())["holds"] == []


async def test_a_sale_refused_after_its_hold_releases_it(linked):
    phone = await linked.phone()
    code, body, _ = await linked.edge.post("/sales", {"lines": SNACKS, "member": {"code": phone.code()},
                                                      "payments": [{"method": "points", "amount_fen": 714},
                                                                   {"method": "cash", "amount_fen": 1000}]})
    assert code == 422 and body["error"]["code"] == "points_over_limit"     # 50 % of 1426 is 713

    async def released():
        return (await linked.member())["holds"] == []
    await until(released, what="the hold released")
    assert (await linked.member())["points_available"] == 1000


async def test_without_the_cloud_the_sale_is_offline_within_the_caps(linked):
    phone = await linked.phone()
    await linked.hub_server.close()               # the cloud is gone: the hold cannot be asked
    body = await linked.edge.ok("/sales", {"lines": SNACKS, "member": {"code": phone.code()},
                                           "payments": [{"method": "points", "amount_fen": 500},
                                                        {"method": "cash", "amount_fen": 2000}]})
    assert body["sale"]["member"]["offline"] is True
    # the certificate's 1000 points less the 500 spent here: 501 more are refused, whatever the 2000 cap
    code, refused, _ = await linked.edge.post("/sales", {
        "lines": SNACKS, "member": {"member_id": "m-1"},
        "payments": [{"method": "points", "amount_fen": 501}, {"method": "cash", "amount_fen": 2000}]})
    assert code == 422 and refused["error"]["code"] == "points_offline_cap"
    code, refused, _ = await linked.edge.post("/sales", {
        "lines": SNACKS, "member": {"member_id": "m-1"},
        "payments": [{"method": "stored_value", "amount_fen": 100}, {"method": "cash", "amount_fen": 2000}]})
    assert code == 422 and refused["error"]["code"] == "stored_value_offline_disabled"
    events = query(linked.config.db_path, "SELECT payload FROM outbox WHERE type = 'member.activity'")
    assert len(events) == 1 and '"offline":true' in events[0][0] and '"hold_id":null' in events[0][0]


async def test_a_member_the_cloud_does_not_know_is_refused_and_nothing_is_written(linked):
    # seen here (a look-up answered before the cloud lost the member, say) but unknown to the cloud now
    now = iso(utcnow())
    await linked.app[STORE].write(lambda conn: members.remember(conn, {
        "member_id": "m-404", "level": "金卡", "name": "李*", "phone": "139****0000", "points": 900,
        "balance_fen": 0, "snapshot_at": now}, "lookup", now))
    before = linked.counts()
    code, body, _ = await linked.edge.post("/sales", {"lines": SNACKS, "member": {"member_id": "m-404"},
                                                      "payments": [{"method": "points", "amount_fen": 100},
                                                                   {"method": "cash", "amount_fen": 2000}]})
    assert code == 422 and body["error"]["code"] == "unknown_member", body
    assert body["error"]["detail"]["message_zh"] == "云端没有此会员，请核对会员"
    assert linked.counts() == before
