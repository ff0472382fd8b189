"""Typed pickup codes are rate-limited per till against guessing (shared/DESIGN.md section 7)."""

from __future__ import annotations

import threading
import time
from collections import deque

from edge.core.errors import InputError
from edge.core.refusals import refusal


class CodeLimiter:
    """Typed codes, per till: after `limit` wrong codes within `window` seconds, `lockout` seconds of refusal."""

    def __init__(self, limit: int = 5, window: float = 60.0, lockout: float = 60.0):
        self.configure(limit, window, lockout)
        self._failures: dict[str, deque] = {}
        self._locked_until: dict[str, float] = {}
        self._lock = threading.Lock()

    async def guard(self, key: str, code: str | None, run):
        """Await `run()`; when it checks a typed code: a locked till is refused, a wrong code counts."""
        if code is None:
            return await run()
        self.check(key)
        try:
            return await run()
        except InputError as exc:
            if exc.code == "bad_code":
                self.failed(key)
            raise

    def configure(self, limit: int, window: float, lockout: float) -> None:
        self.limit, self.window, self.lockout = limit, window, lockout

    def check(self, device: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            until = self._locked_until.get(device, 0.0)
        if now < until:
            raise refusal("rate_limited", "too many wrong pickup codes from this till",
                          retry_after_seconds=round(until - now))

    def failed(self, device: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            failures = self._failures.setdefault(device, deque())
            failures.append(now)
            while failures and failures[0] < now - self.window:
                failures.popleft()
            if len(failures) >= self.limit:
                self._locked_until[device] = now + self.lockout
                failures.clear()
