"""Payment codes (付款码) for the till that asked for one: whole, in memory only, for about a minute.

A WeChat Pay or Alipay payment code pays whoever presents it first while it is fresh (about a
minute), so it is a bearer credential. The scan journal keeps it masked (edge/store/scans.py); the
whole code is kept here, in the scan router's memory, and handed only to the reader that asked:

1. the till, about to take a payment, asks (`POST /scans/payment-request`): its consumer name, the
   API token it asked with (the `requester`), optionally the scanner to take the code from;
2. the next payment code (from that scanner, if named) within REQUEST_TTL is claimed for the oldest
   such request; a payment code nobody asked for is not kept whole at all;
3. that consumer's reads (`GET /scans`, the WebSocket), on the same token, carry the whole code on
   that scan, until the consumer acknowledges past it or CODE_TTL after the scan.

The claim is made in the store's writer thread (inside the scan's transaction), the rest on the
event loop: one lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

CODE_TTL = 60.0      # seconds a claimed code stays readable by its till: about the code's own life
REQUEST_TTL = 60.0   # seconds a till's request waits for a code


@dataclass
class _Request:
    consumer: str
    requester: str
    scanner: str | None
    until: float


@dataclass
class _Held:
    consumer: str
    requester: str
    code: str
    until: float


class PaymentCodes:
    def __init__(self, *, code_ttl: float = CODE_TTL, request_ttl: float = REQUEST_TTL,
                 clock: Callable[[], float] = time.monotonic):
        self.code_ttl = code_ttl
        self.request_ttl = request_ttl
        self.clock = clock
        self._requests: list[_Request] = []
        self._held: dict[int, _Held] = {}
        self._lock = threading.Lock()

    def request(self, consumer: str, requester: str, scanner: str | None = None) -> float:
        """The till `consumer` (asking with the token `requester`) waits for a payment code; returns the
        seconds it waits. A second request of the same consumer replaces its first."""
        with self._lock:
            self._purge()
            self._requests = [r for r in self._requests if r.consumer != consumer]
            self._requests.append(_Request(consumer, requester, scanner, self.clock() + self.request_ttl))
            return self.request_ttl

    def claim(self, seq: int, scanner: str, code: str) -> str | None:
        """A payment code was stored as scan `seq`: held for the oldest request that takes it (its
        consumer is returned), else dropped (None)."""
        with self._lock:
            self._purge()
            for i, req in enumerate(self._requests):
                if req.scanner is None or req.scanner == scanner:
                    del self._requests[i]
                    self._held[seq] = _Held(req.consumer, req.requester, code, self.clock() + self.code_ttl)
                    return req.consumer
            return None

    def whole(self, seq: int, consumer: str, requester: str) -> str | None:
        """The whole code of scan `seq`, for the consumer and token it was claimed for only."""
        with self._lock:
            self._purge()
            held = self._held.get(seq)
            if held is None or held.consumer != consumer or held.requester != requester:
                return None
            return held.code

    def acked(self, consumer: str, seq: int) -> None:
        """The consumer has what it needed up to `seq`: its codes up to there are forgotten."""
        with self._lock:
            for key in [k for k, h in self._held.items() if h.consumer == consumer and k <= seq]:
                del self._held[key]

    @property
    def held(self) -> int:
        with self._lock:
            self._purge()
            return len(self._held)

    def _purge(self) -> None:
        now = self.clock()
        self._requests = [r for r in self._requests if r.until > now]
        for key in [k for k, h in self._held.items() if h.until <= now]:
            del self._held[key]
