"""Members (会员) on the local API: a till checks a member code it read itself, or looks a member up by
phone number through the cloud (docs/members.md). Scans from the store's own scanners are checked by the
scan router as they arrive and come with their result in the scan journal (`detail.member`)."""

from __future__ import annotations

import time
from typing import Annotated

from pydantic import Field

from edge.api.registry import json_response, operation, parse_body, write
from edge.core import member_code
from edge.core.schemas import Body
from edge.services.app_keys import CONFIG
from edge.services.members import PHONE, lookup_by_phone
from edge.store import members


class MemberCodeIn(Body):
    code: Annotated[str, Field(min_length=1, max_length=member_code.MAX_CODE,
                               json_schema_extra={"pattern": member_code.CODE_PATTERN},
                               description="The member code as scanned (certificate.step.signature)")]


class PhoneIn(Body):
    phone: Annotated[str, Field(pattern=PHONE.pattern, description="The member's 11-digit mobile number")]


@operation("post", "/members/verify", "Check a member code (会员码) offline and take it: each code once",
           tag="members", body=MemberCodeIn,
           responses={201: "the member as a receipt shows it: masked name and phone, level, points, balance, "
                           "snapshot time", 422: "a refused code (reason and detail.message_zh)"})
async def verify_member(request):
    store = request.app[CONFIG].store
    now = time.time()      # the step is the till's now: a till with a wrong clock is refused, not trusted
    return await write(request, MemberCodeIn,
                       lambda conn, body, ctx: members.verify_for_till(conn, body.code, store.chain, store.id, now))


@operation("post", "/members/lookup", "Find a member by phone number, through the cloud (the number in the body, "
           "never in a URL)", tag="members", body=PhoneIn, writes=False,
           responses={200: "members: masked, as the cloud has them", 422: "no_cloud (this store runs alone)",
                      503: "cloud_unavailable"})
async def lookup_member(request):
    _, body = await parse_body(request, PhoneIn)
    return json_response({"members": await lookup_by_phone(request.app, body.phone)})
