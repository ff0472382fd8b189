"""The member look-up by phone (protocol §8, docs/members.md): the store asks, the cloud answers masked.

Both sides validate with these: the hub the request, the store the answer. An answer carrying a whole
name or phone number is refused by the store, not stored or shown: the store keeps no more of a member
than a receipt needs, whatever a cloud sends.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from protocol.fields import Time
from protocol.orders import CloudModel

PHONE = r"^1[3-9][0-9]{9}$"                    # a mainland mobile number
MASKED_PHONE = r"^[0-9]{3}\*{4}[0-9]{4}$"       # 138****5678
MASKED_NAME = r"^[^*]{1,7}\*{1,7}$"             # 张*, 欧***: some characters, then stars; at most 8 in all
MAX_MEMBERS = 10


class MemberLookup(BaseModel):
    """`POST /sync/v1/stores/{store_id}/members/lookup`: the number in the body, never the URL."""
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    phone: Annotated[str, Field(pattern=PHONE)]


class MaskedMember(CloudModel):
    member_id: Annotated[str, Field(pattern=r"^[\x21-\x7e]{1,64}$")]
    level: Annotated[str, Field(min_length=1, max_length=16)]
    name: Annotated[str, Field(pattern=MASKED_NAME, max_length=8)]
    phone: Annotated[str, Field(pattern=MASKED_PHONE)]
    points: Annotated[int, Field(ge=0)]
    balance_fen: Annotated[int, Field(ge=0)]
    snapshot_at: Time


class MemberLookupAnswer(CloudModel):
    epoch: str
    members: Annotated[list[MaskedMember], Field(max_length=MAX_MEMBERS)]
