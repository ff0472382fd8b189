"""The tests' PostgreSQL (tests/postgres.py): a real server, private, one empty database per test."""

from __future__ import annotations

import os
import subprocess

import asyncpg
import pytest

from tests.postgres import PostgresMissing, PostgresServer, bin_dir, sweep_orphans


async def test_the_server_is_a_real_postgresql_that_writes_and_reads(postgres_url):
    conn = await asyncpg.connect(postgres_url)
    try:
        version = await conn.fetchval("SELECT version()")
        assert version.startswith("PostgreSQL "), version
        assert await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0
        await conn.execute("CREATE TABLE notes (id bigserial PRIMARY KEY, body text NOT NULL)")
        async with conn.transaction():
            await conn.executemany("INSERT INTO notes (body) VALUES ($1)", [("门店",), ("second",)])
        assert [tuple(r) for r in await conn.fetch("SELECT id, body FROM notes ORDER BY id")] == [
            (1, "门店"), (2, "second")]
        # a second connection sees the committed rows: a server, not a connection's private state
        other = await asyncpg.connect(postgres_url)
        try:
            assert await other.fetchval("SELECT count(*) FROM notes") == 2
        finally:
            await other.close()
    finally:
        await conn.close()


async def test_each_test_gets_its_own_database(postgres_server, postgres_url):
    mine = postgres_url.rsplit("/", 1)[1]
    other_name = postgres_server.create_database("other")
    try:
        a = await asyncpg.connect(postgres_url)
        b = await asyncpg.connect(postgres_server.url(other_name))
        try:
            assert await a.fetchval("SELECT current_database()") == mine
            assert await b.fetchval("SELECT current_database()") == other_name
            await a.execute("CREATE TABLE t (x int)")
            await a.execute("INSERT INTO t VALUES (1)")
            with pytest.raises(asyncpg.UndefinedTableError):
                await b.fetchval("SELECT x FROM t")
        finally:
            await a.close()
            await b.close()
    finally:
        postgres_server.drop_database(other_name)
    names = postgres_server.sql("SELECT datname FROM pg_database").split()
    assert other_name not in names and mine in names


def test_the_server_listens_on_loopback_only_and_not_as_root(postgres_server):
    assert postgres_server.sql("SHOW listen_addresses").strip() == "127.0.0.1"
    assert postgres_server.sql("SHOW port").strip() == str(postgres_server.port)
    pid = int((postgres_server.data / "postmaster.pid").read_text().split()[0])
    assert os.stat(f"/proc/{pid}").st_uid != 0
    # the unix socket lives in the server's own folder, not /var/run/postgresql of a packaged cluster
    assert (postgres_server.root / f".s.PGSQL.{postgres_server.port}").is_socket()


def running(pid: int) -> bool:
    """The process exists and has not exited (an exited one stays a zombie until init reaps it)."""
    try:
        stat = open(f"/proc/{pid}/stat", encoding="ascii").read()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def test_a_server_stops_and_leaves_nothing_behind():
    server = PostgresServer().start()
    try:
        pid = int((server.data / "postmaster.pid").read_text().split()[0])
        assert server.sql("SELECT 1").strip() == "1"
    finally:
        server.stop()
    assert not server.root.exists()
    assert not running(pid)
    probe = subprocess.run([str(server.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(server.port)],
                           capture_output=True, text=True)
    assert probe.returncode != 0, probe.stdout


def test_without_postgresql_the_message_says_how_to_install_it(tmp_path):
    (tmp_path / "15" / "bin").mkdir(parents=True)  # a version folder without its programs
    with pytest.raises(PostgresMissing, match=r"`make test` installs Debian's postgresql package"):
        bin_dir(tmp_path)
    assert bin_dir().parent.name.isdigit()


def test_a_server_whose_test_run_died_is_swept_by_the_next_run(postgres_server):
    orphan = PostgresServer().start()
    try:
        pid = int((orphan.data / "postmaster.pid").read_text().split()[0])
        killed = subprocess.Popen(["true"])  # stands for a test run that was killed: exited, reaped
        killed.wait()
        (orphan.root / "owner").write_text(str(killed.pid), encoding="ascii")
        swept = sweep_orphans()
    except BaseException:
        orphan.stop()
        raise
    assert orphan.root in swept and not orphan.root.exists()
    assert not running(pid)
    # this session's own server (its owner alive) is left alone
    assert postgres_server.root not in swept and postgres_server.sql("SELECT 1").strip() == "1"
