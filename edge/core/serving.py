"""Serving an aiohttp application until a signal: shared by the daemon and the reference hub."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from typing import AsyncContextManager, Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

log = logging.getLogger("edge.app")

# What the Server header says: the program, no versions (a version tells a scanner which holes to try).
SERVER = "store-edge"


def _plain_server_header() -> None:
    """aiohttp writes its default Server header (Python's and its own version) into every answer,
    including the 400 it makes itself for a request it cannot parse, which no application hook sees:
    so the default is replaced, for this process, which serves only our applications."""
    from aiohttp import web_response  # noqa: PLC0415

    web_response.SERVER_SOFTWARE = SERVER


def client_gone(request: web.Request, exc: BaseException, logger: logging.Logger) -> web.Response:
    """For an application's error middleware: a client that went away mid-request (a killed daemon, a
    till switched off, a dropped link) is ordinary, one info line; aiohttp would log it as an error
    with its traceback. A cancellation is re-raised once logged."""
    if isinstance(exc, ConnectionResetError) or request.transport is None or request.transport.is_closing():
        logger.info("client disconnected mid-request", extra={"kv": {
            "method": request.method, "path": request.path[:100], "remote": request.remote}})
    if isinstance(exc, asyncio.CancelledError):
        raise exc
    return web.Response(status=400, text="connection lost")


class _ConnectionLog(logging.LoggerAdapter):
    """aiohttp's connection logger. A request it cannot parse (an over-long URL or header, a broken
    request line) is the client's fault and answered 400 by aiohttp: one warning line, not an
    error with a traceback per request that buries the store's real errors."""

    def exception(self, msg, *args, exc_info=True, **kwargs) -> None:
        if isinstance(exc_info, HttpProcessingError):
            log.warning("malformed request refused", extra={"kv": {
                "remote": args[0] if args else None, "status": exc_info.code,
                "reason": str(exc_info.message)[:200]}})
            return
        self.logger.exception(msg, *args, exc_info=exc_info, **kwargs)

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
    _plain_server_header()
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT,
                           logger=_ConnectionLog(logging.getLogger("aiohttp.server"), {}))
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
