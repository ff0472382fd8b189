"""Request bodies of the local API, validated strictly: a wrong type is an error, never coerced.

The same models produce the OpenAPI schemas (edge/openapi.py), so the document cannot drift from
what the server accepts.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edge.core import member_code
from protocol.fields import Barcode, Fen, Qty, Sku

PAYMENT_METHODS = ("cash", "wechat", "alipay", "card", "unionpay", "voucher", "other", "points", "stored_value")
# points (积分抵扣) and stored value (储值) come back to the member with the return, never as its refund method
REFUND_METHODS = tuple(m for m in PAYMENT_METHODS if m not in ("points", "stored_value"))

SignedQty = Annotated[int, Field(ge=-1_000_000, le=1_000_000)]
Text = Annotated[str, Field(min_length=1, max_length=200)]
PaymentMethod = Literal[PAYMENT_METHODS]  # type: ignore[valid-type]
RefundMethod = Literal[REFUND_METHODS]  # type: ignore[valid-type]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _sku_or_barcode(schema: dict) -> None:
    # exactly one of the two, as _one_reference checks: a null counts as absent
    schema["oneOf"] = [{"required": ["sku"], "properties": {"sku": {"type": "string"}}},
                       {"required": ["barcode"], "properties": {"barcode": {"type": "string"}}}]


class ProductRef(Body):
    """A line names its product by `sku` or by `barcode`, exactly one of them."""

    model_config = ConfigDict(json_schema_extra=_sku_or_barcode)

    sku: Sku | None = None
    barcode: Barcode | None = None

    @model_validator(mode="after")
    def _one_reference(self):
        if (self.sku is None) == (self.barcode is None):
            raise ValueError("give exactly one of sku or barcode")
        return self


class SaleLine(ProductRef):
    qty: Qty
    unit_price_fen: Fen | None = Field(None, description="Price charged per unit; the catalog price if omitted")
    discount_fen: Fen = 0


class Payment(Body):
    method: PaymentMethod
    amount_fen: Annotated[int, Field(gt=0, le=10_000_000_000)]


def _code_or_member_id(schema: dict) -> None:
    schema["oneOf"] = [{"required": ["code"], "properties": {"code": {"type": "string"}}},
                       {"required": ["member_id"], "properties": {"member_id": {"type": "string"}}}]


class SaleMemberRef(Body):
    """The member of a sale: a member code as scanned, or the id of a member verified or looked up at this
    store in the last 30 minutes. Exactly one of them."""

    model_config = ConfigDict(json_schema_extra=_code_or_member_id)

    code: Annotated[str, Field(min_length=1, max_length=member_code.MAX_CODE,
                               json_schema_extra={"pattern": member_code.CODE_PATTERN},
                               description="The member code (会员码) as scanned")] | None = None
    member_id: Annotated[str, Field(pattern=r"^[\x21-\x7e]{1,64}$", description="A member seen here "
                                    "in the last 30 minutes")] | None = None

    @model_validator(mode="after")
    def _one(self):
        if (self.code is None) == (self.member_id is None):
            raise ValueError("give exactly one of code or member_id")
        return self


class SaleIn(Body):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"lines": [{"barcode": "6921234500002", "qty": 2}], "payments": [{"method": "cash", "amount_fen": 1000}]},
        {"lines": [{"sku": "SNK-001", "qty": 2}], "member": {"member_id": "m-000123"},
         "payments": [{"method": "points", "amount_fen": 300}, {"method": "stored_value", "amount_fen": 500},
                      {"method": "wechat", "amount_fen": 600}]}]})

    lines: Annotated[list[SaleLine], Field(min_length=1, max_length=500)]
    payments: Annotated[list[Payment], Field(min_length=1, max_length=10)]
    discount_fen: Fen = Field(0, description="Discount on the whole sale, after line discounts")
    cashier: Text | None = None
    note: Text | None = None
    coupons: Annotated[list[Annotated[str, Field(min_length=1, max_length=1024)]], Field(max_length=5)] = Field(
        default_factory=list, description="Scanned coupon tokens (docs/tokens.md), redeemed with the sale")
    print_receipt: bool = Field(True, description="false when the customer wants no receipt (the drawer still "
                                                  "opens on cash)")
    member: SaleMemberRef | None = Field(None, description="The member (会员): member prices, points earned, and "
                                                           "payment by points or stored value")


class ReturnLine(Body):
    line_no: Annotated[int, Field(ge=1, le=500, description="The line of the original sale")]
    qty: Qty


class ReturnIn(Body):
    lines: Annotated[list[ReturnLine], Field(min_length=1, max_length=500)]
    refund_method: RefundMethod = Field(description="How the refund is paid, less what goes back to the member's "
                                                    "balance and points (a member sale)")
    restock: bool = Field(True, description="false for goods that cannot be sold again")
    reason: Text | None = None


class ReceiptLine(ProductRef):
    qty: Qty
    cost_fen: Fen | None = None


class ReceiptIn(Body):
    lines: Annotated[list[ReceiptLine], Field(min_length=1, max_length=2000)]
    supplier: Text | None = None
    note: Text | None = None


class AdjustmentLine(ProductRef):
    qty: SignedQty = Field(description="Change of on-hand stock, negative for losses; not zero",
                           json_schema_extra={"not": {"const": 0}})

    @model_validator(mode="after")
    def _not_zero(self):
        if self.qty == 0:
            raise ValueError("qty must not be zero")
        return self


class AdjustmentIn(Body):
    lines: Annotated[list[AdjustmentLine], Field(min_length=1, max_length=2000)]
    note: Text = Field(description="Why: damaged, expired, found, ...")


class CountLine(ProductRef):
    counted: Annotated[int, Field(ge=0, le=10_000_000)]


class CountIn(Body):
    lines: Annotated[list[CountLine], Field(min_length=1, max_length=20000)]
    note: Text | None = None


Scope = Annotated[str, Field(max_length=64)]


class CountSheetIn(Body):
    """What to count: a category, a shelf or both; "" is the products without one."""

    category: Scope | None = Field(None, description="Only this category (\"\": the products without one)")
    shelf: Scope | None = Field(None, description="Only this shelf (\"\": the products without one)")
    print_sheet: bool = Field(False, description="Also print it on the printer of count sheets")


class SheetCount(Body):
    line_no: Annotated[int, Field(ge=1, le=2000, description="The sheet's line")]
    counted: Annotated[int, Field(ge=0, le=10_000_000)]


class SheetCountsIn(Body):
    lines: Annotated[list[SheetCount], Field(min_length=1, max_length=2000,
                                             description="The lines counted; a line left out was not counted")]
    note: Text | None = None
