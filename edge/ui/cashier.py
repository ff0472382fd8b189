"""收银台: the cashier's screen. Scan or type a code; pickups (look up, confirm the hand-over), coupons,
products, refusals in words; the last scans of the store's scanners; reprint the last receipt.

Every answer to the scan field is HTML for `#scan-result` (a `data-fetch` form); without JavaScript
the whole page comes back with the answer in place. Looking up writes nothing, but for a member code,
which is taken when it is shown (its (member, step) once: edge/store/members.py; no audit line, it names
no act of the cashier's); the hand-over and the reprint go through `web.ui_write` (one transaction with
their audit line, once per form).
"""

from __future__ import annotations

import re
import time
import unicodedata

from aiohttp import web
from pydantic import ValidationError

from edge.core.classify import MAX_LENGTH, REASONS, Classified, classify
from edge.core.errors import InputError
from edge.core.refusals import MESSAGES_ZH
from edge.core.schemas import SaleMemberRef
from edge.services.app_keys import CONFIG, LIMITER, STORE, pickup_checks
from edge.store import coupons, member_sales, members, orders, pickups, scans, spool
from edge.ui.cashier_scans import find_product, last_scans
from edge.ui.web import TEXT, WHO, form_data, page, render, ui_write

NUMBER_LENGTH = 32                        # as protocol.orders.OrderCreated.number
PHONE_DIGITS = re.compile(r"[0-9]+")
NOT_PREPARED = ("received", "accepted")   # an order in these is asked about before it is handed over

# -- answers -----------------------------------------------------------------------------------------

def _fetched(request: web.Request) -> bool:
    return request.headers.get("X-Requested-With") == "fetch"


async def _page_values(request: web.Request) -> dict:
    return {"scans": await request.app[STORE].read(last_scans, request.app[CONFIG].store.id),
            "title_key": "cashier_title"}


async def _answer(request: web.Request, fragment: str, status: int = 200, **values) -> web.Response:
    """The fragment for a data-fetch form; the whole page (with the answer in place) without JavaScript."""
    if _fetched(request):
        return render(request, f"fragments/{fragment}.html", status=status, **values)
    return render(request, "cashier.html", status=status, **(await _page_values(request)), **values)


async def answer(request: web.Request, status: int, result: dict) -> web.Response:
    """An answer in `#scan-result`."""
    return await _answer(request, "cashier_result", status, result=result)


async def refusal_answer(request: web.Request, exc: InputError) -> web.Response:
    """A refusal in words; any other error goes on to the error page."""
    if not _is_refusal(exc):
        raise exc
    return await answer(request, _status(exc), _refusal(exc))


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
        if classified.kind == "member_code":     # taken, as at the API: a second showing is refused
            member = await store.write(members.verify_for_till, classified.text, config.store.chain,
                                       config.store.id, time.time())
            return 200, {"type": "member", "member": member}
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


# -- finding an order by its number or the customer's phone digits (the pages: cashier_orders_pages.py) --

def error(key: str, **args) -> dict:
    return {"type": "error", "key": key, "args": args}


def parse_query(text: str) -> tuple[dict | None, dict | None]:
    """({number, phone_last4}, None) to search with, or (None, the error to show). All digits: the phone's
    last four (and a number made of those digits); anything else: an order number."""
    q = unicodedata.normalize("NFKC", text).strip()
    if not q:
        return None, error("cashier_find_empty")
    if PHONE_DIGITS.fullmatch(q):
        if len(q) != 4:
            return None, error("cashier_find_phone_digits")
        return {"number": q, "phone_last4": q}, None
    if len(q) > NUMBER_LENGTH:
        return None, error("cashier_find_too_long", limit=NUMBER_LENGTH)
    return {"number": q, "phone_last4": None}, None


def found_result(found: list[dict]) -> dict:
    """One order: shown; several (the same phone digits): listed for the cashier to pick one."""
    return {"type": "order", "order": found[0]} if len(found) == 1 else {"type": "matches", "orders": found}


