"""日结 /ui/day-close: a business day (today by default, any date) with its totals, the online orders
handed over, the payment split and every shift of the day (open ones marked), and the button that prints
the 日结单. The day follows the store's cut-off ([store] day_cutoff)."""

from __future__ import annotations

import re
from datetime import date, timedelta

from aiohttp import web

from edge.core.clock import business_date, day_bounds, utcnow
from edge.core.errors import InputError
from edge.core.schemas import PAYMENT_METHODS
from edge.services.app_keys import CONFIG, STORE
from edge.store import spool
from edge.store.day_close import day_close
from edge.ui.shifts_pages import slip_state
from edge.ui.web import form_data, page, register_text, render, ui_write

register_text({
    "zh": {
        "day_title": "日结", "day_date": "营业日", "day_show": "查看", "day_before": "前一天", "day_after": "后一天",
        "day_today": "今天", "day_cutoff": "营业日从 {cutoff} 到次日 {cutoff}",
        "day_returns_count": "{n} 笔退货", "day_outside": "不在任何班次内的销售：{n} 笔，{amount}",
        "day_shifts": "当日班次", "day_no_shifts": "这一天没有班次", "day_open_shifts": "{n} 个班次尚未交班",
        "day_col_shift": "班次", "day_col_time": "时间", "day_col_sales": "销售", "day_col_slip": "交班小票",
        "day_print": "打印日结单", "day_done_printed": "日结单已送去打印",
        "day_no_printer": "没有打印机打印日结单（在设备设置里给一台打印机加上日结单）",
        "day_bad_date": "日期格式不对，请用 2026-11-22 这样的日期", "day_difference_total": "差额合计",
    },
    "en": {
        "day_title": "Day close", "day_date": "Business day", "day_show": "Show", "day_before": "Day before",
        "day_after": "Day after", "day_today": "Today",
        "day_cutoff": "A business day runs from {cutoff} to {cutoff} the next day",
        "day_returns_count": "{n} returns",
        "day_outside": "Sales outside any shift: {n}, {amount}", "day_shifts": "Shifts of the day",
        "day_no_shifts": "No shift this day", "day_open_shifts": "{n} shift(s) still open",
        "day_col_shift": "Shift", "day_col_time": "Time", "day_col_sales": "Sales", "day_col_slip": "Slip",
        "day_print": "Print the day's summary", "day_done_printed": "The day's summary is printing",
        "day_no_printer": "No printer prints the day's summary (add it to a printer in Devices)",
        "day_bad_date": "Not a date: use one like 2026-11-22", "day_difference_total": "Total difference",
    },
})

DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def asked_day(request: web.Request, raw: str | None) -> str | None:
    """The business day asked for (today by the store's cut-off when none); None when it is no date."""
    config = request.app[CONFIG]
    if not raw:
        return business_date(utcnow(), config.tz, config.day_cutoff)
    try:
        return date.fromisoformat(raw).isoformat() if DATE.fullmatch(raw) else None
    except ValueError:
        return None


def bad_date(request: web.Request) -> web.Response:
    return render(request, "error.html", status=400, error_key="day_bad_date", message="")


@page("/ui/day-close", role="manager", template="day_close.html")
async def day_page(request: web.Request):
    day = asked_day(request, request.query.get("date"))
    if day is None:
        return bad_date(request)
    config = request.app[CONFIG]
    summary = await request.app[STORE].read(day_close, day, day_bounds(day, config.tz, config.day_cutoff))
    for shift in summary["shifts"]:
        shift["slip"] = slip_state(shift)
    first = date.fromisoformat(day)
    return {"day": summary, "date": day, "before": (first - timedelta(days=1)).isoformat(),
            "after": (first + timedelta(days=1)).isoformat(), "cutoff": config.day_cutoff.strftime("%H:%M"),
            "done": request.query.get("done") == "printed", "methods": PAYMENT_METHODS}


@page("/ui/day-close/print", role="manager", method="POST")
async def print_day(request: web.Request):
    form = await form_data(request)
    day = asked_day(request, form.get("date"))
    if day is None:
        return bad_date(request)

    def run(conn, ctx):
        job = spool.enqueue(conn, "daily_summary", f"daily_summary:{day}:{ctx.now}", {"date": day}, ctx)
        if job is None:
            raise InputError("no_printer", "no printer prints daily_summary", status=409)
        return job
    try:
        await ui_write(request, form, run, action="print.daily_summary", target=day)
    except InputError as exc:
        if exc.code != "no_printer":
            raise
        return render(request, "error.html", status=409, error_key="day_no_printer", message="")
    raise web.HTTPSeeOther(f"/ui/day-close?date={day}&done=printed")
