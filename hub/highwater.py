"""DIR/hub.highwater: how the hub notices that its database was restored behind its back."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from concurrent.futures import Executor
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


class SharedWrites:
    """Raising the high-water mark from many committers at once with few file writes.

    Each write costs two fsyncs; one a committed upload, one at a time, was a queue of its own behind
    the writer. A caller returns only once a write covering its values is on disk, but callers that
    arrive while a write is in flight raise the wanted values together and share the next write:
    one write in flight, at most one pending, however many callers."""

    def __init__(self, highwater: HighWater, pool: Executor):
        self.highwater = highwater
        self.pool = pool  # the thread that does every write of the file
        self._wanted: tuple[int, int, str | None] = (0, 0, None)
        self._next: asyncio.Future | None = None  # settled by the write that will cover _wanted
        self._writing: asyncio.Task | None = None

    async def raise_to(self, cursor: int = 0, event_row: int = 0, epoch: str | None = None) -> None:
        """Return once the file covers these values; the write's OSError if it failed."""
        wanted_cursor, wanted_row, wanted_epoch = self._wanted
        # the later epoch wins, as it would written one after the other
        self._wanted = (max(wanted_cursor, cursor), max(wanted_row, event_row), epoch or wanted_epoch)
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        waiter = self._next
        if self._writing is None:
            self._writing = asyncio.create_task(self._write_pending())
        await asyncio.shield(waiter)  # a caller that gives up must not cancel the others' write

    async def _write_pending(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._next is not None:
                done, self._next = self._next, None
                wanted, self._wanted = self._wanted, (0, 0, None)
                try:
                    await loop.run_in_executor(self.pool, self.highwater.raise_to, *wanted)
                except asyncio.CancelledError:
                    done.cancel()
                    raise
                except Exception as exc:  # every waiter of this write hears it (OSError: logged, goes on)
                    done.set_exception(exc)
                else:
                    done.set_result(None)
        finally:
            if self._next is not None and not self._next.done():  # cancelled: nobody will write it
                self._next.cancel()
                self._next = None
            self._writing = None
