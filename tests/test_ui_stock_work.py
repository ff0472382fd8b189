"""The manager's stock work pages: 盘点单 (make, print, enter or import) and 补货建议 (list, export)."""

from __future__ import annotations

import re

import pytest

from edge.ui.web import TEXT
from tests.conftest import BARCODE, dump, query
from tests.test_ui_manager import Browser, audit_rows, section, ui  # noqa: F401 (ui: the fixture)


@pytest.fixture
async def boss(ui):  # noqa: F811
    b = Browser(ui)
    await b.log_in("boss")
    await b.get("/ui/")
    return b


def on_hand(config, sku: str) -> int:
    return query(config.db_path, "SELECT on_hand FROM stock_balances WHERE sku = ?", sku)[0][0]


async def test_words_exist_in_both_languages():
    for prefix in ("count_", "purchase_"):
        zh = {k for k in TEXT["zh"] if k.startswith(prefix)}
        en = {k for k in TEXT["en"] if k.startswith(prefix)}
        assert zh and zh == en, zh ^ en


async def test_make_a_sheet_enter_its_counts_once(ui, boss, config):  # noqa: F811
    html = await boss.get("/ui/stock")
    assert 'href="/ui/count-sheets"' in html and 'href="/ui/purchase"' in html
    html = await boss.get("/ui/count-sheets")
    assert re.search(r'<option value="饮料"\s*>饮料 · 2 个商品</option>', html) and "还没有盘点单" in html
    assert re.search(r'<option value=""\s*>未设货架 · 6 个商品</option>', html)       # no product has a shelf yet
    resp = await boss.post("/ui/count-sheets", {"category": "*", "shelf": "*"})
    assert resp.status == 422 and "请选择分类或货架" in await resp.text()
    resp = await boss.post("/ui/count-sheets", {"category": "饮料"}, form_id="sheet-1")
    assert resp.status == 303 and resp.headers["Location"] == "/ui/count-sheets/1"
    html = await boss.get("/ui/count-sheets/1")
    form = html[html.index('id="count-sheet-form"'):html.index('id="count-import-form"')]
    assert 'name="c-1"' in form and 'name="c-2"' in form and BARCODE["DRK-001"] in form
    assert ">账面</th>" not in html and ">50<" not in html and ">30<" not in html   # blind: no book quantity
    csv = await (await ui.get("/ui/count-sheets/1/file")).text()
    assert csv.splitlines()[0] == "\ufeff行号,商品编码,条码,商品名称,单位,实盘数量"

    before = dump(config.db_path)
    resp = await boss.post("/ui/count-sheets/1", {"c-1": "", "c-2": "-4"})
    body = await resp.text()
    assert resp.status == 422 and "请输入 0 或以上的整数" in body and 'data-field="c-2"' in body
    resp = await boss.post("/ui/count-sheets/1", {"c-1": "", "c-2": ""})
    assert resp.status == 422 and "没有填写任何实盘数量" in await resp.text()
    assert dump(config.db_path) == before

    resp = await boss.post("/ui/count-sheets/1", {"c-1": "", "c-2": "45", "note": "月底"}, form_id="enter-1")
    assert resp.status == 303 and resp.headers["Location"] == "/ui/count-sheets/1?done=entered"
    resp = await boss.post("/ui/count-sheets/1", {"c-1": "", "c-2": "45", "note": "月底"}, form_id="enter-1")
    assert resp.status == 303                                  # the double click: entered once
    assert on_hand(config, "DRK-001") == 45 and on_hand(config, "DRK-002") == 30
    html = await boss.get("/ui/count-sheets/1?done=entered")
    result = html[html.index('id="count-result"'):]
    assert 'id="form-done"' in html and "-5" in result and "未盘" in result and 'id="count-sheet-form"' not in html
    resp = await boss.post("/ui/count-sheets/1", {"c-1": "3"}, form_id="enter-2")
    assert resp.status == 409 and "已经录入过了" in await resp.text()
    assert [r[2:4] for r in audit_rows(config.db_path, "count_sheet.enter")] == [("count_sheet.enter", "1")]
    html = await boss.get("/ui/count-sheets")
    assert 'data-sheet="1"' in html and "已录入" in html
    await boss.get("/ui/count-sheets/99", status=404)

    resp = await boss.post("/ui/count-sheets/1/print", {})
    assert resp.status == 409 and "没有打印机打印盘点单" in await resp.text()   # the test store has no printer


async def test_import_refuses_a_bad_file_whole_then_takes_a_good_one(ui, boss, config):  # noqa: F811
    resp = await boss.post("/ui/count-sheets", {"category": "零食"}, form_id="sheet-2")
    number = resp.headers["Location"].rsplit("/", 1)[1]
    before = dump(config.db_path)

    async def upload(text: str, name: str = "counts.csv"):
        import aiohttp  # noqa: PLC0415

        data = aiohttp.FormData()
        data.add_field("csrf", boss.csrf)
        data.add_field("form_id", f"import-{len(text)}-{name}")
        data.add_field("file", text.encode("utf-8"), filename=name, content_type="text/csv")
        return await ui.post(f"/ui/count-sheets/{number}/import", data=data, allow_redirects=False)

    resp = await upload("商品编码,实盘数量\r\nSNK-001,12\r\nSNK-002,-1\r\nDRK-001,3\r\n")
    body = await resp.text()
    assert resp.status == 422 and 'id="import-problems"' in body
    assert "第 3 行" in body and "不能小于 0" in body and "第 4 行" in body and "不在这张盘点单上" in body
    resp = await upload("商品编码,实盘数量\r\nSNK-001,12\r\n", name="counts.txt")
    assert resp.status == 422 and "请选择一个 .csv 或 .xlsx 文件" in await resp.text()
    assert dump(config.db_path) == before

    resp = await upload(f"条码,实盘数量\r\n{BARCODE['SNK-001']},18\r\n")
    assert resp.status == 303, await resp.text()
    assert on_hand(config, "SNK-001") == 18 and on_hand(config, "SNK-002") == 2


async def test_purchase_suggestions_page_and_export(ui, boss, config):  # noqa: F811
    html = await boss.get("/ui/purchase")
    listed = section(html, "purchase-list")
    assert 'data-sku="SNK-002"' in listed and 'data-sku="DRK-001"' not in listed and "无近期销量" in listed
    assert "最近 28 天" in html and "到货 3 天" in html
    html = await boss.get("/ui/purchase", params={"category": "日用", "sort": "suggested"})
    assert 'data-sku="HOM-001"' in html and 'data-sku="SNK-002"' not in section(html, "purchase-list")
    resp = await ui.get("/ui/purchase/export", params={"category": "零食"})
    text = await resp.text()
    assert resp.status == 200 and resp.content_type == "text/csv"
    assert text.splitlines()[0].startswith("\ufeff商品编码,商品名称") and "SNK-002" in text and "HOM-001" not in text


async def test_english_pages(ui, boss, config):  # noqa: F811
    resp = await ui.get("/ui/lang/en?next=/ui/count-sheets", allow_redirects=False)
    assert resp.status == 303
    html = await boss.get("/ui/count-sheets")
    assert "New count sheet" in html and "No category" not in html and "盘点单" not in html
    resp = await boss.post("/ui/count-sheets", {"category": "乳品", "shelf": "*"}, form_id="en-sheet")
    html = await boss.get(resp.headers["Location"])
    assert "Count sheet #1" in html and "Enter the counts" in html and "录入" not in html
    html = await boss.get("/ui/purchase")
    assert "Purchase suggestions" in html and "no recent sales" in html and "补货" not in html
