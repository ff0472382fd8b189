"""The daemon's scheduled jobs (APScheduler, in the store's time zone): the nightly ledger check,
reconciliation with the cloud and backups. Each runs off the event loop where it reads or copies much,
and logs its failure instead of raising into the scheduler. The ledger check's and the backup's
outcome is recorded in the store (job_runs): a failure shows on /metrics, the dashboard and
`store-edge doctor` until the job next succeeds."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from edge.core import sqlite
from edge.core.clock import iso, utcnow
from edge.core.config import Config
from edge.core.sqlite import Store
from edge.store import backup, job_runs, stock
from sync.client import SyncError
from sync.engine import SyncEngine
from sync.reconcile import reconcile

log = logging.getLogger("edge.jobs")


def schedule(scheduler, store: Store, config: Config, engine: SyncEngine | None) -> None:
    scheduler.add_job(nightly_ledger_check, "cron", hour=3, minute=30, args=[store],
                      id="ledger-check", coalesce=True, misfire_grace_time=3600)
    if config.backup.enabled:
        if config.backup.every_hours is not None:
            trigger: dict[str, Any] = {"trigger": "interval", "seconds": config.backup.every_hours * 3600}
        else:
            hour, minute = config.backup.time_of_day
            trigger = {"trigger": "cron", "hour": hour, "minute": minute}
        scheduler.add_job(scheduled_backup, args=[store, config], id="backup", coalesce=True, max_instances=1,
                          misfire_grace_time=3600, **trigger)
    if engine is not None and config.cloud.reconcile_minutes:
        scheduler.add_job(reconcile_job, "interval", minutes=config.cloud.reconcile_minutes, args=[engine],
                          id="reconcile", coalesce=True, max_instances=1)


async def nightly_ledger_check(store: Store) -> None:
    """Check the ledger invariant once a night; a mismatch is an error the IT person must see."""
    try:
        # reads every move: on the long-job thread, so no request waits behind it or hits the read limit
        moves, mismatches = await store.read_long(stock.verify)
    except Exception as exc:  # noqa: BLE001 (a damaged page must be seen, not end in the scheduler's log)
        log.exception("ledger check could not run")
        await _record(store, "ledger_check", f"the check could not run: {exc}")
        return
    if mismatches:
        log.error("ledger check failed", extra={"kv": {"moves": moves, "mismatches": len(mismatches),
                                                       "first": str(mismatches[0])}})
        await _record(store, "ledger_check", f"{len(mismatches)} mismatch(es) in {moves} moves; first: "
                                             f"{mismatches[0]}")
    else:
        log.info("ledger check passed", extra={"kv": {"moves": moves}})
        await _record(store, "ledger_check", None)
    await store.write(sqlite.optimize)


async def _record(store: Store, job: str, error: str | None) -> None:
    try:
        await store.write(job_runs.record, job, iso(utcnow()), error)
    except Exception:  # noqa: BLE001 (a full disk can fail this too: the log line above still stands)
        log.exception("cannot record the job's outcome", extra={"kv": {"job": job}})


async def reconcile_job(engine: SyncEngine) -> None:
    try:
        result = await reconcile(engine.store, engine.client)
    except SyncError as exc:
        log.info("reconciliation postponed", extra={"kv": {"reason": str(exc)}})
        return
    log.info("reconciliation", extra={"kv": {"result": result["result"]}})


async def scheduled_backup(store: Store, config: Config) -> Path | None:
    """The backup job: a worker thread with its own read-only connection, so the event loop (and the
    store's writer) carry on; a failure is logged and recorded, never raised into the scheduler."""
    try:
        path = await asyncio.to_thread(backup.backup, store.path, config.backup_dir,
                                       keep=backup.Retention.of(config.backup),
                                       pages=backup.PAGES_PER_STEP, sleep=backup.STEP_SLEEP, tz=config.tz)
    except Exception as exc:  # noqa: BLE001 (a full disk must not stop the scheduler)
        log.error("backup failed", extra={"kv": {"error": str(exc), "folder": str(config.backup_dir)}})
        await _record(store, "backup", f"{exc} (folder {config.backup_dir})")
        return None
    await _record(store, "backup", None)
    return path
