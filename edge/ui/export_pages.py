"""Excel exports for the manager: GET /ui/export/{orders,sales,pickups,moves,shifts}.xlsx?from=&to=, the business
days of the report page. Chinese column headers (the sheets go to the back office as they are); rows
read by edge/store/exports.py on the long-job reader, written by edge/core/xlsx.py to a temporary
file, then streamed."""

from __future__ import annotations

import asyncio
import tempfile
from urllib.parse import quote

from aiohttp import web

from drivers.documents import PAYMENT_LABELS
from edge.core import xlsx
from edge.core.clock import business_date, day_bounds, utcnow
from edge.core.errors import InputError
from edge.core.xlsx import Column
from edge.services.app_keys import CONFIG, STORE
from edge.store import exports
from edge.ui.reports_pages import range_from
from edge.ui.web import HEADERS, page, render, text

CHUNK = 256 * 1024
PAYMENT = PAYMENT_LABELS["zh"]
YES, NO = "是", "否"


def _methods(value: str | None) -> str:
    """"wechat:1400,cash:2000" -> "微信 ￥14.00，现金 ￥20.00"."""
    out = []
    for part in (value or "").split(","):
        if part:
            method, fen = part.rsplit(":", 1)
            out.append(f"{PAYMENT.get(method, method)} ￥{int(fen) / 100:,.2f}")
    return "，".join(out)


def _sales(row):
    return ["销售" if row["kind"] == "sale" else "退货", row["number"], row["business_date"], row["created_at"],
            row["cashier"], row["device"], row["subtotal_fen"], row["discount_fen"], row["amount_fen"],
            row["change_fen"], _methods(row["methods"]), row["note"]]


def _orders(row):
    return [row["number"], text("zh", f"orders_kind_{row['kind']}"), text("zh", f"orders_state_{row['state']}"),
            row["received_at"], row["items"], row["total_fen"], row["verified_at"], row["staff"],
            YES if row["short"] else NO, row["conflict"], row["customer_note"]]


def _pickups(row):
    return [row["verified_at"], row["number"], row["staff"], "扫码" if row["method"] == "token" else "输入取货码",
            YES if row["provisional"] else NO, row["total_fen"], row["counted_fen"], row["reversed_at"],
            row["reversed_by"], row["reverse_reason"]]


def _moves(row):
    return [row["created_at"], row["sku"], row["name"], row["unit"], row["qty"],
            text("zh", f"stock_reason_{row['reason']}"), row["device"], row["note"]]


def _shifts(row):
    return [row["number"], row["business_date"], row["till"], row["cashier"], row["opened_at"], row["float_fen"],
            row["closed_at"], row["closed_by"], row["sales_count"], row["sales_fen"], row["expected_fen"],
            row["counted_fen"], row["difference_fen"], row["note"]]


# what -> (sheet title, columns, rows reader, row words, range kind: business days or [start, end) times)
SHEETS = {
    "sales": ("销售和退货", [Column("类型", width=8), Column("小票号", "int", 10), Column("营业日", width=12),
                        Column("时间", "time", 20), Column("收银员", width=10), Column("设备", width=12),
                        Column("商品金额", "money", 12), Column("优惠", "money", 10),
                        Column("实收（退款为负）", "money", 16, total=True), Column("找零", "money", 10),
                        Column("支付方式", width=28), Column("备注或退货原因", width=20)],
              exports.sales, _sales, "days"),
    "orders": ("线上订单", [Column("订单号", width=14), Column("类型", width=10), Column("状态", width=12),
                        Column("收到时间", "time", 20), Column("件数", "int", 8, total=True),
                        Column("订单金额", "money", 12, total=True), Column("核销时间", "time", 20),
                        Column("核销人", width=10), Column("缺货", width=6), Column("与云端不一致", width=24),
                        Column("顾客备注", width=24)],
               exports.orders, _orders, "times"),
    "pickups": ("核销记录", [Column("核销时间", "time", 20), Column("订单号", width=14), Column("核销人", width=10),
                         Column("方式", width=12), Column("离线临时核销", width=12), Column("订单金额", "money", 12),
                         Column("计入营业额", "money", 12, total=True), Column("冲正时间", "time", 20),
                         Column("冲正人", width=10), Column("冲正原因", width=20)],
                exports.pickups, _pickups, "times"),
    "moves": ("库存流水", [Column("时间", "time", 20), Column("SKU", width=14), Column("商品", width=30),
                       Column("单位", width=6), Column("数量", "int", 10), Column("原因", width=12),
                       Column("设备", width=12), Column("备注", width=24)],
              exports.moves, _moves, "times"),
    "shifts": ("交班记录", [Column("班次号", "int", 8), Column("营业日", width=12), Column("收银台", width=12),
                        Column("收银员", width=10), Column("开班时间", "time", 20), Column("备用金", "money", 12),
                        Column("交班时间", "time", 20), Column("交班人", width=10),
                        Column("销售笔数", "int", 10, total=True), Column("销售额", "money", 12, total=True),
                        Column("应有现金", "money", 12), Column("实点现金", "money", 12),
                        Column("差额", "money", 10, total=True), Column("备注", width=24)],
               exports.shifts, _shifts, "days"),
}


@page("/ui/export/{what}.xlsx", role="manager")
async def export(request: web.Request) -> web.StreamResponse:
    what = request.match_info["what"]
    if what not in SHEETS:
        raise web.HTTPNotFound()
    config = request.app[CONFIG]
    try:
        first, last = range_from(request.query, business_date(utcnow(), config.tz, config.day_cutoff))
    except InputError as exc:
        return render(request, "error.html", status=400, error_key=f"reports_error_{exc.code}", message="")
    title, columns, reader, words, by = SHEETS[what]
    bounds = (first, last) if by == "days" else (day_bounds(first, config.tz, config.day_cutoff)[0],
                                                  day_bounds(last, config.tz, config.day_cutoff)[1])
    with tempfile.TemporaryFile() as out:
        def build(conn):
            return xlsx.write(out, title, columns, (words(row) for row in reader(conn, *bounds)), config.tz)
        await request.app[STORE].read_long(build)
        size = out.tell()
        out.seek(0)
        name = f"{what}-{first}-{last}.xlsx"
        response = web.StreamResponse(headers={
            **HEADERS, "Content-Type": xlsx.MEDIA_TYPE, "Content-Length": str(size),
            "Content-Disposition": f"attachment; filename=\"{name}\"; filename*=UTF-8''"
                                   f"{quote(f'{title}-{first}-{last}.xlsx')}"})
        await response.prepare(request)
        while chunk := await asyncio.to_thread(out.read, CHUNK):
            await response.write(chunk)
        await response.write_eof()
        return response
