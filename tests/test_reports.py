"""Reports (edge/store/reports.py): the arithmetic of a day and a range, written through the store's own
functions at chosen times (a WriteContext of that moment, as tests.conftest seeds)."""

from __future__ import annotations

import io
import random
import re
from datetime import datetime, time
from zoneinfo import ZoneInfo

import openpyxl
import pytest

from edge.core import xlsx
from edge.core.clock import business_date, iso
from edge.core.context import WriteContext
from edge.core.errors import InputError
from edge.core.schemas import ReturnIn, SaleIn
from edge.store import db, orders, pickups, report_sums, reports, sales, shifts
from edge.store.report_sums import ClosedDays
from edge.ui.web import TEXT
from protocol.orders import OrderClosed
from sync.changes import apply_page
from tests.conftest import Api, dump, start_client
from tests.test_ui_manager import Browser, add_users

TZ = ZoneInfo("Asia/Shanghai")
MIDNIGHT = time(0)
DAY = "2026-11-20"


def at(local: str, device: str = "till-1", cutoff: time = MIDNIGHT) -> WriteContext:
    """A write at a local time of the store (Asia/Shanghai), on the business day the cut-off gives it."""
    moment = datetime.fromisoformat(local).replace(tzinfo=TZ)
    return WriteContext(device, iso(moment), business_date(moment, TZ, cutoff))


def sell(conn, ctx: WriteContext, lines: list[tuple[str, int]], payments: list[tuple[str, int]]) -> dict:
    body = SaleIn.model_validate({"lines": [{"sku": s, "qty": q} for s, q in lines], "cashier": "王芳",
                                  "payments": [{"method": m, "amount_fen": a} for m, a in payments]})
    return sales.record_sale(conn, body, ctx)["sale"]


def receive_order(conn, ctx: WriteContext, order_id: str, number: str, code: str, lines: list[dict]) -> None:
    cursor = conn.execute("SELECT coalesce(max(cursor), 0) FROM inbox").fetchone()[0] + 1
    change = {"cursor": cursor, "id": f"ch-{cursor}", "type": "order.created", "created_at": ctx.now,
              "payload": {"order_id": order_id, "number": number, "kind": "pickup",
                          "total_fen": sum(x["qty"] * x["price_fen"] for x in lines), "lines": lines,
                          "pickup_code_sha256": pickups.code_hash(code)}}
    assert apply_page(conn, [change], cursor, ctx)["rejected"] == 0


def hand_over(conn, ctx: WriteContext, code: str, operator: str = "王芳") -> None:
    body = pickups.HandOver.model_validate({"code": code, "operator": operator})
    pickups.hand_over(conn, body, pickups.Checks("test-store", online=True), ctx)


WATER = [{"sku": "DRK-001", "name": "农夫山泉", "qty": 3, "price_fen": 200}]
CHIPS = [{"sku": "SNK-001", "name": "乐事", "qty": 1, "price_fen": 750}]


@pytest.fixture
def conn(config):
    c = db.open_store_db(config.db_path)
    yield c
    c.close()


def write(conn, fn):
    with db.transaction(conn):
        return fn()


