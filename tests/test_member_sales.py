"""Members in the store's sale (docs/members.md "At the till"): member prices, points earned and spent,
stored value, returns giving back exactly what their sale took, the offline caps, and the `member.activity`
event written once, in the sale's own transaction. The store's functions under a frozen clock, with codes
made by the simulated phone; the till API in tests/test_member_sales_api.py."""

from __future__ import annotations

import json

import pytest

from edge.core.context import WriteContext
from edge.core.errors import InputError
from edge.core.refusals import MESSAGES_ZH
from edge.core.schemas import ReturnIn, SaleIn
from edge.store import db, members, sales, shifts
from edge.store.member_sales import Hold, MemberChecks
from tests.conftest import PRICE, dump, seed
from tests.test_members import CHAIN, KEY_PUBLIC, NOW, STORE, feed, issued

PROGRAM = {"version": 1,
           "levels": [{"level": "普通", "discount_pct": 100, "points_multiplier_pct": 100},
                      {"level": "金卡", "discount_pct": 95, "points_multiplier_pct": 150}],
           "points_per_yuan": 1, "excluded_categories": ["日用"], "redeem_fen_per_point": 1, "redeem_max_pct": 50}
GOLD = {"member_id": "m-000123"}           # 金卡, 1280 points and 5000 fen at the snapshot (tests/test_members.py)
CASH = [{"method": "cash", "amount_fen": 100_000}]


class Till:
    """A store with the test catalog, the programme, and a member verified by code at NOW."""

    def __init__(self, path):
        seed(path)
        self.path = path
        self.conn = db.open_store_db(path)
        feed(self.conn, [("key.published", {"kid": "k1", "alg": "Ed25519", "public_key": KEY_PUBLIC}),
                         ("member.program", PROGRAM)])
        self.phone = issued()
        with db.transaction(self.conn):
            members.verify_member_code(self.conn, self.phone.code(NOW), chain=CHAIN, store_id=STORE, now=NOW)
        self.at = NOW

    def checks(self, **over) -> MemberChecks:
        return MemberChecks(**{"chain": CHAIN, "store_id": STORE, "now": self.at, **over})

    def ctx(self) -> WriteContext:
        self.at += 1       # each sale a second later: activity times are after the snapshot and in order
        return WriteContext("till-1", members.iso_unix(self.at), "2026-11-29")

    def sell(self, lines, payments=CASH, member=GOLD, discount_fen=0, **over) -> dict:
        body = {"lines": lines, "payments": payments, "print_receipt": False, "discount_fen": discount_fen}
        if member is not None:
            body["member"] = member
        with db.transaction(self.conn):
            return sales.record_sale(self.conn, SaleIn.model_validate(body), self.ctx(), None, frozenset(),
                                     self.checks(**over))["sale"]

    def refused(self, reason, lines, payments=CASH, member=GOLD, **over) -> InputError:
        """Refused for `reason`, in Chinese, and nothing written."""
        before = dump(self.path)
        with pytest.raises(InputError) as caught:
            self.sell(lines, payments, member, **over)
        assert caught.value.code == reason, caught.value.as_dict()
        assert caught.value.detail["message_zh"] == MESSAGES_ZH[reason]
        assert dump(self.path) == before
        return caught.value

    def give_back(self, sale, lines, method="cash") -> dict:
        with db.transaction(self.conn):
            return sales.record_return(self.conn, sale["id"], ReturnIn.model_validate(
                {"lines": lines, "refund_method": method}), self.ctx())

    def feed(self, changes):
        feed(self.conn, changes)

    def events(self, kind="member.activity") -> list[dict]:
        return [json.loads(r[0]) for r in self.conn.execute("SELECT payload FROM outbox WHERE type = ? ORDER BY seq",
                                                            (kind,))]


@pytest.fixture
def till(tmp_path):
    t = Till(tmp_path / "store.db")
    yield t
    t.conn.close()


def line(sku, qty=1, **over):
    return {"sku": sku, "qty": qty, **over}


