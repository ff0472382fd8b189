"""交班 /ui/shift: the cashier opens a shift at a till with the float (备用金), watches it fill, and closes it
with the cash counted; /ui/shifts/{id}: one shift as its 交班小票 says it, with the slip's print state and
the manager's reprint. The arithmetic is the store's (edge.store.shifts); these pages only ask and show."""

from __future__ import annotations

import re

from aiohttp import web

from edge.core.errors import InputError, NotFound
from edge.core.schemas import PAYMENT_METHODS
from edge.services.app_keys import STORE
from edge.store import api_tokens, shifts, spool
from edge.ui.orders_pages import error_text
from edge.ui.web import LANG, WHO, Refused, form_data, page, register_text, render, text, ui_write

METHODS_ZH = {"cash": "现金", "wechat": "微信", "alipay": "支付宝", "card": "银行卡", "unionpay": "云闪付",
              "voucher": "券", "other": "其他", "points": "积分抵扣", "stored_value": "储值"}
METHODS_EN = {"cash": "Cash", "wechat": "WeChat Pay", "alipay": "Alipay", "card": "Bank card",
              "unionpay": "UnionPay", "voucher": "Voucher", "other": "Other", "points": "Points",
              "stored_value": "Stored value"}
assert set(METHODS_ZH) == set(METHODS_EN) == set(PAYMENT_METHODS)

register_text({
    "zh": {
        "shift_title": "交班", "shift_open_title": "开班", "shift_till": "收银机", "shift_till_local": "本机收银台",
        "shift_till_busy": "（{cashier} 正在当班）", "shift_float": "备用金（元）",
        "shift_float_hint": "开班时钱箱里的零钱", "shift_open_button": "开班",
        "shift_current": "当前班次", "shift_number": "第 {number} 班", "shift_cashier": "收银员",
        "shift_business_date": "营业日", "shift_opened_at": "开班时间", "shift_closed_at": "交班时间",
        "shift_closed_by": "交班人", "shift_state_open": "当班中", "shift_state_closed": "已交班",
        "shift_sales": "销售", "shift_sales_count": "{n} 笔", "shift_refunds": "退款", "shift_net": "净收入",
        "shift_pickups": "线上订单核销", "shift_pickups_count": "{n} 单", "shift_by_method": "按支付方式",
        "shift_method": "支付方式", "shift_amount": "金额", "shift_no_payments": "本班还没有收款",
        "shift_cash": "现金", "shift_float_short": "备用金", "shift_cash_taken": "现金收款", "shift_change": "找零",
        "shift_cash_refunds": "现金退款", "shift_expected": "应有现金", "shift_counted": "实点现金",
        "shift_difference": "差额", "shift_over": "长款", "shift_short": "短款", "shift_even": "无差额",
        "shift_close_title": "交班：清点钱箱", "shift_counted_label": "实点现金（元）",
        "shift_counted_hint": "数清钱箱里的全部现金（含备用金）后填写", "shift_note": "备注（可不填）",
        "shift_close_button": "交班并打印交班小票", "shift_done_closed": "已交班，交班小票已送去打印",
        "shift_done_opened": "已开班", "shift_done_reprint": "已重新加入打印队列",
        "shift_bad_money": "请填写金额，如 200 或 200.50", "shift_bad_till": "请选择收银机",
        "shift_note_too_long": "最多 200 个字", "shift_not_yours": "这是其他收银员的班次，只有店长可以替他交班",
        "shift_not_found": "找不到这个班次", "shift_slip": "交班小票", "shift_slip_printed": "已打印",
        "shift_slip_printing": "正在打印", "shift_slip_failed": "未打印成功，请到设备页查看或重打",
        "shift_slip_none": "没有打印机打印交班小票", "shift_reprint": "重打交班小票",
        "shift_print": "打印交班小票", "shift_back_day": "返回日结",
        "shift_none_open": "你现在没有当班的班次", "shift_figures": "本班数据",
        **{f"shift_method_{k}": v for k, v in METHODS_ZH.items()},
    },
    "en": {
        "shift_title": "Shift", "shift_open_title": "Open a shift", "shift_till": "Till",
        "shift_till_local": "This machine's till", "shift_till_busy": " ({cashier} is on shift)",
        "shift_float": "Opening float (yuan)", "shift_float_hint": "The change in the drawer at the start",
        "shift_open_button": "Open the shift", "shift_current": "Current shift", "shift_number": "Shift {number}",
        "shift_cashier": "Cashier", "shift_business_date": "Business day", "shift_opened_at": "Opened",
        "shift_closed_at": "Closed", "shift_closed_by": "Closed by", "shift_state_open": "On shift",
        "shift_state_closed": "Closed", "shift_sales": "Sales", "shift_sales_count": "{n} sales",
        "shift_refunds": "Refunds", "shift_net": "Net", "shift_pickups": "Online orders handed over",
        "shift_pickups_count": "{n} orders", "shift_by_method": "By payment method", "shift_method": "Method",
        "shift_amount": "Amount", "shift_no_payments": "Nothing taken yet this shift", "shift_cash": "Cash",
        "shift_float_short": "Opening float", "shift_cash_taken": "Cash taken", "shift_change": "Change given",
        "shift_cash_refunds": "Cash refunds", "shift_expected": "Expected cash", "shift_counted": "Counted cash",
        "shift_difference": "Difference", "shift_over": "over", "shift_short": "short", "shift_even": "exact",
        "shift_close_title": "Close: count the drawer", "shift_counted_label": "Cash counted (yuan)",
        "shift_counted_hint": "All the cash in the drawer, the opening float included",
        "shift_note": "Note (optional)", "shift_close_button": "Close and print the hand-over slip",
        "shift_done_closed": "Shift closed: the hand-over slip is printing", "shift_done_opened": "Shift opened",
        "shift_done_reprint": "Queued again", "shift_bad_money": "Enter an amount, e.g. 200 or 200.50",
        "shift_bad_till": "Choose a till", "shift_note_too_long": "At most 200 characters",
        "shift_not_yours": "Another cashier's shift: only a manager may close it for them",
        "shift_not_found": "No such shift", "shift_slip": "Hand-over slip", "shift_slip_printed": "Printed",
        "shift_slip_printing": "Printing", "shift_slip_failed": "Did not print: see Devices, or reprint",
        "shift_slip_none": "No printer prints hand-over slips", "shift_reprint": "Reprint the hand-over slip",
        "shift_print": "Print the hand-over slip", "shift_back_day": "Back to the day's close",
        "shift_none_open": "You have no shift open",
        "shift_figures": "This shift",
        **{f"shift_method_{k}": v for k, v in METHODS_EN.items()},
    },
})

