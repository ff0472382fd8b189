"""Wake-up hints (protocol 3.4): the WebSocket a store keeps open to hear of new changes at once."""

from __future__ import annotations

import logging

from aiohttp import web

from hub.changes import feed_cursor
from hub.errors import bad_request
from hub.http import auth_store
from hub.state import HUB

log = logging.getLogger(__name__)

HEARTBEAT = 30.0                   # seconds between WebSocket pings


async def get_hints(request: web.Request) -> web.StreamResponse:
    store_id = await auth_store(request)
    hub = request.app[HUB]
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT)
    if not ws.can_prepare(request).ok:
        raise bad_request("this is a WebSocket: connect with 'Upgrade: websocket'")
    await ws.prepare(request)
    group = hub.sockets.setdefault(store_id, set())
    group.add(ws)  # before the hello's cursor is read: a change committed meanwhile is hinted, not lost
    log.info("hints connected", extra={"kv": {"store": store_id, "sockets": len(group)}})
    try:
        cursor = await hub.db.read(feed_cursor, store_id)
        await ws.send_json({"type": "hello", "epoch": hub.epoch, "cursor": cursor})
        async for _ in ws:  # the store says nothing; pings and pongs are handled by aiohttp
            pass
    except (ConnectionError, RuntimeError):
        pass
    finally:
        group.discard(ws)
        log.info("hints disconnected", extra={"kv": {"store": store_id, "sockets": len(group)}})
    return ws