def test_member_prices_per_level_then_every_level_then_the_level_discount(till):
    till.feed([("member.prices", {"prices": [
        {"sku": "DRK-001", "level": None, "price_fen": 180},     # every level
        {"sku": "DRK-002", "level": None, "price_fen": 330},
        {"sku": "DRK-002", "level": "金卡", "price_fen": 300},   # the level's own beats every level's
        {"sku": "DAI-001", "level": None, "price_fen": 999}]})])  # above the list price: never charged
    sale = till.sell([line("DRK-001", 2), line("DRK-002"), line("SNK-001", 3), line("DAI-001"),
                      line("SNK-002", unit_price_fen=500)])
    got = [(x["sku"], x["list_price_fen"], x["unit_price_fen"], x["member_saved_fen"]) for x in sale["lines"]]
    assert got == [("DRK-001", 200, 180, 40), ("DRK-002", 350, 300, 50),
                   # no member price: 750 × 95 / 100 = 712.5, rounded half up to 713
                   ("SNK-001", 750, 713, 111), ("DAI-001", 350, 350, 0),
                   ("SNK-002", 500, 500, 0)]                  # the cashier's price stays, no member price
    assert sale["member"]["saved_fen"] == 40 + 50 + 111
    assert sale["subtotal_fen"] == 360 + 300 + 3 * 713 + 350 + 500
    # a price removed (price_fen null) falls back to the level's discount: 200 × 95 % = 190
    till.feed([("member.prices", {"prices": [{"sku": "DRK-001", "level": None, "price_fen": None}]})])
    assert till.sell([line("DRK-001")])["lines"][0]["unit_price_fen"] == 190


def test_a_level_the_programme_does_not_know_pays_the_list_price_and_earns_the_plain_rate(till):
    phone = issued(sub="m-000777", lv="钻石")
    with db.transaction(till.conn):
        members.verify_member_code(till.conn, phone.code(NOW), chain=CHAIN, store_id=STORE, now=NOW)
    sale = till.sell([line("SNK-001", 2)], member={"member_id": "m-000777"})
    assert sale["lines"][0]["unit_price_fen"] == PRICE["SNK-001"] and sale["member"]["saved_fen"] == 0
    assert sale["member"]["points_earned"] == 15                    # 1500 fen × 1 point a yuan × 100 %


def test_no_member_no_member_price_and_lines_keep_their_list_price(till):
    sale = till.sell([line("SNK-001")], member=None)
    assert sale["member"] is None
    assert (sale["lines"][0]["list_price_fen"], sale["lines"][0]["member_saved_fen"]) == (750, 0)
    assert till.events() == []


def test_points_earned_after_discounts_without_excluded_categories_times_the_level(till):
    # 金卡: SNK-001 713 × 2 = 1426, line discount 26 → 1400; HOM-001 (日用, excluded) 1511 (1590 × 95 %, half up
    # 1510.5); the sale's discount 291 spread by sales.net_amounts over 1400 and 1511
    sale = till.sell([line("SNK-001", 2, discount_fen=26), line("HOM-001")], discount_fen=291)
    nets = sales.net_amounts([1400, 1511], 291)
    assert sale["lines"][1]["unit_price_fen"] == 1511 and sum(nets) == sale["total_fen"] == 2620
    # only the snack earns: net × 1 point a yuan × 150 % / 10000, floored
    assert sale["member"]["points_earned"] == nets[0] * 1 * 150 // 10000 == 18
    event, = till.events()
    assert (event["points_earned"], event["points_spent"], event["stored_value_fen"], event["saved_fen"]) == (
        18, 0, 0, sale["member"]["saved_fen"])


def test_points_pay_whole_points_up_to_the_limit_and_earn_on_the_rest(till):
    # total 2139 (SNK-001 × 3 at 713): points pay at most 50 %, floored: 1069
    total = 3 * 713
    till.refused("points_over_limit", [line("SNK-001", 3)],
                 [{"method": "points", "amount_fen": 1070}, {"method": "cash", "amount_fen": total}])
    sale = till.sell([line("SNK-001", 3)], [{"method": "points", "amount_fen": 1069},
                                            {"method": "wechat", "amount_fen": total - 1069}])
    m = sale["member"]
    assert (m["points_spent"], m["points_value_fen"], m["offline"]) == (1069, 1069, True)
    assert m["points_earned"] == (total - 1069) * 150 // 10000 == 16   # the points' value earns nothing
    assert m["points_balance"] == 1280 - 1069 + 16
    # 2 fen a point: 101 fen is not whole points
    till.feed([("member.program", {**PROGRAM, "version": 2, "redeem_fen_per_point": 2})])
    till.refused("points_not_whole", [line("SNK-001")], [{"method": "points", "amount_fen": 101},
                                                        {"method": "cash", "amount_fen": 1000}])
    sale = till.sell([line("SNK-001")], [{"method": "points", "amount_fen": 100},
                                         {"method": "cash", "amount_fen": 1000}])
    assert (sale["member"]["points_spent"], sale["member"]["points_value_fen"]) == (50, 100)


