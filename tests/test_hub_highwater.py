"""DIR/hub.highwater under load: concurrent committers share file writes, none returns before its own."""

import asyncio
import json
import logging
import threading

from hub.highwater import HighWater
from hub.state import Hub


def hub_with_recorded_writes(tmp_path, monkeypatch, fail: bool = False):
    """A hub (not started: committed() needs only its high-water file) whose writes are recorded; a
    write sets `entered` and waits for `gate`, as on a slow disk, so that callers pile up behind it."""
    hub = Hub(data_dir=tmp_path, admin_token="t")
    written, gate, entered = [], threading.Event(), threading.Event()
    real_write = HighWater._write

    def write(highwater):
        entered.set()
        gate.wait(5)
        if fail:
            raise OSError(28, "No space left on device")
        real_write(highwater)
        written.append((highwater.cursor, highwater.event_row, highwater.epoch))

    monkeypatch.setattr(HighWater, "_write", write)
    return hub, written, gate, entered


def on_disk(tmp_path):
    mark = json.loads((tmp_path / "hub.highwater").read_text())
    return mark["cursor"], mark["event_row"], mark["epoch"]


async def test_concurrent_commits_share_few_writes_and_each_returns_after_one_covering_it(tmp_path, monkeypatch):
    hub, written, gate, entered = hub_with_recorded_writes(tmp_path, monkeypatch)
    returned = []

    async def commit(n):
        cursor, event_row = (n, 0) if n % 3 == 0 else (0, n)
        epoch = "e-2" if n == 150 else None
        await hub.committed(cursor=cursor, event_row=event_row, epoch=epoch)
        # back: a write covering this caller's values is done, and the file on disk says so
        assert any(c >= cursor and r >= event_row and (epoch is None or e == epoch) for c, r, e in written)
        disk_cursor, disk_row, disk_epoch = on_disk(tmp_path)
        assert disk_cursor >= cursor and disk_row >= event_row and (epoch is None or disk_epoch == epoch)
        returned.append(n)

    try:
        callers = [asyncio.create_task(commit(1))]
        assert await asyncio.get_running_loop().run_in_executor(None, entered.wait, 5)  # its write is in flight
        callers += [asyncio.create_task(commit(n)) for n in range(2, 201)]
        await asyncio.sleep(0)      # every caller has asked; the first write holds at the gate
        assert written == [] and returned == []
        gate.set()
        await asyncio.gather(*callers)
        # the first caller's write, then one write for the 199 that came while it was in flight
        assert written == [(0, 1, ""), (198, 200, "e-2")]
        assert sorted(returned) == list(range(1, 201))
        await hub.committed(event_row=201)  # nothing in flight: a caller alone gets its own write
        assert written[-1] == (198, 201, "e-2") and len(written) == 3
    finally:
        gate.set()
        hub.hw_pool.shutdown(wait=True)


async def test_a_failed_high_water_write_is_logged_and_every_caller_goes_on(tmp_path, monkeypatch, caplog):
    hub, written, gate, entered = hub_with_recorded_writes(tmp_path, monkeypatch, fail=True)
    caplog.set_level(logging.ERROR, logger="hub.state")
    try:
        callers = [asyncio.create_task(hub.committed(event_row=n)) for n in range(1, 21)]
        await asyncio.sleep(0)
        gate.set()
        assert await asyncio.gather(*callers) == [None] * 20
        errors = [r for r in caplog.records if r.getMessage() == "high-water file not written"]
        assert len(errors) == 20 and "No space left" in errors[0].kv["error"]
        assert written == [] and not (tmp_path / "hub.highwater").exists()
    finally:
        hub.hw_pool.shutdown(wait=True)


async def test_a_caller_that_gives_up_does_not_cancel_the_write_the_others_wait_for(tmp_path, monkeypatch):
    hub, written, gate, entered = hub_with_recorded_writes(tmp_path, monkeypatch)
    try:
        first = asyncio.create_task(hub.committed(cursor=5))
        assert await asyncio.get_running_loop().run_in_executor(None, entered.wait, 5)
        others = [asyncio.create_task(hub.committed(cursor=n)) for n in (6, 7)]
        await asyncio.sleep(0)
        others[0].cancel()          # its upload's client went away
        gate.set()
        await asyncio.gather(first, others[1])
        assert written == [(5, 0, ""), (7, 0, "")] and on_disk(tmp_path)[0] == 7
    finally:
        gate.set()
        hub.hw_pool.shutdown(wait=True)