@page("/ui/cashier/scan", role="cashier", method="POST", template="cashier.html")
async def scan(request):
    """A code from the scan field (typed or from a keyboard-wedge scanner), or a scan of the list (`seq`)."""
    form = await form_data(request)
    if form.get("seq"):
        classified = await _stored(request, form["seq"])
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
        if classified.kind == "unknown":
            # not a code: an order number or a phone's last 4 digits typed in the same field
            search, _ = parse_query(text)
            found = search and await request.app[STORE].read(lambda conn: orders.open_matching(conn, **search))
            if found:
                return await answer(request, 200, found_result(found))
    status, result = await _result_for(request, classified)
    if form.get("seq") and result["type"] == "pickup":
        # the hand-over names the stored scan: a token the scanner read never goes to the browser
        result.update(seq=form["seq"], token=None, code=None)
    if result["type"] == "pickup" and form.get("member_id"):
        # the code came from a member's card: the hand-over form carries the member on (checked again there)
        try:
            result["member"] = await member_seen(request, form["member_id"])
        except ValidationError as exc:
            return await _answer(request, "cashier_result", 422, result=invalid(exc))
        except InputError as exc:
            return await refusal_answer(request, exc)
        result["member_id"] = form["member_id"]
    return await _answer(request, "cashier_result", status, result=result)


async def _stored(request: web.Request, seq: str) -> Classified | None:
    """A journal scan's classification, as the scan router made it when the scanner read it."""
    if not (seq.isdigit() and len(seq) < 19):
        return None
    return await request.app[STORE].read(scans.classification, int(seq))


def confirm_first(order: dict | None, form: dict, action: str, fields: tuple[str, ...]) -> dict | None:
    """尚未备好: an order not yet prepared is handed over only on a second POST with confirm=1. The
    answer carrying that form (the same fields, and a new form id), or None to go on."""
    if order is None or order["state"] not in NOT_PREPARED or form.get("confirm") == "1":
        return None
    return {"type": "confirm", "action": action, "order": order,
            "fields": {name: form[name] for name in fields if form.get(name)}}


@page("/ui/cashier/handover", role="cashier", method="POST", template="cashier.html")
async def handover(request):
    """确认交货: pickup.hand_over with the logged-in person as the operator, with its audit line."""
    form = await form_data(request)
    who = request[WHO]
    token, code = form.get("token") or None, form.get("code") or None
    if form.get("seq"):
        classified = await _stored(request, form["seq"])
        if classified is None or classified.kind not in ("pickup_token", "pickup_code"):
            return await _answer(request, "cashier_result", 422, result={"type": "error", "key": "cashier_scan_gone"})
        token, code = (classified.text, None) if classified.kind == "pickup_token" else (None, classified.text)
    try:
        body = pickups.HandOver(token=token, code=code, operator=who["display_name"][:200] or who["user"],
                                member_id=form.get("member_id") or None)
    except ValidationError as exc:
        return await _answer(request, "cashier_result", 422, result=invalid(exc))
    now = pickup_checks(request.app)
    store = request.app[STORE]

    async def hand_over():
        # verified once, on a reader: the result names the audit line's order and goes into the write
        found = await store.read(pickups.identify, body, now)
        order = await store.read(orders.find_order, found.order_id) if found.order_id else None
        ask = confirm_first(order, form, "/ui/cashier/handover", ("token", "code", "seq", "member_id"))
        if ask is not None:
            return ask
        return await ui_write(request, form, lambda conn, ctx: pickups.hand_over(conn, body, now, ctx, found),
                              action="pickup.hand_over", target=found.order_id,
                              detail={"method": "token" if body.token else "code",
                                      **({"member_id": body.member_id} if body.member_id else {})})
    try:
        done = await request.app[LIMITER].guard(_limiter_key(request), body.code, hand_over)
    except InputError as exc:
        return await refusal_answer(request, exc)
    if done.get("type") == "confirm":
        return await answer(request, 200, done)
    if done.get("member_id"):
        done = {**done, "member": await member_seen(request, done["member_id"])}
    return await answer_done(request, done)


async def member_seen(request: web.Request, member_id: str) -> dict:
    """The masked view of a member verified or looked up here in the last 30 minutes (as a sale by member id
    takes them); a refusal (member_not_seen) otherwise."""
    ref = SaleMemberRef(member_id=member_id)
    checks = member_sales.MemberChecks(None, request.app[CONFIG].store.id, time.time())
    found = await request.app[STORE].read(lambda conn: member_sales.resolve(conn, ref, checks, take=False))
    return {"member_id": found.member_id, "name": found.name, "phone": found.phone, "level": found.level}


def invalid(exc: ValidationError) -> dict:
    message = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
    return {"type": "error", "key": "cashier_invalid", "args": {"message": message}}


async def answer_done(request: web.Request, done: dict) -> web.Response:
    """已交货, and whether its slip printed."""
    job = done.get("print_job")
    slip = "none"
    if job:
        state = (await request.app[STORE].read(spool.get_job, job["id"]))["state"]
        slip = {"printed": "printed", "queued": "printing", "printing": "printing"}.get(state, "failed")
    return await answer(request, 201, {"type": "done", **done, "slip": slip})


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
