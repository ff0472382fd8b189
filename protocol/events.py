"""What a store uploads (protocol section 2): the batch, the envelope, and each event type's payload.

A cloud rejects (not fails on) an event whose payload breaks these, with the reason `payload_problem`
gives; the store validates the same way when it writes the event, so it never sends one.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, WithJsonSchema, model_validator

from protocol import PROTOCOL
from protocol.fields import (
    Flag,
    Reported,
    Time,
    expect,
    first_error,
    one_of,
    rule,
    sentence,
    shape,
    show,
    sized,
    text,
    whole,
    whole_words,
)
from protocol.members import HOLD_ID, MAX_AMOUNT, MEMBER_ID
from protocol.orders import PICKUP_METHODS, PRINT_KINDS, PRINT_RESULTS, STORE_ORDER_STATES, CloudModel
from protocol.stock import Moves, no_moves, required_moves

EVENT_ID = re.compile(r"^[\x21-\x7e]{1,128}$")
MAX_BATCH = 500
MAX_SEQ = 2 ** 53                  # JSON-safe, far inside SQLite's 64 bits
MAX_PRINT_ATTEMPTS = 1_000_000
MAX_DISCOUNT_FEN = 1_000_000_000

Seq = whole(1, MAX_SEQ)
OrderRef = Annotated[sized(1), expect("must be a string")]


class Envelope(Reported):
    id: Annotated[str, Field(pattern=EVENT_ID.pattern, description="permanent unique id (UUID)"),
                  expect("must be a string of 1 to 128 printable ASCII characters (a UUID)")]
    store_id: Annotated[str, expect("must be a string")]
    seq: Seq
    type: Annotated[sized(1), expect("must be a non-empty string")]
    created_at: Time
    payload: Annotated[dict, expect("must be an object")]


# the events' schema as published; Batch._events checks it, in one pass over the batch
class BatchEvent(Reported):
    """What the batch as a whole needs of an event (the rest is checked event by event)."""
    seq: Seq


class Batch(Reported):
    """`POST /sync/v1/stores/{store_id}/events`."""
    protocol: Annotated[int, Field(ge=PROTOCOL, le=PROTOCOL), expect(f"must be {PROTOCOL}, the version of the sync "
                                                                      "protocol spoken here")]
    events: Annotated[list[Annotated[Any, WithJsonSchema(BatchEvent.model_json_schema(mode="validation"))]],
                      shape(f"must be a list of 1 to {MAX_BATCH} events", list, 1, MAX_BATCH)]

    @model_validator(mode="after")
    def _events(self):
        """Each event an object with a Seq, in the words a BatchEvent model per event gave (the first
        wrong one), then the seqs consecutive. In plain Python: a model per event was 2.8 µs an event,
        13 % of the hub's busy time in a storm (py-spy)."""
        for index, event in enumerate(self.events):
            if not isinstance(event, dict):
                raise rule("invalid_request", f"events[{index}] must be an object (got {show(event)})")
            seq = event.get("seq")
            if type(seq) is not int or not 1 <= seq <= MAX_SEQ:
                raise rule("invalid_request", f"events[{index}].seq {whole_words(1, MAX_SEQ)} (got {show(seq)})")
        first = self.events[0]["seq"]
        for index, event in enumerate(self.events):
            if event["seq"] != first + index:
                raise rule("invalid_request", f"events[{index}].seq is {event['seq']}, expected {first + index}: "
                                              "the seq of a batch's events must be consecutive")
        return self


class Payload(Reported):
    """Every event that changed stock lists the ledger moves it made."""
    moves: Moves = []


class SaleRecorded(Payload):
    """The sale: id, number, lines, payments, totals."""


class SaleReturned(Payload):
    """The return: id, sale_id, lines, refund (no moves if not restocked)."""


class StockReceived(Payload):
    """A goods received document."""


class StockAdjusted(Payload):
    """An adjustment document with its note."""


class StockCounted(Payload):
    """A stock count: counted and expected per SKU; the moves are the differences."""


class StockCorrected(Payload):
    """A correction the store applied (the cloud's stock.correction, or reconciliation)."""


class OrderReceived(Payload):
    """The moves reserve the order's lines; `short` names lines the available stock did not cover."""
    order_id: OrderRef
    short: Annotated[list, expect("must be a list"),
                     Field(description="[{sku, qty, available}] of the lines not covered")] = []


class OrderStateChanged(Payload):
    """`from`, `to`, `operator`; the moves release or hand over the stock."""
    order_id: OrderRef
    to: one_of(STORE_ORDER_STATES)  # type: ignore[valid-type]


class OrderConflict(Payload):
    """`reason`, e.g. cancelled upstream after it was handed over."""
    order_id: OrderRef


