"""The wire contract (protocol/): the published JSON schemas are the models', and the edge writes no
event the contract refuses."""

import json
from pathlib import Path

import pytest

from protocol import schemas
from protocol.events import check_payload

PUBLISHED = Path(__file__).resolve().parent.parent / "docs" / "protocol-schemas.json"


def test_the_published_schemas_are_the_models():
    assert PUBLISHED.read_text(encoding="utf-8") == schemas.render(), \
        "docs/protocol-schemas.json is stale: python -m protocol.schemas > docs/protocol-schemas.json"
    assert set(json.loads(PUBLISHED.read_text(encoding="utf-8"))["upload"]["payloads"]) >= {"sale.recorded",
                                                                                           "print.result"}


@pytest.mark.parametrize("event_type, payload, error", [
    ("stock.received", {"moves": [{"sku": "DRK-001", "qty": 0, "reason": "receipt"}]},
     "invalid_moves: payload.moves[0].qty must be a non-zero whole number (got 0)"),
    ("print.result", {"order_id": "o-1"}, "invalid_payload: job_key must be a string of 1 to 200 characters"),
    ("pickup.teleported", {}, "'pickup.teleported' is not a version 1 event type"),
])
def test_a_payload_off_the_contract_is_refused_when_written(event_type, payload, error):
    with pytest.raises(ValueError) as caught:
        check_payload(event_type, payload)
    assert error in str(caught.value)


def test_an_order_carries_at_most_the_last_four_digits_of_the_customers_phone():
    from pydantic import ValidationError  # noqa: PLC0415

    from protocol.orders import OrderCreated  # noqa: PLC0415

    order = {"order_id": "o-1", "number": "A001", "kind": "pickup", "total_fen": 200,
             "lines": [{"sku": "DRK-001", "name": "农夫山泉", "qty": 1, "price_fen": 200}]}
    assert OrderCreated.model_validate(order).customer_phone_last4 is None      # an older cloud's order
    assert OrderCreated.model_validate({**order, "customer_phone_last4": "5678"}).customer_phone_last4 == "5678"
    for bad in ("567", "13912345678", "56a8", 5678):
        with pytest.raises(ValidationError):
            OrderCreated.model_validate({**order, "customer_phone_last4": bad})


# -- members (issue 12 parts 3-5): the programme, member prices, the activity event, holds ------------------

ACTIVITY = {"activity_id": "sale:S-1", "member_id": "m-000123", "sale_id": "S-1", "return_id": None, "level": "金卡",
            "points_earned": 12, "points_spent": 500, "stored_value_fen": -1500,
            "hold_id": "h-0d6f2a1e-2b1c-4d3e-8f9a-0123456789ab", "offline": False, "saved_fen": 230,
            "at": "2026-11-21T08:00:00.000Z"}
RETURN = {**ACTIVITY, "activity_id": "return:R-1", "return_id": "R-1", "hold_id": None, "points_earned": -6,
          "points_spent": -250, "stored_value_fen": 750, "saved_fen": -115}


def test_a_member_activity_of_a_sale_or_a_return_is_on_the_contract():
    check_payload("member.activity", ACTIVITY)
    check_payload("member.activity", RETURN)
    check_payload("member.activity", {**ACTIVITY, "hold_id": None, "offline": True})
    check_payload("member.activity", {**ACTIVITY, "points_earned": 0, "points_spent": 0, "stored_value_fen": 0})


@pytest.mark.parametrize("change, error", [
    ({"points_spent": -500}, "points_spent of a sale is the points it spent: 0 or more (got -500)"),
    ({"points_earned": -1}, "points_earned of a sale is the points it earned: 0 or more (got -1)"),
    ({"stored_value_fen": 1500}, "stored_value_fen of a sale is what it paid from the balance, negative: 0 or less"),
    ({"saved_fen": -1}, "saved_fen of a sale is what the member saved: 0 or more"),
    ({"activity_id": "sale:S-2"}, "activity_id of a sale must be sale:S-1 (got sale:S-2)"),
    ({"activity_id": "S-1"}, "activity_id of a sale must be sale:S-1"),
    ({"offline": True}, "hold_id must be null when offline is true"),
    ({"hold_id": "h-1"}, "hold_id must be null or a hold id h-<uuid4>"),
    ({"points_earned": 1.0}, "points_earned must be a whole number"),
    ({"stored_value_fen": True}, "stored_value_fen must be a whole number"),
    ({"member_id": "m 1"}, "member_id must be a member id"),
    ({"moves": [{"sku": "DRK-001", "qty": -1, "reason": "sale"}]}, "invalid_moves: a member.activity has no stock"),
])
def test_a_member_activity_of_a_sale_with_a_wrong_sign_or_key_is_refused(change, error):
    with pytest.raises(ValueError) as caught:
        check_payload("member.activity", {**ACTIVITY, **change})
    assert error in str(caught.value)


