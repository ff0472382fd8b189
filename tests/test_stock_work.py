"""Stock work (issue 14 part 5): purchase suggestions from sales velocity, and count sheets from the
sheet to the count document and its moves, entered in a form or imported from a file."""

from __future__ import annotations

import io
from types import SimpleNamespace

import openpyxl
import pytest

from edge.core.context import WriteContext
from edge.core.errors import InputError, NotFound
from edge.store import count_sheets, db, purchase, stock
from edge.store.stock import Move
from tests.conftest import BARCODE, OPENING, dump, ledger_mismatches, query

NOW = "2026-03-01T02:00:00.000Z"
SETTINGS = SimpleNamespace(velocity_days=28, lead_time_days=3, cover_days=7)


def ctx_at(when: str, device: str = "test") -> WriteContext:
    return WriteContext(device=device, now=when, day=when[:10])


@pytest.fixture
def conn(db_path):
    c = db.open_store_db(db_path)
    yield c
    c.close()


def moves(conn, when: str, *items: tuple[str, int, str]) -> None:
    with db.transaction(conn):
        stock.apply_moves(conn, [Move(sku, qty, reason) for sku, qty, reason in items], "test", when, ctx_at(when))


# -- the arithmetic -------------------------------------------------------------------------------

def test_suggested_qty_rounds_up_and_never_goes_below_zero():
    # 7 sold in 28 days: 0.25 a day; 10 days of lead time and cover need 2.5 units
    assert purchase.suggested_qty(7, 28, 3, 7, 0) == 3
    assert purchase.suggested_qty(7, 28, 3, 7, 2) == 1      # 0.5 more -> 1
    assert purchase.suggested_qty(56, 28, 3, 7, 20) == 0    # 2 a day x 10 = 20: covered exactly
    assert purchase.suggested_qty(56, 28, 3, 7, 19) == 1
    assert purchase.suggested_qty(56, 28, 3, 7, -4) == 24   # oversold: the hole is filled too
    assert purchase.suggested_qty(0, 28, 3, 7, 0) == 0      # no sales: nothing to go by
    assert purchase.days_left(56, 28, 5) == 2.5
    assert purchase.days_left(56, 28, -3) == 0
    assert purchase.days_left(0, 28, 5) is None


def test_suggestions_from_sales_minus_returns_in_the_window(conn):
    # DRK-001 (50 on hand, threshold 12): 40 sold in the window, 12 returned, 30 sold before it
    moves(conn, "2026-01-10T02:00:00.000Z", ("DRK-001", -30, "sale"))            # 50 days ago: outside
    moves(conn, "2026-02-10T02:00:00.000Z", ("DRK-001", -40, "sale"), ("DRK-001", 12, "return"))
    moves(conn, "2026-02-20T02:00:00.000Z", ("DRK-001", 40, "receipt"))
    # SNK-001 (20 on hand, threshold 5): sold 14 via an online pickup, 2 reserved for an order
    moves(conn, "2026-02-25T02:00:00.000Z", ("SNK-001", -14, "pickup"), ("SNK-001", 2, "reserve"))
    found = purchase.suggestions(conn, SETTINGS, NOW)
    by_sku = {i["sku"]: i for i in found["items"]}
    # SNK-002 (2, threshold 3) and HOM-001 (0, threshold 0) are low and unsold: listed, 0 suggested
    assert set(by_sku) == {"SNK-001", "SNK-002", "HOM-001"}, by_sku
    snk = by_sku["SNK-001"]
    assert (snk["available"], snk["sold"], snk["sold_per_day"]) == (4, 14, 0.5)
    assert snk["days_left"] == 8.0 and snk["low"] is True
    assert snk["suggested"] == 1                       # 0.5 x 10 - 4
    assert by_sku["SNK-002"]["days_left"] is None and by_sku["SNK-002"]["suggested"] == 0
    assert [i["sku"] for i in found["items"]] == ["SNK-001", "HOM-001", "SNK-002"]  # soonest out first
    # DRK-001 sold 28 net in the window (1 a day): 32 available last 32 days, not within the lead time
    assert "DRK-001" not in by_sku

    moves(conn, "2026-02-28T02:00:00.000Z", ("DRK-001", -30, "sale"))   # 58 sold: 2 left, ~1 day
    drk = {i["sku"]: i for i in purchase.suggestions(conn, SETTINGS, NOW)["items"]}["DRK-001"]
    assert (drk["sold"], drk["available"], drk["low"]) == (58, 2, True)
    assert drk["suggested"] == 19                      # ⌈58 / 28 x 10 - 2⌉ = ⌈18.71⌉
    # lead time makes a product that is not low urgent: 60 days of lead time, DRK at 21 is listed
    moves(conn, "2026-02-28T03:00:00.000Z", ("DRK-001", 19, "receipt"))
    assert "DRK-001" not in {i["sku"] for i in purchase.suggestions(conn, SETTINGS, NOW)["items"]}
    slow = SimpleNamespace(velocity_days=28, lead_time_days=20, cover_days=7)
    assert "DRK-001" in {i["sku"] for i in purchase.suggestions(conn, slow, NOW)["items"]}

    # a category of its own lead time: drinks come in 20 days, the rest in 3
    by_category = SimpleNamespace(velocity_days=28, lead_time_days=3, cover_days=7,
                                  lead_time_by_category={"饮料": 20, "日用": 1})
    items = {i["sku"]: i for i in purchase.suggestions(conn, by_category, NOW)["items"]}
    assert items["DRK-001"]["lead_time_days"] == 20 and items["SNK-001"]["lead_time_days"] == 3
    assert items["DRK-001"]["suggested"] == 35           # ⌈58 / 28 x 27 - 21⌉ = ⌈34.9⌉

    only = purchase.suggestions(conn, SETTINGS, NOW, category="零食", sort="suggested")
    assert {i["sku"] for i in only["items"]} == {"SNK-001", "SNK-002"} and "日用" in only["categories"]
    text = purchase.export_csv(only)
    assert text.startswith("\ufeff商品编码,商品名称,分类") and "SNK-001,乐事 薯片 原味 70g,零食,袋,4,5,14,0.50,8.0,1" in text
    with pytest.raises(ValueError):
        purchase.suggestions(conn, SETTINGS, NOW, sort="price")


