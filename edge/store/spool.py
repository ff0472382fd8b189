"""The durable print spool: jobs in SQLite, their states, and what the cloud learns about them.

States: queued → printing → printed; or printing → uncertain (cut off while being sent: a person
decides), queued → expired (waited longer than its kind's time-to-live), queued/printing → failed
(the document cannot be made, e.g. its sale is gone). Every function takes the connection of the
caller's transaction, so a sale and its receipt job, or an order and its ticket, commit together.

Jobs of online orders tell the cloud how they ended with a `print.result` event.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta

from edge.core.context import WriteContext
from edge.core.errors import InputError, NotFound
from edge.store import outbox

FINAL_STATES = ("printed", "uncertain", "failed", "expired")
ORDER_KINDS = ("order_ticket", "pickup_slip")  # the cloud hears how these ended
SYSTEM = "store-edge"  # created_by / operator of what the daemon does by itself


def _later(now: str, seconds: int) -> str:
    moment = datetime.fromisoformat(now.replace("Z", "+00:00")) + timedelta(seconds=seconds)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- routes ---------------------------------------------------------------------------------------

def set_routes(conn: sqlite3.Connection, routes: dict[str, tuple[str, int]], printers: list[str]) -> None:
    """Replace the routes: kind → (printer, ttl seconds). Queued jobs of a printer that is gone (removed
    or disabled in config.toml) move to their kind's printer; jobs for a printer named on purpose stay."""
    conn.execute("DELETE FROM print_routes")
    conn.executemany("INSERT INTO print_routes (kind, printer, ttl_seconds) VALUES (?, ?, ?)",
                     [(kind, printer, ttl) for kind, (printer, ttl) in routes.items()])
    conn.execute(f"UPDATE print_jobs SET printer = (SELECT printer FROM print_routes r WHERE r.kind = print_jobs.kind) "
                 f"WHERE state = 'queued' AND kind IN (SELECT kind FROM print_routes) "
                 f"AND printer NOT IN ({', '.join('?' * len(printers))})", printers)


def route(conn: sqlite3.Connection, kind: str) -> tuple[str, int] | None:
    row = conn.execute("SELECT printer, ttl_seconds FROM print_routes WHERE kind = ?", (kind,)).fetchone()
    return (row[0], row[1]) if row else None


# -- queueing -------------------------------------------------------------------------------------

def enqueue(conn: sqlite3.Connection, kind: str, key: str, payload: dict, ctx: WriteContext, *,
            printer: str | None = None, order_id: str | None = None, reprint_of: int | None = None,
            reprint: bool = False) -> dict | None:
    """Queue a job on its kind's printer (or the one named). None when no printer prints this kind.

    The same key queued twice gives the first job back: a replayed request never prints twice.
    """
    routed = route(conn, kind)
    if routed is None and printer is None:
        return None
    ttl = routed[1] if routed else 600
    conn.execute(
        "INSERT INTO print_jobs (key, kind, printer, payload, order_id, reprint_of, reprint, created_by, created_at, "
        "expires_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
        (key, kind, printer or routed[0], json.dumps(payload, ensure_ascii=False, separators=(",", ":")), order_id,
         reprint_of, int(reprint), ctx.device, ctx.now, _later(ctx.now, ttl), ctx.now))
    return get_job(conn, key=key)


