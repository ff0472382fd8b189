"""Coupons: a signed coupon token (docs/tokens.md) checked against the sale it applies to, and
redeemed in the sale's own transaction, so a coupon is used exactly when the sale is recorded.

The terms (value or percentage, minimum spend, SKU or category scope, validity window, uses per
serial, online-only) come from the coupon's definition in the sync feed (`coupon.defined`).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edge.core.context import WriteContext
from edge.core.refusals import refusal
from edge.store import outbox
from edge.store.pickups import Checks
from edge.store.signed_tokens import TokenRefused, verify

Fen = Annotated[int, Field(ge=0, le=10_000_000_000)]


class Scope(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)
    skus: list[str] | None = None
    categories: list[str] | None = None


class Terms(BaseModel):
    """A coupon definition as the cloud sends it; unknown fields are ignored (protocol version 1)."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)
    coupon_id: Annotated[str, Field(min_length=1, max_length=64)]
    title: Annotated[str, Field(min_length=1, max_length=100)]
    kind: Literal["value", "percent"]
    value_fen: Fen | None = None
    percent_off: Annotated[int, Field(ge=1, le=99)] | None = None
    max_discount_fen: Fen | None = None
    min_spend_fen: Fen = 0
    scope: Scope | None = None
    valid_from: str | None = None
    valid_until: str | None = None
    uses: Annotated[int, Field(ge=1, le=1000)] = 1
    online_only: bool = False

    @model_validator(mode="after")
    def _amount(self):
        if (self.kind == "value") != (self.value_fen is not None) or (self.kind == "percent") != (
                self.percent_off is not None):
            raise ValueError("a value coupon has value_fen, a percent coupon percent_off")
        return self

    def in_scope(self, sku: str, category: str | None) -> bool:
        if self.scope is None or (self.scope.skus is None and self.scope.categories is None):
            return True
        return sku in (self.scope.skus or ()) or (category is not None and category in (self.scope.categories or ()))


@dataclass(frozen=True)
class Applied:
    coupon_id: str
    serial: str
    jti: str
    title: str
    discount_fen: int


@dataclass(frozen=True)
class SaleLine:
    sku: str
    category: str | None
    amount_fen: int  # after the line's own discount


