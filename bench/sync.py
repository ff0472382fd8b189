"""The sync benchmark: a real `store-edge hub` and a real `store-edge run` daemon on loopback.

  1. drain: a backlog of events written while the store was offline (the outbox filled through the
     real code paths: edge.store.catalog, edge.store.stock.record_receipt, edge.store.sales.record_sale, in big
     transactions on the database before the daemon starts), then the daemon is started linked to
     the hub. Timed from the daemon's start until its /api/v1/sync/status says queue depth 0 and
     the hub's GET /admin/v1/stores/{id} says next_seq = backlog + 1. Measured with the configured
     default [cloud] batch_size, then again (a fresh hub, a copy of the same backlog) with 500.
  2. orders: one at a time, POST /admin/v1/stores/{id}/orders at the hub, timed from just before
     the POST until the edge's GET /api/v1/orders/{id} answers 200 (so the edge has committed it).
  3. apply: with the daemon stopped, many product.upserted changes are published at the hub
     (POST /admin/v1/products, 5,000 per call); the daemon is started again and the rate is the
     cursor's advance (GET /api/v1/sync/status queue.cursor) from the first advance seen to the
     hub's last cursor, over the time between them.

Waiting never loads the processes measured: the benchmark watches the edge's database file
itself (a read-only connection: `PRAGMA data_version` changes when the daemon commits; the
outbox's acked_seq) and asks the HTTP endpoints when that says something happened, plus a slow
fallback poll. The times reported are those of the HTTP answers that confirmed the state.

The backlog database is cached in bench/.cache/ (keyed by the schema and the backlog size); each
run works on copies.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp

from bench.ledger import (
    BenchError,
    cached,
    free_port,
    load_at_start,
    percentile,
    scratch_folder,
    store_edge,
    write_config,
)
from edge.core.config import CloudSection
from edge.core.context import make as make_context
from edge.core.schemas import ReceiptIn, SaleIn
from edge.store import catalog, db, migrations, sales, stock
from protocol.barcodes import gtin_check_digit
from protocol.changes import ProductIn

SEED = 20261121
SEED_VERSION = 1  # bump when the generated backlog changes, so a stale cache is not reused
SKUS = 200
OPENING_QTY = 1_000_000  # per SKU: the sales and orders never run a SKU short
STORE_ID = "bench-store"
TZ = ZoneInfo("Asia/Shanghai")
COUNTS = {False: {"backlog": 50_000, "orders": 200, "changes": 20_000},
          True: {"backlog": 10_000, "orders": 50, "changes": 5_000}}
TARGETS = {"drain_s_max": 30, "order_p99_ms_max": 1000, "apply_changes_per_s_min": 5000}
DEFAULT_BATCH = CloudSection().batch_size
MAX_BATCH = 500
PUBLISH_CHUNK = 5000  # the admin API's limit per call
SALES_PER_TXN = 5000
WAIT_TICK = 0.002     # the cheap watch on the database file
FALLBACK = 0.05       # HTTP asked at least this often while waiting, whatever the file says
TIMEOUT = 300.0

ROOT = Path(__file__).resolve().parents[1]
CACHE_DIR = Path(__file__).resolve().parent / ".cache"


def progress(message: str) -> None:
    print(f"[sync {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the backlog ----------------------------------------------------------------------------------

def sku_of(index: int) -> str:
    return f"BEN-{index + 1:04d}"


def barcode_of(index: int, prefix: str = "690") -> str:
    body = f"{prefix}{index + 1:09d}"
    return body + str(gtin_check_digit(body))


def catalog_products() -> list[dict]:
    rng = random.Random(SEED)
    return [{"sku": sku_of(i), "name": f"基准商品 {i + 1}号", "price_fen": rng.randint(150, 19_900), "unit": "件",
             "category": rng.choice(("食品", "饮料", "日化")), "low_stock": 5, "barcodes": [barcode_of(i)]}
            for i in range(SKUS)]


def cache_path(backlog: int) -> Path:
    schema = len(migrations.MIGRATIONS)
    digest = hashlib.sha256("\n".join(sql for _, sql in migrations.MIGRATIONS).encode()).hexdigest()[:10]
    return CACHE_DIR / f"sync-schema{schema}-{digest}-s{SEED_VERSION}-{SKUS}x{backlog}.db"


def seed(path: Path, backlog: int) -> None:
    """The store's catalog, one opening receipt and backlog - 1 sales: `backlog` events in the outbox,
    each written by the daemon's own functions in the fact's transaction (synchronous=FULL kept)."""
    started = time.perf_counter()
    rng = random.Random(SEED + 1)
    products = catalog_products()
    prices = {p["sku"]: p["price_fen"] for p in products}
    skus = list(prices)
    conn = db.open_store_db(path)
    try:
        with db.transaction(conn):
            ctx = make_context("backoffice", TZ)
            for product in products:
                catalog.upsert_product(conn, ProductIn.model_validate(product), ctx.now)
            stock.record_receipt(conn, ReceiptIn.model_validate(
                {"lines": [{"sku": sku, "qty": OPENING_QTY} for sku in skus], "supplier": "基准供应商"}), ctx)
        done = 0
        while done < backlog - 1:
            chunk = min(SALES_PER_TXN, backlog - 1 - done)
            with db.transaction(conn):
                for n in range(chunk):
                    lines = [{"sku": sku, "qty": rng.randint(1, 3)} for sku in rng.sample(skus, rng.randint(1, 5))]
                    total = sum(prices[line["sku"]] * line["qty"] for line in lines)
                    body = SaleIn.model_validate({"lines": lines, "cashier": "基准", "payments": [
                        {"method": rng.choice(("wechat", "alipay")), "amount_fen": total}]})
                    sales.record_sale(conn, body, make_context(f"till-{1 + (done + n) % 3}", TZ))
            done += chunk
            progress(f"seed: {done + 1:,} of {backlog:,} events ({time.perf_counter() - started:.1f} s)")
        events = conn.execute("SELECT count(*), max(seq) FROM outbox").fetchone()
        if tuple(events) != (backlog, backlog):
            raise BenchError(f"seeding went wrong: the outbox holds {tuple(events)}, expected {backlog}")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def seeded_database(backlog: int) -> tuple[Path, float | None]:
    return cached(cache_path(backlog), f"sync-*x{backlog}.db", f"{backlog:,} events",
                  lambda file: seed(file, backlog), progress)


# -- processes ------------------------------------------------------------------------------------

class Proc:
    """A process the benchmark started, with its log file.

    With SYNC_BENCH_PROFILE=DIR in the environment each process runs under cProfile and writes
    DIR/{name}-{run}-{time}.prof when it stops (slower: for finding where the time goes, not for figures)."""

    def __init__(self, name: str, argv: list[str], folder: Path, nice: int = 0):
        self.name = name
        self.log = folder / f"{name}.log"
        profile = os.environ.get("SYNC_BENCH_PROFILE")
        if profile:
            Path(profile).mkdir(parents=True, exist_ok=True)
            out = Path(profile).resolve() / f"{name}-{folder.name}-{int(time.time())}.prof"
            argv = [sys.executable, "-m", "cProfile", "-o", str(out), *argv]
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                          cwd=folder, preexec_fn=(lambda: os.nice(nice)) if nice else None)
        self.started = time.perf_counter()

    def tail(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-2000:]

    def check(self) -> None:
        if self.popen.poll() is not None:
            raise BenchError(f"{self.name} exited with {self.popen.returncode}: {self.tail()}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
                raise BenchError(f"{self.name} did not stop within 30 s of SIGTERM") from None
        if self.popen.returncode != 0:
            raise BenchError(f"{self.name} exited with {self.popen.returncode}: {self.tail()}")

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


async def wait_until(check, what: str, proc: Proc, timeout: float = 60):
    """Await `check()` becoming truthy while `proc` stays alive; client errors count as not yet."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        proc.check()
        try:
            result = await check()
        except (aiohttp.ClientError, BenchError):
            result = None
        if result:
            return result
        await asyncio.sleep(0.05)
    raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")


