"""A fault-injecting HTTP reverse proxy between the edge and the hub.

`store-edge fault-proxy --listen 127.0.0.1:8766 --upstream http://127.0.0.1:8765 [--seed N]` (or
`python -m hub.faultproxy ...`, or `build_proxy_app()` in-process) forwards every request to the
upstream and streams the answer back, and passes WebSockets through in both directions (so the
edge's hint WebSocket works through it). Used by fault tests, the demo's simulated outage and
installers' checks: point the edge's `[cloud] url` at the proxy instead of the hub.

Forwarding: method, path and raw query (byte for byte), body and headers, except the hop-by-hop
ones (RFC 9110 7.6.1, plus any named in `Connection`), `Host` (the upstream's own is sent) and
`Content-Length` (recomputed). Answers are streamed back as they arrive, compressed bodies
untouched. No redirects are followed, no cookies kept. An upstream that cannot be reached is
answered 502 `{"error": "upstream_unreachable"}`, like any reverse proxy (the edge treats it as 5xx).

Control API, on the same port under `/_proxy/` (never forwarded):

    PUT    /_proxy/faults  {"seed": 1, "rules": [RULE, ...]}   replace the rules, reseed the draws
    GET    /_proxy/faults                                     the rules with their `applied` counts
    DELETE /_proxy/faults                                     clear the rules
    PUT    /_proxy/down  /  DELETE /_proxy/down               full outage on / off
    GET    /_proxy/stats  /  DELETE /_proxy/stats             counters / reset the counters

    RULE = {"match": "/sync/v1/stores/",   path prefix (required)
            "method": "POST",              optional; any method when absent
            "fault": F,                    required, see below
            "probability": 0.25,           optional, default 1
            "count": 3,                    optional: applied at most this many times, then spent
            "seconds": 2.5,                stall only (required there)
            "status": 429,                 respond only (required there)
            "retry_after": 1}              respond only; default 1 for 429 and 503, null = no header

Rules are evaluated in order for each request (a WebSocket handshake is a GET): every rule that
matches and is not spent takes one draw from a `random.Random(seed)` (also when its probability
is 1), and the first whose draw is below its probability applies. The generator is reseeded by
every PUT (`seed` defaults to `--seed`), so the same rules and the same sequence of requests give
the same faults. Faults:

- `drop`: the request is read, then the TCP connection is aborted without any answer: the client
  sees a disconnect (aiohttp: ServerDisconnectedError). The upstream never sees the request.
- `error_after_upstream`: the request is forwarded, the upstream commits and answers, its answer
  is read in full and discarded, and the client gets 500 `{"error": "injected"}` instead: the
  "answer lost after the hub committed" case. For a WebSocket: the upstream handshake completes,
  the upstream socket is closed, and the client gets the 500.
- `stall`: the request is read, held for `seconds`, then forwarded **whether or not the client is
  still connected** (a client with a shorter timeout has given up by then). This models a slow
  network on which the hub still commits: the edge timed out, yet the events were applied, and
  its retry must be answered `duplicate`. That is the harder case for the edge, and the one a
  dead client cannot otherwise produce. The answer goes to the client if it is still there, is
  read and discarded if not. The forward runs in its own task, so it completes even if the server
  cancels handlers on disconnect. If an outage (`PUT /_proxy/down`) began meanwhile, the request
  is dropped instead. A stalled WebSocket handshake is only opened upstream if the
  client is still connected (a tunnel with one end gone carries nothing).
- `respond`: answered at once with `status` and the non-protocol body `{"error": "injected"}`
  (plus `Retry-After` for 429/503), without contacting the upstream.
- `down`: the connection is aborted at once, before reading the request, like a dead link; and
  every open WebSocket whose path starts with the rule's `match` is torn down too (the link is
  dead at that moment). When rules are installed, each open WebSocket matching a `down` rule whose
  probability is 1 (and whose method is unset or GET) is torn down at once; that counts as an
  application of the rule (uses up its `count`).

`PUT /_proxy/down` is a full outage: every request is aborted before it is read (rules are not
consulted and draw nothing), and every open WebSocket is torn down at once. A torn-down WebSocket
is aborted on the client side (the client sees the connection reset, as with a dead link) and
closed with 1001 (going away) towards the upstream.

`GET /_proxy/stats` counts the requests that reached the upstream (`forwarded`, including stalled
and error_after_upstream ones), `upstream_errors` (502s) and each fault applied, in total and by
request path (query excluded; at most 200 distinct paths, the rest under "(other)").

Logs: one line per applied fault at debug; rule changes, outages and a summary at shutdown at info.

Note for clients: aiohttp (3.10 and later) resends an idempotent request (GET, HEAD, OPTIONS, PUT,
DELETE) once by itself when the connection is dropped, so a single `drop` of a GET is invisible to
an aiohttp client: use a `count` of 2 or more, or none, to make such a request fail.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import random
import re
import signal
import sys
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web
from multidict import CIMultiDict
from yarl import URL

log = logging.getLogger("hub.faultproxy")

FAULTS = ("drop", "error_after_upstream", "stall", "respond", "down")
CONTROL = "/_proxy"
INJECTED = {"error": "injected"}
MAX_STALL_SECONDS = 3600.0
MAX_PATHS = 200  # distinct paths kept in the stats
MAX_BODY = 256 * 1024 * 1024  # the proxy does not refuse what the upstream may accept
SHUTDOWN_TIMEOUT = 2.0

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                        "proxy-connection", "te", "trailer", "trailers", "transfer-encoding", "upgrade"})
REQUEST_SKIP = HOP_BY_HOP | {"host", "content-length", "expect"}
WEBSOCKET_SKIP = REQUEST_SKIP | {"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
                                 "sec-websocket-protocol", "sec-websocket-accept"}
# headers aiohttp's client would add by itself when the original request did not carry them
NO_AUTO_HEADERS = frozenset({"User-Agent", "Accept", "Accept-Encoding", "Content-Type"})
SENDABLE_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})
_METHOD = re.compile(r"^[A-Za-z]{1,20}$")


# -- rules ----------------------------------------------------------------------------------------

class RuleError(ValueError):
    """A control request the proxy refuses; the message names the field."""


@dataclass
class Rule:
    match: str
    fault: str
    method: str | None = None
    probability: float = 1.0
    count: int | None = None
    seconds: float | None = None
    status: int | None = None
    retry_after: int | None = None
    applied: int = 0

    @property
    def spent(self) -> bool:
        return self.count is not None and self.applied >= self.count

    def matches(self, method: str, path: str) -> bool:
        return path.startswith(self.match) and (self.method is None or self.method == method)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"match": self.match, "fault": self.fault}
        if self.method is not None:
            out["method"] = self.method
        out["probability"] = self.probability
        out["count"] = self.count
        if self.fault == "stall":
            out["seconds"] = self.seconds
        if self.fault == "respond":
            out["status"] = self.status
            out["retry_after"] = self.retry_after
        out["applied"] = self.applied
        out["remaining"] = None if self.count is None else max(0, self.count - self.applied)
        return out


_RULE_FIELDS = ("match", "method", "fault", "probability", "count", "seconds", "status", "retry_after")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


def parse_rule(raw, where: str = "rule") -> Rule:
    if not isinstance(raw, dict):
        raise RuleError(f"{where}: must be an object")
    unknown = sorted(set(raw) - set(_RULE_FIELDS))
    if unknown:
        raise RuleError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(_RULE_FIELDS)}")
    match = raw.get("match")
    if not isinstance(match, str) or not match.startswith("/"):
        raise RuleError(f"{where}.match: required, a path prefix starting with '/'")
    fault = raw.get("fault")
    if fault not in FAULTS:
        raise RuleError(f"{where}.fault: must be one of {', '.join(FAULTS)}")
    method = raw.get("method")
    if method is not None and (not isinstance(method, str) or not _METHOD.match(method)):
        raise RuleError(f"{where}.method: must be an HTTP method such as GET or POST")
    probability = raw.get("probability", 1.0)
    if not _is_number(probability) or not 0 <= probability <= 1:
        raise RuleError(f"{where}.probability: must be a number from 0 to 1")
    count = raw.get("count")
    if count is not None and (not _is_int(count) or count < 1):
        raise RuleError(f"{where}.count: must be a whole number of at least 1 (or absent: no limit)")
    rule = Rule(match=match, fault=fault, method=method.upper() if method else None,
                probability=float(probability), count=count)
    if fault == "stall":
        seconds = raw.get("seconds")
        if not _is_number(seconds) or not 0 < seconds <= MAX_STALL_SECONDS:
            raise RuleError(f"{where}.seconds: required for stall, a number of seconds above 0 and at most "
                            f"{MAX_STALL_SECONDS:g}")
        rule.seconds = float(seconds)
    elif "seconds" in raw:
        raise RuleError(f"{where}.seconds: only applies to the stall fault")
    if fault == "respond":
        status = raw.get("status")
        if not _is_int(status) or not 200 <= status <= 599:
            raise RuleError(f"{where}.status: required for respond, an HTTP status from 200 to 599")
        rule.status = status
        if "retry_after" in raw:
            retry_after = raw["retry_after"]
            if retry_after is not None and (not _is_int(retry_after) or retry_after < 0):
                raise RuleError(f"{where}.retry_after: must be a whole number of seconds, or null for none")
            rule.retry_after = retry_after
        elif status in (429, 503):
            rule.retry_after = 1
    else:
        for name in ("status", "retry_after"):
            if name in raw:
                raise RuleError(f"{where}.{name}: only applies to the respond fault")
    return rule


def parse_faults(body, default_seed: int = 0) -> tuple[int, list[Rule]]:
    """Validate a `PUT /_proxy/faults` body: (seed, rules). Raises RuleError naming the field."""
    if not isinstance(body, dict):
        raise RuleError('body: must be a JSON object {"seed": N, "rules": [...]}')
    unknown = sorted(set(body) - {"seed", "rules"})
    if unknown:
        raise RuleError(f"body: unknown field(s) {', '.join(unknown)}; known: seed, rules")
    seed = body.get("seed")
    if seed is None:
        seed = default_seed
    elif not _is_int(seed):
        raise RuleError("seed: must be a whole number")
    rules = body.get("rules")
    if not isinstance(rules, list):
        raise RuleError("rules: required, a list of rules (an empty list clears them)")
    return seed, [parse_rule(raw, f"rules[{i}]") for i, raw in enumerate(rules)]


# -- helpers --------------------------------------------------------------------------------------

def _connection_tokens(headers) -> set[str]:
    tokens = set()
    for value in headers.getall("Connection", ()):
        tokens.update(t.strip().lower() for t in value.split(",") if t.strip())
    return tokens


def _copy_headers(headers, skip: frozenset[str]) -> CIMultiDict:
    drop = skip | _connection_tokens(headers)
    out = CIMultiDict()
    for name, value in headers.items():
        if name.lower() not in drop:
            out.add(name, value)
    return out


def _is_websocket(request: web.BaseRequest) -> bool:
    return (request.method == "GET" and request.headers.get("Upgrade", "").lower() == "websocket"
            and "upgrade" in _connection_tokens(request.headers))


def _gone(request: web.BaseRequest) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _abort(request: web.BaseRequest) -> web.Response:
    """Abort the client's TCP connection: no answer at all. The response returned is never sent."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    return web.Response(status=500)


