"""The writer's group commit of bulk jobs (the hub's Store): one transaction, a savepoint a job, one COMMIT."""

import asyncio
import contextlib
import json
import sqlite3
import threading
import time

import pytest

from edge.core.sqlite import Store

SCHEMA = [("t", """
CREATE TABLE t (what TEXT NOT NULL);
CREATE TABLE parent (id INTEGER PRIMARY KEY);
CREATE TABLE child (parent_id INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);
""")]


@contextlib.contextmanager
def opened(tmp_path, **kw):
    store = Store(tmp_path / "t.db", SCHEMA, **kw)
    store.open()
    outside = sqlite3.connect(tmp_path / "t.db", isolation_level=None,  # sees committed rows only
                              check_same_thread=False)
    try:
        yield store, outside
    finally:
        outside.close()
        store.close()


def insert(outside, what):
    """A bulk job: insert `what`, answer how many rows another connection sees (committed before it)."""
    def job(conn):
        conn.execute("INSERT INTO t VALUES (?)", (what,))
        return outside.execute("SELECT count(*) FROM t").fetchone()[0]
    return job


def rows(outside):
    return [r[0] for r in outside.execute("SELECT what FROM t ORDER BY rowid")]


async def behind_a_write(store, queue_work):
    """Hold the writer with a write, queue work behind it (the tasks queue_work returns), let it go."""
    gate = threading.Event()
    blocker = asyncio.create_task(store.write(lambda conn: gate.wait(5)))
    await asyncio.sleep(0)
    tasks = queue_work()
    await asyncio.sleep(0)  # every task has put its job on the queue
    return gate, blocker, tasks


async def queued_together(store, outside, count: int, odd: dict) -> list:
    """Queue `count` bulk jobs behind a write (job n: odd[n], else an insert of "b<n>"), let them go
    as one group, and return what each was answered (an exception as such)."""
    gate, blocker, tasks = await behind_a_write(store, lambda: [
        asyncio.create_task(store.write_bulk(odd.get(n) or insert(outside, f"b{n}"))) for n in range(count)])
    gate.set()
    await blocker
    return await asyncio.gather(*tasks, return_exceptions=True)


async def test_queued_bulk_jobs_commit_together_and_are_answered_after_the_commit(tmp_path):
    with opened(tmp_path, group_bulk=16, group_seconds=10) as (store, outside):
        async def bulk(n):
            seen_before = await store.write_bulk(insert(outside, f"b{n}"))
            return seen_before, len(rows(outside))  # answered: the group is committed by now

        gate, blocker, tasks = await behind_a_write(
            store, lambda: [asyncio.create_task(bulk(n)) for n in range(6)])
        tasks[3].cancel()  # its caller went away while it was queued: skipped inside the group too
        gate.set()
        await blocker
        done = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(done[3], asyncio.CancelledError)
        # nobody outside saw any of the group before its one COMMIT; every job was answered after it
        assert [d for n, d in enumerate(done) if n != 3] == [(0, 5)] * 5
        assert rows(outside) == ["b0", "b1", "b2", "b4", "b5"]


async def test_a_job_that_fails_in_a_group_is_undone_alone(tmp_path):
    with opened(tmp_path, group_bulk=16, group_seconds=10) as (store, outside):
        def failing(conn):
            conn.execute("INSERT INTO t VALUES ('bad')")
            raise ValueError("this upload is wrong")

        done = await queued_together(store, outside, 5, {2: failing})
        assert isinstance(done[2], ValueError) and str(done[2]) == "this upload is wrong"
        assert [done[n] for n in (0, 1, 3, 4)] == [0, 0, 0, 0]  # one group, committed without it
        assert rows(outside) == ["b0", "b1", "b3", "b4"]


async def test_a_failed_commit_fails_every_job_of_the_group_and_commits_none(tmp_path):
    with opened(tmp_path, group_bulk=16, group_seconds=10) as (store, outside):
        def orphan(conn):  # a deferred foreign key: the statement passes, the COMMIT is refused
            conn.execute("INSERT INTO child VALUES (42)")

        done = await queued_together(store, outside, 3, {1: orphan})
        assert all(isinstance(d, sqlite3.IntegrityError) and "FOREIGN KEY" in str(d) for d in done), done
        assert rows(outside) == [] and outside.execute("SELECT count(*) FROM child").fetchone()[0] == 0
        # the writer goes on: the next group commits
        assert await store.write_bulk(insert(outside, "after")) == 0
        assert rows(outside) == ["after"]


