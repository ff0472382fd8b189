"""The member look-up by phone and the holds on a member's points and stored value (protocol §8,
docs/members.md): the store asks, the cloud answers, masked.

Both sides validate with these: the hub the request, the store the answer. An answer carrying a whole
name or phone number is refused by the store, not stored or shown: the store keeps no more of a member
than a receipt needs, whatever a cloud sends.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from protocol.fields import Time
from protocol.orders import CloudModel

PHONE = r"^1[3-9][0-9]{9}$"                    # a mainland mobile number
MASKED_PHONE = r"^[0-9]{3}\*{4}[0-9]{4}$"       # 138****5678
MASKED_NAME = r"^[^*]{1,7}\*{1,7}$"             # 张*, 欧***: some characters, then stars; at most 8 in all
MAX_MEMBERS = 10
MEMBER_ID = r"^[\x21-\x7e]{1,64}$"
HOLD_ID = r"^h-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"    # h-<uuid4>, made by the store
MAX_AMOUNT = 10_000_000_000        # points, or fen: far beyond any member's, inside JSON's safe integers
HOLD_SECONDS = 600                 # a hold never captured by its sale holds nothing after this

MemberId = Annotated[str, Field(pattern=MEMBER_ID)]
HoldId = Annotated[str, Field(pattern=HOLD_ID, description="h-<uuid4>, chosen by the store: the same id again "
                                                            "is the same hold")]
Amount = Annotated[int, Field(ge=0, le=MAX_AMOUNT)]


class MemberLookup(BaseModel):
    """`POST /sync/v1/stores/{store_id}/members/lookup`: the number in the body, never the URL."""
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    phone: Annotated[str, Field(pattern=PHONE)]


class MaskedMember(CloudModel):
    member_id: MemberId
    level: Annotated[str, Field(min_length=1, max_length=16)]
    name: Annotated[str, Field(pattern=MASKED_NAME, max_length=8)]
    phone: Annotated[str, Field(pattern=MASKED_PHONE)]
    points: Annotated[int, Field(ge=0)]
    balance_fen: Annotated[int, Field(ge=0)]
    snapshot_at: Time


class MemberLookupAnswer(CloudModel):
    epoch: str
    members: Annotated[list[MaskedMember], Field(max_length=MAX_MEMBERS)]


class HoldIn(BaseModel):
    """`POST /sync/v1/stores/{store_id}/members/holds`: hold what a sale is about to spend, before it is made."""
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    hold_id: HoldId
    member_id: MemberId
    points: Amount
    amount_fen: Annotated[Amount, Field(description="stored value (储值) in fen")]

    @model_validator(mode="after")
    def _something(self):
        if self.points == 0 and self.amount_fen == 0:
            raise ValueError("a hold of 0 points and 0 fen holds nothing: send at least one of them")
        return self


class HoldAnswer(CloudModel):
    """201 for a new hold, 200 for the same hold asked again (the same answer)."""
    epoch: str
    hold_id: HoldId
    member_id: MemberId
    points: Amount
    amount_fen: Amount
    expires_at: Time
    points_left: Annotated[int, Field(ge=0, description="what the member could still spend beside this hold")]
    balance_fen_left: Annotated[int, Field(ge=0)]


class HoldRefused(CloudModel):
    """409 `insufficient_points` / `insufficient_balance`: what the member has free to hold now."""
    epoch: str
    error: str
    message: str
    points_available: int
    balance_fen_available: int
