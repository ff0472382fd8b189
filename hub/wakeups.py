"""Hints for what another hub process committed (several hub processes on one PostgreSQL database).

A change committed through process A is NOTIFYed (hub/changes.py); process B hears it
(PostgresDatabase.listen) and hints the stores connected to B. Notices are coalesced per store for
COALESCE seconds, the highest cursor kept: a burst of orders for one store is one hint. A hint lost on
the way (B was reconnecting to the database) is harmless: stores poll the feed anyway (protocol 3.4).
"""

from __future__ import annotations

import asyncio
import logging

from hub.changes import feed_cursor
from hub.state import Hub

log = logging.getLogger(__name__)

COALESCE = 0.05   # seconds notices for one store are gathered before its hint is sent


async def hello_all(hub: Hub) -> None:
    """Every connected store learns the hub's epoch (and its feed's cursor) at once."""
    for store_id in list(hub.sockets):
        cursor = await hub.db.read(feed_cursor, store_id)
        await hub.notify(store_id, {"type": "hello", "epoch": hub.epoch, "cursor": cursor})


class Wakeups:
    def __init__(self, hub: Hub, delay: float = COALESCE):
        self.hub, self.delay = hub, delay
        self.pending: dict[str | None, int] = {}   # store (None: every store) -> highest cursor heard
        self.flushing: asyncio.Task | None = None

    async def notice(self, message: dict) -> None:
        if "epoch" in message:
            if message["epoch"] != self.hub.epoch:
                log.warning("new epoch", extra={"kv": {"epoch": message["epoch"], "previous": self.hub.epoch,
                                                       "why": "set by another hub process"}})
                self.hub.epoch = message["epoch"]
                await self.hub.committed(epoch=message["epoch"])
                await hello_all(self.hub)
            return
        store_id, cursor = message.get("store_id"), message.get("cursor")
        if not isinstance(cursor, int) or (store_id is not None and store_id not in self.hub.sockets):
            return   # no socket of that store here: nobody to wake
        self.pending[store_id] = max(self.pending.get(store_id, 0), cursor)
        if self.flushing is None:
            self.flushing = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        await asyncio.sleep(self.delay)
        pending, self.pending, self.flushing = self.pending, {}, None
        for store_id, cursor in pending.items():
            await self.hub.notify(store_id, {"type": "changes", "cursor": cursor})