async def test_a_write_arriving_during_a_group_runs_right_after_it(tmp_path):
    with opened(tmp_path, group_bulk=16, group_seconds=10) as (store, outside):
        started, go_on = threading.Event(), threading.Event()

        def first(conn):
            started.set()
            go_on.wait(5)
            return insert(outside, "b0")(conn)

        gate, blocker, tasks = await behind_a_write(store, lambda: [
            asyncio.create_task(store.write_bulk(first if n == 0 else insert(outside, f"b{n}")))
            for n in range(8)])
        gate.set()
        await blocker
        assert await asyncio.get_running_loop().run_in_executor(None, started.wait, 5)
        # a person-facing write queued while the group runs: the group stops taking jobs at it
        urgent = asyncio.create_task(store.write(insert(outside, "admin")))
        await asyncio.sleep(0)
        go_on.set()
        seen = await asyncio.gather(*tasks)
        assert await urgent == 1  # right after the group of b0 alone, before any other bulk job
        assert seen[0] == 0 and seen[1:] == [2] * 7
        assert rows(outside) == ["b0", "admin", *(f"b{n}" for n in range(1, 8))]


@pytest.mark.parametrize("bound, groups_seen", [
    ({"group_bulk": 3, "group_seconds": 10}, [0, 0, 0, 3, 3, 3, 6]),   # at most 3 jobs a group
    ({"group_bulk": 16, "group_seconds": 0}, [0, 1, 2, 3, 4, 5, 6]),   # no time left for a second job
    ({}, [0, 1, 2, 3, 4, 5, 6]),                                        # the default: each its own
])
async def test_a_group_is_bounded_by_count_and_by_time(tmp_path, bound, groups_seen):
    with opened(tmp_path, **bound) as (store, outside):
        gate, blocker, tasks = await behind_a_write(
            store, lambda: [asyncio.create_task(store.write_bulk(insert(outside, f"b{n}"))) for n in range(7)])
        gate.set()
        await blocker
        assert await asyncio.gather(*tasks) == groups_seen


async def test_the_hub_commits_uploads_queued_together_in_one_group_and_answers_each(tmp_path):
    from hub.state import HUB
    from tests.test_backpressure import until
    from tests.test_hub import event, product, start_hub

    hub = await start_hub(tmp_path / "hub")  # SQLite: the hub's Store groups its bulk lane
    try:
        stores = ["s1", "s2", "s3", "s4"]
        for store_id in stores:
            await hub.add_store(store_id)
        await hub.add_products(product("DRK-001"))
        store = hub.client.server.app[HUB].db.store
        groups, real_group = [], store._write_group
        store._write_group = lambda conn, item: groups.append(item) or real_group(conn, item)
        go = threading.Event()
        blocker = asyncio.create_task(store.write(lambda conn: go.wait(5)))
        uploads = [asyncio.create_task(hub.upload(s, [event(s, 1, [("DRK-001", n + 2, "receipt")]),
                                                     event(s, 2, [("DRK-001", -1, "sale")], "sale.recorded")]))
                   for n, s in enumerate(stores)]
        await until(lambda: store._queue.qsize() >= len(stores), "every upload queued at the writer")
        go.set()
        await blocker
        answers = await asyncio.gather(*uploads)
        assert len(groups) == 1  # four uploads, one transaction
        for n, (status, data) in enumerate(answers):
            assert status == 200 and [r["status"] for r in data["results"]] == ["applied", "applied"]
            balances = (await hub.sync(stores[n], "balances"))["balances"]
            assert balances == [{"sku": "DRK-001", "on_hand": n + 1, "reserved": 0}]
        mark = json.loads((tmp_path / "hub" / "hub.highwater").read_text())
        assert mark["event_row"] == 8  # answered after the file covered every upload's rows
    finally:
        await hub.close()


async def test_bulk_jobs_run_earliest_due_first_then_in_the_order_their_places_were_taken(tmp_path):
    with opened(tmp_path) as (store, outside):
        now = time.monotonic()
        places = {"late": store.bulk_place(due=now + 10), "soon": store.bulk_place(due=now + 5),
                  "soon too": store.bulk_place(due=now + 5), "unplaced": None}
        ran = []

        def job(name):
            def run(conn):
                ran.append(name)
            return run

        gate, blocker, tasks = await behind_a_write(store, lambda: [
            asyncio.create_task(store.write_bulk(job(name), place=place)) for name, place in places.items()])
        gate.set()
        await blocker
        await asyncio.gather(*tasks)
        assert ran == ["unplaced", "soon", "soon too", "late"]   # a job without a place is due when queued
