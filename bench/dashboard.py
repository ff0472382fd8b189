"""The dashboard benchmark: the manager's overview page (/ui/) on a store with a year of history.

The store: bench/ledger.py's 100,000 SKUs and 1,000,000 stock moves, plus
  - the ledger's sales as rows of `sales`, `sale_lines`, `sale_payments` (one sale per `sale` ref of
    the moves: ~250,000 sales, ~740,000 lines; bulk SQL, no new moves);
  - 100,000 online orders over the 120 days before the seed, each arriving the way the cloud sends
    it (`sync.changes.apply_page`, one `order.created` change per order, at its own time: order,
    lines, reservation moves, event, inbox row), then most handed over with the real
    `edge.pickup.hand_over` (typed code), some cancelled or refunded from the cloud
    (`edge.orders.close_from_cloud`), and a few hundred left open (received / accepted / ready,
    `edge.orders.change_state`), mostly the last days'.
Cached in bench/.cache/ keyed by the schema (a migration reseeds), the seed's version and size.

Each run works on a copy, to which it adds "today" (the store's zone, up to now): 300 sales
(`edge.sales.record_sale`) and 120 orders (apply_page; half handed over), a manager account
(`edge.ui.users.add_user`), and marks the outbox as sent (a store that was online: the queue empty,
the wire seq starting at 1 for the benchmark's fresh hub, the download cursor at 0).

Then a `store-edge hub` and a `store-edge run` daemon linked to it (as bench/sync.py and
bench/print.py), the benchmark logs in over HTTP (GET /ui/login for the `se_login_csrf` cookie and
the form's token, POST /ui/login) and measures:
  1. overview: N sequential GETs of /ui/ on one keep-alive connection, then N of each live region
     the page declares (`data-live="NAME"` -> /ui/?fragment=NAME), p50/p95/p99;
  2. order to screen: the page's JavaScript reproduced (edge/ui/static/app.js): the SSE stream
     /ui/events held open, and on each `event: change` (after app.js's 100 ms debounce) every live
     region re-fetched at once (6 connections, a browser's per-host limit); an order is created at
     the hub (POST /admin/v1/stores/{id}/orders, time.perf_counter() just before) and the figure
     ends when a fetched region holds `data-order-id="<its id>"`. One order at a time, 200-500 ms
     apart; once shown, the order is handed over at the till (POST /api/v1/pickups with its code), so
     the lists stay a store's size. The full run (or DASHBOARD_BENCH_BROWSER=1; =0 turns it off)
     repeats this in headless Chromium via Playwright (/usr/bin/chromium: the real app.js; the end is
     `tr[data-order-id=...]` attached to the DOM), reported separately.
  3. where the time goes: edge.store.overview.figures() (what every page and fragment reads) timed in
     this process on the same copy, per statement, with EXPLAIN QUERY PLAN;
  4. the report page /ui/reports for the last 31 business days (the page's "近 31 天" link: today's
     trading and 30 closed days of the history): the first GET (which reads the closed days whole and
     keeps their sums) timed apart, then N sequential GETs, p50/p95/p99; and one GET of each Excel
     export of the same range (size and time).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import re
import shutil
import sqlite3
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp

from bench import ledger
from bench.ledger import BenchError, cached, free_port, load_at_start, percentile, scratch_folder, stats, write_config
from bench.sync import STORE_ID, TZ, Http, Proc, start_edge, start_hub, wait_until
from edge.core.clock import business_date
from edge.core.context import WriteContext
from edge.core.schemas import ReceiptIn, SaleIn
from edge.store import db, migrations, orders, pickups, sales, stock, users
from edge.store.orders import OrderClosed, StateChange
from sync.changes import apply_page

SEED = 20261123
SEED_VERSION = 1  # bump when the generated data changes, so a stale cache is not reused
ORDERS = 100_000
HISTORY_DAYS = 120
ORDERS_PER_TXN = 10_000
TODAY_SALES = 300
TODAY_ORDERS = 120
TODAY_HANDED_OVER = 0.75  # of today's orders; the rest are open
STALE_OPEN = 0.0001       # of the history's orders: left open (never collected)
HUB_SKUS = 200  # SKUs published at the hub for the benchmark's new orders
MANAGER, PASSWORD = "bench-manager", "bench-password-2026"
COUNTS = {False: {"pages": 500, "orders": 200, "warmup": 20, "profile": 50, "gap": (0.2, 0.5)},
          True: {"pages": 100, "orders": 30, "warmup": 5, "profile": 20, "gap": (0.1, 0.3)}}
WARMUP_ORDERS = 3
DEBOUNCE = 0.1          # app.js: refreshAll() waits 100 ms
BROWSER_CONNECTIONS = 6
ORDER_TIMEOUT = 30.0
TARGETS = {"overview_p95_ms": 100, "order_to_screen_p99_ms": 1500, "report_31_days_p95_ms": 200}
REPORT_DAYS = 31
EXPORTS = ("orders", "sales", "pickups", "moves")

ROOT = ledger.ROOT
CACHE_DIR = ledger.CACHE_DIR


def progress(message: str) -> None:
    print(f"[dashboard {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)




def stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ctx_at(device: str, seconds: float) -> WriteContext:
    return WriteContext(device, stamp(seconds), business_date(datetime.fromtimestamp(seconds, timezone.utc), TZ))


# -- the dataset ----------------------------------------------------------------------------------

def cache_path() -> Path:
    schema = len(migrations.MIGRATIONS)
    digest = hashlib.sha256("\n".join(sql for _, sql in migrations.MIGRATIONS).encode()).hexdigest()[:10]
    return CACHE_DIR / f"dashboard-schema{schema}-{digest}-s{SEED_VERSION}-{ledger.SKUS}x{ledger.MOVES}x{ORDERS}.db"


def _sales_from_ledger(conn: sqlite3.Connection) -> int:
    """One sale per `sale` ref of the ledger's moves: its lines are the moves, at the products' prices."""
    conn.execute(
        "INSERT INTO sales (id, number, device, cashier, business_date, created_at, subtotal_fen, discount_fen, "
        "total_fen, paid_fen, change_fen, note) "
        "SELECT ref_id, row_number() OVER (ORDER BY first), device, '店员', date(at, '+8 hours'), at, total, 0, "
        "total, total, 0, NULL FROM (SELECT m.ref_id, min(m.id) AS first, min(m.created_at) AS at, "
        "min(m.device) AS device, sum(-m.qty * p.price_fen) AS total FROM stock_moves m JOIN products p USING (sku) "
        "WHERE m.reason = 'sale' GROUP BY m.ref_id)")
    conn.execute(
        "INSERT INTO sale_lines (sale_id, line_no, sku, barcode, name, qty, unit_price_fen, discount_fen, amount_fen) "
        "SELECT m.ref_id, row_number() OVER (PARTITION BY m.ref_id ORDER BY m.id), m.sku, NULL, p.name, -m.qty, "
        "p.price_fen, 0, -m.qty * p.price_fen FROM stock_moves m JOIN products p USING (sku) WHERE m.reason = 'sale'")
    conn.execute(
        "INSERT INTO sale_payments (sale_id, seq, method, amount_fen) SELECT id, 1, CASE number % 10 "
        "WHEN 0 THEN 'cash' WHEN 1 THEN 'cash' WHEN 2 THEN 'alipay' WHEN 3 THEN 'alipay' WHEN 4 THEN 'alipay' "
        "ELSE 'wechat' END, total_fen FROM sales WHERE total_fen > 0")
    return conn.execute("SELECT count(*) FROM sales").fetchone()[0]


def _popular(rng: random.Random, count: int):
    order = list(range(count))
    rng.shuffle(order)

    def pick() -> int:
        r = rng.random()
        return order[int(count * r * r)]
    return pick


def _order_change(n: int, at: float, code: str, rng: random.Random, products: list, pick, prefix: str) -> dict:
    lines = []
    for index in {pick() for _ in range(rng.randint(1, 4))}:
        sku, name, price = products[index]
        lines.append({"sku": sku, "name": name, "qty": rng.randint(1, 2), "price_fen": price})
    payload = {"order_id": f"ord_{prefix}_{n:06d}", "number": f"{prefix[0].upper()}{n:06d}",
               "kind": rng.choice(("pickup", "pickup", "pickup", "delivery")),
               "total_fen": sum(line["qty"] * line["price_fen"] for line in lines), "lines": lines,
               "pickup_code_sha256": pickups.code_hash(code), "created_at": stamp(at - rng.uniform(5, 60))}
    if rng.random() < 0.2:
        payload["customer_note"] = rng.choice(("请把冷饮单独装袋", "到店后电话联系", "不要辣", "尽快备货，谢谢"))
    return payload


def _receive(conn, change_id: str, payload: dict, at: float) -> None:
    page = [{"cursor": 1, "id": change_id, "type": "order.created", "created_at": stamp(at), "payload": payload}]
    result = apply_page(conn, page, 0, ctx_at("cloud", at))
    if result["applied"] != 1:
        raise BenchError(f"seeding: apply_page did not apply order {payload['order_id']}: {result}")


def _settle(conn, order_id: str, code: str, state: str, at: float) -> None:
    """Move a received order to `state` through the daemon's own functions, at time `at`."""
    if state == "picked_up":
        body = pickups.HandOver.model_validate({"code": code, "operator": "王芳"})
        pickups.hand_over(conn, body, pickups.Checks(STORE_ID, online=True, now=at), ctx_at("till-1", at))
    elif state in ("cancelled", "refunded"):
        orders.close_from_cloud(conn, OrderClosed(order_id=order_id, reason="顾客取消"), state, ctx_at("cloud", at))
    elif state in ("accepted", "ready"):
        orders.change_state(conn, order_id, StateChange.model_validate({"to": state, "operator": "李娜"}),
                            ctx_at("ui:manager", at))


