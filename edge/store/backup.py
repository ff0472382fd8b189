"""Backups of the store database, and restoring one.

A backup is taken with SQLite's online backup API (never a file copy), a few pages at a time with a
short sleep between steps, from its own read-only connection: tills keep selling while it runs (in WAL
mode a reader never blocks the writer). The copy is written under a temporary name, switched to a
self-contained single file (journal_mode=DELETE), checked (`PRAGMA integrity_check` and the ledger
invariant, stock.verify), fsynced and renamed to `store-YYYYmmddTHHMMSSZ.db`; a sidecar
`store-YYYYmmddTHHMMSSZ.json` records when, how big, its sha256, what the checks said, the highest
sale number and the outbox position. Then old backups are pruned (keep_last and/or keep_days).

Restoring refuses while any process has the database open (the daemon, but also a running backup or
`ledger verify`): every SQLite connection to a WAL database holds a shared POSIX lock on the "DMS"
byte (128) of the -shm file for as long as it is open, so failing to take that byte exclusively means
someone has it open. That does not depend on which port the daemon listens on, on the daemon being
responsive, or on /proc; it sees the daemon from the moment it opens the store until it closes it.

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
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.core.config import BackupSection
from edge.store import db
from edge.store import stock
from edge.store.migrations import MIGRATIONS

log = logging.getLogger("edge.store.backup")

NAME = re.compile(r"^store-(\d{8}T\d{6}Z)(?:-(\d+))?\.db$")
STAMP = "%Y%m%dT%H%M%SZ"
SQLITE_MAGIC = b"SQLite format 3\x00"
SHM_DMS = 128  # SQLite's "dead man switch" byte in the -shm file (os_unix.c UNIX_SHM_DMS)

PAGES_PER_STEP = 256   # 1 MiB at 4 KiB pages
STEP_SLEEP = 0.005     # seconds between steps, so the copy does not hog the disk
MAX_RESTARTS = 3       # a write by the daemon restarts a stepped copy; then take bigger steps


class BackupError(Exception):
    pass


class RestoreRefused(Exception):
    """Restore did not happen; `code` is the exit status (1: the daemon runs, 2: the file is unusable)."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


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
           pages: int = PAGES_PER_STEP, sleep: float = STEP_SLEEP, now: dt.datetime | None = None) -> Path:
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
        final = _free_name(dest_dir, taken)
        tmp = dest_dir / f".{final.name}.tmp"
        _remove(tmp)
        try:
            steps, restarts = _copy(db_path, tmp, pages, sleep)
            info = _check_copy(tmp)
            _fsync_file(tmp)
            info.update(file=final.name, taken_at=taken.strftime("%Y-%m-%dT%H:%M:%SZ"), source=str(db_path),
                        size=tmp.stat().st_size, sha256=_sha256(tmp), steps=steps, restarts=restarts,
                        seconds=round(time.monotonic() - started, 3))
            if info["integrity"] != "ok":
                raise BackupError(f"the copy of {db_path} failed its integrity check: {info['integrity']}")
            os.replace(tmp, final)
            _write_json(final.with_suffix(".json"), info)
            _fsync_dir(dest_dir)
        except BaseException:
            _remove(tmp)
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
            _remove(tmp)
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


def _facts(conn: sqlite3.Connection) -> dict[str, Any]:
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
        facts = _facts(conn)
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
            taken = dt.datetime.strptime(match.group(1), STAMP).replace(tzinfo=dt.timezone.utc)
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
            _remove(path)
            _remove(path.with_suffix(".json"))
            deleted.append(path)
    # a temp file left by a backup that was killed (older than a day: never one being written)
    for tmp in Path(dest_dir).glob(".store-*.db.tmp"):
        with contextlib.suppress(OSError):
            if time.time() - tmp.stat().st_mtime > 86400:
                tmp.unlink()
    return deleted


# -- is the store open? -------------------------------------------------------------------------------

def store_in_use(db_path: str | Path) -> bool:
    """True if some process has the database open (the daemon, a backup, `ledger verify`).

    SQLite keeps a shared POSIX lock on byte 128 of `<db>-shm` for as long as a connection is open
    in WAL mode; an exclusive lock on it is granted only when no other process holds one. (The locks
    of this process never conflict with themselves: call it without a connection of your own open.)
    Raises RestoreRefused(code 1) when it cannot tell (the -shm file cannot be opened for writing)."""
    shm = Path(f"{db_path}-shm")
    try:
        fd = os.open(shm, os.O_RDWR)
    except FileNotFoundError:
        return False  # no connection has it open in WAL mode (the last one to close removes -shm)
    except PermissionError as exc:
        raise RestoreRefused(f"cannot tell whether store-edge is running: {shm}: {exc.strerror}; run this "
                             "as the store-edge user (sudo -u store-edge ...) or as root", 1) from exc
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, SHM_DMS)
        except OSError:
            return True
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, SHM_DMS)
        return False
    finally:
        os.close(fd)


