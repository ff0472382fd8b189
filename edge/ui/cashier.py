"""收银台: the cashier's screen. Scan or type a code; pickups (look up, confirm the hand-over), coupons,
products, refusals in words; the last scans of the store's scanners; reprint the last receipt.

Every answer to the scan field is HTML for `#scan-result` (a `data-fetch` form); without JavaScript
the whole page comes back with the answer in place. Looking up writes nothing; the hand-over and the
reprint go through `web.ui_write` (one transaction with their audit line, once per form).
"""

from __future__ import annotations

from aiohttp import web
from pydantic import ValidationError

from edge.core.classify import MAX_LENGTH, REASONS, Classified, classify
from edge.core.errors import InputError
from edge.core.refusals import MESSAGES_ZH
from edge.services.app_keys import CONFIG, LIMITER, STORE, pickup_checks
from edge.store import catalog, coupons, pickups, scans, spool, stock
from edge.ui.web import TEXT, WHO, form_data, page, register_text, render, ui_write

LAST_SCANS = 10
HARDWARE = ("serial", "hid", "camera")     # sources of the store's own scanners and cameras
LOOKUP_KINDS = ("pickup_token", "coupon_token", "pickup_code")
TEXT_SHOWN = 32                           # characters of a scan shown in the list

# reason code -> English words (the Chinese ones are edge.core.refusals.MESSAGES_ZH)
REASONS_EN = {
    "malformed": "Unreadable code: ask the customer to refresh it and scan again",
    "unknown_key": "Cannot verify this code (its signing key is not synced or was revoked); retry when online",
    "bad_signature": "Forged or altered code: do not accept it",
    "expired": "The code has expired: ask the customer to refresh it in the mini-program",
    "not_yet_valid": "The code is not valid yet",
    "wrong_store": "This code belongs to another store",
    "unknown_order": "This store does not have this order (maybe not synced yet): check the store",
    "bad_code": "Wrong pickup code",
    "already_used": "This code was used already",
    "not_ready": "The order was cancelled or refunded: do not hand it over",
    "rate_limited": "Too many wrong pickup codes: wait a moment and try again",
    "not_picked_up": "This order was not handed over: nothing to reverse",
    "coupon_unknown": "Unknown coupon (maybe not synced yet)",
    "coupon_revoked": "This coupon was withdrawn",
    "coupon_expired": "This coupon is not valid now",
    "online_only": "This coupon needs the cloud, which is unreachable now: try later",
    "min_spend": "The sale does not reach the coupon's minimum spend",
    "out_of_scope": "No item of this sale is covered by the coupon",
}

