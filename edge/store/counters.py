"""What /metrics counts from the store, read incrementally: each scrape counts only the rows added
since the last one (a Tally), so a scrape stays cheap on a store with millions of rows."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from edge.store import job_runs, outbox
from edge.store.orders import OPEN_STATES

NO_MEMBER_ACTIVITY = (0, 0, 0, 0, 0)
SETTLED_JOB = "state IN ('printed', 'failed', 'expired') OR (state = 'uncertain' AND resolution IS NOT NULL)"


@dataclass
class Tally:
    """What was counted in the store up to a row (kept between scrapes; rebuilt after a restart)."""
    scans_upto: int = 0
    scans: dict = field(default_factory=dict)            # (source, kind) -> n
    sales_upto: int = 0
    sales: tuple = (0, 0)                                # count, total_fen
    returns_upto: int = 0
    returns: tuple = (0, 0)                              # count, refund_fen
    coupons_upto: int = 0
    coupons: dict = field(default_factory=dict)          # provisional (0/1) -> (count, discount_fen)
    members_upto: int = 0
    # "sale"/"return" -> (count, points earned, points spent, stored value fen, offline count): signed sums
    members: dict = field(default_factory=dict)
    jobs_frontier: int = 1                               # every job below it was settled or is in jobs_pending
    jobs_settled: dict = field(default_factory=dict)     # (kind, state) -> n, jobs below the frontier
    jobs_pending: dict = field(default_factory=dict)     # id -> kind: unresolved uncertain jobs below the frontier


def _tail_max(conn, table: str, key: str, upto: int) -> tuple[int, bool]:
    """The newest key now, and whether the table went back (a store restored under us: count afresh)."""
    newest = conn.execute(f"SELECT coalesce(max({key}), 0) FROM {table}").fetchone()[0]
    return newest, newest < upto


def _add(counts: dict, key, n) -> None:
    counts[key] = counts.get(key, 0) + n


def collect(conn: sqlite3.Connection, old: Tally) -> tuple[Tally, dict]:
    """On a reader thread, in one snapshot: the new tally and the gauges read from the store."""
    new = Tally()

    newest, reset = _tail_max(conn, "scans", "seq", old.scans_upto)
    base = 0 if reset else old.scans_upto
    new.scans = {} if reset else dict(old.scans)
    for source, kind, n in conn.execute("SELECT source, kind, count(*) FROM scans WHERE seq > ? AND seq <= ? "
                                        "GROUP BY source, kind", (base, newest)):
        _add(new.scans, (source, kind), n)
    new.scans_upto = newest

    for table, amount, attr in (("sales", "total_fen", "sales"), ("returns", "refund_fen", "returns")):
        upto = getattr(old, f"{attr}_upto")
        newest, reset = _tail_max(conn, table, "rowid", upto)
        count, fen = (0, 0) if reset else getattr(old, attr)
        n, s = conn.execute(f"SELECT count(*), coalesce(sum({amount}), 0) FROM {table} WHERE rowid > ? "
                            "AND rowid <= ?", (0 if reset else upto, newest)).fetchone()
        setattr(new, attr, (count + n, fen + s))
        setattr(new, f"{attr}_upto", newest)

    newest, reset = _tail_max(conn, "coupon_redemptions", "id", old.coupons_upto)
    new.coupons = {} if reset else dict(old.coupons)
    for provisional, n, s in conn.execute(
            "SELECT provisional, count(*), coalesce(sum(discount_fen), 0) FROM coupon_redemptions "
            "WHERE id > ? AND id <= ? GROUP BY provisional", (0 if reset else old.coupons_upto, newest)):
        count, fen = new.coupons.get(provisional, (0, 0))
        new.coupons[provisional] = (count + n, fen + s)
    new.coupons_upto = newest

    newest, reset = _tail_max(conn, "member_activity", "rowid", old.members_upto)
    new.members = {} if reset else dict(old.members)
    for kind, *sums in conn.execute(
            "SELECT CASE WHEN return_id IS NULL THEN 'sale' ELSE 'return' END, count(*), sum(points_earned), "
            "sum(points_spent), sum(stored_value_fen), sum(offline) FROM member_activity WHERE rowid > ? "
            "AND rowid <= ? GROUP BY 1", (0 if reset else old.members_upto, newest)):
        new.members[kind] = tuple(a + b for a, b in zip(new.members.get(kind, NO_MEMBER_ACTIVITY), sums))
    new.members_upto = newest

    jobs_open = _print_jobs(conn, old, new)

    pickups = conn.execute("SELECT count(*), coalesce(sum(provisional), 0), count(reversed_at) "
                           "FROM pickups").fetchone()
    orders = {state: 0 for state in OPEN_STATES}
    orders.update(conn.execute("SELECT state, count(*) FROM orders WHERE state IN ('received', 'accepted', "
                               "'ready') GROUP BY state").fetchall())
    return new, {"jobs_open": jobs_open, "pickups": tuple(pickups), "orders": orders, "queue": outbox.queue_status(conn),
                 "job_runs": job_runs.last_runs(conn)}


def _print_jobs(conn, old: Tally, new: Tally) -> dict:
    """Settled jobs (printed, failed, expired, uncertain and resolved) never change state again: those
    below the frontier (the oldest queued or printing job) are counted once. Unresolved uncertain jobs
    below it are remembered by id and looked at again each time (a person may confirm one)."""
    newest, reset = _tail_max(conn, "print_jobs", "id", old.jobs_frontier - 1)
    settled = {} if reset else dict(old.jobs_settled)
    pending = {} if reset else dict(old.jobs_pending)
    frontier = 1 if reset else old.jobs_frontier
    if pending:
        marks = ",".join("?" * len(pending))
        for job_id, kind, state, resolution in conn.execute(
                f"SELECT id, kind, state, resolution FROM print_jobs WHERE id IN ({marks})", tuple(pending)):
            if state != "uncertain" or resolution is not None:
                _add(settled, (kind, state), 1)
                del pending[job_id]
    moving = conn.execute("SELECT min(id) FROM print_jobs WHERE state IN ('queued', 'printing')").fetchone()[0]
    upto = moving if moving is not None else newest + 1  # index print_jobs_state: two seeks
    for kind, state, n in conn.execute(f"SELECT kind, state, count(*) FROM print_jobs WHERE id >= ? AND id < ? "
                                       f"AND ({SETTLED_JOB}) GROUP BY kind, state", (frontier, upto)):
        _add(settled, (kind, state), n)
    pending.update(conn.execute("SELECT id, kind FROM print_jobs WHERE state = 'uncertain' AND resolution IS NULL "
                                "AND id >= ? AND id < ?", (frontier, upto)).fetchall())
    new.jobs_frontier, new.jobs_settled, new.jobs_pending = upto, settled, pending

    finished = dict(settled)
    jobs_open: dict = {}
    for kind in pending.values():
        _add(jobs_open, (kind, "uncertain"), 1)
    for kind, state, unsettled, n in conn.execute(
            f"SELECT kind, state, NOT ({SETTLED_JOB}), count(*) FROM print_jobs WHERE id >= ? "
            "GROUP BY kind, state, 3", (upto,)):
        _add(jobs_open if unsettled else finished, (kind, state), n)
    return {"open": jobs_open, "finished": finished}
