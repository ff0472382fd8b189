"""Scanners and cameras: one reader per configured device, every scan handed to the scan router.

Each reader runs its own threads (drivers/); this module only starts and stops them and reports
their states. A device missing at start is not an error: its reader retries until it appears.
"""

from __future__ import annotations

import asyncio
import logging

from drivers.models import Camera, HidScanner, SerialScanner
from edge.core import member_code
from edge.core.classify import classify, mask_payment_code
from edge.services.scan_router import ScanRouter

log = logging.getLogger("edge.services.devices")


def make_reader(cfg, on_scan):
    if isinstance(cfg, SerialScanner):
        from drivers.serial_scanner import SerialScannerReader  # noqa: PLC0415 (pyserial only when used)

        return SerialScannerReader(cfg, on_scan)
    if isinstance(cfg, HidScanner):
        from drivers.hid_scanner import HidScannerReader  # noqa: PLC0415 (evdev only when used)

        return HidScannerReader(cfg, on_scan)
    if isinstance(cfg, Camera):
        from drivers.camera import CameraScanner  # noqa: PLC0415 (OpenCV only when a camera is configured)

        return CameraScanner(cfg, on_scan, dedupe_seconds=cfg.dedupe_seconds, loop=cfg.loop, width=cfg.width,
                             height=cfg.height, formats=tuple(cfg.formats) if cfg.formats else None,
                             prescale=cfg.prescale)
    raise TypeError(f"not a scanning device: {cfg!r}")


class DeviceService:
    def __init__(self, config, router: ScanRouter):
        self.router = router
        self._build(config)

    def _build(self, config) -> None:
        self.readers = {}
        for section in ("scanners", "cameras"):
            for cfg in getattr(config.raw, section):
                if cfg.enabled:
                    self.readers[cfg.name] = make_reader(cfg, self.router.submit_threadsafe)
        self.disabled = [cfg.name for section in ("scanners", "cameras") for cfg in getattr(config.raw, section)
                         if not cfg.enabled]

    def start(self) -> None:
        for reader in self.readers.values():
            reader.start()

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(None, reader.stop) for reader in self.readers.values()))

    async def reconfigure(self, config) -> None:
        """After a reload: every reader stopped (ports released), then the configured ones started."""
        await self.stop()
        self._build(config)
        self.start()

    def states(self) -> list[dict]:
        return [_masked(r.status()) for r in self.readers.values()] + [
            {"device": name, "state": "disabled"} for name in self.disabled]


def _masked(status: dict) -> dict:
    """A reader's last scan, as the device page and GET /scanners show it: a payment or member code masked."""
    last = status.get("last_scan")
    if last:
        classified = classify(last["text"])
        masked = mask_payment_code(classified.text) if classified.kind == "payment_code" else \
            member_code.mask(classified.text) if classified.kind == "member_code" \
            or member_code.split(classified.text) is not None else None
        if masked is not None:
            status = {**status, "last_scan": {**last, "text": masked, "raw_hex": masked.encode().hex(" ")}}
    return status
