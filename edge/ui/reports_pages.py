"""报表 /ui/reports: the manager's report for a business day or a range (edge.store.reports: the same
figures as GET /api/v1/reports), with a date picker, quick ranges, comparisons and Excel exports."""

from __future__ import annotations

from datetime import date, timedelta

from aiohttp import web

from drivers.documents import PAYMENT_LABELS
from edge.core.clock import business_date, utcnow
from edge.core.errors import InputError
from edge.services.app_keys import CONFIG, REPORTS, STORE
from edge.store import reports
from edge.ui.hour_chart import chart
from edge.ui.web import LANG, page, register_text, render

EXPORTS = ("orders", "sales", "pickups", "moves", "shifts")  # shifts: where the schema has them

register_text({
    "zh": {"nav_reports": "报表", "reports_title": "报表", "reports_from": "开始日期", "reports_to": "结束日期",
           "reports_show": "查看", "reports_today": "今天", "reports_yesterday": "昨天", "reports_this_week": "本周",
           "reports_last_7": "近 7 天", "reports_last_31": "近 31 天",
           "reports_period_day": "{day}（{weekday}）营业日", "reports_period_range": "{first} 至 {last}，共 {n} 天",
           "reports_cutoff": "营业日在每天 {cutoff} 结束", "reports_revenue": "营业额",
           "reports_revenue_hint": "收银净额 + 线上订单（已核销）",
           "reports_vs_previous_day": "比前一天（{day}）", "reports_vs_same_day_last_week": "比上周同日（{day}）",
           "reports_vs_previous_range": "比前 {n} 天（{first} 至 {last}）", "reports_no_base": "无可比",
           "reports_till": "收银", "reports_sales": "销售 {n} 笔，{amount}", "reports_refunds": "退货 {n} 笔，退款 {amount}",
           "reports_till_net": "收银净额 {amount}", "reports_online": "线上订单",
           "reports_online_handed": "已核销 {n} 单，{amount}", "reports_online_received": "期间收到 {n} 单",
           "reports_payments": "收款方式", "reports_method": "方式", "reports_amount": "金额",
           "reports_online_paid": "线上支付（平台收款）", "reports_payments_hint": "收银按方式净额：已扣找零和退款",
           "reports_chart_title": "按小时销售额", "reports_chart_label": "各小时销售额柱状图，收银与线上订单叠加",
           "reports_chart_empty": "这段时间没有销售", "reports_chart_till": "收银", "reports_chart_online": "线上订单",
           "reports_products": "畅销商品", "reports_product": "商品", "reports_qty": "数量", "reports_rank": "排名",
           "reports_categories": "品类", "reports_category": "品类", "reports_uncategorized": "未分类",
           "reports_products_hint": "含收银和已核销的线上订单，按商品行金额（整单优惠和退货只计入总额）",
           "reports_days": "每日明细", "reports_date": "日期", "reports_sales_col": "收银销售",
           "reports_refunds_col": "退款", "reports_online_col": "线上订单",
           "reports_pickups": "核销记录（{day}）", "reports_pickups_range": "每天的核销记录：点上面每日明细中的日期", "reports_time": "核销时间", "reports_order": "订单号", "reports_staff": "核销人",
           "reports_status": "状态", "reports_reversed": "已冲正（{who}）", "reports_provisional": "离线临时核销",
           "reports_done": "有效", "reports_pickups_empty": "这一天没有核销记录",
           "reports_pickups_more": "只显示前 {n} 条，完整记录请导出 Excel",
           "reports_exports": "导出 Excel", "reports_exports_hint": "导出所选日期范围的数据（.xlsx，金额为数字，时间为门店时区）",
           "reports_export_orders": "线上订单", "reports_export_sales": "销售和退货", "reports_export_pickups": "核销记录",
           "reports_export_moves": "库存流水", "reports_export_shifts": "交班记录", "reports_empty": "无",
           "reports_weekday_0": "周一", "reports_weekday_1": "周二", "reports_weekday_2": "周三",
           "reports_weekday_3": "周四", "reports_weekday_4": "周五", "reports_weekday_5": "周六",
           "reports_weekday_6": "周日",
           "reports_error_invalid_query": "日期格式不对，请用日期选择器选择（例如 2026-11-21）",
           "reports_error_invalid_range": "结束日期不能早于开始日期",
           "reports_error_range_too_long": f"一次最多查看 {reports.MAX_DAYS} 天，请缩短日期范围"},
    "en": {"nav_reports": "Reports", "reports_title": "Reports", "reports_from": "From", "reports_to": "To",
           "reports_show": "Show", "reports_today": "Today", "reports_yesterday": "Yesterday",
           "reports_this_week": "This week", "reports_last_7": "Last 7 days", "reports_last_31": "Last 31 days",
           "reports_period_day": "Business day {day} ({weekday})", "reports_period_range": "{first} to {last}, {n} days",
           "reports_cutoff": "The business day ends at {cutoff}", "reports_revenue": "Revenue",
           "reports_revenue_hint": "Till net + online orders handed over",
           "reports_vs_previous_day": "vs the day before ({day})",
           "reports_vs_same_day_last_week": "vs the same day last week ({day})",
           "reports_vs_previous_range": "vs the {n} days before ({first} to {last})", "reports_no_base": "no base",
           "reports_till": "Till", "reports_sales": "{n} sales, {amount}", "reports_refunds": "{n} returns, refunded {amount}",
           "reports_till_net": "Till net {amount}", "reports_online": "Online orders",
           "reports_online_handed": "{n} handed over, {amount}", "reports_online_received": "{n} received",
           "reports_payments": "Payment methods", "reports_method": "Method", "reports_amount": "Amount",
           "reports_online_paid": "Paid online (to the chain)",
           "reports_payments_hint": "Till money by method, net of change and refunds",
           "reports_chart_title": "Sales by hour", "reports_chart_label": "Bar chart of sales by hour, till and online stacked",
           "reports_chart_empty": "No sales in this period", "reports_chart_till": "Till",
           "reports_chart_online": "Online orders",
           "reports_products": "Best sellers", "reports_product": "Product", "reports_qty": "Qty", "reports_rank": "#",
           "reports_categories": "Categories", "reports_category": "Category", "reports_uncategorized": "Uncategorized",
           "reports_products_hint": "Till and handed-over online orders, by line amount (sale discounts and returns "
                                    "are in the totals only)",
           "reports_days": "By day", "reports_date": "Date", "reports_sales_col": "Till sales",
           "reports_refunds_col": "Refunds", "reports_online_col": "Online",
           "reports_pickups": "Pickups (核销) on {day}", "reports_pickups_range": "Each day's pickups: click its date in By day above", "reports_time": "Handed over", "reports_order": "Order",
           "reports_staff": "Staff", "reports_status": "Status", "reports_reversed": "Reversed ({who})",
           "reports_provisional": "Provisional (offline)", "reports_done": "Valid",
           "reports_pickups_empty": "No pickups that day",
           "reports_pickups_more": "Only the first {n} are shown: export to Excel for all",
           "reports_exports": "Export to Excel",
           "reports_exports_hint": "The chosen dates' data (.xlsx, money as numbers, times in the store's zone)",
           "reports_export_orders": "Online orders", "reports_export_sales": "Sales and returns",
           "reports_export_pickups": "Pickups", "reports_export_moves": "Stock moves", "reports_export_shifts": "Shifts", "reports_empty": "none",
           "reports_weekday_0": "Mon", "reports_weekday_1": "Tue", "reports_weekday_2": "Wed",
           "reports_weekday_3": "Thu", "reports_weekday_4": "Fri", "reports_weekday_5": "Sat",
           "reports_weekday_6": "Sun",
           "reports_error_invalid_query": "That is not a date: pick one with the date picker (e.g. 2026-11-21)",
           "reports_error_invalid_range": "The end date is before the start date",
           "reports_error_range_too_long": f"At most {reports.MAX_DAYS} days at a time: shorten the range"},
})