def a_day(conn) -> None:
    """2026-11-20: two till sales (one cash with change), a return, an order handed over, one cancelled,
    and one handed over then reversed; and a sale the next day and the day before."""
    first = write(conn, lambda: sell(conn, at(f"{DAY}T09:15"), [("DRK-002", 2), ("SNK-001", 1)],
                                     [("cash", 2000)]))          # 1450, change 550
    write(conn, lambda: sell(conn, at(f"{DAY}T18:40"), [("DAI-001", 4)], [("wechat", 1400)]))
    write(conn, lambda: sales.record_return(conn, first["id"], ReturnIn.model_validate(
        {"lines": [{"line_no": 1, "qty": 1}], "refund_method": "cash", "reason": "破损"}), at(f"{DAY}T10:00")))
    write(conn, lambda: receive_order(conn, at(f"{DAY}T11:00", "cloud"), "o-1", "A101", "111111", WATER))
    write(conn, lambda: hand_over(conn, at(f"{DAY}T12:05"), "111111"))
    write(conn, lambda: receive_order(conn, at(f"{DAY}T11:30", "cloud"), "o-2", "A102", "222222", CHIPS))
    write(conn, lambda: orders.close_from_cloud(conn, OrderClosed(order_id="o-2"), "cancelled", at(f"{DAY}T13:00")))
    write(conn, lambda: receive_order(conn, at(f"{DAY}T14:00", "cloud"), "o-3", "A103", "333333", CHIPS))
    write(conn, lambda: hand_over(conn, at(f"{DAY}T14:10"), "333333"))
    write(conn, lambda: pickups.reverse(conn, "o-3", pickups.Reversal(operator="李店长", reason="交错顾客"),
                                        at(f"{DAY}T14:20")))
    write(conn, lambda: sell(conn, at("2026-11-21T09:00"), [("DRK-001", 1)], [("alipay", 200)]))
    write(conn, lambda: sell(conn, at("2026-11-19T09:00"), [("DRK-001", 5)], [("alipay", 1000)]))
    write(conn, lambda: sell(conn, at("2026-11-13T20:00"), [("DRK-001", 2)], [("alipay", 400)]))


def test_a_day_counts_till_sales_refunds_and_handed_over_orders_only(conn):
    a_day(conn)
    r = reports.report(conn, DAY, DAY, TZ, MIDNIGHT)
    refund = 350 * 1450 // 1450  # the first line's net share of its sale (no sale discount): 350
    assert r["till"] == {"sales_count": 2, "sales_fen": 1450 + 1400, "returns_count": 1, "refunds_fen": refund,
                         "net_fen": 2850 - refund}
    # o-1 handed over; o-2 cancelled; o-3 handed over and reversed: only o-1 counts
    assert r["online"] == {"handed_over_count": 1, "fen": 600, "received_count": 3}
    assert r["revenue_fen"] == 2850 - 350 + 600
    # cash: 2000 paid - 550 change - 350 refunded; wechat as paid
    assert r["payments_fen"] == {"wechat": 1400, "cash": 1100}
    assert sum(r["payments_fen"].values()) == r["till"]["net_fen"]
    hours = {h["hour"]: h for h in r["hours"]}
    assert hours[9]["till_fen"] == 1450 and hours[18]["till_fen"] == 1400 and hours[12]["online_fen"] == 600
    assert sum(h["till_fen"] for h in r["hours"]) == r["till"]["sales_fen"]
    assert r["days"] == [{"date": DAY, "sales_count": 2, "sales_fen": 2850, "refunds_fen": 350, "online_count": 1,
                          "online_fen": 600, "revenue_fen": 3100}]
    # the 核销 list: both hand-overs, the reversed one marked, by order number
    listed = [(p["order_number"], p["staff"], p["reversed_at"] is not None) for p in r["pickups"]["items"]]
    assert listed == [("A101", "王芳", False), ("A103", "王芳", True)]
    assert r["pickups"]["items"][0]["verified_at"] == at(f"{DAY}T12:05").now


def test_best_sellers_and_categories_add_till_lines_and_online_orders(conn):
    a_day(conn)
    r = reports.report(conn, DAY, DAY, TZ, MIDNIGHT)
    top = {p["sku"]: (p["qty"], p["fen"]) for p in r["top_products"]}
    assert top == {"DAI-001": (4, 1400), "SNK-001": (1, 750), "DRK-002": (2, 700), "DRK-001": (3, 600)}
    assert [p["sku"] for p in r["top_products"]] == ["DAI-001", "SNK-001", "DRK-002", "DRK-001"]
    cats = {c["category"]: c["fen"] for c in r["categories"]}
    assert cats == {"乳品": 1400, "饮料": 1300, "零食": 750}


