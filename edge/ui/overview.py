"""概览 /ui/: the store manager's view of today — sales, orders to prepare and to hand over, short
orders, low stock, printers and scanners, the cloud link. A cashier is sent to 收银台.

Every block is a live region (`data-live="overview_*"`), refreshed from `?fragment=NAME`; the
context is computed once per request, whichever block asks.
"""

from __future__ import annotations

import time

from aiohttp import web

from edge.core.clock import business_date, utcnow
from edge.services.app_keys import CONFIG, DEVICES, PRINTING, STORE, SYNC
from edge.store.overview import figures
from edge.ui.hour_chart import chart
from edge.ui.web import LANG, WHO, page, register_text, word

register_text({
    "zh": {"overview_title": "概览", "overview_today_sales": "今日销售", "overview_sales_count": "{n} 笔",
           "overview_returns": "退货 {n} 笔，退款 {amount}", "overview_net": "净额 {amount}",
           "overview_today_orders": "今日线上订单", "overview_orders_received": "今日收到 {n} 单",
           "overview_orders_picked": "今日已自提 {n} 单", "overview_orders_open": "未完成 {n} 单",
           "overview_chart_title": "按小时销售额（{day}）", "overview_chart_empty": "今天还没有销售",
           "overview_chart_label": "今日各小时销售额柱状图", "overview_chart_till": "收银",
           "overview_chart_online": "线上订单（已核销）",
           "overview_waiting": "待备货", "overview_waiting_empty": "暂无待备货的订单",
           "overview_ready": "待取货", "overview_ready_empty": "暂无等待顾客取货的订单",
           "overview_short": "缺货订单", "overview_short_empty": "暂无缺货的订单",
           "overview_short_hint": "这些订单的商品库存不足，请补货或联系顾客",
           "overview_low": "低库存商品", "overview_low_empty": "暂无低于预警线的商品",
           "overview_low_more": "查看全部低库存", "overview_printers": "打印机", "overview_printers_empty": "未配置打印机",
           "overview_scanners": "扫码枪", "overview_scanners_empty": "未配置扫码枪或摄像头",
           "overview_sync": "云端同步", "overview_sync_link": "连接状态", "overview_sync_depth": "待上传事件",
           "overview_sync_oldest": "最早未上传", "overview_sync_last_ok": "上次成功同步",
           "overview_sync_dead": "失败事件（待处理）", "overview_sync_details": "查看同步详情",
           "overview_sync_none": "未配置云端：数据保存在本机，配置后自动上传","overview_never": "从未", "overview_alert_title": "以下线上订单的备货单尚未打印",
           "overview_alert_hint": "请检查打印机，或在订单详情中重打",
           "overview_col_number": "单号", "overview_col_state": "状态", "overview_col_received": "收到时间",
           "overview_col_items": "件数", "overview_col_sku": "SKU", "overview_col_name": "商品",
           "overview_col_available": "可用", "overview_col_threshold": "预警线", "overview_col_name_dev": "名称",
           "overview_col_error": "最近错误", "overview_col_print": "打印", "overview_short_flag": "缺货",
           "overview_none": "无", "overview_jobs_title": "定时任务上次运行失败",
           "overview_job_backup": "自动备份", "overview_job_ledger_check": "夜间库存账核对",
           "overview_jobs_since": "连续失败 {n} 次，最近一次 {time}",
           "overview_jobs_hint": "请联系 IT 人员：在门店电脑上运行 store-edge doctor 查看原因"},
    "en": {"overview_title": "Overview", "overview_today_sales": "Sales today", "overview_sales_count": "{n} sales",
           "overview_returns": "{n} returns, refunded {amount}", "overview_net": "Net {amount}",
           "overview_today_orders": "Online orders today", "overview_orders_received": "{n} received today",
           "overview_orders_picked": "{n} picked up today", "overview_orders_open": "{n} open",
           "overview_chart_title": "Sales by hour ({day})", "overview_chart_empty": "No sales yet today",
           "overview_chart_label": "Bar chart of today's sales by hour", "overview_chart_till": "Till",
           "overview_chart_online": "Online orders (handed over)",
           "overview_waiting": "To prepare", "overview_waiting_empty": "No orders to prepare",
           "overview_ready": "Waiting for pickup", "overview_ready_empty": "No orders waiting for the customer",
           "overview_short": "Short orders", "overview_short_empty": "No short orders",
           "overview_short_hint": "Stock does not cover these orders: restock or call the customer",
           "overview_low": "Low stock", "overview_low_empty": "Nothing at or below its threshold",
           "overview_low_more": "All low stock", "overview_printers": "Printers",
           "overview_printers_empty": "No printer configured",
           "overview_scanners": "Scanners", "overview_scanners_empty": "No scanner or camera configured",
           "overview_sync": "Cloud sync", "overview_sync_link": "Link", "overview_sync_depth": "Events to send",
           "overview_sync_oldest": "Oldest unsent", "overview_sync_last_ok": "Last success",
           "overview_sync_dead": "Failed events (to handle)", "overview_sync_details": "Sync details",
           "overview_sync_none": "No cloud configured: data stays on this PC and is sent once one is set",
           "overview_never": "never",
           "overview_alert_title": "The tickets of these online orders have not printed",
           "overview_alert_hint": "Check the printer, or reprint from the order's page",
           "overview_col_number": "No.", "overview_col_state": "State", "overview_col_received": "Received",
           "overview_col_items": "Items", "overview_col_sku": "SKU", "overview_col_name": "Product",
           "overview_col_available": "Available", "overview_col_threshold": "Threshold",
           "overview_col_name_dev": "Name", "overview_col_error": "Last error", "overview_col_print": "Print",
           "overview_short_flag": "short", "overview_none": "none",
           "overview_jobs_title": "A scheduled job failed its last run", "overview_job_backup": "Backup",
           "overview_job_ledger_check": "Nightly ledger check", "overview_jobs_since": "{n} failed run(s) in a row, "
           "the last at {time}", "overview_jobs_hint": "Call IT: run store-edge doctor on the store PC to see why"},
})

