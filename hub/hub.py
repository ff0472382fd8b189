"""The reference cloud hub: the cloud side of docs/sync-protocol.md, for many stores.

`store-edge hub --data DIR` runs an aiohttp server on a SQLite database (DIR/hub.db, through
edge.db.Store and its single writer thread, with the migrations of sync/hub_schema.py):

- /sync/v1/stores/{store_id}/...  the protocol: events upload, changes feed, state, balances, hints
- /admin/v1/...                   the chain's side: stores and tokens, catalog, online orders,
                                  corrections, coupons and keys, availability, epoch
                                  (docs/hub-admin-api.md)

The epoch lives in the database. DIR/hub.highwater records the highest change cursor and event row
the hub has committed; a database found below it at start was restored from an older copy, so the
hub starts a new epoch and every store resends and pulls again (protocol section 6).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Callable, Literal
from zoneinfo import ZoneInfo

from aiohttp import WSCloseCode, web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edge.core import log as log_mod
from edge.core.clock import iso
from edge.store.db import SchemaTooNew, Store
from edge.core.serving import serve_until_stopped
from edge.core.errors import validation_fields
from edge.store.migrations import MOVE_REASONS, RESERVATION_REASONS
from edge.core.schemas import ProductIn, Qty, Sku
from edge.core import jws
from hub.schema import HUB_MIGRATIONS
from sync.reconcile import checksum as balances_checksum

log = logging.getLogger("hub.hub")

PROTOCOL = 1
EVENT_TYPES = frozenset({
    "sale.recorded", "sale.returned", "stock.received", "stock.adjusted", "stock.counted", "stock.corrected",
    "order.received", "order.state_changed", "order.conflict", "change.rejected", "dead_letter.discarded",
    "event.voided", "print.result", "pickup.verified", "pickup.reversed", "coupon.redeemed",
})
PICKUP_EVENT_TYPES = frozenset({"pickup.verified", "pickup.reversed"})
ORDER_EVENT_TYPES = frozenset({"order.received", "order.state_changed", "order.conflict", "print.result",
                               *PICKUP_EVENT_TYPES})
STORE_ORDER_STATES = ("accepted", "ready", "picked_up", "cancelled", "refunded")
CLOSED_ORDER_STATES = ("picked_up", "cancelled", "refunded")
ORDER_STATES = ("created", *STORE_ORDER_STATES, "rejected")
PRINT_KINDS = ("order_ticket", "pickup_slip")
PRINT_RESULTS = ("printed", "uncertain", "expired", "failed", "confirmed_printed", "reprinted")
PRINTED_RESULTS = ("printed", "confirmed_printed")   # the job's paper came out
MAX_PRINT_ATTEMPTS = 1_000_000
PUBLISHABLE = ("coupon.defined", "coupon.revoked", "key.published", "key.revoked")
PICKUP_METHODS = ("token", "code")
PICKUP_TOKEN_TTL = 7 * 86400       # seconds a pickup token is valid
PICKUP_CODE_DIGITS = 6
MAX_DISCOUNT_FEN = 1_000_000_000
COUPON_FLAGS = ("over_use", "revoked", "wrong_store")

MAX_BATCH = 500
MAX_SEQ = 2 ** 53                  # JSON-safe, far inside SQLite's 64 bits
MAX_MOVE_QTY = 1_000_000_000
MAX_MOVES = 20_000
BODY_LIMIT = 16 * 1024 * 1024
HEARTBEAT = 30.0                   # seconds between WebSocket pings
SEND_TIMEOUT = 5.0                 # a hint that cannot be written in this time is dropped
AUTH_LOG_EVERY = 300.0             # one line per store (or address) and 5 minutes for refused tokens
HUB_TZ = ZoneInfo("Asia/Shanghai") # the business day of order numbers

EVENT_ID = re.compile(r"^[\x21-\x7e]{1,128}$")
SKU = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,63}$")
STORE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
ORDER_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$"
TIME = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})$")


# -- errors and JSON ------------------------------------------------------------------------------

class HubError(Exception):
    """An answer other than 2xx: `{"epoch", "error": code, "message", ...extra}`."""

    def __init__(self, status: int, code: str, message: str, **extra):
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def bad_request(message: str, **extra) -> HubError:
    return HubError(400, "invalid_request", message, **extra)


def not_found(message: str) -> HubError:
    return HubError(404, "not_found", message)


def dumps(obj: Any) -> bytes:
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate echoed from a request: escape it
        return json.dumps(obj, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def show(value: Any, limit: int = 60) -> str:
    """A value a client sent, safe to put in a message or a log line."""
    text = value if isinstance(value, str) and value.isprintable() and value.isascii() else \
        json.dumps(value, ensure_ascii=True)
    return text if len(text) <= limit else text[:limit] + "…"


def clean(text: str, limit: int = 500) -> str:
    """A string SQLite can store (no lone surrogates), cut to a length."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text[:limit]


def stored_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"))


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def new_epoch() -> str:
    return "e-" + secrets.token_hex(6)


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def is_time(value: Any) -> bool:
    if not isinstance(value, str) or not TIME.match(value):
        return False
    try:
        parse_time(value)
    except ValueError:
        return False
    return True


# -- request bodies of the admin API (strict: a wrong type is an error, never coerced) --------------

class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


Name = Annotated[str, Field(min_length=1, max_length=200)]
Reason = Annotated[str, Field(min_length=1, max_length=200)]
StoreId = Annotated[str, Field(pattern=STORE_ID)]


class StoreIn(Body):
    store_id: StoreId
    name: Name


class ProductsIn(Body):
    products: Annotated[list[ProductIn], Field(min_length=1, max_length=5000)]
    store_id: StoreId | None = None


class OrderLineIn(Body):
    sku: Sku
    qty: Qty


class OrderIn(Body):
    order_id: Annotated[str, Field(pattern=ORDER_ID)] | None = None
    kind: Literal["pickup", "delivery"]
    lines: Annotated[list[OrderLineIn], Field(min_length=1, max_length=100)]
    customer_note: Annotated[str, Field(max_length=200)] | None = None
    pickup_after: str | None = Field(None, description="UTC ISO 8601 time")

    @field_validator("pickup_after")
    @classmethod
    def _time(cls, value):
        if value is not None and not is_time(value):
            raise ValueError("must be an ISO 8601 time with a zone, e.g. 2026-11-21T10:00:00.000Z")
        return value


class ReasonIn(Body):
    reason: Reason


class OptionalReasonIn(Body):
    reason: Reason | None = None


CouponId = Annotated[str, Field(pattern=ORDER_ID)]
Fen = Annotated[int, Field(ge=1, le=MAX_DISCOUNT_FEN)]


def _check_time(value):
    if value is not None and not is_time(value):
        raise ValueError("must be an ISO 8601 time with a zone, e.g. 2026-11-01T00:00:00Z")
    return value


class ScopeIn(Body):
    skus: Annotated[list[Sku], Field(min_length=1, max_length=1000)] | None = None
    categories: Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]],
                          Field(min_length=1, max_length=1000)] | None = None

    @model_validator(mode="after")
    def _one(self):
        if (self.skus is None) == (self.categories is None):
            raise ValueError("scope must hold exactly one of skus or categories")
        return self


class CouponIn(Body):
    """A coupon definition (docs/tokens.md), plus where to publish it (store_ids, not published)."""
    coupon_id: CouponId
    title: Name
    kind: Literal["value", "percent"]
    value_fen: Fen | None = None
    percent_off: Annotated[int, Field(ge=1, le=99)] | None = None
    max_discount_fen: Fen | None = None
    min_spend_fen: Annotated[int, Field(ge=0, le=MAX_DISCOUNT_FEN)] = 0
    scope: ScopeIn | None = None
    valid_from: str
    valid_until: str
    uses: Annotated[int, Field(ge=1, le=1000)] = 1
    online_only: bool = False
    store_ids: Annotated[list[StoreId], Field(min_length=1, max_length=1000)] | None = None

    @field_validator("valid_from", "valid_until")
    @classmethod
    def _times(cls, value):
        return _check_time(value)

    @model_validator(mode="after")
    def _terms(self):
        if self.kind == "value":
            if self.value_fen is None:
                raise ValueError("a value coupon needs value_fen")
            if self.percent_off is not None or self.max_discount_fen is not None:
                raise ValueError("percent_off and max_discount_fen are for percent coupons")
        else:
            if self.percent_off is None:
                raise ValueError("a percent coupon needs percent_off (1-99)")
            if self.value_fen is not None:
                raise ValueError("value_fen is for value coupons")
        if parse_time(self.valid_until) <= parse_time(self.valid_from):
            raise ValueError("valid_until must be after valid_from")
        if self.store_ids is not None and len(set(self.store_ids)) != len(self.store_ids):
            raise ValueError("store_ids must not repeat a store")
        return self

    def definition(self) -> dict:
        """The coupon.defined payload: the definition with its defaults, without store_ids."""
        data = self.model_dump(exclude={"store_ids"}, exclude_none=True)
        if self.scope is not None:
            data["scope"] = self.scope.model_dump(exclude_none=True)
        return data


class IssueIn(Body):
    store_id: StoreId | None = None
    expires_at: str | None = Field(None, description="ISO 8601; default and latest: the coupon's valid_until")

    @field_validator("expires_at")
    @classmethod
    def _time(cls, value):
        return _check_time(value)


class CorrectionIn(Body):
    sku: Sku
    qty: Annotated[int, Field(ge=-1_000_000, le=1_000_000)]
    reason: Reason

    @model_validator(mode="after")
    def _not_zero(self):
        if self.qty == 0:
            raise ValueError("qty must not be zero")
        return self


class ChangeIn(Body):
    store_id: StoreId | None = None
    type: Literal[PUBLISHABLE]  # type: ignore[valid-type]
    payload: dict

    @model_validator(mode="after")
    def _payload(self):
        p, need = self.payload, {"coupon.defined": "coupon_id", "coupon.revoked": "coupon_id",
                                 "key.published": "kid", "key.revoked": "kid"}[self.type]
        if not isinstance(p.get(need), str) or not 1 <= len(p[need]) <= 64:
            raise ValueError(f"payload.{need} must be a string of 1 to 64 characters")
        if self.type == "key.published":
            if p.get("alg") != "Ed25519":
                raise ValueError('payload.alg must be "Ed25519"')
            if not isinstance(p.get("public_key"), str) or not re.fullmatch(r"[A-Za-z0-9+/]{43}=", p["public_key"]):
                raise ValueError("payload.public_key must be a base64 Ed25519 public key (32 bytes)")
        return self


# -- the high-water file --------------------------------------------------------------------------

