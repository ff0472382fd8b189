"""Typed keys for what the aiohttp application and requests carry: the running parts, by name."""

from aiohttp import web

from edge.core.config import Config
from edge.core.sqlite import Store
from edge.services.devices import DeviceService
from edge.services.limiter import CodeLimiter
from edge.services.printing import PrintService
from edge.services.scan_router import ScanRouter
from edge.store.pickups import Checks
from edge.store.report_sums import ClosedDays
from sync.engine import SyncEngine

CONFIG = web.AppKey("config", Config)
STORE = web.AppKey("store", Store)
STARTED = web.AppKey("started", float)
SYNC = web.AppKey("sync", SyncEngine)  # absent without [cloud] url
DEVICE = web.RequestKey("device", str)  # the authenticated till, or "local"
PRINTING = web.AppKey("printing", PrintService)
LIMITER = web.AppKey("limiter", CodeLimiter)  # typed pickup codes per till
SCANS = web.AppKey("scans", ScanRouter)
DEVICES = web.AppKey("devices", DeviceService)
REPORTS = web.AppKey("reports", ClosedDays)  # the sums of closed business days, reused by every report


def pickup_checks(app: web.Application) -> Checks:
    """This store, now, and whether the cloud answers (hand-overs while it does not are provisional)."""
    engine = app.get(SYNC)
    return Checks(store_id=app[CONFIG].store.id, online=engine is None or engine.link.state == "online")