def devices(request: web.Request) -> tuple[list[dict], list[dict]]:
    lang = request.get(LANG, "zh")
    service = request.app.get(PRINTING)
    printers = []
    for p in service.printers() if service is not None else []:
        printers.append({"name": p["name"], "type": p.get("type"), "state": p["state"],
                         "state_text": word(lang, "device_state", p["state"]), "error": p.get("error"),
                         "ok": p["state"] == "ready"})
    readers = request.app.get(DEVICES)
    scanners = []
    for d in readers.states() if readers is not None else []:
        scanners.append({"name": d["device"], "state": d["state"],
                         "state_text": word(lang, "device_state", d["state"]), "error": d.get("last_error"),
                         "ok": d["state"] == "connected"})
    return printers, scanners


def sync_health(request: web.Request, queue_status: dict) -> dict:
    engine = request.app.get(SYNC)
    lang = request.get(LANG, "zh")
    if engine is None:
        link = {"state": "none", "last_success_at": None, "last_error": None}
    else:
        link = engine.link.as_dict()
    return {"configured": engine is not None, "state": link["state"],
            "state_text": word(lang, "link_state", link["state"]), "ok": link["state"] == "online",
            "last_success_at": link.get("last_success_at"), "last_error": link.get("last_error"),
            "depth": queue_status["depth"], "oldest_unsent_at": queue_status["oldest_unsent_at"],
            "dead_letters": queue_status["dead_letters"]}


async def context(request: web.Request) -> dict:
    config = request.app[CONFIG]
    day = business_date(utcnow(), config.tz, config.day_cutoff)
    data = await request.app[STORE].read(figures, day, config.tz, config.day_cutoff)
    printers, scanners = devices(request)
    service = request.app.get(PRINTING)
    return {**data, "day": day, "chart": chart(data["hours"]), "printers": printers, "scanners": scanners,
            "sync": sync_health(request, data["queue"]), "alerts": list(service.alerts) if service else [],
            "generated": time.time()}


@page("/ui/", role="cashier", template="overview.html")
async def overview(request: web.Request):
    if request[WHO]["role"] != "manager":
        raise web.HTTPSeeOther("/ui/cashier")
    return await context(request)
