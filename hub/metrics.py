"""The hub's own figures on /metrics (issue 13 part 5), beside the admission gate's (hub/admission.py:
uploads in flight, refused with Retry-After, abandoned).

Each figure is this process's: with several hub processes behind a load balancer, Prometheus adds
them up (`sum(rate(hub_events_total[1m]))`) or takes the worst (`max(hub_change_lag_seconds)`).

- `hub_stores_connected`, `hub_hint_sockets`: stores (and their sockets) with a hint WebSocket open
  on this process, counted at each scrape.
- `hub_events_total{status}`: events of the uploads this process worked on, by their answer
  (applied, duplicate, rejected), counted per committed slice, so an upload abandoned half-way counts
  what it committed. `rate(hub_events_total{status="applied"}[1m])` is events/s.
- `hub_change_lag_seconds`: over the stores with a hint socket open here, how old the oldest change
  is that one of them has not pulled yet: now minus its `created_at` (the hub's clock when the
  change was written, in the transaction that committed it). A store's position is the
  `next_cursor` of the last pull this process answered it; a store that has not pulled through this
  process is not counted. 0 when every connected store has everything. A store that is hinted but
  does not come for its changes (or whose pulls fail) makes it grow.
- `hub_change_delivery_seconds`: for each change handed to a store in a pull, the seconds from its
  `created_at` to that answer: the time the feed takes to reach stores (the hint, the store's pull).
  A pull from the feed's start (`after=0`: a new store, a new epoch) is left out: it hands out the
  whole history, whose age says nothing of delivery.
- `hub_database_up`: 1 if the last scrape or `GET /health` (hub/health.py) read the database in time.
- `process_*`: the process's memory, CPU time and open files against its limit (prometheus_client's
  ProcessCollector, from /proc/self): RSS against the 1 GB a process should stay under, file
  descriptors against LimitNOFILE (each hint socket holds one).

The lag's position is what this process answered, so behind a load balancer that sends a store's
pulls to another process than its hint socket, this process still sees the older position: route
each store to one process (docs/hub-operations.md: nginx `hash` on the store id) and the figure is
exact; otherwise it is an upper bound, and the delivery histogram (exact under any routing) is the
one to alert on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Awaitable, Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from hub.db import Conn

STATUSES = ("applied", "duplicate", "rejected")
DELIVERY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
STORES_PER_QUERY = 500   # two parameters each: well inside SQLite's and PostgreSQL's limits

Read = Callable[..., Awaitable[Any]]   # the hub's database read: read(fn, *args) runs fn(conn, *args)


def _moment(value: Any) -> datetime:
    """A change's created_at: ISO text (SQLite) or a timestamp (PostgreSQL's timestamptz)."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


async def oldest_unpulled(db: Conn, positions: list[tuple[str, int]]) -> Any:
    """The created_at of the oldest change above any store's position (store id, cursor), among the
    store's own changes and everyone's; None if there is none."""
    if not positions:
        return None
    # everyone's changes: the oldest one beyond the least advanced store
    found = [await db.fetchval("SELECT created_at FROM changes WHERE store_id IS NULL AND cursor > $1 "
                               "ORDER BY cursor LIMIT 1", min(cursor for _, cursor in positions))]
    for start in range(0, len(positions), STORES_PER_QUERY):
        part = positions[start:start + STORES_PER_QUERY]
        rows = ", ".join(f"(CAST(${2 * i + 1} AS TEXT), CAST(${2 * i + 2} AS BIGINT))" for i in range(len(part)))
        # each store's own changes: its first one above its position, one index search per store
        # (changes_store: store_id, cursor). As a join, PostgreSQL hashed the stores and read the whole
        # feed: 75 ms for 500 stores on 200,000 changes, against 1 ms this way.
        found.append(await db.fetchval(
            f"SELECT min((SELECT c.created_at FROM changes c WHERE c.store_id = v.column1 AND c.cursor > v.column2 "
            f"ORDER BY c.cursor LIMIT 1)) FROM (VALUES {rows}) AS v", *(value for pair in part for value in pair)))
    found = [_moment(value) for value in found if value is not None]
    return min(found, default=None)


class HubMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes, _cpu_seconds, _open_fds
        self.database_is_up = True
        self.positions: dict[str, int] = {}    # store id -> the next_cursor of its last pull answered here
        self.m_stores = Gauge("hub_stores_connected", "Stores with a hint WebSocket open on this process",
                              registry=self.registry)
        self.m_sockets = Gauge("hub_hint_sockets", "Hint WebSockets open on this process", registry=self.registry)
        self.m_events = Counter("hub_events", "Events of the uploads this process worked on, by their answer",
                                ["status"], registry=self.registry)
        for status in STATUSES:  # every series from the start: rate() needs the zero
            self.m_events.labels(status)
        self.m_lag = Gauge("hub_change_lag_seconds", "Age of the oldest change a store connected here has not "
                           "pulled yet (0: none)", registry=self.registry)
        self.m_database = Gauge("hub_database_up", "1 if the last check (a scrape, /health) read the database",
                                registry=self.registry)
        self.m_database.set(1)
        self.m_delivery = Histogram("hub_change_delivery_seconds", "Seconds from a change's creation to its "
                                    "handing to a store in a pull", buckets=DELIVERY_BUCKETS, registry=self.registry)

    def events(self, results: Iterable[dict]) -> None:
        """Count a committed slice's per-event answers."""
        counts = dict.fromkeys(STATUSES, 0)
        for result in results:
            counts[result["status"]] = counts.get(result["status"], 0) + 1
        for status, count in counts.items():
            if count:
                self.m_events.labels(status).inc(count)

    def database_up(self, up: bool) -> bool:
        """Record a health check's outcome; True if it differs from the one before (worth a log line)."""
        changed, self.database_is_up = self.database_is_up != up, up
        self.m_database.set(1 if up else 0)
        return changed

    def pulled(self, store_id: str, after: int, changes: list[dict], now: datetime) -> None:
        """A pull this process answered (the changes after `after` it handed out): the store's new
        position (the answer's next_cursor), and how long its changes took to reach it."""
        self.positions[store_id] = changes[-1]["cursor"] if changes else after
        if after:
            for change in changes:
                self.m_delivery.observe(max(0.0, (now - _moment(change["created_at"])).total_seconds()))

    async def refresh(self, sockets: dict[str, set], read: Read, now: datetime) -> None:
        """The figures read at a scrape: the open sockets, and the change lag from the database."""
        open_here = {store: sum(1 for ws in group if not ws.closed) for store, group in list(sockets.items())}
        connected = [store for store, count in open_here.items() if count]
        self.m_stores.set(len(connected))
        self.m_sockets.set(sum(open_here.values()))
        positions = [(store, self.positions[store]) for store in connected if store in self.positions]
        try:
            oldest = await read(oldest_unpulled, positions) if positions else None
        except Exception:  # whatever the engine raises: the other figures still answer, the lag is unknown
            self.m_lag.set(float("nan"))
            return
        self.m_lag.set(0.0 if oldest is None else max(0.0, (now - oldest).total_seconds()))
