"""The API's operation registry under /api/v1, and the helpers every resource module uses.

Each operation is declared once with `@operation(...)` in its resource's module: that registers the
route and describes it for the OpenAPI document (edge/api/openapi.py), so the two cannot disagree.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Awaitable, Callable

from aiohttp import web
from pydantic import BaseModel, ValidationError

from edge.core import context
from edge.core.clock import business_date, utcnow
from edge.core.errors import InputError, validation_fields
from edge.services.app_keys import CONFIG, DEVICE, STORE
from edge.store import idempotency

PREFIX = "/api/v1"


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # "path" or "query"
    schema: dict
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    body: type[BaseModel] | None = None
    params: tuple[Param, ...] = ()
    responses: dict[int, str] = field(default_factory=dict)
    public: bool = False
    tag: str = "pos"
    writes: bool = True  # False: a POST that only reads (its body holds what must not be in a URL, e.g. a token)


OPERATIONS: list[Operation] = []


def operation(method: str, path: str, summary: str, *, body=None, params=(), responses=None, public=False,
              tag="pos", writes=True):
    def register(handler):
        OPERATIONS.append(Operation(method, PREFIX + path, summary, handler, body, tuple(params),
                                    responses or {200: "OK"}, public, tag, writes and method != "get"))
        return handler
    return register


def routes() -> list[web.RouteDef]:
    return [web.route(op.method.upper(), op.path, op.handler) for op in OPERATIONS]


def is_public(path: str) -> bool:
    return any(op.public and op.path == path for op in OPERATIONS)


# -- helpers --------------------------------------------------------------------------------------

def json_response(body: Any, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers,
                             dumps=lambda obj: json.dumps(obj, ensure_ascii=False, separators=(",", ":")))


def _reject_constant(name: str):
    raise InputError("invalid_json", f"{name} is not valid JSON", status=400)


async def parse_body(request: web.Request, model: type[BaseModel]) -> tuple[Any, BaseModel]:
    if request.content_type != "application/json":
        raise InputError("unsupported_media_type", "send the body as application/json", status=415)
    raw = await request.read()
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, a >4300-digit number, too deep nesting
        detail = f": {exc}" if isinstance(exc, json.JSONDecodeError) else ""
        raise InputError("invalid_json", f"the body is not valid UTF-8 JSON{detail}", status=400)
    try:
        return data, model.model_validate(data)
    except ValidationError as exc:
        fields = validation_fields(exc)
        raise InputError("invalid_body", "; ".join(f"{f['field']}: {f['reason']}" for f in fields), fields=fields)


async def write(request: web.Request, model: type[BaseModel], fn: Callable[..., dict], *args) -> web.Response:
    """The one path every write takes: key, body, validation, then one idempotent transaction."""
    idempotency_key(request)
    data, body = await parse_body(request, model)
    return await commit(request, data, body, fn, *args)


def idempotency_key(request: web.Request) -> str:
    return idempotency.check_key(request.headers.get("Idempotency-Key"))


async def commit(request: web.Request, data: Any, body: BaseModel, fn: Callable[..., dict], *args) -> web.Response:
    """`write` after the body was read, for a handler that asks something of the body before the transaction."""
    key = idempotency_key(request)
    req_hash = idempotency.request_hash(request.method, request.path, data)
    ctx = context.make(request[DEVICE], request.app[CONFIG].tz, request.app[CONFIG].day_cutoff)

    def run(conn):
        return idempotency.run_once(conn, key, req_hash, ctx, lambda: fn(conn, *args, body, ctx))

    status, result, replayed = await request.app[STORE].write(run)
    return json_response(result, status=status, headers={"Idempotent-Replayed": "true" if replayed else "false"})


def query_int(request: web.Request, name: str, default: int | None, low: int, high: int) -> int | None:
    # an empty value (`?limit=`) is refused like any other non-number: the document types it integer
    raw = request.query.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"-?[0-9]{1,19}", raw) or not low <= int(raw) <= high:
        raise InputError("invalid_query", f"{name} must be a whole number from {low} to {high}", field=name,
                         status=400)
    return int(raw)


def query_bool(request: web.Request, name: str) -> bool:
    raw = request.query.get(name)
    if raw is None:
        return False
    raw = raw.lower()
    if raw not in ("0", "1", "true", "false"):
        raise InputError("invalid_query", f"{name} must be true or false", field=name, status=400)
    return raw in ("1", "true")


def query_date(request: web.Request, name: str) -> str:
    raw = request.query.get(name)
    if raw is None:
        return business_date(utcnow(), request.app[CONFIG].tz, request.app[CONFIG].day_cutoff)
    try:
        return date.fromisoformat(raw).isoformat() if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", raw) else _bad_date(name)
    except ValueError:
        return _bad_date(name)


def _bad_date(name: str):
    raise InputError("invalid_query", f"{name} must be a date like 2026-11-21", field=name, status=400)


async def read(request: web.Request, fn, *args, **kwargs):
    return json_response(await request.app[STORE].read(lambda conn: fn(conn, *args, **kwargs)))


def cursor(name: str, description: str) -> Param:
    """A paging cursor that is a row id: what query_int(request, name, None, 0, 2**63 - 1) takes."""
    return Param(name, "query", {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}, description)


LIMIT = Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}, "Page size")
SKU = Param("sku", "path", {"type": "string"}, "Product SKU", True)
