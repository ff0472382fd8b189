"""edge.core.waits: a cancel that arrives as the awaited event is set still stops the task."""

import asyncio
import sys

import pytest

from edge.core.waits import wait_event


async def _stops_when_cancelled_as_the_event_is_set(wait) -> bool:
    event = asyncio.Event()

    async def loop_until_cancelled():  # the shape of the sync engine's and the printers' tasks
        while True:
            await wait(event, 30)
            event.clear()

    task = asyncio.create_task(loop_until_cancelled())
    await asyncio.sleep(0)      # the task is waiting
    event.set()                 # what it waits for completes...
    task.cancel()               # ...and the stop arrives before the task runs again
    done, _ = await asyncio.wait({task}, timeout=2)
    if not done:
        task.cancel()
        await asyncio.wait({task}, timeout=2)
    return bool(done) and task.cancelled()


async def test_a_cancel_is_not_lost_when_the_event_is_set_at_the_same_time():
    assert await _stops_when_cancelled_as_the_event_is_set(wait_event)


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="asyncio.wait_for is built on asyncio.timeout from 3.12")
async def test_the_check_catches_asyncio_wait_for_losing_the_cancel_on_this_python():
    """The reason for wait_event: on Python 3.11 this race makes wait_for return instead of raising."""
    async def with_wait_for(event, timeout):
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    assert not await _stops_when_cancelled_as_the_event_is_set(with_wait_for)


async def test_wait_event_times_out_and_returns_false():
    assert await wait_event(asyncio.Event(), 0.01) is False
    event = asyncio.Event()
    event.set()
    assert await wait_event(event, 0.01) is True
