"""库存 /ui/stock: search products by name, SKU or barcode, the low-stock list; a product's page with
its balance, its moves, and the adjustment and stock-count forms (post/redirect/get)."""

from __future__ import annotations

import re
from urllib.parse import quote

from aiohttp import web
from pydantic import ValidationError

from edge.core.errors import InputError, NotFound
from edge.core.schemas import AdjustmentIn, CountIn
from edge.services.app_keys import STORE
from edge.store import catalog, orders, stock
from edge.ui.orders_pages import error_text
from edge.ui.web import LANG, form_data, page, register_text, render, ui_write

register_text({
    "zh": {"stock_title": "库存", "stock_search": "搜索商品", "stock_search_hint": "商品名称、拼音或首字母、SKU、条码",
           "stock_search_button": "搜索", "stock_results": "商品库存", "stock_results_for": "“{q}”的搜索结果",
           "stock_empty": "没有找到商品", "stock_empty_query": "没有与“{q}”匹配的商品（名称、SKU 或条码）",
           "stock_next_page": "下一页", "stock_first_page": "第一页", "stock_low": "低库存（不高于预警线）",
           "stock_low_empty": "暂无低于预警线的商品", "stock_col_sku": "SKU", "stock_col_name": "商品",
           "stock_col_category": "分类", "stock_col_on_hand": "在库", "stock_col_reserved": "已预留",
           "stock_col_available": "可用", "stock_col_threshold": "预警线", "stock_low_flag": "低库存",
           "stock_item_title": "{name}", "stock_barcodes": "条码", "stock_unit": "单位", "stock_price": "售价",
           "stock_updated": "更新于", "stock_moves": "库存流水（最新在前）", "stock_moves_empty": "此商品还没有库存流水",
           "stock_col_time": "时间", "stock_col_qty": "数量", "stock_col_reason": "原因", "stock_col_ref": "单据",
           "stock_col_device": "来源", "stock_col_note": "备注", "stock_older_moves": "更早的流水",
           "stock_newest_moves": "最新流水",
           "stock_adjust": "库存调整", "stock_adjust_hint": "报损、过期、找到等：正数增加，负数减少",
           "stock_adjust_qty": "调整数量", "stock_adjust_note": "原因", "stock_adjust_button": "确认调整",
           "stock_count": "盘点", "stock_count_hint": "输入货架上实际清点的数量，差额自动记为盘点流水",
           "stock_count_counted": "实盘数量", "stock_count_note": "备注（可选）", "stock_count_button": "确认盘点",
           "stock_err_integer": "请输入整数", "stock_err_zero": "调整数量不能为 0",
           "stock_err_range": "数量超出范围", "stock_err_negative": "实盘数量不能小于 0",
           "stock_err_too_long": "最多 200 个字", "stock_done_adjust": "库存已调整",
           "stock_done_count": "盘点已记录", "stock_not_found": "找不到这个商品（SKU 有误或已下架）",
           "stock_back": "返回库存", "stock_form_error": "未保存，请修改标红的项目"},
    "en": {"stock_title": "Stock", "stock_search": "Find a product", "stock_search_hint": "Name, its pinyin or initials, SKU or barcode",
           "stock_search_button": "Search", "stock_results": "Products", "stock_results_for": "Results for “{q}”",
           "stock_empty": "No products", "stock_empty_query": "No product matches “{q}” (name, SKU or barcode)",
           "stock_next_page": "Next page", "stock_first_page": "First page",
           "stock_low": "Low stock (at or below threshold)",
           "stock_low_empty": "Nothing at or below its threshold", "stock_col_sku": "SKU", "stock_col_name": "Product",
           "stock_col_category": "Category", "stock_col_on_hand": "On hand", "stock_col_reserved": "Reserved",
           "stock_col_available": "Available", "stock_col_threshold": "Threshold", "stock_low_flag": "low",
           "stock_item_title": "{name}", "stock_barcodes": "Barcodes", "stock_unit": "Unit", "stock_price": "Price",
           "stock_updated": "Updated", "stock_moves": "Stock moves (newest first)",
           "stock_moves_empty": "No stock moves for this product yet",
           "stock_col_time": "Time", "stock_col_qty": "Qty", "stock_col_reason": "Reason", "stock_col_ref": "Document",
           "stock_col_device": "From", "stock_col_note": "Note", "stock_older_moves": "Older moves",
           "stock_newest_moves": "Newest moves",
           "stock_adjust": "Adjust stock",
           "stock_adjust_hint": "Damaged, expired, found…: positive adds, negative removes",
           "stock_adjust_qty": "Change", "stock_adjust_note": "Reason", "stock_adjust_button": "Adjust",
           "stock_count": "Stock count", "stock_count_hint": "Enter what is on the shelf; the difference is recorded",
           "stock_count_counted": "Counted", "stock_count_note": "Note (optional)",
           "stock_count_button": "Record count",
           "stock_err_integer": "Enter a whole number", "stock_err_zero": "The change cannot be 0",
           "stock_err_range": "Out of range", "stock_err_negative": "The count cannot be below 0",
           "stock_err_too_long": "At most 200 characters", "stock_done_adjust": "Stock adjusted",
           "stock_done_count": "Count recorded", "stock_not_found": "No such product (wrong SKU or inactive)",
           "stock_back": "Back to stock", "stock_form_error": "Not saved: correct the fields in red"},
})

