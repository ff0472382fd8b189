"""Fixed data for every printed document: what the golden-output tests print and the print bench renders.

Chinese names of every kind (a long one that wraps on both papers, ASCII and CJK mixed), a line
discount, a coupon, split payments with change, a short order line, an unknown printer state.
"""

from __future__ import annotations

STORE = {"id": "store-001", "name": "好邻居便利店 五道口店", "timezone": "Asia/Shanghai",
         "address": "北京市海淀区成府路28号", "phone": "010-62345678"}
SALE_ID = "6f1c0e1e-1111-4222-8333-444455556666"
ORDER_ID = "ord_20261122_0001"
PICKUP_CODE_SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
DASHBOARD = "http://192.168.1.20:8470/"

SALE = {
    "id": SALE_ID, "number": 1023, "created_at": "2026-11-22T01:05:09.123Z", "cashier": "王芳",
    "note": "顾客要求开发票，抬头：北京某某科技有限公司",
    "lines": [
        # long: wraps on both papers; a line discount
        {"line_no": 1, "name": "农夫山泉 饮用天然水 550ml 整箱装（24瓶）特惠装", "qty": 2, "unit_price_fen": 3600,
         "discount_fen": 500, "amount_fen": 6700},
        # ASCII and CJK mixed
        {"line_no": 2, "name": "可口可乐 Coca-Cola 330ml", "qty": 3, "unit_price_fen": 350, "discount_fen": 0,
         "amount_fen": 1050},
        {"line_no": 3, "name": "乐事薯片", "qty": 1, "unit_price_fen": 750, "discount_fen": 0, "amount_fen": 750},
    ],
    "subtotal_fen": 8500, "discount_fen": 500, "total_fen": 8000, "paid_fen": 10000, "change_fen": 2000,
    "payments": [{"method": "wechat", "amount_fen": 5000}, {"method": "cash", "amount_fen": 5000}],
}
# a 金卡 member's sale as get_sale returns it (docs/members.md): a member price above a line discount, the level's
# 95% rounded half up, an excluded category (烟草) at list price; points and stored value among payments
MEMBER = {"member_id": "m-000123", "level": "金卡", "name": "张*", "phone": "138****5678", "points_earned": 101,
          "points_spent": 500, "points_value_fen": 500, "stored_value_fen": 5000, "saved_fen": 451,
          "points_balance": 1601, "stored_value_balance_fen": 15000, "offline": False}
MEMBER_SALE = {
    "id": SALE_ID, "number": 1024, "created_at": "2026-11-22T01:05:09.123Z", "cashier": "王芳", "note": None,
    "lines": [
        {"line_no": 1, "name": "农夫山泉 饮用天然水 550ml 整箱装（24瓶）特惠装", "qty": 2, "unit_price_fen": 3400,
         "list_price_fen": 3600, "member_saved_fen": 400, "discount_fen": 500, "amount_fen": 6300},
        {"line_no": 2, "name": "可口可乐 Coca-Cola 330ml", "qty": 3, "unit_price_fen": 333, "list_price_fen": 350,
         "member_saved_fen": 51, "discount_fen": 0, "amount_fen": 999},
        {"line_no": 3, "name": "中华（硬）", "qty": 1, "unit_price_fen": 4500, "list_price_fen": 4500,
         "member_saved_fen": 0, "discount_fen": 0, "amount_fen": 4500},
    ],
    "subtotal_fen": 11799, "discount_fen": 0, "total_fen": 11799, "paid_fen": 11799, "change_fen": 0,
    "payments": [{"method": "points", "amount_fen": 500}, {"method": "stored_value", "amount_fen": 5000},
                 {"method": "wechat", "amount_fen": 6299}],
    "member": MEMBER,
}
# all 3 colas of that sale back: R = 999 of T = 11799, so points 500 × R // T = 42 (worth ￥0.42) and stored value
# 5000 × R // T = 423 go back to the member, 101 × R // T = 8 points earned come off, WeChat refunds the rest
MEMBER_RETURN = {
    "id": "0a0b0c0d-2222-4333-8444-555566667777", "sale_id": SALE_ID, "created_at": "2026-11-22T06:30:00.000Z",
    "refund_fen": 999, "refund_method": "wechat", "restock": True, "reason": None,
    "lines": [{"line_no": 2, "sku": "DRK-002", "qty": 3, "refund_fen": 999}],
    "member": {"member_id": MEMBER["member_id"], "points_taken_back": 8, "points_given_back": 42, "points_value_fen": 42,
               "stored_value_fen": 423},
}
ORDER = {
    "id": ORDER_ID, "number": "1023", "kind": "pickup", "state": "accepted", "short": True,
    "pickup_after": "2026-11-22T03:30:00Z", "pickup_code_sha256": PICKUP_CODE_SHA256,
    "customer_note": "请把冷饮单独装袋，谢谢！到店后电话联系 138 0013 8000", "total_fen": 11590,
    "created_at": "2026-11-22T01:40:00.000Z", "received_at": "2026-11-22T01:40:02.000Z",
    "lines": [
        {"line_no": 1, "sku": "DRK-001", "name": "农夫山泉 饮用天然水 550ml 整箱装（24瓶）特惠装", "qty": 2,
         "price_fen": 3600, "short_qty": 0},
        {"line_no": 2, "sku": "SNK-002", "name": "奥利奥 Oreo 夹心饼干 97g", "qty": 3, "price_fen": 890,
         "short_qty": 1},
        {"line_no": 3, "sku": "HOM-001", "name": "洁柔 抽纸 3包装", "qty": 1, "price_fen": 1720, "short_qty": 0},
    ],
}

