"""交班 and 日结 pages over HTTP (no browser): the cashier opens and closes a shift, bad input changes
nothing, another cashier's shift is refused, the manager's 日结 lists the shifts of a day."""

from __future__ import annotations

import re

import pytest

from edge.ui.web import TEXT
from tests.conftest import Api, dump, query
from tests.test_ui_manager import Browser, audit_rows, ui  # noqa: F401 (the fixture)


def sale_cash(amount: int, sku: str = "DRK-001", qty: int = 1) -> dict:
    return {"lines": [{"sku": sku, "qty": qty}], "payments": [{"method": "cash", "amount_fen": amount}]}


@pytest.fixture
async def till(ui):  # noqa: F811
    b = Browser(ui)
    await b.log_in("till")
    await b.get("/ui/shift")
    return b


def words(html: str) -> str:
    """What a person reads on the page: the text between tags, without the scripts' and styles' code."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


async def open_local(till: Browser, float_yuan: str = "200") -> None:
    resp = await till.post("/ui/shift/open", {"till": "local", "float": float_yuan})
    assert resp.status == 303 and resp.headers["Location"] == "/ui/shift?done=opened", await resp.text()


def test_words_exist_in_both_languages():
    for prefix in ("shift_", "day_", "nav_"):
        zh = {k for k in TEXT["zh"] if k.startswith(prefix)}
        en = {k for k in TEXT["en"] if k.startswith(prefix)}
        assert zh and zh == en, zh ^ en


async def test_a_cashier_opens_sells_and_closes_with_the_cash_counted(ui, till, config):  # noqa: F811
    html = await till.get("/ui/shift")
    assert 'id="open-form"' in html and "本机收银台" in html
    await open_local(till)
    assert query(config.db_path, "SELECT till, cashier, user_name, float_fen FROM shifts") == [
        ("local", "李收银", "till", 20000)]

    api = Api(ui)
    assert (await api.post("/sales", sale_cash(1000, qty=3)))[0] == 201           # 600, 400 change
    assert (await api.post("/sales", {"lines": [{"sku": "SNK-001", "qty": 1}],
                                      "payments": [{"method": "alipay", "amount_fen": 750}]}))[0] == 201
    html = await till.get("/ui/shift")
    assert 'id="close-form"' in html and 'data-sales="2"' in html
    assert "￥206.00" in html and "支付宝" in html  # expected: 200 + 10 - 4
    fragment = await till.get("/ui/shift?fragment=shift_figures")
    assert fragment.lstrip().startswith('<div id="shift-figures"') and "<html" not in fragment

    shift_id = query(config.db_path, "SELECT id FROM shifts")[0][0]
    resp = await till.post(f"/ui/shift/{shift_id}/close", {"counted": "207", "note": "多了一元"})
    assert resp.status == 303 and resp.headers["Location"] == f"/ui/shifts/{shift_id}?done=closed"
    html = await till.get(resp.headers["Location"])
    assert "已交班" in html and "长款" in html and "￥1.00" in html and 'data-slip="none"' in html
    assert query(config.db_path, "SELECT expected_fen, counted_fen, difference_fen, closed_by FROM shifts") == [
        (20600, 20700, 100, "李收银")]
    assert [r[:4] for r in audit_rows(config.db_path, "shift.close")] == [("till", "cashier", "shift.close", "1")]
    assert [r[:4] for r in audit_rows(config.db_path, "shift.open")] == [("till", "cashier", "shift.open", "local")]
    for internal in ("local", "shift_", "None", "open", "closed"):
        assert internal not in words(html), internal
    audit = await (await as_user(ui, "boss")).get("/ui/audit")
    assert "开班" in audit and "交班" in audit and "实点现金: ￥207.00" in audit and "差额: ￥1.00" in audit


@pytest.mark.parametrize("form,field", [({"counted": "abc"}, "请填写金额"), ({"counted": "-5"}, "请填写金额"),
                                        ({"counted": "1.234"}, "请填写金额"), ({}, "请填写金额")])
async def test_a_bad_count_changes_nothing(till, config, form, field):
    await open_local(till)
    before = dump(config.db_path)
    shift_id = query(config.db_path, "SELECT id FROM shifts")[0][0]
    resp = await till.post(f"/ui/shift/{shift_id}/close", form)
    assert resp.status == 422 and field in await resp.text()
    assert dump(config.db_path) == before


async def test_closing_twice_and_opening_a_busy_till_are_refused_in_words(till, config):
    await open_local(till)
    shift_id = query(config.db_path, "SELECT id FROM shifts")[0][0]
    assert (await till.post(f"/ui/shift/{shift_id}/close", {"counted": "200"})).status == 303
    before = dump(config.db_path)
    resp = await till.post(f"/ui/shift/{shift_id}/close", {"counted": "100"}, form_id="another-form")
    assert resp.status == 409 and "已经交班" in await resp.text()
    assert dump(config.db_path) == before
    await open_local(till)
    resp = await till.post("/ui/shift/open", {"till": "local", "float": "0"}, form_id="third-form")
    assert resp.status == 409 and "尚未交班" in await resp.text()
    resp = await till.post("/ui/shift/open", {"till": "till-9", "float": "0"}, form_id="fourth-form")
    assert resp.status == 422 and "请选择收银机" in await resp.text()


async def as_user(ui, name: str) -> Browser:  # noqa: F811
    """Log in as `name` (the client has one cookie jar: this replaces whoever was logged in)."""
    b = Browser(ui)
    await b.log_in(name)
    await b.get("/ui/shift")
    return b


async def test_a_cashier_may_not_see_or_close_the_managers_shift(ui, config):  # noqa: F811
    await open_local(await as_user(ui, "boss"))
    shift_id = query(config.db_path, "SELECT id FROM shifts")[0][0]
    till = await as_user(ui, "till")
    await till.get(f"/ui/shifts/{shift_id}", status=403)
    before = dump(config.db_path)
    resp = await till.post(f"/ui/shift/{shift_id}/close", {"counted": "200"})
    assert resp.status == 403 and "只有店长" in await resp.text()
    assert dump(config.db_path) == before
    await till.get("/ui/day-close", status=403)


async def test_the_managers_day_close_lists_every_shift_and_prints_only_with_a_printer(ui, config):  # noqa: F811
    await open_local(await as_user(ui, "till"))
    assert (await Api(ui).post("/sales", sale_cash(200)))[0] == 201
    boss = await as_user(ui, "boss")
    html = await boss.get("/ui/day-close")
    assert 'id="day-shift-table"' in html and 'data-state="open"' in html and "1 个班次尚未交班" in html
    assert "李收银" in html and "当班中" in html and "￥2.00" in html
    assert "营业日从 00:00 到次日 00:00" in html
    for internal in ("local", "shift_", "day_", "None"):
        assert internal not in words(html), internal
    await boss.get("/ui/day-close?date=2026-02-30", status=400)
    await boss.get("/ui/day-close?date=2026-11-22")
    resp = await boss.post("/ui/day-close/print", {"date": "2026-11-22"})
    assert resp.status == 409 and "没有打印机打印日结单" in await resp.text()


async def test_a_manager_closes_a_cashiers_shift_from_its_page(ui, config):  # noqa: F811
    await open_local(await as_user(ui, "till"))
    shift_id = query(config.db_path, "SELECT id FROM shifts")[0][0]
    boss = await as_user(ui, "boss")
    html = await boss.get(f"/ui/shifts/{shift_id}")
    assert 'id="close-form"' in html and "当班中" in html
    resp = await boss.post(f"/ui/shift/{shift_id}/close", {"counted": "two hundred"})
    assert resp.status == 422 and 'id="shift"' in (page := await resp.text()) and "请填写金额" in page
    resp = await boss.post(f"/ui/shift/{shift_id}/close", {"counted": "199"}, form_id="boss-close")
    assert resp.status == 303
    assert query(config.db_path, "SELECT closed_by, difference_fen FROM shifts") == [("王店长", -100)]
    assert (await boss.post("/ui/shift/999/close", {"counted": "x"})).status == 404


async def test_the_pages_in_english_have_no_chinese_words_of_ours(ui, config):  # noqa: F811
    await open_local(await as_user(ui, "till"))
    shift_id = query(config.db_path, "SELECT id FROM shifts")[0][0]
    boss = await as_user(ui, "boss")
    ui.session.cookie_jar.update_cookies({"se_lang": "en"})
    ours = set("".join(v for k, v in TEXT["zh"].items() if k.startswith(("shift_", "day_", "nav_"))))
    data = set("测试门店李收银王店长中文")  # names shown as they are, and the link back to 中文
    for path in ("/ui/shift", "/ui/day-close", f"/ui/shifts/{shift_id}"):
        shown = {ch for ch in words(await boss.get(path)) if "\u4e00" <= ch <= "\u9fff"} - data
        assert not shown & ours, (path, shown & ours)
