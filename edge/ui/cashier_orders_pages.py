"""收银台, finding an order without its code: by its number or the last four digits of the customer's
phone (several orders may share them: the cashier picks one), and a manager's hand-over without the
code (the customer lost it), with the reason, in the audit log and in the event to the cloud.

Finding writes nothing. A cashier still needs the code to hand a found order over; only a manager
may hand over without it (the page is the manager's: a cashier is refused, and is not shown the form).
"""

from __future__ import annotations

from edge.core.errors import InputError
from edge.services.app_keys import STORE, pickup_checks
from edge.store import orders, pickups
from edge.ui.cashier import answer, answer_done, confirm_first, error, found_result, parse_query, refusal_answer
from edge.ui.web import WHO, form_data, page, ui_write

REASON_LENGTH = 200                   # as pickups.ManualHandOver.reason


@page("/ui/cashier/find", role="cashier", method="POST", template="cashier.html")
async def find(request):
    """The open orders a number or phone digits match (`q`), or the one picked of them (`order`)."""
    form = await form_data(request)
    store = request.app[STORE]
    if form.get("order"):
        order = await store.read(orders.find_order, form["order"][:64])
        if order is None:
            return await answer(request, 404, error("cashier_find_none"))
        return await answer(request, 200, {"type": "order", "order": order})
    search, refused = parse_query(form.get("q", ""))
    if refused is not None:
        return await answer(request, 422, refused)
    found = await store.read(lambda conn: orders.open_matching(conn, **search))
    if not found:
        return await answer(request, 404, error("cashier_find_none"))
    return await answer(request, 200, found_result(found))


@page("/ui/cashier/handover-manual", role="manager", method="POST", template="cashier.html")
async def handover_manual(request):
    """无码交货: a manager hands an order over without its code; the reason is required and audited."""
    form = await form_data(request)
    who = request[WHO]
    reason = form.get("reason", "").strip()
    if not reason:
        return await answer(request, 422, error("cashier_manual_reason_missing"))
    if len(reason) > REASON_LENGTH:
        return await answer(request, 422, error("cashier_manual_reason_long", limit=REASON_LENGTH))
    if not 0 < len(form.get("order", "")) <= 64:
        return await answer(request, 422, error("cashier_find_none"))
    body = pickups.ManualHandOver(order_id=form["order"], reason=reason,
                                  operator=who["display_name"][:200] or who["user"])
    order = await request.app[STORE].read(orders.find_order, body.order_id)
    ask = confirm_first(order, form, "/ui/cashier/handover-manual", ("order", "reason"))
    if ask is not None:
        return await answer(request, 200, ask)
    now = pickup_checks(request.app)
    try:
        done = await ui_write(request, form, lambda conn, ctx: pickups.hand_over_manual(conn, body, now, ctx),
                              action="pickup.hand_over_manual", target=body.order_id,
                              detail={"reason": body.reason})
    except InputError as exc:
        return await refusal_answer(request, exc)
    return await answer_done(request, done)