PAGE_SIZE = 50
MOVES_PAGE = 50
LOW_LIMIT = 50
INTEGER = re.compile(r"^[+-]?\d{1,9}$")
DONE = {"adjust": "stock_done_adjust", "count": "stock_done_count"}


def search(conn, q: str | None, after: str | None) -> dict:
    found = stock.list_balances(conn, q=q, after=after, limit=PAGE_SIZE)
    low = stock.list_balances(conn, low=True, limit=LOW_LIMIT)["items"]
    return {"items": found["items"], "next_after": found["next_after"], "low": low}


@page("/ui/stock", role="manager", template="stock.html")
async def stock_page(request: web.Request):
    q = request.query.get("q", "").strip()[:100] or None
    after = request.query.get("after") or None
    data = await request.app[STORE].read(search, q, after)
    return {**data, "q": q or "", "after": after}


def item(conn, sku: str, before: int | None) -> dict:
    balance = stock.get_balance(conn, sku)
    product = catalog.get_product(conn, sku)
    moves = stock.move_history(conn, sku, before=before, limit=MOVES_PAGE)
    numbers = orders.numbers(conn, [m["ref_id"] for m in moves["items"] if m["ref_type"] == "order"])
    for move in moves["items"]:
        move["order_number"] = numbers.get(move["ref_id"]) if move["ref_type"] == "order" else None
    return {"balance": balance, "product": product, "moves": moves["items"], "next_before": moves["next_before"]}


def _int(value: str) -> int | None:
    value = value.strip()
    return int(value) if INTEGER.fullmatch(value) else None


def check_adjustment(form: dict) -> tuple[dict, int | None, str]:
    errors = {}
    qty = _int(form.get("qty", ""))
    if qty is None:
        errors["qty"] = "stock_err_integer"
    elif qty == 0:
        errors["qty"] = "stock_err_zero"
    elif abs(qty) > 1_000_000:
        errors["qty"] = "stock_err_range"
    note = form.get("note", "").strip()
    if not note:
        errors["note"] = "field_required"
    elif len(note) > 200:
        errors["note"] = "stock_err_too_long"
    return errors, qty, note


def check_count(form: dict) -> tuple[dict, int | None, str]:
    errors = {}
    counted = _int(form.get("counted", ""))
    if counted is None:
        errors["counted"] = "stock_err_integer"
    elif counted < 0:
        errors["counted"] = "stock_err_negative"
    elif counted > 10_000_000:
        errors["counted"] = "stock_err_range"
    note = form.get("note", "").strip()
    if len(note) > 200:
        errors["note"] = "stock_err_too_long"
    return errors, counted, note


async def _item(request: web.Request, sku: str, *, status: int = 200, **extra):
    before = request.query.get("before")
    before_id = int(before) if before and before.isdigit() else None
    try:
        data = await request.app[STORE].read(item, sku, before_id)
    except NotFound:
        return render(request, "error.html", status=404, error_key="stock_not_found", message="")
    context = {"adjust_errors": {}, "count_errors": {}, "adjust_values": {}, "count_values": {}, "error": None,
               "done": DONE.get(request.query.get("done", "")), "before": before_id, **data, **extra}
    if status != 200:
        return render(request, "stock_item.html", status=status, **context)
    return context


@page("/ui/stock/{sku:.+}", role="manager", template="stock_item.html")
async def item_page(request: web.Request):
    return await _item(request, request.match_info["sku"])


@page("/ui/stock/{sku:.+}", role="manager", method="POST")
async def item_post(request: web.Request):
    """The two forms of a product's page: `op` = adjust or count."""
    sku = request.match_info["sku"]
    form = await form_data(request)
    op = form.get("op")
    if op == "adjust":
        errors, qty, note = check_adjustment(form)
        if errors:
            return await _item(request, sku, status=422, adjust_errors=errors, adjust_values=form)
        try:
            body = AdjustmentIn.model_validate({"lines": [{"sku": sku, "qty": qty}], "note": note})
        except ValidationError:  # a SKU no product can have
            return render(request, "error.html", status=404, error_key="stock_not_found", message="")
        fn, action, detail = (lambda conn, ctx: stock.record_adjustment(conn, body, ctx)), "stock.adjust", \
            {"qty": qty, "note": note}
    elif op == "count":
        errors, counted, note = check_count(form)
        if errors:
            return await _item(request, sku, status=422, count_errors=errors, count_values=form)
        try:
            body = CountIn.model_validate({"lines": [{"sku": sku, "counted": counted}], "note": note or None})
        except ValidationError:
            return render(request, "error.html", status=404, error_key="stock_not_found", message="")
        fn, action, detail = (lambda conn, ctx: stock.record_count(conn, body, ctx)), "stock.count", \
            {"counted": counted, "note": note or None}
    else:
        raise web.HTTPBadRequest(text="unknown form")
    try:
        await ui_write(request, form, fn, action=action, target=sku, detail=detail)
    except NotFound:
        return render(request, "error.html", status=404, error_key="stock_not_found", message="")
    except InputError as exc:
        return await _item(request, sku, status=exc.status if exc.status >= 400 else 422,
                           error=error_text(exc, request.get(LANG, "zh")),
                           **({"adjust_values": form} if op == "adjust" else {"count_values": form}))
    raise web.HTTPSeeOther(f"/ui/stock/{quote(sku, safe='/')}?done={op}")