class HighWater:
    """DIR/hub.highwater: the epoch and the highest change cursor and event row ever committed.

    Rewritten (temp file, fsync, os.replace) after each committing write that raised either, from
    one thread at a time; values only go up within an epoch."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        self.epoch = ""
        self.cursor = 0
        self.event_row = 0

    def load(self) -> dict | None:
        """The file's content; None if there is none; ValueError if it cannot be read."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ValueError(f"{self.path}: {exc}") from None
        if not (isinstance(data, dict) and isinstance(data.get("epoch"), str)
                and type(data.get("cursor")) is int and type(data.get("event_row")) is int):
            raise ValueError(f"{self.path}: not a high-water record")
        return data

    def reset(self, epoch: str, cursor: int, event_row: int) -> None:
        with self.lock:
            self.epoch, self.cursor, self.event_row = epoch, cursor, event_row
            self._write()

    def raise_to(self, cursor: int = 0, event_row: int = 0, epoch: str | None = None) -> None:
        with self.lock:
            if cursor <= self.cursor and event_row <= self.event_row and epoch in (None, self.epoch):
                return
            self.cursor, self.event_row = max(self.cursor, cursor), max(self.event_row, event_row)
            self.epoch = epoch or self.epoch
            self._write()

    def _write(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        record = {"epoch": self.epoch, "cursor": self.cursor, "event_row": self.event_row,
                  "written_at": iso(datetime.now(timezone.utc))}
        with open(tmp, "w", encoding="utf-8") as out:
            json.dump(record, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# -- the hub --------------------------------------------------------------------------------------

@dataclass
class Hub:
    data_dir: Path
    admin_token: str
    safety_buffer: int = 0
    stale_after: float = 600.0
    new_epoch: bool = False
    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
    store: Store | None = None
    epoch: str = ""
    sockets: dict[str, set[web.WebSocketResponse]] = field(default_factory=dict)
    last_seen: dict[str, str] = field(default_factory=dict)
    auth_logged: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        self.admin_hash = sha256(self.admin_token)
        self.highwater = HighWater(self.data_dir / "hub.highwater")
        self.hw_pool = ThreadPoolExecutor(1, thread_name_prefix="hub-highwater")

    def now(self) -> datetime:
        return self.clock()

    # -- start and stop -------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(self.data_dir / "hub.db", migrations=HUB_MIGRATIONS)
        await loop.run_in_executor(None, self.store.open)
        marks = await self.store.read(_marks)
        try:
            hw = await loop.run_in_executor(self.hw_pool, self.highwater.load)
            unreadable = None
        except ValueError as exc:
            hw, unreadable = None, str(exc)
        epoch, why = marks["epoch"], None
        has_data = marks["cursor"] or marks["event_row"]
        if hw is not None and (marks["cursor"] < hw["cursor"] or marks["event_row"] < hw["event_row"]):
            why = "the database is older than its high-water mark: restored from a backup?"
        elif unreadable:
            why = f"the high-water file cannot be read ({unreadable})"
        elif epoch is None:
            why = "first start"
        elif self.new_epoch:
            why = "--new-epoch"
        elif hw is None and has_data:
            why = "the high-water file is missing: the database may have been restored from a backup"
        elif hw is not None and hw["epoch"] != epoch:
            why = "the database's epoch differs from the high-water file's: restored from a backup?"
        if why is not None:
            old, epoch = epoch, new_epoch()
            await self.store.write(_set_epoch, epoch)
            kv = {"epoch": epoch, "previous": old or "-", "why": why}
            if hw is not None:
                kv.update(db_cursor=marks["cursor"], hw_cursor=hw["cursor"], db_event_row=marks["event_row"],
                          hw_event_row=hw["event_row"])
            (log.info if why in ("first start", "--new-epoch") else log.warning)("new epoch", extra={"kv": kv})
        self.epoch = epoch
        await loop.run_in_executor(self.hw_pool, self.highwater.reset, epoch, marks["cursor"], marks["event_row"])
        key = await self.store.write(ensure_signing_key, self.now())
        if key is not None:  # first start (or no key left): a key, published to every store
            await self.committed(cursor=key["cursor"])
            log.info("signing key created", extra={"kv": {"kid": key["kid"], "cursor": key["cursor"]}})
        log.info("hub store open", extra={"kv": {"path": self.store.path, "epoch": epoch,
                                                 "cursor": marks["cursor"], "stores": marks["stores"]}})

    async def stop(self) -> None:
        await self.close_sockets(None, WSCloseCode.GOING_AWAY, b"hub stopping")
        loop = asyncio.get_running_loop()
        if self.store is not None:
            await loop.run_in_executor(None, self.store.close)
        self.hw_pool.shutdown(wait=True)
        log.info("hub store closed")

    # -- after a commit -------------------------------------------------------------------------
    async def committed(self, cursor: int = 0, event_row: int = 0, epoch: str | None = None) -> None:
        if cursor or event_row or epoch:
            try:
                await asyncio.get_running_loop().run_in_executor(self.hw_pool, self.highwater.raise_to, cursor,
                                                                 event_row, epoch)
            except OSError as exc:  # the write is committed: answer it; a restore may go unnoticed until fixed
                log.error("high-water file not written", extra={"kv": {"path": self.highwater.path,
                                                                       "error": str(exc)}})

    async def notify(self, store_id: str | None, message: dict) -> None:
        """Send a hint to every WebSocket of a store (None: of every store)."""
        targets = [ws for sid, group in list(self.sockets.items()) if store_id is None or sid == store_id
                   for ws in list(group) if not ws.closed]
        for ws in targets:
            try:
                await asyncio.wait_for(ws.send_json(message), SEND_TIMEOUT)
            except (ConnectionError, RuntimeError, asyncio.TimeoutError) as exc:
                log.info("hint not delivered", extra={"kv": {"error": type(exc).__name__}})

    async def close_sockets(self, store_id: str | None, code: int, message: bytes) -> None:
        for sid, group in list(self.sockets.items()):
            if store_id is None or sid == store_id:
                for ws in list(group):
                    await ws.close(code=code, message=message)

    def auth_refused(self, request: web.Request, key: str, why: str) -> None:
        """Log a refused token, at most once per key every AUTH_LOG_EVERY seconds."""
        moment = time.monotonic()
        if moment - self.auth_logged.get(key, -AUTH_LOG_EVERY) >= AUTH_LOG_EVERY:
            self.auth_logged[key] = moment
            log.warning("token refused", extra={"kv": {"path": show(request.path, 100), "why": why,
                                                       "remote": request.remote or "-"}})


HUB = web.AppKey("hub", Hub)
AUTHORISED = web.RequestKey("authorised", bool)


def _marks(conn) -> dict:
    row = conn.execute("SELECT (SELECT value FROM meta WHERE key = 'epoch'), "
                       "(SELECT coalesce(max(cursor), 0) FROM changes), "
                       "(SELECT coalesce(max(event_row), 0) FROM events), (SELECT count(*) FROM stores)").fetchone()
    return {"epoch": row[0], "cursor": row[1], "event_row": row[2], "stores": row[3]}


def _set_epoch(conn, epoch: str) -> None:
    conn.execute("INSERT INTO meta (key, value) VALUES ('epoch', ?) ON CONFLICT (key) DO UPDATE SET value = "
                 "excluded.value", (epoch,))


# -- HTTP plumbing --------------------------------------------------------------------------------

def answer(request: web.Request, body: dict, status: int = 200) -> web.Response:
    if request.get(AUTHORISED):
        body = {"epoch": request.app[HUB].epoch, **body}
    return web.Response(body=dumps(body), status=status, content_type="application/json")


@web.middleware
async def errors_middleware(request: web.Request, handler):
    """Every error is JSON `{"epoch"?, "error", "message"}`; never a stack trace."""
    try:
        return await handler(request)
    except HubError as exc:
        return answer(request, {"error": exc.code, "message": exc.message, **exc.extra}, exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                405: "method_not_allowed", 413: "body_too_large"}.get(exc.status, "http_error")
        return answer(request, {"error": code, "message": exc.reason}, exc.status)
    except Exception:
        log.exception("request failed", extra={"kv": {"method": request.method, "path": show(request.path, 100)}})
        return answer(request, {"error": "internal_error", "message": "internal error; see the hub's log"}, 500)


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
    owner = await hub.store.read(lambda conn: (conn.execute("SELECT store_id FROM stores WHERE token_hash = ?",
                                                            (sha256(token),)).fetchone() or [None])[0])
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


# -- the protocol: upload -------------------------------------------------------------------------

def check_batch(data: Any) -> list[dict]:
    """The batch as a whole: 400 if it is not this protocol (the store cannot tell which event is at fault)."""
    if not isinstance(data, dict):
        raise bad_request('the body must be an object {"protocol": 1, "events": [...]}')
    if data.get("protocol") != PROTOCOL or type(data.get("protocol")) is not int:
        raise bad_request(f"protocol must be {PROTOCOL}: this hub speaks version {PROTOCOL} of the sync protocol")
    events = data.get("events")
    if not isinstance(events, list) or not 1 <= len(events) <= MAX_BATCH:
        raise bad_request(f"events must be a list of 1 to {MAX_BATCH} events")
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            raise bad_request(f"events[{index}] must be an object")
        seq = event.get("seq")
        if type(seq) is not int or not 1 <= seq <= MAX_SEQ:
            raise bad_request(f"events[{index}].seq must be a whole number from 1 to {MAX_SEQ}")
        if index and seq != events[0]["seq"] + index:
            raise bad_request(f"events[{index}].seq is {seq}, expected {events[0]['seq'] + index}: "
                              "the seq of a batch's events must be consecutive")
    return events


def validate_event(conn, store_id: str, event: dict) -> str | None:
    """None if the event can be applied, else the reason it is rejected."""
    event_id = event.get("id")
    if not isinstance(event_id, str) or not EVENT_ID.match(event_id):
        return "invalid_envelope: id must be a string of 1 to 128 printable ASCII characters (a UUID)"
    sid = event.get("store_id")
    if not isinstance(sid, str):
        return "invalid_envelope: store_id must be a string"
    if sid != store_id:
        return f"store_mismatch: the event names store {show(sid)}, it was sent for {store_id}"
    etype = event.get("type")
    if not isinstance(etype, str) or not etype:
        return "invalid_envelope: type must be a non-empty string"
    if etype not in EVENT_TYPES:
        return f"unknown_type: {show(etype)} is not a version 1 event type"
    if not is_time(event.get("created_at")):
        return "invalid_envelope: created_at must be an ISO 8601 time such as 2026-11-21T08:00:00.000Z"
    payload = event.get("payload")
    if not isinstance(payload, dict):
        return "invalid_envelope: payload must be an object"
    if etype == "event.voided" and payload.get("moves"):
        return "invalid_moves: an event.voided has no effect, so it carries no moves"
    if etype == "print.result":
        if payload.get("moves"):
            return "invalid_moves: a print.result has no stock effect, so it carries no moves"
        if (problem := print_result_problem(payload)) is not None:
            return f"invalid_payload: {problem}"
    if etype == "coupon.redeemed":
        if payload.get("moves"):
            return "invalid_moves: a coupon.redeemed has no stock effect of its own (the sale carries the moves)"
        if (problem := coupon_redeemed_problem(payload)) is not None:
            return f"invalid_payload: {problem}"
    if etype in PICKUP_EVENT_TYPES:
        if (problem := pickup_problem(etype, payload)) is not None:
            return f"invalid_payload: {problem}"
        if "moves" not in payload:
            return f"invalid_moves: a {etype} carries the moves of the hand-over (release and pickup of each line)"
    if "moves" in payload:
        moves = payload["moves"]
        if not isinstance(moves, list) or len(moves) > MAX_MOVES:
            return f"invalid_moves: payload.moves must be a list (at most {MAX_MOVES})"
        for index, move in enumerate(moves):
            where = f"payload.moves[{index}]"
            if not isinstance(move, dict):
                return f"invalid_moves: {where} must be an object {{sku, qty, reason}}"
            sku, qty, reason = move.get("sku"), move.get("qty"), move.get("reason")
            if not isinstance(sku, str) or not SKU.match(sku):
                return f"invalid_moves: {where}.sku must be a SKU (got {show(sku)})"
            if type(qty) is not int or qty == 0 or abs(qty) > MAX_MOVE_QTY:
                return f"invalid_moves: {where}.qty must be a non-zero whole number (got {show(qty)})"
            if not isinstance(reason, str) or reason not in MOVE_REASONS:
                return f"invalid_moves: {where}.reason must be one of {', '.join(MOVE_REASONS)} (got {show(reason)})"
        for sku in dict.fromkeys(move["sku"] for move in moves):
            if not conn.execute("SELECT 1 FROM products WHERE sku = ?", (sku,)).fetchone():
                return f"unknown_sku: {sku} is not in the chain catalog"
    if etype in ORDER_EVENT_TYPES:
        order_id = payload.get("order_id")
        if not isinstance(order_id, str) or not order_id:
            return "invalid_payload: order_id must be a string"
        if not conn.execute("SELECT 1 FROM orders WHERE order_id = ? AND store_id = ?",
                            (order_id, store_id)).fetchone():
            return f"unknown_order: {show(order_id)} is not an order the hub created for store {store_id}"
        if etype == "order.state_changed" and payload.get("to") not in STORE_ORDER_STATES:
            return f"invalid_payload: to must be one of {', '.join(STORE_ORDER_STATES)} (got {show(payload.get('to'))})"
        if etype == "order.received" and "short" in payload and not isinstance(payload["short"], list):
            return "invalid_payload: short must be a list"
        if etype in PICKUP_EVENT_TYPES:
            return pickup_moves_problem(conn, etype, payload)
    if etype == "coupon.redeemed":
        coupon_id, serial = payload["coupon_id"], payload["serial"]
        if not conn.execute("SELECT 1 FROM coupons WHERE coupon_id = ?", (coupon_id,)).fetchone():
            return f"unknown_coupon: {show(coupon_id)} is not a coupon the hub defined"
        if not conn.execute("SELECT 1 FROM coupon_serials WHERE serial = ? AND coupon_id = ?",
                            (serial, coupon_id)).fetchone():
            return f"unknown_serial: {show(serial)} is not a serial the hub issued of coupon {show(coupon_id)}"
    return None


def _text_problem(payload: dict, name: str, limit: int = 200) -> str | None:
    value = payload.get(name)
    if not isinstance(value, str) or not 1 <= len(value) <= limit:
        return f"{name} must be a string of 1 to {limit} characters (got {show(value)})"
    return None


def _bool_problem(payload: dict, name: str) -> str | None:
    if type(payload.get(name)) is not bool:
        return f"{name} must be true or false (got {show(payload.get(name))})"
    return None


def pickup_problem(etype: str, payload: dict) -> str | None:
    """What is wrong with the fields of a pickup.verified / pickup.reversed payload (docs/tokens.md), or
    None. The moves are checked against the order's lines afterwards. Unknown fields are ignored."""
    for name, limit in (("order_id", 64), ("operator", 200)):
        if (problem := _text_problem(payload, name, limit)) is not None:
            return problem
    if etype == "pickup.reversed":
        return _text_problem(payload, "reason", 500)
    method = payload.get("method")
    if not isinstance(method, str) or method not in PICKUP_METHODS:
        return f"method must be one of {', '.join(PICKUP_METHODS)} (got {show(method)})"
    if (problem := _text_problem(payload, "device")) is not None:
        return problem
    if (problem := _bool_problem(payload, "provisional")) is not None:
        return problem
    if not is_time(payload.get("verified_at")):
        return ("verified_at must be an ISO 8601 time such as 2026-11-21T08:00:00.000Z "
                f"(got {show(payload.get('verified_at'))})")
    if method == "token":
        return _text_problem(payload, "jti", 64)
    if payload.get("jti") is not None:
        return f"jti is for method token; a code hand-over has none (null or absent; got {show(payload['jti'])})"
    return None


def pickup_moves_problem(conn, etype: str, payload: dict) -> str | None:
    """A hand-over's moves are, per SKU of the order's lines, `release` -qty and `pickup` -qty; a reversal's
    the opposite (+qty), and only of an order the store handed over."""
    order_id, sign = payload["order_id"], -1 if etype == "pickup.verified" else 1
    want: dict[tuple[str, str], int] = {}
    for sku, qty in conn.execute("SELECT sku, sum(qty) FROM order_lines WHERE order_id = ? GROUP BY sku",
                                 (order_id,)):
        want[(sku, "release")] = want[(sku, "pickup")] = sign * qty
    got: dict[tuple[str, str], int] = {}
    for move in payload["moves"]:
        if move["reason"] not in ("release", "pickup"):
            return f"invalid_moves: a {etype} moves stock only by release and pickup (got {move['reason']})"
        got[(move["sku"], move["reason"])] = got.get((move["sku"], move["reason"]), 0) + move["qty"]
    if {k: q for k, q in got.items() if q} != want:
        expected = ", ".join(f"{reason} {qty:+d} {sku}" for (sku, reason), qty in sorted(want.items()))
        return f"invalid_moves: the moves of a {etype} must match the order's lines: {expected}"
    if etype == "pickup.reversed":
        state = conn.execute("SELECT state FROM orders WHERE order_id = ?", (order_id,)).fetchone()[0]
        handed = conn.execute("SELECT 1 FROM order_pickups WHERE order_id = ? AND reversed_at IS NULL",
                              (order_id,)).fetchone()
        if handed is None and state != "picked_up":
            return f"not_picked_up: order {order_id} has no hand-over to reverse (it is {state})"
    return None


def coupon_redeemed_problem(payload: dict) -> str | None:
    """What is wrong with the fields of a coupon.redeemed payload (docs/tokens.md), or None."""
    for name, limit in (("coupon_id", 64), ("serial", 64), ("jti", 64), ("sale_id", 128)):
        if (problem := _text_problem(payload, name, limit)) is not None:
            return problem
    discount = payload.get("discount_fen")
    if type(discount) is not int or not 0 <= discount <= MAX_DISCOUNT_FEN:
        return f"discount_fen must be a whole number from 0 to {MAX_DISCOUNT_FEN} (got {show(discount)})"
    return _bool_problem(payload, "provisional")


def print_result_problem(payload: dict) -> str | None:
    """What is wrong with a print.result payload (the fields only; the order is checked with the other
    order events), or None. Unknown fields are ignored (protocol section 7)."""
    order_id = payload.get("order_id")
    if not isinstance(order_id, str) or not order_id:
        return "order_id must be a string"
    job_key = payload.get("job_key")
    if not isinstance(job_key, str) or not 1 <= len(job_key) <= 200:
        return f"job_key must be a string of 1 to 200 characters (got {show(job_key)})"
    kind, result = payload.get("kind"), payload.get("result")
    if not isinstance(kind, str) or kind not in PRINT_KINDS:
        return f"kind must be one of {', '.join(PRINT_KINDS)} (got {show(kind)})"
    if not isinstance(result, str) or result not in PRINT_RESULTS:
        return f"result must be one of {', '.join(PRINT_RESULTS)} (got {show(result)})"
    printer = payload.get("printer")
    if not isinstance(printer, str) or not 1 <= len(printer) <= 200:
        return f"printer must be a string of 1 to 200 characters (got {show(printer)})"
    attempts = payload.get("attempts")
    if type(attempts) is not int or not 0 <= attempts <= MAX_PRINT_ATTEMPTS:
        return f"attempts must be a whole number from 0 to {MAX_PRINT_ATTEMPTS} (got {show(attempts)})"
    if payload.get("error") is not None and not isinstance(payload["error"], str):
        return f"error must be null or a string (got {show(payload['error'])})"
    if not is_time(payload.get("at")):
        return f"at must be an ISO 8601 time such as 2026-11-21T08:00:00.000Z (got {show(payload.get('at'))})"
    if "reprint" in payload and type(payload["reprint"]) is not bool:
        return f"reprint must be true or false (got {show(payload['reprint'])})"
    return None


def apply_event(conn, store_id: str, event: dict, now: str) -> None:
    payload = event["payload"]
    for move in payload.get("moves") or ():
        column = "reserved" if move["reason"] in RESERVATION_REASONS else "on_hand"
        conn.execute(f"INSERT INTO balances (store_id, sku, {column}, updated_at) VALUES (?, ?, ?, ?) "
                     f"ON CONFLICT (store_id, sku) DO UPDATE SET {column} = {column} + excluded.{column}, "
                     "updated_at = excluded.updated_at", (store_id, move["sku"], move["qty"], now))
    etype, order_id = event["type"], payload.get("order_id")
    if etype == "order.received":
        conn.execute("UPDATE orders SET received_at = coalesce(received_at, ?), short = ?, updated_at = ? "
                     "WHERE order_id = ?", (now, stored_json(payload.get("short", [])), now, order_id))
    elif etype == "order.state_changed":
        # a step the store took before it learnt of a cancel or refund here must not reopen the order
        conn.execute("UPDATE orders SET state = CASE WHEN state IN ('cancelled', 'refunded') AND ? IN "
                     "('accepted', 'ready') THEN state ELSE ? END, received_at = coalesce(received_at, ?), "
                     "updated_at = ? WHERE order_id = ?", (payload["to"], payload["to"], now, now, order_id))
    elif etype == "order.conflict":
        reason = payload.get("reason")
        conn.execute("UPDATE orders SET conflict = ?, updated_at = ? WHERE order_id = ?",
                     (clean(reason) if isinstance(reason, str) else stored_json(reason), now, order_id))
    elif etype == "print.result":
        # events apply in seq order: the latest result of each kind replaces the one before (a reprint's too)
        conn.execute("INSERT INTO order_prints (order_id, kind, job_key, result, at, printer, attempts, error, "
                     "reprint, seq, event_id, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                     "ON CONFLICT (order_id, kind) DO UPDATE SET job_key = excluded.job_key, "
                     "result = excluded.result, at = excluded.at, printer = excluded.printer, "
                     "attempts = excluded.attempts, error = excluded.error, reprint = excluded.reprint, "
                     "seq = excluded.seq, event_id = excluded.event_id, received_at = excluded.received_at",
                     (order_id, payload["kind"], clean(payload["job_key"], 200), payload["result"],
                      clean(payload["at"], 40), clean(payload["printer"], 200), payload["attempts"],
                      clean(payload["error"]) if payload.get("error") is not None else None,
                      int(payload.get("reprint", False)), event["seq"], event["id"], now))
        conn.execute("UPDATE orders SET updated_at = ? WHERE order_id = ?", (now, order_id))
    elif etype == "pickup.verified":
        apply_pickup_verified(conn, event, now)
    elif etype == "pickup.reversed":
        conn.execute("UPDATE order_pickups SET reversed_at = ?, reversed_by = ?, reverse_reason = ?, "
                     "reverse_event_id = ? WHERE order_id = ? AND reversed_at IS NULL",
                     (clean(event["created_at"], 40), clean(payload["operator"], 200), clean(payload["reason"]),
                      event["id"], order_id))
        # the goods are back on the shelf, reserved for the order again
        conn.execute("UPDATE orders SET state = CASE WHEN state = 'picked_up' THEN 'ready' ELSE state END, "
                     "updated_at = ? WHERE order_id = ?", (now, order_id))
    elif etype == "coupon.redeemed":
        apply_coupon_redeemed(conn, store_id, event, now)
    elif etype == "change.rejected" and isinstance(payload.get("change_id"), str):
        # the store could not take an order: it will never reserve it, so it no longer counts as pending
        conn.execute("UPDATE orders SET state = 'rejected', updated_at = ? WHERE change_id = ? AND store_id = ? "
                     "AND state = 'created' AND received_at IS NULL", (now, payload["change_id"], store_id))


def apply_pickup_verified(conn, event: dict, now: str) -> None:
    """Record the hand-over. One the hub cannot agree with (the order was cancelled or refunded here
    meanwhile, or it was handed over already) is applied all the same, since the store's ledger moved,
    and the order is flagged with a conflict for a person."""
    payload = event["payload"]
    order_id = payload["order_id"]
    state = conn.execute("SELECT state FROM orders WHERE order_id = ?", (order_id,)).fetchone()[0]
    before = conn.execute("SELECT verified_at, operator FROM order_pickups WHERE order_id = ? AND reversed_at IS NULL",
                          (order_id,)).fetchone()
    operator, verified_at = clean(payload["operator"], 200), clean(payload["verified_at"], 40)
    conflict = None
    if state in ("cancelled", "refunded"):
        conflict = f"handed over at the store ({verified_at} by {operator}) after the order was {state} here"
    elif before is not None:
        conflict = (f"handed over again at the store ({verified_at} by {operator}); first handed over "
                    f"{before['verified_at']} by {before['operator']}")
    conn.execute("INSERT OR REPLACE INTO order_pickups (order_id, verified_at, operator, method, device, provisional, "
                 "jti, event_id, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 (order_id, verified_at, operator, payload["method"], clean(payload["device"], 200),
                  int(payload["provisional"]), payload.get("jti"), event["id"], now))
    conn.execute("UPDATE orders SET state = CASE WHEN state IN ('cancelled', 'refunded') THEN state ELSE 'picked_up' "
                 "END, conflict = coalesce(?, conflict), received_at = coalesce(received_at, ?), updated_at = ? "
                 "WHERE order_id = ?", (conflict, now, now, order_id))
    if conflict is not None:
        log.warning("pickup conflict", extra={"kv": {"order": order_id, "state": state, "conflict": conflict}})


def apply_coupon_redeemed(conn, store_id: str, event: dict, now: str) -> None:
    """Count the serial's use. A use the terms did not allow (offline double use, after a revoke, at
    another store) happened all the same: applied, and flagged for a person."""
    payload = event["payload"]
    serial = conn.execute("SELECT s.store_id, c.definition, c.revoked_at FROM coupon_serials s JOIN coupons c "
                          "USING (coupon_id) WHERE s.serial = ?", (payload["serial"],)).fetchone()
    use_no = conn.execute("SELECT count(*) FROM coupon_redemptions WHERE serial = ?",
                          (payload["serial"],)).fetchone()[0] + 1
    flags = []
    if use_no > json.loads(serial["definition"]).get("uses", 1):
        flags.append("over_use")
    if serial["revoked_at"] is not None and parse_time(event["created_at"]) >= parse_time(serial["revoked_at"]):
        flags.append("revoked")
    if serial["store_id"] is not None and serial["store_id"] != store_id:
        flags.append("wrong_store")
    conn.execute("INSERT INTO coupon_redemptions (serial, coupon_id, store_id, use_no, sale_id, discount_fen, jti, "
                 "provisional, redeemed_at, event_id, received_at, flags) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 (payload["serial"], payload["coupon_id"], store_id, use_no, clean(payload["sale_id"], 128),
                  payload["discount_fen"], payload["jti"], int(payload["provisional"]),
                  clean(event["created_at"], 40), event["id"], now, json.dumps(flags)))
    if flags:
        log.warning("coupon redemption flagged", extra={"kv": {"store": store_id, "serial": payload["serial"],
                                                               "use": use_no, "flags": ",".join(flags)}})