def injected_response(status: int = 500, retry_after: int | None = None) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    if status in (204, 304):
        return web.Response(status=status, headers=headers)
    return web.json_response(INJECTED, status=status, headers=headers)


def _close_code(code) -> int:
    if _is_int(code) and (code in SENDABLE_CLOSE_CODES or 3000 <= code <= 4999):
        return code
    return 1000


def _close_message(extra) -> bytes:
    if isinstance(extra, str):
        return extra.encode("utf-8")[:123]
    return b""


def check_upstream(url: str) -> URL:
    parsed = URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"upstream must be an http:// or https:// URL, got {url!r}")
    if parsed.query_string or parsed.fragment:
        raise ValueError(f"upstream must not have a query or fragment: {url!r}")
    return parsed


# -- WebSocket tunnels ----------------------------------------------------------------------------

class _Tunnel:
    """One WebSocket passed through: client <-> proxy <-> upstream, frames relayed as they come."""

    def __init__(self, request: web.Request, client: web.WebSocketResponse,
                 upstream: aiohttp.ClientWebSocketResponse):
        self.request = request
        self.path = request.path
        self.client = client
        self.upstream = upstream
        self.closing = False  # the proxy is ending this tunnel: an upstream end is expected

    def kill(self) -> None:
        """Tear down like a dead link: the client's connection is reset; the relay closes upstream."""
        self.closing = True
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    async def run(self) -> None:
        tasks = [asyncio.ensure_future(self._client_to_upstream()),
                 asyncio.ensure_future(self._upstream_to_client())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            # the first direction to end closed the other side; let its relay see the close
            await asyncio.wait(tasks, timeout=SHUTDOWN_TIMEOUT)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if not self.upstream.closed:
                await self.upstream.close(code=1001)

    async def _relay(self, source, sink) -> bool:
        """Pass frames from source to sink until source ends; True if it ended with a close frame."""
        while True:
            msg = await source.receive()
            if msg.type is WSMsgType.TEXT:
                await sink.send_str(msg.data)
            elif msg.type is WSMsgType.BINARY:
                await sink.send_bytes(msg.data)
            elif msg.type is WSMsgType.PING:
                await sink.ping(msg.data)
            elif msg.type is WSMsgType.PONG:
                await sink.pong(msg.data)
            elif msg.type is WSMsgType.CLOSE:
                self.closing = True
                await sink.close(code=_close_code(msg.data), message=_close_message(msg.extra))
                return True
            else:  # CLOSING, CLOSED, ERROR: gone without a close frame
                return False

    async def _client_to_upstream(self) -> None:
        try:
            if not await self._relay(self.client, self.upstream):
                self.closing = True
                await self.upstream.close(code=1001)
        except (ConnectionError, aiohttp.ClientError, RuntimeError):
            self.closing = True

    async def _upstream_to_client(self) -> None:
        try:
            if await self._relay(self.upstream, self.client):
                return
        except (ConnectionError, aiohttp.ClientError, RuntimeError):
            pass
        if not self.closing:  # the upstream vanished without a close frame: so does the client's link
            self.kill()


# -- the proxy ------------------------------------------------------------------------------------

class FaultProxy:
    """The proxy's state: rules, outage switch, counters, open tunnels, the upstream session."""

    def __init__(self, upstream: str, seed: int = 0):
        self.upstream = check_upstream(upstream)
        self._base = str(self.upstream).rstrip("/")
        self.default_seed = seed
        self.seed = seed
        self.rng = random.Random(seed)
        self.rules: list[Rule] = []
        self.down = False
        self.session: aiohttp.ClientSession | None = None
        self.tunnels: dict[_Tunnel, None] = {}  # insertion-ordered set
        self.tasks: set[asyncio.Task] = set()
        self.reset_stats()
        self._upstream_failing = False

    # -- state changes (also for in-process use, e.g. the demo's outage) --

    def set_faults(self, body) -> list[Rule]:
        """Replace the rules from a `PUT /_proxy/faults` body; raises RuleError."""
        seed, rules = parse_faults(body, self.default_seed)
        self._log_rules_summary("fault rules replaced" if self.rules else None)
        self.rules, self.seed, self.rng = rules, seed, random.Random(seed)
        log.info("fault rules set", extra={"kv": {"rules": len(rules), "seed": seed,
                                                  "faults": ",".join(r.fault for r in rules) or "-"}})
        for tunnel in list(self.tunnels):
            for rule in rules:
                if (rule.fault == "down" and rule.probability >= 1 and not rule.spent
                        and rule.matches("GET", tunnel.path)):
                    rule.applied += 1
                    self._teardown(tunnel, rule)
                    break
        return rules

    def clear_faults(self) -> None:
        self._log_rules_summary("fault rules cleared")
        self.rules = []

    def set_down(self, down: bool) -> None:
        if down != self.down:
            log.info("outage on: every request and WebSocket dropped" if down else "outage off",
                     extra={"kv": {"open_websockets": len(self.tunnels)}})
        self.down = down
        if down:
            for tunnel in list(self.tunnels):
                self._teardown(tunnel, None)

    def reset_stats(self) -> None:
        self.forwarded = 0
        self.upstream_errors = 0
        self.faults = dict.fromkeys(FAULTS, 0)
        self.by_path: dict[str, dict[str, int]] = {}

    def stats(self) -> dict[str, Any]:
        return {"down": self.down, "forwarded": self.forwarded, "upstream_errors": self.upstream_errors,
                "faults": dict(self.faults), "open_websockets": len(self.tunnels),
                "by_path": {path: dict(counts) for path, counts in self.by_path.items()},
                "seed": self.seed, "rules": [rule.as_json() for rule in self.rules]}

    def summary(self) -> dict[str, Any]:
        kv: dict[str, Any] = {"forwarded": self.forwarded, "upstream_errors": self.upstream_errors}
        kv.update(self.faults)
        return kv

    # -- bookkeeping --

    def _count(self, path: str, key: str) -> None:
        if key == "forwarded":
            self.forwarded += 1
        elif key == "upstream_errors":
            self.upstream_errors += 1
        else:
            self.faults[key] += 1
        bucket = self.by_path.get(path)
        if bucket is None:
            if len(self.by_path) >= MAX_PATHS:
                bucket = self.by_path.setdefault("(other)", {})
            else:
                bucket = self.by_path[path] = {}
        bucket[key] = bucket.get(key, 0) + 1

    def _applied(self, request: web.BaseRequest, fault: str, rule: Rule | None) -> None:
        self._count(request.path, fault)
        if log.isEnabledFor(logging.DEBUG):
            kv = {"fault": fault, "method": request.method, "path": request.path}
            if rule is not None:
                kv["rule"] = self.rules.index(rule) if rule in self.rules else "-"
            log.debug("fault applied", extra={"kv": kv})

    def _log_rules_summary(self, message: str | None) -> None:
        if message and self.rules:
            log.info(message, extra={"kv": {
                "applied": ",".join(f"{r.fault}:{r.applied}" for r in self.rules), **self.summary()}})

    def _pick(self, method: str, path: str) -> Rule | None:
        for rule in self.rules:
            if rule.spent or not rule.matches(method, path):
                continue
            if self.rng.random() < rule.probability:
                rule.applied += 1
                return rule
        return None

    def _teardown(self, tunnel: _Tunnel, rule: Rule | None) -> None:
        self._count(tunnel.path, "down")
        log.debug("fault applied", extra={"kv": {"fault": "down", "websocket": tunnel.path,
                                                 "rule": "outage" if rule is None else self.rules.index(rule)}})
        tunnel.kill()

    def _target(self, request: web.BaseRequest) -> URL:
        return URL(self._base + request.raw_path, encoded=True)

    def _upstream_failed(self, request: web.BaseRequest, exc: BaseException) -> web.Response:
        self._count(request.path, "upstream_errors")
        if not self._upstream_failing:
            self._upstream_failing = True
            log.warning("upstream unreachable", extra={"kv": {"upstream": str(self.upstream),
                                                              "error": repr(exc)}})
        else:
            log.debug("upstream unreachable", extra={"kv": {"path": request.path, "error": repr(exc)}})
        return web.json_response({"error": "upstream_unreachable", "message": str(exc) or repr(exc)},
                                 status=502)

    def _upstream_ok(self) -> None:
        if self._upstream_failing:
            self._upstream_failing = False
            log.info("upstream reachable again", extra={"kv": {"upstream": str(self.upstream)}})

    # -- request handling --

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.down:
            self._applied(request, "down", None)
            return _abort(request)
        websocket = _is_websocket(request)
        rule = self._pick(request.method, request.path)
        if rule is not None and rule.fault == "down":
            self._applied(request, "down", rule)
            for tunnel in list(self.tunnels):
                if tunnel.path.startswith(rule.match):
                    self._teardown(tunnel, rule)
            return _abort(request)
        body = b"" if websocket else await request.read()
        if rule is None:
            return await (self._tunnel(request) if websocket else self._forward(request, body))
        self._applied(request, rule.fault, rule)
        if rule.fault == "drop":
            return _abort(request)
        if rule.fault == "respond":
            return injected_response(rule.status, rule.retry_after)
        if rule.fault == "error_after_upstream":
            if websocket:
                return await self._tunnel(request, fail=True)
            return await self._forward(request, body, fail=True)
        # stall: the forward runs in its own task, so a handler cancelled on disconnect cannot stop it
        return await asyncio.shield(self._spawn(self._stall(request, body, rule.seconds, websocket)))

    async def _stall(self, request: web.Request, body: bytes, seconds: float,
                     websocket: bool) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        if self.down:  # the outage began while the request was held: it never arrives
            self._applied(request, "down", None)
            return _abort(request)
        if websocket:
            return web.Response(status=500) if _gone(request) else await self._tunnel(request)
        return await self._forward(request, body)

    async def _forward(self, request: web.Request, body: bytes, fail: bool = False) -> web.StreamResponse:
        assert self.session is not None
        try:
            resp = await self.session.request(
                request.method, self._target(request), headers=_copy_headers(request.headers, REQUEST_SKIP),
                data=body or None, allow_redirects=False, skip_auto_headers=NO_AUTO_HEADERS)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            return self._upstream_failed(request, exc)
        self._upstream_ok()
        self._count(request.path, "forwarded")
        try:
            if fail or _gone(request):
                await resp.read()  # the upstream finishes its work; its answer is lost
                return injected_response(500) if fail else web.Response(status=500)
            return await self._relay(request, resp)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            log.debug("upstream answer broken", extra={"kv": {"path": request.path, "error": repr(exc)}})
            return _abort(request)
        finally:
            resp.release()

    async def _relay(self, request: web.Request, resp: aiohttp.ClientResponse) -> web.StreamResponse:
        out = web.StreamResponse(status=resp.status, reason=resp.reason)
        out.headers.extend(_copy_headers(resp.headers, HOP_BY_HOP))
        try:
            await out.prepare(request)
            async for chunk in resp.content.iter_any():
                await out.write(chunk)
            await out.write_eof()
        except ConnectionError:  # the client went away mid-answer
            pass
        except (aiohttp.ClientError, asyncio.TimeoutError):  # the upstream broke mid-answer: so does ours
            _abort(request)
        return out

    async def _tunnel(self, request: web.Request, fail: bool = False) -> web.StreamResponse:
        assert self.session is not None
        protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        try:
            upstream = await self.session.ws_connect(
                self._target(request), headers=_copy_headers(request.headers, WEBSOCKET_SKIP),
                protocols=protocols, autoping=False, compress=0, max_msg_size=0)
        except aiohttp.WSServerHandshakeError as exc:
            self._upstream_ok()
            self._count(request.path, "forwarded")
            status = exc.status if exc.status and exc.status >= 400 else 502
            return web.json_response({"error": "websocket_refused", "message": f"upstream answered {exc.status}"},
                                     status=status)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            return self._upstream_failed(request, exc)
        self._upstream_ok()
        self._count(request.path, "forwarded")
        if fail or _gone(request):
            await upstream.close(code=1001)
            return injected_response(500) if fail else web.Response(status=500)
        client = web.WebSocketResponse(protocols=(upstream.protocol,) if upstream.protocol else (),
                                       autoping=False, compress=False, max_msg_size=0)
        try:
            await client.prepare(request)
        except ConnectionError:
            await upstream.close(code=1001)
            return client
        tunnel = _Tunnel(request, client, upstream)
        self.tunnels[tunnel] = None
        # the relay runs in its own task: a server that cancels handlers when the client's connection
        # closes (aiohttp's TestServer does) must not cut the close handshake towards the upstream short
        await asyncio.shield(self._spawn(self._relay_tunnel(tunnel)))
        return client

    async def _relay_tunnel(self, tunnel: _Tunnel) -> None:
        try:
            await tunnel.run()
        finally:
            self.tunnels.pop(tunnel, None)

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # -- control API --

    async def control(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        endpoints = {
            "faults": {"GET": self._get_faults, "PUT": self._put_faults, "DELETE": self._delete_faults},
            "down": {"GET": self._get_down, "PUT": self._put_down, "DELETE": self._delete_down},
            "stats": {"GET": self._get_stats, "DELETE": self._delete_stats},
        }
        methods = endpoints.get(name)
        if methods is None:
            return web.json_response({"error": "not_found", "message": "control endpoints: /_proxy/faults, "
                                      "/_proxy/down, /_proxy/stats"}, status=404)
        handler = methods.get(request.method)
        if handler is None:
            return web.json_response({"error": "method_not_allowed", "message": f"{request.path} accepts "
                                      f"{', '.join(methods)}"}, status=405, headers={"Allow": ", ".join(methods)})
        return await handler(request)

    async def _get_faults(self, request: web.Request) -> web.Response:
        return web.json_response({"seed": self.seed, "rules": [r.as_json() for r in self.rules]})

    async def _put_faults(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read() or b"null")
        except (ValueError, UnicodeDecodeError):
            return web.json_response({"error": "invalid_rules", "message": "body: not JSON"}, status=400)
        try:
            self.set_faults(body)
        except RuleError as exc:
            return web.json_response({"error": "invalid_rules", "message": str(exc)}, status=400)
        return await self._get_faults(request)

    async def _delete_faults(self, request: web.Request) -> web.Response:
        self.clear_faults()
        return await self._get_faults(request)

    async def _get_down(self, request: web.Request) -> web.Response:
        return web.json_response({"down": self.down})

    async def _put_down(self, request: web.Request) -> web.Response:
        self.set_down(True)
        return web.json_response({"down": True})

    async def _delete_down(self, request: web.Request) -> web.Response:
        self.set_down(False)
        return web.json_response({"down": False})

    async def _get_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _delete_stats(self, request: web.Request) -> web.Response:
        self.reset_stats()
        return web.json_response(self.stats())

    # -- lifecycle --

    async def session_context(self, app: web.Application):
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        try:
            yield
        finally:
            await self.session.close()

    async def on_shutdown(self, app: web.Application) -> None:
        for tunnel in list(self.tunnels):
            tunnel.kill()
        for task in list(self.tasks):
            task.cancel()


PROXY = web.AppKey("faultproxy", FaultProxy)


def build_proxy_app(upstream: str, seed: int = 0) -> web.Application:
    """The proxy as an aiohttp application; `app[PROXY]` is its state (set_faults, set_down, stats)."""
    proxy = FaultProxy(upstream, seed)
    app = web.Application(client_max_size=MAX_BODY)
    app[PROXY] = proxy
    app.cleanup_ctx.append(proxy.session_context)
    app.on_shutdown.append(proxy.on_shutdown)
    app.router.add_route("*", CONTROL + "/{name:.*}", proxy.control)
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    return app


# -- command line ---------------------------------------------------------------------------------

def _listen_address(text: str) -> str:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, e.g. 127.0.0.1:8766, got {text!r}")
    return text


def _upstream_url(text: str) -> str:
    try:
        check_upstream(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", required=True, type=_listen_address, metavar="HOST:PORT",
                        help="address to listen on, e.g. 127.0.0.1:8766 (port 0: any free port)")
    parser.add_argument("--upstream", required=True, type=_upstream_url, metavar="URL",
                        help="the hub's base URL, e.g. http://127.0.0.1:8765")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the fault draws when PUT /_proxy/faults gives none (default 0)")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"),
                        help="debug logs one line per applied fault")


async def serve(host: str, port: int, upstream: str, seed: int = 0, stop: asyncio.Event | None = None) -> None:
    """Run the proxy until SIGTERM/SIGINT (or `stop` is set)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    app = build_proxy_app(upstream, seed)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        bound = runner.addresses[0] if runner.addresses else (host, port)
        log.info("listening", extra={"kv": {"address": f"http://{host}:{bound[1]}/", "upstream": upstream,
                                           "seed": seed, "control": f"http://{host}:{bound[1]}{CONTROL}/"}})
        await stop.wait()
    finally:
        summary = app[PROXY].summary()
        await runner.cleanup()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    log.info("stopped", extra={"kv": summary})


def run(args) -> int:
    from edge.core import log as log_mod  # noqa: PLC0415

    log_mod.setup(getattr(args, "log_level", "info"))
    host, _, port = args.listen.rpartition(":")
    try:
        asyncio.run(serve(host.strip("[]"), int(port), args.upstream, args.seed))
    except OSError as exc:  # port taken, address not available
        log.error("cannot start", extra={"kv": {"listen": args.listen, "error": str(exc)}})
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hub.faultproxy",
                                     description="fault-injecting reverse proxy between the edge and the hub")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