def _epoch(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _check(conn: sqlite3.Connection, text: str, checks: Checks, online_only: frozenset[str], where: str,
           pending: list[Applied]) -> tuple[Terms, str, str, int]:
    """(terms, serial, jti, uses left) of a coupon token usable now, or a refusal naming `where`."""
    try:
        token = verify(conn, text, store_id=checks.store_id, now=checks.now, kind="coupon")
    except TokenRefused as exc:
        raise refusal(exc.reason, exc.message, field=where) from None
    row = conn.execute("SELECT definition, revoked_at FROM coupon_definitions WHERE id = ?",
                       (token.coupon_id,)).fetchone()
    if row is None:
        raise refusal("coupon_unknown", f"coupon {token.coupon_id} is not defined here", field=where)
    if row[1] is not None:
        raise refusal("coupon_revoked", f"coupon {token.coupon_id} was revoked", field=where)
    try:
        terms = Terms.model_validate(json.loads(row[0]))
    except (ValidationError, ValueError) as exc:
        raise refusal("coupon_unknown", f"coupon {token.coupon_id} has unusable terms: {exc}", field=where)
    start, end = _epoch(terms.valid_from), _epoch(terms.valid_until)
    if (start is not None and checks.now < start) or (end is not None and checks.now > end):
        raise refusal("coupon_expired", f"coupon {terms.title} is not valid now", field=where)
    if (terms.online_only or terms.coupon_id in online_only or terms.kind in online_only) and not checks.online:
        raise refusal("online_only", f"coupon {terms.title} can only be used while the cloud is reachable",
                      field=where)
    used = conn.execute("SELECT count(*), max(redeemed_at) FROM coupon_redemptions WHERE coupon_id = ? "
                        "AND serial = ?", (terms.coupon_id, token.subject)).fetchone()
    uses = used[0] + sum(1 for a in pending if (a.coupon_id, a.serial) == (terms.coupon_id, token.subject))
    if uses >= terms.uses:
        raise refusal("already_used", f"coupon {terms.title} ({token.subject}) has no uses left", field=where,
                      used_at=used[1], uses=terms.uses)
    return terms, token.subject, token.jti, terms.uses - uses


def describe(conn: sqlite3.Connection, text: str, checks: Checks, online_only: frozenset[str] = frozenset()) -> dict:
    """What a scanned coupon grants (for the cashier screen), if it can be used now."""
    terms, serial, _, left = _check(conn, text, checks, online_only, "token", [])
    return {"coupon": terms.model_dump(), "serial": serial, "uses_left": left, "provisional": not checks.online}


def evaluate(conn: sqlite3.Connection, tokens: list[str], lines: list[SaleLine], checks: Checks,
             online_only: frozenset[str] = frozenset()) -> list[Applied]:
    """The discount of each coupon on these lines, or a refusal naming the coupon (coupons[i]).

    `online_only`: coupon ids or kinds ("value", "percent") the store's config keeps online-only.
    """
    applied: list[Applied] = []
    for index, text in enumerate(tokens):
        where = f"coupons[{index}]"
        terms, serial, jti, _ = _check(conn, text, checks, online_only, where, applied)
        eligible = sum(line.amount_fen for line in lines if terms.in_scope(line.sku, line.category))
        if eligible == 0:
            raise refusal("out_of_scope", f"no item of this sale is covered by coupon {terms.title}", field=where)
        if eligible < terms.min_spend_fen:
            raise refusal("min_spend", f"coupon {terms.title} needs {terms.min_spend_fen} fen of covered items, "
                          f"the sale has {eligible}", field=where, min_spend_fen=terms.min_spend_fen,
                          eligible_fen=eligible)
        if terms.kind == "value":
            discount = min(terms.value_fen, eligible)
        else:
            discount = eligible * terms.percent_off // 100
            if terms.max_discount_fen is not None:
                discount = min(discount, terms.max_discount_fen)
        applied.append(Applied(terms.coupon_id, serial, jti, terms.title, discount))
    return applied


def redeem(conn: sqlite3.Connection, applied: list[Applied], sale_id: str, checks: Checks,
           ctx: WriteContext) -> None:
    """Record the redemptions in the sale's transaction and tell the cloud."""
    for a in applied:
        conn.execute("INSERT INTO coupon_redemptions (coupon_id, serial, jti, title, sale_id, discount_fen, "
                     "provisional, device, redeemed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (a.coupon_id, a.serial, a.jti, a.title, sale_id, a.discount_fen, int(not checks.online),
                      ctx.device, ctx.now))
        outbox.emit(conn, "coupon.redeemed", {
            "coupon_id": a.coupon_id, "serial": a.serial, "jti": a.jti, "sale_id": sale_id,
            "discount_fen": a.discount_fen, "provisional": not checks.online}, ctx.now)


def for_sale(conn: sqlite3.Connection, sale_id: str) -> list[dict]:
    return [{"coupon_id": r[0], "serial": r[1], "title": r[2], "amount_fen": r[3]} for r in conn.execute(
        "SELECT coupon_id, serial, title, discount_fen FROM coupon_redemptions WHERE sale_id = ? ORDER BY id",
        (sale_id,))]


def define(conn: sqlite3.Connection, coupon_id: str, definition: dict, now: str) -> None:
    """A coupon kind from the cloud's feed (a new definition replaces the old one)."""
    conn.execute("INSERT INTO coupon_definitions (id, definition, updated_at) VALUES (?, ?, ?) ON CONFLICT (id) "
                 "DO UPDATE SET definition = excluded.definition, updated_at = excluded.updated_at",
                 (coupon_id, json.dumps(definition, ensure_ascii=False), now))


def revoke(conn: sqlite3.Connection, coupon_id: str, reason: str | None, now: str) -> bool:
    """False if the store never had that coupon kind."""
    return conn.execute("UPDATE coupon_definitions SET revoked_at = ?, revoke_reason = ?, updated_at = ? "
                        "WHERE id = ?", (now, reason, now, coupon_id)).rowcount > 0