def quick_ranges(today: str) -> list[tuple[str, str, str]]:
    """(text key, from, to) of the quick links, around the store's business day today."""
    day = date.fromisoformat(today)
    iso = date.isoformat
    return [("reports_today", today, today), ("reports_yesterday", iso(day - timedelta(1)), iso(day - timedelta(1))),
            ("reports_this_week", iso(day - timedelta(day.weekday())), today),
            ("reports_last_7", iso(day - timedelta(6)), today), ("reports_last_31", iso(day - timedelta(30)), today)]


def range_from(query, today: str) -> tuple[str, str]:
    """The query's from/to (from: today if absent or empty; to: from), checked: an InputError says why."""
    first = query.get("from") or today
    last = query.get("to") or first
    return reports.check_range(first, last)


def payment_rows(report: dict, lang: str) -> list[dict]:
    labels = PAYMENT_LABELS.get(lang, PAYMENT_LABELS["zh"])
    rows = [{"method": m, "label": labels.get(m, m), "fen": fen} for m, fen in report["payments_fen"].items()]
    rows.append({"method": "online", "label": None, "fen": report["online"]["fen"]})
    return rows


@page("/ui/reports", role="manager", template="reports.html")
async def reports_page(request: web.Request):
    config = request.app[CONFIG]
    today = business_date(utcnow(), config.tz, config.day_cutoff)
    values = {"today": today, "quick": quick_ranges(today), "exports": EXPORTS, "report": None, "error": None,
              "cutoff": config.store.day_cutoff, "first": request.query.get("from", today),
              "last": request.query.get("to", "")}
    try:
        first, last = range_from(request.query, today)
    except InputError as exc:
        values["error"] = f"reports_error_{exc.code}"
        return render(request, "reports.html", status=400, **values)
    def read(conn):
        return reports.report(conn, first, last, config.tz, config.day_cutoff, today=today,
                              closed=request.app.get(REPORTS))
    report = await request.app[STORE].read_long(read)
    lang = request.get(LANG, "zh")
    return {**values, "first": first, "last": last, "report": report, "chart": chart(report["hours"]),
            "payments": payment_rows(report, lang), "weekday": date.fromisoformat(first).weekday(),
            "range_query": f"from={first}&to={last}",
            "exports": EXPORTS}
