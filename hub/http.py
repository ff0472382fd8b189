"""HTTP plumbing shared by the protocol and admin handlers: authentication, JSON bodies and
answers, and the middleware that turns every error into `{"epoch"?, "error", "message"}`."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
from typing import Any, Awaitable, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from edge.core.clock import iso
from edge.core.errors import validation_fields
from edge.core.serving import client_gone
from hub.errors import HubError, bad_request, dumps, sha256
from hub.state import HUB, Hub
from protocol.fields import show

log = logging.getLogger(__name__)

AUTHORISED = web.RequestKey("authorised", bool)
GONE_POLL = 0.25  # seconds between looks at an upload's connection while its batch waits for the writer
T = TypeVar("T")


def answer(request: web.Request, body: dict, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    if request.get(AUTHORISED):
        body = {"epoch": request.app[HUB].epoch, **body}
    return web.Response(body=dumps(body), status=status, content_type="application/json", headers=headers)


@web.middleware
async def errors_middleware(request: web.Request, handler):
    """Every error is JSON `{"epoch"?, "error", "message"}`; never a stack trace."""
    try:
        return await handler(request)
    except (ConnectionResetError, asyncio.CancelledError) as exc:
        return client_gone(request, exc, log)
    except HubError as exc:
        return answer(request, {"error": exc.code, "message": exc.message, **exc.extra}, exc.status, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                405: "method_not_allowed", 413: "body_too_large"}.get(exc.status, "http_error")
        return answer(request, {"error": code, "message": exc.reason}, exc.status)
    except Exception:
        log.exception("request failed", extra={"kv": {"method": request.method, "path": show(request.path, 100)}})
        return answer(request, {"error": "internal_error", "message": "internal error; see the hub's log"}, 500)


def gone(request: web.Request) -> bool:
    """The client's connection is closed (it gave up: a timeout, a killed daemon)."""
    return request.transport is None or request.transport.is_closing()


async def unless_gone(request: web.Request, work: Awaitable[T], poll: float = GONE_POLL) -> T:
    """Await `work`; if the client's connection goes first, cancel it and raise ConnectionResetError
    (the error middleware logs one info line). A write still queued at the Store is then never run;
    one already running commits, and the protocol's sequence numbers make the client's resend of it
    a duplicate. aiohttp cancels the handler when its client leaves only if asked to
    (handler_cancellation, as its test server does); otherwise it tells no one, so the transport is
    looked at every `poll` seconds."""
    if gone(request):
        if asyncio.iscoroutine(work):
            work.close()  # never started: no "never awaited" warning
        raise ConnectionResetError("the client went away")
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=poll)
            if done:
                return task.result()
            if gone(request):
                break
    finally:
        if not task.done():  # gone, or this handler cancelled: nobody will read the result
            task.cancel()
    await asyncio.wait({task})
    if task.cancelled():
        raise ConnectionResetError("the client went away")
    return task.result()  # it finished meanwhile: its result stands


def bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


async def auth_store(request: web.Request) -> str:
    """The store the token belongs to, which must be the store of the path: 401 / 403 otherwise."""
    hub = request.app[HUB]
    store_id = request.match_info["store_id"]
    token = bearer(request)
    if token is None:
        hub.auth_refused(request, f"none:{request.remote}", "no token")
        raise HubError(401, "unauthorized", "send 'Authorization: Bearer <store token>'")
    owner = await hub.db.fetchval("SELECT store_id FROM stores WHERE token_hash = $1", sha256(token))
    if owner is None:
        hub.auth_refused(request, f"unknown:{request.remote}", "unknown token")
        raise HubError(401, "unauthorized", "unknown store token (rotated or never issued)")
    if owner != store_id:
        hub.auth_refused(request, f"other:{owner}", f"token of {owner}")
        raise HubError(403, "forbidden", "this token belongs to another store")
    request[AUTHORISED] = True
    hub.last_seen[owner] = iso(hub.now())
    return owner


def auth_admin(request: web.Request) -> Hub:
    hub = request.app[HUB]
    token = bearer(request)
    if token is None or not hmac.compare_digest(sha256(token), hub.admin_hash):
        hub.auth_refused(request, f"admin:{request.remote}", "admin token missing or wrong")
        raise HubError(401, "unauthorized", "send 'Authorization: Bearer <admin token>'")
    request[AUTHORISED] = True
    return hub


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


async def json_body(request: web.Request) -> Any:
    raw = await request.read()
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, NaN, a >4300-digit number, deep nesting
        detail = f": {exc}" if isinstance(exc, json.JSONDecodeError) else ""
        raise bad_request(f"the body is not valid UTF-8 JSON{detail}") from None


async def model_body(request: web.Request, model: type[BaseModel]):
    data = await json_body(request)
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise bad_request("the body holds a lone UTF-16 surrogate (\\ud800-\\udfff): not valid Unicode") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields = validation_fields(exc)
        raise bad_request("; ".join(f"{f['field']}: {f['reason']}" for f in fields), fields=fields) from None


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"-?[0-9]{1,19}", raw) or not low <= int(raw) <= high:
        raise bad_request(f"{name} must be a whole number from {low} to {high}")
    return int(raw)



async def optional_body(request: web.Request, model: type[BaseModel]):
    """A body that may be left out (no bytes): the model's defaults."""
    if not (await request.read()).strip():
        return model()
    return await model_body(request, model)