def test_an_older_programme_arriving_late_is_kept_out(till):
    till.feed([("member.program", {**PROGRAM, "version": 5, "points_per_yuan": 2}),
               ("member.program", {**PROGRAM, "version": 4, "points_per_yuan": 10})])
    assert till.sell([line("SNK-001")])["member"]["points_earned"] == 713 * 2 * 150 // 10000


def test_points_and_stored_value_need_a_member(till):
    for method in ("points", "stored_value"):
        till.refused("member_required", [line("DRK-001")], [{"method": method, "amount_fen": 100},
                                                           {"method": "cash", "amount_fen": 100}], member=None)


def test_a_member_not_seen_in_the_last_30_minutes_is_refused(till):
    till.refused("member_not_seen", [line("DRK-001")], member={"member_id": "m-999"})
    till.at = NOW + 30 * 60 + 1
    till.refused("member_not_seen", [line("DRK-001")])


def test_a_sale_by_code_takes_the_code_and_a_replay_writes_nothing(till):
    text = till.phone.code(NOW + 30)
    till.at = NOW + 30
    sale = till.sell([line("DRK-001")], member={"code": text})
    assert sale["member"]["member_id"] == "m-000123" and sale["member"]["name"] == "张*"
    till.at = NOW + 31
    till.refused("replayed", [line("DRK-001")], member={"code": text})


def test_the_offline_points_cap_and_the_certificates_balance(till):
    """Offline: at most the snapshot less what this store spent since (plus what it gave back), and at most
    [members] offline_points_cap since the snapshot."""
    pay = lambda points: [{"method": "points", "amount_fen": points}, {"method": "cash", "amount_fen": 5000}]  # noqa: E731
    lines = [line("HOM-001", 2)]                          # 3022 fen: points pay up to 1511
    first = till.sell(lines, pay(1000))
    err = till.refused("points_offline_cap", lines, pay(281))       # 1280 − 1000 = 280 left
    assert err.detail["points_available"] == 280
    till.sell(lines, pay(280))
    # a return gives 500 points back (1000 × 1511 / 3022): they may be spent again offline
    till.give_back(first, [{"line_no": 1, "qty": 1}])
    till.sell(lines, pay(500))
    till.refused("points_offline_cap", lines, pay(1))
    # the cap: 300 since the snapshot, whatever the certificate says
    other = issued(sub="m-000200", pts=100_000)
    with db.transaction(till.conn):
        members.verify_member_code(till.conn, other.code(NOW), chain=CHAIN, store_id=STORE, now=NOW)
    till.sell(lines, pay(200), member={"member_id": "m-000200"}, points_cap=300)
    till.refused("points_offline_cap", lines, pay(101), member={"member_id": "m-000200"}, points_cap=300)
    till.refused("points_offline_cap", lines, pay(1), member={"member_id": "m-000200"}, points_cap=0)
    # with the cloud's hold the caps do not apply: the cloud checked the member's balance
    sale = till.sell(lines, pay(1500), member={"member_id": "m-000200"}, points_cap=0,
                     hold=Hold("h-00000000-0000-4000-8000-000000000001", 1500, 0, 98_000, 0))
    assert sale["member"]["offline"] is False
    assert till.events()[-1]["hold_id"] == "h-00000000-0000-4000-8000-000000000001"


def test_offline_stored_value_is_refused_at_cap_0_and_capped_above(till):
    lines = [line("HOM-001", 2)]                          # 3022 fen
    sv = lambda fen: [{"method": "stored_value", "amount_fen": fen}, {"method": "cash", "amount_fen": 5000}]  # noqa: E731
    till.refused("stored_value_offline_disabled", lines, sv(1))                # the default: online only
    till.sell(lines, sv(2000), stored_value_cap_fen=2500)
    err = till.refused("stored_value_offline_cap", lines, sv(501), stored_value_cap_fen=2500)
    assert err.detail["balance_fen_available"] == 500
    # the certificate's balance (5000) bounds it too
    till.sell(lines, sv(3000), stored_value_cap_fen=10_000)
    till.refused("stored_value_offline_cap", lines, sv(1), stored_value_cap_fen=10_000)


