"""DIR/hub.highwater: how the hub notices that its database was restored behind its back."""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path

from edge.core.clock import iso


class HighWater:
    """DIR/hub.highwater: the epoch and the highest change cursor and event row ever committed.

    Rewritten (temp file, fsync, os.replace) after each committing write that raised either, from
    one thread at a time; values only go up within an epoch."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        self.epoch = ""
        self.cursor = 0
        self.event_row = 0

    def load(self) -> dict | None:
        """The file's content; None if there is none; ValueError if it cannot be read."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ValueError(f"{self.path}: {exc}") from None
        if not (isinstance(data, dict) and isinstance(data.get("epoch"), str)
                and type(data.get("cursor")) is int and type(data.get("event_row")) is int):
            raise ValueError(f"{self.path}: not a high-water record")
        return data

    def reset(self, epoch: str, cursor: int, event_row: int) -> None:
        with self.lock:
            self.epoch, self.cursor, self.event_row = epoch, cursor, event_row
            self._write()

    def raise_to(self, cursor: int = 0, event_row: int = 0, epoch: str | None = None) -> None:
        with self.lock:
            if cursor <= self.cursor and event_row <= self.event_row and epoch in (None, self.epoch):
                return
            self.cursor, self.event_row = max(self.cursor, cursor), max(self.event_row, event_row)
            self.epoch = epoch or self.epoch
            self._write()

    def _write(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        record = {"epoch": self.epoch, "cursor": self.cursor, "event_row": self.event_row,
                  "written_at": iso(datetime.now(timezone.utc))}
        with open(tmp, "w", encoding="utf-8") as out:
            json.dump(record, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
