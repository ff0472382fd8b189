"""Time stamps: stored in UTC (ISO 8601, milliseconds); the business day is the store's local date."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

MIDNIGHT = time(0)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch(stamp: str) -> float:
    """Seconds since the epoch of a stored time stamp (the inverse of `iso`)."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def business_date(moment: datetime, tz: ZoneInfo, cutoff: time = MIDNIGHT) -> str:
    """The local date whose business day `moment` is in: a store open past midnight whose day ends at its
    cut-off (01:00, say) counts a sale at 00:30 in the day before."""
    local = moment.astimezone(tz)
    return (local - timedelta(hours=cutoff.hour, minutes=cutoff.minute)).date().isoformat()


def day_bounds(day: str, tz: ZoneInfo, cutoff: time = MIDNIGHT) -> tuple[str, str]:
    """The UTC time stamps [start, end) of business day `day` (ISO date), for range reads on `*_at` columns."""
    first = date.fromisoformat(day)
    start = datetime.combine(first, cutoff, tzinfo=tz)
    end = datetime.combine(first + timedelta(days=1), cutoff, tzinfo=tz)
    return iso(start), iso(end)