def test_the_suggestion_query_reads_the_window_through_its_index(conn):
    plan = " ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + purchase._QUERY, ("x", 1, 1)))
    assert "USING COVERING INDEX stock_moves_demand (created_at>?)" in plan, plan


# -- count sheets ---------------------------------------------------------------------------------

def test_count_sheet_round_trip_to_a_count_document_and_its_moves(conn):
    assert {c["name"]: c["products"] for c in count_sheets.categories(conn)}["饮料"] == 2
    with db.transaction(conn):
        sheet = count_sheets.create_sheet(conn, ctx_at("2026-03-01T01:00:00.000Z", "ui:boss"), category="饮料")
    assert [line["sku"] for line in sheet["lines"]] == ["DRK-002", "DRK-001"]   # kekoukele < nongfu by pinyin
    assert sheet["lines"][0]["barcode"] == BARCODE["DRK-002"] and "expected" not in sheet["lines"][0]
    assert not any(line["moved"] for line in sheet["lines"])
    moves(conn, "2026-03-01T01:30:00.000Z", ("DRK-001", -2, "sale"))        # sold while counting
    sheet = count_sheets.get_sheet(conn, sheet["number"])
    assert [line["moved"] for line in sheet["lines"]] == [False, True]

    before = dump(conn_path(conn))
    for bad, code in (({}, "nothing_counted"), ({3: 1}, "unknown_line"), ({1: -1}, "bad_count")):
        with pytest.raises(InputError) as info, db.transaction(conn):
            count_sheets.record_counts(conn, sheet["number"], bad, ctx_at(NOW))
        assert info.value.code == code and info.value.detail["message_zh"]
    assert dump(conn_path(conn)) == before

    with db.transaction(conn):
        done = count_sheets.record_counts(conn, sheet["number"], {2: 45}, ctx_at(NOW, "ui:boss"), note="月底")
    drk1, drk2 = done["lines"][1], done["lines"][0]
    assert (drk1["expected"], drk1["counted"], drk1["difference"]) == (OPENING["DRK-001"] - 2, 45, -3)
    assert "counted" not in drk2                                          # left blank: not counted
    document = stock.get_document(conn, done["document_id"])
    assert document["kind"] == "count" and document["note"] == f"盘点单 #{sheet['number']} 月底"
    assert [tuple(r) for r in conn.execute("SELECT sku, qty, reason FROM stock_moves WHERE ref_id = ?",
                                           (done["document_id"],))] == [("DRK-001", -3, "count")]
    assert done["counted_by"] == "ui:boss" and done["counted_at"] == NOW
    with pytest.raises(InputError) as info, db.transaction(conn):
        count_sheets.record_counts(conn, sheet["number"], {1: 30}, ctx_at(NOW))
    assert info.value.status == 409
    with pytest.raises(NotFound):
        count_sheets.get_sheet(conn, 999)
    with pytest.raises(InputError) as info, db.transaction(conn):
        count_sheets.create_sheet(conn, ctx_at(NOW), category="no such category")
    assert info.value.code == "empty_sheet"
    with pytest.raises(InputError) as info, db.transaction(conn):
        count_sheets.create_sheet(conn, ctx_at(NOW))
    assert info.value.code == "no_scope"
    assert ledger_mismatches(conn_path(conn)) == []


