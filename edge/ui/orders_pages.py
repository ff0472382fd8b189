"""订单 /ui/orders: online orders by state; an order's page with its items, print jobs and pickup
record, and the manager's actions: mark prepared, reprint the ticket, reverse a hand-over (冲正)."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from edge.core.errors import InputError, NotFound
from edge.services.app_keys import STORE
from edge.store import orders, pickups, spool
from edge.ui.web import LANG, WHO, form_data, page, register_text, render, text, ui_write

register_text({
    "zh": {"orders_title": "订单", "orders_filter_state": "状态", "orders_filter_all": "全部",
           "orders_filter_open": "未完成", "orders_filter_short": "只看缺货", "orders_filter_apply": "筛选",
           "orders_empty": "没有符合条件的订单", "orders_next_page": "更早的订单", "orders_first_page": "回到最新",
           "orders_col_number": "单号", "orders_col_state": "状态", "orders_col_received": "收到时间",
           "orders_col_items": "件数", "orders_col_short": "缺货", "orders_col_print": "备货单",
           "orders_col_kind": "类型", "orders_col_total": "金额",
           "orders_short_yes": "缺货", "orders_short_no": "—",
           "orders_detail_title": "订单 {number}", "orders_items": "商品", "orders_col_sku": "SKU",
           "orders_col_name": "商品", "orders_col_qty": "数量", "orders_col_price": "单价",
           "orders_col_short_qty": "缺", "orders_note": "顾客备注", "orders_no_note": "无备注",
           "orders_received_at": "收到", "orders_updated_at": "更新", "orders_pickup_after": "取货时间",
           "orders_conflict": "云端冲突", "orders_conflict_found": "与云端不一致，请联系总部", "orders_print_jobs": "打印记录", "orders_no_print_jobs": "此订单没有打印任务",
           "orders_col_job": "编号", "orders_col_doc": "单据", "orders_col_printer": "打印机",
           "orders_col_created": "创建", "orders_col_error": "错误", "orders_reprint_mark": "重打",
           "orders_pickups": "核销记录", "orders_no_pickup": "尚未核销",
           "orders_col_verified": "核销时间", "orders_col_operator": "经办人", "orders_col_method": "方式",
           "orders_col_reversed": "冲正", "orders_provisional": "离线临时核销", "orders_reversed_by": "{at} 由 {who} 冲正：{reason}",
           "orders_actions": "操作", "orders_mark_ready": "标记为已备好", "orders_reprint": "重打备货单",
           "orders_reverse": "冲正核销", "orders_reverse_reason": "冲正原因",
           "orders_reverse_hint": "仅在误核销时使用：商品退回库存并重新为此订单预留，订单回到“已备好待取”",
           "orders_done_ready": "已标记为已备好，等待顾客取货", "orders_done_reprint": "已重新加入打印队列",
           "orders_done_reverse": "已冲正，订单回到待取货", "orders_no_ticket": "此订单没有可重打的备货单",
           "orders_not_found": "找不到这个订单（可能已被删除或链接有误）", "orders_back": "返回订单列表",
           "orders_reason_too_long": "最多 200 个字"},
    "en": {"orders_title": "Orders", "orders_filter_state": "State", "orders_filter_all": "All",
           "orders_filter_open": "Open", "orders_filter_short": "Short only", "orders_filter_apply": "Filter",
           "orders_empty": "No orders match", "orders_next_page": "Older orders", "orders_first_page": "Newest",
           "orders_col_number": "No.", "orders_col_state": "State", "orders_col_received": "Received",
           "orders_col_items": "Items", "orders_col_short": "Short", "orders_col_print": "Ticket",
           "orders_col_kind": "Kind", "orders_col_total": "Total",
           "orders_short_yes": "short",
           "orders_short_no": "—", "orders_detail_title": "Order {number}", "orders_items": "Items",
           "orders_col_sku": "SKU", "orders_col_name": "Product", "orders_col_qty": "Qty", "orders_col_price": "Price",
           "orders_col_short_qty": "Short", "orders_note": "Customer note", "orders_no_note": "No note",
           "orders_received_at": "Received", "orders_updated_at": "Updated", "orders_pickup_after": "Pickup after",
           "orders_conflict": "Cloud conflict", "orders_conflict_found": "Differs from the cloud: call head office", "orders_print_jobs": "Print jobs",
           "orders_no_print_jobs": "No print job for this order", "orders_col_job": "No.",
           "orders_col_doc": "Document", "orders_col_printer": "Printer", "orders_col_created": "Created",
           "orders_col_error": "Error", "orders_reprint_mark": "reprint", "orders_pickups": "Pickup record",
           "orders_no_pickup": "Not picked up yet", "orders_col_verified": "Verified",
           "orders_col_operator": "By", "orders_col_method": "Method", "orders_col_reversed": "Reversed",
           "orders_provisional": "offline, provisional", "orders_reversed_by": "{at} by {who}: {reason}",
           "orders_actions": "Actions", "orders_mark_ready": "Mark as ready", "orders_reprint": "Reprint ticket",
           "orders_reverse": "Reverse hand-over", "orders_reverse_reason": "Reason for the reversal",
           "orders_reverse_hint": "Only for a hand-over made by mistake: the goods go back to stock, reserved for "
                                  "this order again, which returns to “Ready for pickup”",
           "orders_done_ready": "Marked as ready: waiting for the customer", "orders_done_reprint": "Queued again",
           "orders_done_reverse": "Hand-over reversed: the order waits for pickup again",
           "orders_no_ticket": "This order has no ticket to reprint",
           "orders_not_found": "No such order (the link may be wrong)", "orders_back": "Back to orders",
           "orders_reason_too_long": "At most 200 characters"},
})

PAGE_SIZE = 50
FILTERS = ("open", *orders.ALL_STATES)
DONE = {"ready": "orders_done_ready", "reprint": "orders_done_reprint", "reverse": "orders_done_reverse"}


def error_text(exc: InputError, lang: str) -> str:
    """A refusal's Chinese message when there is one (the cashier's words), else the English one."""
    if lang == "zh" and exc.detail and exc.detail.get("message_zh"):
        return exc.detail["message_zh"]
    return exc.message


def orders_page(conn, state: str, short: bool, before: str | None) -> dict:
    page = orders.list_orders(conn, state=state or None, short=short, before=before, limit=PAGE_SIZE)
    for order in page["items"]:
        order["item_count"] = sum(line["qty"] for line in order["lines"])
        order["print_state"] = orders.ticket_state(conn, order["id"])
    return page


def order_detail(conn, order_id: str) -> dict:
    order = orders.get_order(conn, order_id)
    order["item_count"] = sum(line["qty"] for line in order["lines"])
    jobs = spool.list_jobs(conn, order_id=order_id, limit=50)["items"]
    handed_over = pickups.for_order(conn, order_id)
    ticket = next((j for j in jobs if j["kind"] == "order_ticket"), None)
    return {"order": order, "jobs": jobs, "pickups": handed_over, "ticket": ticket,
            "can_ready": order["state"] in orders.STAFF_TRANSITIONS["ready"],
            "can_reprint": ticket is not None and ticket["state"] in spool.FINAL_STATES,
            "can_reverse": order["state"] == "picked_up" and any(p["reversed_at"] is None for p in handed_over)}


@page("/ui/orders", role="manager", template="orders.html")
async def list_page(request: web.Request):
    state = request.query.get("state", "open")
    if state not in FILTERS and state != "":
        state = "open"
    short = request.query.get("short") == "1"
    before = request.query.get("before") or None
    data = await request.app[STORE].read(orders_page, state, short, before)
    return {"orders": data["items"], "next_before": data["next_before"], "state": state, "short": short,
            "filters": FILTERS, "before": before}


async def _detail(request: web.Request, order_id: str, *, status: int = 200, errors: dict | None = None,
                  error: str | None = None, values: dict | None = None):
    try:
        data = await request.app[STORE].read(order_detail, order_id)
    except NotFound:
        return render(request, "error.html", status=404, error_key="orders_not_found", message="")
    context = {**data, "errors": errors or {}, "error": error, "values": values or {},
               "done": DONE.get(request.query.get("done", ""))}
    if status != 200:
        return render(request, "order.html", status=status, **context)
    return context


@page("/ui/orders/{order_id}", role="manager", template="order.html")
async def detail_page(request: web.Request):
    return await _detail(request, request.match_info["order_id"])


def _back(order_id: str, done: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"/ui/orders/{quote(order_id, safe='')}?done={done}")


async def _act(request: web.Request, form: dict, order_id: str, fn, *, action: str, detail: dict, done: str):
    try:
        await ui_write(request, form, fn, action=action, target=order_id, detail=detail)
    except NotFound:
        return render(request, "error.html", status=404, error_key="orders_not_found", message="")
    except InputError as exc:
        return await _detail(request, order_id, status=exc.status if exc.status >= 400 else 409,
                             error=error_text(exc, request.get(LANG, "zh")))
    raise _back(order_id, done)


@page("/ui/orders/{order_id}/ready", role="manager", method="POST")
async def mark_ready(request: web.Request):
    order_id = request.match_info["order_id"]
    form = await form_data(request)
    operator = request[WHO]["display_name"]
    body = orders.StateChange(to="ready", operator=operator)
    return await _act(request, form, order_id, lambda conn, ctx: orders.change_state(conn, order_id, body, ctx),
                      action="order.ready", detail={"to": "ready"}, done="ready")


@page("/ui/orders/{order_id}/reprint", role="manager", method="POST")
async def reprint_ticket(request: web.Request):
    order_id = request.match_info["order_id"]
    form = await form_data(request)
    operator = request[WHO]["display_name"]
    lang = request.get(LANG, "zh")

    def run(conn, ctx):
        orders.get_order(conn, order_id)  # 404 for an unknown order
        jobs = spool.list_jobs(conn, order_id=order_id, kind="order_ticket", limit=1)["items"]
        if not jobs:
            raise InputError("no_ticket", text(lang, "orders_no_ticket"), status=409)
        result = spool.reprint(conn, jobs[0]["id"], operator, ctx)
        return {"job_id": jobs[0]["id"], "reprint_id": result["reprint"] and result["reprint"]["id"]}

    return await _act(request, form, order_id, run, action="print.reprint", detail={"kind": "order_ticket"},
                      done="reprint")


@page("/ui/orders/{order_id}/reverse", role="manager", method="POST")
async def reverse_handover(request: web.Request):
    order_id = request.match_info["order_id"]
    form = await form_data(request)
    reason = form.get("reason", "").strip()
    errors = {}
    if not reason:
        errors["reason"] = "field_required"
    elif len(reason) > 200:
        errors["reason"] = "orders_reason_too_long"
    if errors:
        return await _detail(request, order_id, status=422, errors=errors, values={"reason": reason})
    body = pickups.Reversal(operator=request[WHO]["display_name"], reason=reason)
    return await _act(request, form, order_id, lambda conn, ctx: pickups.reverse(conn, order_id, body, ctx),
                      action="pickup.reverse", detail={"reason": reason}, done="reverse")