def _closed_state(rng: random.Random) -> str:
    r = rng.random()
    return "cancelled" if r < 0.02 else "refunded" if r < 0.025 else "picked_up"


def _open_state(rng: random.Random) -> str:
    return rng.choices(("received", "accepted", "ready"), weights=(4, 3, 3))[0]


def seed(path: Path, ledger_db: Path) -> dict:
    started = time.perf_counter()
    shutil.copyfile(ledger_db, path)
    conn = db.open_store_db(path)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -524288")
    conn.execute("PRAGMA temp_store = MEMORY")
    try:
        with db.transaction(conn):
            n_sales = _sales_from_ledger(conn)
        progress(f"seed: {n_sales:,} sales from the ledger's sale moves ({time.perf_counter() - started:.1f} s)")

        rng = random.Random(SEED)
        products = conn.execute("SELECT sku, name, price_fen FROM products ORDER BY sku").fetchall()
        pick = _popular(rng, len(products))
        end = time.time() - 86_400  # the history stops a day before the seed; each run adds its "today"
        begin = end - HISTORY_DAYS * 86_400
        times = sorted(rng.uniform(begin, end) for _ in range(ORDERS))
        codes = [str(c) for c in rng.sample(range(100_000, 100_000_000), ORDERS)]
        states = {}
        for n in range(ORDERS):  # a few never collected (the overview lists them first, oldest first)
            states[n] = _open_state(rng) if rng.random() < STALE_OPEN else _closed_state(rng)
        done = 0
        while done < ORDERS:
            chunk = range(done, min(ORDERS, done + ORDERS_PER_TXN))
            with db.transaction(conn):
                for n in chunk:
                    payload = _order_change(n + 1, times[n], codes[n], rng, products, pick, "hist")
                    _receive(conn, f"seed-ch-{n + 1}", payload, times[n])
                for n in chunk:
                    if states[n] != "received":
                        later = min(end, times[n] + rng.uniform(600, 2 * 86_400))
                        _settle(conn, f"ord_hist_{n + 1:06d}", codes[n], states[n], later)
            done += len(chunk)
            progress(f"seed: {done:,} of {ORDERS:,} orders ({time.perf_counter() - started:.1f} s)")
        by_state = dict(conn.execute("SELECT state, count(*) FROM orders GROUP BY state").fetchall())
        moves = conn.execute("SELECT count(*) FROM stock_moves").fetchone()[0]
        if sum(by_state.values()) != ORDERS:
            raise BenchError(f"seeding went wrong: orders {by_state}")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    progress(f"seed: done ({time.perf_counter() - started:.1f} s): orders {by_state}, {moves:,} moves, "
             f"{path.stat().st_size / 2**20:.0f} MiB")
    return {"orders": by_state, "moves": moves, "sales": n_sales}


