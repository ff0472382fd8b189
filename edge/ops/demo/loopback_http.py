"""The demo's servers on loopback (hub, fault proxy) and its JSON client to them and to the store."""

from __future__ import annotations

import uuid

import aiohttp
from aiohttp import web


async def start_site(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True).start()
    return runner, f"http://{host}:{runner.addresses[0][1]}"


class HttpError(Exception):
    def __init__(self, status: int, body):
        super().__init__(f"HTTP {status}: {body}")
        self.status, self.body = status, body


class Client:
    """JSON over HTTP to the hub's admin API, the proxy's control API and the store's local API."""

    def __init__(self, session: aiohttp.ClientSession, base: str, headers: dict | None = None):
        self.session, self.base, self.headers = session, base, headers or {}

    async def call(self, method: str, path: str, body=None, *, expect=(200, 201), key: bool = False,
                   timeout: float = 10.0):
        headers = dict(self.headers)
        if key:
            headers["Idempotency-Key"] = str(uuid.uuid4())
        async with self.session.request(method, self.base + path, json=body, headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            try:
                data = await resp.json(content_type=None)
            except ValueError:
                data = None
            if expect and resp.status not in expect:
                raise HttpError(resp.status, data)
            return data if expect else (resp.status, data)