# why the classifier did not recognize a code (edge.scan_classify.REASONS)
WHY = {
    "zh": {"empty": "内容为空", "too_long": "内容太长", "control_character": "含有无法识别的控制字符",
           "bad_check_digit": "条码校验位错误（可能扫错了，请重扫）", "bad_price_check_digit": "称重条码的价格校验位错误",
           "bad_gs1": "GS1 条码格式错误", "token_malformed": "二维码格式错误", "token_unknown_typ": "不是提货码或优惠券的二维码",
           "unrecognized": "无法识别的码", "classify_error": "识别出错（已记录日志）"},
    "en": {"empty": "Nothing was entered", "too_long": "Too long", "control_character": "Contains a control character",
           "bad_check_digit": "Wrong check digit (probably a misread: scan again)",
           "bad_price_check_digit": "Wrong price check digit on a weighed label", "bad_gs1": "Malformed GS1 code",
           "token_malformed": "Malformed QR code", "token_unknown_typ": "A QR code that is neither a pickup nor a coupon",
           "unrecognized": "Not a code this till knows", "classify_error": "Could not read it (logged)"},
}
register_text({
    "zh": {
        "cashier_title": "收银台", "cashier_scan_label": "扫码或输入提货码", "cashier_scan_button": "查询",
        "cashier_scan_hint": "扫码枪扫码，或手输 6–8 位提货码后按回车",
        "cashier_input_empty": "请扫码或输入提货码", "cashier_input_too_long": "内容太长（最多 {limit} 个字符）",
        "cashier_scan_gone": "找不到这次扫码记录，请重扫",
        "cashier_order": "订单", "cashier_state": "状态", "cashier_items": "商品", "cashier_qty": "数量",
        "cashier_note": "顾客备注", "cashier_pickup_after": "取货时间", "cashier_provisional": "离线核销，待同步确认",
        "cashier_confirm": "确认交货", "cashier_done": "已交货", "cashier_done_by": "{who} 于 {when} 交货",
        "cashier_slip_printed": "小票已打印", "cashier_slip_printing": "正在打印",
        "cashier_slip_none": "未配置打印机", "cashier_slip_failed": "小票未打印成功，请到设备页查看",
        "cashier_used_by": "已于 {when} 由 {who} 核销", "cashier_used_at": "已于 {when} 使用",
        "cashier_retry_after": "请 {seconds} 秒后再试", "cashier_order_state": "订单状态：{state}",
        "cashier_refused": "不能使用", "cashier_unknown_code": "无法识别的码",
        "cashier_payment_code": "这是顾客的付款码：请在收银机的收款界面扫码，此处不收款",
        "cashier_unknown_barcode": "本店没有这个条码的商品",
        "cashier_coupon": "优惠券", "cashier_coupon_value": "立减 {amount}", "cashier_coupon_percent": "减 {percent}%",
        "cashier_coupon_cap": "（最多减 {amount}）", "cashier_coupon_min": "满 {amount} 可用",
        "cashier_coupon_no_min": "无门槛", "cashier_coupon_scope_all": "全部商品可用",
        "cashier_coupon_scope": "适用：{items}", "cashier_coupon_uses": "剩余可用 {n} 次",
        "cashier_coupon_until": "有效期至 {when}", "cashier_coupon_online_only": "需联网核销",
        "cashier_coupon_note": "此券在收银时随本单一起使用（在收银机上结账时扫码），此处仅查看",
        "cashier_product": "商品", "cashier_price": "单价", "cashier_stock": "库存", "cashier_available": "可售",
        "cashier_reserved": "已预留", "cashier_label_weight": "称重 {grams} 克", "cashier_label_price": "标签金额 {amount}",
        "cashier_last_scans": "最近扫码", "cashier_time": "时间", "cashier_device": "设备", "cashier_kind": "类型",
        "cashier_text": "内容", "cashier_look_up": "查询", "cashier_no_scans": "还没有扫码记录",
        "cashier_reprint": "重打上一张小票", "cashier_reprint_none": "还没有小票可以重打",
        "cashier_reprint_done": "已重打小票（{printer}）", "cashier_reprint_busy": "上一张小票还在打印中，请稍候再试",
        "cashier_offline_works": "云端断开时仍可：扫码核销提货（离线核销，联网后自动确认）、查商品、重打小票；"
                                 "需联网的优惠券暂不可用",
        "cashier_alone": "本店未连接云端，独立运行：核销、查商品、打印照常",
        "cashier_invalid": "输入有误：{message}",
        **{f"cashier_reason_{k}": v for k, v in MESSAGES_ZH.items()},
        **{f"cashier_why_{k}": v for k, v in WHY["zh"].items()},
    },
    "en": {
        "cashier_title": "Till", "cashier_scan_label": "Scan, or type a pickup code", "cashier_scan_button": "Look up",
        "cashier_scan_hint": "Scan with the scanner, or type the 6-8 digit pickup code and press Enter",
        "cashier_input_empty": "Scan or type a code", "cashier_input_too_long": "Too long (at most {limit} characters)",
        "cashier_scan_gone": "That scan is not on record any more: scan again",
        "cashier_order": "Order", "cashier_state": "State", "cashier_items": "Items", "cashier_qty": "Qty",
        "cashier_note": "Customer note", "cashier_pickup_after": "Pickup time", "cashier_provisional": "Offline hand-over: to be confirmed by the cloud",
        "cashier_confirm": "Hand over", "cashier_done": "Handed over", "cashier_done_by": "by {who} at {when}",
        "cashier_slip_printed": "Slip printed", "cashier_slip_printing": "Printing",
        "cashier_slip_none": "No printer configured", "cashier_slip_failed": "The slip did not print: see Devices",
        "cashier_used_by": "Handed over on {when} by {who}", "cashier_used_at": "Used on {when}",
        "cashier_retry_after": "Retry in {seconds} s", "cashier_order_state": "Order state: {state}",
        "cashier_refused": "Refused", "cashier_unknown_code": "Unknown code",
        "cashier_payment_code": "A customer's payment code: scan it on the till's payment screen, not here",
        "cashier_unknown_barcode": "No product in this store has this barcode",
        "cashier_coupon": "Coupon", "cashier_coupon_value": "{amount} off", "cashier_coupon_percent": "{percent}% off",
        "cashier_coupon_cap": " (at most {amount})", "cashier_coupon_min": "Minimum spend {amount}",
        "cashier_coupon_no_min": "No minimum spend", "cashier_coupon_scope_all": "On every item",
        "cashier_coupon_scope": "Only on: {items}", "cashier_coupon_uses": "{n} use(s) left",
        "cashier_coupon_until": "Valid until {when}", "cashier_coupon_online_only": "Needs the cloud",
        "cashier_coupon_note": "Applied at the till with the sale (scan it when checking out); this is a preview",
        "cashier_product": "Product", "cashier_price": "Price", "cashier_stock": "Stock", "cashier_available": "Available",
        "cashier_reserved": "Reserved", "cashier_label_weight": "Weighed {grams} g",
        "cashier_label_price": "Label amount {amount}",
        "cashier_last_scans": "Last scans", "cashier_time": "Time", "cashier_device": "Device", "cashier_kind": "Kind",
        "cashier_text": "Text", "cashier_look_up": "Look up", "cashier_no_scans": "No scans yet",
        "cashier_reprint": "Reprint the last receipt", "cashier_reprint_none": "No receipt to reprint yet",
        "cashier_reprint_done": "Receipt reprinted ({printer})",
        "cashier_reprint_busy": "The last receipt is still printing: wait a moment",
        "cashier_offline_works": "While the cloud is down: pickups by QR or code (provisional, confirmed once "
                                 "online), product look-up and reprints still work; online-only coupons do not",
        "cashier_alone": "No cloud configured: this store runs alone; pickups, look-ups and printing work",
        "cashier_invalid": "Invalid input: {message}",
        **{f"cashier_reason_{k}": v for k, v in REASONS_EN.items()},
        **{f"cashier_why_{k}": v for k, v in WHY["en"].items()},
    },
})
assert set(MESSAGES_ZH) <= set(REASONS_EN) and set(REASONS) <= set(WHY["en"])


