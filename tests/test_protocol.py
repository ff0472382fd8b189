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