MONEY = re.compile(r"\s*([0-9]{1,7})(?:\.([0-9]{1,2}))?\s*")
DONE = {"closed": "shift_done_closed", "opened": "shift_done_opened", "reprint": "shift_done_reprint"}


def fen_of(text: str) -> int | None:
    """Yuan as typed ("200", "200.5", "200.50") in fen; None for anything else (a sign, letters, 3 decimals)."""
    found = MONEY.fullmatch(text or "")
    if found is None:
        return None
    return int(found.group(1)) * 100 + int((found.group(2) or "0").ljust(2, "0"))


def slip_state(shift: dict) -> str:
    job = shift["print_job"]
    if job is None:
        return "none"
    return {"printed": "printed", "queued": "printing", "printing": "printing"}.get(job["state"], "failed")


def tills(conn) -> list[dict]:
    """The tills a shift can be opened at: this machine, and every till with a valid API token."""
    busy = shifts.open_tills(conn)
    names = [shifts.LOCAL_TILL] + [t["device"] for t in api_tokens.listing(conn) if t["revoked_at"] is None]
    return [{"name": name, "busy": busy.get(name)} for name in names]


def my_shift(conn, user: str) -> dict:
    return {"shift": shifts.open_at(conn, user_name=user), "tills": tills(conn)}


def _values(request: web.Request, data: dict, **extra) -> dict:
    return {**data, "errors": {}, "values": {}, "error": None, "done": DONE.get(request.query.get("done", "")),
            "methods": PAYMENT_METHODS, **extra}


async def _again(request: web.Request, status: int, **extra) -> web.Response:
    """The shift page again with what was wrong (and what was typed)."""
    data = await request.app[STORE].read(my_shift, request[WHO]["user"])
    return render(request, "shift.html", status=status, **_values(request, data, **extra))


@page("/ui/shift", role="cashier", template="shift.html")
async def shift_page(request: web.Request):
    return _values(request, await request.app[STORE].read(my_shift, request[WHO]["user"]))


@page("/ui/shift/open", role="cashier", method="POST")
async def open_shift(request: web.Request):
    form = await form_data(request)
    who = request[WHO]
    till, float_fen = form.get("till", ""), fen_of(form.get("float", "0") or "0")
    known = [t["name"] for t in await request.app[STORE].read(tills)]
    errors = {}
    if till not in known:
        errors["till"] = "shift_bad_till"
    if float_fen is None:
        errors["float"] = "shift_bad_money"
    if errors:  # also said on top: a stale page in another tab may show the close form by now
        return await _again(request, 422, errors=errors, values=form,
                            error=text(request.get(LANG, "zh"), next(iter(errors.values()))))
    body = shifts.ShiftOpen(cashier=(who["display_name"] or who["user"])[:200], float_fen=float_fen)
    try:
        await ui_write(request, form, lambda conn, ctx: shifts.open_shift(conn, body, ctx, till=till,
                                                                          user_name=who["user"]),
                       action="shift.open", target=till, detail={"float_fen": float_fen})
    except InputError as exc:
        return await _again(request, exc.status, error=error_text(exc, request.get(LANG, "zh")), values=form)
    raise web.HTTPSeeOther("/ui/shift?done=opened")


