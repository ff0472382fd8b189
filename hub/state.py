"""The running hub: its database, epoch and high-water file, and the stores' open hint sockets.

The epoch lives in the database. DIR/hub.highwater records the highest change cursor and event row
the hub has committed; a database found below it at start was restored from an older copy, so the
hub starts a new epoch and every store resends and pulls again (protocol section 6). On PostgreSQL,
where several processes share the database, only that last check holds (see start()).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from aiohttp import WSCloseCode, web

from hub.admission import Admission
from hub.db import Conn, Database, SqliteDatabase
from hub.errors import sha256
from hub.highwater import HighWater, SharedWrites
from hub.metrics import HubMetrics
from hub.schema import HUB_MIGRATIONS
from protocol.fields import show

log = logging.getLogger(__name__)

SEND_TIMEOUT = 5.0                 # a hint that cannot be written in this time is dropped
AUTH_LOG_EVERY = 300.0             # one line per store (or address) and 5 minutes for refused tokens


def new_epoch() -> str:
    return "e-" + secrets.token_hex(6)


@dataclass
class Hub:
    data_dir: Path
    admin_token: str
    safety_buffer: int = 0
    stale_after: float = 600.0
    new_epoch: bool = False
    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
    chain: str = "chain-1"       # the chain this hub is the cloud of: `chn` of member certificates (docs/members.md)
    db: Database | None = None   # given (PostgreSQL), or SQLite in data_dir opened at start
    epoch: str = ""
    sockets: dict[str, set[web.WebSocketResponse]] = field(default_factory=dict)
    last_seen: dict[str, str] = field(default_factory=dict)
    auth_logged: dict[str, float] = field(default_factory=dict)
    admission: Admission = field(default_factory=Admission)
    metrics: HubMetrics = field(default_factory=HubMetrics)
    # SKUs found in the chain's catalog. Products are upserted, never removed, so a SKU found once is
    # in it for good, and an upload's slice looks up only the others: on PostgreSQL a round trip less
    catalog: set[str] = field(default_factory=set)

    def __post_init__(self):
        self.admin_hash = sha256(self.admin_token)
        self.highwater = HighWater(self.data_dir / "hub.highwater")
        self.hw_pool = ThreadPoolExecutor(1, thread_name_prefix="hub-highwater")
        self.hw_writes = SharedWrites(self.highwater, self.hw_pool)

    def now(self) -> datetime:
        return self.clock()

    # -- start and stop -------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.db is None:
            self.db = SqliteDatabase(self.data_dir / "hub.db", HUB_MIGRATIONS)
        await self.db.open()
        marks = await self.db.read(_marks)
        try:
            hw = await loop.run_in_executor(self.hw_pool, self.highwater.load)
            unreadable = None
        except ValueError as exc:
            hw, unreadable = None, str(exc)
        epoch, why = marks["epoch"], None
        has_data = marks["cursor"] or marks["event_row"]
        # On PostgreSQL several hub processes share the database, each with its own high-water file: a
        # process new to the database has none, and another may have changed the epoch meanwhile. Only
        # a database behind what this process itself committed tells of a restore (docs/hub-postgresql.md).
        shared = self.db.dialect == "postgresql"
        if hw is not None and (marks["cursor"] < hw["cursor"] or marks["event_row"] < hw["event_row"]):
            why = "the database is older than its high-water mark: restored from a backup?"
        elif unreadable and not shared:
            why = f"the high-water file cannot be read ({unreadable})"
        elif epoch is None:
            why = "first start"
        elif self.new_epoch:
            why = "--new-epoch"
        elif hw is None and has_data and not shared:
            why = "the high-water file is missing: the database may have been restored from a backup"
        elif hw is not None and hw["epoch"] != epoch and not shared:
            why = "the database's epoch differs from the high-water file's: restored from a backup?"
        if why == "first start":   # processes starting together on one new database agree on one
            old, epoch = None, await self.db.write(first_epoch, new_epoch())
        elif why is not None:
            old, epoch = epoch, new_epoch()
            await self.db.write(set_epoch, epoch)
        if why is not None:
            kv = {"epoch": epoch, "previous": old or "-", "why": why}
            if hw is not None:
                kv.update(db_cursor=marks["cursor"], hw_cursor=hw["cursor"], db_event_row=marks["event_row"],
                          hw_event_row=hw["event_row"])
            (log.info if why in ("first start", "--new-epoch") else log.warning)("new epoch", extra={"kv": kv})
        self.epoch = epoch
        await loop.run_in_executor(self.hw_pool, self.highwater.reset, epoch, marks["cursor"], marks["event_row"])
        log.info("hub store open", extra={"kv": {"database": self.db.where, "epoch": epoch,
                                                 "cursor": marks["cursor"], "stores": marks["stores"]}})

    async def stop(self) -> None:
        await self.close_sockets(None, WSCloseCode.GOING_AWAY, b"hub stopping")
        if self.db is not None:
            await self.db.close()
        self.hw_pool.shutdown(wait=True)
        log.info("hub store closed")

    # -- after a commit -------------------------------------------------------------------------
    async def committed(self, cursor: int = 0, event_row: int = 0, epoch: str | None = None) -> None:
        if cursor or event_row or epoch:
            try:
                await self.hw_writes.raise_to(cursor, event_row, epoch)  # shared with concurrent committers
            except OSError as exc:  # the write is committed: answer it; a restore may go unnoticed until fixed
                log.error("high-water file not written", extra={"kv": {"path": self.highwater.path,
                                                                       "error": str(exc)}})

    async def changed(self, *changes: tuple[str | None, int]) -> None:
        """After a commit that added changes, each (its store, None for every store; its cursor): hint
        their stores and raise the high-water mark at once. The hint does not wait for the file: a
        store that polls finds the change as soon as it is committed anyway, and on PostgreSQL the other
        processes hint their stores from NOTIFY without it. Waiting made an online order's push wait
        for the file's fsyncs on a disk busy with a reconnect storm (bench/chain.py)."""
        await asyncio.gather(self.committed(cursor=max(cursor for _, cursor in changes)),
                             *(self.notify(store_id, {"type": "changes", "cursor": cursor})
                               for store_id, cursor in changes))

    async def notify(self, store_id: str | None, message: dict) -> None:
        """Send a hint to every WebSocket of a store (None: of every store)."""
        targets = [ws for sid, group in list(self.sockets.items()) if store_id is None or sid == store_id
                   for ws in list(group) if not ws.closed]
        for ws in targets:
            try:
                await asyncio.wait_for(ws.send_json(message), SEND_TIMEOUT)
            except (ConnectionError, RuntimeError, asyncio.TimeoutError) as exc:
                log.info("hint not delivered", extra={"kv": {"error": type(exc).__name__}})

    async def close_sockets(self, store_id: str | None, code: int, message: bytes) -> None:
        for sid, group in list(self.sockets.items()):
            if store_id is None or sid == store_id:
                for ws in list(group):
                    await ws.close(code=code, message=message)

    def auth_refused(self, request: web.Request, key: str, why: str) -> None:
        """Log a refused token, at most once per key every AUTH_LOG_EVERY seconds."""
        moment = time.monotonic()
        if moment - self.auth_logged.get(key, -AUTH_LOG_EVERY) >= AUTH_LOG_EVERY:
            self.auth_logged[key] = moment
            log.warning("token refused", extra={"kv": {"path": show(request.path, 100), "why": why,
                                                       "remote": request.remote or "-"}})


HUB = web.AppKey("hub", Hub)


async def _marks(db: Conn) -> dict:
    row = await db.fetchrow("SELECT (SELECT value FROM meta WHERE key = 'epoch'), "
                            "(SELECT coalesce(max(cursor), 0) FROM changes), "
                            "(SELECT coalesce(max(event_row), 0) FROM events), (SELECT count(*) FROM stores)")
    return {"epoch": row[0], "cursor": row[1], "event_row": row[2], "stores": row[3]}


async def first_epoch(db: Conn, epoch: str) -> str:
    """The epoch of a database that had none: this one, or the one another process wrote first."""
    await db.execute("INSERT INTO meta (key, value) VALUES ('epoch', $1) ON CONFLICT (key) DO NOTHING", epoch)
    return await db.fetchval("SELECT value FROM meta WHERE key = 'epoch'")


async def set_epoch(db: Conn, epoch: str) -> None:
    await db.execute("INSERT INTO meta (key, value) VALUES ('epoch', $1) ON CONFLICT (key) DO UPDATE SET value = "
                     "excluded.value", epoch)
    if db.dialect == "postgresql":  # the other hub processes answer with it from now on
        await db.notify({"epoch": epoch})