class ChangeRejected(Payload):
    """`change_id`, `type`, `reason`: a downloaded change the store could not apply."""


class DeadLetterDiscarded(Payload):
    """`event_id`, `type`, `operator`, `reason`: the operator gave up on a rejected event."""


class EventVoided(Payload):
    """`voided_type`, `resolution` (retried | discarded): a rejected event sent again in its place."""
    moves: no_moves("an event.voided has no effect, so it carries no moves") = []


class PrintResult(Payload):
    """A print job for an online order reached a final state."""
    order_id: OrderRef
    job_key: text(200)  # type: ignore[valid-type]
    kind: one_of(PRINT_KINDS)  # type: ignore[valid-type]
    result: one_of(PRINT_RESULTS)  # type: ignore[valid-type]
    printer: text(200)  # type: ignore[valid-type]
    attempts: whole(0, MAX_PRINT_ATTEMPTS)  # type: ignore[valid-type]
    error: Annotated[str | None, expect("must be null or a string")] = None
    at: Time
    reprint: Flag = False
    moves: no_moves("a print.result has no stock effect, so it carries no moves") = []


class PickupVerified(Payload):
    """An online order handed over at the counter (docs/tokens.md); moves: release and pickup of each line."""
    order_id: text(64)  # type: ignore[valid-type]
    operator: text(200)  # type: ignore[valid-type]
    method: one_of(PICKUP_METHODS)  # type: ignore[valid-type]
    device: text(200)  # type: ignore[valid-type]
    provisional: Flag
    verified_at: Time
    jti: Annotated[sized(1, 64) | None,
                   expect("must be a string of 1 to 64 characters")] = None
    # handed over without the code (the customer lost it), by a manager, for this reason; method code
    manual_reason: Annotated[sized(1, 500) | None, expect("must be a string of 1 to 500 characters")] = None
    # the member the cashier had on the screen at the hand-over (issue 12); absent for an older store
    member_id: Annotated[sized(1, 64) | None, expect("must be a string of 1 to 64 characters")] = None
    moves: required_moves("a pickup.verified carries the moves of the hand-over (release and pickup of each line)")

    @model_validator(mode="after")
    def _jti(self):
        if self.method == "token" and self.jti is None:
            raise rule("invalid_payload", "jti must be a string of 1 to 64 characters (got null)")
        if self.method == "code" and self.jti is not None:
            raise rule("invalid_payload", "jti is for method token; a code hand-over has none (null or absent; "
                                          f"got {show(self.jti)})")
        if self.method == "token" and self.manual_reason is not None:
            raise rule("invalid_payload", "manual_reason is for a hand-over without the code (method code); "
                                          "a token was verified")
        return self


class PickupReversed(Payload):
    """A hand-over undone at the store; moves: the opposite of the hand-over's."""
    order_id: text(64)  # type: ignore[valid-type]
    operator: text(200)  # type: ignore[valid-type]
    reason: text(500)  # type: ignore[valid-type]
    moves: required_moves("a pickup.reversed carries the moves of the hand-over (release and pickup of each line)")


class CouponRedeemed(Payload):
    """A coupon serial used on a sale (docs/tokens.md); the sale carries the moves."""
    coupon_id: text(64)  # type: ignore[valid-type]
    serial: text(64)  # type: ignore[valid-type]
    jti: text(64)  # type: ignore[valid-type]
    sale_id: text(128)  # type: ignore[valid-type]
    discount_fen: whole(0, MAX_DISCOUNT_FEN)  # type: ignore[valid-type]
    provisional: Flag
    moves: no_moves("a coupon.redeemed has no stock effect of its own (the sale carries the moves)") = []


Signed = whole(-MAX_AMOUNT, MAX_AMOUNT)
# what a sale's deltas may be; a return's are the opposite signs (it gives back what its sale took)
SALE_SIGNS = {"points_earned": 1, "points_spent": 1, "stored_value_fen": -1, "saved_fen": 1}
SALE_MEANS = {"points_earned": "the points it earned", "points_spent": "the points it spent",
              "stored_value_fen": "what it paid from the balance, negative", "saved_fen": "what the member saved"}