def digest(event: dict) -> str:
    canonical = json.dumps(event, ensure_ascii=True, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def process_batch(conn, store_id: str, events: list[dict], now: str) -> dict:
    """docs/sync-protocol.md 2.2, in the caller's (one) transaction."""
    expected = conn.execute("SELECT next_seq FROM stores WHERE store_id = ?", (store_id,)).fetchone()[0]
    results, stop, rejected = [], None, []
    for event in events:
        seq, event_id = event["seq"], event.get("id")
        known_id = isinstance(event_id, str) and EVENT_ID.match(event_id) is not None
        # "+status": not an index term, so the lookup uses events_id; on events_status (store_id, status) it
        # scanned every applied event of the store, for each event uploaded (a backlog drained in O(n^2))
        if known_id and conn.execute("SELECT 1 FROM events WHERE store_id = ? AND event_id = ? "
                                     "AND +status = 'applied' LIMIT 1", (store_id, event_id)).fetchone():
            results.append({"id": event_id, "seq": seq, "status": "duplicate"})
            continue
        if seq > expected:
            stop = "sequence_gap"
            break
        if seq < expected:
            held = conn.execute("SELECT event_id, status, reason, digest FROM events WHERE store_id = ? AND seq = ?",
                                (store_id, seq)).fetchone()
            same = held is not None and (held["event_id"] == event_id if known_id else held["digest"] == digest(event))
            if same and held["status"] == "rejected":
                # the same rejected event again at its own seq (the answer was lost): the same answer
                results.append({"id": event_id, "seq": seq, "status": "rejected", "reason": held["reason"]})
                continue
            stop = "seq_taken"
            break
        reason = validate_event(conn, store_id, event)
        if reason is None:
            apply_event(conn, store_id, event, now)
        etype, created = event.get("type"), event.get("created_at")
        conn.execute("INSERT INTO events (store_id, seq, event_id, type, created_at, payload, digest, status, reason, "
                     "received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (store_id, seq, event_id if known_id else None,
                      clean(etype, 64) if isinstance(etype, str) else None,
                      clean(created, 40) if isinstance(created, str) else None,
                      stored_json(event.get("payload")), digest(event),
                      "applied" if reason is None else "rejected", reason, now))
        expected += 1
        result = {"id": event_id, "seq": seq, "status": "applied" if reason is None else "rejected"}
        if reason is not None:
            result["reason"] = reason
            rejected.append((seq, event_id, etype, reason))
        results.append(result)
    conn.execute("UPDATE stores SET next_seq = ?, last_upload_at = CASE WHEN ? THEN ? ELSE last_upload_at END "
                 "WHERE store_id = ?", (expected, stop is None, now, store_id))
    event_row = conn.execute("SELECT coalesce(max(event_row), 0) FROM events").fetchone()[0]
    return {"results": results, "next_seq": expected, "stop": stop, "rejected": rejected, "event_row": event_row}