def test_shelves_from_the_catalog_import_kept_from_the_cloud_and_counted_in_walking_order(conn):
    from edge.store import catalog  # noqa: PLC0415
    from protocol.changes import ProductIn  # noqa: PLC0415

    text = ("商品编码,商品名称,售价,货架\r\n"
            "DRK-001,农夫山泉 饮用天然水 550ml,2.00,A-02\r\n"
            "DRK-002,可口可乐 330ml 罐装,3.50,A-01\r\n"
            "SNK-001,乐事 薯片 原味 70g,7.50,A-01\r\n"
            f"SNK-002,奥利奥 夹心饼干 97g,8.90,{'长' * 33}\r\n")
    with db.transaction(conn):
        report = catalog.import_products(conn, catalog.read_rows(text.encode(), "csv"), "csv", NOW)
    assert report.imported == 3 and "货架最多 32 个字" in str(report.errors[0]) and report.errors[0].row == 5
    assert catalog.get_product(conn, "DRK-002")["shelf"] == "A-01"
    # the chain's product.upserted carries no shelf: the store's stays
    with db.transaction(conn):
        catalog.upsert_product(conn, ProductIn(sku="DRK-002", name="可口可乐 330ml", price_fen=380), NOW)
    assert catalog.get_product(conn, "DRK-002")["shelf"] == "A-01"
    # a file with the column and an empty cell takes the shelf away; one without the column keeps it
    with db.transaction(conn):
        for text in ("sku,name,price,category,shelf\r\nDRK-001,水,2,饮料,\r\n",
                     "sku,name,price,category\r\nDRK-002,可乐,3,饮料\r\n"):
            catalog.import_products(conn, catalog.read_rows(text.encode(), "csv"), "csv", NOW)
    assert catalog.get_product(conn, "DRK-001")["shelf"] is None
    assert catalog.get_product(conn, "DRK-002")["shelf"] == "A-01"
    out = io.StringIO()
    catalog.export_products(catalog.iter_products(conn), "csv", out)
    exported = out.getvalue().splitlines()
    assert exported[0].endswith(",active,shelf") and "DRK-002,可乐,300,件,饮料,0,,1,A-01" in exported
    assert {s["name"]: s["products"] for s in count_sheets.shelves(conn)} == {"A-01": 2, None: 4}

    with db.transaction(conn):
        one = count_sheets.create_sheet(conn, ctx_at(NOW), shelf="A-01")
        drinks = count_sheets.create_sheet(conn, ctx_at(NOW), category="饮料", shelf="")
        everything = count_sheets.create_sheet(conn, ctx_at(NOW), category="饮料")
    assert [line["sku"] for line in one["lines"]] == ["DRK-002", "SNK-001"] and one["category"] is None
    assert [line["sku"] for line in drinks["lines"]] == ["DRK-001"]
    assert [(line["sku"], line["shelf"]) for line in everything["lines"]] == [("DRK-002", "A-01"), ("DRK-001", None)]


def conn_path(conn):
    return conn.execute("PRAGMA database_list").fetchone()[2]


def _sheet_file(conn, number: int, counts: dict[str, str], fmt: str = "csv") -> bytes:
    """The sheet's own export, filled in as a manager would in Excel."""
    sheet = count_sheets.get_sheet(conn, number)
    rows = [r.split(",") for r in count_sheets.export_csv(sheet).lstrip("\ufeff").split("\r\n") if r]
    for row in rows[1:]:
        row[5] = counts.get(row[1].removeprefix('="').removesuffix('"'), "")
    if fmt == "csv":
        return "\r\n".join(",".join(r) for r in rows).encode("gb18030")   # as Excel on a Chinese Windows saves
    book = openpyxl.Workbook()
    for row in rows:
        book.active.append([int(c) if c.isdigit() else c for c in row])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ("csv", "xlsx"))
def test_import_of_a_filled_in_sheet(conn, fmt):
    with db.transaction(conn):
        number = count_sheets.create_sheet(conn, ctx_at(NOW), category="零食")["number"]
    data = _sheet_file(conn, number, {"SNK-001": "18", "SNK-002": ""}, fmt)
    counts = count_sheets.counts_from_rows(conn, number, count_sheets.read_file(data, fmt))
    lines = {line["sku"]: line["line_no"] for line in count_sheets.get_sheet(conn, number)["lines"]}
    assert counts == {lines["SNK-001"]: 18}


