"""Time stamps: stored in UTC (ISO 8601, milliseconds); the business day is the store's local date."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def business_date(moment: datetime, tz: ZoneInfo) -> str:
    return moment.astimezone(tz).date().isoformat()
