"""Online orders on the wire: the cloud's `order.created` / `order.cancelled` / `order.refunded`
changes, and the states, print jobs and hand-over methods the store's order events name."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from protocol.fields import Sku

# the states a store reports in order.state_changed; the cloud adds created (not yet at the store)
STORE_ORDER_STATES = ("accepted", "ready", "picked_up", "cancelled", "refunded")
CLOSED_ORDER_STATES = ("picked_up", "cancelled", "refunded")
PRINT_KINDS = ("order_ticket", "pickup_slip")
PRINT_RESULTS = ("printed", "uncertain", "expired", "failed", "confirmed_printed", "reprinted")
PICKUP_METHODS = ("token", "code")
ORDER_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$"


class CloudModel(BaseModel):
    # Cloud payloads may grow within a protocol version: unknown fields are ignored, known ones strict.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class OrderLine(CloudModel):
    sku: Sku
    name: Annotated[str, Field(min_length=1, max_length=200)]
    qty: Annotated[int, Field(gt=0, le=1_000_000)]
    price_fen: Annotated[int, Field(ge=0, le=10_000_000_000)]


class OrderCreated(CloudModel):
    """`order.created`: an online order for the store to reserve, prepare and hand over."""
    order_id: Annotated[str, Field(min_length=1, max_length=64)]
    number: Annotated[str, Field(min_length=1, max_length=32, description="shown to staff, e.g. A023")]
    kind: Literal["pickup", "delivery"]
    lines: Annotated[list[OrderLine], Field(min_length=1, max_length=200)]
    total_fen: Annotated[int, Field(ge=0, le=10_000_000_000)]
    pickup_code_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$",
                                             description="hex SHA-256 of the numeric pickup code")] | None = None
    pickup_after: str | None = None
    customer_note: Annotated[str, Field(max_length=500)] | None = None
    created_at: str | None = None
    # only the last four digits: staff find the order by them; the store needs (and keeps) no more
    customer_phone_last4: Annotated[str, Field(pattern=r"^[0-9]{4}$", description="the last four digits of the "
                                               "customer's phone number, to find the order at the counter")] | None = None


class OrderClosed(CloudModel):
    """`order.cancelled`, `order.refunded`."""
    order_id: Annotated[str, Field(min_length=1, max_length=64)]
    reason: Annotated[str, Field(max_length=500)] | None = None
