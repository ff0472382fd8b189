"""Restoring a backup made by backup.py in place of the store database.

Restoring refuses while any process has the database open (the daemon, but also a running backup or
`ledger verify`): every SQLite connection to a WAL database holds a shared POSIX lock on the "DMS"
byte (128) of the -shm file for as long as it is open, so failing to take that byte exclusively means
someone has it open. That does not depend on which port the daemon listens on, on the daemon being
responsive, or on /proc; it sees the daemon from the moment it opens the store until it closes it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.store import stock
from edge.store.backup import STAMP, fsync_dir, fsync_file, read_json, remove_if_exists, sha256_of, store_facts
from edge.store.migrations import MIGRATIONS

log = logging.getLogger("edge.store.restore")

SQLITE_MAGIC = b"SQLite format 3\x00"
SHM_DMS = 128  # SQLite's "dead man switch" byte in the -shm file (os_unix.c UNIX_SHM_DMS)


class RestoreRefused(Exception):
    """Restore did not happen; `code` is the exit status (1: the daemon runs, 2: the file is unusable)."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


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
    sidecar = read_json(path.with_suffix(".json"))
    if sidecar and sidecar.get("file") == path.name and sidecar.get("sha256") and sha256_of(path) != sidecar["sha256"]:
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
        facts = store_facts(conn)
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
        fsync_file(staging)
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
        remove_if_exists(Path(f"{db_path}-shm"))
        remove_if_exists(Path(f"{db_path}-wal"))
        remove_if_exists(Path(f"{db_path}-journal"))
        os.replace(staging, db_path)
        fsync_dir(db_path.parent)
    except BaseException:
        remove_if_exists(staging)
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
            facts = store_facts(conn)
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


def _copy_owner(reference: Path, target: Path) -> None:
    """Run as root, the restored file must still belong to the daemon's user (store-edge)."""
    st = reference.stat()
    if reference.is_file():
        with contextlib.suppress(OSError):
            os.chmod(target, st.st_mode & 0o7777)
    if os.geteuid() == 0:
        with contextlib.suppress(OSError):
            os.chown(target, st.st_uid, st.st_gid)
