"""The daemon: the aiohttp application, its subsystems, and the run loop with systemd integration.

Subsystems are aiohttp cleanup contexts listed in SUBSYSTEMS: started in that order, stopped in
reverse, by construction: the store, the cloud sync, printing, scanning, the scheduler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

# the API's resource modules register their operations when imported
from edge import ui
from edge.api import members as members_api  # noqa: F401
from edge.api import metrics, openapi, pos, printing, reports, scans, shifts, status_page, stock_work, verification  # noqa: F401
from edge.api import sync as sync_api  # noqa: F401
from edge.api.registry import PREFIX, is_public, json_response
from edge.api.registry import routes as api_routes
from edge.core import sqlite, systemd
from edge.core.clock import iso, utcnow
from edge.core.config import Config
from edge.core.errors import InputError
from edge.core.serving import client_gone, serve_until_stopped
from edge.core.sqlite import ReadTimeout, Store
from edge.services import jobs
from edge.services.app_keys import CONFIG, DEVICE, DEVICES, LIMITER, PRINTING, REPORTS, SCANS, STARTED, STORE, SYNC
from edge.services.devices import DeviceService
from edge.services.limiter import CodeLimiter
from edge.services.printing import PrintService
from edge.services.reload import reload
from edge.services.scan_router import ScanRouter
from edge.store import api_tokens, db, pinyin, signed_tokens
from edge.store.report_sums import ClosedDays
from edge.ui import web as ui_web
from edge.ui.login import LOGIN_LIMITER
from edge.ui.login_limit import LoginLimiter
from sync.client import CloudClient
from sync.engine import SyncEngine, Timing

log = logging.getLogger("edge.app")


# -- subsystems -----------------------------------------------------------------------------------

async def store_subsystem(app: web.Application):
    store = db.open_store(app[CONFIG].db_path, read_limit=app[CONFIG].api.read_timeout_seconds)
    await asyncio.get_running_loop().run_in_executor(None, store.open)  # migrations may take a while
    # not awaited: the import lock makes a write that comes first wait only for what is left of it
    asyncio.get_running_loop().run_in_executor(None, pinyin.warm)
    app[STORE] = store
    app[ui_web.EVENTS] = hub = ui_web.EventHub()
    store.listeners.append(hub.bump)  # every committed write may change what a dashboard page shows
    log.info("store open", extra={"kv": {"path": store.path}})
    if app[CONFIG].verification.keys:
        added = await store.write(signed_tokens.add_config_keys, app[CONFIG].verification.keys, iso(utcnow()))
        log.info("verification keys from config", extra={"kv": {"added": added}})
    yield
    await asyncio.get_running_loop().run_in_executor(None, store.close)
    log.info("store closed")


async def sync_subsystem(app: web.Application):
    """The cloud link, when config.toml names a cloud; without one the store runs alone."""
    config = app[CONFIG]
    if not config.cloud.url:
        log.info("no cloud configured: events wait in the outbox")
        yield
        return
    client = CloudClient(config.cloud.url, config.store.id, config.cloud_token.reveal(),
                         timeout=config.cloud.timeout_seconds)
    engine = SyncEngine(app[STORE], client, tz=config.tz, day_cutoff=config.day_cutoff,
                        batch_size=config.cloud.batch_size,
                        timing=Timing(backoff_cap=config.cloud.retry_max_seconds,
                                      person_retry=config.cloud.person_retry_seconds))
    engine.link.listeners.append(app[ui_web.EVENTS].bump)  # the link lives in memory, not in the store
    await engine.start()
    app[SYNC] = engine
    log.info("sync started", extra={"kv": {"cloud": config.cloud.url}})
    yield
    await engine.stop()
    log.info("sync stopped")


async def printing_subsystem(app: web.Application):
    """A worker per configured printer; started after sync so the status ticket can show the cloud link."""
    engine = app.get(SYNC)
    service = PrintService(app[STORE], app[CONFIG], link=engine.link if engine else None,
                           scanner_states=lambda: app[DEVICES].states() if DEVICES in app else [])
    await service.start()
    service.on_change.append(app[ui_web.EVENTS].bump)  # printer states live in memory, not in the store
    app[PRINTING] = service
    log.info("printing started", extra={"kv": {"printers": len(service.workers),
                                               "routes": ",".join(f"{k}>{p}" for k, (p, _) in service.routes.items())
                                               or "-"}})
    yield
    await service.stop()
    log.info("printing stopped")


async def scanning_subsystem(app: web.Application):
    """The scan router, and a reader per scanner and camera feeding it."""
    router = ScanRouter(app[STORE], app[CONFIG].scanning.scales, app[CONFIG])
    await router.start()
    devices = DeviceService(app[CONFIG], router)
    devices.start()
    app[SCANS], app[DEVICES] = router, devices
    log.info("scanning started", extra={"kv": {"devices": len(devices.readers)}})
    yield
    await devices.stop()
    await router.stop()
    log.info("scanning stopped")


async def scheduler_subsystem(app: web.Application):
    config = app[CONFIG]
    scheduler = AsyncIOScheduler(timezone=config.tz)
    jobs.schedule(scheduler, app[STORE], config, app.get(SYNC))
    scheduler.start()
    log.info("scheduler started", extra={"kv": {"jobs": len(scheduler.get_jobs())}})
    yield
    scheduler.shutdown(wait=False)
    log.info("scheduler stopped")


SUBSYSTEMS = (store_subsystem, sync_subsystem, printing_subsystem, scanning_subsystem, scheduler_subsystem)


# -- middlewares ----------------------------------------------------------------------------------

@web.middleware
async def errors_middleware(request: web.Request, handler):
    """Every error is JSON with a code and a message; never a stack trace or a secret."""
    try:
        return await handler(request)
    except (ConnectionResetError, asyncio.CancelledError) as exc:
        return client_gone(request, exc, log)
    except (InputError, ReadTimeout) as exc:
        return json_response(exc.as_dict(), status=exc.status)
    except web.HTTPException as exc:
        if exc.status < 400 or not request.path.startswith(PREFIX):
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(exc.status, "http_error")
        response = json_response({"error": {"code": code, "message": exc.reason, "fields": []}}, status=exc.status)
        if "Allow" in exc.headers:  # a 405 says which methods the path takes (RFC 9110 §15.5.6)
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        log.exception("request failed", extra={"kv": {"method": request.method, "path": request.path}})
        return json_response({"error": {"code": "internal_error", "message": "internal error; see the "
                                            "store-edge log", "fields": []}}, status=500)


@web.middleware
async def auth_middleware(request: web.Request, handler):
    """Tills on the LAN present a per-device token; on loopback-only setups the device is 'local'."""
    config = request.app[CONFIG]
    request[DEVICE] = "local"
    if config.tokens_required and request.path.startswith(PREFIX) and not is_public(request.path):
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        device = None
        if scheme.lower() == "bearer" and token.strip():
            device = await request.app[STORE].read(api_tokens.device_for, token.strip())
        if device is None:
            raise InputError("unauthorized", "send 'Authorization: Bearer <token>' with a token from "
                             "`store-edge token add`", status=401)
        request[DEVICE] = device
    return await handler(request)


def build_app(config: Config) -> web.Application:
    app = web.Application(middlewares=[errors_middleware, auth_middleware, ui_web.ui_middleware],
                          client_max_size=config.api.max_body_kib * 1024)
    app[CONFIG] = config
    app[STARTED] = time.time()
    app[LIMITER] = CodeLimiter(config.verification.code_attempts, config.verification.code_window_seconds,
                                      config.verification.code_lockout_seconds)
    app[LOGIN_LIMITER] = LoginLimiter()
    app[REPORTS] = ClosedDays()
    app.cleanup_ctx.extend(SUBSYSTEMS)
    app.add_routes(api_routes())
    app.add_routes(status_page.routes)
    app.add_routes(ui.routes())
    metrics.install(app)  # /metrics, and its request-timing middleware (outermost)
    return app


# -- running --------------------------------------------------------------------------------------

async def serve(config: Config, stop: asyncio.Event | None = None) -> None:
    """The daemon: tells systemd when it is ready, pings the watchdog, says when it stops."""
    app = build_app(config)

    @contextlib.asynccontextmanager
    async def serving(runner: web.AppRunner):
        log.info("listening", extra={"kv": {"address": f"http://{config.api.host}:{config.api.port}/",
                                           "store": config.store.id, "tokens_required": config.tokens_required}})
        systemd.notify(f"READY=1\nSTATUS=serving on {config.api.host}:{config.api.port}")
        watchdog = asyncio.create_task(_watchdog(app[STORE]))
        loop = asyncio.get_running_loop()
        reloads: set[asyncio.Task] = set()

        def on_hup() -> None:
            task = loop.create_task(reload(app))
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, on_hup)
        try:
            yield
        finally:
            loop.remove_signal_handler(signal.SIGHUP)
            await asyncio.gather(*reloads, return_exceptions=True)
            systemd.notify("STOPPING=1")
            watchdog.cancel()

    await serve_until_stopped(app, config.api.host, config.api.port, stop=stop, while_serving=serving)


async def _watchdog(store: Store) -> None:
    """Ping systemd's watchdog from the loop, only while the store answers in time."""
    interval = systemd.watchdog_interval()
    if interval is None:
        return
    healthy = True
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        try:
            async with asyncio.timeout(interval):  # not wait_for: edge/core/waits.py says why
                await store.read(sqlite.ping)
            ok = store.healthy
        except Exception:  # noqa: BLE001 (any failure means: do not ping)
            ok = False
        if ok:
            systemd.notify("WATCHDOG=1")
        if ok != healthy:
            (log.info if ok else log.error)("health " + ("restored" if ok else "lost: watchdog pings stopped"))
            healthy = ok
        # keep the pings on a fixed beat: a slow check must not stretch the gap past WatchdogSec
        await asyncio.sleep(max(0.0, interval - (loop.time() - started)))