def seeded_database() -> tuple[Path, float | None]:
    path = cache_path()
    if path.exists():
        progress(f"seed: reusing {path.relative_to(ROOT)}")
        return path, None
    started = time.perf_counter()
    ledger_db, _ = ledger.seeded_database()
    cached(path, "dashboard-*.db", f"ledger + {ORDERS:,} orders", lambda file: seed(file, ledger_db), progress)
    return path, time.perf_counter() - started


def prepare_copy(path: Path) -> dict:
    """Today's trading on the run's copy, the manager account, and the outbox marked as sent."""
    rng = random.Random(SEED + 1)
    now = time.time()
    local_midnight = datetime.now(TZ).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    first = max(local_midnight, now - 12 * 3600)
    conn = db.open_store_db(path)
    try:
        products = conn.execute("SELECT sku, name, price_fen FROM products ORDER BY sku").fetchall()
        pick = _popular(rng, len(products))
        with db.transaction(conn):
            for at in sorted(rng.uniform(first, now - 30) for _ in range(TODAY_SALES)):
                chosen = [(products[i], rng.randint(1, 3)) for i in {pick() for _ in range(rng.randint(1, 5))}]
                lines = [{"sku": p[0], "qty": qty} for p, qty in chosen]
                total = sum(p[2] * qty for p, qty in chosen)
                method = rng.choice(("wechat", "wechat", "alipay", "cash"))
                paid = -(-total // 1000) * 1000 if method == "cash" else total
                sales.record_sale(conn, SaleIn.model_validate({"lines": lines, "cashier": "王芳", "payments": [
                    {"method": method, "amount_fen": paid}]}), ctx_at(f"till-{rng.randint(1, 2)}", at))
            codes = [str(c) for c in rng.sample(range(100_000, 100_000_000), TODAY_ORDERS)]
            for n, at in enumerate(sorted(rng.uniform(first, now - 30) for _ in range(TODAY_ORDERS))):
                payload = _order_change(n + 1, at, codes[n], rng, products, pick, "today")
                _receive(conn, f"today-ch-{n + 1}", payload, at)
                state = "picked_up" if rng.random() < TODAY_HANDED_OVER else _open_state(rng)
                if state != "received":
                    _settle(conn, payload["order_id"], codes[n], state, min(now - 1, at + rng.uniform(60, 3600)))
            users.add_user(conn, MANAGER, "张店长", "manager", users.new_password(PASSWORD), stamp(now))
            # a store that was online: everything sent; the benchmark's fresh hub expects wire seq 1
            top = conn.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0]
            for key, value in (("acked_seq", top), ("seq_offset", -top), ("cursor", 0)):
                conn.execute("INSERT INTO sync_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
                             "SET value = excluded.value", (key, str(value)))
            conn.execute("DELETE FROM sync_state WHERE key = 'epoch'")
            # today's delivery of the SKUs the hub sells online: the first event the hub receives, so that
            # its availability (the sum of the uploaded moves) lets the benchmark's orders be created
            hub_skus = [r[0] for r in conn.execute("SELECT sku FROM products ORDER BY sku LIMIT ?", (HUB_SKUS,))]
            stock.record_receipt(conn, ReceiptIn.model_validate(
                {"lines": [{"sku": sku, "qty": 100_000} for sku in hub_skus], "supplier": "基准供应商"}),
                ctx_at("backoffice", now - 5))
        facts = {"orders": dict(conn.execute("SELECT state, count(*) FROM orders GROUP BY state").fetchall()),
                 "moves": conn.execute("SELECT count(*) FROM stock_moves").fetchone()[0],
                 "sales": conn.execute("SELECT count(*) FROM sales").fetchone()[0],
                 "short_open": conn.execute("SELECT count(*) FROM orders WHERE short = 1 AND state IN "
                                            "('received', 'accepted', 'ready')").fetchone()[0],
                 "hub_products": [dict(zip(("sku", "name", "price_fen", "unit", "category", "low_stock"), r))
                                  for r in conn.execute(
                                      "SELECT sku, name, price_fen, unit, category, low_stock FROM products "
                                      "ORDER BY sku LIMIT ?", (HUB_SKUS,))]}
        for p in facts["hub_products"]:
            p["barcodes"] = [r[0] for r in conn.execute("SELECT code FROM barcodes WHERE sku = ?", (p["sku"],))]
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return facts


