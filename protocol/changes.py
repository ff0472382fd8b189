"""What a store downloads (protocol section 3): the feed page, a change, and each change type's
payload (the order changes are in protocol.orders)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from protocol.barcodes import gtin_problem
from protocol.fields import Barcode, Fen, Sku
from protocol.orders import CloudModel, OrderClosed, OrderCreated

KeyId = Annotated[str, Field(min_length=1, max_length=64)]


class ProductIn(BaseModel):
    """`product.upserted`: a catalog entry (also how the edge imports one from CSV/JSON)."""
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    sku: Sku
    name: Annotated[str, Field(min_length=1, max_length=200)]
    price_fen: Fen
    unit: Annotated[str, Field(min_length=1, max_length=16)] = "件"
    category: Annotated[str, Field(max_length=64)] | None = None
    low_stock: Annotated[int, Field(ge=0, le=10_000_000)] = 0
    barcodes: Annotated[list[Barcode], Field(max_length=20)] = []
    active: bool = True

    @model_validator(mode="after")
    def _barcodes_valid(self):
        for code in self.barcodes:
            problem = gtin_problem(code)
            if problem:
                raise ValueError(f"barcode {code}: {problem}")
        if len(set(self.barcodes)) != len(self.barcodes):
            raise ValueError("a barcode is listed twice")
        return self


class CouponDefined(CloudModel):
    """`coupon.defined`: the coupon's definition (docs/tokens.md), passed on as the chain gave it."""
    coupon_id: KeyId


class CouponRevoked(CloudModel):
    coupon_id: KeyId
    reason: str | None = None


class KeyPublished(CloudModel):
    """A key that signs pickup and coupon tokens; the tokens' header `kid` names it."""
    kid: KeyId
    alg: Literal["Ed25519"]
    public_key: Annotated[str, Field(pattern=r"^[A-Za-z0-9+/]{43}[A-Za-z0-9+/=]$",
                                     description="standard base64 of the 32-byte raw Ed25519 public key")]


class KeyRevoked(CloudModel):
    kid: KeyId
    reason: str | None = None


MemberLevelName = Annotated[str, Field(min_length=1, max_length=16)]
Percent = Annotated[int, Field(ge=0, le=100)]


class MemberLevel(CloudModel):
    level: MemberLevelName
    discount_pct: Annotated[int, Field(ge=1, le=100, description="list price × this / 100 (100: no discount)")]
    points_multiplier_pct: Annotated[int, Field(ge=0, le=1000, description="points earned × this / 100")]


class MemberProgram(CloudModel):
    """`member.program`: the whole programme (docs/members.md); the newest replaces the one before. A member
    whose level is not listed gets discount 100 and multiplier 100."""
    version: Annotated[int, Field(ge=1, le=2**53, description="grows with each programme the chain publishes")]
    levels: Annotated[list[MemberLevel], Field(min_length=1, max_length=20)]
    points_per_yuan: Annotated[int, Field(ge=0, le=100)]
    excluded_categories: Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]],
                                   Field(max_length=1000, description="lines of these categories earn no "
                                                                      "points")] = []
    redeem_fen_per_point: Annotated[int, Field(ge=1, le=10_000, description="what one point pays (1: 100 points "
                                                                             "are ￥1)")]
    redeem_max_pct: Annotated[Percent, Field(description="points pay at most this % of a sale")]

    @model_validator(mode="after")
    def _levels_once(self):
        names = [level.level for level in self.levels]
        if len(set(names)) != len(names):
            raise ValueError("a level is listed twice")
        return self


class MemberPrice(CloudModel):
    sku: Sku
    level: Annotated[MemberLevelName | None, Field(description="null: every level")]
    price_fen: Annotated[Fen | None, Field(description="null: remove this (sku, level) price")]


class MemberPrices(CloudModel):
    """`member.prices`: member prices, upserted per (sku, level)."""
    prices: Annotated[list[MemberPrice], Field(min_length=1, max_length=1000)]

    @model_validator(mode="after")
    def _each_once(self):
        keys = [(price.sku, price.level) for price in self.prices]
        if len(set(keys)) != len(keys):
            raise ValueError("a (sku, level) is listed twice")
        return self


class StockCorrection(CloudModel):
    """The chain corrects the store's stock (e.g. a transfer booked centrally)."""
    sku: Sku
    qty: Annotated[int, Field(ge=-1_000_000, le=1_000_000, description="signed, not 0")]
    reason: Annotated[str, Field(min_length=1, max_length=200)]


CHANGE_PAYLOADS: dict[str, type[BaseModel]] = {
    "order.created": OrderCreated, "order.cancelled": OrderClosed, "order.refunded": OrderClosed,
    "product.upserted": ProductIn, "coupon.defined": CouponDefined, "coupon.revoked": CouponRevoked,
    "key.published": KeyPublished, "key.revoked": KeyRevoked, "stock.correction": StockCorrection,
    "member.program": MemberProgram, "member.prices": MemberPrices,
}


class Change(CloudModel):
    cursor: Annotated[int, Field(ge=1)]
    id: Annotated[str, Field(min_length=1, max_length=128)]
    type: str
    created_at: str
    payload: Any


class ChangesPage(CloudModel):
    """`GET /sync/v1/stores/{store_id}/changes?after={cursor}&limit={n}`."""
    epoch: str
    next_cursor: Annotated[int, Field(ge=0)]
    more: bool
    changes: list[Change]