def test_comparisons_for_a_day_and_for_a_range(conn):
    a_day(conn)
    day = reports.report(conn, DAY, DAY, TZ, MIDNIGHT)
    compare = {c["what"]: c for c in day["compare"]}
    assert compare["previous_day"]["from"] == "2026-11-19" and compare["previous_day"]["revenue_fen"] == 1000
    assert compare["previous_day"]["revenue_change_pct"] == 210.0
    assert compare["same_day_last_week"]["from"] == "2026-11-13" and compare["same_day_last_week"]["revenue_fen"] == 400
    week = reports.report(conn, "2026-11-20", "2026-11-21", TZ, MIDNIGHT)
    assert week["revenue_fen"] == 3100 + 200 and [d["date"] for d in week["days"]] == ["2026-11-20", "2026-11-21"]
    (previous,) = week["compare"]
    assert (previous["what"], previous["from"], previous["to"], previous["revenue_fen"]) == \
        ("previous_range", "2026-11-18", "2026-11-19", 1000)
    empty = reports.report(conn, "2025-01-01", "2025-01-01", TZ, MIDNIGHT)
    assert empty["revenue_fen"] == 0 and empty["compare"][0]["revenue_change_pct"] is None


def test_the_cut_off_puts_a_half_past_midnight_sale_in_the_day_before(conn):
    one = time(1, 0)
    write(conn, lambda: sell(conn, at("2026-11-21T00:30", cutoff=one), [("DRK-001", 1)], [("wechat", 200)]))
    write(conn, lambda: receive_order(conn, at("2026-11-20T23:00", "cloud", one), "o-9", "A109", "999999", CHIPS))
    write(conn, lambda: hand_over(conn, at("2026-11-21T00:40", cutoff=one), "999999"))
    write(conn, lambda: sell(conn, at("2026-11-21T01:10", cutoff=one), [("DRK-002", 1)], [("wechat", 350)]))
    day = reports.report(conn, "2026-11-20", "2026-11-20", TZ, one)
    assert day["till"]["sales_fen"] == 200 and day["online"]["fen"] == 750
    assert {h["hour"]: h["till_fen"] for h in day["hours"]} == {0: 200}
    assert [p["order_number"] for p in day["pickups"]["items"]] == ["A109"]
    assert day["days"][0]["online_fen"] == 750
    assert reports.report(conn, "2026-11-21", "2026-11-21", TZ, one)["revenue_fen"] == 350
    # without the cut-off the same hand-over is the next day's
    assert reports.report(conn, "2026-11-21", "2026-11-21", TZ, MIDNIGHT)["online"]["fen"] == 750


def test_closed_days_are_reused_until_their_rows_change(conn):
    a_day(conn)
    closed = ClosedDays()
    today = "2026-11-21"

    def both(first="2026-11-14", last=today):
        cached = reports.report(conn, first, last, TZ, MIDNIGHT, today=today, closed=closed)
        assert cached == reports.report(conn, first, last, TZ, MIDNIGHT)  # the same figures as read whole
        return cached

    assert both()["revenue_fen"] == 1000 + 3100 + 200
    misses = closed.misses
    assert both()["revenue_fen"] == 4300 and closed.misses == misses and closed.hits
    # today's trading is read at every request; the closed days stay cached
    write(conn, lambda: sell(conn, at(f"{today}T10:00"), [("DRK-002", 1)], [("wechat", 350)]))
    assert both()["revenue_fen"] == 4650 and closed.misses == misses
    # a reversal today of a hand-over of the 20th changes a closed day: read again
    write(conn, lambda: pickups.reverse(conn, "o-1", pickups.Reversal(operator="李店长", reason="误操作"),
                                        at(f"{today}T11:00")))
    r = both()
    assert r["revenue_fen"] == 4650 - 600 and closed.misses == misses + 1
    assert both(DAY, DAY)["online"]["fen"] == 0


