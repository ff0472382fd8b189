"""Log lines carry the store's time with its offset: read next to a receipt or the hub's UTC log, a line's
time cannot be mistaken by eight hours."""

from __future__ import annotations

import datetime as dt
import logging
from zoneinfo import ZoneInfo

from edge.core.log import LineFormatter


def line_at(moment: dt.datetime, **kw) -> str:
    record = logging.LogRecord("edge.test", logging.INFO, __file__, 1, "backup written", None, None)
    record.created = moment.timestamp()
    return LineFormatter(**kw).format(record)


def test_a_line_starts_with_the_store_time_and_its_offset():
    noon_utc = dt.datetime(2026, 12, 6, 12, 0, 5, tzinfo=dt.timezone.utc)
    line = line_at(noon_utc, journald=False, tz=ZoneInfo("Asia/Shanghai"))
    assert line.startswith("2026-12-06T20:00:05+08:00 level=info logger=edge.test "), line
    assert line_at(noon_utc, journald=False, tz=dt.timezone.utc).startswith("2026-12-06T12:00:05+00:00 ")


def test_without_a_zone_the_machine_zone_is_named_and_journald_keeps_its_own_time():
    line = line_at(dt.datetime(2026, 12, 6, 12, 0, 5, tzinfo=dt.timezone.utc), journald=False)
    stamp = line.split(" ", 1)[0]
    assert dt.datetime.fromisoformat(stamp).utcoffset() is not None, stamp
    assert line_at(dt.datetime.now(dt.timezone.utc), journald=True).startswith("<6>level=info ")
