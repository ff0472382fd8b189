"""What the chain benchmark reads of the processes it measures: CPU seconds and peak memory from /proc,
and how many events a hub's database holds (read from outside the hub)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg


def cpu_s(pid: int, ended_children: bool = False) -> float:
    """User + system CPU seconds of a process so far (and of its children that ended and were reaped)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime in clock ticks (100 a second on Linux)
    if ended_children:
        ticks += int(fields[13]) + int(fields[14])   # cutime, cstime
    return ticks / 100


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def server_cpu_s(folder: Path) -> float:
    """CPU seconds of the PostgreSQL server's processes: the postmaster (its command line names the
    folder) with the backends that ended (a hub's pool closes some), and its live children."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(folder) in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    total += cpu_s(int(proc.name), ended_children=True)
                elif _parent_in(proc, folder):
                    total += cpu_s(int(proc.name))
            except OSError:
                continue
    return total


def parent_pid(proc: Path) -> int | None:
    """The parent of /proc/<pid> (None if it is gone or unreadable)."""
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _parent_in(proc: Path, folder: Path) -> bool:
    """A backend's command line is "postgres: user db ...": it counts if its parent is the postmaster."""
    ppid = parent_pid(proc)
    if ppid is None:
        return False
    try:
        return str(folder) in Path(f"/proc/{ppid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def applied(db: Path) -> int:
    """Events a SQLite hub holds, read-only beside the running hub."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        conn.execute("PRAGMA busy_timeout = 1000")
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        conn.close()


async def applied_pg(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval("SELECT count(*) FROM events")
    finally:
        await conn.close()


async def settle_pg(url: str) -> None:
    """After the set-up's thousands of stores: the planner's statistics current and the set-up's WAL
    written out, as in a chain's database that was not just bulk-loaded. Without it the steady phase
    before the storm measured PostgreSQL's autovacuum and checkpoint of the set-up (order push p99 0.6 s
    at 500 events/s, 66 ms after the storm)."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("ANALYZE")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
