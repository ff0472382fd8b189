"""The ledger on the wire: a move, the moves an event carries, and the balances checksum."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from protocol.fields import Reported, Sku, container, expect, one_of, rule, shape

MOVE_REASONS = ("sale", "return", "receipt", "adjustment", "count",
                "reserve", "release", "pickup", "correction")
# Moves with these reasons change `reserved`; all others change `on_hand`.
RESERVATION_REASONS = ("reserve", "release")
MAX_MOVE_QTY = 1_000_000_000
MAX_MOVES = 20_000


def _not_zero(qty: int) -> int:
    if qty == 0:
        raise ValueError("a move of zero")
    return qty


class Move(Reported):
    sku: Annotated[Sku, expect("must be a SKU")]
    qty: Annotated[int, Field(ge=-MAX_MOVE_QTY, le=MAX_MOVE_QTY, json_schema_extra={"not": {"const": 0}}),
                   AfterValidator(_not_zero), expect("must be a non-zero whole number")]
    reason: one_of(MOVE_REASONS)  # type: ignore[valid-type]


MoveItem = Annotated[Move, shape("must be an object {sku, qty, reason}", dict)]
Moves = Annotated[list[MoveItem], shape(f"must be a list (at most {MAX_MOVES})", list, max_length=MAX_MOVES),
                  Field(description="The ledger moves the event made; reserve and release change reserved, the "
                                    "others on_hand")]


def no_moves(why: str) -> Any:
    """The moves of an event without a stock effect: none (left out, or an empty list)."""
    def fits(value):
        if value:
            raise rule("invalid_moves", why)
        return isinstance(value, list)
    return Annotated[Moves, container(f"must be a list (at most {MAX_MOVES})", fits),
                     Field(description=why, json_schema_extra={"maxItems": 0})]


def required_moves(why: str) -> Any:
    """Moves an event must carry (a hand-over's)."""
    def fits(value):
        if value is None:
            raise rule("invalid_moves", why)
        return True
    return Annotated[Moves, container("", fits)]


def checksum(balances: dict[str, tuple[int, int]]) -> str:
    """The protocol's checksum: SHA-256 of "sku\\ton_hand\\treserved\\n" for non-zero SKUs, by SKU."""
    digest = hashlib.sha256()
    for sku in sorted(balances, key=lambda s: s.encode()):
        on_hand, reserved = balances[sku]
        if on_hand or reserved:
            digest.update(f"{sku}\t{on_hand}\t{reserved}\n".encode())
    return digest.hexdigest()