async def post_events(request: web.Request) -> web.Response:
    store_id = await auth_store(request)
    hub = request.app[HUB]
    events = check_batch(await json_body(request))
    done = await hub.store.write(process_batch, store_id, events, iso(hub.now()))
    await hub.committed(event_row=done["event_row"])
    counts = {s: sum(1 for r in done["results"] if r["status"] == s) for s in ("applied", "duplicate", "rejected")}
    for seq, event_id, etype, reason in done["rejected"]:
        log.warning("event rejected", extra={"kv": {"store": store_id, "seq": seq, "id": show(event_id),
                                                    "type": show(etype), "reason": reason}})
    kv = {"store": store_id, "first_seq": events[0]["seq"], "events": len(events), **counts,
          "next_seq": done["next_seq"]}
    if done["stop"] is not None:
        log.info("upload stopped", extra={"kv": {**kv, "error": done["stop"]}})
        message = ("the batch skips sequence numbers: send from expected_seq" if done["stop"] == "sequence_gap" else
                   "a sequence number below expected_seq already holds another event")
        raise HubError(409, done["stop"], message, expected_seq=done["next_seq"], results=done["results"])
    log.info("events uploaded", extra={"kv": kv})
    return answer(request, {"next_seq": done["next_seq"], "results": done["results"]})


# -- the protocol: download, state, hints ---------------------------------------------------------

def _feed_cursor(conn, store_id: str) -> int:
    return conn.execute("SELECT coalesce(max(cursor), 0) FROM changes WHERE store_id = ? OR store_id IS NULL",
                        (store_id,)).fetchone()[0]


async def get_changes(request: web.Request) -> web.Response:
    store_id = await auth_store(request)
    after = query_int(request, "after", 0, 0, 2 ** 62)
    limit = query_int(request, "limit", 500, 1, 1000)

    def page(conn):
        # two ordered, limited index searches (the store's, everyone's) merged: an OR would read and sort
        # every remaining change for each page, and a re-pull of a long feed would grow quadratically
        part = "SELECT cursor, id, type, created_at, payload FROM changes WHERE store_id {} AND cursor > ? " \
               "ORDER BY cursor LIMIT ?"
        rows = conn.execute(f"SELECT * FROM ({part.format('= ?')}) UNION ALL SELECT * FROM ({part.format('IS NULL')}) "
                            "ORDER BY cursor LIMIT ?", (store_id, after, limit + 1, after, limit + 1,
                                                        limit + 1)).fetchall()
        return [{"cursor": r[0], "id": r[1], "type": r[2], "created_at": r[3], "payload": json.loads(r[4])}
                for r in rows]

    changes = await request.app[HUB].store.read(page)
    more = len(changes) > limit
    changes = changes[:limit]
    return answer(request, {"next_cursor": changes[-1]["cursor"] if changes else after, "more": more,
                            "changes": changes})