# -- restore ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Restored:
    db_path: Path
    aside: Path | None
    backup: dict[str, Any]
    before: dict[str, Any] | None


def check_backup(path: str | Path) -> dict[str, Any]:
    """Is this a usable backup? Returns its facts; raises RestoreRefused with a reason for a person."""
    path = Path(path)
    if not path.is_file():
        raise RestoreRefused(f"{path}: no such file")
    with open(path, "rb") as fh:
        head = fh.read(100)
    if len(head) < 100 or not head.startswith(SQLITE_MAGIC):
        raise RestoreRefused(f"{path} is not an SQLite database (damaged, or not a store-edge backup)")
    if Path(f"{path}-wal").exists():
        raise RestoreRefused(f"{path}-wal exists: {path} is a live database file, not a backup; use a file made "
                             "by `store-edge backup`")
    sidecar = _read_json(path.with_suffix(".json"))
    if sidecar and sidecar.get("file") == path.name and sidecar.get("sha256") and _sha256(path) != sidecar["sha256"]:
        raise RestoreRefused(f"{path} is corrupted: its sha256 differs from the one recorded in "
                             f"{path.with_suffix('.json').name} when it was taken")
    # immutable: nothing is written next to the backup (no -wal, -shm, journal), it is only read
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise RestoreRefused(f"{path} cannot be opened: {exc}") from exc
    try:
        try:
            rows = [r[0] for r in conn.execute("PRAGMA integrity_check(20)")]
        except sqlite3.DatabaseError as exc:
            raise RestoreRefused(f"{path} is corrupted: {exc}") from exc
        if rows != ["ok"]:
            raise RestoreRefused(f"{path} is corrupted (integrity check: {'; '.join(rows[:5])})")
        facts = _facts(conn)
        if facts["schema_version"] > len(MIGRATIONS):
            raise RestoreRefused(f"{path} is at schema version {facts['schema_version']}, this store-edge knows "
                                 f"only up to {len(MIGRATIONS)}: restore it with the newer store-edge")
        if not facts.pop("is_store"):
            raise RestoreRefused(f"{path} is an SQLite database but not a store-edge store (no sales/outbox/ledger)")
        moves, mismatches = stock.verify(conn)
        if mismatches:
            raise RestoreRefused(f"{path}: the ledger check fails ({len(mismatches)} SKU(s), first: "
                                 f"{mismatches[0]}): choose another backup")
        facts["moves"] = moves
    finally:
        conn.close()
    facts["taken_at"] = (sidecar or {}).get("taken_at")
    return facts


def restore(backup_path: str | Path, db_path: str | Path, *, now: dt.datetime | None = None) -> Restored:
    """Put a backup in place of db_path; the current database is kept as `<db>.before-restore-<time>`."""
    backup_path, db_path = Path(backup_path), Path(db_path)
    _refuse_if_open(db_path)
    facts = check_backup(backup_path)
    stamp = (now or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc).strftime(STAMP)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    staging = db_path.with_name(f".{db_path.name}.restore-{stamp}")
    shutil.copyfile(backup_path, staging)  # a finished, checked backup file; the live store is untouched
    try:
        _fsync_file(staging)
        before = None
        aside = None
        if db_path.exists():
            before = _settle_current(db_path)
            aside = db_path.with_name(f"{db_path.name}.before-restore-{stamp}")
            _refuse_if_open(db_path)  # again, just before the switch
            try:
                os.link(db_path, aside)  # store.db never goes missing: a daemon started now finds one or the other
            except OSError:  # no hard links on this file system: it is closed and checkpointed, copy it
                shutil.copy2(db_path, aside)
            if Path(f"{db_path}-wal").exists():  # the WAL could not be checkpointed: it belongs with `aside`
                os.replace(f"{db_path}-wal", f"{aside}-wal")
        _copy_owner(db_path if db_path.exists() else db_path.parent, staging)
        _remove(Path(f"{db_path}-shm"))
        _remove(Path(f"{db_path}-wal"))
        _remove(Path(f"{db_path}-journal"))
        os.replace(staging, db_path)
        _fsync_dir(db_path.parent)
    except BaseException:
        _remove(staging)
        raise
    return Restored(db_path, aside, facts, before)