def start_hub(folder: Path, admin_token: str) -> tuple[Proc, str]:
    token_file = folder / "admin-token"
    token_file.write_text(admin_token + "\n", encoding="utf-8")
    token_file.chmod(0o600)
    port = free_port()
    proc = Proc("hub", [store_edge(), "hub", "--data", str(folder / "hub"), "--port", str(port),
                        "--admin-token-file", str(token_file), "--log-level", "warning"], folder)
    return proc, f"http://127.0.0.1:{port}"


def write_edge_config(folder: Path, hub_url: str | None, batch_size: int | None) -> tuple[Path, str]:
    port = free_port()
    cloud = ""
    if hub_url:
        cloud = (f'[cloud]\nurl = "{hub_url}"\ntoken = {{ file = "cloud-token" }}\nreconcile_minutes = 0\n'
                 + (f"batch_size = {batch_size}\n" if batch_size is not None else ""))
    return write_config(folder, port, cloud), f"http://127.0.0.1:{port}"


def start_edge(folder: Path, config: Path) -> Proc:
    return Proc("edge", [store_edge(), "run", "--config", str(config)], folder)


class Watch:
    """A read-only look at the edge's database file from this process: no load on the daemon."""

    def __init__(self, path: Path):
        self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        self.conn.execute("PRAGMA busy_timeout = 1000")
        self.version = self.data_version()

    def data_version(self) -> int:
        return self.conn.execute("PRAGMA data_version").fetchone()[0]

    def changed(self) -> bool:
        version = self.data_version()
        changed, self.version = version != self.version, version
        return changed

    def state(self, key: str) -> int:
        row = self.conn.execute("SELECT value FROM sync_state WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self.conn.close()


# -- HTTP -----------------------------------------------------------------------------------------

class Http:
    def __init__(self, session: aiohttp.ClientSession, hub: str, edge: str, admin_token: str):
        self.session, self.hub, self.edge = session, hub, edge
        self.admin = {"Authorization": f"Bearer {admin_token}"}

    async def call(self, method: str, url: str, body=None, headers=None, expect=(200,)) -> tuple[int, dict]:
        async with self.session.request(method, url, json=body, headers=headers) as resp:
            raw = await resp.read()
            status = resp.status
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if expect and status not in expect:
            raise BenchError(f"{method} {url} answered {status}: {raw[:500]!r}")
        return status, data

    async def hub_admin(self, method: str, path: str, body=None, expect=(200, 201)) -> dict:
        return (await self.call(method, f"{self.hub}/admin/v1{path}", body, self.admin, expect))[1]

    async def edge_api(self, path: str, expect=(200,)) -> tuple[int, dict]:
        return await self.call("GET", f"{self.edge}/api/v1{path}", expect=expect)

    async def wait_ready(self, proc: Proc, url: str, headers=None, timeout: float = 60) -> float:
        while time.perf_counter() - proc.started < timeout:
            proc.check()
            try:
                async with self.session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    if resp.status == 200:
                        await resp.read()
                        return time.perf_counter() - proc.started
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            await asyncio.sleep(0.02)
        raise BenchError(f"{proc.name} did not answer {url} within {timeout:.0f} s")

    async def status(self) -> dict:
        return (await self.edge_api("/sync/status"))[1]


# -- the measurements -----------------------------------------------------------------------------

async def setup_hub(http: Http, hub: Proc) -> str:
    ready = await http.wait_ready(hub, f"{http.hub}/admin/v1/stores", http.admin)
    store = await http.hub_admin("POST", "/stores", {"store_id": STORE_ID, "name": "基准测试门店"})
    answer = await http.hub_admin("POST", "/products", {"products": catalog_products()})
    progress(f"hub ready after {ready:.2f} s (pid {hub.popen.pid}); store registered, {answer['upserted']} products "
             "published")
    return store["token"]


async def drain(http: Http, edge: Proc, watch: Watch, backlog: int, label: str) -> dict:
    """From the daemon's start until the edge's queue is empty and the hub expects backlog + 1."""
    ready = None
    last_report = last_http = time.perf_counter()
    while True:
        now = time.perf_counter()
        if now - edge.started > TIMEOUT:
            raise BenchError(f"the backlog did not drain within {TIMEOUT:.0f} s")
        edge.check()
        acked = watch.state("acked_seq")
        if ready is None and now - last_http >= FALLBACK:
            last_http = now
            try:
                await http.edge_api("/health")
                ready = time.perf_counter() - edge.started
            except (aiohttp.ClientError, BenchError):
                pass
        if acked >= backlog:
            status = await http.status()
            if status["queue"]["depth"] == 0:
                store = await http.hub_admin("GET", f"/stores/{STORE_ID}")
                if store["next_seq"] == backlog + 1:
                    elapsed = time.perf_counter() - edge.started
                    break
        if now - last_report >= 2:
            last_report = now
            try:
                link = (await http.status())["link"]
            except (aiohttp.ClientError, BenchError):
                link = {"state": "not answering"}
            if link["state"] in ("auth_failed", "refused"):
                raise BenchError(f"the edge's cloud link is {link['state']}: {link.get('last_error')}")
            progress(f"{label}: {acked:,} of {backlog:,} acknowledged after {now - edge.started:.1f} s "
                     f"(link {link['state']})")
        await asyncio.sleep(WAIT_TICK)
    status = await http.status()
    queue = status["queue"]
    if queue["dead_letters"] or queue["acked_seq"] != backlog or status["link"]["state"] != "online":
        raise BenchError(f"after the drain the edge says {status}")
    if store["events"] != {"applied": backlog, "rejected": 0}:
        raise BenchError(f"the hub holds events {store['events']}, expected {backlog} applied")
    return {"drain_s": elapsed, "ready_s": ready, "store": store}


def compare_balances(store: dict, db_path: Path) -> None:
    """The hub's copy (the sum of the uploaded moves) must equal the store's balances."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        edge = {sku: (on_hand, reserved) for sku, on_hand, reserved in conn.execute(
            "SELECT sku, on_hand, reserved FROM stock_balances WHERE on_hand <> 0 OR reserved <> 0")}
    finally:
        conn.close()
    hub = {row["sku"]: (row["on_hand"], row["reserved"]) for row in store["balances"]
           if row["on_hand"] or row["reserved"]}
    if hub != edge:
        wrong = sorted(sku for sku in set(hub) | set(edge) if hub.get(sku) != edge.get(sku))
        raise BenchError(f"hub and edge balances differ for {len(wrong)} SKUs, e.g. {wrong[:3]}: "
                         f"hub {hub.get(wrong[0])} edge {edge.get(wrong[0])}")


async def until(check, what: str, proc: Proc, timeout: float = 60):
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        proc.check()
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.02)
    raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")


async def orders(http: Http, edge: Proc, watch: Watch, count: int) -> dict:
    rng = random.Random(SEED + 2)
    skus = [sku_of(i) for i in range(SKUS)]
    await until(lambda: _hints_connected(http), "the edge's hint WebSocket", edge)
    total_ms, post_ms = [], []
    for n in range(count):
        body = {"kind": rng.choice(("pickup", "delivery")), "customer_note": "基准",
                "lines": [{"sku": sku, "qty": rng.randint(1, 2)} for sku in rng.sample(skus, rng.randint(1, 3))]}
        watch.changed()
        started = time.perf_counter()
        order = await http.hub_admin("POST", f"/stores/{STORE_ID}/orders", body, expect=(201,))
        posted = time.perf_counter()
        url = f"/orders/{order['order_id']}"
        last_http = 0.0
        while True:
            now = time.perf_counter()
            if now - started > 30:
                raise BenchError(f"order {order['order_id']} did not reach the edge within 30 s")
            if watch.changed() or now - last_http >= FALLBACK:
                last_http = now
                status, stored = await http.edge_api(url, expect=(200, 404))
                if status == 200:
                    arrived = time.perf_counter()
                    break
                edge.check()
            await asyncio.sleep(WAIT_TICK)
        if stored["number"] != order["number"] or stored["state"] != "received" or stored["short"]:
            raise BenchError(f"order {order['order_id']} arrived as {stored}, the hub made {order}")
        total_ms.append((arrived - started) * 1000)
        post_ms.append((posted - started) * 1000)
    slowest = sorted(range(count), key=lambda i: -total_ms[i])[:3]
    progress(f"orders: {count} created one at a time and stored at the edge; slowest "
             + ", ".join(f"#{i + 1} {total_ms[i]:.1f} ms (hub POST {post_ms[i]:.1f} ms)" for i in slowest))

    async def acknowledged():
        store = await http.hub_admin("GET", f"/stores/{STORE_ID}")
        return store if store["orders_pending"] == 0 and store["orders"].get("created") == count else None
    await until(acknowledged, "the hub to see every order received", edge)
    return {"total_ms": total_ms, "post_ms": post_ms}


async def _hints_connected(http: Http) -> bool:
    return (await http.status())["link"]["hints_connected"]


def bulk_products(count: int) -> list[dict]:
    rng = random.Random(SEED + 3)
    return [{"sku": f"NEW-{i + 1:06d}", "name": f"新品 {i + 1}号", "price_fen": rng.randint(150, 19_900),
             "unit": "件", "category": "新品", "low_stock": 2, "barcodes": [barcode_of(i, "691")]}
            for i in range(count)]


async def publish(http: Http, count: int) -> dict:
    products = bulk_products(count)
    started = time.perf_counter()
    first = last = None
    for at in range(0, count, PUBLISH_CHUNK):
        answer = await http.hub_admin("POST", "/products", {"products": products[at:at + PUBLISH_CHUNK]})
        first = answer["first_cursor"] if first is None else first
        last = answer["last_cursor"]
    elapsed = time.perf_counter() - started
    if last - first + 1 != count:
        raise BenchError(f"published cursors {first}..{last} for {count} products")
    progress(f"published {count:,} product.upserted changes at the hub in {elapsed:.2f} s "
             f"(cursor {first}..{last}), the edge stopped")
    return {"first": first, "last": last, "publish_s": elapsed}


async def apply_changes(http: Http, edge: Proc, watch: Watch, start_cursor: int, final: int) -> dict:
    """The cursor's advance, from the first advance seen to the final cursor, over the time between.

    Seen twice: by GET /api/v1/sync/status (queue.cursor), asked whenever the database file changes,
    and in the file itself (sync_state 'cursor', the value that endpoint reports), which also sees
    pages the daemon commits before its HTTP server listens (the sync engine starts first)."""
    http_seen: list[tuple[float, int]] = []   # (time, cursor) of the first advance, then of the final
    file_seen: list[tuple[float, int]] = []
    last_http = 0.0
    while True:
        now = time.perf_counter()
        if now - edge.started > TIMEOUT:
            raise BenchError(f"the edge did not reach cursor {final} within {TIMEOUT:.0f} s")
        edge.check()
        if watch.changed() or now - last_http >= FALLBACK:
            last_http = now
            cursor = watch.state("cursor")
            seen = time.perf_counter()
            if cursor > start_cursor and (not file_seen or cursor == final and file_seen[-1][1] != final):
                file_seen.append((seen, cursor))
            try:
                cursor = (await http.status())["queue"]["cursor"]
            except (aiohttp.ClientError, BenchError):
                cursor = None  # not listening yet
            seen = time.perf_counter()
            if cursor is not None and cursor > start_cursor:
                if not http_seen:
                    http_seen.append((seen, cursor))
                if cursor >= final:
                    http_seen.append((seen, cursor))
                    break
        await asyncio.sleep(WAIT_TICK)
    if file_seen and file_seen[-1][1] != final:
        # the HTTP answer can see the last page before this loop's file check did: read the file once more
        file_seen.append((time.perf_counter(), watch.state("cursor")))
    if cursor != final or not file_seen or file_seen[-1][1] != final:
        raise BenchError(f"the edge's cursor went to {cursor}, the hub's last is {final}")

    def rate(seen):
        (t0, c0), (t1, c1) = seen[0], seen[-1]
        return (c1 - c0) / (t1 - t0) if c1 > c0 and t1 > t0 else None, c1 - c0, t1 - t0

    by_http, by_file = rate(http_seen), rate(file_seen)
    total = final - start_cursor
    # the endpoint's figure when it saw at least half the changes being applied; else the file's
    use_http = by_http[0] is not None and by_http[1] >= total / 2
    chosen = by_http if use_http else by_file
    first_seen = (http_seen if use_http else file_seen)[0][0]
    return {"rate": chosen[0], "measured_changes": chosen[1], "span_s": chosen[2],
            "measured_by": "sync_status" if use_http else "database_file",
            "rate_http": by_http[0], "rate_file": by_file[0], "file_measured_changes": by_file[1],
            "from_start_s": http_seen[-1][0] - edge.started, "first_seen_s": first_seen - edge.started}


def check_edge_after(db_path: Path, products: int, orders_count: int) -> dict:
    conn = db.connect(db_path, readonly=True)
    try:
        conn.execute("BEGIN")
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("products", "orders")}
        inbox = dict(conn.execute("SELECT status, count(*) FROM inbox GROUP BY status").fetchall())
        moves, mismatches = stock.verify(conn)
        conn.execute("ROLLBACK")
    finally:
        conn.close()
    if counts != {"products": products, "orders": orders_count} or inbox.get("rejected"):
        raise BenchError(f"after the run the edge holds {counts}, inbox {inbox}")
    if mismatches:
        raise BenchError(f"edge.store.stock.verify found {len(mismatches)} mismatches, first: {mismatches[0]}")
    return {"moves": moves, "inbox": inbox}


# -- the runs -------------------------------------------------------------------------------------

class Linked:
    """A hub and an edge daemon linked to it, on a copy of the cached backlog."""

    def __init__(self, folder: Path, cached: Path, batch_size: int | None):
        self.folder, self.cached, self.batch_size = folder, cached, batch_size
        self.edge: Proc | None = None

    async def __aenter__(self) -> "Linked":
        self.admin_token = "hub_bench_" + os.urandom(8).hex()
        self.hub, hub_url = start_hub(self.folder, self.admin_token)
        data = self.folder / "data"
        data.mkdir()
        self.db_path = data / "store.db"
        shutil.copyfile(self.cached, self.db_path)
        self.config, edge_url = write_edge_config(self.folder, hub_url, self.batch_size)
        self.watch = Watch(self.db_path)
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=4))
        self.http = Http(self.session, hub_url, edge_url, self.admin_token)
        (self.folder / "cloud-token").write_text(await setup_hub(self.http, self.hub))
        self.edge = start_edge(self.folder, self.config)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.session.close()
        self.watch.close()
        if self.edge is not None:  # a no-op for one that already stopped
            self.edge.kill()
        self.hub.kill()

    async def drain(self, backlog: int) -> dict:
        batch = self.batch_size or DEFAULT_BATCH
        progress(f"edge started linked (pid {self.edge.popen.pid}, batch_size {batch}), draining {backlog:,} events")
        drained = await drain(self.http, self.edge, self.watch, backlog, f"drain (batch {batch})")
        compare_balances(drained["store"], self.db_path)
        progress(f"drain (batch {batch}): {backlog:,} events in {drained['drain_s']:.2f} s from the daemon's start "
                 f"(ready after {drained['ready_s'] or 0:.2f} s); hub and edge balances agree")
        return drained


async def main_run(folder: Path, cached: Path, counts: dict) -> dict:
    """Hub and edge with the default batch size: drain, orders, then the apply rate."""
    async with Linked(folder, cached, None) as link:
        http = link.http
        drained = await link.drain(counts["backlog"])
        timed = await orders(http, link.edge, link.watch, counts["orders"])

        start_cursor = (await http.status())["queue"]["cursor"]
        link.edge.stop()
        published = await publish(http, counts["changes"])
        link.edge = start_edge(folder, link.config)
        applied = await apply_changes(http, link.edge, link.watch, start_cursor, published["last"])
        progress(f"apply: {applied['measured_changes']:,} changes in {applied['span_s']:.2f} s after the first "
                 f"advance ({applied['first_seen_s']:.2f} s after the start, seen in {applied['measured_by']}: "
                 f"{applied['rate_http'] or 0:,.0f}/s by the endpoint, {applied['rate_file'] or 0:,.0f}/s by the "
                 f"file); all {published['last'] - start_cursor:,} applied {applied['from_start_s']:.2f} s after "
                 "the start")
        status = await http.status()
        if status["queue"]["rejected_changes"] or status["queue"]["dead_letters"]:
            raise BenchError(f"after applying the changes the edge says {status['queue']}")
        link.edge.stop()
        link.hub.stop()
    after = check_edge_after(link.db_path, SKUS + counts["changes"], counts["orders"])
    progress(f"after the run: edge.store.stock.verify OK ({after['moves']:,} moves), inbox {after['inbox']}")
    return {"drain": drained, "orders": timed, "apply": applied, "published": published}


async def drain_run(folder: Path, cached: Path, backlog: int, batch_size: int) -> dict:
    """A fresh hub and a copy of the same backlog, drained with another batch size."""
    async with Linked(folder, cached, batch_size) as link:
        drained = await link.drain(backlog)
        link.edge.stop()
        link.hub.stop()
    return drained


def run(quick: bool = False) -> dict:
    wall = time.perf_counter()
    counts = COUNTS[quick]
    load_start = load_at_start(progress)
    cached, seed_s = seeded_database(counts["backlog"])

    with scratch_folder("store-edge-bench-sync-", progress) as folder:
        (folder / "main").mkdir()
        (folder / "batch500").mkdir()
        main = asyncio.run(main_run(folder / "main", cached, counts))
        drain500 = asyncio.run(drain_run(folder / "batch500", cached, counts["backlog"], MAX_BATCH))

    backlog = counts["backlog"]
    drain_s = main["drain"]["drain_s"]
    total_ms, post_ms = main["orders"]["total_ms"], main["orders"]["post_ms"]
    applied = main["apply"]
    result = {
        "benchmark": "sync", "backlog_events": backlog, "batch_size": DEFAULT_BATCH,
        "drain_s": round(drain_s, 3), "drain_events_per_s": round(backlog / drain_s),
        "drain_ready_s": round(main["drain"]["ready_s"] or 0, 3),
        "drain_batch500_s": round(drain500["drain_s"], 3),
        "drain_batch500_events_per_s": round(backlog / drain500["drain_s"]),
        "order_p50_ms": round(percentile(total_ms, 50), 2), "order_p99_ms": round(percentile(total_ms, 99), 2),
        "order_max_ms": round(max(total_ms), 2), "order_post_p50_ms": round(percentile(post_ms, 50), 2),
        "orders": counts["orders"],
        "changes": counts["changes"],
        "apply_changes_per_s": round(applied["rate"]) if applied["rate"] else None,
        "apply_measured_changes": applied["measured_changes"], "apply_span_s": round(applied["span_s"], 3),
        "apply_measured_by": applied["measured_by"],
        "apply_changes_per_s_status": round(applied["rate_http"]) if applied["rate_http"] else None,
        "apply_changes_per_s_file": round(applied["rate_file"]) if applied["rate_file"] else None,
        "apply_all_after_start_s": round(applied["from_start_s"], 3),
        "publish_s": round(main["published"]["publish_s"], 3),
        "quick": quick, "seed_s": None if seed_s is None else round(seed_s, 1),
        "run_s": round(time.perf_counter() - wall, 1),
        "load_start": round(load_start, 2), "load_end": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
        "targets": TARGETS,
    }
    result["met"] = {"drain_s": result["drain_s"] <= TARGETS["drain_s_max"],
                     "order_p99_ms": result["order_p99_ms"] <= TARGETS["order_p99_ms_max"],
                     "apply_changes_per_s": (result["apply_changes_per_s"] or 0) >= TARGETS["apply_changes_per_s_min"]}

    print(f"sync benchmark ({'quick' if quick else 'full'}): a store-edge hub and a store-edge daemon on loopback")
    print(f"  drain      {backlog:,} events in {result['drain_s']:.2f} s = {result['drain_events_per_s']:,}/s "
          f"(batch_size {DEFAULT_BATCH}, from the daemon's start; target <= {TARGETS['drain_s_max']} s); "
          f"batch_size 500: {result['drain_batch500_s']:.2f} s = {result['drain_batch500_events_per_s']:,}/s")
    print(f"  orders     p50 {result['order_p50_ms']:.1f} ms  p99 {result['order_p99_ms']:.1f} ms  max "
          f"{result['order_max_ms']:.1f} ms  ({counts['orders']} orders, hub POST p50 {result['order_post_p50_ms']:.1f} "
          f"ms; target p99 <= {TARGETS['order_p99_ms_max']} ms)")
    print(f"  apply      {result['apply_changes_per_s'] or 0:,} changes/s ({applied['measured_changes']:,} of "
          f"{counts['changes']:,} product.upserted changes timed over {result['apply_span_s']:.2f} s; target >= "
          f"{TARGETS['apply_changes_per_s_min']:,}/s)")
    missed = [key for key, met in result["met"].items() if not met]
    print(f"  targets: {'all met' if not missed else 'MISSED ' + ', '.join(missed)}; run {result['run_s']} s"
          + (f" (seeding {result['seed_s']} s)" if seed_s is not None else "")
          + f"; load average {result['load_start']} at the start, {result['load_end']} at the end "
          f"({result['cpus']} CPUs)")
    return result