def _shift_id(request: web.Request) -> int:
    raw = request.match_info["shift_id"]
    if not (raw.isascii() and raw.isdigit() and len(raw) < 19):
        raise web.HTTPNotFound()
    return int(raw)


def _may_see(who: dict, shift: dict) -> None:
    if who["role"] != "manager" and shift["user_name"] != who["user"]:
        raise Refused(403, "shift_not_yours")


@page("/ui/shift/{shift_id}/close", role="cashier", method="POST")
async def close_shift(request: web.Request):
    shift_id = _shift_id(request)
    form = await form_data(request)
    who = request[WHO]
    counted, note = fen_of(form.get("counted", "")), form.get("note", "").strip()
    errors = {}
    if counted is None:
        errors["counted"] = "shift_bad_money"
    if len(note) > 200:
        errors["note"] = "shift_note_too_long"
    if errors:
        return await _close_again(request, shift_id, 422, errors=errors, values=form)
    body = shifts.ShiftClose(counted_fen=counted, closed_by=(who["display_name"] or who["user"])[:200],
                             note=note or None)

    def run(conn, ctx):
        _may_see(who, shifts.get_shift(conn, shift_id))
        return shifts.close_shift(conn, shift_id, body, ctx, who)
    try:
        await ui_write(request, form, run)
    except NotFound:
        raise web.HTTPNotFound() from None
    except InputError as exc:
        return await _close_again(request, shift_id, exc.status, error=error_text(exc, request.get(LANG, "zh")),
                                  values=form)
    raise web.HTTPSeeOther(f"/ui/shifts/{shift_id}?done=closed")


def _detail_values(request: web.Request, shift: dict, **extra) -> dict:
    who = request[WHO]
    _may_see(who, shift)
    job = shift["print_job"]
    return _values(request, {"shift": shift, "slip": slip_state(shift), "can_close": shift["open"],
                             "can_print": who["role"] == "manager" and not shift["open"]
                             and (job is None or job["state"] in spool.FINAL_STATES)}, **extra)


async def _close_again(request: web.Request, shift_id: int, status: int, **extra) -> web.Response:
    """A refused close, shown where it was asked: the person's own shift page, or the shift's page (a
    manager closing a shift for someone)."""
    own = await request.app[STORE].read(my_shift, request[WHO]["user"])
    if own["shift"] is not None and own["shift"]["id"] == shift_id:
        return render(request, "shift.html", status=status, **_values(request, own, **extra))
    try:
        shift = await request.app[STORE].read(shifts.get_shift, shift_id)
    except NotFound:
        raise web.HTTPNotFound() from None
    return render(request, "shift_detail.html", status=status, **_detail_values(request, shift, **extra))


@page("/ui/shifts/{shift_id}", role="cashier", template="shift_detail.html")
async def shift_detail(request: web.Request):
    try:
        shift = await request.app[STORE].read(shifts.get_shift, _shift_id(request))
    except NotFound:
        return render(request, "error.html", status=404, error_key="shift_not_found", message="")
    return _detail_values(request, shift)


@page("/ui/shifts/{shift_id}/print", role="manager", method="POST")
async def print_slip(request: web.Request):
    """Reprint the 交班小票 (marked 重打 if it had printed); a shift closed with no printer prints it now."""
    shift_id = _shift_id(request)
    form = await form_data(request)
    operator = request[WHO]["display_name"] or request[WHO]["user"]

    def run(conn, ctx):
        shift = shifts.get_shift(conn, shift_id)
        if shift["print_job"] is not None:
            return spool.reprint(conn, shift["print_job"]["id"], operator, ctx)
        job = spool.enqueue(conn, "shift_report", f"shift_report:{shift_id}", {"shift_id": shift_id}, ctx)
        if job is None:
            raise InputError("no_printer", "no printer prints shift_report", status=409)
        return job
    try:
        await ui_write(request, form, run, action="print.reprint", target=str(shift_id),
                       detail={"kind": "shift_report"})
    except NotFound:
        raise web.HTTPNotFound() from None
    except InputError as exc:
        key = "shift_slip_none" if exc.code == "no_printer" else None
        return render(request, "error.html", status=exc.status, error_key=key or "error_input",
                      message="" if key else exc.message)
    raise web.HTTPSeeOther(f"/ui/shifts/{shift_id}?done=reprint")
