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
DEFAULT_MAX_WAIT = 2.0         # seconds of work ahead of a new upload: with DUE_PER_EVENT's 2 s for a
                               # batch of 200, well inside a store's 10 s timeout
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
RETRY_AFTER_MIN = 1          # whole seconds: the header's unit
RETRY_AFTER_MAX = 60         # a store that asks again after this finds the hub's current state
FIRST_GUESS = 0.05           # seconds per upload before the hub has measured any (on the safe side)
HALF_LIFE = 2.0              # seconds: how fast the measured pace forgets (a storm's start is seen within one)
# The schedule is booked at the measured pace and counts every upload in progress as ahead; rounded
# to the nearest second (not up: a store that comes back a little early is refused again for the
# price of a header, a writer left idle is throughput lost for every store). Booking tighter (0.7
# of the pace, half the uploads ahead) doubled the refusals in bench/chain.py and drained no faster:
# the hub was already busy.
PACE = 1.0
AHEAD = 1.0
# Admitted uploads are worked on earliest due first (the databases' bulk places, hub/events.py), an
# upload due this many seconds per event after its body was read: a store's few fresh events go
# ahead of the reconnecting stores' batches of 200 that came up to 2 s before them, which is about
# all the work the gate lets in (DEFAULT_MAX_WAIT). First come, first served made them wait behind
# a storm's whole backlog (1.3-2 s at p50 in bench/chain.py), and the steady uploads queued at its
# end still waited after it (p99 1.3-1.9 s). A batch waits at most about 2 s more than in turn; by
# size alone (the fewest events first) the storm's batches waited past their stores' timeout while
# steady uploads kept coming (3,416 timeouts). Measured with the gate at 4, 3 and 2 s and a batch of
# 200 due after 1 or 2 s: 2 and 2 met every target of bench/chain.py in every run.
DUE_PER_EVENT = 0.01


@dataclass
class Ticket:
    """An admitted upload's place: its bytes held, and how much of it has counted as worked through."""
    size: int
    worked: float = 0.0


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
    refused upload the next place in it. `per_upload` is the time the hub was busy (uploads in
    progress) over the uploads it worked through meanwhile, both sums decaying with HALF_LIFE:
    - busy time only: the time the hub sat idle, waiting for the very stores it told to wait, would
      feed Retry-After on itself;
    - an upload counts as it goes, slice by slice (`progress`), not at its end: a burst of uploads
      admitted together and worked on in turn finishes few of them in its first second, and a
      pace per finished upload read that second as one upload's time (0.08 s against a real 0.02
      measured in bench/chain.py); the hundreds refused in it were booked up to 45 s ahead while
      the hub went idle.
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
    _busy: float = 0.0        # decayed seconds with an upload in progress
    _worked: float = 0.0      # decayed uploads worked through (parts of one as its slices commit)
    _ticked: float | None = None
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

    def admit(self, store_id: str, content_length: int | None) -> Ticket:
        """Take a place for an upload of `content_length` bytes (None: not declared), or raise the
        429/503 HubError (with its Retry-After) at once. Returns the ticket for `progress` and `done`."""
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
        self._tick()
        self.in_flight += 1
        self.bytes_held += size
        self.stores[store_id] = self.stores.get(store_id, 0) + 1
        self.m_in_flight.set(self.in_flight)
        self.m_bytes.set(self.bytes_held)
        return Ticket(size)

    def progress(self, ticket: Ticket, part: float) -> None:
        """`part` (0-1) more of the ticket's upload is worked through: a slice of its events committed."""
        self._tick()
        self._count(ticket, min(part, 1.0 - ticket.worked))

    def done(self, store_id: str, ticket: Ticket, *, finished: bool = True) -> None:
        """Give the place back; `finished`: the upload was worked through (what is left of it counts)."""
        self._tick()
        if finished:
            self._count(ticket, 1.0 - ticket.worked)
        self.in_flight -= 1
        self.bytes_held -= ticket.size
        left = self.stores.get(store_id, 1) - 1
        if left:
            self.stores[store_id] = left
        else:
            self.stores.pop(store_id, None)
        self.m_in_flight.set(self.in_flight)
        self.m_bytes.set(self.bytes_held)

    def _tick(self) -> None:
        """Decay the sums to now, adding the time since the last tick if uploads were in progress
        (in_flight only changes at a tick)."""
        now = self.clock()
        if self._ticked is not None and now > self._ticked:
            keep = 0.5 ** ((now - self._ticked) / HALF_LIFE)
            self._busy = self._busy * keep + (now - self._ticked if self.in_flight else 0.0)
            self._worked *= keep
        self._ticked = now if self._ticked is None else max(self._ticked, now)

    def _count(self, ticket: Ticket, part: float) -> None:
        if part <= 0:
            return
        ticket.worked += part
        self._worked += part
        if self._worked >= 0.5:  # not from a sliver of one upload
            self.per_upload = min(5.0, max(self._busy / self._worked, 0.001))
            self.m_per_upload.set(self.per_upload)

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
