"""Waiting with a time limit in tasks that are cancelled to stop.

Not `asyncio.wait_for`: on Python 3.11 it can swallow a cancel that arrives just as what it waits for
completes, so a looping task goes on and its `stop()` hangs (a sync test hung in `SyncEngine.stop()`
this way). `asyncio.timeout` keeps the cancel.
"""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """True when `event` is set within `timeout` seconds (None: no limit), False when the time ran out."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
