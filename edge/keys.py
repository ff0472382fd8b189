"""Typed keys for what the aiohttp application and requests carry."""

from aiohttp import web

from edge.config import Config
from edge.db import Store

CONFIG = web.AppKey("config", Config)
STORE = web.AppKey("store", Store)
STARTED = web.AppKey("started", float)
SYNC = web.AppKey("sync", object)  # sync.engine.SyncEngine, absent without [cloud] url
DEVICE = web.RequestKey("device", str)  # the authenticated till, or "local"
PRINTING = web.AppKey("printing", object)  # edge.printing.PrintService
LIMITER = web.AppKey("limiter", object)  # edge.pickup.CodeLimiter: typed pickup codes per till
SCANS = web.AppKey("scans", object)  # edge.scans.ScanRouter
DEVICES = web.AppKey("devices", object)  # edge.devices.DeviceService
