"""Backups of the store database (restoring one: restore.py).

A backup is taken with SQLite's online backup API (never a file copy), a few pages at a time with a
short sleep between steps, from its own read-only connection: tills keep selling while it runs (in WAL
mode a reader never blocks the writer). The copy is written under a temporary name, switched to a
self-contained single file (journal_mode=DELETE), checked (`PRAGMA integrity_check` and the ledger
invariant, stock.verify), fsynced and renamed to `store-YYYYmmddTHHMMSS+ZZZZ.db` (the store's local time
and its offset from UTC, so IT reads the time the store knows and still cannot mistake it; names of older
versions, `store-YYYYmmddTHHMMSSZ.db` in UTC, are still listed, pruned and restored); a sidecar
`store-….json` records when, how big, its sha256, what the checks said, the highest
sale number and the outbox position. Then old backups are pruned (keep_last and/or keep_days).

CLI (edge/ops/backup.py): `store-edge backup [--to DIR]`, `store-edge restore FILE [--yes]`.
Exit codes: 0 done; 1 refused or failed (daemon running, backup failed, ledger mismatch in the copy);
2 unusable input (config error, the backup file is missing, corrupt or from a newer store-edge).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.core.config import BackupSection
from edge.store import db, stock

log = logging.getLogger("edge.store.backup")

NAME = re.compile(r"^store-(\d{8}T\d{6}(?:Z|[+-]\d{4}))(?:-(\d+))?\.db$")  # Z: the UTC names of 0.x
STAMP = "%Y%m%dT%H%M%S%z"  # 20261206T214233+0800; strptime reads the old ...Z with it too

PAGES_PER_STEP = 256   # 1 MiB at 4 KiB pages
STEP_SLEEP = 0.005     # seconds between steps, so the copy does not hog the disk
MAX_RESTARTS = 3       # a write by the daemon restarts a stepped copy; then take bigger steps


class BackupError(Exception):
    pass


@dataclass(frozen=True)
class Retention:
    keep_last: int | None = None
    keep_days: float | None = None

    @classmethod
    def of(cls, sec: BackupSection) -> Retention:
        return cls(sec.keep_last, sec.keep_days)


# -- taking a backup ----------------------------------------------------------------------------------

_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()


@contextlib.contextmanager
def _exclusive(dest_dir: Path):
    """One backup at a time per folder: threads of this process and other processes (CLI + daemon)."""
    with _locks_guard:
        lock = _locks.setdefault(dest_dir.resolve(), threading.Lock())
    with lock, open(dest_dir / ".backup.lock", "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def backup(db_path: str | Path, dest_dir: str | Path, *, keep: Retention | None = None,
           pages: int = PAGES_PER_STEP, sleep: float = STEP_SLEEP, now: dt.datetime | None = None,
           tz: dt.tzinfo | None = None) -> Path:
    """Back up db_path into dest_dir; return the new file. The sidecar JSON is next to it.

    Raises BackupError when the database cannot be read or the copy fails its integrity check (then
    nothing is left behind). A ledger mismatch does not raise: the copy is faithful, the mismatch is in
    the store itself; it is recorded in the sidecar (`ledger.ok` false) and logged as an error."""
    db_path, dest_dir = Path(db_path), Path(dest_dir)
    if not db_path.exists():
        raise BackupError(f"{db_path}: no database to back up")
    dest_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(dest_dir):
        started = time.monotonic()
        taken = (now or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
        final = _free_name(dest_dir, taken.astimezone(tz or dt.timezone.utc))
        tmp = dest_dir / f".{final.name}.tmp"
        remove_if_exists(tmp)
        try:
            steps, restarts = _copy(db_path, tmp, pages, sleep)
            info = _check_copy(tmp)
            fsync_file(tmp)
            info.update(file=final.name, taken_at=taken.strftime("%Y-%m-%dT%H:%M:%SZ"), source=str(db_path),
                        size=tmp.stat().st_size, sha256=sha256_of(tmp), steps=steps, restarts=restarts,
                        seconds=round(time.monotonic() - started, 3))
            if info["integrity"] != "ok":
                raise BackupError(f"the copy of {db_path} failed its integrity check: {info['integrity']}")
            os.replace(tmp, final)
            _write_json(final.with_suffix(".json"), info)
            fsync_dir(dest_dir)
        except BaseException:
            remove_if_exists(tmp)
            raise
        if not info["ledger"]["ok"]:
            log.error("backup: ledger check failed in the copy", extra={"kv": {
                "file": final.name, "mismatches": info["ledger"]["mismatches"],
                "first": info["ledger"]["first"]}})
        pruned = prune(dest_dir, keep, newest=final) if keep else []
        log.info("backup written", extra={"kv": {"file": str(final), "size": info["size"],
                                                 "seconds": info["seconds"], "pruned": len(pruned)}})
        return final


def _free_name(dest_dir: Path, taken: dt.datetime) -> Path:
    base = f"store-{taken.strftime(STAMP)}"
    candidate, n = dest_dir / f"{base}.db", 1
    while candidate.exists():
        n += 1
        candidate = dest_dir / f"{base}-{n}.db"
    return candidate


class _Restarted(Exception):
    pass


def _copy(db_path: Path, tmp: Path, pages: int, sleep: float) -> tuple[int, int]:
    """The online backup, in steps; returns (steps of the copy that completed, restarts).

    A write by another connection (the daemon's) restarts a stepped copy at its next step. After
    MAX_RESTARTS the step grows eightfold; the last try copies in one step, i.e. one snapshot, which
    in WAL mode still does not block the daemon's writer."""
    try:
        src = db.connect(db_path, readonly=True)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open {db_path}: {exc}") from exc
    try:
        step, restarts = pages, 0
        while True:
            remove_if_exists(tmp)
            dst = sqlite3.connect(str(tmp), isolation_level=None)
            state = {"remaining": None, "restarts": 0, "steps": 0}

            def progress(status, remaining, total, state=state):
                state["steps"] += 1
                if state["remaining"] is not None and remaining > state["remaining"]:
                    state["restarts"] += 1
                    if state["restarts"] > MAX_RESTARTS:
                        raise _Restarted
                state["remaining"] = remaining
                if status == sqlite3.SQLITE_OK and remaining > 0 and sleep > 0:
                    time.sleep(sleep)  # Python sleeps only on BUSY/LOCKED: give the disk to the tills

            try:
                src.backup(dst, pages=step, progress=progress, sleep=sleep)
                # a single file, whatever the source's mode: no -wal to lose next to a backup
                dst.execute("PRAGMA journal_mode = DELETE")
                return state["steps"] or 1, restarts + state["restarts"]
            except _Restarted:
                restarts += state["restarts"]
                step = -1 if step * 8 >= 65536 or step <= 0 else step * 8
                log.info("backup restarted by writes; taking bigger steps", extra={"kv": {"pages": step}})
            except sqlite3.Error as exc:
                raise BackupError(f"backup of {db_path} failed: {exc}") from exc
            finally:
                dst.close()
    finally:
        src.close()


def store_facts(conn: sqlite3.Connection) -> dict[str, Any]:
    """What a backup holds: schema version, sales, outbox position (shared by backup and restore)."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def one(sql, default=None):
        try:
            return conn.execute(sql).fetchone()[0]
        except sqlite3.Error:
            return default

    def state(key):
        if "sync_state" not in tables:
            return None
        row = conn.execute("SELECT value FROM sync_state WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    return {
        "schema_version": db.schema_version(conn),
        "sales": one("SELECT count(*) FROM sales", 0) if "sales" in tables else None,
        "max_sale_number": one("SELECT max(number) FROM sales") if "sales" in tables else None,
        "last_sale_at": one("SELECT max(created_at) FROM sales") if "sales" in tables else None,
        "outbox_max_seq": one("SELECT coalesce(max(seq), 0) FROM outbox", 0) if "outbox" in tables else None,
        "acked_seq": int(state("acked_seq") or 0),
        "seq_offset": int(state("seq_offset") or 0),
        "epoch": state("epoch"),
        "is_store": {"sales", "outbox", "stock_moves", "stock_balances"} <= tables,
    }


def _check_copy(path: Path) -> dict[str, Any]:
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        conn.execute("BEGIN")
        rows = [r[0] for r in conn.execute("PRAGMA integrity_check(20)")]
        integrity = "ok" if rows == ["ok"] else "; ".join(rows)
        facts = store_facts(conn)
        ledger: dict[str, Any] = {"ok": False, "moves": 0, "mismatches": 0, "first": None}
        if facts["is_store"]:
            moves, mismatches = stock.verify(conn)
            ledger = {"ok": not mismatches, "moves": moves, "mismatches": len(mismatches),
                      "first": str(mismatches[0]) if mismatches else None}
        conn.execute("ROLLBACK")
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"the copy cannot be read: {exc}") from exc
    finally:
        conn.close()
    facts.pop("is_store")
    return {"integrity": integrity, "ledger": ledger, **facts}


# -- retention ------------------------------------------------------------------------------------------

def listing(dest_dir: str | Path) -> list[tuple[dt.datetime, Path]]:
    """The backups in dest_dir, newest first (by the time in their name)."""
    out = []
    for path in Path(dest_dir).glob("store-*.db"):
        match = NAME.match(path.name)
        if match:
            taken = dt.datetime.strptime(match.group(1), STAMP)
            out.append((taken, int(match.group(2) or 1), path))
    out.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return [(taken, path) for taken, _, path in out]


def prune(dest_dir: str | Path, keep: Retention, *, newest: Path | None = None,
          now: dt.datetime | None = None) -> list[Path]:
    """Delete backups (and their sidecars) no rule keeps; return what was deleted.

    A backup is kept when it is one of the newest `keep_last`, OR younger than `keep_days`; the newest
    backup is always kept. With neither rule set, nothing is deleted."""
    if keep.keep_last is None and keep.keep_days is None:
        return []
    now = now or dt.datetime.now(dt.timezone.utc)
    deleted = []
    for index, (taken, path) in enumerate(listing(dest_dir)):
        kept = (index == 0 or path == newest
                or (keep.keep_last is not None and index < keep.keep_last)
                or (keep.keep_days is not None and now - taken < dt.timedelta(days=keep.keep_days)))
        if not kept:
            remove_if_exists(path)
            remove_if_exists(path.with_suffix(".json"))
            deleted.append(path)
    # a temp file left by a backup that was killed (older than a day: never one being written)
    for tmp in Path(dest_dir).glob(".store-*.db.tmp"):
        with contextlib.suppress(OSError):
            if time.time() - tmp.stat().st_mtime > 86400:
                tmp.unlink()
    return deleted


# -- files ----------------------------------------------------------------------------------------------

def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fsync_file(path)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, ensure_ascii=False, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_sidecar(backup_path: Path) -> dict | None:
    """What the backup's sidecar JSON recorded (None if it is missing or unreadable)."""
    return read_json(backup_path.with_suffix(".json"))


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def remove_if_exists(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
