"""The reference cloud hub: the cloud side of docs/sync-protocol.md, for many stores.

`store-edge hub --data DIR` runs an aiohttp server on a SQLite database (DIR/hub.db, through
edge.core.sqlite.Store and its single writer thread, with the migrations of hub/schema.py), or with
`--db-url`/`--db-url-file` on PostgreSQL (hub/db_postgres.py; several hub processes may share one):

- /sync/v1/stores/{store_id}/...  the protocol: events upload (hub/events.py), changes feed, state
                                  and balances (hub/changes.py), hints (hub/hints.py)
- /admin/v1/...                   the chain's side: stores, catalog, corrections, epoch (hub/admin_api.py),
                                  online orders (hub/orders.py), keys (hub/keys.py), coupons
                                  (hub/coupons.py), members (hub/members.py) and their
                                  ledgers, holds and programme (hub/member_*.py); docs/hub-admin-api.md
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import re
import secrets
from datetime import datetime
from pathlib import Path
from typing import Callable

from aiohttp import WSCloseCode, web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from edge.core import log as log_mod
from edge.core.serving import serve_until_stopped
from edge.core.sqlite import SchemaTooNew
from hub import admin_api, coupons, keys, member_admin, member_holds, member_program, members, orders
from hub.admission import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_UPLOADS, DEFAULT_MAX_WAIT, Admission
from hub.changes import get_balances, get_changes, get_state
from hub.db_postgres import PostgresDatabase
from hub.events import get_events, post_events
from hub.health import database_reachable, get_health
from hub.hints import get_hints
from hub.http import auth_admin, errors_middleware
from hub.state import HUB, Hub
from hub.wakeups import Wakeups

log = logging.getLogger(__name__)

BODY_LIMIT = 16 * 1024 * 1024
# Python's cyclic garbage collector at its default thresholds (700, 10, 10) ran a full collection every
# few seconds in a reconnect storm: the bodies of the uploads in flight are hundreds of thousands of
# objects that live long enough to be promoted. Each took 80-290 ms with the event loop stopped and
# found almost nothing (bench/chain.py): the spikes in an order's time. Young collections are 70 times
# rarer here, and what the start loaded (modules, schemas) is frozen out of every collection.
# Reference counting still frees at once everything that is not in a cycle.
GC_THRESHOLDS = (50_000, 20, 20)


def build_hub_app(data_dir: Path, *, admin_token: str, safety_buffer: int = 0, stale_after: float = 600.0,
                  new_epoch: bool = False, clock: Callable[[], datetime] | None = None,
                  chain: str = "chain-1", max_uploads: int = DEFAULT_MAX_UPLOADS,
                  max_upload_bytes: int = DEFAULT_MAX_BODY_BYTES,
                  max_upload_wait: float = DEFAULT_MAX_WAIT, db_url: str | None = None) -> web.Application:
    """The hub as an aiohttp application; its database opens when the app starts (cleanup_ctx).

    max_uploads, max_upload_bytes, max_upload_wait: the admission gate's bounds (hub/admission.py).
    db_url: a postgresql:// URL; None: SQLite in data_dir."""
    if not admin_token or not admin_token.strip():
        raise ValueError("the admin token must not be empty")
    if safety_buffer < 0 or stale_after <= 0:
        raise ValueError("safety_buffer must be >= 0 and stale_after > 0")
    hub = Hub(Path(data_dir), admin_token.strip(), safety_buffer, stale_after, new_epoch, chain=chain,
              admission=Admission(max_uploads, max_upload_bytes, max_upload_wait, body_limit=BODY_LIMIT))
    if clock is not None:
        hub.clock = clock
    if db_url is not None:
        hub.db = PostgresDatabase(check_db_url(db_url))
    app = web.Application(middlewares=[errors_middleware], client_max_size=BODY_LIMIT)
    app[HUB] = hub

    async def subsystem(app: web.Application):
        await hub.start()
        if isinstance(hub.db, PostgresDatabase):
            hub.db.listen(Wakeups(hub).notice)
        await keys.ensure_key(hub)
        yield
        await hub.stop()

    async def on_shutdown(app: web.Application):  # open hint sockets would hold the stop up
        await hub.close_sockets(None, WSCloseCode.GOING_AWAY, b"hub stopping")

    app.cleanup_ctx.append(subsystem)
    app.on_shutdown.append(on_shutdown)
    sync = "/sync/v1/stores/{store_id}"
    app.add_routes([
        web.post(sync + "/events", post_events),
        web.get(sync + "/events", get_events),
        web.get(sync + "/changes", get_changes),
        web.get(sync + "/state", get_state),
        web.get(sync + "/balances", get_balances),
        web.get(sync + "/hints", get_hints),
        web.post(sync + "/members/lookup", members.store_lookup_member),
        web.post(sync + "/members/holds", member_holds.store_create_hold),
        web.delete(sync + "/members/holds/{hold_id}", member_holds.store_release_hold),
        web.get("/admin/v1/stores", admin_api.admin_list_stores),
        web.post("/admin/v1/stores", admin_api.admin_put_store),
        web.get("/admin/v1/stores/{store_id}", admin_api.admin_get_store),
        web.get("/admin/v1/stores/{store_id}/events", admin_api.admin_store_events),
        web.get("/admin/v1/stores/{store_id}/availability", admin_api.admin_availability),
        web.post("/admin/v1/stores/{store_id}/orders", orders.admin_create_order),
        web.post("/admin/v1/stores/{store_id}/orders/{order_id}/pickup-token", orders.admin_pickup_token),
        web.post("/admin/v1/stores/{store_id}/corrections", admin_api.admin_correction),
        web.post("/admin/v1/products", admin_api.admin_products),
        web.get("/admin/v1/orders", orders.admin_list_orders),
        web.get("/admin/v1/orders/{order_id}", orders.admin_get_order),
        web.post("/admin/v1/orders/{order_id}/cancel", orders.close_order("cancelled")),
        web.post("/admin/v1/orders/{order_id}/refund", orders.close_order("refunded")),
        web.post("/admin/v1/changes", admin_api.admin_change),
        web.get("/admin/v1/keys", keys.admin_list_keys),
        web.post("/admin/v1/keys", keys.admin_rotate_key),
        web.post("/admin/v1/keys/{kid}/revoke", keys.admin_revoke_key),
        web.get("/admin/v1/coupons", coupons.admin_list_coupons),
        web.post("/admin/v1/coupons", coupons.admin_define_coupon),
        web.get("/admin/v1/coupons/{coupon_id}", coupons.admin_get_coupon),
        web.post("/admin/v1/coupons/{coupon_id}/issue", coupons.admin_issue_coupon),
        web.post("/admin/v1/coupons/{coupon_id}/revoke", coupons.admin_revoke_coupon),
        web.post("/admin/v1/epoch", admin_api.admin_epoch),
        web.post("/admin/v1/members", members.admin_create_member),
        web.get("/admin/v1/members/{member_id}", members.admin_get_member),
        web.post("/admin/v1/members/{member_id}/certificates", members.admin_issue_certificate),
        web.post("/admin/v1/members/{member_id}/points", member_admin.admin_points),
        web.post("/admin/v1/members/{member_id}/stored-value", member_admin.admin_stored_value),
        web.get("/admin/v1/members/{member_id}/ledger", member_admin.admin_ledger),
        web.get("/admin/v1/member-flags", member_admin.admin_flags),
        web.put("/admin/v1/member-program", member_program.admin_put_program),
        web.get("/admin/v1/member-program", member_program.admin_get_program),
        web.post("/admin/v1/member-prices", member_program.admin_post_prices),
        web.get("/metrics", metrics),
        web.get("/health", get_health),
    ])
    return app


