"""Structured logs: one line per event, `key=value` pairs, to stderr for journald.

Under systemd (JOURNAL_STREAM set) each line starts with a <N> syslog priority so journald keeps
the level. Callers pass fields as `extra={"kv": {...}}`; secrets are never passed.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys

_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def _quote(value) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\n\t'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class LineFormatter(logging.Formatter):
    def __init__(self, journald: bool, tz: dt.tzinfo | None = None):
        super().__init__()
        self.journald = journald
        self.tz = tz

    def format(self, record: logging.LogRecord) -> str:
        # the store's time with its offset (2026-12-06T21:42:33+08:00): a line read next to a till's
        # receipt, or a hub's UTC log, cannot be mistaken by eight hours
        stamp = dt.datetime.fromtimestamp(record.created, self.tz or dt.timezone.utc)
        if self.tz is None:
            stamp = stamp.astimezone()  # the machine's own zone
        parts = [] if self.journald else [stamp.isoformat(timespec="seconds")]
        parts += [f"level={record.levelname.lower()}", f"logger={record.name}", f"msg={_quote(record.getMessage())}"]
        for key, value in (getattr(record, "kv", None) or {}).items():
            parts.append(f"{key}={_quote(value)}")
        if record.exc_info:
            parts.append("exc=" + _quote(self.formatException(record.exc_info)))
        line = " ".join(parts)
        if self.journald:
            line = f"<{_PRIORITY.get(record.levelno, 6)}>" + line
        return line


def _not_library_chatter(record: logging.LogRecord) -> bool:
    # python-escpos logs "Network printer enabled" and the like to the root logger at every connect
    return not (record.name == "root" and record.levelno < logging.WARNING and "escpos" in record.pathname)


def setup(level: str = "info", tz: dt.tzinfo | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_not_library_chatter)
    handler.setFormatter(LineFormatter(journald=bool(os.environ.get("JOURNAL_STREAM")), tz=tz))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log is one line per request: too much for journald on a busy till
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
