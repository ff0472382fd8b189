"""The wake-up hints (protocol 3.4), text messages on `GET /sync/v1/stores/{store_id}/hints`.
Hints carry no data: a store that hears of a cursor beyond its own pulls the feed."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from protocol.orders import CloudModel

Cursor = Annotated[int, Field(ge=0)]


class Hello(CloudModel):
    """Sent on connect, and again when the cloud starts a new epoch."""
    type: Literal["hello"]
    epoch: str
    cursor: Cursor


class ChangesHint(CloudModel):
    """Sent whenever a change for the store is committed."""
    type: Literal["changes"]
    cursor: Cursor
