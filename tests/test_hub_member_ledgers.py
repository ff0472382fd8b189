"""Members' points and stored value at the reference hub (issue 12 parts 3-5, docs/members.md "The cloud's
ledgers"): the ledgers, holds, `member.activity` applied once per activity, overspends flagged, the programme
and member prices published in the shared feed, and what certificates and the look-up carry.

In-process, as tests/test_hub.py: the hub's app on a temporary folder with a frozen clock, through its HTTP API.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from pathlib import Path

import pytest

from edge.core import jws
from edge.core.sqlite import open_db
from edge.ops.demo.phone import Phone
from hub.schema import HUB_MIGRATIONS
from protocol.members import HoldAnswer, HoldRefused
from tests.test_hub import database, event, product, start_hub  # noqa: F401 (database: autouse, both stores)

SYNC = "/sync/v1/stores/{}/members/holds"


def hold_id() -> str:
    return f"h-{uuid.uuid4()}"


def activity(sale_id: str = "S-1", *, return_id: str | None = None, earned: int = 0, spent: int = 0,
             value: int = 0, hold: str | None = None, offline: bool = False, member: str = "m-1") -> dict:
    """A member.activity payload (protocol.events.MemberActivity)."""
    return {"activity_id": f"return:{return_id}" if return_id else f"sale:{sale_id}", "member_id": member,
            "sale_id": sale_id, "return_id": return_id, "level": "金卡", "points_earned": earned,
            "points_spent": spent, "stored_value_fen": value, "hold_id": hold, "offline": offline, "saved_fen": 0,
            "at": "2026-11-21T08:00:00.000Z"}


class Members:
    """The hub with stores s1 and s2, a catalog, and member m-1 (1000 points, ￥50.00 stored value)."""

    def __init__(self, hub):
        self.hub, self.seq = hub, {"s1": 0, "s2": 0}

    async def upload(self, payload: dict, store: str = "s1", id: str | None = None) -> dict:
        self.seq[store] += 1
        data = await self.hub.ok_upload(store, [event(store, self.seq[store], None, "member.activity", id=id,
                                                      **payload)])
        return data["results"][0]

    async def member(self, member_id: str = "m-1") -> dict:
        return await self.hub.admin("GET", f"/members/{member_id}")

    async def hold(self, body: dict, store: str = "s1", status: int = 201) -> dict:
        code, data = await self.hub.call("POST", SYNC.format(store), body, token=self.hub.tokens[store])
        assert code == status, data
        return data

    async def release(self, hold: str, store: str = "s1", status: int = 200) -> dict:
        code, data = await self.hub.call("DELETE", SYNC.format(store) + "/" + hold, token=self.hub.tokens[store])
        assert code == status, data
        return data

    async def ledger(self, member_id: str = "m-1") -> dict:
        return await self.hub.admin("GET", f"/members/{member_id}/ledger")


@pytest.fixture
async def members(tmp_path):
    hub = await start_hub(tmp_path / "hub")
    await hub.add_store("s1")
    await hub.add_store("s2")
    await hub.add_products(product("DRK-001", 200, category="饮料"), product("SNK-001", 750))
    await hub.admin("POST", "/members", {"member_id": "m-1", "name": "张三", "phone": "13812345678",
                                         "level": "金卡", "points": 1000, "balance_fen": 5000}, status=201)
    try:
        yield Members(hub)
    finally:
        await hub.close()


def money(member: dict) -> tuple[int, int]:
    return member["points"], member["balance_fen"]


# -- exactly once ---------------------------------------------------------------------------------------------

async def test_an_activity_is_applied_once_even_resent_under_a_new_event_id(members):
    hub = members.hub
    sale = activity(earned=12, spent=500, value=-1500)
    first = await members.upload(sale, id="ev-first")
    assert first["status"] == "applied"
    assert money(await members.member()) == (512, 3500)
    before = await members.ledger()

    # the same event again is a duplicate by its id; the same activity under a new event id (the store's outbox
    # after an epoch change, a restore) is applied as an event and changes no ledger
    assert (await hub.ok_upload("s1", [event("s1", 1, None, "member.activity", id="ev-first", **sale)])
            )["results"][0]["status"] == "duplicate"
    await hub.admin("POST", "/epoch")
    again = await members.upload(sale, id="ev-again")
    assert again["status"] == "applied"
    changed = await members.upload({**sale, "points_earned": 99}, id="ev-changed")   # first one wins
    assert changed["status"] == "applied"
    assert money(await members.member()) == (512, 3500)
    assert {**await members.ledger(), "epoch": None} == {**before, "epoch": None}
    assert [(r["activity_id"], r["delta"], r["earned"], r["spent"], r["event_id"]) for r in before["points"]] == [
        ("sale:S-1", -488, 12, 500, "ev-first"), ("opening:m-1", 1000, 0, 0, None)]
    assert [(r["activity_id"], r["kind"], r["delta"], r["balance_after"]) for r in before["stored_value"]] == [
        ("sale:S-1", "sale", -1500, 3500), ("opening:m-1", "opening", 5000, 5000)]


async def test_a_return_gives_back_what_its_sale_took(members):
    await members.upload(activity(earned=12, spent=500, value=-1500))
    await members.upload(activity(return_id="R-1", earned=-6, spent=-250, value=750))
    assert money(await members.member()) == (1000 - 488 - 6 + 250, 5000 - 1500 + 750)
    rows = await members.ledger()
    assert [(r["activity_id"], r["kind"], r["delta"]) for r in rows["points"][:2]] == [
        ("return:R-1", "return", 244), ("sale:S-1", "sale", -488)]
    assert [(r["kind"], r["delta"], r["balance_after"]) for r in rows["stored_value"][:2]] == [
        ("return", 750, 4250), ("sale", -1500, 3500)]
    # the last return of the sale gives back the rest: the member is where they were, less what stays earned
    await members.upload(activity(return_id="R-2", earned=-6, spent=-250, value=750))
    assert money(await members.member()) == (1000, 5000)


async def test_an_activity_for_an_unknown_member_or_anothers_hold_is_rejected_and_changes_nothing(members):
    hub = members.hub
    await hub.admin("POST", "/members", {"member_id": "m-2", "name": "李四", "phone": "13900001111", "level": "普通",
                                         "points": 800}, status=201)
    theirs = hold_id()
    await members.hold({"hold_id": theirs, "member_id": "m-1", "points": 100, "amount_fen": 0}, store="s2")
    other_member = hold_id()
    await members.hold({"hold_id": other_member, "member_id": "m-2", "points": 100, "amount_fen": 0})
    for payload, reason in (
            (activity(member="m-9", earned=5), "unknown_member: m-9 is not a member of the chain"),
            (activity(spent=100, hold=theirs), f"unknown_hold: {theirs} is not a hold store s1 made for member m-1"),
            (activity(spent=100, hold=other_member), "unknown_hold"),
            (activity(spent=100, hold=hold_id()), "unknown_hold"),
            (activity(spent=-100), "invalid_payload: points_spent of a sale is the points it spent: 0 or more")):
        result = await members.upload(payload)
        assert result["status"] == "rejected" and result["reason"].startswith(reason), result
    assert money(await members.member()) == (1000, 5000)
    assert [r["kind"] for r in (await members.ledger())["points"]] == ["opening"]
    # s2's hold still holds: it was not captured by s1's rejected activity
    assert (await members.member())["holds"][0]["hold_id"] == theirs


# -- holds ----------------------------------------------------------------------------------------------------

async def test_holds_asked_at_once_never_grant_more_than_the_balance(members, monkeypatch, hub_db):
    """Ten tills ask at the same moment for 300 of the member's 1000 points: three holds, seven refusals,
    on SQLite (one writer) as on PostgreSQL (parallel connections: the member's row is locked per hold).
    On PostgreSQL each hold dawdles after reading the balance, so without the lock all ten would read
    1000 free and be granted."""
    if hub_db is not None:
        import hub.member_holds  # noqa: PLC0415

        read_balances = hub.member_holds.balances

        async def slow_balances(db, *args):
            free = await read_balances(db, *args)
            await asyncio.sleep(0.05)
            return free

        monkeypatch.setattr(hub.member_holds, "balances", slow_balances)
    answers = await asyncio.gather(*(members.hub.call("POST", SYNC.format("s1"), {
        "hold_id": hold_id(), "member_id": "m-1", "points": 300, "amount_fen": 0}, token=members.hub.tokens["s1"])
        for _ in range(10)))
    codes = sorted(code for code, _ in answers)
    assert codes == [201] * 3 + [409] * 7, answers
    assert all(data["error"] == "insufficient_points" for code, data in answers if code == 409)


async def test_a_hold_sets_aside_what_a_sale_will_spend_and_the_same_hold_again_is_the_same(members):
    hub = members.hub
    body = {"hold_id": hold_id(), "member_id": "m-1", "points": 500, "amount_fen": 1500}
    made = await members.hold(body)
    assert made == {"epoch": made["epoch"], **{k: body[k] for k in ("hold_id", "member_id", "points", "amount_fen")},
                    "expires_at": "2026-11-21T08:10:00.000Z", "points_left": 500, "balance_fen_left": 3500}
    HoldAnswer.model_validate(made)                                   # as the store reads it
    hub.clock.advance(30)
    assert await members.hold(body, status=200) == made             # the answer was lost: asked again
    mismatch = await members.hold({**body, "points": 501}, status=409)
    assert mismatch["error"] == "hold_mismatch"
    assert (await members.hold({**body, "amount_fen": 0}, store="s2", status=409))["error"] == "hold_mismatch"
    view = await members.member()
    assert (view["points"], view["points_held"], view["points_available"]) == (1000, 500, 500)
    assert (view["balance_fen"], view["balance_fen_held"], view["balance_fen_available"]) == (5000, 1500, 3500)
    assert [h["hold_id"] for h in view["holds"]] == [body["hold_id"]]

    short = await members.hold({**body, "hold_id": hold_id(), "points": 501, "amount_fen": 0}, status=409)
    assert (short["error"], short["points_available"], short["balance_fen_available"]) == (
        "insufficient_points", 500, 3500)
    HoldRefused.model_validate(short)
    short = await members.hold({**body, "hold_id": hold_id(), "points": 0, "amount_fen": 3501}, status=409)
    assert short["error"] == "insufficient_balance" and short["balance_fen_available"] == 3500
    assert (await members.hold({**body, "hold_id": hold_id(), "member_id": "m-9"}, status=404)
            )["error"] == "unknown_member"
    for bad in ({**body, "points": 0, "amount_fen": 0}, {**body, "hold_id": "h-1"}, {**body, "points": -1},
                {**body, "points": "500"}, {**body, "more": 1}):
        assert (await members.hold(bad, status=400))["error"] == "invalid_request"
    code, _ = await hub.call("POST", SYNC.format("s1"), body, token=hub.tokens["s2"])
    assert code == 403
    # none of the refusals held anything
    assert (await members.member())["points_held"] == 500


async def test_a_hold_expires_is_released_or_is_captured_by_its_sale(members):
    hub = members.hub
    everything = {"member_id": "m-1", "points": 1000, "amount_fen": 5000}
    first = await members.hold({"hold_id": hold_id(), **everything})
    await members.hold({"hold_id": hold_id(), **everything, "amount_fen": 0}, status=409)
    hub.clock.advance(599)
    await members.hold({"hold_id": hold_id(), **everything, "amount_fen": 0}, status=409)
    hub.clock.advance(1)                                             # 600 s: it holds nothing now
    second = await members.hold({"hold_id": hold_id(), **everything})
    assert [h["hold_id"] for h in (await members.member())["holds"]] == [second["hold_id"]]

    # released (the cashier abandoned the sale): again is the same; another store's or an unknown id: 404
    assert (await members.release(second["hold_id"], store="s2", status=404))["error"] == "unknown_hold"
    released = await members.release(second["hold_id"])
    assert released["released_at"] == "2026-11-21T08:10:00.000Z"
    hub.clock.advance(5)
    assert await members.release(second["hold_id"]) == released
    await members.release(hold_id(), status=404)
    assert (await members.member())["points_held"] == 0

    # captured by its sale's activity: the activity's amounts are the ledger's, and the hold stops counting
    third = await members.hold({"hold_id": hold_id(), "member_id": "m-1", "points": 500, "amount_fen": 1500})
    assert (await members.upload(activity(earned=10, spent=400, value=-1500, hold=third["hold_id"])))["status"] == \
        "applied"
    view = await members.member()
    assert (view["points"], view["points_held"], view["balance_fen"], view["balance_fen_held"]) == (610, 0, 3500, 0)
    assert (await members.release(third["hold_id"], status=409))["error"] == "hold_captured"
    # the expired first hold can still be captured by a sale that was made in time (its upload came late)
    assert (await members.upload(activity("S-2", spent=100, hold=first["hold_id"])))["status"] == "applied"
    assert (await members.member())["points"] == 510


# -- overspend ------------------------------------------------------------------------------------------------

async def test_an_offline_spend_past_the_balance_is_applied_and_flagged(members, caplog):
    hub = members.hub
    caplog.set_level(logging.INFO)
    # s2 spent 800 points online meanwhile; s1, offline, spent 600 on the certificate's 1000
    await members.upload(activity("S-A", spent=800, value=-4000), store="s2")
    result = await members.upload(activity("S-B", earned=3, spent=600, value=-2000, offline=True))
    assert result["status"] == "applied"
    assert money(await members.member()) == (1000 - 800 - 597, 5000 - 4000 - 2000)
    flags = (await hub.admin("GET", "/member-flags"))["flags"]
    assert sorted((f["ledger"], f["member_id"], f["activity_id"], f["store_id"], f["delta"], f["balance_after"],
                   f["offline"], f["flags"][0]) for f in flags) == [
        ("points", "m-1", "sale:S-B", "s1", -597, -397, True, "points_overspent"),
        ("stored_value", "m-1", "sale:S-B", "s1", -2000, -1000, True, "stored_value_overspent")]
    warnings = [r for r in caplog.records if r.getMessage() == "member overspent"]
    assert len(warnings) == 2 and all(r.levelno == logging.WARNING for r in warnings)
    # an overspent member has nothing to spend: the look-up shows 0, a hold is refused
    found = (await hub.call("POST", "/sync/v1/stores/s1/members/lookup", {"phone": "13812345678"},
                            token=hub.tokens["s1"]))[1]["members"][0]
    assert (found["points"], found["balance_fen"]) == (0, 0)
    refused = await members.hold({"hold_id": hold_id(), "member_id": "m-1", "points": 1, "amount_fen": 0},
                                 status=409)
    assert (refused["points_available"], refused["balance_fen_available"]) == (0, 0)
    # a top-up that brings the balance back is not flagged
    await hub.admin("POST", "/members/m-1/stored-value", {"amount_fen": 2000, "reason": "充值"}, status=201)
    assert len((await hub.admin("GET", "/member-flags"))["flags"]) == 2


# -- the chain's own rows -------------------------------------------------------------------------------------

async def test_adjustments_and_top_ups_are_ledger_rows(members):
    hub = members.hub
    done = await hub.admin("POST", "/members/m-1/points", {"delta": 200, "reason": "生日礼"}, status=201)
    assert (done["points"], done["entry"]["delta"], done["entry"]["balance_after"]) == (1200, 200, 1200)
    done = await hub.admin("POST", "/members/m-1/stored-value", {"amount_fen": 10000, "reason": "充值"}, status=201)
    assert done["balance_fen"] == 15000
    await members.hold({"hold_id": hold_id(), "member_id": "m-1", "points": 1000, "amount_fen": 0})
    refused = await hub.admin("POST", "/members/m-1/points", {"delta": -201, "reason": "更正"}, status=409)
    assert (refused["error"], refused["points_available"]) == ("insufficient_points", 200)
    assert (await hub.admin("POST", "/members/m-1/stored-value", {"amount_fen": -15001, "reason": "更正"},
                            status=409))["error"] == "insufficient_balance"
    await hub.admin("POST", "/members/m-1/points", {"delta": -200, "reason": "更正"}, status=201)
    for path, body in (("points", {"delta": 0, "reason": "x"}), ("points", {"delta": 5}),
                       ("points", {"delta": "5", "reason": "x"}), ("stored-value", {"amount_fen": 1.5, "reason": "x"}),
                       ("stored-value", {"amount_fen": 100, "reason": ""})):
        await hub.admin("POST", f"/members/m-1/{path}", body, status=400)
    await hub.admin("POST", "/members/m-9/points", {"delta": 5, "reason": "x"}, status=404)
    await hub.admin("GET", "/members/m-9/ledger", status=404)
    rows = await members.ledger()
    assert [(r["kind"], r["delta"], r["reason"]) for r in rows["points"]] == [
        ("adjust", -200, "更正"), ("adjust", 200, "生日礼"), ("opening", 1000, None)]
    assert [(r["kind"], r["delta"], r["reason"]) for r in rows["stored_value"]] == [
        ("topup", 10000, "充值"), ("opening", 5000, None)]


# -- what a store sees ----------------------------------------------------------------------------------------

def claims(certificate: str) -> dict:
    return json.loads(jws.b64url_decode(certificate.split(".")[1]))


async def test_certificates_and_the_look_up_carry_the_ledgers_balance(members):
    hub = members.hub
    await members.upload(activity(earned=12, spent=500, value=-1500))
    issued = await hub.admin("POST", "/members/m-1/certificates", {"device_key": Phone().device_key}, status=201)
    assert (claims(issued["certificate"])["pts"], claims(issued["certificate"])["bal"]) == (512, 3500)
    code, found = await hub.call("POST", "/sync/v1/stores/s1/members/lookup", {"phone": "13812345678"},
                                 token=hub.tokens["s1"])
    assert code == 200 and money(found["members"][0]) == (512, 3500)
    # the member's own row keeps what it opened with; the admin view shows the ledgers
    view = await members.member()
    assert money(view) == (512, 3500) and view["created_at"]


# -- the programme and member prices in the shared feed -------------------------------------------------------

PROGRAM = {"version": 1, "levels": [{"level": "普通", "discount_pct": 100, "points_multiplier_pct": 100},
                                    {"level": "金卡", "discount_pct": 95, "points_multiplier_pct": 150}],
           "points_per_yuan": 1, "excluded_categories": ["烟草"], "redeem_fen_per_point": 1, "redeem_max_pct": 50}


async def feed(hub, store: str) -> list[dict]:
    return [c for c in (await hub.sync(store, "changes"))["changes"] if c["type"].startswith("member.")]


async def test_the_programme_and_member_prices_are_published_for_every_store(members):
    hub = members.hub
    await hub.admin("GET", "/member-program", status=404)
    published = await hub.admin("PUT", "/member-program", PROGRAM, status=201)
    prices = {"prices": [{"sku": "DRK-001", "level": None, "price_fen": 180},
                         {"sku": "DRK-001", "level": "金卡", "price_fen": 170},
                         {"sku": "SNK-001", "level": None, "price_fen": None}]}
    await hub.admin("POST", "/member-prices", prices, status=201)
    for store in ("s1", "s2"):
        assert [(c["type"], c["payload"]) for c in await feed(hub, store)] == [
            ("member.program", PROGRAM), ("member.prices", prices)]
    current = await hub.admin("GET", "/member-program")
    assert (current["program"], current["change_id"]) == (PROGRAM, published["change_id"])

    cursor = (await hub.sync("s1", "state"))["last_cursor"]
    level = PROGRAM["levels"][0]
    for bad in ({**PROGRAM, "version": 2, "levels": [level, level]},
                {**PROGRAM, "version": 2, "levels": [{**level, "discount_pct": 0}]},
                {**PROGRAM, "version": 2, "redeem_max_pct": 101}, {**PROGRAM, "version": 2, "points_per_yuan": "1"},
                {**PROGRAM, "version": 2, "surprise": True}, {k: v for k, v in PROGRAM.items() if k != "levels"}):
        assert (await hub.admin("PUT", "/member-program", bad, status=400))["error"] == "invalid_request"
    stale = await hub.admin("PUT", "/member-program", PROGRAM, status=409)
    assert (stale["error"], stale["current_version"]) == ("version_not_newer", 1)
    line = prices["prices"][0]
    for bad in ({"prices": []}, {"prices": [line, line]}, {"prices": [{**line, "price_fen": -1}]},
                {"prices": [{"sku": "DRK-001", "price_fen": 100}]}, {"prices": [line], "store_id": "s1"}):
        assert (await hub.admin("POST", "/member-prices", bad, status=400))["error"] == "invalid_request"
    unknown = await hub.admin("POST", "/member-prices", {"prices": [line, {**line, "sku": "NOPE-1"}]}, status=400)
    assert (unknown["error"], unknown["skus"]) == ("unknown_sku", ["NOPE-1"])
    assert (await hub.sync("s1", "state"))["last_cursor"] == cursor          # nothing published
    assert (await hub.admin("PUT", "/member-program", {**PROGRAM, "version": 2}, status=201))["cursor"] > cursor


# -- the schema -----------------------------------------------------------------------------------------------

@pytest.mark.sqlite_only("a hub.db file of the schema before the ledgers")
async def test_members_made_before_the_ledgers_open_them_with_their_amounts(tmp_path):
    data = tmp_path / "hub"
    data.mkdir()
    before = [name for name, _ in HUB_MIGRATIONS].index("hub: members' points and stored-value ledgers, holds, programmes")
    conn = open_db(data / "hub.db", HUB_MIGRATIONS[:before])
    conn.execute("INSERT INTO members (member_id, name, phone, level, points, balance_fen, created_at, updated_at) "
                 "VALUES ('m-old', '王五', '13700000000', '普通', 300, 0, '2026-11-01T00:00:00.000Z', "
                 "'2026-11-01T00:00:00.000Z')")
    conn.commit()
    conn.close()
    hub = await start_hub(data)
    try:
        view = await hub.admin("GET", "/members/m-old")
        assert money(view) == (300, 0)
        rows = await hub.admin("GET", "/members/m-old/ledger")
        assert [(r["activity_id"], r["delta"], r["at"]) for r in rows["points"]] == [
            ("opening:m-old", 300, "2026-11-01T00:00:00.000Z")] and rows["stored_value"] == []
    finally:
        await hub.close()


@pytest.mark.sqlite_only("compares the two schema files once")
def test_the_postgresql_tables_have_the_sqlite_tables_columns(tmp_path):
    conn = open_db(tmp_path / "hub.db", HUB_MIGRATIONS)
    ddl = (Path(__file__).resolve().parent.parent / "hub/sql/postgresql/002_member_ledgers.sql").read_text()
    tables = dict(re.findall(r"CREATE TABLE (\w+) \((.*?)\n\);", ddl, re.S))
    assert set(tables) == {"member_points_ledger", "member_value_ledger", "member_holds", "member_programs"}
    for table, body in tables.items():
        columns = [line.split()[0] for line in body.strip().splitlines() if not line.strip().startswith("--")]
        assert columns == [r[1] for r in conn.execute(f"PRAGMA table_info({table})")], table
    conn.close()


# -- the hub killed -9 ----------------------------------------------------------------------------------------

@pytest.mark.sqlite_only("the store-edge hub process on its data folder; on PostgreSQL: tests/test_hub_postgres.py")
def test_activities_survive_the_hub_killed_mid_upload_and_count_once(tmp_path):
    """The real `store-edge hub` is SIGKILLed at moments from at once to well after the commit while a sale's activity is being uploaded (the
    store never reads an answer); the store sends the event again after each restart, and at the end, after a
    new epoch, every activity again under new event ids: each counts exactly once, and every hold is captured."""
    import contextlib  # noqa: PLC0415
    import http.client  # noqa: PLC0415
    import threading  # noqa: PLC0415

    from tests.helpers_daemon import Hub, request  # noqa: PLC0415

    hub = Hub(tmp_path, "admin-kill-test")
    delays = (0.0, 0.002, 0.004, 0.008, 0.016)   # seconds after the upload starts
    try:
        hub.start()
        token = hub.admin_ok("POST", "/stores", {"store_id": "s1", "name": "一号店"})["token"]
        auth = {"Authorization": f"Bearer {token}"}
        hub.admin_ok("POST", "/members", {"member_id": "m-1", "name": "张三", "phone": "13812345678", "level": "金卡",
                                          "points": 1000, "balance_fen": 5000})

        def upload(events: list[dict]) -> dict:
            status, data, _ = request(hub.port, "POST", "/sync/v1/stores/s1/events", {"protocol": 1, "events": events},
                                      headers=auth)
            assert status == 200, data
            return data

        sent, outcomes, seq = [], [], 0
        for n, delay in enumerate(delays):
            hold = hold_id()
            status, data, _ = request(hub.port, "POST", SYNC.format("s1"), {"hold_id": hold, "member_id": "m-1",
                                                                            "points": 100, "amount_fen": 500},
                                      headers=auth)
            assert status == 201, data
            seq += 1
            sale = event("s1", seq, None, "member.activity", id=f"ev-{n}",
                         **activity(f"S-{n}", earned=7, spent=100, value=-500, hold=hold))
            sent.append(sale)
            def send(sale=sale):   # its answer, or its connection's end, is never looked at
                with contextlib.suppress(OSError, http.client.HTTPException):
                    request(hub.port, "POST", "/sync/v1/stores/s1/events", {"protocol": 1, "events": [sale]},
                            headers=auth)
            cut = threading.Thread(target=send, daemon=True)
            cut.start()
            threading.Event().wait(delay)
            hub.proc.kill()
            hub.proc.wait(30)
            cut.join(30)
            hub.start()
            outcomes.append(upload([sale])["results"][0]["status"])   # duplicate: the killed upload had committed

        assert set(outcomes) <= {"applied", "duplicate"}, outcomes
        print("after each kill, the upload sent again was:", outcomes)
        hub.stop()
        hub.start("--new-epoch")
        again = [{**e, "id": f"{e['id']}-again", "seq": seq + i + 1} for i, e in enumerate(sent)]
        assert [r["status"] for r in upload(again)["results"]] == ["applied"] * len(sent)
        member = hub.admin_ok("GET", "/members/m-1")
        assert (member["points"], member["balance_fen"], member["points_held"], member["holds"]) == (
            1000 - len(delays) * 93, 5000 - len(delays) * 500, 0, [])
        rows = hub.admin_ok("GET", "/members/m-1/ledger")
        assert sorted(r["activity_id"] for r in rows["points"] if r["kind"] == "sale") == [
            f"sale:S-{n}" for n in range(len(delays))]
        assert all(r["event_id"] == f"ev-{r['activity_id'][-1]}" for r in rows["points"] if r["kind"] == "sale")
        hub.stop()
    finally:
        hub.stop_quietly()
