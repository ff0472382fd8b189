"""Back-pressure at the hub (docs/sync-protocol.md 2.5): how many uploads it works on at once and how
many bytes of their bodies it holds, and the `Retry-After` it answers beyond that.

Without a bound every store's upload queued at the one writer: with 1,000 stores each waited longer
than its own 10 s timeout, gave up, and sent the same batch again while the hub still held (and
then applied) the first copy, its body in memory. Refusing at once, before the body is read, costs
the hub a header and a few bytes, and tells the store when to come back.

Nothing here knows the storage engine: it counts requests, bytes and how fast uploads finish.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

from hub.errors import HubError

DEFAULT_MAX_UPLOADS = 256      # a hard cap; the time bound below is what usually decides
DEFAULT_MAX_WAIT = 4.0         # seconds of work ahead of a new upload: well inside a store's 10 s timeout
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
RETRY_AFTER_MIN = 1          # whole seconds: the header's unit
RETRY_AFTER_MAX = 60         # a store that asks again after this finds the hub's current state
FIRST_GUESS = 0.05           # seconds per upload before the hub has measured any (on the safe side)
# The schedule is booked at the measured pace and counts every upload in progress as ahead; rounded
# to the nearest second (not up: a store that comes back a little early is refused again for the
# price of a header, a writer left idle is throughput lost for every store). Booking tighter (0.7
# of the pace, half the uploads ahead) doubled the refusals in bench/chain.py and drained no faster:
# the hub was already busy.
PACE = 1.0
AHEAD = 1.0


@dataclass
class Admission:
    """The gate every upload passes before its body is read.

    - one upload per store at a time (the protocol sends a store's batches one after another):
      a second one is 429 `rate_limited`;
    - at most `max_uploads` at once, at most `max_wait` seconds of measured work ahead of a new one
      (so an admitted upload is answered well inside the store's timeout, whatever the hub's pace),
      and `max_body_bytes` of declared bodies held: beyond any, 503 `unavailable`.

    Retry-After spreads the refused over time instead of bringing them back together: the hub
    keeps a schedule of when it expects to have room, `per_upload` seconds apart, and gives each
    refused upload the next place in it. `per_upload` is measured as a single server's service
    time: an upload's finish minus the later of the previous finish and its own admission (the
    writer is one thread; the interval between two finishes alone would count the time the hub sat
    idle, waiting for the very stores it had told to wait, and Retry-After would feed on itself).
    """

    max_uploads: int = DEFAULT_MAX_UPLOADS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_wait: float = DEFAULT_MAX_WAIT
    body_limit: int = 16 * 1024 * 1024   # the largest upload body (413 beyond); one without Content-Length counts as this
    clock: Callable[[], float] = time.monotonic
    in_flight: int = 0
    bytes_held: int = 0
    stores: dict[str, int] = field(default_factory=dict)
    per_upload: float = FIRST_GUESS
    _last_done: float | None = None
    _promised: float = 0.0

    def __post_init__(self):
        if self.max_uploads < 1 or self.max_body_bytes < 1 or not self.max_wait > 0:
            raise ValueError("max_uploads and max_body_bytes must be at least 1, max_wait more than 0")
        self.registry = CollectorRegistry()
        self.m_in_flight = Gauge("hub_uploads_in_flight", "Uploads the hub is working on", registry=self.registry)
        self.m_bytes = Gauge("hub_upload_bytes_held", "Declared body bytes of the uploads in flight",
                             registry=self.registry)
        self.m_refused = Counter("hub_uploads_refused", "Uploads answered 429/503 with Retry-After, by status",
                                 ["status"], registry=self.registry)
        for status in ("429", "503"):  # both series from the start: rate() and alerts need the zero
            self.m_refused.labels(status)
        self.m_abandoned = Counter("hub_uploads_abandoned", "Uploads whose store went away before the answer",
                                   registry=self.registry)
        self.m_per_upload = Gauge("hub_upload_seconds_per_upload", "Measured seconds of the hub's work "
                                  "per upload (what Retry-After is computed from)", registry=self.registry)

    def admit(self, store_id: str, content_length: int | None) -> tuple[int, float]:
        """Take a place for an upload of `content_length` bytes (None: not declared), or raise the
        429/503 HubError (with its Retry-After) at once. Returns the ticket to give back to `done`."""
        size = self.body_limit if content_length is None else min(content_length, self.body_limit)
        if self.stores.get(store_id, 0) >= 1:
            self.m_refused.labels("429").inc()
            raise HubError(429, "rate_limited", "this store already has an upload in progress: send one batch "
                           "at a time", headers={"Retry-After": str(self.retry_after(queue=False))})
        if (self.in_flight >= self.max_uploads or self.in_flight * self.per_upload >= self.max_wait
                or (self.in_flight and self.bytes_held + size > self.max_body_bytes)):
            self.m_refused.labels("503").inc()
            raise HubError(503, "unavailable", f"the hub is busy ({self.in_flight} uploads in progress): "
                           "send again after Retry-After seconds", headers={"Retry-After": str(self.retry_after())})
        # an upload alone larger than the byte bound is still taken when nothing else is held: the
        # body limit (413) is what bounds one body; refusing it here would refuse it for ever
        self.in_flight += 1
        self.bytes_held += size
        self.stores[store_id] = self.stores.get(store_id, 0) + 1
        self.m_in_flight.set(self.in_flight)
        self.m_bytes.set(self.bytes_held)
        return size, self.clock()

    def done(self, store_id: str, ticket: tuple[int, float], *, finished: bool = True) -> None:
        """Give the place back; `finished`: the upload was worked through (its time is measured)."""
        size, admitted = ticket
        now = self.clock()
        if finished:
            began = admitted if self._last_done is None else max(self._last_done, admitted)
            sample = min(5.0, max(now - began, 0.001))
            self.per_upload = 0.8 * self.per_upload + 0.2 * sample
            self.m_per_upload.set(self.per_upload)
            self._last_done = now
        self.in_flight -= 1
        self.bytes_held -= size
        left = self.stores.get(store_id, 1) - 1
        if left:
            self.stores[store_id] = left
        else:
            self.stores.pop(store_id, None)
        self.m_in_flight.set(self.in_flight)
        self.m_bytes.set(self.bytes_held)

    def abandoned(self) -> None:
        self.m_abandoned.inc()

    def retry_after(self, *, queue: bool = True) -> int:
        """Whole seconds until this refused upload may find room, bounded to [1, 60].

        queue: take the next place in the schedule (a refused upload that will come back); False for a
        store that only has to wait for its own upload in progress."""
        now = self.clock()
        drain = now + AHEAD * self.in_flight * self.per_upload
        if not queue:
            return max(RETRY_AFTER_MIN, min(RETRY_AFTER_MAX, round(drain - now)))
        self._promised = max(self._promised, drain) + PACE * self.per_upload
        self._promised = min(self._promised, now + RETRY_AFTER_MAX)
        return max(RETRY_AFTER_MIN, min(RETRY_AFTER_MAX, round(self._promised - now)))
