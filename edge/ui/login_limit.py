"""Wrong dashboard passwords, counted per account and per address, with a wait that doubles.

A few mistakes are free; after that each wrong password starts a wait (1 s, 2 s, 4 s ... up to 15 min)
during which that account, or anything from that address, is refused without checking a password, so
guessing costs time and the right password found by guessing does not open a session either. A
right password clears its account's count (not its address's: one known password must not buy a
guesser fresh tries on other accounts). Counts are in memory: a restart forgets them, which costs a
guesser a restart of the daemon, something a guesser on the LAN cannot do.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

ACCOUNT_FREE = 5     # wrong passwords for one account before the waits begin
ADDRESS_FREE = 20    # from one address, over all accounts (a shared till may mistype several names)
MAX_WAIT = 900.0     # seconds
FORGET = 3600.0      # a count with no new failure for this long starts over
MAX_KEYS = 10_000    # guessed names must not grow the table without bound


@dataclass
class _Count:
    failures: int = 0
    last: float = 0.0
    until: float = 0.0


def wait_after(failures: int, free: int) -> float:
    """Seconds of refusal after the `failures`-th wrong password (0 while still free)."""
    if failures < free:
        return 0.0
    return min(2.0 ** (failures - free), MAX_WAIT)


class LoginLimiter:
    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._counts: dict[tuple[str, str], _Count] = {}
        self._lock = threading.Lock()

    def _keys(self, name: str, address: str) -> tuple[tuple[tuple[str, str], int], ...]:
        return (("account", name.lower()), ACCOUNT_FREE), (("address", address), ADDRESS_FREE)

    def wait(self, name: str, address: str) -> float:
        """Seconds before this account may try again from this address (0: go ahead)."""
        now = self.clock()
        with self._lock:
            waits = [c.until - now for key, _ in self._keys(name, address) if (c := self._counts.get(key))]
        return max([0.0, *waits])

    def failed(self, name: str, address: str) -> tuple[int, float]:
        """Count a wrong password: (the account's failures, the wait it starts, 0 if none)."""
        now = self.clock()
        result = (0, 0.0)
        with self._lock:
            if len(self._counts) >= MAX_KEYS:
                self._forget(now)
            for key, free in self._keys(name, address):
                count = self._counts.get(key)
                if count is None or now - count.last > FORGET:
                    count = self._counts[key] = _Count()
                count.failures += 1
                count.last = now
                wait = wait_after(count.failures, free)
                count.until = max(count.until, now + wait)
                if key[0] == "account":
                    result = (count.failures, wait)
                elif wait > result[1]:
                    result = (result[0], wait)
        return result

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._counts.pop(("account", name.lower()), None)

    def _forget(self, now: float) -> None:
        stale = [k for k, c in self._counts.items() if now - c.last > FORGET or c.until <= now]
        for key in stale:
            del self._counts[key]
        if len(self._counts) >= MAX_KEYS:  # a flood of fresh names: keep the most recent half
            keep = sorted(self._counts.items(), key=lambda kc: kc[1].last)[MAX_KEYS // 2:]
            self._counts = dict(keep)