# closed, 0.50 yuan short; a note that wraps
SHIFT = {
    "id": 3, "number": 7, "till": "till-1", "cashier": "王芳", "business_date": "2026-11-22",
    "opened_at": "2026-11-22T00:00:00.000Z", "closed_at": "2026-11-22T08:00:00.000Z", "closed_by": "王芳",
    "float_fen": 20000, "counted_fen": 141440, "expected_fen": 141490, "difference_fen": -50,
    "note": "交班时抽屉里有一张五十元假币，已交店长", "open": False,
    "figures": {"sales_count": 64, "sales_fen": 230120, "returns_count": 1, "refunds_fen": 750, "net_fen": 229370,
                "pickups_count": 9, "net_by_method_fen": {"cash": 121490, "wechat": 80000, "card": 27880},
                "cash_taken_fen": 130240, "change_fen": 8000, "cash_refunds_fen": 750,
                "expected_cash_fen": 141490},
}
# a count sheet of a category across shelves: a long name that wraps, a product without a barcode
# and one without a shelf, a SKU of digits
COUNT_SHEET = {
    "number": 12, "category": "饮料", "shelf": None, "created_at": "2026-11-22T13:30:00.000Z", "lines": [
        {"line_no": 1, "sku": "DRK-002", "barcode": "6921234537013", "name": "可口可乐 330ml 罐装", "unit": "罐",
         "shelf": "A-01"},
        {"line_no": 2, "sku": "DRK-001", "barcode": "6921234500008", "unit": "箱", "shelf": "A-01",
         "name": "农夫山泉 饮用天然水 550ml 整箱装（24瓶）特惠装"},
        {"line_no": 3, "sku": "DRK-003", "barcode": "6921234500015", "name": "康师傅 冰红茶 500ml", "unit": "瓶",
         "shelf": "冷柜2"},
        {"line_no": 4, "sku": "000123", "barcode": None, "name": "散装 冰块 Ice", "unit": "袋", "shelf": None},
    ]}


def sample(kind: str, paper_mm: int = 80) -> dict:
    """Fixed data for each document kind."""
    return {
        "receipt": {"store": STORE, "sale": SALE, "coupons": [{"title": "满80减5", "amount_fen": 500}]},
        "drawer": {},
        "order_ticket": {"store": STORE, "order": ORDER},
        "pickup_slip": {"store": STORE, "order": ORDER, "verified_at": "2026-11-22T03:41:30Z", "operator": "李娜",
                        "provisional": True},
        "daily_summary": {"store": STORE, "printed_at": "2026-11-22T14:02:00Z", "summary": {
            "date": "2026-11-22", "sales_count": 128, "sales_fen": 456780, "returns_count": 2, "refunds_fen": 1590,
            "net_fen": 455190, "net_by_method_fen": {"meituan": 1200, "wechat": 234500, "cash": 121490,
                                                     "alipay": 98000},
            "pickups_count": 17, "outside_shifts": {"sales_count": 2, "sales_fen": 1250}},
            "shifts": [SHIFT, {**SHIFT, "number": 8, "cashier": "夜班 张伟", "till": "local",
                               "opened_at": "2026-11-22T08:00:00.000Z", "closed_at": None,
                               "difference_fen": None}]},
        "shift_report": {"store": STORE, "printed_at": "2026-11-22T08:00:05Z", "shift": SHIFT},
        "status_ticket": {
            "store": STORE, "printed_at": "2026-11-22T02:00:00Z", "dashboard_url": DASHBOARD, "version": "0.1.0",
            "cloud": {"state": "offline", "since": "2026-11-22T01:15:00Z", "queue": 37},
            "printers": [{"name": "front", "state": "ready"}, {"name": "kitchen", "state": "paper_near_end"},
                         {"name": "label", "state": "jammed"}],
            "scanners": [{"name": "hid-1", "state": "ready"}, {"name": "camera", "state": "disabled"}]},
        "test_page": {"store": STORE, "printer": "front", "paper_mm": paper_mm,
                      "printed_at": "2026-11-22T00:30:00Z"},
        "count_sheet": {"store": STORE, "sheet": COUNT_SHEET},
    }[kind]