def balance_rows(conn, store_id: str) -> list[dict]:
    """Every SKU whose on-hand or reserved is not zero, in ascending byte order of the SKU."""
    rows = conn.execute("SELECT sku, on_hand, reserved FROM balances WHERE store_id = ? AND "
                        "(on_hand <> 0 OR reserved <> 0)", (store_id,)).fetchall()
    return [{"sku": r[0], "on_hand": r[1], "reserved": r[2]} for r in sorted(rows, key=lambda r: r[0].encode())]


def checksum(rows: list[dict]) -> str:
    return balances_checksum({r["sku"]: (r["on_hand"], r["reserved"]) for r in rows})


async def get_state(request: web.Request) -> web.Response:
    store_id = await auth_store(request)

    def state(conn):
        rows = balance_rows(conn, store_id)
        next_seq = conn.execute("SELECT next_seq FROM stores WHERE store_id = ?", (store_id,)).fetchone()[0]
        return {"next_seq": next_seq, "last_cursor": _feed_cursor(conn, store_id),
                "balances_checksum": checksum(rows), "balances_count": len(rows)}

    return answer(request, await request.app[HUB].store.read(state))


async def get_balances(request: web.Request) -> web.Response:
    store_id = await auth_store(request)

    def balances(conn):
        rows = balance_rows(conn, store_id)
        next_seq = conn.execute("SELECT next_seq FROM stores WHERE store_id = ?", (store_id,)).fetchone()[0]
        return {"next_seq": next_seq, "balances": rows, "balances_checksum": checksum(rows)}

    return answer(request, await request.app[HUB].store.read(balances))


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
        cursor = await hub.store.read(_feed_cursor, store_id)
        await ws.send_json({"type": "hello", "epoch": hub.epoch, "cursor": cursor})
        async for _ in ws:  # the store says nothing; pings and pongs are handled by aiohttp
            pass
    except (ConnectionError, RuntimeError):
        pass
    finally:
        group.discard(ws)
        log.info("hints disconnected", extra={"kv": {"store": store_id, "sockets": len(group)}})
    return ws


# -- admin: stores --------------------------------------------------------------------------------

def _store_exists(conn, store_id: str) -> None:
    if not conn.execute("SELECT 1 FROM stores WHERE store_id = ?", (store_id,)).fetchone():
        raise not_found(f"no store {store_id}")


def add_change(conn, store_id: str | None, change_type: str, payload: dict, now: str) -> tuple[int, str]:
    change_id = "c-" + str(uuid.uuid4())
    cursor = conn.execute("INSERT INTO changes (id, store_id, type, created_at, payload) VALUES (?, ?, ?, ?, ?) "
                          "RETURNING cursor", (change_id, store_id, change_type, now,
                                               json.dumps(payload, ensure_ascii=False, separators=(",", ":")))
                          ).fetchone()[0]
    return cursor, change_id