# -- where the time goes: the overview's queries in this process ----------------------------------

class _Rows(list):
    def fetchone(self):
        return self[0] if self else None

    def fetchall(self):
        return list(self)


class _TimedConnection:
    """A connection that runs and fetches each statement at once, timing it by its SQL text."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn, self.times = conn, {}

    def execute(self, sql: str, args=()):
        started = time.perf_counter()
        rows = self.conn.execute(sql, args).fetchall()
        self.times.setdefault(" ".join(sql.split()), []).append((time.perf_counter() - started) * 1000)
        return _Rows(rows)

    def __getattr__(self, name):
        return getattr(self.conn, name)


def query_profile(path: Path, runs: int) -> dict:
    """edge.store.overview.figures (everything the overview reads, once per page or fragment) on the run's
    copy in this process: the whole, and each statement (summed per run), with its query plan."""
    from edge.store import overview  # noqa: PLC0415 (the page's own code)

    day = business_date(datetime.now(timezone.utc), TZ)
    conn = db.connect(path, readonly=True)
    try:
        timed = _TimedConnection(conn)
        whole = []
        for _ in range(runs + 2):
            conn.execute("BEGIN")
            started = time.perf_counter()
            overview.figures(timed, day, TZ)
            whole.append((time.perf_counter() - started) * 1000)
            conn.execute("ROLLBACK")
        plain = []
        for _ in range(runs):
            conn.execute("BEGIN")
            started = time.perf_counter()
            overview.figures(conn, day, TZ)
            plain.append((time.perf_counter() - started) * 1000)
            conn.execute("ROLLBACK")
        statements = []
        for sql, times in timed.times.items():
            per_run = len(times) / (runs + 2)
            times = times[int(2 * per_run):]  # the first two runs warm the cache
            total = sum(times) / runs
            plan = [r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", _dummy_args(sql))]
            statements.append({"sql": sql, "calls_per_page": round(per_run, 1), "mean_ms_per_page": round(total, 3),
                               "plan": plan})
        statements.sort(key=lambda s: -s["mean_ms_per_page"])
    finally:
        conn.close()
    return {"figures_ms": stats(plain), "statements": statements}


def _dummy_args(sql: str) -> tuple:
    return ("x",) * sql.count("?")


# -- the browser's side ---------------------------------------------------------------------------

LIVE = re.compile(r'data-live="([^"]+)"')


async def log_in(session: aiohttp.ClientSession, base: str) -> str:
    async with session.get(f"{base}/ui/login") as resp:
        page = await resp.text()
    token = re.search(r'name="csrf" value="([^"]*)"', page)
    if resp.status != 200 or token is None:
        raise BenchError(f"GET /ui/login answered {resp.status} without a csrf field")
    form = {"csrf": token.group(1), "next": "/ui/", "name": MANAGER, "password": PASSWORD}
    async with session.post(f"{base}/ui/login", data=form, allow_redirects=False) as resp:
        await resp.read()
    if resp.status != 303:
        raise BenchError(f"POST /ui/login answered {resp.status}")
    async with session.get(f"{base}/ui/", allow_redirects=False) as resp:
        page = await resp.text()
    if resp.status != 200:
        raise BenchError(f"GET /ui/ after logging in answered {resp.status} {resp.headers.get('Location')}")
    return page


async def time_get(session: aiohttp.ClientSession, url: str, n: int, warmup: int) -> tuple[list[float], int]:
    times, size = [], 0
    for i in range(warmup + n):
        started = time.perf_counter()
        async with session.get(url, allow_redirects=False) as resp:
            body = await resp.read()
        elapsed = (time.perf_counter() - started) * 1000
        if resp.status != 200:
            raise BenchError(f"GET {url} answered {resp.status}: {body[:300]!r}")
        if i >= warmup:
            times.append(elapsed)
        size = len(body)
    return times, size


async def measure_pages(base: str, counts: dict) -> dict:
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1
    async with aiohttp.ClientSession(cookie_jar=jar, connector=aiohttp.TCPConnector(limit=1)) as session:
        page = await log_in(session, base)
        names = list(dict.fromkeys(LIVE.findall(page)))
        progress(f"logged in as {MANAGER}; /ui/ is {len(page):,} bytes with live regions {names}")
        overview, size = await time_get(session, f"{base}/ui/", counts["pages"], counts["warmup"])
        progress(f"/ui/: {counts['pages']} GETs, p95 {percentile(overview, 95):.1f} ms ({size:,} bytes)")
        fragments, sizes = {}, {}
        for name in names:
            fragments[name], sizes[name] = await time_get(session, f"{base}/ui/?fragment={name}", counts["pages"],
                                                          counts["warmup"])
            progress(f"fragment {name}: p95 {percentile(fragments[name], 95):.1f} ms ({sizes[name]:,} bytes)")
    return {"page": page, "names": names, "overview": overview, "size": size, "fragments": fragments,
            "sizes": sizes}


async def measure_report(base: str, counts: dict) -> dict:
    """The report page for the last REPORT_DAYS business days, as the manager's quick link asks for it."""
    today = datetime.fromisoformat(business_date(datetime.now(timezone.utc), TZ))
    first = (today - timedelta(days=REPORT_DAYS - 1)).date().isoformat()
    url = f"{base}/ui/reports?from={first}&to={today.date().isoformat()}"
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar, connector=aiohttp.TCPConnector(limit=1)) as session:
        await log_in(session, base)
        cold, size = await time_get(session, url, 1, 0)
        progress(f"report {first}..{today.date()}: the first GET (closed days read whole) {cold[0]:.0f} ms, "
                 f"{size:,} bytes")
        times, _ = await time_get(session, url, counts["pages"], counts["warmup"])
        progress(f"report: {counts['pages']} GETs, p95 {percentile(times, 95):.1f} ms")
        exports = {}
        for what in EXPORTS:
            took, bytes_ = await time_get(session, f"{base}/ui/export/{what}.xlsx?from={first}&to="
                                                   f"{today.date().isoformat()}", 1, 0)
            exports[what] = {"ms": round(took[0], 1), "bytes": bytes_}
        progress(f"exports: {exports}")
    return {"from": first, "to": today.date().isoformat(), "cold_ms": cold[0], "times": times, "size": size,
            "exports": exports}


