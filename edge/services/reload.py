"""Config reload on SIGHUP (`systemctl reload store-edge`): devices and settings without a restart.

The file is validated completely first; an invalid file is refused with its reasons and the running
config stays. A valid one is adopted in place: printers, scanners and cameras are restarted with
their new settings (a job being printed finishes first), and printing, scanning, verification,
dashboard and log settings apply at once. The store, API, cloud and backup sections only change at
a restart: a reload that changes them says so.
"""

from __future__ import annotations

import asyncio
import logging
import time

from edge.core import config as config_mod
from edge.core import systemd
from edge.services.app_keys import CONFIG, DEVICES, LIMITER, PRINTING, SCANS

log = logging.getLogger("edge.services.reload")


async def reload(app) -> dict:
    config = app[CONFIG]
    # systemd wants the reload's start time with RELOADING=1 (CLOCK_MONOTONIC, microseconds)
    systemd.notify(f"RELOADING=1\nMONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")
    try:
        try:
            new = await asyncio.get_running_loop().run_in_executor(None, config_mod.load, config.path)
        except config_mod.ConfigError as exc:
            log.error("config reload refused: the running config is kept",
                      extra={"kv": {"path": exc.path, "problems": " | ".join(exc.problems)}})
            systemd.notify(f"STATUS=config reload refused: {exc.problems[0]}")
            return {"ok": False, "problems": exc.problems}
        restart = config.adopt(new)
        logging.getLogger().setLevel(config.log.level.upper())
        app[SCANS].formats = config.scanning.scales
        v = config.verification
        app[LIMITER].configure(v.code_attempts, v.code_window_seconds, v.code_lockout_seconds)
        await app[PRINTING].reconfigure()
        await app[DEVICES].reconfigure(config)
        if restart:
            log.warning("config reloaded; these sections change only at a restart",
                        extra={"kv": {"sections": ",".join(restart)}})
        else:
            log.info("config reloaded", extra={"kv": {"printers": len(app[PRINTING].workers),
                                                     "scanners": len(app[DEVICES].readers)}})
        systemd.notify("STATUS=config reloaded" + (f"; restart needed for {', '.join(restart)}" if restart else ""))
        return {"ok": True, "restart_needed": restart}
    finally:
        systemd.notify("READY=1")
