"""The edge's sync engine: uploader, downloader and the hint WebSocket, each its own task.

- The uploader sends the outbox in seq order, in batches. It wakes on every committed write and,
  while the cloud is unreachable, on its own backoff timer: a queue never waits for a new sale. Any
  sign that the cloud is back (a page downloaded, the hint socket connected, an upload answered) cuts
  the backoff short: a queue never waits out a 5-minute backoff while the link is up.
- The downloader pulls changes by cursor when a hint arrives, and on a poll timer. A page is applied
  in slices (a bounded number of changes and time per write transaction, each moving the cursor past
  what it applied), so a sale never waits behind a whole page.
- The link state is logged once when it changes, never once per retry.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import aiohttp

from edge.core.clock import MIDNIGHT, iso, utcnow
from edge.core.context import make as make_context
from edge.core.waits import wait_event
from edge.store import outbox
from edge.store.db import Store
from sync import changes as changes_mod
from sync.client import MAX_RETRY_AFTER, CloudClient, NeedsPerson, RetryLater

log = logging.getLogger("sync")


@dataclass
class Timing:
    """Delays of the engine; tests shorten them, the daemon uses these."""

    backoff_base: float = 1.0
    backoff_cap: float = 300.0
    person_retry: float = 300.0       # after 401/403 or a refused request: slowly, a person must act
    poll_with_hints: float = 300.0
    poll_without_hints: float = 30.0
    slice_seconds: float = 0.05       # a slice of a page of changes stops after this long in its transaction


SLICE_CHANGES = 1000                  # at most this many changes per write transaction (time bounds it first)


def backoff(attempt: int, timing: Timing, rng: random.Random) -> float:
    """Exponential backoff with full jitter."""
    return rng.uniform(0, min(timing.backoff_cap, timing.backoff_base * 2 ** min(attempt, 30)))


RETRY_AFTER_JITTER = 0.2              # a Retry-After is waited out plus up to this fraction of it


def retry_wait(seconds: float, rng: random.Random) -> float:
    """A 429/503's Retry-After plus 0-20 % jitter: never earlier than the cloud said (it may have
    promised the time to others), and the stores it refused together do not come back together.
    At most MAX_RETRY_AFTER (10 minutes), unless the cloud itself asked for that."""
    return max(seconds, min(seconds * (1 + rng.uniform(0, RETRY_AFTER_JITTER)), MAX_RETRY_AFTER))


@dataclass
class Link:
    state: str = "connecting"         # connecting, online, offline, busy, auth_failed, refused, error
    since: float = field(default_factory=time.time)
    last_success_at: str | None = None
    last_error: str | None = None
    hints_connected: bool = False
    # called after each change of state: the dashboard's indicator follows the link, not a 10 s clock
    listeners: list = field(default_factory=list, repr=False)

    def succeeded(self) -> None:
        self.last_success_at = iso(utcnow())
        self._become("online", None)

    def failed(self, state: str, error: Exception) -> None:
        self.last_error = str(error)
        self._become(state, str(error))

    def _become(self, state: str, error: str | None) -> None:
        if state == self.state:
            return
        down_for = time.time() - self.since
        if state == "online":
            log.info("cloud link up", extra={"kv": {"was": self.state, "after_s": round(down_for, 1)}})
        else:
            (log.error if state in ("auth_failed", "refused", "error") else log.warning)(
                "cloud link " + state.replace("_", " "), extra={"kv": {"error": error}})
        self.state, self.since = state, time.time()
        for listener in self.listeners:
            listener()

    def as_dict(self) -> dict:
        return {"state": self.state, "since": iso(datetime.fromtimestamp(self.since, timezone.utc)),
                "last_success_at": self.last_success_at, "last_error": self.last_error,
                "hints_connected": self.hints_connected}


class SyncEngine:
    def __init__(self, store: Store, client: CloudClient, *, tz, day_cutoff=MIDNIGHT, batch_size: int = 200, page_size: int = 500,
                 slice_changes: int = SLICE_CHANGES, timing: Timing | None = None, seed: int | None = None):
        self.store = store
        self.client = client
        self.tz = tz
        self.day_cutoff = day_cutoff
        self.batch_size = batch_size
        self.page_size = page_size
        self.slice_changes = slice_changes
        self.timing = timing or Timing()
        self.rng = random.Random(seed)
        self.link = Link()
        self.upload_wake = asyncio.Event()
        self.download_wake = asyncio.Event()
        # set on any sign the cloud answers again; a task in backoff retries at once (sales do not
        # wake a backoff: during an outage every sale would be one more request to a dead link)
        self._reachable = {"upload": asyncio.Event(), "download": asyncio.Event()}
        self._epoch_lock = asyncio.Lock()
        # the answer to the last upload may be lost (a timeout, a reset link, a restart): before sending
        # the batch again, ask the cloud how far it got (protocol 2.6)
        self._ask_held = True
        self._tasks: list[asyncio.Task] = []

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.client.open()
        self.store.listeners.append(self.upload_wake.set)
        self._tasks = [asyncio.create_task(coro, name=name) for name, coro in (
            ("sync-upload", self._uploader()), ("sync-download", self._downloader()), ("sync-hints", self._hints()))]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.upload_wake.set in self.store.listeners:
            self.store.listeners.remove(self.upload_wake.set)
        await self.client.close()

    @staticmethod
    async def _wait(event: asyncio.Event, timeout: float | None) -> None:
        await wait_event(event, timeout)
        event.clear()

    def _cloud_answered(self) -> None:
        for event in self._reachable.values():
            event.set()

    async def _failed(self, exc: Exception, attempt: int, task: str) -> int:
        """Record a failure and sleep as its class says; returns the next attempt number."""
        if isinstance(exc, NeedsPerson):
            self.link.failed("auth_failed" if exc.status in (401, 403) else "refused", exc)
            await asyncio.sleep(self.timing.person_retry)
            return attempt
        if getattr(exc, "retry_after", None) is not None:
            # busy, not offline: the cloud answered (429/503 with Retry-After), so the store is
            # connected and told when to come back; the dashboard says so rather than "disconnected"
            self.link.failed("busy", exc)
            # the cloud answered and named its time: kept to, never shortened; and not a failure that
            # grows the backoff (a busy hub is not a dead link)
            await asyncio.sleep(retry_wait(exc.retry_after, self.rng))
            return attempt
        self.link.failed("offline", exc)
        # the event was cleared when this attempt began: a sign of life since then ends the wait
        await self._wait(self._reachable[task], backoff(attempt, self.timing, self.rng))
        return attempt + 1

    # -- upload -----------------------------------------------------------------------------------
    async def _uploader(self) -> None:
        attempt = 0
        while True:
            try:
                if await self.upload_once():
                    attempt = 0
                    continue
                attempt = 0
                await self._wait(self.upload_wake, None)
            except (RetryLater, NeedsPerson) as exc:
                if isinstance(exc, RetryLater) and exc.status is None:
                    self._ask_held = True  # no answer read: the cloud may have applied the batch
                attempt = await self._failed(exc, attempt, "upload")
            except Exception as exc:  # noqa: BLE001 (a full disk, a bug: the task must not die silently)
                attempt = await self._crashed("upload", exc, attempt)

    async def _crashed(self, task: str, exc: Exception, attempt: int) -> int:
        if self.link.state != "error":  # the traceback once, not once per retry
            log.exception(f"sync {task} failed; retrying", extra={"kv": {"attempt": attempt}})
        self.link.failed("error", exc)
        await asyncio.sleep(backoff(attempt, self.timing, self.rng))
        return attempt + 1

    async def upload_once(self) -> bool:
        """Send one batch; True if there was one (there may be more)."""
        self.upload_wake.clear()
        self._reachable["upload"].clear()
        batch = await self.store.read(outbox.pending_batch, self.client.store_id, self.batch_size)
        if not batch:
            return False
        if self._ask_held and await self._skip_held(batch):
            return True
        answer = await self.client.post_events([outbox.envelope(e) for e in batch])
        if await self._check_epoch(answer.body):
            return True  # the cloud was restored: the queue was rewound, send again
        moved = await self.store.write(self._record, batch, answer.status, answer.body)
        self.link.succeeded()
        self._cloud_answered()
        if not moved:
            # the cloud answered but the queue did not move: resending at once would spin
            raise RetryLater(f"the cloud's answer ({answer.status}) did not move the queue")
        return True

    async def _skip_held(self, batch: list[dict]) -> bool:
        """Ask the cloud which of `batch` it already holds; record those as answered (a rejected one
        becomes a dead letter, as from an upload's answer) and True if any. Only a run from the
        batch's first event, each with the same seq and id, counts: anything else is sent and the
        upload's answer says what it is (e.g. seq_taken). A cloud without this request (404) is
        simply sent the batch."""
        try:
            held = await self.client.get_held(batch[0]["seq"], len(batch))
        except NeedsPerson:
            self._ask_held = False
            return False
        except RetryLater as exc:
            if exc.status is not None and exc.retry_after is None:
                self._ask_held = False  # a cloud failing this question must not hold the uploads up
            raise
        if await self._check_epoch(held.body):
            return True
        results = held.body["results"]
        count = 0
        for event, result in zip(batch, results):
            if not (isinstance(result, dict) and result.get("seq") == event["seq"] and result.get("id") == event["id"]
                    and result.get("status") in ("applied", "rejected")):
                break
            count += 1
        count = min(count, max(0, held.body["next_seq"] - batch[0]["seq"]))
        self._ask_held = count == len(batch)  # the cloud had all of it: it may have the next batch too
        if not count:
            return False
        done = batch[:count]
        moved = await self.store.write(self._record, done, 200, {"next_seq": done[-1]["seq"] + 1,
                                                                 "results": results[:count]})
        self.link.succeeded()
        self._cloud_answered()
        log.info("the cloud already held events whose answer was lost: not sent again",
                 extra={"kv": {"from_seq": done[0]["seq"], "events": count}})
        return moved

    @staticmethod
    def _record(conn, batch: list[dict], status: int, body: dict) -> bool:
        """Apply the cloud's answer to the queue; False if nothing moved."""
        now = iso(utcnow())
        acked_before, offset_before = outbox.acked_seq(conn), outbox.seq_offset(conn)
        if acked_before != batch[0]["local_seq"] - 1:
            return True  # the queue moved meanwhile (an epoch change): this answer is stale
        results = body.get("results") or []
        outbox.record_results(conn, batch, results, now)
        if status == 409 and body.get("error") == "seq_taken":
            done = [r for r in results if isinstance(r, dict) and r.get("status") in ("applied", "duplicate",
                                                                                       "rejected")]
            outbox.set_state(conn, "acked_seq", batch[len(done) - 1]["local_seq"] if done else acked_before)
            outbox.renumber(conn, body["expected_seq"])
            log.warning("cloud holds events this store lacks: renumbering the queue",
                        extra={"kv": {"expected_seq": body["expected_seq"]}})
        else:
            expected = body["expected_seq"] if status == 409 else body["next_seq"]
            outbox.resync(conn, expected, batch[-1]["local_seq"])
        return (outbox.acked_seq(conn), outbox.seq_offset(conn)) != (acked_before, offset_before)

    # -- epoch ------------------------------------------------------------------------------------
    async def _check_epoch(self, body: dict) -> bool:
        """True if the cloud's epoch changed: the queue and the cursor were rewound to its state."""
        epoch = body.get("epoch")
        if not isinstance(epoch, str):
            return False
        async with self._epoch_lock:
            known = await self.store.read(outbox.get_state, "epoch")
            if known == epoch:
                return False
            if known is None:
                await self.store.write(outbox.set_state, "epoch", epoch)
                return False
            state = await self.client.get_state()
            if state.body.get("epoch") != epoch:
                return True  # changed again: the next answer tells
            await self.store.write(self._rewind, epoch, state.body["next_seq"])
            log.warning("cloud epoch changed (restored from a backup): resending and pulling again",
                        extra={"kv": {"epoch": epoch, "next_seq": state.body["next_seq"]}})
            self.download_wake.set()
            return True

    @staticmethod
    def _rewind(conn, epoch: str, next_seq: int) -> None:
        # back to next_seq, never forward: the cloud may hold events whose answer this store never
        # read (lost, or the very answer that carried the new epoch); a rejected one among them must
        # still become a dead letter, so they are resent and the cloud answers each by id
        outbox.resync(conn, next_seq, outbox.acked_seq(conn))
        outbox.set_state(conn, "cursor", 0)
        outbox.set_state(conn, "epoch", epoch)

    # -- download ---------------------------------------------------------------------------------
    async def _downloader(self) -> None:
        attempt = 0
        while True:
            try:
                await self.pull()
                attempt = 0
                await self._wait(self.download_wake, self.timing.poll_with_hints if self.link.hints_connected
                                 else self.timing.poll_without_hints)
            except (RetryLater, NeedsPerson) as exc:
                attempt = await self._failed(exc, attempt, "download")
            except Exception as exc:  # noqa: BLE001
                attempt = await self._crashed("download", exc, attempt)

    async def pull(self) -> int:
        """Pull and apply every page of changes; returns how many were applied."""
        total = 0
        while True:
            self.download_wake.clear()
            self._reachable["download"].clear()
            cursor = int(await self.store.read(outbox.get_state, "cursor", "0"))
            answer = await self.client.get_changes(cursor, self.page_size)
            if await self._check_epoch(answer.body):
                continue
            body = answer.body
            if body["changes"] or body["next_cursor"] != cursor:
                counts = await self.apply_page(cursor, body["changes"], body["next_cursor"])
                if counts is None:
                    continue  # the cursor moved meanwhile: pull again from where it is now
                total += counts["applied"]
                if counts["rejected"]:
                    log.warning("changes rejected", extra={"kv": counts})
            self.link.succeeded()
            self._cloud_answered()
            if not body.get("more"):
                return total
            if body["next_cursor"] == cursor:
                raise RetryLater("the cloud says there is more but its cursor does not move")

    async def apply_page(self, cursor: int, page: list, next_cursor: int) -> dict | None:
        """Apply a page in slices, each its own write transaction; None if the cursor was moved by
        someone else (an epoch rewind) before or between slices."""
        ctx = make_context("cloud", self.tz, self.day_cutoff)
        totals = {"applied": 0, "rejected": 0, "skipped": 0}
        done = 0
        while True:
            result = await self.store.write(self._apply_slice, cursor, page, done, next_cursor, ctx,
                                            self.slice_changes, self.timing.slice_seconds)
            if result is None:
                return None
            counts, done, cursor = result
            for key in totals:
                totals[key] += counts[key]
            if done == len(page):
                return totals

    @staticmethod
    def _apply_slice(conn, cursor: int, page: list, start: int, next_cursor: int, ctx, most: int,
                     seconds: float):
        """Apply page[start:] until `most` changes or `seconds` have gone (at least one change), each
        with the cursor moved past it in this transaction: a crash keeps exactly the slices committed,
        and the next pull starts after them. Returns (counts, changes done, cursor) or None."""
        if int(outbox.get_state(conn, "cursor", "0")) != cursor:
            return None
        totals = {"applied": 0, "rejected": 0, "skipped": 0}
        deadline = time.monotonic() + seconds
        end = start
        if not page:  # an empty page that still moves the cursor
            changes_mod.apply_page(conn, [], next_cursor, ctx)
            return totals, 0, next_cursor
        while end < len(page) and end - start < most and (end == start or time.monotonic() < deadline):
            change = page[end]
            end += 1
            if end == len(page):
                cursor = next_cursor
            else:
                # a change's own cursor when it is plausible; otherwise the cursor stays where it was
                # and a crash re-delivers from there (the inbox skips what was applied)
                own = change.get("cursor") if isinstance(change, dict) else None
                if type(own) is int and cursor < own <= next_cursor:
                    cursor = own
            counts = changes_mod.apply_page(conn, [change], cursor, ctx)
            for key in totals:
                totals[key] += counts[key]
        return totals, end, cursor

    # -- hints ------------------------------------------------------------------------------------
    async def _hints(self) -> None:
        attempt = 0
        while True:
            try:
                async with self.client.hints() as ws:
                    self.link.hints_connected = True
                    self._cloud_answered()
                    attempt = 0
                    self.download_wake.set()   # whatever happened while the socket was down
                    async for message in ws:
                        if message.type != aiohttp.WSMsgType.TEXT:
                            continue
                        try:
                            hint = json.loads(message.data)
                        except ValueError:
                            continue
                        if isinstance(hint, dict) and hint.get("type") in ("changes", "hello"):
                            self.download_wake.set()
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                pass
            except Exception:  # noqa: BLE001 (hints are an optimisation: polling carries on regardless)
                if attempt == 0:
                    log.exception("hint socket failed; retrying")
            if self.link.hints_connected:
                self.link.hints_connected = False
                self.download_wake.set()  # the downloader goes back to the short poll at once
            await asyncio.sleep(backoff(attempt, self.timing, self.rng))
            attempt += 1