# -- reads ------------------------------------------------------------------------------------------

def last_scans(conn, limit: int = LAST_SCANS) -> list[dict]:
    out = []
    for r in scans.latest(conn, limit):
        text = r["text"]
        out.append({**r, "short": text if len(text) <= TEXT_SHOWN else text[:TEXT_SHOWN - 1] + "…",
                    "can_look_up": r["source"] in HARDWARE and r["kind"] in LOOKUP_KINDS})
    return out


def find_product(conn, classified) -> dict | None:
    """The product (with its stock) a product barcode, GS1 code or weighed label names; None if unknown."""
    keys = list(classified.lookup)
    if classified.kind == "weighed":
        keys = [classified.text, classified.item, classified.item.lstrip("0") if classified.item else None]
    keys += [classified.gtin, classified.text]
    seen = set()
    for key in keys:
        if not key or key in seen:
            continue
        seen.add(key)
        sku = catalog.sku_for_barcode(conn, key)
        if sku is not None:
            return {**catalog.get_product(conn, sku), "stock": stock.get_balance(conn, sku), "code": key}
    return None


# -- answers -----------------------------------------------------------------------------------------

def _fetched(request: web.Request) -> bool:
    return request.headers.get("X-Requested-With") == "fetch"


async def _page_values(request: web.Request) -> dict:
    return {"scans": await request.app[STORE].read(last_scans), "title_key": "cashier_title"}