async def metrics(request: web.Request) -> web.Response:
    """The admission gate's figures and the hub's (hub/metrics.py), Prometheus' text format; admin token."""
    hub = auth_admin(request)
    await database_reachable(hub)
    await hub.metrics.refresh(hub.sockets, hub.db.read, hub.now())
    body = generate_latest(hub.admission.registry) + generate_latest(hub.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


class StartError(Exception):
    pass


def check_db_url(url: str) -> str:
    url = url.strip()
    if not url.startswith(("postgresql://", "postgres://")):
        raise ValueError("the database URL must start with postgresql:// (SQLite needs none: it is the default)")
    return url


def db_url(args) -> str | None:
    """--db-url, or the first line of --db-url-file (a file or a systemd credential); None: SQLite."""
    if args.db_url_file is None:
        return args.db_url
    try:
        text = args.db_url_file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise StartError(f"cannot read the database URL file {args.db_url_file}: {exc}") from None
    if not text:
        raise StartError(f"the database URL file {args.db_url_file} is empty")
    return text.splitlines()[0].strip()


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def _chain(text: str) -> str:
    if not re.fullmatch(r"[\x21-\x7e]{1,64}", text):
        raise argparse.ArgumentTypeError("must be 1 to 64 printable characters without spaces")
    return text


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
    parser.add_argument("--chain", default="chain-1", type=_chain,
                        help="the chain's id in member certificates; a store's [store] chain must match (default chain-1)")
    parser.add_argument("--max-uploads", type=_positive_int, default=DEFAULT_MAX_UPLOADS,
                        help="uploads worked on at once; beyond: 503 with Retry-After, the body not read "
                             f"(default {DEFAULT_MAX_UPLOADS})")
    parser.add_argument("--max-upload-wait", type=_positive_float, default=DEFAULT_MAX_WAIT,
                        help="seconds of measured work ahead of a new upload at most; beyond: 503 with "
                             f"Retry-After (default {DEFAULT_MAX_WAIT:g}; keep it well under the stores' timeout)")
    parser.add_argument("--max-upload-bytes", type=_positive_int, default=DEFAULT_MAX_BODY_BYTES,
                        help="bytes of upload bodies (their Content-Length) held at once; beyond: 503 with "
                             f"Retry-After (default {DEFAULT_MAX_BODY_BYTES}, 32 MiB)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--db-url", help="postgresql://USER:PASSWORD@HOST:PORT/DB: keep the data in PostgreSQL, "
                                        "shared by several hub processes (default: SQLite in DIR/hub.db); a password "
                                        "here shows in the process list: prefer --db-url-file")
    where.add_argument("--db-url-file", type=Path,
                       help="file holding the postgresql:// URL (e.g. a systemd credential: "
                            "$CREDENTIALS_DIRECTORY/hub-db-url)")
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
        url = db_url(args)
        if url is not None:
            url = check_db_url(url)
    except (StartError, ValueError) as exc:
        log.error("cannot start", extra={"kv": {"error": str(exc)}})
        return 2
    except OSError as exc:
        log.error("cannot start", extra={"kv": {"error": str(exc)}})
        return 1
    app = build_hub_app(data_dir, admin_token=token, safety_buffer=args.safety_buffer,
                        stale_after=args.stale_after, new_epoch=args.new_epoch, chain=args.chain,
                        max_uploads=args.max_uploads, max_upload_bytes=args.max_upload_bytes,
                        max_upload_wait=args.max_upload_wait, db_url=url)
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        asyncio.run(serve(app, args.host, args.port))
    except (OSError, SchemaTooNew) as exc:  # port taken, folder not writable, a newer database
        log.error("cannot start", extra={"kv": {"error": str(exc)}})
        return 1
    return 0
