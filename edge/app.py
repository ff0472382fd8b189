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

# print_api, scan_api and verify_api register their operations when imported
from edge import (api, backup, metrics, pickup, print_api, scan_api, signed_tokens, status_page, stock,  # noqa: F401
                  systemd, tokens, ui, verify_api)
from edge.clock import iso, utcnow
from edge.config import Config
from edge.db import Store
from edge.devices import DeviceService
from edge.errors import InputError
from edge.keys import CONFIG, DEVICE, DEVICES, LIMITER, PRINTING, SCANS, STARTED, STORE, SYNC
from edge.printing import PrintService
from edge.reload import reload
from edge.scans import ScanRouter
from edge.ui import web as ui_web
from edge.serving import serve_until_stopped
from sync import api as sync_api  # noqa: F401 (registers the /sync operations)
from sync.client import CloudClient, SyncError
from sync.engine import SyncEngine, Timing
from sync.reconcile import reconcile

log = logging.getLogger("edge.app")


# -- subsystems -----------------------------------------------------------------------------------

async def store_subsystem(app: web.Application):
    store = Store(app[CONFIG].db_path)
    await asyncio.get_running_loop().run_in_executor(None, store.open)  # migrations may take a while
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
    engine = SyncEngine(app[STORE], client, tz=config.tz, batch_size=config.cloud.batch_size,
                        timing=Timing(backoff_cap=config.cloud.retry_max_seconds,
                                      person_retry=config.cloud.person_retry_seconds))
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
    router = ScanRouter(app[STORE], app[CONFIG].scanning.scales)
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
    scheduler.add_job(nightly_ledger_check, "cron", hour=3, minute=30, args=[app[STORE]],
                      id="ledger-check", coalesce=True, misfire_grace_time=3600)
    backup.schedule(scheduler, app[STORE], config)
    if SYNC in app and config.cloud.reconcile_minutes:
        scheduler.add_job(reconcile_job, "interval", minutes=config.cloud.reconcile_minutes, args=[app[SYNC]],
                          id="reconcile", coalesce=True, max_instances=1)
    scheduler.start()
    log.info("scheduler started", extra={"kv": {"jobs": len(scheduler.get_jobs())}})
    yield
    scheduler.shutdown(wait=False)
    log.info("scheduler stopped")


SUBSYSTEMS = (store_subsystem, sync_subsystem, printing_subsystem, scanning_subsystem, scheduler_subsystem)


async def reconcile_job(engine: SyncEngine) -> None:
    try:
        result = await reconcile(engine.store, engine.client)
    except SyncError as exc:
        log.info("reconciliation postponed", extra={"kv": {"reason": str(exc)}})
        return
    log.info("reconciliation", extra={"kv": {"result": result["result"]}})


async def nightly_ledger_check(store: Store) -> None:
    """Check the ledger invariant once a night; a mismatch is an error the IT person must see."""
    moves, mismatches = await store.read(stock.verify)
    if mismatches:
        log.error("ledger check failed", extra={"kv": {"moves": moves, "mismatches": len(mismatches),
                                                       "first": str(mismatches[0])}})
    else:
        log.info("ledger check passed", extra={"kv": {"moves": moves}})
    await store.write(lambda conn: conn.execute("PRAGMA optimize"))


# -- middlewares ----------------------------------------------------------------------------------

@web.middleware
async def errors_middleware(request: web.Request, handler):
    """Every error is JSON with a code and a message; never a stack trace or a secret."""
    try:
        return await handler(request)
    except InputError as exc:
        return api.json_response(exc.as_dict(), status=exc.status)
    except web.HTTPException as exc:
        if exc.status < 400 or not request.path.startswith(api.PREFIX):
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(exc.status, "http_error")
        return api.json_response({"error": {"code": code, "message": exc.reason, "fields": []}}, status=exc.status)
    except Exception:
        log.exception("request failed", extra={"kv": {"method": request.method, "path": request.path}})
        return api.json_response({"error": {"code": "internal_error", "message": "internal error; see the "
                                            "store-edge log", "fields": []}}, status=500)


@web.middleware
async def auth_middleware(request: web.Request, handler):
    """Tills on the LAN present a per-device token; on loopback-only setups the device is 'local'."""
    config = request.app[CONFIG]
    request[DEVICE] = "local"
    if config.tokens_required and request.path.startswith(api.PREFIX) and not api.is_public(request.path):
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        device = None
        if scheme.lower() == "bearer" and token.strip():
            device = await request.app[STORE].read(tokens.device_for, token.strip())
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
    app[LIMITER] = pickup.CodeLimiter(config.verification.code_attempts, config.verification.code_window_seconds,
                                      config.verification.code_lockout_seconds)
    app.cleanup_ctx.extend(SUBSYSTEMS)
    app.add_routes(api.routes())
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
            await asyncio.wait_for(store.read(lambda conn: conn.execute("SELECT 1").fetchone()), interval)
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