def test_an_import_with_a_bad_row_is_refused_by_excel_row_and_writes_nothing(conn):
    with db.transaction(conn):
        number = count_sheets.create_sheet(conn, ctx_at(NOW), category="零食")["number"]
    before = dump(conn_path(conn))
    text = ("商品编码,条码,实盘数量\r\n"
            "SNK-001,,12\r\n"                       # row 2: good
            ",,\r\n"                                # row 3: empty, skipped
            f",{BARCODE['SNK-002']},-1\r\n"         # row 4: negative
            "DRK-001,,5\r\n"                        # row 5: a product of another category
            "NOPE-9,,5\r\n"                         # row 6: no such product
            "SNK-001,,13\r\n"                       # row 7: twice
            ",IN-SNK-001,x\r\n")                    # row 8: second barcode of SNK-001, not a number
    with pytest.raises(InputError) as info:
        count_sheets.counts_from_rows(conn, number, count_sheets.read_file(text.encode(), "csv"))
    rows = info.value.detail["rows"]
    assert [r.split(" ")[1] for r in rows] == ["4", "5", "6", "7", "8"], rows
    assert "不能小于 0" in rows[0] and "不在这张盘点单上" in rows[1] and "NOPE-9" in rows[2]
    assert "与第 2 行重复" in rows[3] and "SNK-001" in rows[4]
    assert info.value.code == "bad_rows" and "什么也没有录入" in info.value.detail["message_zh"]
    with pytest.raises(InputError) as info:
        count_sheets.read_file("商品编码,颜色\r\nSNK-001,red\r\n".encode(), "csv")
    assert "不认识的列: 颜色" in info.value.message
    with pytest.raises(InputError) as info:
        count_sheets.read_file(b"PK\x03\x04 not really", "xlsx")
    assert "不是 Excel 工作簿" in info.value.message
    assert dump(conn_path(conn)) == before


def stock_note(config, document_id: str) -> str:
    return query(config.db_path, "SELECT note FROM stock_documents WHERE id = ?", document_id)[0][0]


# -- the API --------------------------------------------------------------------------------------

async def test_api_count_sheet_and_suggestions(api, config):
    status, body = await api.get("/purchase-suggestions", {"category": "零食", "sort": "suggested"})
    assert status == 200 and [i["sku"] for i in body["items"]] == ["SNK-002"] and body["velocity_days"] == 28
    status, body = await api.get("/purchase-suggestions", {"sort": "price"})
    assert status == 400 and body["error"]["code"] == "invalid_query"

    status, body, _ = await api.post("/count-sheets", {})
    assert status == 422 and body["error"]["code"] == "no_scope"
    sheet = await api.ok("/count-sheets", {"category": "饮料"})
    assert [line["sku"] for line in sheet["lines"]] == ["DRK-002", "DRK-001"] and "print_job" not in sheet
    status, body, _ = await api.post("/count-sheets", {"category": "饮料", "print_sheet": True})
    assert status == 409 and body["error"]["code"] == "no_printer"   # and no second sheet was made
    status, body = await api.get("/count-sheets/2")
    assert status == 404
    before = dump(config.db_path)
    for bad in ({"lines": [{"line_no": 1, "counted": 3}, {"line_no": 1, "counted": 4}]},
                {"lines": [{"line_no": 1, "counted": -3}]}, {"lines": [{"line_no": 3, "counted": 1}]},
                {"lines": []}):
        status, body, _ = await api.post(f"/count-sheets/{sheet['number']}/counts", bad)
        assert status == 422, (bad, body)
    assert dump(config.db_path) == before
    done = await api.ok(f"/count-sheets/{sheet['number']}/counts", {"lines": [{"line_no": 1, "counted": 28}],
                                                                     "note": "备" * 200})
    assert done["document_id"] and len(stock_note(config, done["document_id"])) == 200   # the sheet's number first
    assert done["lines"][0]["difference"] == -2 and done["document_id"]
    status, body, _ = await api.post(f"/count-sheets/{sheet['number']}/counts",
                                     {"lines": [{"line_no": 2, "counted": 1}]})
    assert status == 409 and body["error"]["code"] == "sheet_counted"
    status, body = await api.get(f"/count-sheets/{sheet['number']}")
    assert status == 200 and body["lines"][0]["counted"] == 28