async def _answer(request: web.Request, fragment: str, status: int = 200, **values) -> web.Response:
    """The fragment for a data-fetch form; the whole page (with the answer in place) without JavaScript."""
    if _fetched(request):
        return render(request, f"fragments/{fragment}.html", status=status, **values)
    return render(request, "cashier.html", status=status, **(await _page_values(request)), **values)


def _refusal(exc: InputError) -> dict:
    detail = dict(exc.detail or {})
    key = f"cashier_reason_{exc.code}"
    return {"type": "refusal", "reason": exc.code, "key": key if key in TEXT["zh"] else None,
            "message": detail.get("message_zh") or exc.message, "detail": detail}


def _status(exc: InputError) -> int:
    return exc.status if 400 <= exc.status < 500 else 422


def _is_refusal(exc: InputError) -> bool:
    return exc.code in MESSAGES_ZH


def _limiter_key(request: web.Request) -> str:
    return f"ui:{request[WHO]['user']}"


async def _look_up_pickup(request: web.Request, body: pickups.PickupIn) -> dict:
    """pickup.lookup, with the API's per-till limit on codes (the till here is the logged-in person)."""
    now = pickup_checks(request.app)
    found = await request.app[LIMITER].guard(_limiter_key(request), body.code,
                                             lambda: request.app[STORE].read(pickups.lookup, body, now))
    return {"type": "pickup", **found, "token": body.token, "code": body.code}


async def _result_for(request: web.Request, classified: Classified) -> tuple[int, dict]:
    config = request.app[CONFIG]
    store = request.app[STORE]
    try:
        if classified.kind in ("pickup_token", "pickup_code"):
            body = pickups.PickupIn(token=classified.text) if classified.kind == "pickup_token" else \
                pickups.PickupIn(code=classified.text)
            try:
                return 200, await _look_up_pickup(request, body)
            except InputError as exc:
                # an 8-digit product barcode from a keyboard-wedge scanner arrives as a "typed" code:
                # a second reading of the text (as scanned), not the same classification again
                if exc.code == "bad_code" and len(classified.text) == 8:
                    product = await store.read(find_product, classify(classified.text, config.scanning.scales))
                    if product is not None:
                        return 200, {"type": "product", "product": product, "label": None}
                raise
        if classified.kind == "coupon_token":
            online_only = frozenset(config.verification.online_only_coupons)
            described = await store.read(coupons.describe, classified.text, pickup_checks(request.app), online_only)
            return 200, {"type": "coupon", **described}
        if classified.kind in ("product", "gs1", "weighed"):
            product = await store.read(find_product, classified)
            if product is None:
                return 404, {"type": "refusal", "reason": "unknown_barcode", "key": "cashier_unknown_barcode",
                             "message": "", "detail": {}, "code": classified.gtin or classified.text}
            return 200, {"type": "product", "product": product, "label": classified}
    except InputError as exc:
        if not _is_refusal(exc):
            raise
        return _status(exc), _refusal(exc)
    if classified.kind == "payment_code":
        return 422, {"type": "refusal", "reason": "payment_code", "key": "cashier_payment_code", "message": "",
                     "detail": {}}
    return 422, {"type": "refusal", "reason": "unknown", "key": "cashier_unknown_code",
                 "why": f"cashier_why_{classified.reason}" if classified.reason in REASONS else None,
                 "why_detail": classified.detail, "message": "", "detail": {}}


# -- pages -------------------------------------------------------------------------------------------

@page("/ui/cashier", role="cashier", template="cashier.html")
async def cashier_page(request):
    return await _page_values(request)


