"""The till's resources under /api/v1: sales and returns, goods received, adjustments, counts,
products, stock, sales of a day, online orders, health."""

from __future__ import annotations

from edge.api.metrics import count_member_refusals
from edge.api.registry import (
    LIMIT,
    SKU,
    Param,
    commit,
    cursor,
    idempotency_key,
    json_response,
    operation,
    parse_body,
    query_bool,
    query_date,
    query_int,
    read,
    write,
)
from edge.core.errors import InputError
from edge.core.schemas import AdjustmentIn, CountIn, ReceiptIn, ReturnIn, SaleIn
from edge.services import members
from edge.services.app_keys import CONFIG, STORE, pickup_checks
from edge.store import catalog, orders, sales, stock

# -- writes ---------------------------------------------------------------------------------------

@operation("post", "/sales", "Record a till sale (stock moves and the outbox event in one transaction)",
           body=SaleIn, responses={201: "The sale as recorded, and warnings such as negative stock",
                                   422: "Refused, nothing written: the body, an unknown product, underpaid; a member "
                                        "code's reason, points or stored value beyond the sale's limit, the cloud's "
                                        "hold or the offline caps (code, detail.message_zh)"})
async def post_sale(request):
    app = request.app
    now = pickup_checks(app)
    online_only = frozenset(app[CONFIG].verification.online_only_coupons)
    idempotency_key(request)
    data, body = await parse_body(request, SaleIn)
    # a sale spending points or stored value asks the cloud to hold them first (offline: the caps apply)
    with count_member_refusals(app, body):
        response, hold = await members.sale_with_hold(app, body, lambda member_checks: commit(
            request, data, body, lambda conn, body, ctx: sales.record_sale(conn, body, ctx, now, online_only,
                                                                           member_checks)))
    if response.headers.get("Idempotent-Replayed") == "true":
        members.release_soon(app, hold)      # the sale was made before, with a hold of its own
    return response


@operation("post", "/sales/{sale_id}/returns", "Return items of a sale (refund, and restock unless told not to)",
           body=ReturnIn, params=[Param("sale_id", "path", {"type": "string"}, "The sale's id", True)],
           responses={201: "The return as recorded", 404: "No such sale"})
async def post_return(request):
    return await write(request, ReturnIn, sales.record_return, request.match_info["sale_id"])


@operation("post", "/receipts", "Record goods received", body=ReceiptIn, responses={201: "The receipt document"})
async def post_receipt(request):
    return await write(request, ReceiptIn, stock.record_receipt)


@operation("post", "/adjustments", "Adjust on-hand stock (damage, loss, found), with a reason",
           body=AdjustmentIn, responses={201: "The adjustment document"})
async def post_adjustment(request):
    return await write(request, AdjustmentIn, stock.record_adjustment)


@operation("post", "/counts", "Record a stock count; each difference becomes a 'count' move",
           body=CountIn, responses={201: "The count document, with expected and counted per line"})
async def post_count(request):
    return await write(request, CountIn, stock.record_count)


# -- reads ----------------------------------------------------------------------------------------

@operation("get", "/products/{sku}", "A product of the catalog", params=[SKU], responses={200: "The product",
                                                                                            404: "No such SKU"})
async def get_product(request):
    return await read(request, catalog.get_product, request.match_info["sku"])


@operation("get", "/barcodes/{code}", "Look up a product by barcode, with its stock",
           params=[Param("code", "path", {"type": "string"}, "The scanned barcode", True)],
           responses={200: "The product and its stock", 404: "No product has this barcode"})
async def get_by_barcode(request):
    def lookup(conn, code):
        product = catalog.product_by_barcode(conn, code)
        return {**product, "stock": stock.get_balance(conn, product["sku"])}
    return await read(request, lookup, request.match_info["code"])


@operation("get", "/stock/{sku}", "Stock of one SKU: on hand, reserved, available", params=[SKU],
           responses={200: "The balance", 404: "No such SKU"})
async def get_stock(request):
    return await read(request, stock.get_balance, request.match_info["sku"])


@operation("get", "/stock", "Stock of many SKUs, filtered and paged in SKU order",
           params=[Param("q", "query", {"type": "string"},
                         "Part of a SKU or name, a whole barcode, or part of the name's pinyin or its "
                         "initials (kele, kl or ke find 可乐); ASCII case and spaces in pinyin ignored"),
                   Param("low", "query", {"type": "boolean"}, "Only items at or below their low-stock threshold"),
                   Param("category", "query", {"type": "string"}, "Only this category"),
                   Param("after", "query", {"type": "string"}, "The last SKU of the previous page"), LIMIT],
           responses={200: "items and next_after (null on the last page)"})