def test_the_best_sellers_of_two_ranges_added_are_those_of_both(monkeypatch):
    """merge() ranks only each side's top and the other side's SKUs: never another answer than ranking all."""
    monkeypatch.setattr(report_sums, "TOP_PRODUCTS", 3)
    rng = random.Random(14)
    for _ in range(300):
        sides = []
        for size in (rng.randint(0, 40), rng.randint(0, 6)):
            skus = {f"S{rng.randint(1, 50):02d}": [1, rng.choice((0, 100, 200, 250, 300, rng.randint(1, 900)))]
                    for _ in range(size)}
            sides.append({"skus": skus, "top": report_sums.top(skus)})
        merged = report_sums.merge(*sides)
        assert merged["top"] == report_sums.top(merged["skus"]), sides


@pytest.mark.parametrize("first, last, code", [
    ("2026-11-31", "2026-12-01", "invalid_query"), ("2026-1-1", "2026-01-02", "invalid_query"),
    ("2026-11-21", "2026-11-20", "invalid_range"), ("2025-01-01", "2026-01-02", "range_too_long")])
def test_bad_ranges_are_refused_with_a_400(first, last, code):
    with pytest.raises(InputError) as caught:
        reports.check_range(first, last)
    assert caught.value.status == 400 and caught.value.code == code, caught.value.message
    assert reports.check_range("2025-01-01", "2026-01-01") == ("2025-01-01", "2026-01-01")  # 366 days


# -- GET /api/v1/reports ----------------------------------------------------------------------------

async def test_the_api_answers_the_store_figures_and_refuses_bad_ranges(conn, config):
    a_day(conn)
    expected = reports.report(conn, DAY, DAY, TZ, MIDNIGHT)
    before = dump(config.db_path)
    client = await start_client(config)
    try:
        api = Api(client)
        status, body = await api.get("/reports", {"from": DAY, "to": DAY})
        assert status == 200 and body == expected
        status, only_from = await api.get("/reports", {"from": DAY})
        assert status == 200 and only_from == expected
        status, week = await api.get("/reports", {"from": "2026-11-14", "to": DAY})
        assert status == 200 and week["days_count"] == 7 and week["revenue_fen"] == 3100 + 1000
        for params, code in (({"from": "2026-11-31"}, "invalid_query"), ({"from": "20261120"}, "invalid_query"),
                             ({"from": DAY, "to": ""}, "invalid_query"),
                             ({"from": DAY, "to": "2026-11-19"}, "invalid_range"),
                             ({"from": "2025-11-19", "to": DAY}, "range_too_long")):
            status, body = await api.get("/reports", params)
            assert status == 400 and body["error"]["code"] == code, (params, body)
            assert body["error"]["message"] and body["error"]["fields"][0]["field"] in ("from", "to")
    finally:
        await client.close()
    assert dump(config.db_path) == before


# -- the page /ui/reports -----------------------------------------------------------------------------

def test_every_report_word_is_in_both_languages():
    import edge.ui  # noqa: F401 (registers every page's words)

    zh = {k for k in TEXT["zh"] if k.startswith("reports_")}
    en = {k for k in TEXT["en"] if k.startswith("reports_")}
    assert zh and zh == en, zh ^ en


def data_fen(html: str, element_id: str) -> int:
    return int(re.search(rf'id="{element_id}"[^>]*data-fen="(-?\d+)"', html).group(1))


