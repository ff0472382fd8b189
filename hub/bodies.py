"""Request bodies of the admin API (docs/hub-admin-api.md): strict, a wrong type is an error,
never coerced."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from protocol.changes import CHANGE_PAYLOADS, ProductIn, StockCorrection
from protocol.events import MAX_DISCOUNT_FEN
from protocol.fields import Qty, Sku, first_error, is_time, parse_time, sentence
from protocol.orders import ORDER_ID

PUBLISHABLE = ("coupon.defined", "coupon.revoked", "key.published", "key.revoked")
STORE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


Name = Annotated[str, Field(min_length=1, max_length=200)]
Reason = Annotated[str, Field(min_length=1, max_length=200)]
StoreId = Annotated[str, Field(pattern=STORE_ID)]


class StoreIn(Body):
    store_id: StoreId
    name: Name


class ProductsIn(Body):
    products: Annotated[list[ProductIn], Field(min_length=1, max_length=5000)]
    store_id: StoreId | None = None


class OrderLineIn(Body):
    sku: Sku
    qty: Qty


class OrderIn(Body):
    order_id: Annotated[str, Field(pattern=ORDER_ID)] | None = None
    kind: Literal["pickup", "delivery"]
    lines: Annotated[list[OrderLineIn], Field(min_length=1, max_length=100)]
    customer_note: Annotated[str, Field(max_length=200)] | None = None
    pickup_after: str | None = Field(None, description="UTC ISO 8601 time")
    customer_phone: Annotated[str, Field(pattern=r"^\+?[0-9]{7,15}$", description="the customer's phone number: "
                                         "only its last four digits are kept and sent to the store")] | None = None

    @field_validator("pickup_after")
    @classmethod
    def _time(cls, value):
        if value is not None and not is_time(value):
            raise ValueError("must be an ISO 8601 time with a zone, e.g. 2026-11-21T10:00:00.000Z")
        return value


class ReasonIn(Body):
    reason: Reason


class OptionalReasonIn(Body):
    reason: Reason | None = None


CouponId = Annotated[str, Field(pattern=ORDER_ID)]
Fen = Annotated[int, Field(ge=1, le=MAX_DISCOUNT_FEN)]


def _check_time(value):
    if value is not None and not is_time(value):
        raise ValueError("must be an ISO 8601 time with a zone, e.g. 2026-11-01T00:00:00Z")
    return value


class ScopeIn(Body):
    skus: Annotated[list[Sku], Field(min_length=1, max_length=1000)] | None = None
    categories: Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]],
                          Field(min_length=1, max_length=1000)] | None = None

    @model_validator(mode="after")
    def _one(self):
        if (self.skus is None) == (self.categories is None):
            raise ValueError("scope must hold exactly one of skus or categories")
        return self


class CouponIn(Body):
    """A coupon definition (docs/tokens.md), plus where to publish it (store_ids, not published)."""
    coupon_id: CouponId
    title: Name
    kind: Literal["value", "percent"]
    value_fen: Fen | None = None
    percent_off: Annotated[int, Field(ge=1, le=99)] | None = None
    max_discount_fen: Fen | None = None
    min_spend_fen: Annotated[int, Field(ge=0, le=MAX_DISCOUNT_FEN)] = 0
    scope: ScopeIn | None = None
    valid_from: str
    valid_until: str
    uses: Annotated[int, Field(ge=1, le=1000)] = 1
    online_only: bool = False
    store_ids: Annotated[list[StoreId], Field(min_length=1, max_length=1000)] | None = None

    @field_validator("valid_from", "valid_until")
    @classmethod
    def _times(cls, value):
        return _check_time(value)

    @model_validator(mode="after")
    def _terms(self):
        if self.kind == "value":
            if self.value_fen is None:
                raise ValueError("a value coupon needs value_fen")
            if self.percent_off is not None or self.max_discount_fen is not None:
                raise ValueError("percent_off and max_discount_fen are for percent coupons")
        else:
            if self.percent_off is None:
                raise ValueError("a percent coupon needs percent_off (1-99)")
            if self.value_fen is not None:
                raise ValueError("value_fen is for value coupons")
        if parse_time(self.valid_until) <= parse_time(self.valid_from):
            raise ValueError("valid_until must be after valid_from")
        if self.store_ids is not None and len(set(self.store_ids)) != len(self.store_ids):
            raise ValueError("store_ids must not repeat a store")
        return self

    def definition(self) -> dict:
        """The coupon.defined payload: the definition with its defaults, without store_ids."""
        data = self.model_dump(exclude={"store_ids"}, exclude_none=True)
        if self.scope is not None:
            data["scope"] = self.scope.model_dump(exclude_none=True)
        return data


class IssueIn(Body):
    store_id: StoreId | None = None
    expires_at: str | None = Field(None, description="ISO 8601; default and latest: the coupon's valid_until")

    @field_validator("expires_at")
    @classmethod
    def _time(cls, value):
        return _check_time(value)


class CorrectionIn(StockCorrection):
    """The stock.correction to publish, as the chain sends it."""
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @model_validator(mode="after")
    def _not_zero(self):
        if self.qty == 0:
            raise ValueError("qty must not be zero")
        return self


class ChangeIn(Body):
    store_id: StoreId | None = None
    type: Literal[PUBLISHABLE]  # type: ignore[valid-type]
    payload: dict

    @model_validator(mode="after")
    def _payload(self):
        try:
            CHANGE_PAYLOADS[self.type].model_validate(self.payload)
        except ValidationError as exc:
            raise ValueError(sentence(first_error(exc), "payload.")) from None
        return self