async def hand_over(http: Http, order: dict) -> None:
    """核销 at the till (POST /api/v1/pickups with the typed code), as the customer collects it."""
    await http.call("POST", f"{http.edge}/api/v1/pickups", {"code": order["pickup_code"], "operator": "王芳"},
                    headers={"Idempotency-Key": str(uuid.uuid4())}, expect=(201,))


class LivePage:
    """edge/ui/static/app.js in Python: the SSE stream, the 100 ms debounce, every region re-fetched."""

    def __init__(self, base: str, names: list[str], cookies):
        self.base, self.names = base, names
        jar = aiohttp.CookieJar(unsafe=True)
        jar.update_cookies(cookies)
        self.stream_session = aiohttp.ClientSession(cookie_jar=jar)
        self.fetch_session = aiohttp.ClientSession(cookie_jar=jar, connector=aiohttp.TCPConnector(
            limit=BROWSER_CONNECTIONS))
        self.pending: asyncio.Task | None = None
        self.target: tuple[str, asyncio.Future] | None = None
        self.changes = 0
        self.refreshes = 0
        self.fetch_ms: list[float] = []
        self.connected = asyncio.Event()
        self.task: asyncio.Task | None = None

    async def __aenter__(self):
        self.task = asyncio.create_task(self.listen())
        await asyncio.wait_for(self.connected.wait(), 10)
        return self

    async def __aexit__(self, *exc):
        self.task.cancel()
        for task in (self.task, self.pending):
            if task is not None:
                try:
                    await task
                except (asyncio.CancelledError, Exception):  # noqa: BLE001
                    pass
        await self.stream_session.close()
        await self.fetch_session.close()

    async def listen(self) -> None:
        async with self.stream_session.get(f"{self.base}/ui/events",
                                           timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as resp:
            if resp.status != 200:
                raise BenchError(f"GET /ui/events answered {resp.status}")
            self.connected.set()
            async for raw in resp.content:
                if raw.decode("utf-8", "replace").strip() == "event: change":
                    self.changes += 1
                    self.refresh_all()

    def refresh_all(self) -> None:
        if self.pending is not None and not self.pending.done():
            return
        self.pending = asyncio.create_task(self._refresh_later())

    async def _refresh_later(self) -> None:
        await asyncio.sleep(DEBOUNCE)
        self.pending = None  # app.js clears `pending` before fetching: a change meanwhile schedules another
        self.refreshes += 1
        await asyncio.gather(*(self.refresh(name) for name in self.names), return_exceptions=True)

    async def refresh(self, name: str) -> None:
        started = time.perf_counter()
        async with self.fetch_session.get(f"{self.base}/ui/?fragment={name}",
                                          headers={"X-Requested-With": "fetch"}) as resp:
            html = await resp.text()
        done = time.perf_counter()
        self.fetch_ms.append((done - started) * 1000)
        if resp.status == 200 and self.target is not None:
            order_id, future = self.target
            if f'data-order-id="{order_id}"' in html and not future.done():
                future.set_result((done, name))


async def order_to_screen(base: str, http: Http, edge: Proc, names: list[str], cookies, skus: list[str],
                          count: int, gap: tuple[float, float]) -> dict:
    rng = random.Random(SEED + 2)
    timed, regions = [], {}
    async with LivePage(base, names, cookies) as live:
        for n in range(WARMUP_ORDERS + count):
            body = {"kind": rng.choice(("pickup", "delivery")), "customer_note": "基准",
                    "lines": [{"sku": sku, "qty": rng.randint(1, 2)} for sku in rng.sample(skus, rng.randint(1, 3))]}
            future = asyncio.get_running_loop().create_future()
            started = time.perf_counter()
            order = await http.hub_admin("POST", f"/stores/{STORE_ID}/orders", body, expect=(201,))
            posted = time.perf_counter()
            live.target = (order["order_id"], future)
            try:
                shown, region = await asyncio.wait_for(asyncio.shield(future), ORDER_TIMEOUT)
            except asyncio.TimeoutError:
                edge.check()
                raise BenchError(f"order {order['order_id']} ({order.get('number')}) was not shown on the "
                                 f"overview within {ORDER_TIMEOUT:.0f} s (regions {names})") from None
            live.target = None
            await hand_over(http, order)  # staff hand it over: the lists stay as long as a store's
            if n >= WARMUP_ORDERS:
                timed.append({"total": (shown - started) * 1000, "post": (posted - started) * 1000})
                regions[region] = regions.get(region, 0) + 1
            await asyncio.sleep(rng.uniform(*gap))
        changes, refreshes, fetch_ms = live.changes, live.refreshes, live.fetch_ms
    return {"total_ms": [t["total"] for t in timed], "post_ms": [t["post"] for t in timed], "regions": regions,
            "changes": changes, "refreshes": refreshes, "fetch_ms": fetch_ms}


async def order_to_screen_browser(base: str, http: Http, skus: list[str], count: int) -> dict:
    """The same, in headless Chromium with the real app.js."""
    from playwright.async_api import async_playwright  # noqa: PLC0415 (optional)

    rng = random.Random(SEED + 3)
    totals = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            page = await browser.new_page()
            await page.goto(f"{base}/ui/login?next=%2Fui%2F")
            await page.fill("input[name=name]", MANAGER)
            await page.fill("input[name=password]", PASSWORD)
            await page.click("button[type=submit]")
            await page.wait_for_url(f"{base}/ui/")
            await page.wait_for_timeout(500)  # the EventSource connects
            for n in range(WARMUP_ORDERS + count):
                body = {"kind": "pickup", "customer_note": "基准",
                        "lines": [{"sku": sku, "qty": 1} for sku in rng.sample(skus, rng.randint(1, 3))]}
                started = time.perf_counter()
                order = await http.hub_admin("POST", f"/stores/{STORE_ID}/orders", body, expect=(201,))
                await page.wait_for_selector(f'tr[data-order-id="{order["order_id"]}"]', state="attached",
                                             timeout=ORDER_TIMEOUT * 1000)
                if n >= WARMUP_ORDERS:
                    totals.append((time.perf_counter() - started) * 1000)
                await hand_over(http, order)
                await asyncio.sleep(rng.uniform(0.2, 0.5))
        finally:
            await browser.close()
    return {"total_ms": totals}


def browser_available() -> bool:
    try:
        import playwright  # noqa: F401, PLC0415
    except ImportError:
        return False
    return Path("/usr/bin/chromium").exists()


# -- the run --------------------------------------------------------------------------------------



async def linked_run(folder: Path, cached: Path, counts: dict, browser: bool) -> dict:
    data = folder / "data"
    data.mkdir()
    db_path = data / "store.db"
    shutil.copyfile(cached, db_path)
    started = time.perf_counter()
    facts = prepare_copy(db_path)
    progress(f"copy prepared in {time.perf_counter() - started:.1f} s: orders {facts['orders']} "
             f"({facts['short_open']} open and short), {facts['moves']:,} moves, {facts['sales']:,} sales")

    profile = query_profile(db_path, counts["profile"])
    progress(f"overview figures() in process: p50 {profile['figures_ms']['p50']:.1f} ms; slowest statements "
             + "; ".join(f"{st['mean_ms_per_page']:.1f} ms {st['sql'][:70]}" for st in profile["statements"][:3]))

    admin_token = "hub_bench_" + os.urandom(8).hex()
    hub, hub_url = start_hub(folder, admin_token)
    edge = None
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=8))
    try:
        port = free_port()
        config = write_config(folder, port, f'[cloud]\nurl = "{hub_url}"\ntoken = {{ file = "cloud-token" }}\n'
                                            "reconcile_minutes = 0\n")
        base = f"http://127.0.0.1:{port}"
        http = Http(session, hub_url, base, admin_token)
        await http.wait_ready(hub, f"{hub_url}/admin/v1/stores", http.admin)
        store = await http.hub_admin("POST", "/stores", {"store_id": STORE_ID, "name": "基准测试门店"})
        published = await http.hub_admin("POST", "/products", {"products": facts["hub_products"]})
        (folder / "cloud-token").write_text(store["token"])
        edge = start_edge(folder, config)

        async def synced():
            status = await http.status()
            return (status["link"]["hints_connected"] and status["queue"]["cursor"] >= published["last_cursor"]
                    and status["queue"]["depth"] == 0)
        await wait_until(synced, "the edge to link to the hub", edge, timeout=120)
        progress(f"hub (pid {hub.popen.pid}) and edge (pid {edge.popen.pid}) linked "
                 f"{time.perf_counter() - edge.started:.2f} s after the edge's start")

        pages = await measure_pages(base, counts)
        report = await measure_report(base, counts)
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as login_session:
            await log_in(login_session, base)
            cookies = {c.key: c.value for c in jar}
        skus = [p["sku"] for p in facts["hub_products"]]
        screen = await order_to_screen(base, http, edge, pages["names"], cookies, skus, counts["orders"],
                                       counts["gap"])
        progress(f"order to screen (aiohttp, app.js's way): {counts['orders']} orders, p50 "
                 f"{percentile(screen['total_ms'], 50):.0f} ms p99 {percentile(screen['total_ms'], 99):.0f} ms; "
                 f"shown first in {screen['regions']}")
        screen_browser = None
        if browser:
            screen_browser = await order_to_screen_browser(base, http, skus, counts["orders"])
            progress(f"order to screen (Chromium): p50 {percentile(screen_browser['total_ms'], 50):.0f} ms p99 "
                     f"{percentile(screen_browser['total_ms'], 99):.0f} ms")
        status = await http.status()
        edge.stop()
        hub.stop()
        said = (folder / "edge.log").read_text(encoding="utf-8", errors="replace").strip().splitlines()
        if said:
            progress(f"the edge logged {len(said)} line(s) at warning or above"
                     + "".join(f"\n    {line[:300]}" for line in said[:5]))
        return {"facts": facts, "profile": profile, "pages": pages, "report": report, "screen": screen,
                "screen_browser": screen_browser,
                "queue": status["queue"], "edge_log_lines": len(said)}
    finally:
        await session.close()
        if edge is not None:
            edge.kill()
        hub.kill()