@page("/ui/cashier/scan", role="cashier", method="POST", template="cashier.html")
async def scan(request):
    """A code from the scan field (typed or from a keyboard-wedge scanner), or a scan of the list (`seq`)."""
    form = await form_data(request)
    if form.get("seq"):
        seq = form["seq"]
        # as the scan router classified it when the scanner read it: not classified again
        classified = await request.app[STORE].read(scans.classification, int(seq)) \
            if seq.isdigit() and len(seq) < 19 else None
        if classified is None:
            return await _answer(request, "cashier_result", 422, result={"type": "error", "key": "cashier_scan_gone"})
    else:
        text = form.get("text", "")
        if len(text) > MAX_LENGTH:
            return await _answer(request, "cashier_result", 422, result={
                "type": "error", "key": "cashier_input_too_long", "args": {"limit": MAX_LENGTH}})
        if not text.strip():
            return await _answer(request, "cashier_result", 422, result={"type": "error", "key": "cashier_input_empty"})
        classified = classify(text, request.app[CONFIG].scanning.scales, typed=True)
    status, result = await _result_for(request, classified)
    return await _answer(request, "cashier_result", status, result=result)


@page("/ui/cashier/handover", role="cashier", method="POST", template="cashier.html")
async def handover(request):
    """确认交货: pickup.hand_over with the logged-in person as the operator, with its audit line."""
    form = await form_data(request)
    who = request[WHO]
    try:
        body = pickups.HandOver(token=form.get("token") or None, code=form.get("code") or None,
                               operator=who["display_name"][:200] or who["user"])
    except ValidationError as exc:
        message = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        return await _answer(request, "cashier_result", 422, result={
            "type": "error", "key": "cashier_invalid", "args": {"message": message}})
    now = pickup_checks(request.app)

    async def hand_over():
        # verified once, on a reader: the result names the audit line's order and goes into the write
        found = await request.app[STORE].read(pickups.identify, body, now)
        return await ui_write(request, form, lambda conn, ctx: pickups.hand_over(conn, body, now, ctx, found),
                              action="pickup.hand_over", target=found.order_id,
                              detail={"method": "token" if body.token else "code"})
    try:
        done = await request.app[LIMITER].guard(_limiter_key(request), body.code, hand_over)
    except InputError as exc:
        if not _is_refusal(exc):
            raise
        return await _answer(request, "cashier_result", _status(exc), result=_refusal(exc))
    job = done.get("print_job")
    slip = "none"
    if job:
        state = (await request.app[STORE].read(spool.get_job, job["id"]))["state"]
        slip = {"printed": "printed", "queued": "printing", "printing": "printing"}.get(state, "failed")
    return await _answer(request, "cashier_result", 201, result={"type": "done", **done, "slip": slip})


@page("/ui/cashier/reprint-last", role="cashier", method="POST", template="cashier.html")
async def reprint_last(request):
    """重打: the most recent receipt again (marked 重打 when the first one printed)."""
    form = await form_data(request)
    jobs = await request.app[STORE].read(lambda conn: spool.list_jobs(conn, kind="receipt", limit=1))
    if not jobs["items"]:
        return await _answer(request, "cashier_reprint", 404, reprint={"ok": False, "key": "cashier_reprint_none"})
    last = jobs["items"][0]
    who = request[WHO]
    try:
        done = await ui_write(request, form, lambda conn, ctx: spool.reprint(
            conn, last["id"], who["display_name"] or who["user"], ctx),
            action="print.reprint", target=str(last["id"]), detail={"kind": "receipt"})
    except InputError as exc:
        if exc.code != "job_not_finished":
            raise
        return await _answer(request, "cashier_reprint", 409, reprint={"ok": False, "key": "cashier_reprint_busy"})
    new = done.get("reprint") or {}
    return await _answer(request, "cashier_reprint", 201, reprint={
        "ok": True, "key": "cashier_reprint_done", "printer": new.get("printer") or last["printer"]})
