"""`GET /health`: the load balancer's check of one hub process, without a token.

200 `{"status": "ok"}` while this process reads its database within HEALTH_TIMEOUT seconds; else
503 with Retry-After, so the balancer sends the stores to another process until this one recovers.
The answer says nothing else (it is unauthenticated); the cause is in the log, once per change of
state, and `hub_database_up` on /metrics (which checks the same way at each scrape: a balancer
without active checks, such as nginx's free version, never calls /health).
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from hub.db import Conn
from hub.errors import HubError
from hub.http import answer
from hub.state import HUB, Hub

log = logging.getLogger(__name__)

HEALTH_TIMEOUT = 2.0


async def ping(db: Conn) -> int:
    return await db.fetchval("SELECT 1")


async def database_reachable(hub: Hub) -> bool:
    """Whether this process reads its database in time; `hub_database_up` and a log line when that changes."""
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT):
            await hub.db.read(ping)
    except Exception as exc:  # whatever the engine raises: the process cannot serve
        if hub.metrics.database_up(False):
            log.warning("database unreachable", extra={"kv": {"error": type(exc).__name__, "detail": str(exc)[:200]}})
        return False
    if hub.metrics.database_up(True):
        log.info("database reachable again")
    return True


async def get_health(request: web.Request) -> web.Response:
    if not await database_reachable(request.app[HUB]):
        raise HubError(503, "unavailable", "this hub process cannot reach its database", headers={"Retry-After": "5"})
    return answer(request, {"status": "ok"})
