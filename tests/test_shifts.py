"""交班 and 日结 in the store: the arithmetic of a shift's cash, and the business day's cut-off.

Sales, returns and hand-overs are written by the store's own functions (the till API's code path below
its HTTP layer), in transactions with chosen times, so the cut-off can be put either side of midnight.
"""

from __future__ import annotations

from datetime import datetime, time, timezone
from zoneinfo import ZoneInfo

import pytest

from edge.core.clock import business_date, day_bounds, iso
from edge.core.context import WriteContext
from edge.core.errors import InputError
from edge.core.schemas import ReturnIn, SaleIn
from edge.store import db, overview, pickups, sales, shifts, spool
from edge.store.day_close import day_close
from tests.test_verification import CODE, STORE, feed, order

TZ = ZoneInfo("Asia/Shanghai")
CUTOFF = time(1, 0)
MANAGER = {"user": "boss", "role": "manager"}


def at(till: str, local: str, cutoff: time = CUTOFF) -> WriteContext:
    """A write at `till` at the store's local time `local` ("2026-11-22 23:10")."""
    moment = datetime.fromisoformat(local).replace(tzinfo=TZ).astimezone(timezone.utc)
    return WriteContext(till, iso(moment), business_date(moment, TZ, cutoff))


def sale(lines: dict[str, int], payments: list[tuple[str, int]]) -> SaleIn:
    return SaleIn.model_validate({"lines": [{"sku": s, "qty": q} for s, q in lines.items()],
                                  "payments": [{"method": m, "amount_fen": a} for m, a in payments]})


@pytest.fixture
def conn(db_path):
    feed(db_path, [order()])
    connection = db.open_store_db(db_path)
    yield connection
    connection.close()


def write(conn, fn, *args, **kwargs):
    with db.transaction(conn):
        return fn(conn, *args, **kwargs)


def test_a_shift_counts_its_cash_card_change_refund_and_hand_over(conn):
    opened = write(conn, shifts.open_shift, shifts.ShiftOpen(cashier="王芳", float_fen=20000),
                   at("till-1", "2026-11-22 08:00"), till="till-1", user_name="xiaowang")
    assert opened["open"] and opened["business_date"] == "2026-11-22"
    assert opened["figures"]["expected_cash_fen"] == 20000

    ctx = at("till-1", "2026-11-22 09:00")
    first = write(conn, sales.record_sale, sale({"DRK-001": 3}, [("cash", 1000)]), ctx)["sale"]   # 600, 400 change
    write(conn, sales.record_sale, sale({"SNK-001": 2}, [("card", 1500)]), ctx)
    write(conn, sales.record_sale, sale({"DAI-001": 2}, [("wechat", 200), ("cash", 1000)]), ctx)  # 700: 500 change
    write(conn, sales.record_sale, sale({"DRK-001": 1}, [("cash", 200)]), at("till-2", "2026-11-22 09:05"))
    write(conn, sales.record_return, first["id"], ReturnIn(lines=[{"line_no": 1, "qty": 1}], refund_method="cash"),
          at("till-1", "2026-11-22 10:00"))
    # a hand-over on the dashboard by the person who opened the shift counts in it
    write(conn, pickups.hand_over, pickups.HandOver(code=CODE, operator="王芳"),
          pickups.Checks(store_id=STORE, online=True), at("ui:xiaowang", "2026-11-22 10:30"))

    f = shifts.get_shift(conn, opened["id"])["figures"]
    assert (f["sales_count"], f["sales_fen"], f["returns_count"], f["refunds_fen"]) == (3, 2800, 1, 200)
    assert f["pickups_count"] == 1
    assert f["net_by_method_fen"] == {"card": 1500, "cash": 2000 - 900 - 200, "wechat": 200}
    assert (f["cash_taken_fen"], f["change_fen"], f["cash_refunds_fen"]) == (2000, 900, 200)
    assert f["expected_cash_fen"] == 20000 + 2000 - 900 - 200 == 20900

    closed = write(conn, shifts.close_shift, opened["id"],
                   shifts.ShiftClose(counted_fen=20850, closed_by="王芳"), at("till-1", "2026-11-22 16:00"),
                   MANAGER, till="till-1")
    assert (closed["expected_fen"], closed["counted_fen"], closed["difference_fen"]) == (20900, 20850, -50)
    assert not closed["open"] and closed["closed_by"] == "王芳"
    audit = conn.execute("SELECT user_name, action, target FROM audit_log").fetchall()
    assert [tuple(r) for r in audit] == [("boss", "shift.close", str(opened["number"]))]

    # after the close, the till's sales belong to no shift: the kept figures do not move
    write(conn, sales.record_sale, sale({"DRK-001": 1}, [("cash", 200)]), at("till-1", "2026-11-22 16:05"))
    again = shifts.get_shift(conn, opened["id"])
    assert again["figures"]["sales_count"] == 3 and again["difference_fen"] == -50