async def admin_put_store(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    body = await model_body(request, StoreIn)
    token = "st_" + secrets.token_urlsafe(32)

    def put(conn, now):
        created = conn.execute(
            "INSERT INTO stores (store_id, name, token_hash, created_at, token_set_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (store_id) DO NOTHING", (body.store_id, body.name, sha256(token), now, now)).rowcount == 1
        if not created:
            conn.execute("UPDATE stores SET name = ?, token_hash = ?, token_set_at = ? WHERE store_id = ?",
                         (body.name, sha256(token), now, body.store_id))
        return created

    created = await hub.store.write(put, iso(hub.now()))
    if not created:  # the old token stops working now, also on an open hint socket
        await hub.close_sockets(body.store_id, WSCloseCode.POLICY_VIOLATION, b"token rotated")
    log.info("store registered" if created else "store token rotated", extra={"kv": {"store": body.store_id}})
    return answer(request, {"store_id": body.store_id, "name": body.name, "token": token, "created": created},
                  201 if created else 200)


async def admin_list_stores(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    rows = await hub.store.read(lambda conn: [dict(r) for r in conn.execute(
        "SELECT store_id, name, next_seq, last_upload_at, created_at FROM stores ORDER BY store_id")])
    for row in rows:
        row["last_seen_at"] = hub.last_seen.get(row["store_id"])
    return answer(request, {"stores": rows})


async def admin_get_store(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    store_id = request.match_info["store_id"]

    def view(conn):
        row = conn.execute("SELECT store_id, name, next_seq, last_upload_at, created_at, token_set_at FROM stores "
                           "WHERE store_id = ?", (store_id,)).fetchone()
        if row is None:
            raise not_found(f"no store {store_id}")
        events = {"applied": 0, "rejected": 0}
        events.update(conn.execute("SELECT status, count(*) FROM events WHERE store_id = ? GROUP BY status",
                                   (store_id,)).fetchall())
        orders = dict(conn.execute("SELECT state, count(*) FROM orders WHERE store_id = ? GROUP BY state",
                                   (store_id,)).fetchall())
        pending = conn.execute("SELECT count(*) FROM orders WHERE store_id = ? AND state = 'created' AND "
                               "received_at IS NULL", (store_id,)).fetchone()[0]
        balances = [dict(r) for r in conn.execute("SELECT sku, on_hand, reserved, updated_at FROM balances "
                                                  "WHERE store_id = ? ORDER BY sku", (store_id,))]
        return {**dict(row), "last_seen_at": hub.last_seen.get(store_id), "events": events, "orders": orders,
                "orders_pending": pending, "hint_sockets": len(hub.sockets.get(store_id, ())),
                "last_cursor": _feed_cursor(conn, store_id), "balances": balances}

    return answer(request, await hub.store.read(view))


async def admin_store_events(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    store_id = request.match_info["store_id"]
    status = request.query.get("status")
    if status not in (None, "", "applied", "rejected"):
        raise bad_request("status must be applied or rejected")
    after = query_int(request, "after_seq", 0, 0, MAX_SEQ)
    limit = query_int(request, "limit", 100, 1, 1000)

    def listing(conn):
        _store_exists(conn, store_id)
        rows = conn.execute("SELECT seq, event_id AS id, type, created_at, status, reason, received_at, payload "
                            "FROM events WHERE store_id = ? AND seq > ? AND (? IS NULL OR status = ?) ORDER BY seq "
                            "LIMIT ?", (store_id, after, status or None, status or None, limit + 1)).fetchall()
        items = [{**dict(r), "payload": json.loads(r["payload"])} for r in rows[:limit]]
        return {"events": items, "next_after_seq": items[-1]["seq"] if len(rows) > limit else None}

    return answer(request, await hub.store.read(listing))


def availability(conn, hub: Hub, store_id: str, skus: list[str] | None = None) -> dict:
    """Online availability: max(0, (on_hand - reserved) - pending - buffer); 0 while the store is stale."""
    row = conn.execute("SELECT last_upload_at FROM stores WHERE store_id = ?", (store_id,)).fetchone()
    if row is None:
        raise not_found(f"no store {store_id}")
    # Fresh = the store has reported its balances once and has been in touch since: a quiet store with
    # an empty queue only pulls changes (every few minutes), and must not drop to zero online.
    last = max(filter(None, (row[0], hub.last_seen.get(store_id))), default=None)
    stale = row[0] is None or (hub.now() - parse_time(last)).total_seconds() > hub.stale_after
    products = dict(conn.execute("SELECT sku, active FROM products").fetchall())
    balances = {r[0]: r[1] - r[2] for r in conn.execute(
        "SELECT sku, on_hand, reserved FROM balances WHERE store_id = ?", (store_id,))}
    pending = dict(conn.execute(
        "SELECT l.sku, sum(l.qty) FROM order_lines l JOIN orders o USING (order_id) WHERE o.store_id = ? AND "
        "o.state = 'created' AND o.received_at IS NULL GROUP BY l.sku", (store_id,)).fetchall())
    items = []
    for sku in skus if skus is not None else sorted(set(products) | set(balances), key=str.encode):
        available, held = balances.get(sku, 0), pending.get(sku, 0)
        online = 0 if stale or not products.get(sku, 0) else max(0, available - held - hub.safety_buffer)
        items.append({"sku": sku, "balance_available": available, "pending": held, "buffer": hub.safety_buffer,
                      "online_available": online, "active": bool(products.get(sku, 0))})
    return {"store_id": store_id, "stale": stale, "last_upload_at": last, "stale_after": hub.stale_after,
            "items": items}


async def admin_availability(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    return answer(request, await hub.store.read(availability, hub, request.match_info["store_id"]))


# -- admin: catalog, orders, corrections, other changes --------------------------------------------

async def admin_products(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    body = await model_body(request, ProductsIn)

    def upsert(conn, now):
        if body.store_id is not None:
            _store_exists(conn, body.store_id)
        cursors = []
        for index, product in enumerate(body.products):
            for code in product.barcodes:
                owner = conn.execute("SELECT sku FROM barcodes WHERE code = ?", (code,)).fetchone()
                if owner is not None and owner[0] != product.sku:
                    raise HubError(409, "barcode_taken", f"products[{index}]: barcode {code} already belongs to "
                                   f"SKU {owner[0]}", sku=product.sku, barcode=code)
            conn.execute(
                "INSERT INTO products (sku, name, price_fen, unit, category, low_stock, barcodes, active, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sku) DO UPDATE SET name = excluded.name, "
                "price_fen = excluded.price_fen, unit = excluded.unit, category = excluded.category, "
                "low_stock = excluded.low_stock, barcodes = excluded.barcodes, active = excluded.active, "
                "updated_at = excluded.updated_at",
                (product.sku, product.name, product.price_fen, product.unit, product.category, product.low_stock,
                 json.dumps(product.barcodes), int(product.active), now))
            conn.execute("DELETE FROM barcodes WHERE sku = ?", (product.sku,))
            conn.executemany("INSERT INTO barcodes (code, sku) VALUES (?, ?)",
                             [(code, product.sku) for code in product.barcodes])
            cursors.append(add_change(conn, body.store_id, "product.upserted", product.model_dump(), now)[0])
        return cursors

    cursors = await hub.store.write(upsert, iso(hub.now()))
    await hub.committed(cursor=cursors[-1])
    await hub.notify(body.store_id, {"type": "changes", "cursor": cursors[-1]})
    log.info("products published", extra={"kv": {"count": len(cursors), "store": body.store_id or "all",
                                                  "cursor": cursors[-1]}})
    return answer(request, {"upserted": len(cursors), "first_cursor": cursors[0], "last_cursor": cursors[-1]})


def new_pickup_code(conn, store_id: str) -> str:
    """A random 6-digit code that no open order of the store has (only its SHA-256 is kept)."""
    for _ in range(100):
        code = f"{secrets.randbelow(10 ** PICKUP_CODE_DIGITS):0{PICKUP_CODE_DIGITS}d}"
        if not conn.execute("SELECT 1 FROM orders WHERE store_id = ? AND pickup_code_sha256 = ? AND state NOT IN "
                            "('picked_up', 'cancelled', 'refunded', 'rejected')", (store_id, sha256(code))).fetchone():
            return code
    raise HubError(503, "unavailable", "no free pickup code for this store: too many open orders")


def order_number(conn, store_id: str, day: str) -> str:
    n = conn.execute("SELECT count(*) FROM orders WHERE store_id = ? AND day = ?", (store_id, day)).fetchone()[0]
    return f"{chr(ord('A') + n // 999)}{n % 999 + 1:03d}" if n < 26 * 999 else f"Z{n + 1}"


async def admin_create_order(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    store_id = request.match_info["store_id"]
    body = await model_body(request, OrderIn)
    order_id = body.order_id or "o-" + uuid.uuid4().hex
    moment = hub.now()

    def create(conn, now):
        _store_exists(conn, store_id)
        if conn.execute("SELECT 1 FROM orders WHERE order_id = ?", (order_id,)).fetchone():
            raise HubError(409, "order_exists", f"order {order_id} already exists")
        wanted: dict[str, int] = {}
        lines = []
        for index, line in enumerate(body.lines):
            product = conn.execute("SELECT name, price_fen, active FROM products WHERE sku = ?", (line.sku,)).fetchone()
            if product is None:
                raise HubError(400, "unknown_sku", f"lines[{index}]: {line.sku} is not in the chain catalog",
                               sku=line.sku)
            if not product["active"]:
                raise HubError(409, "product_inactive", f"lines[{index}]: {line.sku} is not for sale (inactive)",
                               sku=line.sku)
            wanted[line.sku] = wanted.get(line.sku, 0) + line.qty
            lines.append({"sku": line.sku, "name": product["name"], "qty": line.qty, "price_fen": product["price_fen"]})
        for item in availability(conn, hub, store_id, list(wanted))["items"]:
            if wanted[item["sku"]] > item["online_available"]:
                raise HubError(409, "out_of_stock", f"only {item['online_available']} of {item['sku']} can be "
                               "sold online now", sku=item["sku"], available=item["online_available"])
        day = moment.astimezone(HUB_TZ).date().isoformat()
        number = order_number(conn, store_id, day)
        code = new_pickup_code(conn, store_id)
        total = sum(line["qty"] * line["price_fen"] for line in lines)
        payload = {"order_id": order_id, "number": number, "kind": body.kind, "lines": lines, "total_fen": total,
                   "pickup_code_sha256": sha256(code), "pickup_after": body.pickup_after,
                   "customer_note": body.customer_note, "created_at": now}
        cursor, change_id = add_change(conn, store_id, "order.created", payload, now)
        conn.execute("INSERT INTO orders (order_id, store_id, number, day, kind, state, total_fen, pickup_code_sha256, "
                     "pickup_after, customer_note, change_id, created_at, updated_at) "
                     "VALUES (?, ?, ?, ?, ?, 'created', ?, ?, ?, ?, ?, ?, ?)",
                     (order_id, store_id, number, day, body.kind, total, sha256(code), body.pickup_after,
                      body.customer_note, change_id, now, now))
        conn.executemany("INSERT INTO order_lines (order_id, line_no, sku, name, qty, price_fen) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         [(order_id, no, l["sku"], l["name"], l["qty"], l["price_fen"])
                          for no, l in enumerate(lines, start=1)])
        token = issue_pickup_token(conn, order_id, store_id, moment, now)
        return {"order_id": order_id, "store_id": store_id, "number": number, "kind": body.kind, "state": "created",
                "pickup_code": code, **token, "total_fen": total, "lines": lines,
                "pickup_after": body.pickup_after, "customer_note": body.customer_note, "change_id": change_id,
                "cursor": cursor}

    order = await hub.store.write(create, iso(moment))
    await hub.committed(cursor=order["cursor"])
    await hub.notify(store_id, {"type": "changes", "cursor": order["cursor"]})
    log.info("order created", extra={"kv": {"store": store_id, "order": order_id, "number": order["number"],
                                            "lines": len(order["lines"]), "total_fen": order["total_fen"]}})
    return answer(request, order, 201)


ORDER_COLUMNS = ("order_id, store_id, number, kind, state, total_fen, pickup_after, customer_note, change_id, "
                 "received_at, short, conflict, created_at, updated_at")
# an order is printed when the store reported a print result for it and the last result of every print job kind
# it reported is printed or confirmed_printed
PRINTED_SQL = ("(EXISTS (SELECT 1 FROM order_prints p WHERE p.order_id = o.order_id) AND NOT EXISTS "
               "(SELECT 1 FROM order_prints p WHERE p.order_id = o.order_id AND p.result NOT IN "
               "('printed', 'confirmed_printed')))")   # PRINTED_RESULTS


def order_view(conn, row) -> dict:
    """An order as the admin API shows it (without its lines)."""
    order = dict(row)
    order["short"] = json.loads(order["short"]) if order["short"] is not None else None
    order["pending"] = order["state"] == "created" and order["received_at"] is None
    prints = [{**dict(r), "reprint": bool(r["reprint"])} for r in conn.execute(
        "SELECT kind, job_key, result, at, printer, attempts, error, reprint, event_id, received_at FROM order_prints "
        "WHERE order_id = ? ORDER BY seq DESC", (order["order_id"],))]
    order["print"] = prints[0] if prints else None            # the latest print result, of any kind
    order["prints"] = sorted(prints, key=lambda p: PRINT_KINDS.index(p["kind"]))   # the latest of each kind
    order["printed"] = bool(prints) and all(p["result"] in PRINTED_RESULTS for p in prints)
    pickup = conn.execute("SELECT verified_at, operator, method, device, provisional, jti, event_id, received_at, "
                          "reversed_at, reversed_by, reverse_reason, reverse_event_id FROM order_pickups "
                          "WHERE order_id = ?", (order["order_id"],)).fetchone()
    order["pickup"] = None if pickup is None else {**dict(pickup), "provisional": bool(pickup["provisional"])}
    return order


def get_order(conn, order_id: str) -> dict:
    row = conn.execute(f"SELECT {ORDER_COLUMNS} FROM orders WHERE order_id = ?", (order_id,)).fetchone()
    if row is None:
        raise not_found(f"no order {order_id}")
    order = order_view(conn, row)
    order["lines"] = [dict(r) for r in conn.execute(
        "SELECT line_no, sku, name, qty, price_fen FROM order_lines WHERE order_id = ? ORDER BY line_no", (order_id,))]
    return order


async def admin_list_orders(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    store_id = request.query.get("store_id") or None
    state = request.query.get("state") or None
    printed = request.query.get("printed") or None
    conflict = request.query.get("conflict") or None
    after = request.query.get("after") or None
    if state not in (None, *ORDER_STATES):
        raise bad_request(f"state must be one of {', '.join(ORDER_STATES)}")
    if printed not in (None, "true", "false"):
        raise bad_request("printed must be true or false")
    if conflict not in (None, "true", "false"):
        raise bad_request("conflict must be true or false")
    limit = query_int(request, "limit", 100, 1, 1000)

    def listing(conn):
        if store_id is not None:
            _store_exists(conn, store_id)
        where, args = ["1"], []
        if after is not None:
            mark = conn.execute("SELECT created_at, order_id FROM orders WHERE order_id = ?", (after,)).fetchone()
            if mark is None:
                raise bad_request(f"after: no order {show(after)} (pass the next_after of the page before)")
            where.append("(o.created_at, o.order_id) > (?, ?)")
            args += [mark[0], mark[1]]
        if store_id is not None:
            where.append("o.store_id = ?")
            args.append(store_id)
        if state is not None:
            where.append("o.state = ?")
            args.append(state)
        if printed is not None:
            where.append(PRINTED_SQL if printed == "true" else f"NOT {PRINTED_SQL}")
        if conflict is not None:
            where.append("o.conflict IS NOT NULL" if conflict == "true" else "o.conflict IS NULL")
        rows = conn.execute(f"SELECT {', '.join('o.' + c for c in ORDER_COLUMNS.split(', '))} FROM orders o "
                            f"WHERE {' AND '.join(where)} ORDER BY o.created_at, o.order_id LIMIT ?",
                            (*args, limit + 1)).fetchall()
        orders = [order_view(conn, row) for row in rows[:limit]]
        return {"orders": orders, "next_after": orders[-1]["order_id"] if len(rows) > limit else None}

    return answer(request, await hub.store.read(listing))


async def admin_get_order(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    return answer(request, await hub.store.read(get_order, request.match_info["order_id"]))


def _close_order(to: str):
    change_type = {"cancelled": "order.cancelled", "refunded": "order.refunded"}[to]

    async def handler(request: web.Request) -> web.Response:
        hub = auth_admin(request)
        order_id = request.match_info["order_id"]
        body = await model_body(request, ReasonIn)

        def close(conn, now):
            order = get_order(conn, order_id)
            if order["state"] in CLOSED_ORDER_STATES:
                raise HubError(409, "order_closed", f"order {order_id} is already {order['state']}",
                               state=order["state"])
            conn.execute("UPDATE orders SET state = ?, updated_at = ? WHERE order_id = ?", (to, now, order_id))
            cursor, change_id = add_change(conn, order["store_id"], change_type,
                                           {"order_id": order_id, "reason": body.reason}, now)
            return {"order_id": order_id, "store_id": order["store_id"], "state": to, "change_id": change_id,
                    "cursor": cursor}

        done = await hub.store.write(close, iso(hub.now()))
        await hub.committed(cursor=done["cursor"])
        await hub.notify(done["store_id"], {"type": "changes", "cursor": done["cursor"]})
        log.info(f"order {to}", extra={"kv": {"store": done["store_id"], "order": order_id}})
        return answer(request, done)

    return handler


async def admin_correction(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    store_id = request.match_info["store_id"]
    body = await model_body(request, CorrectionIn)

    def correct(conn, now):
        _store_exists(conn, store_id)
        if not conn.execute("SELECT 1 FROM products WHERE sku = ?", (body.sku,)).fetchone():
            raise HubError(400, "unknown_sku", f"{body.sku} is not in the chain catalog", sku=body.sku)
        return add_change(conn, store_id, "stock.correction", body.model_dump(), now)

    cursor, change_id = await hub.store.write(correct, iso(hub.now()))
    await hub.committed(cursor=cursor)
    await hub.notify(store_id, {"type": "changes", "cursor": cursor})
    log.info("correction published", extra={"kv": {"store": store_id, "sku": body.sku, "qty": body.qty}})
    return answer(request, {"change_id": change_id, "cursor": cursor}, 201)


async def admin_change(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    body = await model_body(request, ChangeIn)

    def publish(conn, now):
        if body.store_id is not None:
            _store_exists(conn, body.store_id)
        return add_change(conn, body.store_id, body.type, body.payload, now)

    cursor, change_id = await hub.store.write(publish, iso(hub.now()))
    await hub.committed(cursor=cursor)
    await hub.notify(body.store_id, {"type": "changes", "cursor": cursor})
    log.info("change published", extra={"kv": {"type": body.type, "store": body.store_id or "all", "cursor": cursor}})
    return answer(request, {"change_id": change_id, "cursor": cursor}, 201)


async def admin_epoch(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    previous, epoch = hub.epoch, new_epoch()
    await hub.store.write(_set_epoch, epoch)
    hub.epoch = epoch
    await hub.committed(epoch=epoch)
    log.warning("new epoch", extra={"kv": {"epoch": epoch, "previous": previous, "why": "admin API"}})
    for store_id in list(hub.sockets):  # connected stores learn it at once
        cursor = await hub.store.read(_feed_cursor, store_id)
        await hub.notify(store_id, {"type": "hello", "epoch": epoch, "cursor": cursor})
    return answer(request, {"previous_epoch": previous})


# -- signing keys and tokens (docs/tokens.md) -----------------------------------------------------

def _unix(moment: datetime) -> int:
    return int(moment.timestamp())


def _iso_unix(seconds: int) -> str:
    return iso(datetime.fromtimestamp(seconds, timezone.utc))


def create_signing_key(conn, moment: datetime, now: str) -> dict:
    """A new key, published to every store (`key.published`, store_id NULL)."""
    private, public = jws.new_key()
    kid = jws.new_kid(moment)
    while conn.execute("SELECT 1 FROM signing_keys WHERE kid = ?", (kid,)).fetchone():
        kid = jws.new_kid(moment)
    cursor, change_id = add_change(conn, None, "key.published",
                                   {"kid": kid, "alg": jws.KEY_ALG, "public_key": public}, now)
    conn.execute("INSERT INTO signing_keys (kid, alg, private_key, public_key, created_at, published_change_id) "
                 "VALUES (?, ?, ?, ?, ?, ?)", (kid, jws.KEY_ALG, private, public, now, change_id))
    return {"kid": kid, "alg": jws.KEY_ALG, "public_key": public, "created_at": now, "change_id": change_id,
            "cursor": cursor}


def ensure_signing_key(conn, moment: datetime) -> dict | None:
    """At start: a key if the hub has none that is not revoked (first start, or an upgraded hub)."""
    if conn.execute("SELECT 1 FROM signing_keys WHERE revoked_at IS NULL").fetchone():
        return None
    return create_signing_key(conn, moment, iso(moment))


def current_key(conn) -> tuple[str, bytes]:
    """(kid, private key) of the key that signs: the newest not revoked."""
    row = conn.execute("SELECT kid, private_key FROM signing_keys WHERE revoked_at IS NULL "
                       "ORDER BY created_at DESC, rowid DESC LIMIT 1").fetchone()
    if row is None:
        raise HubError(409, "no_signing_key", "the hub has no signing key: create one with POST /admin/v1/keys")
    return row[0], bytes(row[1])


def issue_pickup_token(conn, order_id: str, store_id: str, moment: datetime, now: str) -> dict:
    kid, private = current_key(conn)
    iat = _unix(moment)
    claims = {"sub": order_id, "sid": store_id, "iat": iat, "exp": iat + PICKUP_TOKEN_TTL,
              "jti": "p-" + secrets.token_hex(12)}
    token = jws.sign(private, kid, jws.TYP_PICKUP, claims)
    expires = _iso_unix(claims["exp"])
    conn.execute("INSERT INTO pickup_tokens (jti, order_id, kid, issued_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                 (claims["jti"], order_id, kid, now, expires))
    return {"pickup_token": token, "pickup_token_expires_at": expires}


def key_view(row) -> dict:
    return {k: row[k] for k in ("kid", "alg", "public_key", "created_at", "revoked_at", "revoke_reason")}


def list_keys(conn) -> dict:
    rows = conn.execute("SELECT kid, alg, public_key, created_at, revoked_at, revoke_reason FROM signing_keys "
                        "ORDER BY created_at, rowid").fetchall()
    signer = conn.execute("SELECT kid FROM signing_keys WHERE revoked_at IS NULL ORDER BY created_at DESC, "
                          "rowid DESC LIMIT 1").fetchone()
    return {"keys": [{**key_view(r), "signing": signer is not None and r["kid"] == signer[0]} for r in rows]}


async def admin_list_keys(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    return answer(request, await hub.store.read(list_keys))


async def admin_rotate_key(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    moment = hub.now()
    key = await hub.store.write(create_signing_key, moment, iso(moment))
    await hub.committed(cursor=key["cursor"])
    await hub.notify(None, {"type": "changes", "cursor": key["cursor"]})
    log.info("signing key rotated", extra={"kv": {"kid": key["kid"], "cursor": key["cursor"]}})
    return answer(request, {**key, "signing": True}, 201)


async def optional_body(request: web.Request, model: type[BaseModel]):
    """A body that may be left out (no bytes): the model's defaults."""
    if not (await request.read()).strip():
        return model()
    return await model_body(request, model)


async def admin_revoke_key(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    kid = request.match_info["kid"]
    body = await optional_body(request, OptionalReasonIn)

    def revoke(conn, now):
        row = conn.execute("SELECT revoked_at FROM signing_keys WHERE kid = ?", (kid,)).fetchone()
        if row is None:
            raise not_found(f"no key {kid}")
        if row[0] is not None:
            raise HubError(409, "key_revoked", f"key {kid} is already revoked", revoked_at=row[0])
        if not conn.execute("SELECT 1 FROM signing_keys WHERE revoked_at IS NULL AND kid <> ?", (kid,)).fetchone():
            raise HubError(409, "last_key", f"key {kid} is the only key left: rotate first (POST /admin/v1/keys), "
                           "then revoke it")
        payload = {"kid": kid} if body.reason is None else {"kid": kid, "reason": body.reason}
        cursor, change_id = add_change(conn, None, "key.revoked", payload, now)
        conn.execute("UPDATE signing_keys SET revoked_at = ?, revoke_reason = ?, revoked_change_id = ? WHERE kid = ?",
                     (now, body.reason, change_id, kid))
        return {"kid": kid, "revoked_at": now, "change_id": change_id, "cursor": cursor,
                "signing_kid": current_key(conn)[0]}

    done = await hub.store.write(revoke, iso(hub.now()))
    await hub.committed(cursor=done["cursor"])
    await hub.notify(None, {"type": "changes", "cursor": done["cursor"]})
    log.warning("signing key revoked", extra={"kv": {"kid": kid, "cursor": done["cursor"]}})
    return answer(request, done)


async def admin_pickup_token(request: web.Request) -> web.Response:
    """A new pickup token for an open order (the customer lost the QR code); the code is not re-issued."""
    hub = auth_admin(request)
    store_id, order_id = request.match_info["store_id"], request.match_info["order_id"]
    moment = hub.now()

    def reissue(conn, now):
        _store_exists(conn, store_id)
        row = conn.execute("SELECT state FROM orders WHERE order_id = ? AND store_id = ?",
                           (order_id, store_id)).fetchone()
        if row is None:
            raise not_found(f"no order {order_id} at store {store_id}")
        if row[0] in (*CLOSED_ORDER_STATES, "rejected"):
            raise HubError(409, "order_closed", f"order {order_id} is {row[0]}", state=row[0])
        return {"order_id": order_id, "store_id": store_id,
                **issue_pickup_token(conn, order_id, store_id, moment, now)}

    done = await hub.store.write(reissue, iso(moment))
    log.info("pickup token issued", extra={"kv": {"store": store_id, "order": order_id}})
    return answer(request, done, 201)


# -- admin: coupons -------------------------------------------------------------------------------

def _coupon_row(conn, coupon_id: str):
    row = conn.execute("SELECT coupon_id, definition, store_ids, created_at, revoked_at, revoke_reason FROM coupons "
                       "WHERE coupon_id = ?", (coupon_id,)).fetchone()
    if row is None:
        raise not_found(f"no coupon {coupon_id}")
    return row


def coupon_summary(conn, row) -> dict:
    stats = conn.execute("SELECT (SELECT count(*) FROM coupon_serials WHERE coupon_id = ?), "
                         "(SELECT count(*) FROM coupon_redemptions WHERE coupon_id = ?), "
                         "(SELECT count(*) FROM coupon_redemptions WHERE coupon_id = ? AND flags <> '[]')",
                         (row["coupon_id"],) * 3).fetchone()
    return {"coupon_id": row["coupon_id"], "definition": json.loads(row["definition"]),
            "store_ids": json.loads(row["store_ids"]) if row["store_ids"] is not None else None,
            "created_at": row["created_at"], "revoked_at": row["revoked_at"], "revoke_reason": row["revoke_reason"],
            "serials_issued": stats[0], "redemptions": stats[1], "flagged_redemptions": stats[2]}


def coupon_detail(conn, coupon_id: str) -> dict:
    row = _coupon_row(conn, coupon_id)
    coupon = coupon_summary(conn, row)
    allowed = coupon["definition"].get("uses", 1)
    uses: dict[str, list] = {}
    for r in conn.execute("SELECT serial, use_no, store_id, sale_id, discount_fen, jti, provisional, redeemed_at, "
                          "event_id, received_at, flags FROM coupon_redemptions WHERE coupon_id = ? ORDER BY id",
                          (coupon_id,)):
        uses.setdefault(r["serial"], []).append({**{k: r[k] for k in r.keys() if k != "serial"},
                                                 "provisional": bool(r["provisional"]),
                                                 "flags": json.loads(r["flags"])})
    coupon["serials"] = [
        {"serial": r["serial"], "store_id": r["store_id"], "jti": r["jti"], "kid": r["kid"],
         "issued_at": r["issued_at"], "expires_at": r["expires_at"], "uses": len(uses.get(r["serial"], ())),
         "uses_allowed": allowed, "over_used": len(uses.get(r["serial"], ())) > allowed,
         "redemptions": uses.get(r["serial"], [])}
        for r in conn.execute("SELECT serial, store_id, jti, kid, issued_at, expires_at FROM coupon_serials "
                              "WHERE coupon_id = ? ORDER BY issued_at, rowid", (coupon_id,))]
    return coupon


async def admin_define_coupon(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    body = await model_body(request, CouponIn)
    definition = body.definition()

    def define(conn, now):
        for store_id in body.store_ids or ():
            _store_exists(conn, store_id)
        if conn.execute("SELECT 1 FROM coupons WHERE coupon_id = ?", (body.coupon_id,)).fetchone():
            raise HubError(409, "coupon_exists", f"coupon {body.coupon_id} is already defined: define a new one")
        cursors = [add_change(conn, store_id, "coupon.defined", definition, now)[0]
                   for store_id in (body.store_ids or [None])]
        conn.execute("INSERT INTO coupons (coupon_id, definition, store_ids, created_at) VALUES (?, ?, ?, ?)",
                     (body.coupon_id, stored_json(definition),
                      stored_json(body.store_ids) if body.store_ids is not None else None, now))
        return {**coupon_summary(conn, _coupon_row(conn, body.coupon_id)), "cursors": cursors}

    done = await hub.store.write(define, iso(hub.now()))
    await hub.committed(cursor=max(done["cursors"]))
    for store_id, cursor in zip(body.store_ids or [None], done["cursors"]):
        await hub.notify(store_id, {"type": "changes", "cursor": cursor})
    log.info("coupon defined", extra={"kv": {"coupon": body.coupon_id, "stores": len(body.store_ids or ()) or "all"}})
    return answer(request, done, 201)


async def admin_list_coupons(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    return answer(request, await hub.store.read(lambda conn: {"coupons": [
        coupon_summary(conn, r) for r in conn.execute(
            "SELECT coupon_id, definition, store_ids, created_at, revoked_at, revoke_reason FROM coupons "
            "ORDER BY created_at, coupon_id")]}))


async def admin_get_coupon(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    return answer(request, await hub.store.read(coupon_detail, request.match_info["coupon_id"]))


async def admin_issue_coupon(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    coupon_id = request.match_info["coupon_id"]
    body = await optional_body(request, IssueIn)
    moment = hub.now()

    def issue(conn, now):
        row = _coupon_row(conn, coupon_id)
        if row["revoked_at"] is not None:
            raise HubError(409, "coupon_revoked", f"coupon {coupon_id} is revoked", revoked_at=row["revoked_at"])
        definition = json.loads(row["definition"])
        stores = json.loads(row["store_ids"]) if row["store_ids"] is not None else None
        if body.store_id is not None:
            _store_exists(conn, body.store_id)
            if stores is not None and body.store_id not in stores:
                raise HubError(409, "wrong_store", f"coupon {coupon_id} is not published to store {body.store_id}",
                               store_ids=stores)
        iat = _unix(moment)
        exp = _unix(parse_time(definition["valid_until"]))
        if body.expires_at is not None:
            exp = min(exp, _unix(parse_time(body.expires_at)))
        if exp <= iat:
            raise HubError(409, "coupon_expired", f"coupon {coupon_id} (or the asked expires_at) has expired")
        kid, private = current_key(conn)
        serial, jti = "cs-" + secrets.token_hex(8), "c-" + secrets.token_hex(12)
        claims = {"sub": serial, "cid": coupon_id}
        if body.store_id is not None:
            claims["sid"] = body.store_id
        claims["iat"] = iat
        valid_from = _unix(parse_time(definition["valid_from"]))
        if valid_from > iat:
            claims["nbf"] = valid_from
        claims.update(exp=exp, jti=jti)
        token = jws.sign(private, kid, jws.TYP_COUPON, claims)
        conn.execute("INSERT INTO coupon_serials (serial, coupon_id, store_id, jti, kid, issued_at, expires_at) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?)", (serial, coupon_id, body.store_id, jti, kid, now, _iso_unix(exp)))
        return {"coupon_id": coupon_id, "serial": serial, "store_id": body.store_id, "coupon_token": token,
                "jti": jti, "kid": kid, "expires_at": _iso_unix(exp)}

    done = await hub.store.write(issue, iso(moment))
    log.info("coupon issued", extra={"kv": {"coupon": coupon_id, "serial": done["serial"],
                                            "store": body.store_id or "all"}})
    return answer(request, done, 201)


async def admin_revoke_coupon(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    coupon_id = request.match_info["coupon_id"]
    body = await model_body(request, ReasonIn)

    def revoke(conn, now):
        row = _coupon_row(conn, coupon_id)
        if row["revoked_at"] is not None:
            raise HubError(409, "coupon_revoked", f"coupon {coupon_id} is already revoked", revoked_at=row["revoked_at"])
        stores = json.loads(row["store_ids"]) if row["store_ids"] is not None else [None]
        cursors = [add_change(conn, store_id, "coupon.revoked", {"coupon_id": coupon_id, "reason": body.reason}, now)[0]
                   for store_id in stores]
        conn.execute("UPDATE coupons SET revoked_at = ?, revoke_reason = ? WHERE coupon_id = ?",
                     (now, body.reason, coupon_id))
        return {"coupon_id": coupon_id, "revoked_at": now, "stores": stores, "cursors": cursors}

    done = await hub.store.write(revoke, iso(hub.now()))
    await hub.committed(cursor=max(done["cursors"]))
    for store_id, cursor in zip(done.pop("stores"), done["cursors"]):
        await hub.notify(store_id, {"type": "changes", "cursor": cursor})
    log.info("coupon revoked", extra={"kv": {"coupon": coupon_id}})
    return answer(request, done)


# -- the application ------------------------------------------------------------------------------

def build_hub_app(data_dir: Path, *, admin_token: str, safety_buffer: int = 0, stale_after: float = 600.0,
                  new_epoch: bool = False, clock: Callable[[], datetime] | None = None) -> web.Application:
    """The hub as an aiohttp application; its database opens when the app starts (cleanup_ctx)."""
    if not admin_token or not admin_token.strip():
        raise ValueError("the admin token must not be empty")
    if safety_buffer < 0 or stale_after <= 0:
        raise ValueError("safety_buffer must be >= 0 and stale_after > 0")
    hub = Hub(Path(data_dir), admin_token.strip(), safety_buffer, stale_after, new_epoch)
    if clock is not None:
        hub.clock = clock
    app = web.Application(middlewares=[errors_middleware], client_max_size=BODY_LIMIT)
    app[HUB] = hub

    async def subsystem(app: web.Application):
        await hub.start()
        yield
        await hub.stop()

    async def on_shutdown(app: web.Application):  # open hint sockets would hold the stop up
        await hub.close_sockets(None, WSCloseCode.GOING_AWAY, b"hub stopping")

    app.cleanup_ctx.append(subsystem)
    app.on_shutdown.append(on_shutdown)
    sync = "/sync/v1/stores/{store_id}"
    app.add_routes([
        web.post(sync + "/events", post_events),
        web.get(sync + "/changes", get_changes),
        web.get(sync + "/state", get_state),
        web.get(sync + "/balances", get_balances),
        web.get(sync + "/hints", get_hints),
        web.get("/admin/v1/stores", admin_list_stores),
        web.post("/admin/v1/stores", admin_put_store),
        web.get("/admin/v1/stores/{store_id}", admin_get_store),
        web.get("/admin/v1/stores/{store_id}/events", admin_store_events),
        web.get("/admin/v1/stores/{store_id}/availability", admin_availability),
        web.post("/admin/v1/stores/{store_id}/orders", admin_create_order),
        web.post("/admin/v1/stores/{store_id}/orders/{order_id}/pickup-token", admin_pickup_token),
        web.post("/admin/v1/stores/{store_id}/corrections", admin_correction),
        web.post("/admin/v1/products", admin_products),
        web.get("/admin/v1/orders", admin_list_orders),
        web.get("/admin/v1/orders/{order_id}", admin_get_order),
        web.post("/admin/v1/orders/{order_id}/cancel", _close_order("cancelled")),
        web.post("/admin/v1/orders/{order_id}/refund", _close_order("refunded")),
        web.post("/admin/v1/changes", admin_change),
        web.get("/admin/v1/keys", admin_list_keys),
        web.post("/admin/v1/keys", admin_rotate_key),
        web.post("/admin/v1/keys/{kid}/revoke", admin_revoke_key),
        web.get("/admin/v1/coupons", admin_list_coupons),
        web.post("/admin/v1/coupons", admin_define_coupon),
        web.get("/admin/v1/coupons/{coupon_id}", admin_get_coupon),
        web.post("/admin/v1/coupons/{coupon_id}/issue", admin_issue_coupon),
        web.post("/admin/v1/coupons/{coupon_id}/revoke", admin_revoke_coupon),
        web.post("/admin/v1/epoch", admin_epoch),
    ])
    return app


# -- the command ----------------------------------------------------------------------------------

class StartError(Exception):
    pass


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be 0-65535 (0: any free port)")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path, help="folder of hub.db, hub.highwater and admin-token")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=8480, help="port (default 8480; 0: any free port)")
    parser.add_argument("--admin-token-file", type=Path,
                        help="file holding the admin API token (default: DIR/admin-token, generated at first start)")
    parser.add_argument("--safety-buffer", type=_non_negative_int, default=0,
                        help="units per SKU kept back from online availability (default 0)")
    parser.add_argument("--stale-after", type=_positive_float, default=600.0,
                        help="seconds after a store's last upload when its online availability drops to 0 (600)")
    parser.add_argument("--new-epoch", action="store_true",
                        help="start a new epoch: every store resends its events and pulls the feed again")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))


def admin_token(data_dir: Path, token_file: Path | None) -> str:
    """The admin token: from --admin-token-file, else DIR/admin-token (created 0600 at first start)."""
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise StartError(f"cannot read the admin token file {token_file}: {exc}") from None
        if not token:
            raise StartError(f"the admin token file {token_file} is empty")
        if token_file.stat().st_mode & 0o077:
            log.warning("admin token file is readable by other users", extra={"kv": {"path": token_file}})
        return token
    path = data_dir / "admin-token"
    try:
        token = path.read_text(encoding="utf-8").strip()
        if token:
            log.info("admin token", extra={"kv": {"path": path}})
            return token
    except FileNotFoundError:
        pass
    except (OSError, UnicodeDecodeError) as exc:
        raise StartError(f"cannot read {path}: {exc}") from None
    token = "hub_" + secrets.token_urlsafe(32)
    try:
        path.unlink(missing_ok=True)  # an empty file left by an interrupted start
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(token + "\n")
    except OSError as exc:
        raise StartError(f"cannot write {path}: {exc}") from None
    log.warning("admin token generated", extra={"kv": {"path": path, "mode": "0600"}})
    return token


async def serve(app: web.Application, host: str, port: int, stop: asyncio.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT (or `stop` is set); a second signal exits at once."""
    @contextlib.asynccontextmanager
    async def serving(runner: web.AppRunner):
        bound = runner.addresses[0] if runner.addresses else (host, port)
        log.info("listening", extra={"kv": {"address": f"http://{host}:{bound[1]}/", "epoch": app[HUB].epoch}})
        yield

    await serve_until_stopped(app, host, port, stop=stop, while_serving=serving)


def run(args) -> int:
    """`store-edge hub`: blocking; 0 after SIGTERM/SIGINT, 1 if it cannot start, 2 for a bad admin token."""
    log_mod.setup(getattr(args, "log_level", "info"))
    data_dir = Path(args.data)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        token = admin_token(data_dir, args.admin_token_file)
    except StartError as exc:
        log.error("cannot start", extra={"kv": {"error": str(exc)}})
        return 2
    except OSError as exc:
        log.error("cannot start", extra={"kv": {"error": str(exc)}})
        return 1
    app = build_hub_app(data_dir, admin_token=token, safety_buffer=args.safety_buffer,
                        stale_after=args.stale_after, new_epoch=args.new_epoch)
    try:
        asyncio.run(serve(app, args.host, args.port))
    except (OSError, SchemaTooNew) as exc:  # port taken, folder not writable, a newer database
        log.error("cannot start", extra={"kv": {"error": str(exc)}})
        return 1
    return 0
