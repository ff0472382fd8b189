"""Backups (SQLite's online backup API) and restore, with the real daemon taking sales meanwhile.

(a) a backup taken while tills post sales restores to a store that passes `ledger verify` and holds
    every sale acknowledged (201) before the backup began; the daemon starts on it and sells on;
(b) restore refuses while the daemon runs and changes nothing, and works once it is stopped;
(c) retention keeps the newest keep_last and those younger than keep_days;
(d) a corrupted (or foreign, or newer) backup is refused with a clear message, the store untouched;
(e) the scheduled job writes a backup on a worker thread while the event loop keeps running.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import hashlib
import http.client
import json
import random
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers_daemon import REPO, Daemon, child_env, request, run_cli, write_config
from test_crash import make_sale, seed_store

from edge.core import config as config_mod
from edge.core.config import BackupSection
from edge.core.context import WriteContext
from edge.core.schemas import AdjustmentIn
from edge.ops import backup as backup_cmd
from edge.services import jobs
from edge.store import backup as bk
from edge.store import db, stock
from edge.store.restore import store_in_use

TILLS = 6
DEADLINE = 30.0


# -- helpers ------------------------------------------------------------------------------------------

def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ns(config: Path, **kw) -> argparse.Namespace:
    return argparse.Namespace(config=str(config), **kw)


class Tills:
    """Tills posting sales with Idempotency-Keys; `acked` maps key -> sale id once a 201 came back."""

    def __init__(self, port: int):
        self.port = port
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked: dict[str, str] = {}
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._till, args=(n,), daemon=True) for n in range(TILLS)]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(DEADLINE)

    def snapshot(self) -> dict[str, str]:
        with self.lock:
            return dict(self.acked)

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + DEADLINE
        while len(self.snapshot()) < count:
            assert not self.errors, self.errors[:3]
            assert time.monotonic() < deadline, f"only {len(self.acked)} sales acknowledged"
            time.sleep(0.01)

    def _till(self, no: int) -> None:
        rng = random.Random(f"backup-{no}")
        n = 0
        while not self.stop.is_set():
            key = f"bk-till{no}-{n}"
            n += 1
            try:
                status, body, resp = request(self.port, "POST", "/api/v1/sales", make_sale(rng),
                                             {"Idempotency-Key": key}, timeout=DEADLINE)
            except (OSError, http.client.HTTPException) as exc:
                self.errors.append(f"{key}: {exc!r}")
                return
            if status != 201:
                self.errors.append(f"{key}: {status} {body}")
                return
            with self.lock:
                self.acked[key] = body["sale"]["id"]


def keys_in(db_path: Path) -> dict[str, str]:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return {key: json.loads(resp)["sale"]["id"]
                for key, resp in conn.execute("SELECT key, response FROM idempotency_keys")}
    finally:
        conn.close()


def sale_ids(db_path: Path) -> set[str]:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return {r[0] for r in conn.execute("SELECT id FROM sales")}
    finally:
        conn.close()


@pytest.fixture
def daemon(tmp_path):
    data_dir = tmp_path / "data"
    seed_store(data_dir / "store.db")
    d = Daemon(tmp_path / "config.toml", data_dir, tmp_path / "daemon.log", store_id="backup-test")
    try:
        yield d
    finally:
        d.stop_quietly()


# -- (a) a backup under load restores to a sound store with every acknowledged sale -----------------

def test_backup_under_load_restores_with_every_acknowledged_sale(daemon, tmp_path):
    daemon.start(ready_timeout=DEADLINE)
    db_path, config = daemon.data_dir / "store.db", daemon.config_path
    backups = tmp_path / "backups"
    with Tills(daemon.port) as tills:
        tills.wait_for(20)
        before_first = tills.snapshot()
        # tiny steps with pauses: the daemon's writes restart the copy, which then takes bigger steps
        first = bk.backup(db_path, backups, pages=2, sleep=0.002)
        tills.wait_for(len(tills.snapshot()) + 20)
        before_second = tills.snapshot()
        # the CLI, from another process, while the daemon sells
        cli = subprocess.run([sys.executable, "-m", "edge.ops.backup", "backup", "--config", str(config),
                              "--to", str(backups)], capture_output=True, text=True, timeout=DEADLINE,
                             env=child_env(), cwd=REPO)
        assert cli.returncode == 0, cli.stdout + cli.stderr
        assert "backup written" in cli.stdout
        second = Path(cli.stdout.split("backup written: ")[1].split(" (")[0])
        tills.wait_for(len(tills.snapshot()) + 10)  # and sales go on after it
    assert not tills.errors, tills.errors[:3]
    all_acked = tills.snapshot()
    assert daemon.terminate() == 0, daemon.log_tail()

    for path, acked in ((first, before_first), (second, before_second)):
        info = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        assert info["integrity"] == "ok" and info["ledger"]["ok"], info
        assert info["sha256"] == sha(path) and info["size"] == path.stat().st_size
        assert info["max_sale_number"] >= len(acked) and info["outbox_max_seq"] > len(acked)
        assert not Path(f"{path}-wal").exists() and not Path(f"{path}-journal").exists()  # one file
        in_copy = keys_in(path)
        missing = {k: v for k, v in acked.items() if in_copy.get(k) != v}
        assert not missing, f"{path.name}: {len(missing)} sales acknowledged before the backup are missing"
    assert len(keys_in(second)) < len(all_acked)  # the backups really were taken mid-load

    # restore the first one (the daemon is stopped) and check it as the store
    before_restore = sale_ids(db_path)
    out = run_restore(config, first, capsys=None)
    assert out.code == 0, out.text
    assert "restored" in out.text and "before-restore-" in out.text
    result = run_cli("ledger", "verify", config=config)
    assert result.returncode == 0 and "ledger verify OK" in result.stdout, result.stdout + result.stderr
    restored = keys_in(db_path)
    assert all(restored.get(k) == v for k, v in before_first.items())
    assert sale_ids(db_path) < before_restore  # later sales are not in it...
    asides = list(daemon.data_dir.glob("store.db.before-restore-*"))
    assert len(asides) == 1 and sale_ids(asides[0]) == before_restore  # ...they are in the aside copy
    assert not Path(f"{db_path}-wal").exists() and not Path(f"{db_path}-shm").exists()
    assert "are numbered from" in out.text and "No cloud is configured" in out.text

    # the daemon runs on the restored store and numbers the next sale after the backup's last one
    daemon.start(ready_timeout=DEADLINE)
    numbers = sqlite3.connect(f"file:{first}?mode=ro", uri=True)
    last = numbers.execute("SELECT max(number) FROM sales").fetchone()[0]
    numbers.close()
    status, body, _ = request(daemon.port, "POST", "/api/v1/sales", make_sale(random.Random(1)),
                              {"Idempotency-Key": "after-restore"})
    assert status == 201 and body["sale"]["number"] == last + 1, body
    assert daemon.terminate() == 0


@dataclasses.dataclass
class Out:
    code: int
    text: str


def run_restore(config: Path, file: Path, capsys=None) -> Out:
    """`store-edge restore FILE` in this process (the daemon is another process)."""
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        code = backup_cmd.restore_run(ns(config, file=str(file)))
    return Out(code, buf.getvalue())


# -- (b) restore refuses while the daemon runs ---------------------------------------------------------

def test_restore_refuses_while_the_daemon_runs(daemon, tmp_path):
    db_path, config = daemon.data_dir / "store.db", daemon.config_path
    good = bk.backup(db_path, tmp_path / "backups")
    assert not store_in_use(db_path)
    daemon.start(ready_timeout=DEADLINE)
    assert store_in_use(db_path)
    status, _, _ = request(daemon.port, "POST", "/api/v1/sales", make_sale(random.Random(2)),
                           {"Idempotency-Key": "before"})
    assert status == 201
    sales = sale_ids(db_path)

    def files():  # -shm is SQLite's shared memory: readers write their marks into it, only its inode counts
        return {p.name: (p.stat().st_ino,) + ((p.stat().st_size, p.stat().st_mtime_ns) if p.suffix != ".db-shm"
                                              and not p.name.endswith("-shm") else ())
                for p in daemon.data_dir.iterdir()}
    before = files()

    out = run_restore(config, good)
    assert out.code == 1 and "store-edge is running" in out.text and "Nothing was changed" in out.text, out.text
    assert files() == before
    assert sale_ids(db_path) == sales
    status, _, _ = request(daemon.port, "GET", "/api/v1/health")
    assert status == 200  # the daemon did not notice

    assert daemon.terminate() == 0
    assert not store_in_use(db_path)
    out = run_restore(config, good)
    assert out.code == 0, out.text
    assert sale_ids(db_path) == set() and len(sales) == 1


def test_store_in_use_sees_any_open_connection(tmp_path):
    db_path = tmp_path / "store.db"
    db.open_store_db(db_path).close()
    holder = subprocess.Popen([sys.executable, "-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
                               "c.execute('PRAGMA journal_mode=WAL'); c.execute('SELECT 1 FROM sqlite_master')."
                               "fetchall(); print('open', flush=True); sys.stdin.read()", str(db_path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        assert store_in_use(db_path)
    finally:
        holder.communicate("", timeout=DEADLINE)
    assert not store_in_use(db_path)


# -- (c) retention -----------------------------------------------------------------------------------

def test_retention_keeps_the_right_files(tmp_path):
    src = tmp_path / "store.db"
    db.open_store_db(src).close()
    dest = tmp_path / "backups"
    now = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.timezone.utc)
    ages_h = [0, 5, 30, 47, 49, 100, 200]  # hours before `now`
    made = [bk.backup(src, dest, now=now - dt.timedelta(hours=h)) for h in reversed(ages_h)]
    same_second = bk.backup(src, dest, now=now)  # a second backup in the same second gets "-2"
    assert same_second.name == "store-20261122T120000+0000-2.db"  # no zone given: UTC, and it says so
    (dest / "notes.txt").write_text("not a backup", encoding="utf-8")
    names = lambda: sorted(p.name for p in dest.glob("store-*.db"))  # noqa: E731
    name = lambda h: f"store-{(now - dt.timedelta(hours=h)).strftime('%Y%m%dT%H%M%S+0000')}.db"  # noqa: E731
    assert len(names()) == 8 and all(p.with_suffix(".json").exists() for p in made)

    # keep_last 5: the newest five (the "-2" one is the newest)
    assert len(bk.prune(dest, bk.Retention(keep_last=5), now=now)) == 3
    assert names() == sorted([same_second.name] + [name(h) for h in (0, 5, 30, 47)])
    # keep_days 2 (48 h) OR keep_last 1: the 49 h old one is already gone; the 47 h one stays
    assert bk.prune(dest, bk.Retention(keep_last=1, keep_days=2), now=now) == []
    # keep_days 1: only those younger than 24 h
    bk.prune(dest, bk.Retention(keep_days=1), now=now)
    assert names() == sorted([same_second.name, name(0), name(5)])
    # everything older than the rules, yet the newest backup always stays
    bk.prune(dest, bk.Retention(keep_days=1), now=now + dt.timedelta(days=30))
    assert names() == [same_second.name]
    # sidecars go with their backups; other files are left alone
    assert sorted(p.name for p in dest.glob("store-*.json")) == [same_second.with_suffix(".json").name]
    assert (dest / "notes.txt").exists()
    # no rule: nothing is deleted; backup() applies the retention it is given
    assert bk.prune(dest, bk.Retention()) == []
    newest = bk.backup(src, dest, keep=bk.Retention(keep_last=1), now=now + dt.timedelta(days=31))
    assert names() == [newest.name]


# -- (d) a corrupted backup is refused ---------------------------------------------------------------

@pytest.fixture
def store_config(tmp_path):
    data_dir = tmp_path / "data"
    seed_store(data_dir / "store.db")
    return write_config(tmp_path / "config.toml", data_dir, 8470, store_id="backup-test"), data_dir / "store.db"


def test_backup_names_carry_the_store_time_and_offset_and_old_utc_names_still_count(tmp_path):
    from zoneinfo import ZoneInfo  # noqa: PLC0415

    from edge.store import restore as restore_mod  # noqa: PLC0415

    src = tmp_path / "store.db"
    db.open_store_db(src).close()
    dest = tmp_path / "backups"
    noon = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.timezone.utc)
    made = bk.backup(src, dest, now=noon, tz=ZoneInfo("Asia/Shanghai"))
    assert made.name == "store-20261122T200000+0800.db"  # 20:00 in the store, 12:00 UTC
    # a backup written by an older version: named in UTC with a Z, an hour earlier ("2026...T11" sorts
    # before "2026...T20" as text too, so take one that text order would get wrong: 23:00 UTC the day before)
    old = dest / "store-20261121T230000Z.db"
    old.write_bytes(made.read_bytes())
    old.with_suffix(".json").write_bytes(made.with_suffix(".json").read_bytes())
    listed = [(taken.astimezone(dt.timezone.utc), path.name) for taken, path in bk.listing(dest)]
    assert listed == [(noon, made.name), (noon - dt.timedelta(hours=13), old.name)]
    restore_mod.check_backup(old)  # the old name is still a backup restore takes
    restored = restore_mod.restore(old, tmp_path / "live.db", now=noon)
    assert restored.db_path.exists()
    assert bk.prune(dest, bk.Retention(keep_last=1), now=noon) == [old]


def test_corrupted_backup_is_refused_and_the_store_is_untouched(store_config, tmp_path):
    config, db_path = store_config
    good = bk.backup(db_path, tmp_path / "backups")
    original = sha(db_path)

    def refused(path: Path, *words: str) -> None:
        out = run_restore(config, path)
        assert out.code == 2 and "restore refused" in out.text, out.text
        for word in words:
            assert word in out.text, out.text
        assert sha(db_path) == original and not list(db_path.parent.glob("*before-restore*"))
        assert not list(db_path.parent.glob(".store.db.restore-*"))

    # bytes flipped inside the file: the sidecar's sha256 catches it
    flipped = tmp_path / "flipped" / good.name
    flipped.parent.mkdir()
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))
    (flipped.parent / good.with_suffix(".json").name).write_bytes(good.with_suffix(".json").read_bytes())
    refused(flipped, "corrupted", "sha256")

    # without a sidecar: b-tree pages overwritten, found by the integrity check
    damaged = tmp_path / "damaged.db"
    data = bytearray(good.read_bytes())
    page = 4096
    for start in range(page, len(data), page * 2):
        data[start:start + 64] = b"\xa5" * 64
    damaged.write_bytes(bytes(data))
    refused(damaged, "corrupted")

    # truncated, not SQLite at all, a missing file
    truncated = tmp_path / "truncated.db"
    truncated.write_bytes(good.read_bytes()[:50])
    refused(truncated, "not an SQLite database")
    text = tmp_path / "notes.db"
    text.write_text("备份 " * 100, encoding="utf-8")
    refused(text, "not an SQLite database")
    refused(tmp_path / "nothing.db", "no such file")

    # a backup from a newer store-edge
    newer = tmp_path / "newer.db"
    newer.write_bytes(good.read_bytes())
    conn = sqlite3.connect(newer)
    conn.execute(f"PRAGMA user_version = {len(db.MIGRATIONS) + 1}")
    conn.close()
    refused(newer, "schema version", "newer store-edge")

    # an SQLite database that is not a store
    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    refused(foreign, "not a store-edge store")

    # a store whose ledger does not add up
    broken = tmp_path / "broken.db"
    broken.write_bytes(good.read_bytes())
    conn = sqlite3.connect(broken)
    conn.execute("UPDATE stock_balances SET on_hand = on_hand + 1 WHERE sku = 'CR-001'")
    conn.commit()
    conn.close()
    refused(broken, "ledger check fails", "CR-001")

    # and the good one is accepted
    assert run_restore(config, good).code == 0


# -- (e) the scheduled job ------------------------------------------------------------------------------

async def test_scheduled_backup_runs_off_the_event_loop(tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    seed_store(data_dir / "store.db")
    path = write_config(tmp_path / "config.toml", data_dir, 8470, store_id="backup-test")
    config = config_mod.load(path)
    section = BackupSection(folder="nightly", keep_last=2, daily_at="02:15")
    config = dataclasses.replace(config, raw=config.raw.model_copy(update={"backup": section}))
    assert config.backup_dir == tmp_path / "nightly"
    monkeypatch.setattr(bk, "PAGES_PER_STEP", 1)    # a slow copy: many steps...
    monkeypatch.setattr(bk, "STEP_SLEEP", 0.01)     # ...with pauses, so the loop must run meanwhile

    store = db.open_store(data_dir / "store.db")
    store.open()
    try:
        loop = asyncio.get_running_loop()
        job = asyncio.create_task(jobs.scheduled_backup(store, config))
        gaps, writes, last = [], 0, loop.time()
        while not job.done():
            await asyncio.sleep(0.005)
            gaps.append(loop.time() - last)
            last = loop.time()
            if len(gaps) % 20 == 0:  # and the store's writer keeps writing
                ctx = WriteContext(device="test", now="2026-11-22T02:15:00.000Z", day="2026-11-22")
                await store.write(stock.record_adjustment, AdjustmentIn.model_validate(
                    {"lines": [{"sku": "CR-002", "qty": -1}], "note": "损耗"}), ctx)
                writes += 1
        made = job.result()
        assert made is not None and made.parent == tmp_path / "nightly"
        assert len(gaps) >= 10 and max(gaps) < 0.25, (len(gaps), max(gaps))
        info = json.loads(made.with_suffix(".json").read_text(encoding="utf-8"))
        assert info["integrity"] == "ok" and info["ledger"]["ok"] and info["steps"] > 1
        # the job never raises into the scheduler: a failure is logged and returns None
        nowhere = BackupSection(folder="/proc/no-backups-here")
        nowhere = dataclasses.replace(config, raw=config.raw.model_copy(update={"backup": nowhere}))
        assert await jobs.scheduled_backup(store, nowhere) is None
    finally:
        store.close()

    # it goes into the daemon's scheduler with the configured time
    from apscheduler.schedulers.asyncio import AsyncIOScheduler
    scheduler = AsyncIOScheduler(timezone=config.tz)
    jobs.schedule(scheduler, store, config, None)
    trigger = str(scheduler.get_job("backup").trigger)
    assert "hour='2'" in trigger and "minute='15'" in trigger
    hourly = dataclasses.replace(config, raw=config.raw.model_copy(update={"backup": BackupSection(every_hours=6)}))
    scheduler = AsyncIOScheduler(timezone=config.tz)
    jobs.schedule(scheduler, store, hourly, None)
    assert "6:00:00" in str(scheduler.get_job("backup").trigger)
    off = dataclasses.replace(config, raw=config.raw.model_copy(update={"backup": BackupSection(enabled=False)}))
    scheduler = AsyncIOScheduler(timezone=config.tz)
    jobs.schedule(scheduler, store, off, None)
    assert scheduler.get_job("backup") is None and scheduler.get_job("ledger-check") is not None


def test_backup_section_is_strict():
    from pydantic import ValidationError

    assert BackupSection().time_of_day == (3, 0)
    assert BackupSection.model_validate({"every_hours": 12}).every_hours == 12.0
    for bad in ({"every_hours": "12"}, {"every_hours": 6, "daily_at": "03:00"}, {"daily_at": "3am"},
                {"keep_last": 0}, {"keep_last": "7"}, {"folder": 1}, {"nightly": True}):
        with pytest.raises(ValidationError):
            BackupSection.model_validate(bad)
