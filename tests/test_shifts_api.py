"""交班 and 日结 through the local API: a till's shift from opening to the close, and bad input that
changes nothing (closing twice, a negative count, another till's shift)."""

from __future__ import annotations

import pytest

from edge.core import config as config_mod
from tests.conftest import Api, dump, query, seed, start_client, write_config
from tests.test_api import make_tokens


def cash(amount: int) -> list[dict]:
    return [{"method": "cash", "amount_fen": amount}]


async def test_a_till_opens_sells_closes_and_the_day_close_lists_the_shift(api, db_path):
    status, body = await api.get("/shifts/current")
    assert status == 404 and body["error"]["code"] == "no_open_shift"
    shift = await api.ok("/shifts", {"cashier": "王芳", "float_fen": 10000})
    assert shift["till"] == "local" and shift["open"] and shift["number"] == 1

    sale = (await api.ok("/sales", {"lines": [{"sku": "DRK-001", "qty": 2}], "payments": cash(500)}))["sale"]
    assert sale["shift_id"] == shift["id"]
    await api.ok("/sales", {"lines": [{"sku": "SNK-001", "qty": 1}], "payments": [{"method": "wechat",
                                                                                   "amount_fen": 750}]})
    await api.ok(f"/sales/{sale['id']}/returns", {"lines": [{"line_no": 1, "qty": 1}], "refund_method": "cash"})
    status, current = await api.get("/shifts/current")
    assert status == 200 and current["figures"]["expected_cash_fen"] == 10000 + 500 - 100 - 200

    closed = await api.ok(f"/shifts/{shift['id']}/close", {"counted_fen": 10300, "closed_by": "王芳"})
    assert (closed["expected_fen"], closed["difference_fen"], closed["open"]) == (10200, 100, False)
    assert closed["print_job"] is None  # no printer here prints it (tests/test_shifts_browser.py prints one)
    assert query(db_path, "SELECT user_name, role, action FROM audit_log") == [("local", "till", "shift.close")]

    status, day = await api.get("/day-close")
    assert status == 200 and [s["id"] for s in day["shifts"]] == [shift["id"]]
    assert (day["sales_count"], day["sales_fen"], day["refunds_fen"], day["open_shifts"]) == (2, 1150, 200, 0)
    assert day["difference_fen"] == 100 and day["outside_shifts"]["sales_count"] == 0
    status, listed = await api.get("/shifts", params={"date": day["date"]})
    assert status == 200 and [s["number"] for s in listed["items"]] == [1]
    status, one = await api.get(f"/shifts/{shift['id']}")
    assert status == 200 and one["counted_fen"] == 10300


@pytest.mark.parametrize("path,body,status,code", [
    ("/shifts/{id}/close", {"counted_fen": -1, "closed_by": "王芳"}, 422, "invalid_body"),
    ("/shifts/{id}/close", {"counted_fen": 100.5, "closed_by": "王芳"}, 422, "invalid_body"),
    ("/shifts/{id}/close", {"counted_fen": 100}, 422, "invalid_body"),
    ("/shifts/{id}/close", {"counted_fen": 100, "closed_by": "王芳", "extra": 1}, 422, "invalid_body"),
    ("/shifts/999/close", {"counted_fen": 100, "closed_by": "王芳"}, 404, "unknown_shift"),
    ("/shifts/abc/close", {"counted_fen": 100, "closed_by": "王芳"}, 404, "unknown_shift"),
    ("/shifts", {"cashier": "李娜"}, 409, "shift_open"),
    ("/shifts", {"cashier": "", "float_fen": 0}, 422, "invalid_body"),
    ("/shifts", {"cashier": "李娜", "float_fen": -100}, 422, "invalid_body"),
])
async def test_bad_input_changes_nothing(api, db_path, path, body, status, code):
    shift = await api.ok("/shifts", {"cashier": "王芳", "float_fen": 5000})
    before = dump(db_path)
    got, error, _ = await api.post(path.format(id=shift["id"]), body)
    assert (got, error["error"]["code"]) == (status, code), error
    assert dump(db_path) == before


async def test_closing_twice_is_refused_and_keeps_the_first_count(api, db_path):
    shift = await api.ok("/shifts", {"cashier": "王芳", "float_fen": 5000})
    await api.ok(f"/shifts/{shift['id']}/close", {"counted_fen": 5000, "closed_by": "王芳"})
    before = dump(db_path)
    status, error, _ = await api.post(f"/shifts/{shift['id']}/close", {"counted_fen": 4000, "closed_by": "王芳"})
    assert status == 409 and error["error"]["code"] == "shift_closed"
    assert dump(db_path) == before
    assert (await api.get(f"/shifts/{shift['id']}"))[1]["counted_fen"] == 5000
    await api.ok("/shifts", {"cashier": "李娜"})  # the till may open its next shift


@pytest.fixture
async def two_tills(tmp_path):
    cfg = config_mod.load(write_config(tmp_path, "[api]\nrequire_token = true\n"))
    seed(cfg.db_path)
    till1, till2 = make_tokens(cfg.db_path, "till-1", "till-2")
    client = await start_client(cfg)
    try:
        yield cfg, Api(client, {"Authorization": f"Bearer {till1}"}), Api(client, {"Authorization": f"Bearer {till2}"})
    finally:
        await client.close()


async def test_a_till_cannot_close_another_tills_shift_and_sells_into_its_own(two_tills):
    cfg, one, two = two_tills
    first = await one.ok("/shifts", {"cashier": "王芳", "float_fen": 5000})
    second = await two.ok("/shifts", {"cashier": "李娜", "float_fen": 8000})
    assert (first["till"], second["till"]) == ("till-1", "till-2")
    sale = (await two.ok("/sales", {"lines": [{"sku": "DRK-001", "qty": 1}], "payments": cash(200)}))["sale"]
    assert sale["shift_id"] == second["id"]

    before = dump(cfg.db_path)
    status, error, _ = await two.post(f"/shifts/{first['id']}/close", {"counted_fen": 5000, "closed_by": "李娜"})
    assert status == 403 and error["error"]["code"] == "other_till"
    assert dump(cfg.db_path) == before
    assert (await one.get("/shifts/current"))[1]["id"] == first["id"]
    assert (await two.get("/shifts/current"))[1]["figures"]["expected_cash_fen"] == 8200
