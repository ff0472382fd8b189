"""The last run of each scheduled job (the nightly ledger check, the backup), so that a failure is
seen where people look (/metrics, the dashboard, `store-edge doctor`), not only in the log."""

from __future__ import annotations

import sqlite3

JOBS = ("backup", "ledger_check")
ERROR_CHARS = 500


def record(conn: sqlite3.Connection, job: str, at: str, error: str | None = None) -> None:
    """One run of `job` at `at`: succeeded when `error` is None."""
    if job not in JOBS:
        raise ValueError(f"unknown job {job!r}")
    ok = error is None
    conn.execute(
        "INSERT INTO job_runs (job, last_run_at, ok, error, last_ok_at, failures) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (job) DO UPDATE SET last_run_at = excluded.last_run_at, ok = excluded.ok, "
        "error = excluded.error, last_ok_at = coalesce(excluded.last_ok_at, last_ok_at), "
        "failures = CASE WHEN excluded.ok THEN 0 ELSE failures + 1 END",
        (job, at, int(ok), None if ok else error[:ERROR_CHARS], at if ok else None, 0 if ok else 1))


def last_runs(conn: sqlite3.Connection) -> dict[str, dict]:
    """Each job that has run: last_run_at, ok, error, last_ok_at, failures (in a row)."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'job_runs'").fetchone() is None:
        return {}  # a store not yet migrated (the doctor reads it as it is)
    rows = conn.execute("SELECT job, last_run_at, ok, error, last_ok_at, failures FROM job_runs ORDER BY job")
    return {job: {"last_run_at": at, "ok": bool(ok), "error": error, "last_ok_at": last_ok, "failures": failures}
            for job, at, ok, error, last_ok, failures in rows}


def failing(conn: sqlite3.Connection) -> dict[str, dict]:
    return {job: run for job, run in last_runs(conn).items() if not run["ok"]}
