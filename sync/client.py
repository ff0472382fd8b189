"""HTTP client of the sync protocol (docs/sync-protocol.md), with every failure classified.

- RetryLater: network errors, timeouts, 5xx, 429/503 (with Retry-After), answers that are not
  this protocol. The engine backs off and tries again by itself.
- NeedsPerson: 401/403 (the store's token), and 4xx answers that refuse a request as a whole.
  The engine stops hammering, says so once, and retries slowly.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import aiohttp
from pydantic import ValidationError

from edge import __version__
from protocol.events import HeldEvents
from protocol.fields import first_error, sentence
from protocol.members import HoldAnswer, HoldIn, HoldRefused, MemberLookupAnswer

MAX_RETRY_AFTER = 600.0


class SyncError(Exception):
    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class RetryLater(SyncError):
    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message, status)
        self.retry_after = retry_after


class NeedsPerson(SyncError):
    pass


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict


def retry_after(value: str | None) -> float | None:
    """Retry-After as seconds (delta or HTTP date), capped; None if absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class CloudClient:
    def __init__(self, base_url: str, store_id: str, token: str, timeout: float = 10.0):
        self.base = f"{base_url.rstrip('/')}/sync/v1/stores/{store_id}"
        self.store_id = store_id
        self._headers = {"Authorization": f"Bearer {token}", "User-Agent": f"store-edge/{__version__}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _request(self, method: str, path: str, *, ok=(200,), **kwargs) -> Answer:
        try:
            async with self._session.request(method, self.base + path, **kwargs) as response:
                raw = await response.read()  # bytes: a page in another charset must not raise here
                status = response.status
                after = retry_after(response.headers.get("Retry-After"))
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise RetryLater(f"{type(exc).__name__}: {exc}".rstrip(": ")) from None
        try:
            body = json.loads(raw)
        except ValueError:  # also UnicodeDecodeError: e.g. a captive portal's GBK page is not the protocol
            body = None
        if status in (401, 403):
            raise NeedsPerson(f"the cloud refused the store's token ({status})", status)
        if status in (429, 503):
            raise RetryLater(f"the cloud asks to wait ({status})", status, after)
        if status >= 500:
            raise RetryLater(f"cloud error {status}", status)
        if not isinstance(body, dict) or "epoch" not in body:
            # a proxy's page or an answer of another protocol: the cloud has not spoken yet
            if 400 <= status < 500 and status not in ok:
                raise NeedsPerson(f"the cloud refused the request ({status})", status)
            raise RetryLater(f"answer {status} is not the sync protocol", status)
        if status not in ok:
            raise NeedsPerson(f"the cloud refused the request ({status}: {body.get('error', '?')})", status)
        return Answer(status, body)

    async def post_events(self, envelopes: list[dict]) -> Answer:
        key = f"{self.store_id}:{envelopes[0]['seq']}-{envelopes[-1]['seq']}"
        answer = await self._request("POST", "/events", ok=(200, 409), json={"protocol": 1, "events": envelopes},
                                     headers={"Idempotency-Key": key})
        if not isinstance(answer.body.get("results", []), list):
            raise RetryLater("answer without a results list")
        if answer.status == 409 and not isinstance(answer.body.get("expected_seq"), int):
            raise RetryLater("409 without expected_seq")
        if answer.status == 200 and not isinstance(answer.body.get("next_seq"), int):
            raise RetryLater("answer without next_seq")
        return answer

    async def get_held(self, from_seq: int, limit: int) -> Answer:
        """What the cloud holds of this store's events from `from_seq` (protocol 2.6)."""
        answer = await self._request("GET", "/events", params={"from_seq": str(from_seq), "limit": str(limit)})
        try:
            HeldEvents.model_validate(answer.body)
        except ValidationError as exc:  # a cloud answering nonsense is retried later, never half believed
            raise RetryLater(f"the events answer is not protocol 2.6's: {sentence(first_error(exc))}") from None
        return answer

    async def get_changes(self, after: int, limit: int) -> Answer:
        answer = await self._request("GET", "/changes", params={"after": str(after), "limit": str(limit)})
        if not isinstance(answer.body.get("changes"), list) or not isinstance(answer.body.get("next_cursor"), int):
            raise RetryLater("changes answer without changes/next_cursor")
        return answer

    async def get_state(self) -> Answer:
        answer = await self._request("GET", "/state")
        if not isinstance(answer.body.get("next_seq"), int):
            raise RetryLater("state answer without next_seq")
        return answer

    async def get_balances(self) -> Answer:
        answer = await self._request("GET", "/balances")
        if not isinstance(answer.body.get("balances"), list):
            raise RetryLater("balances answer without a list")
        return answer

    def hints(self, heartbeat: float = 20.0):
        """The hint WebSocket (an async context manager)."""
        return self._session.ws_connect(self.base + "/hints", heartbeat=heartbeat)

    async def lookup_member(self, phone: str, timeout: float = 3.0) -> Answer:
        """Members with this phone number (docs/sync-protocol.md §8), masked by the cloud. A short timeout of
        its own: a cashier is waiting, and offline the till says so at once instead of after the sync's."""
        answer = await self._request("POST", "/members/lookup", json={"phone": phone},
                                     timeout=aiohttp.ClientTimeout(total=timeout))
        try:
            # also refuses a name or number that is not masked: the store takes no more than a receipt needs
            MemberLookupAnswer.model_validate(answer.body)
        except ValidationError:
            raise RetryLater("member lookup answer not of the protocol (or not masked)") from None
        return answer

    async def hold_member(self, hold: HoldIn, timeout: float = 3.0) -> Answer:
        """Hold a member's points and stored value for a sale about to be made (docs/sync-protocol.md §8).
        200/201 a HoldAnswer; 404 and 409 come back as answers too (the refusal is the till's to say), with
        `error` naming it. Anything else that is not the protocol raises, as every call here does."""
        answer = await self._request("POST", "/members/holds", ok=(200, 201, 404, 409), json=hold.model_dump(),
                                     timeout=aiohttp.ClientTimeout(total=timeout))
        try:
            if answer.status in (200, 201):
                HoldAnswer.model_validate(answer.body)
            elif answer.status == 409 and answer.body.get("error") != "hold_mismatch":
                HoldRefused.model_validate(answer.body)
        except ValidationError:
            raise RetryLater(f"hold answer {answer.status} not of the protocol") from None
        return answer

    async def release_hold(self, hold_id: str, timeout: float = 3.0) -> Answer:
        """Release a hold its sale will not capture (the sale was refused or abandoned); idempotent."""
        return await self._request("DELETE", f"/members/holds/{hold_id}", ok=(200, 404),
                                   timeout=aiohttp.ClientTimeout(total=timeout))