async def test_the_page_shows_a_past_day_and_refuses_a_bad_range(conn, config):
    a_day(conn)
    add_users(config.db_path)
    client = await start_client(config)
    try:
        boss = Browser(client)
        await boss.log_in("boss")
        html = await boss.get(f"/ui/reports?from={DAY}&to={DAY}")
        assert data_fen(html, "report-revenue") == 3100
        assert data_fen(html, "report-till") == 2500 and data_fen(html, "report-online") == 600
        assert "￥31.00" in html and "2026-11-20（周五）营业日" in html
        assert 'data-compare="previous_day" data-fen="1000"' in html and "+210.0%" in html
        assert 'data-method="cash" data-fen="1100"' in html and "现金" in html and "线上支付" in html
        pickups = html[html.index('id="report-pickups"'):html.index('id="report-exports"')]
        assert "A101" in pickups and "20:05" not in pickups and "12:05:00" in pickups  # the store's zone
        assert "已冲正（李店长）" in pickups and "o-1" not in pickups
        assert 'href="/ui/export/sales.xlsx?from=2026-11-20&amp;to=2026-11-20"' in html
        assert 'id="report-days"' not in html  # a day has no by-day table

        week = await boss.get("/ui/reports?from=2026-11-14&to=2026-11-20")
        assert 'id="report-days"' in week and 'data-date="2026-11-19" data-fen="1000"' in week
        assert 'data-compare="previous_range"' in week
        assert "核销记录（2026-11-20）" in week and 'data-order-number="A101"' in week  # the range's last day

        for query, words in (("from=2026-11-20&to=2026-11-01", "结束日期不能早于开始日期"),
                             ("from=2026-02-30", "日期格式不对"), ("from=2024-01-01&to=2026-01-01", "一次最多查看 366 天")):
            resp = await client.get(f"/ui/reports?{query}")
            body = await resp.text()
            assert resp.status == 400 and words in body and 'id="report-revenue"' not in body, query

        client.session.cookie_jar.update_cookies({"se_lang": "en"})
        english = await boss.get(f"/ui/reports?from={DAY}&to={DAY}")
        for words in ("Revenue", "Business day 2026-11-20 (Fri)", "vs the day before (2026-11-19)", "Cash",
                      "Paid online (to the chain)", "Best sellers", "Pickups (核销) on 2026-11-20", "Reversed (李店长)"):
            assert words in english, words
        assert not any(word in english for word in ("营业额", "收款方式", "核销记录", "已冲正", "现金"))

        till = Browser(client)
        client.session.cookie_jar.clear()
        await till.log_in("till")
        await till.get("/ui/reports", status=403)
    finally:
        await client.close()


# -- the Excel exports ------------------------------------------------------------------------------------

def sheet_rows(body: bytes) -> list[tuple]:
    book = openpyxl.load_workbook(io.BytesIO(body))
    (sheet,) = book.worksheets
    return list(sheet.iter_rows(values_only=True))


def fen(value) -> int:
    return round(value * 100)


