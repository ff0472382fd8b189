"""Applying the cloud's changes at the store: one page per transaction, with the inbox and cursor.

A change the store cannot apply is recorded as rejected, reported up as `change.rejected` and
skipped: one bad change never blocks the feed, and none disappears without a trace.
"""

from __future__ import annotations

import sqlite3
from typing import Callable

from pydantic import ValidationError

from edge.core.context import WriteContext
from edge.core.errors import InputError, validation_fields
from edge.core.sqlite import savepoint
from edge.store import catalog, coupons, inbox, member_sales, orders, outbox, signed_tokens
from edge.store.outbox import set_state
from edge.store.stock import Move, apply_moves
from protocol.changes import (
    CouponDefined,
    CouponRevoked,
    KeyPublished,
    KeyRevoked,
    MemberPrices,
    MemberProgram,
    ProductIn,
    StockCorrection,
)
from protocol.orders import OrderClosed, OrderCreated


def _order_created(conn, payload, ctx, change_id):
    orders.receive(conn, OrderCreated.model_validate(payload), ctx)


def _order_closed(to: str):
    def apply(conn, payload, ctx, change_id):
        orders.close_from_cloud(conn, OrderClosed.model_validate(payload), to, ctx)
    return apply


def _product(conn, payload, ctx, change_id):
    fields = {k: payload[k] for k in ProductIn.model_fields if isinstance(payload, dict) and k in payload}
    catalog.upsert_product(conn, ProductIn.model_validate(fields), ctx.now)


def _coupon_defined(conn, payload, ctx, change_id):
    coupons.define(conn, CouponDefined.model_validate(payload).coupon_id, payload, ctx.now)


def _coupon_revoked(conn, payload, ctx, change_id):
    coupon = CouponRevoked.model_validate(payload)
    if not coupons.revoke(conn, coupon.coupon_id, coupon.reason, ctx.now):
        raise InputError("unknown_coupon", f"coupon {coupon.coupon_id} was never defined here")


def _key_published(conn, payload, ctx, change_id):
    key = KeyPublished.model_validate(payload)
    signed_tokens.publish_key(conn, key.kid, key.alg, key.public_key, ctx.now)


def _key_revoked(conn, payload, ctx, change_id):
    key = KeyRevoked.model_validate(payload)
    if not signed_tokens.revoke_key(conn, key.kid, ctx.now):
        raise InputError("unknown_key", f"key {key.kid} was never published here")


def _member_program(conn, payload, ctx, change_id):
    member_sales.apply_program(conn, MemberProgram.model_validate(payload).model_dump(), ctx.now)


def _member_prices(conn, payload, ctx, change_id):
    # the chain's list for every store: a SKU this store does not sell is kept, as a price for later
    prices = MemberPrices.model_validate(payload)
    member_sales.apply_prices(conn, [p.model_dump() for p in prices.prices], ctx.now)


def _stock_correction(conn, payload, ctx, change_id):
    correction = StockCorrection.model_validate(payload)
    if correction.qty == 0:
        raise InputError("invalid_change", "a correction of zero changes nothing")
    if not catalog.has_product(conn, correction.sku):
        raise InputError("unknown_sku", f"SKU {correction.sku} is not in this store's catalog")
    moves = apply_moves(conn, [Move(correction.sku, correction.qty, "correction", correction.reason)],
                        "cloud_change", change_id, ctx)
    outbox.emit(conn, "stock.corrected", {"source": "cloud", "change_id": change_id, "reason": correction.reason,
                                          "moves": moves}, ctx.now)


APPLY: dict[str, Callable] = {
    "order.created": _order_created,
    "order.cancelled": _order_closed("cancelled"),
    "order.refunded": _order_closed("refunded"),
    "product.upserted": _product,
    "coupon.defined": _coupon_defined,
    "coupon.revoked": _coupon_revoked,
    "key.published": _key_published,
    "key.revoked": _key_revoked,
    "stock.correction": _stock_correction,
    "member.program": _member_program,
    "member.prices": _member_prices,
}


def apply_page(conn: sqlite3.Connection, changes: list, next_cursor: int, ctx: WriteContext) -> dict:
    """Apply a page of changes, record each in the inbox, and move the cursor: all in the caller's
    transaction. Returns counts."""
    applied = rejected = skipped = 0
    for change in changes:
        change_id = change.get("id") if isinstance(change, dict) else None
        if not isinstance(change_id, str) or not change_id or len(change_id) > 128:
            rejected += 1
            outbox.emit(conn, "change.rejected", {"change_id": None, "type": None,
                                                  "reason": "a change without a valid id"}, ctx.now)
            continue
        if inbox.seen(conn, change_id):
            skipped += 1
            continue
        change_type = change.get("type")
        cursor = change.get("cursor") if isinstance(change.get("cursor"), int) else next_cursor
        reason = None
        try:
            with savepoint(conn, "change"):  # a refused change leaves nothing behind
                handler = APPLY.get(change_type)
                if handler is None:
                    raise InputError("unknown_change_type", f"unknown change type {change_type!r}")
                handler(conn, change.get("payload"), ctx, change_id)
        except ValidationError as exc:
            reason = "; ".join(f"{f['field']}: {f['reason']}" for f in validation_fields(exc))
        except InputError as exc:
            reason = exc.message
        except sqlite3.IntegrityError as exc:  # e.g. a barcode another product holds
            reason = f"conflicts with the store's data: {exc}"
        if reason is None:
            applied += 1
        else:
            rejected += 1
            outbox.emit(conn, "change.rejected", {"change_id": change_id, "type": str(change_type)[:64],
                                                  "reason": reason[:500]}, ctx.now)
        inbox.record(conn, change_id, cursor, str(change_type)[:64], reason, ctx.now)
    set_state(conn, "cursor", next_cursor)
    return {"applied": applied, "rejected": rejected, "skipped": skipped}
