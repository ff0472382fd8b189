"""Who writes and when: passed to every write so one transaction has one time and one device."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time
from zoneinfo import ZoneInfo

from edge.core.clock import MIDNIGHT, business_date, iso, utcnow


@dataclass(frozen=True)
class WriteContext:
    device: str     # the till's token name, "local" on loopback, "cli" for commands
    now: str        # UTC time stamp of the transaction
    day: str        # the store's business day (local date)


def make(device: str, tz: ZoneInfo, cutoff: time = MIDNIGHT) -> WriteContext:
    moment = utcnow()
    return WriteContext(device=device, now=iso(moment), day=business_date(moment, tz, cutoff))
