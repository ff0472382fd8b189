"""操作记录 (/ui/audit): who did which sensitive thing and when, newest first, a page at a time."""

from __future__ import annotations

from aiohttp import web

from edge.services.app_keys import STORE
from edge.store import orders, users
from edge.ui.web import page, register_text

PAGE_SIZE = 50

# action code → text key (an action without words is shown by its code)
ACTIONS = {
    "dead_letter.retry": "audit_action_dead_letter_retry", "dead_letter.discard": "audit_action_dead_letter_discard",
    "print.test": "audit_action_print_test", "print.status_ticket": "audit_action_print_status_ticket",
    "print.confirm": "audit_action_print_confirm", "print.reprint": "audit_action_print_reprint",
    "pickup.hand_over": "audit_action_pickup_hand_over", "pickup.reverse": "audit_action_pickup_reverse",
    "pickup.hand_over_manual": "audit_action_pickup_hand_over_manual",
    "order.ready": "audit_action_order_ready", "stock.adjust": "audit_action_stock_adjust",
    "stock.count": "audit_action_stock_count", "login.failed": "audit_action_login_failed",
    "login.locked": "audit_action_login_locked", "shift.open": "audit_action_shift_open",
    "shift.close": "audit_action_shift_close", "print.daily_summary": "audit_action_print_daily_summary",
}
# a detail whose value is a stored code, and the vocabulary (edge/ui/vocabulary.py) that says it in words
DETAIL_WORDS = {"to": "order_state", "kind": "document", "method": "pickup_method"}
TARGET_WORDS = {"shift.open": "device"}  # actions whose target is a stored code (a till's device name)
ORDER_ACTIONS = ("pickup.hand_over", "pickup.hand_over_manual", "pickup.reverse", "order.ready")  # target: an order id
# (a detail key ending in _fen is money, shown in yuan)

register_text({
    "zh": {
        "audit_title": "操作记录", "audit_hint": "谁在何时做了哪些敏感操作（只增不改）", "audit_time": "时间",
        "audit_person": "操作人", "audit_role": "角色", "audit_action": "操作", "audit_target": "对象",
        "audit_detail": "详情", "audit_empty": "暂无操作记录", "audit_older": "更早的记录", "audit_newest": "最新",
        "audit_action_dead_letter_retry": "重新发送被拒记录", "audit_action_dead_letter_discard": "放弃被拒记录",
        "audit_action_print_test": "打印测试页", "audit_action_print_status_ticket": "打印设备状态单",
        "audit_action_print_confirm": "确认不确定的打印", "audit_action_print_reprint": "重打单据",
        "audit_action_pickup_hand_over": "核销取货", "audit_action_pickup_reverse": "撤销核销",
        "audit_action_pickup_hand_over_manual": "无码交货",
        "audit_action_order_ready": "订单备货完成", "audit_action_stock_adjust": "库存调整",
        "audit_action_stock_count": "库存盘点", "audit_action_login_failed": "登录失败",
        "audit_action_login_locked": "登录失败（需等待）",
        "audit_detail_note": "备注", "audit_detail_to": "改为", "audit_detail_kind": "单据",
        "audit_detail_method": "方式", "audit_detail_qty": "数量", "audit_detail_counted": "实盘", "audit_detail_printed": "已打出", "audit_detail_reason": "原因",
        "audit_detail_address": "地址", "audit_detail_failures": "连续失败次数", "audit_detail_wait_seconds": "需等待秒数",
        "audit_order": "订单 {number}", "audit_yes": "是", "audit_no": "否",
        "audit_action_shift_open": "开班", "audit_action_shift_close": "交班",
        "audit_action_print_daily_summary": "打印日结单", "audit_detail_closed_by": "交班人",
        "audit_detail_float_fen": "备用金", "audit_detail_counted_fen": "实点现金",
        "audit_detail_expected_fen": "应有现金", "audit_detail_difference_fen": "差额",
    },
    "en": {
        "audit_title": "Audit log", "audit_hint": "Who did which sensitive thing and when (append-only)",
        "audit_time": "Time", "audit_person": "Person", "audit_role": "Role", "audit_action": "Action",
        "audit_target": "Target", "audit_detail": "Detail", "audit_empty": "Nothing recorded yet",
        "audit_older": "Older", "audit_newest": "Newest", "audit_action_dead_letter_retry": "Retried a rejected event",
        "audit_action_dead_letter_discard": "Discarded a rejected event",
        "audit_action_print_test": "Printed a test page",
        "audit_action_print_status_ticket": "Printed the status ticket",
        "audit_action_print_confirm": "Resolved an uncertain print", "audit_action_print_reprint": "Reprinted",
        "audit_action_pickup_hand_over": "Handed over a pickup", "audit_action_pickup_reverse": "Reversed a hand-over",
        "audit_action_pickup_hand_over_manual": "Handed over without the code",
        "audit_action_order_ready": "Marked an order ready", "audit_action_stock_adjust": "Adjusted stock",
        "audit_action_stock_count": "Counted stock", "audit_action_login_failed": "Failed login",
        "audit_action_login_locked": "Failed login (must wait)",
        "audit_detail_note": "note", "audit_detail_to": "to", "audit_detail_kind": "document",
        "audit_detail_method": "method", "audit_detail_qty": "qty", "audit_detail_counted": "counted", "audit_detail_printed": "printed", "audit_detail_reason": "reason",
        "audit_detail_address": "address", "audit_detail_failures": "failures in a row",
        "audit_detail_wait_seconds": "wait (s)",
        "audit_order": "order {number}", "audit_yes": "yes", "audit_no": "no",
        "audit_action_shift_open": "Opened a shift", "audit_action_shift_close": "Closed a shift",
        "audit_action_print_daily_summary": "Printed the day's summary", "audit_detail_closed_by": "closed by",
        "audit_detail_float_fen": "float", "audit_detail_counted_fen": "counted",
        "audit_detail_expected_fen": "expected", "audit_detail_difference_fen": "difference",
    },
})


def _read(conn, before: int | None) -> dict:
    entries = users.audit_entries(conn, before=before, limit=PAGE_SIZE)
    names = {u["name"]: u["display_name"] for u in users.list_users(conn)}
    numbers = orders.numbers(conn, [e["target"] for e in entries["items"] if e["action"] in ORDER_ACTIONS])
    for item in entries["items"]:
        item["display_name"] = names.get(item["user_name"]) or item["user_name"]
        item["action_key"] = ACTIONS.get(item["action"])
        item["order_number"] = numbers.get(item["target"]) if item["action"] in ORDER_ACTIONS else None
        detail = item["detail"]
        item["detail_items"] = list(detail.items()) if isinstance(detail, dict) else (
            [] if detail is None else [("", detail)])
    return entries


@page("/ui/audit", role="manager", template="audit.html")
async def audit_page(request: web.Request):
    raw = request.query.get("before", "")
    before = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 19 else None
    entries = await request.app[STORE].read(_read, before)
    return {"entries": entries["items"], "next_before": entries["next_before"], "before": before,
            "detail_words": DETAIL_WORDS, "target_words": TARGET_WORDS}