async def test_the_exports_open_in_openpyxl_and_their_totals_equal_the_api(conn, config):
    a_day(conn)
    add_users(config.db_path)
    client = await start_client(config)
    try:
        _, api = await Api(client).get("/reports", {"from": DAY, "to": DAY})
        boss = Browser(client)
        await boss.log_in("boss")
        books = {}
        for what in ("sales", "orders", "pickups", "moves"):
            resp = await client.get(f"/ui/export/{what}.xlsx", params={"from": DAY, "to": DAY})
            assert resp.status == 200, (what, await resp.text())
            assert resp.content_type == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
            assert f'filename="{what}-{DAY}-{DAY}.xlsx"' in resp.headers["Content-Disposition"]
            books[what] = sheet_rows(await resp.read())

        sales_rows = books["sales"]
        header, *rows, totals = sales_rows
        amount = header.index("实收（退款为负）")
        assert header[0] == "类型" and totals[0] == "合计（3）"
        assert fen(totals[amount]) == api["till"]["net_fen"] == sum(fen(r[amount]) for r in rows)
        first = rows[0]
        assert first[:2] == ("销售", 1) and first[header.index("时间")] == datetime(2026, 11, 20, 9, 15)
        assert first[header.index("支付方式")] == "现金 ￥20.00" and fen(first[header.index("找零")]) == 550
        assert [r[0] for r in rows] == ["销售", "退货", "销售"] and fen(rows[1][amount]) == -350

        header, *rows, totals = books["pickups"]
        assert fen(totals[header.index("计入营业额")]) == api["online"]["fen"]
        assert [(r[1], r[2]) for r in rows] == [("A101", "王芳"), ("A103", "王芳")]
        assert rows[1][header.index("冲正人")] == "李店长" and rows[0][0] == datetime(2026, 11, 20, 12, 5)

        header, *rows, totals = books["orders"]
        assert len(rows) == api["online"]["received_count"]
        assert {r[0]: r[header.index("状态")] for r in rows} == {"A101": "已自提", "A102": "已取消", "A103": "已备好待取"}

        header, *rows, totals = books["moves"]
        assert rows and {r[header.index("原因")] for r in rows} >= {"销售", "退货", "订单预留", "自提出库"}
        assert all(datetime(2026, 11, 20) <= r[0] < datetime(2026, 11, 21) for r in rows)

        assert (await client.get("/ui/export/secrets.xlsx")).status == 404
        resp = await client.get("/ui/export/sales.xlsx", params={"from": DAY, "to": "2026-11-01"})
        assert resp.status == 400 and "结束日期不能早于开始日期" in await resp.text()
        client.session.cookie_jar.clear()
        await Browser(client).log_in("till")
        assert (await client.get("/ui/export/sales.xlsx")).status == 403
    finally:
        await client.close()


def test_a_sheet_stops_at_excels_row_limit_and_says_so(monkeypatch):
    monkeypatch.setattr(xlsx, "MAX_ROWS", 3)
    out = io.BytesIO()
    info = xlsx.write(out, "t", [xlsx.Column("金额", "money", total=True)], ([100] for _ in range(5)), TZ)
    assert info["rows"] == 3 and info["cut"] and info["totals"] == {"金额": 300}
    header, *rows, totals = sheet_rows(out.getvalue())
    assert len(rows) == 3 and totals[0].startswith("合计（3）：行数已达 Excel 上限")


async def test_the_shifts_export_lists_each_shift_with_its_till_sales(conn, config):
    """A shift opened at till-1 before a_day's sales and closed after them, through the shifts store."""
    write(conn, lambda: shifts.open_shift(conn, shifts.ShiftOpen(cashier="王芳", float_fen=20000),
                                          at(f"{DAY}T08:00"), till="till-1"))
    a_day(conn)
    close = shifts.ShiftClose(counted_fen=21040, closed_by="boss")
    closed = write(conn, lambda: shifts.close_shift(conn, 1, close, at(f"{DAY}T20:00"),
                                                    {"user": "boss", "role": "manager"}, till="till-1"))
    add_users(config.db_path)
    client = await start_client(config)
    try:
        boss = Browser(client)
        await boss.log_in("boss")
        assert 'data-export="shifts"' in await boss.get(f"/ui/reports?from={DAY}")
        resp = await client.get("/ui/export/shifts.xlsx", params={"from": DAY, "to": DAY})
        assert resp.status == 200
        header, row, totals = sheet_rows(await resp.read())
        assert row[:4] == (1, DAY, "till-1", "王芳") and row[header.index("交班人")] == "王店长"
        assert row[header.index("开班时间")] == datetime(2026, 11, 20, 8, 0)
        # every sale written at till-1 while the shift was open is its own: a_day's two of the day and the three
        # it writes for other days (1450 + 1400 + 200 + 1000 + 400)
        assert row[header.index("销售笔数")] == 5 and fen(row[header.index("销售额")]) == 4450
        # float 200.00 + cash 20.00 - change 5.50 - cash refund 3.50 = 211.00 expected; 210.40 counted
        assert fen(row[header.index("应有现金")]) == closed["expected_fen"] == 21100
        assert fen(totals[header.index("差额")]) == -60 and fen(totals[header.index("销售额")]) == 4450
    finally:
        await client.close()