def _refuse_if_open(db_path: Path) -> None:
    if store_in_use(db_path):
        raise RestoreRefused(f"{db_path} is open in another process: store-edge is running. Stop it first "
                             "(sudo systemctl stop store-edge), restore, then start it again. Nothing was changed.",
                             1)


def _settle_current(db_path: Path) -> dict[str, Any] | None:
    """Checkpoint the current database so it is one file when put aside; return its facts (None if
    it cannot be read: it may be why we restore)."""
    try:
        conn = sqlite3.connect(str(db_path), isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout = 1000")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            facts = _facts(conn)
            facts.pop("is_store")
            conn.execute("PRAGMA journal_mode = DELETE")  # removes -wal and -shm on close
            return facts
        finally:
            conn.close()
    except sqlite3.Error as exc:
        log.warning("the current database cannot be read", extra={"kv": {"error": str(exc)}})
        return None


def next_steps(restored: Restored, cloud_url: str) -> list[str]:
    """What happens next, for the person who restored (docs/sync-protocol.md 2.2, 2.3 and 6)."""
    b, before = restored.backup, restored.before
    wire = lambda facts, key: facts[key] + facts["seq_offset"]  # noqa: E731
    lines = [f"The store now holds {b['sales']} sale(s), up to sale number {b['max_sale_number'] or 0}"
             + (f" (last at {b['last_sale_at']})" if b["last_sale_at"] else "")
             + f"; its outbox ends at event {b['outbox_max_seq']}; when the backup was taken the cloud had "
             f"acknowledged up to event {b['acked_seq']}."]
    if before is not None:
        last = b["max_sale_number"] or 0
        lost_sales = (before["max_sale_number"] or 0) - last
        lost_events = before["outbox_max_seq"] - b["outbox_max_seq"]
        if lost_sales > 0:
            lines.append(f"The database put aside has {lost_sales} more sale(s) (numbers {last + 1}..."
                         f"{before['max_sale_number']}): they are not in the restored store, and new sales are "
                         f"numbered from {last + 1} again. Their goods left the shelf: count the stock "
                         "(a stocktake) before trusting the balances.")
        if lost_events > 0:
            lines.append(f"The database put aside has {lost_events} more event(s) in its outbox than the backup.")
    if not cloud_url:
        lines.append("No cloud is configured: every event stays in the outbox until one is.")
        return lines
    lines.append("Sync, when the daemon starts again (docs/sync-protocol.md 2.3):")
    if b["outbox_max_seq"] > b["acked_seq"]:
        lines.append(f"  - the store (re)sends its events from {b['acked_seq'] + 1}; those the cloud already has "
                     "are answered `duplicate` by their id and marked sent, nothing is counted twice;")
    cloud_has = wire(before, "acked_seq") if before is not None else None
    if cloud_has is not None and cloud_has > wire(b, "outbox_max_seq"):
        lines.append(f"  - the cloud already holds events up to at least {cloud_has} (sent before the restore, "
                     f"lost here): the store's next new event would reuse a number the cloud has taken, so the cloud answers "
                     f"409 seq_taken with its expected_seq (at least {cloud_has + 1}), and the store renumbers its unsent events to "
                     "start there (seq_offset); nothing is lost or overwritten in the cloud;")
    else:
        lines.append("  - if the cloud holds events this backup lacks (sent after it was taken), it answers 409 "
                     "seq_taken with the sequence it expects and the store renumbers its unsent events from there;")
    lines.append("  - if the cloud itself was restored too, its epoch changed: the store resends from the cloud's "
                 "next_seq and pulls the change feed again from the start (section 6).")
    lines.append("Sales made after the backup that the cloud already received stay in the cloud's records, "
                 "not in this store's; the database put aside keeps them for reference. Reconciliation then "
                 "corrects the cloud's copy of the balances to this store's (stock.corrected events).")
    return lines


# -- files ----------------------------------------------------------------------------------------------

def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        _fsync_file(path)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, ensure_ascii=False, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_sidecar(backup_path: Path) -> dict | None:
    """What the backup's sidecar JSON recorded (None if it is missing or unreadable)."""
    return _read_json(backup_path.with_suffix(".json"))


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _copy_owner(reference: Path, target: Path) -> None:
    """Run as root, the restored file must still belong to the daemon's user (store-edge)."""
    st = reference.stat()
    if reference.is_file():
        with contextlib.suppress(OSError):
            os.chmod(target, st.st_mode & 0o7777)
    if os.geteuid() == 0:
        with contextlib.suppress(OSError):
            os.chown(target, st.st_uid, st.st_gid)