def get_job(conn: sqlite3.Connection, job_id: int | None = None, *, key: str | None = None) -> dict:
    if key is not None:
        row = conn.execute("SELECT * FROM print_jobs WHERE key = ?", (key,)).fetchone()
    else:
        row = conn.execute("SELECT * FROM print_jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise NotFound("unknown_print_job", f"no print job {job_id if key is None else key}", field="job_id")
    return _job(row)


def _job(row: sqlite3.Row) -> dict:
    job = dict(row)
    job["payload"] = json.loads(job["payload"])
    job["reprint"] = bool(job["reprint"])
    job["needs_attention"] = job["state"] == "uncertain" and job["resolution"] is None
    return job


def list_jobs(conn: sqlite3.Connection, *, state: str | None = None, printer: str | None = None,
              kind: str | None = None, order_id: str | None = None, attention: bool = False, before: int | None = None,
              limit: int = 100) -> dict:
    where, args = [], []
    for column, value in (("state", state), ("printer", printer), ("kind", kind), ("order_id", order_id)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if attention:
        where.append("state = 'uncertain' AND resolution IS NULL")
    if before is not None:
        where.append("id < ?")
        args.append(before)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(f"SELECT * FROM print_jobs {clause} ORDER BY id DESC LIMIT ?", (*args, limit + 1)).fetchall()
    items = [_job(r) for r in rows[:limit]]
    return {"items": items, "next_before": items[-1]["id"] if len(rows) > limit else None}


# -- the worker's transitions ---------------------------------------------------------------------

def next_job(conn: sqlite3.Connection, printer: str, now: str) -> dict | None:
    """The oldest queued job of a printer that has not expired (a read: expiry is `expire_overdue`)."""
    row = conn.execute("SELECT * FROM print_jobs WHERE printer = ? AND state = 'queued' AND expires_at > ? "
                       "ORDER BY id LIMIT 1", (printer, now)).fetchone()
    return _job(row) if row else None


def overdue(conn: sqlite3.Connection, now: str) -> bool:
    return conn.execute("SELECT 1 FROM print_jobs WHERE state = 'queued' AND expires_at <= ? LIMIT 1",
                        (now,)).fetchone() is not None


def expire_overdue(conn: sqlite3.Connection, ctx: WriteContext) -> list[dict]:
    """Queued jobs past their time-to-live become 'expired' (listed, and told to the cloud)."""
    rows = conn.execute("SELECT * FROM print_jobs WHERE state = 'queued' AND expires_at <= ? ORDER BY id",
                        (ctx.now,)).fetchall()
    out = []
    for row in rows:
        error = row["last_error"] or "打印机一直不可用"
        out.append(_finish(conn, row["id"], "expired", ctx, error=f"超时未打印：{error}"))
    return out


def mark_printing(conn: sqlite3.Connection, job_id: int, ctx: WriteContext) -> bool:
    """queued → printing, one more attempt. False if someone else moved the job meanwhile."""
    cur = conn.execute("UPDATE print_jobs SET state = 'printing', attempts = attempts + 1, updated_at = ? "
                       "WHERE id = ? AND state = 'queued'", (ctx.now, job_id))
    return cur.rowcount == 1


def record_wait(conn: sqlite3.Connection, printer: str, reason: str, ctx: WriteContext) -> None:
    """The printer's queued jobs stay queued; why they wait is shown on each (paper out, offline)."""
    conn.execute("UPDATE print_jobs SET last_error = ?, updated_at = ? WHERE printer = ? AND state = 'queued' "
                 "AND last_error IS NOT ?", (reason, ctx.now, printer, reason))


def requeue(conn: sqlite3.Connection, job_id: int, reason: str, ctx: WriteContext) -> None:
    """printing → queued: nothing reached the printer (it could not be opened), so sending again is safe."""
    conn.execute("UPDATE print_jobs SET state = 'queued', last_error = ?, updated_at = ? "
                 "WHERE id = ? AND state = 'printing'", (reason, ctx.now, job_id))


def finish(conn: sqlite3.Connection, job_id: int, state: str, ctx: WriteContext, *, error: str | None = None,
           note: str | None = None) -> dict:
    """The worker ends an attempt. The job's last_error is that attempt's: an earlier wait or failed
    connection does not stay on a job that then printed (nor in what the cloud is told)."""
    if state not in FINAL_STATES:
        raise ValueError(f"{state!r} is not a final job state")
    return _finish(conn, job_id, state, ctx, error=error, note=note, keep_error=state != "printed")


def _finish(conn, job_id: int, state: str, ctx: WriteContext, *, error=None, note=None, resolution=None,
            operator=None, keep_error: bool = True) -> dict:
    conn.execute("UPDATE print_jobs SET state = ?, last_error = CASE WHEN ? THEN coalesce(?, last_error) ELSE ? END, "
                 "note = coalesce(?, note), resolution = coalesce(?, resolution), "
                 "resolved_by = coalesce(?, resolved_by), updated_at = ?, finished_at = ? WHERE id = ?",
                 (state, keep_error, error, error, note, resolution, operator, ctx.now, ctx.now, job_id))
    job = get_job(conn, job_id)
    _tell_cloud(conn, job, resolution or state, ctx)
    return job


def _tell_cloud(conn, job: dict, result: str, ctx: WriteContext) -> None:
    if job["kind"] not in ORDER_KINDS or not job["order_id"]:
        return
    outbox.emit(conn, "print.result", {
        "job_key": job["key"], "kind": job["kind"], "order_id": job["order_id"], "result": result,
        "printer": job["printer"], "attempts": job["attempts"], "error": job["last_error"], "at": ctx.now,
        "reprint": job["reprint"], "moves": []}, ctx.now)


def recover(conn: sqlite3.Connection, ctx: WriteContext) -> list[dict]:
    """At start: a job still 'printing' was cut off by a crash or power loss. It may have printed."""
    ids = [r[0] for r in conn.execute("SELECT id FROM print_jobs WHERE state = 'printing' ORDER BY id")]
    return [_finish(conn, i, "uncertain", ctx, error="store-edge 在发送途中停止：请确认是否已打印") for i in ids]


# -- what people do -------------------------------------------------------------------------------

def confirm(conn: sqlite3.Connection, job_id: int, printed: bool, operator: str, ctx: WriteContext) -> dict:
    """A person looked at an uncertain job: it printed, or it did not (then it is reprinted, marked 重打)."""
    job = get_job(conn, job_id)
    if job["state"] != "uncertain" or job["resolution"] is not None:
        raise InputError("not_uncertain", f"print job {job_id} is {job['state']}"
                         f"{' and already resolved' if job['resolution'] else ''}; only an unresolved uncertain "
                         "job can be confirmed", status=409)
    if printed:
        return {"job": _finish(conn, job_id, "printed", ctx, resolution="confirmed_printed", operator=operator),
                "reprint": None}
    return reprint(conn, job_id, operator, ctx)


def reprint(conn: sqlite3.Connection, job_id: int, operator: str, ctx: WriteContext,
            printer: str | None = None) -> dict:
    """A new job with the same content. Marked 重打 when the original printed, or may have."""
    job = get_job(conn, job_id)
    if job["state"] not in FINAL_STATES:
        raise InputError("job_not_finished", f"print job {job_id} is still {job['state']}; wait for it to finish",
                         status=409)
    count = conn.execute("SELECT count(*) FROM print_jobs WHERE reprint_of = ?", (job_id,)).fetchone()[0]
    original = job
    if job["state"] == "uncertain" and job["resolution"] is None:
        original = _finish(conn, job_id, "uncertain", ctx, resolution="reprinted", operator=operator)
    new = enqueue(conn, job["kind"], f"{job['key']}#{count + 1}", job["payload"],
                  WriteContext(operator, ctx.now, ctx.day), printer=printer or job["printer"],
                  order_id=job["order_id"], reprint_of=job_id, reprint=job["state"] in ("printed", "uncertain"))
    return {"job": original, "reprint": new}


def unprinted_orders(conn: sqlite3.Connection, received_before: str, limit: int = 100) -> list[dict]:
    """Open online orders received before a time whose ticket has not printed (the alert)."""
    rows = conn.execute(
        "SELECT o.id, o.number, o.state, o.received_at, "
        "(SELECT j.state || ':' || coalesce(j.last_error, '') FROM print_jobs j WHERE j.order_id = o.id "
        " AND j.kind = 'order_ticket' ORDER BY j.id DESC LIMIT 1) AS job "
        "FROM orders o WHERE o.state IN ('received', 'accepted', 'ready') AND o.received_at < ? "
        "AND NOT EXISTS (SELECT 1 FROM print_jobs j WHERE j.order_id = o.id AND j.kind = 'order_ticket' "
        "                AND j.state = 'printed') ORDER BY o.received_at LIMIT ?", (received_before, limit)).fetchall()
    out = []
    for r in rows:
        state, _, error = (r["job"] or "").partition(":")
        out.append({"order_id": r["id"], "number": r["number"], "state": r["state"], "received_at": r["received_at"],
                    "job_state": state or None, "last_error": error or None})
    return out


def counts(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """Jobs by printer and state (for the printers list and /metrics)."""
    out: dict[str, dict[str, int]] = {}
    for printer, state, n in conn.execute("SELECT printer, state, count(*) FROM print_jobs GROUP BY printer, state"):
        out.setdefault(printer, {})[state] = n
    return out