def test_returns_give_back_points_and_stored_value_exactly_over_partial_returns(till):
    hold = Hold("h-00000000-0000-4000-8000-000000000002", 700, 1234, 580, 3766)
    # 3 × SNK-001 (713) + 2 × HOM-001 (1511) = 5161; points 700, stored value 1234, the rest by WeChat
    sale = till.sell([line("SNK-001", 3), line("HOM-001", 2)],
                     [{"method": "points", "amount_fen": 700}, {"method": "stored_value", "amount_fen": 1234},
                      {"method": "wechat", "amount_fen": 5161 - 1934}], hold=hold)
    m = sale["member"]
    assert (m["points_spent"], m["stored_value_fen"], m["offline"]) == (700, 1234, False)
    assert (m["points_balance"], m["stored_value_balance_fen"]) == (1280 - 700 + m["points_earned"], 5000 - 1234)
    earned = m["points_earned"]
    assert earned == (3 * 713 - 700) * 150 // 10000

    first = till.give_back(sale, [{"line_no": 1, "qty": 1}])            # 713 of 5161
    assert first["refund_fen"] == 713
    assert first["stored_value_fen"] == 1234 * 713 // 5161 == 170
    assert first["points_value_fen"] == 700 * 713 // 5161 == 96
    assert first["member"] == {"member_id": "m-000123", "points_taken_back": earned * 713 // 5161,
                               "points_given_back": 96, "points_value_fen": 96, "stored_value_fen": 170}
    second = till.give_back(sale, [{"line_no": 2, "qty": 1}])
    last = till.give_back(sale, [{"line_no": 1, "qty": 2}, {"line_no": 2, "qty": 1}])
    returns = [first, second, last]
    assert sum(r["refund_fen"] for r in returns) == 5161
    assert sum(r["stored_value_fen"] for r in returns) == 1234
    assert sum(r["points_value_fen"] for r in returns) == 700
    assert sum(r["member"]["points_taken_back"] for r in returns) == earned
    # the events' signed deltas add up to nothing: the member is where they started
    events = till.events()
    assert [e["activity_id"] for e in events] == [f"sale:{sale['id']}"] + [f"return:{r['id']}" for r in returns]
    assert sum(e["points_earned"] for e in events) == sum(e["points_spent"] for e in events) == 0
    assert sum(e["stored_value_fen"] for e in events) == 0
    assert all(e["hold_id"] is None and e["offline"] is False for e in events[1:])
    # the day's split by method: the balance and the points come back as themselves, the rest as cash
    summary = sales.day_summary(till.conn, "2026-11-29")
    assert summary["net_by_method_fen"]["points"] == summary["net_by_method_fen"]["stored_value"] == 0
    assert summary["net_by_method_fen"]["wechat"] == 5161 - 1934
    assert summary["net_by_method_fen"]["cash"] == -(5161 - 1934)


def test_one_event_per_sale_written_in_its_transaction(till):
    """A sale refused after its rows were written (the offline cap is checked last) leaves no event: the
    event is the transaction's, so a kill -9 either keeps the sale and its event or neither."""
    sale = till.sell([line("SNK-001")])
    event, = till.events()
    assert event["activity_id"] == f"sale:{sale['id']}" and event["sale_id"] == sale["id"]
    assert event["return_id"] is None and event["level"] == "金卡" and event["at"] == sale["created_at"]
    till.refused("stored_value_offline_disabled", [line("SNK-001")],
                 [{"method": "stored_value", "amount_fen": 100}, {"method": "cash", "amount_fen": 1000}])
    assert len(till.events()) == 1
    assert till.conn.execute("SELECT count(*) FROM member_activity").fetchone()[0] == 1


def test_the_shift_and_the_day_add_up_with_points_and_stored_value(till):
    """交班 and 日结 by method: the cash the drawer should hold counts only the cash part of a member's refund;
    points and stored value are their own methods, netted by the return that gave them back."""
    with db.transaction(till.conn):
        shift = shifts.open_shift(till.conn, shifts.ShiftOpen(cashier="小王", float_fen=10_000), till.ctx(),
                                  till="till-1")
    sale = till.sell([line("SNK-001", 2)],                                   # 1426
                     [{"method": "points", "amount_fen": 300}, {"method": "stored_value", "amount_fen": 500},
                      {"method": "cash", "amount_fen": 1000}], stored_value_cap_fen=5000)
    assert sale["change_fen"] == 374
    back = till.give_back(sale, [{"line_no": 1, "qty": 1}])                  # 713: half of each part
    assert (back["stored_value_fen"], back["points_value_fen"]) == (250, 150)
    cash_back = 713 - 250 - 150
    figures = shifts.get_shift(till.conn, shift["id"])["figures"]
    assert figures["net_by_method_fen"] == {"cash": 1000 - 374 - cash_back, "points": 300 - 150,
                                            "stored_value": 500 - 250}
    assert figures["cash_refunds_fen"] == cash_back
    assert figures["expected_cash_fen"] == 10_000 + 1000 - 374 - cash_back
    assert sum(figures["net_by_method_fen"].values()) == figures["net_fen"] == 1426 - 713
    assert sales.day_summary(till.conn, "2026-11-29")["net_by_method_fen"] == figures["net_by_method_fen"]
