"""Member look-up by phone number at the till (docs/members.md): asked of the cloud, only while it answers.

The store keeps no member's phone number: the number typed at the till goes to the cloud, in a request
body (never a URL, which proxies log), and what comes back is masked by the cloud. Offline the answer is the
refusal `cloud_unavailable` (503, 云端不可用); with no cloud configured `no_cloud` (422, 云端不可用 too): the
member code still works either way.
"""

from __future__ import annotations

import logging
import re

from edge.core.refusals import refusal
from edge.services.app_keys import SYNC
from protocol import members as protocol_members
from sync.client import SyncError

log = logging.getLogger("edge.services.members")

PHONE = re.compile(protocol_members.PHONE)  # a mainland mobile number, as the mini-program registers it
LOOKUP_TIMEOUT = 3.0                       # seconds a cashier waits for the cloud
_FIELDS = ("member_id", "level", "name", "phone", "points", "balance_fen", "snapshot_at")


def check_phone(phone: str) -> str:
    if not isinstance(phone, str) or not PHONE.fullmatch(phone):
        raise refusal("bad_phone", "a phone number is 11 digits starting with 1", field="phone")
    return phone


async def lookup_by_phone(app, phone: str) -> list[dict]:
    """The cloud's members with this number, masked; refusal `cloud_unavailable` when it does not answer."""
    check_phone(phone)
    engine = app.get(SYNC)
    if engine is None:
        # not "try later" (503): this store runs alone, the answer will not change
        raise refusal("no_cloud", "no cloud is configured")
    try:
        answer = await engine.client.lookup_member(phone, LOOKUP_TIMEOUT)
    except SyncError as exc:
        # the number is not logged: only that the cloud did not answer
        log.info("member lookup: cloud unavailable", extra={"kv": {"error": str(exc)[:200]}})
        raise refusal("cloud_unavailable", "the cloud did not answer") from None
    return [{k: m.get(k) for k in _FIELDS} for m in answer.body["members"] if isinstance(m, dict)]