async def list_stock(request):
    q = request.query.get("q") or None
    if q is not None and len(q) > 100:
        raise InputError("invalid_query", "q is at most 100 characters", field="q", status=400)
    return await read(request, stock.list_balances, q=q, low=query_bool(request, "low"),
                      category=request.query.get("category") or None, after=request.query.get("after") or None,
                      limit=query_int(request, "limit", 100, 1, 1000))


@operation("get", "/stock/{sku}/moves", "The ledger moves of one SKU, newest first",
           params=[SKU, cursor("before", "Only moves with a smaller id"), LIMIT],
           responses={200: "items and next_before (null on the last page)", 404: "No such SKU"})
async def list_moves(request):
    return await read(request, stock.move_history, request.match_info["sku"],
                      before=query_int(request, "before", None, 0, 2**63 - 1),
                      limit=query_int(request, "limit", 100, 1, 1000))


@operation("get", "/sales", "Sales and returns of one business day, with totals",
           params=[Param("date", "query", {"type": "string", "format": "date"}, "Business day; today if omitted"),
                   cursor("after", "The last sale number of the previous page"),
                   Param("limit", "query", {**LIMIT.schema, "default": 200}, LIMIT.description)],
           responses={200: "The day's totals and its sales"})
async def list_sales(request):
    return await read(request, sales.day_summary, query_date(request, "date"),
                      after=query_int(request, "after", 0, 0, 2**63 - 1),
                      limit=query_int(request, "limit", 200, 1, 1000))


@operation("get", "/sales/{sale_id}", "One sale with its lines, payments and returns",
           params=[Param("sale_id", "path", {"type": "string"}, "The sale's id", True)],
           responses={200: "The sale", 404: "No such sale"})
async def get_sale(request):
    return await read(request, sales.get_sale, request.match_info["sale_id"])


@operation("get", "/returns/{return_id}", "One return",
           params=[Param("return_id", "path", {"type": "string"}, "The return's id", True)],
           responses={200: "The return", 404: "No such return"})
async def get_return(request):
    return await read(request, sales.get_return, request.match_info["return_id"])


@operation("get", "/stock-documents/{document_id}", "A goods receipt, adjustment or count",
           params=[Param("document_id", "path", {"type": "string"}, "The document's id", True)],
           responses={200: "The document", 404: "No such document"})
async def get_document(request):
    return await read(request, stock.get_document, request.match_info["document_id"])


ORDER_ID = Param("order_id", "path", {"type": "string"}, "The order's id (the cloud's)", True)


@operation("get", "/orders", "Online orders, newest first", tag="orders",
           params=[Param("state", "query", {"type": "string", "enum": list(orders.ALL_STATES)}, "Only this state"),
                   Param("short", "query", {"type": "boolean"}, "Only orders whose stock fell short"),
                   Param("before", "query", {"type": "string"}, "The next_before of the previous page"), LIMIT],
           responses={200: "items and next_before"})
async def list_orders(request):
    state = request.query.get("state")
    if state is not None and state not in orders.ALL_STATES:
        raise InputError("invalid_query", f"state must be one of {', '.join(orders.ALL_STATES)}", field="state",
                         status=400)
    return await read(request, orders.list_orders, state=state, short=query_bool(request, "short"),
                      before=request.query.get("before") or None, limit=query_int(request, "limit", 100, 1, 1000))


@operation("get", "/orders/{order_id}", "One online order with its lines", tag="orders", params=[ORDER_ID],
           responses={200: "The order", 404: "No such order"})
async def get_order(request):
    return await read(request, orders.get_order, request.match_info["order_id"])


@operation("post", "/orders/{order_id}/state", "Staff move an order on: accepted, or ready for pickup",
           tag="orders", body=orders.StateChange, params=[ORDER_ID],
           responses={201: "The order in its new state", 404: "No such order", 409: "Not allowed from its state"})
async def change_order_state(request):
    return await write(request, orders.StateChange, orders.change_state, request.match_info["order_id"])


@operation("get", "/health", "Liveness: the store answers", public=True, tag="ops",
           responses={200: "ok", 503: "the store is not available"})
async def health(request):
    store = request.app[STORE]
    if not store.healthy:
        return json_response({"status": "unavailable"}, status=503)
    return json_response({"status": "ok"})