class MemberActivity(Payload):
    """A member's points and stored value moved by a sale or a return (docs/members.md): signed deltas,
    applied at the cloud once per activity_id, whatever event carries it."""
    activity_id: Annotated[sized(1, 140), expect("must be sale:<sale_id> or return:<return_id>")]
    member_id: Annotated[str, Field(pattern=MEMBER_ID), expect("must be a member id (1 to 64 printable ASCII "
                                                                "characters)")]
    sale_id: text(128)  # type: ignore[valid-type]
    return_id: Annotated[sized(1, 128) | None, expect("must be null or a string of 1 to 128 characters")] = None
    level: text(16)  # type: ignore[valid-type]
    points_earned: Signed  # type: ignore[valid-type]
    points_spent: Signed  # type: ignore[valid-type]
    stored_value_fen: Signed  # type: ignore[valid-type]
    hold_id: Annotated[Annotated[str, Field(pattern=HOLD_ID)] | None,
                       expect("must be null or a hold id h-<uuid4>")] = None
    offline: Flag
    saved_fen: Signed  # type: ignore[valid-type]
    at: Time
    moves: no_moves("a member.activity has no stock effect (its sale or return carries the moves)") = []

    @model_validator(mode="after")
    def _consistent(self):
        kind, key = ("sale", self.sale_id) if self.return_id is None else ("return", self.return_id)
        if self.activity_id != f"{kind}:{key}":
            raise rule("invalid_payload", f"activity_id of a {kind} must be {show(kind + ':' + key)} (got "
                                          f"{show(self.activity_id)})")
        sign = 1 if kind == "sale" else -1
        for name, sale_sign in SALE_SIGNS.items():
            value = getattr(self, name)
            if value * sale_sign * sign < 0:
                bound = "0 or more" if sale_sign * sign > 0 else "0 or less"
                means = SALE_MEANS[name] if kind == "sale" else f"the opposite of its sale's ({SALE_MEANS[name]})"
                raise rule("invalid_payload", f"{name} of a {kind} is {means}: {bound} (got {value})")
        if self.hold_id is not None and kind == "return":
            raise rule("invalid_payload", "a return holds nothing: its hold_id must be null")
        if self.hold_id is not None and self.offline:
            raise rule("invalid_payload", "an offline activity has no hold: hold_id must be null when offline is true")
        return self


EVENT_PAYLOADS: dict[str, type[Payload]] = {
    "sale.recorded": SaleRecorded, "sale.returned": SaleReturned, "stock.received": StockReceived,
    "stock.adjusted": StockAdjusted, "stock.counted": StockCounted, "stock.corrected": StockCorrected,
    "order.received": OrderReceived, "order.state_changed": OrderStateChanged, "order.conflict": OrderConflict,
    "change.rejected": ChangeRejected, "dead_letter.discarded": DeadLetterDiscarded, "event.voided": EventVoided,
    "print.result": PrintResult, "pickup.verified": PickupVerified, "pickup.reversed": PickupReversed,
    "coupon.redeemed": CouponRedeemed, "member.activity": MemberActivity,
}
EVENT_TYPES = frozenset(EVENT_PAYLOADS)


class HeldEvent(CloudModel):
    id: Annotated[str, Field(pattern=EVENT_ID.pattern)]
    seq: Annotated[int, Field(ge=1, le=MAX_SEQ)]
    status: Literal["applied", "rejected"]
    reason: str | None = None


class HeldEvents(CloudModel):
    """`GET /sync/v1/stores/{store_id}/events?from_seq=N&limit=M` (section 2.6): what the cloud holds of the
    store's events from seq N, in seq order; the store reads it before resending a batch whose answer it lost."""
    epoch: Annotated[str, Field(min_length=1)]
    next_seq: Annotated[int, Field(ge=1, le=MAX_SEQ)]
    results: Annotated[list[HeldEvent], Field(max_length=MAX_BATCH)]
PICKUP_EVENT_TYPES = frozenset({"pickup.verified", "pickup.reversed"})
ORDER_EVENT_TYPES = frozenset({"order.received", "order.state_changed", "order.conflict", "print.result",
                               *PICKUP_EVENT_TYPES})


def envelope_problem(event: Any) -> str | None:
    """What is wrong with an event's envelope, or None."""
    try:
        Envelope.model_validate(event)
    except ValidationError as exc:
        return sentence(first_error(exc))
    return None


def payload_problem(event_type: str, payload: Any) -> tuple[str, str] | None:
    """(code, reason) of what is wrong with a known event type's payload, or None. The code is
    invalid_moves for its moves, invalid_payload for the rest."""
    try:
        EVENT_PAYLOADS[event_type].model_validate(payload)
    except ValidationError as exc:
        error = first_error(exc)
        if error["type"] == "rule":
            return error["ctx"]["code"], error["msg"]
        if error["loc"][:1] == ("moves",):
            return "invalid_moves", sentence(error, "payload.")
        return "invalid_payload", sentence(error)
    return None


def check_payload(event_type: str, payload: Any) -> None:
    """For the side that writes events: a payload off the contract is a bug, raised at once."""
    if event_type not in EVENT_PAYLOADS:
        raise ValueError(f"{event_type!r} is not a version {PROTOCOL} event type")
    if (problem := payload_problem(event_type, payload)) is not None:
        raise ValueError(f"{event_type}: {problem[0]}: {problem[1]}")
