"""Serving an aiohttp application until a signal: shared by the daemon and the reference hub."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from typing import AsyncContextManager, Callable

from aiohttp import web

log = logging.getLogger("edge.app")

# How long a stop waits for each connection's request to finish (aiohttp waits up to twice this per
# connection). aiohttp's default, 60 s, outlasts systemd's TimeoutStopSec=20: a till connecting as
# SIGTERM arrives leaves a connection aiohttp only drops at this timeout. A sale takes milliseconds.
SHUTDOWN_TIMEOUT = 5.0


async def serve_until_stopped(app: web.Application, host: str, port: int, *, stop: asyncio.Event | None = None,
                              while_serving: Callable[[web.AppRunner], AsyncContextManager] | None = None) -> None:
    """Serve `app` until SIGTERM/SIGINT (or `stop` is set); a second signal exits at once.

    Subsystems start before listening and stop after; `while_serving` is entered once the port
    listens and left when the stop begins."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = {"count": 0}

    def on_signal(signum: int) -> None:
        signals["count"] += 1
        if signals["count"] > 1:
            log.warning("second signal: exiting now", extra={"kv": {"signal": signal.Signals(signum).name}})
            os._exit(1)
        log.info("stopping", extra={"kv": {"signal": signal.Signals(signum).name}})
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT)
    try:
        await runner.setup()  # starts the subsystems, in order
        await web.TCPSite(runner, host, port, reuse_address=True).start()
        async with (while_serving(runner) if while_serving else contextlib.nullcontext()):
            await stop.wait()
    finally:
        await runner.cleanup()  # stops the subsystems, in reverse
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    log.info("stopped")