def test_one_open_shift_per_till_and_per_person_and_a_close_only_once(conn):
    ctx = at("till-1", "2026-11-22 08:00")
    opened = write(conn, shifts.open_shift, shifts.ShiftOpen(cashier="王芳"), ctx, till="till-1", user_name="xw")
    for till, user in (("till-1", None), ("till-2", "xw")):
        with pytest.raises(InputError) as info:
            write(conn, shifts.open_shift, shifts.ShiftOpen(cashier="李娜"), ctx, till=till, user_name=user)
        assert info.value.code == "shift_open" and info.value.status == 409
    with pytest.raises(InputError) as info:
        write(conn, shifts.close_shift, opened["id"], shifts.ShiftClose(counted_fen=0, closed_by="李娜"), ctx,
              MANAGER, till="till-2")
    assert info.value.code == "other_till" and info.value.status == 403
    write(conn, shifts.close_shift, opened["id"], shifts.ShiftClose(counted_fen=0, closed_by="王芳"), ctx, MANAGER)
    with pytest.raises(InputError) as info:
        write(conn, shifts.close_shift, opened["id"], shifts.ShiftClose(counted_fen=5, closed_by="王芳"), ctx, MANAGER)
    assert info.value.code == "shift_closed" and info.value.status == 409
    assert shifts.get_shift(conn, opened["id"])["counted_fen"] == 0
    assert conn.execute("SELECT count(*) FROM audit_log").fetchone()[0] == 1


def test_the_close_queues_the_shift_report(conn):
    write(conn, spool.set_routes, {"shift_report": ("counter", 86400)}, ["counter"])
    ctx = at("till-1", "2026-11-22 08:00")
    opened = write(conn, shifts.open_shift, shifts.ShiftOpen(cashier="王芳"), ctx, till="till-1")
    closed = write(conn, shifts.close_shift, opened["id"], shifts.ShiftClose(counted_fen=0, closed_by="王芳"), ctx,
                   MANAGER)
    job = spool.get_job(conn, closed["print_job"]["id"])
    assert job["kind"] == "shift_report" and job["payload"] == {"shift_id": opened["id"]}
    assert shifts.get_shift(conn, opened["id"])["print_job"]["id"] == job["id"]


def test_the_cut_off_puts_a_sale_at_0030_in_the_day_before_and_one_at_0105_in_the_next(conn):
    late = at("till-1", "2026-11-22 23:30")
    evening = write(conn, shifts.open_shift, shifts.ShiftOpen(cashier="夜班"), late, till="till-1")
    write(conn, sales.record_sale, sale({"DRK-001": 1}, [("cash", 200)]), at("till-1", "2026-11-23 00:30"))
    write(conn, shifts.close_shift, evening["id"], shifts.ShiftClose(counted_fen=200, closed_by="夜班"),
          at("till-1", "2026-11-23 00:50"), MANAGER)
    write(conn, sales.record_sale, sale({"SNK-001": 1}, [("card", 750)]), at("till-2", "2026-11-23 01:05"))

    before = day_close(conn, "2026-11-22", day_bounds("2026-11-22", TZ, CUTOFF))
    after = day_close(conn, "2026-11-23", day_bounds("2026-11-23", TZ, CUTOFF))
    assert (before["sales_count"], before["sales_fen"], before["net_by_method_fen"]) == (1, 200, {"cash": 200})
    assert [s["number"] for s in before["shifts"]] == [evening["number"]] and before["open_shifts"] == 0
    assert before["difference_fen"] == 0 and before["outside_shifts"] == {"sales_count": 0, "sales_fen": 0}
    assert (after["sales_count"], after["sales_fen"], after["shifts"]) == (1, 750, [])
    assert after["outside_shifts"] == {"sales_count": 1, "sales_fen": 750}  # till-2 never opened a shift
    # without the cut-off, the sale at 00:30 is the 23rd's
    assert at("till-1", "2026-11-23 00:30", time(0)).day == "2026-11-23"


def test_a_hand_over_counts_in_the_day_of_its_time_with_the_cut_off(conn):
    write(conn, pickups.hand_over, pickups.HandOver(code=CODE, operator="王芳"),
          pickups.Checks(store_id=STORE, online=True), at("till-1", "2026-11-23 00:40"))
    assert day_close(conn, "2026-11-22", day_bounds("2026-11-22", TZ, CUTOFF))["pickups_count"] == 1
    assert day_close(conn, "2026-11-23", day_bounds("2026-11-23", TZ, CUTOFF))["pickups_count"] == 0
    # the manager's overview counts it in the same business day
    today = overview.figures(conn, "2026-11-22", TZ, CUTOFF)
    assert today["orders_today"]["picked_up"] == 1
    # and its chart shows it at 00:xx as online revenue, as the report does
    assert [(h["hour"], h["online_count"], h["till_fen"]) for h in today["hours"]] == [(0, 1, 0)]
    assert overview.figures(conn, "2026-11-23", TZ, CUTOFF)["orders_today"]["picked_up"] == 0