@pytest.mark.parametrize("change, error", [
    ({"points_spent": 250}, "points_spent of a return is the opposite of its sale's (the points it spent): 0 or less"),
    ({"points_earned": 6}, "points_earned of a return is the opposite of its sale's"),
    ({"stored_value_fen": -750}, "stored_value_fen of a return is the opposite of its sale's"),
    ({"hold_id": ACTIVITY["hold_id"]}, "a return holds nothing: its hold_id must be null"),
    ({"activity_id": "sale:S-1"}, "activity_id of a return must be return:R-1"),
])
def test_a_member_activity_of_a_return_gives_back_or_is_refused(change, error):
    with pytest.raises(ValueError) as caught:
        check_payload("member.activity", {**RETURN, **change})
    assert error in str(caught.value)


PROGRAM = {"version": 3, "levels": [{"level": "普通", "discount_pct": 100, "points_multiplier_pct": 100},
                                    {"level": "金卡", "discount_pct": 95, "points_multiplier_pct": 150}],
           "points_per_yuan": 1, "excluded_categories": ["烟草"], "redeem_fen_per_point": 1, "redeem_max_pct": 50}


def test_the_member_program_and_prices_are_checked_as_they_come_down():
    from pydantic import ValidationError  # noqa: PLC0415

    from protocol.changes import CHANGE_PAYLOADS  # noqa: PLC0415

    program, prices = CHANGE_PAYLOADS["member.program"], CHANGE_PAYLOADS["member.prices"]
    assert program.model_validate(PROGRAM).levels[1].discount_pct == 95
    assert program.model_validate({k: v for k, v in PROGRAM.items() if k != "excluded_categories"}
                                  ).excluded_categories == []
    level = PROGRAM["levels"][0]
    for bad in ({"levels": []}, {"levels": [level, level]}, {"levels": [{**level, "discount_pct": 0}]},
                {"levels": [{**level, "discount_pct": 101}]}, {"levels": [{**level, "points_multiplier_pct": 1001}]},
                {"levels": [{**level, "level": "等" * 17}]}, {"levels": [level] * 21}, {"points_per_yuan": 101},
                {"redeem_fen_per_point": 0}, {"redeem_fen_per_point": 10_001}, {"redeem_max_pct": 101},
                {"version": 0}, {"version": "3"}, {"points_per_yuan": True}, {"excluded_categories": [""]}):
        with pytest.raises(ValidationError):
            program.model_validate({**PROGRAM, **bad})

    good = {"prices": [{"sku": "DRK-001", "level": None, "price_fen": 180},
                       {"sku": "DRK-001", "level": "金卡", "price_fen": 170},
                       {"sku": "SNK-001", "level": None, "price_fen": None}]}
    assert prices.model_validate(good).prices[2].price_fen is None
    line = good["prices"][0]
    for bad in ([], [line] * 1001, [line, line], [{**line, "price_fen": -1}], [{"sku": "DRK-001", "level": None}],
                [{**line, "sku": ""}], [{**line, "price_fen": "180"}]):
        with pytest.raises(ValidationError):
            prices.model_validate({"prices": bad})


def test_a_hold_asks_for_something_under_the_stores_own_id():
    from pydantic import ValidationError  # noqa: PLC0415

    from protocol.members import HoldIn  # noqa: PLC0415

    hold = {"hold_id": ACTIVITY["hold_id"], "member_id": "m-000123", "points": 500, "amount_fen": 0}
    assert HoldIn.model_validate(hold).points == 500
    for bad in ({"points": 0}, {"points": -1}, {"amount_fen": -1}, {"hold_id": "h-1"}, {"hold_id": None},
                {"points": "500"}, {"member_id": ""}, {"extra": 1}):
        with pytest.raises(ValidationError):
            HoldIn.model_validate({**hold, **bad})