def run(quick: bool = False, browser: bool | None = None) -> dict:
    wall = time.perf_counter()
    counts = COUNTS[quick]
    if browser is None:
        said = os.environ.get("DASHBOARD_BENCH_BROWSER")
        browser = said == "1" if said in ("0", "1") else (not quick and browser_available())
    load_start = load_at_start(progress)
    cached, seed_s = seeded_database()

    with scratch_folder("store-edge-bench-dashboard-", progress) as folder:
        got = asyncio.run(linked_run(folder, cached, counts, browser))

    pages, screen, facts = got["pages"], got["screen"], got["facts"]
    overview = stats(pages["overview"])
    fragments = {name: stats(times) for name, times in pages["fragments"].items()}
    to_screen = stats(screen["total_ms"])
    report = got["report"]
    report_ms = stats(report["times"])
    result = {
        "benchmark": "dashboard", "quick": quick,
        "overview_ms": overview, "overview_bytes": pages["size"],
        "fragments_ms": fragments, "fragment_bytes": pages["sizes"],
        "report_31_days_ms": {**report_ms, "first_ms": round(report["cold_ms"], 1), "from": report["from"],
                              "to": report["to"]},
        "report_bytes": report["size"], "exports": report["exports"],
        "order_to_screen_ms": {**to_screen, "method": "aiohttp (app.js reproduced: SSE + 100 ms debounce + "
                                                      "all regions re-fetched)"},
        "order_to_screen_hub_post_ms": stats(screen["post_ms"]),
        "order_to_screen_region": screen["regions"],
        "order_to_screen_browser_ms": stats(got["screen_browser"]["total_ms"]) if got["screen_browser"] else None,
        "figures_in_process_ms": got["profile"]["figures_ms"],
        "figures_statements": got["profile"]["statements"][:8],
        "sse_changes": screen["changes"], "region_refreshes": screen["refreshes"],
        "refresh_fetch_ms": stats(screen["fetch_ms"]),
        "store": {"orders": facts["orders"], "moves": facts["moves"], "sales": facts["sales"], "skus": ledger.SKUS,
                  "open_short_orders": facts["short_open"]},
        "requests": counts["pages"], "orders": counts["orders"],
        "edge_log_lines": got["edge_log_lines"],
        "seed_s": None if seed_s is None else round(seed_s, 1),
        "run_s": round(time.perf_counter() - wall, 1),
        "load_start": round(load_start, 2), "load_end": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
        "targets": TARGETS,
    }
    result["met"] = {"overview_p95_ms": overview["p95"] <= TARGETS["overview_p95_ms"],
                     "report_31_days_p95_ms": report_ms["p95"] <= TARGETS["report_31_days_p95_ms"],
                     "order_to_screen_p99_ms": to_screen["p99"] <= TARGETS["order_to_screen_p99_ms"]}
    if result["order_to_screen_browser_ms"]:
        result["met"]["order_to_screen_browser_p99_ms"] = (result["order_to_screen_browser_ms"]["p99"]
                                                           <= TARGETS["order_to_screen_p99_ms"])

    print(f"dashboard benchmark ({'quick' if quick else 'full'}): {sum(facts['orders'].values()):,} orders "
          f"{facts['orders']}, {facts['moves']:,} moves, {facts['sales']:,} sales, {ledger.SKUS:,} SKUs; SQLite "
          f"{sqlite3.sqlite_version}")
    print(f"  {'GET (ms, one keep-alive connection)':<40} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8} {'bytes':>8}")
    print(f"  {'/ui/ (target p95 <= ' + str(TARGETS['overview_p95_ms']) + ')':<40} {overview['p50']:8.2f} "
          f"{overview['p95']:8.2f} {overview['p99']:8.2f} {overview['max']:8.2f} {pages['size']:8d}")
    for name, s in fragments.items():
        print(f"  {'/ui/?fragment=' + name:<40} {s['p50']:8.2f} {s['p95']:8.2f} {s['p99']:8.2f} {s['max']:8.2f} "
              f"{pages['sizes'][name]:8d}")
    print(f"  {'/ui/reports ' + str(REPORT_DAYS) + ' days (p95 <= ' + str(TARGETS['report_31_days_p95_ms']) + ')':<40} "
          f"{report_ms['p50']:8.2f} {report_ms['p95']:8.2f} {report_ms['p99']:8.2f} {report_ms['max']:8.2f} "
          f"{report['size']:8d}")
    print(f"    {report['from']}..{report['to']}; the first GET (the closed days read whole, their sums kept) "
          f"{report['cold_ms']:.0f} ms; Excel exports of the range: "
          + ", ".join(f"{w} {e['ms']:.0f} ms {e['bytes'] / 1024:.0f} KiB" for w, e in report["exports"].items()))
    print(f"  order created at the hub -> on the open overview ({counts['orders']} orders, after {WARMUP_ORDERS} "
          f"warm-up; target p99 <= {TARGETS['order_to_screen_p99_ms']} ms), ms:")
    print(f"    {'aiohttp, app.js reproduced':<34} p50 {to_screen['p50']:7.1f}  p99 {to_screen['p99']:7.1f}  "
          f"max {to_screen['max']:7.1f}  (shown in {screen['regions']})")
    if result["order_to_screen_browser_ms"]:
        b = result["order_to_screen_browser_ms"]
        print(f"    {'headless Chromium (Playwright)':<34} p50 {b['p50']:7.1f}  p99 {b['p99']:7.1f}  "
              f"max {b['max']:7.1f}")
    print(f"    {'  hub POST':<34} p50 {result['order_to_screen_hub_post_ms']['p50']:7.1f}")
    print(f"    {'  each region fetch on a change':<34} p50 {result['refresh_fetch_ms']['p50']:7.1f}  p99 "
          f"{result['refresh_fetch_ms']['p99']:7.1f}  ({screen['changes']} SSE changes, {screen['refreshes']} "
          "refreshes)")
    prof = got["profile"]
    print(f"  where a page's time goes: edge.store.overview.figures() in this process (every page and every fragment "
          f"runs all of it): p50 {prof['figures_ms']['p50']:.2f} ms, p95 {prof['figures_ms']['p95']:.2f} ms; "
          "its statements, mean ms per page:")
    for st in prof["statements"][:6]:
        print(f"    {st['mean_ms_per_page']:7.3f} x{st['calls_per_page']:<4} {st['sql'][:110]}")
        print(f"            plan: {' | '.join(st['plan'])[:150]}")
    missed = [key for key, met in result["met"].items() if not met]
    print(f"  targets: {'all met' if not missed else 'MISSED ' + ', '.join(missed)}; run {result['run_s']} s"
          + (f" (seeding {result['seed_s']} s)" if seed_s is not None else "")
          + f"; load average {result['load_start']} at the start, {result['load_end']} at the end "
          f"({result['cpus']} CPUs)")
    return result
