"""The ledger benchmark: a store with 100,000 SKUs and 1,000,000 stock moves.

Measured against a real daemon (`store-edge run`) over HTTP, from one keep-alive client sending
requests one after another, as a till does:
  - sale commit: POST /api/v1/sales, 5 lines of 5 different random SKUs, with an Idempotency-Key;
  - stock query: GET /api/v1/stock/{sku} of random SKUs;
and on the same database:
  - `store-edge ledger verify` as a subprocess (wall time, Python start-up included);
  - edge.store.stock.verify in this process.
After the daemon has stopped, `ledger verify` runs again: the sales added moves, it must still pass.

The seeded database is cached in bench/.cache/ under a name that carries the schema version (and a
hash of the migrations' SQL), so only the first run pays for seeding; each run works on a copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
from sqlite_utils import Database

from edge.store import db, migrations, stock
from protocol.barcodes import gtin_check_digit
from protocol.stock import RESERVATION_REASONS

SKUS = 100_000
MOVES = 1_000_000
SEED = 20261121
SEED_VERSION = 2  # bump when the generated data changes, so a stale cache is not reused
TARGETS = {"sale_p99_ms": 15, "stock_p99_ms": 3, "verify_s": 10}
COUNTS = {False: {"sales": 2000, "queries": 5000}, True: {"sales": 300, "queries": 1000}}
WARMUP = 50
LINES_PER_SALE = 5

ROOT = Path(__file__).resolve().parents[1]
CACHE_DIR = Path(__file__).resolve().parent / ".cache"


class BenchError(Exception):
    """Something the benchmark measures did not work (a refused sale, a failed verify...)."""


def progress(message: str) -> None:
    print(f"[ledger {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the dataset ----------------------------------------------------------------------------------

def cache_path() -> Path:
    schema = len(migrations.MIGRATIONS)
    digest = hashlib.sha256("\n".join(sql for _, sql in migrations.MIGRATIONS).encode()).hexdigest()[:10]
    return CACHE_DIR / f"ledger-schema{schema}-{digest}-s{SEED_VERSION}-{SKUS}x{MOVES}.db"


BRANDS = ("康师傅", "统一", "农夫山泉", "伊利", "蒙牛", "旺旺", "达利园", "娃哈哈", "金龙鱼", "海天",
          "老干妈", "三只松鼠", "良品铺子", "百事", "可口可乐", "雀巢", "奥利奥", "乐事", "光明", "维达")
ITEMS = ("红烧牛肉面", "矿泉水", "纯牛奶", "酸奶", "雪饼", "小面包", "八宝粥", "花生油", "酱油", "辣椒酱",
         "每日坚果", "薯片", "可乐", "速溶咖啡", "夹心饼干", "卷纸", "绿茶", "冰红茶", "火腿肠", "自热米饭")
SPECS = ("105g", "550ml", "250ml×12", "1L", "5L", "500g", "200g", "330ml", "360g", "10卷")
CATEGORIES = ("食品", "饮料", "乳品", "粮油", "调味", "零食", "日化")

# The 900,000 moves after the opening receipts: (reason, weight, quantity)
MIX = (("sale", 74, lambda r: -r.randint(1, 3)),
       ("receipt", 15, lambda r: 12 * r.randint(1, 20)),
       ("return", 1, lambda r: 1),
       ("adjustment", 3, lambda r: r.choice((-3, -2, -1, -1, -1, 1, 2))),
       ("count", 3, lambda r: r.choice((-5, -2, -1, 1, 2, 4))),
       ("reserve", 2, lambda r: r.randint(1, 3)),
       ("release", 2, lambda r: -r.randint(1, 3)))
REF_TYPE = {"sale": "sale", "return": "return", "receipt": "receipt", "adjustment": "adjustment",
            "count": "count", "reserve": "order", "release": "order"}
LINES_PER_REF = {"sale": 3, "return": 1, "receipt": 20, "adjustment": 2, "count": 30, "reserve": 2, "release": 2}
DAY = 86_400
START = 1_763_596_800  # 2025-11-20T00:00:00Z: the moves cover the year before the benchmark's "now"


def sku_of(index: int) -> str:
    return f"SKU-{index + 1:06d}"


def stamp(seconds: float) -> str:
    whole = int(seconds)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{int((seconds - whole) * 1000):03d}Z"


def product_rows(rng: random.Random, count: int = SKUS):
    now = stamp(START)
    for i in range(count):
        name = f"{rng.choice(BRANDS)}{rng.choice(ITEMS)} {rng.choice(SPECS)} {i + 1}号"
        yield (sku_of(i), name, rng.randint(150, 19_900), "件", rng.choice(CATEGORIES), rng.choice((0, 5, 10, 20)),
               now)


def move_rows(rng: random.Random):
    """1,000,000 moves in time order: an opening receipt per SKU, then a year of trading where a
    few SKUs are popular (sales, receipts...) and most are not."""
    ref_id = lambda: str(uuid.UUID(int=rng.getrandbits(128), version=4))  # noqa: E731
    opening_ref = None
    for i in range(SKUS):
        if i % 500 == 0:
            opening_ref = ref_id()
        yield (sku_of(i), rng.randint(20, 200), "receipt", "receipt", opening_ref, "backoffice", "opening stock",
               stamp(START + i * 0.5))
    order = list(range(SKUS))
    rng.shuffle(order)  # popularity rank -> SKU
    reasons = [m[0] for m in MIX]
    qty_of = {m[0]: m[2] for m in MIX}
    current = {reason: (None, 0) for reason in reasons}  # reason -> (ref id, lines left)
    reserved: dict[int, int] = {}  # SKU index -> units reserved (for pick-up orders)
    rest = MOVES - SKUS
    step = (365 * DAY - 3600) / rest
    begin = START + 3600
    for n, reason in enumerate(rng.choices(reasons, weights=[m[1] for m in MIX], k=rest)):
        ref, left = current[reason]
        if left == 0:
            ref, left = ref_id(), rng.randint(1, 2 * LINES_PER_REF[reason] - 1)
        current[reason] = (ref, left - 1)
        r = rng.random()
        index = order[int(SKUS * r * r)]
        qty = qty_of[reason](rng)
        if reason == "reserve":
            reserved[index] = reserved.get(index, 0) + qty
        elif reason == "release":  # only what is reserved is released; else it is a new reservation
            held = reserved.get(index, 0)
            if held == 0:
                reason, qty = "reserve", -qty
            else:
                qty = -min(-qty, held)
            reserved[index] = held + qty
        device = f"till-{1 + n % 3}" if reason in ("sale", "return", "reserve", "release") else "backoffice"
        yield (sku_of(index), qty, reason, REF_TYPE[reason], ref, device, None, stamp(begin + n * step))


def barcode_of(index: int) -> str:
    body = f"69{index + 1:010d}"
    return body + str(gtin_check_digit(body))


PRODUCT_COLUMNS = ("sku", "name", "price_fen", "unit", "category", "low_stock", "updated_at")


def seed_catalog(conn: sqlite3.Connection, rng: random.Random, count: int = SKUS) -> None:
    """`count` products and their barcodes, in the caller's open transaction. sqlite-utils from 4.x
    writes there under a savepoint; its 3.x helpers ran `with conn:`, which committed the caller's
    transaction half-way (pyproject pins >= 4.2)."""
    catalog = Database(conn, recursive_triggers=False, execute_plugins=False)   # no PRAGMA on our connection
    catalog.table("products").insert_all(dict(zip(PRODUCT_COLUMNS, row)) for row in product_rows(rng, count))
    catalog.table("barcodes").insert_all({"code": barcode_of(i), "sku": sku_of(i)} for i in range(count))


def seed(path: Path) -> None:
    """Create the store with the daemon's own migrations, then bulk-load it (synchronous=OFF here only)."""
    started = time.perf_counter()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    conn = db.open_store_db(path)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA foreign_keys = OFF")  # the generated rows are consistent; checked below
    conn.execute("PRAGMA cache_size = -524288")  # 512 MiB: the indexes stay in memory while they grow
    conn.execute("PRAGMA temp_store = MEMORY")
    rng = random.Random(SEED)
    with db.transaction(conn):
        seed_catalog(conn, rng)
    progress(f"seed: {SKUS:,} products and barcodes ({time.perf_counter() - started:.1f} s)")
    rows = move_rows(rng)
    done = 0
    while done < MOVES:
        chunk = [next(rows) for _ in range(min(200_000, MOVES - done))]
        with db.transaction(conn):
            conn.executemany("INSERT INTO stock_moves (sku, qty, reason, ref_type, ref_id, device, note, created_at) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", chunk)
        done += len(chunk)
        progress(f"seed: {done:,} moves ({time.perf_counter() - started:.1f} s)")
    res = ", ".join(f"'{r}'" for r in RESERVATION_REASONS)
    with db.transaction(conn):
        conn.execute(
            "INSERT INTO stock_balances (sku, on_hand, reserved, updated_at) "
            f"SELECT sku, sum(CASE WHEN reason IN ({res}) THEN 0 ELSE qty END), "
            f"sum(CASE WHEN reason IN ({res}) THEN qty ELSE 0 END), max(created_at) FROM stock_moves GROUP BY sku")
    problems = conn.execute("PRAGMA foreign_key_check").fetchall()
    counts = [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
              for t in ("products", "barcodes", "stock_moves", "stock_balances")]
    if problems or counts != [SKUS, SKUS, MOVES, SKUS]:
        raise BenchError(f"seeding went wrong: counts {counts}, {len(problems)} foreign key problems")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    conn = db.open_store_db(path)  # reopened as the daemon opens it
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    progress(f"seed: done, balances computed from the moves ({time.perf_counter() - started:.1f} s, "
             f"{path.stat().st_size / 2**20:.0f} MiB)")


def cached(path: Path, stale: str, what: str, build, say=None) -> tuple[Path, float | None]:
    """The cached database at `path`, made by `build(file)` when missing; with the seconds it took then.

    Files matching `stale` (an older schema's) are removed first; the database is built under a
    temporary name and renamed, so an interrupted seeding never leaves a half database to reuse."""
    say = say or progress
    if path.exists():
        say(f"seed: reusing {path.relative_to(ROOT)}")
        return path, None
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    for old in CACHE_DIR.glob(stale):
        old.unlink()
    building = path.with_name(f"{path.name}.{os.getpid()}.building")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{building}{suffix}").unlink(missing_ok=True)
    say(f"seed: creating {path.relative_to(ROOT)} ({what})")
    started = time.perf_counter()
    build(building)
    if Path(f"{building}-wal").exists() and Path(f"{building}-wal").stat().st_size:
        raise BenchError("the seeded database still has a WAL after the checkpoint")
    for suffix in ("-wal", "-shm"):
        Path(f"{building}{suffix}").unlink(missing_ok=True)
    os.replace(building, path)
    return path, time.perf_counter() - started


def seeded_database() -> tuple[Path, float | None]:
    """The cached seeded database, created if missing; and the seeding time when it was created now."""
    return cached(cache_path(), "ledger-*.db", f"{SKUS:,} SKUs, {MOVES:,} moves", seed)


# -- the daemon -----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(folder: Path, port: int, extra: str = "") -> Path:
    """The daemon's config.toml for a benchmark; `extra` adds tables (e.g. [cloud])."""
    path = folder / "config.toml"
    path.write_text(f"""\
[store]
id = "bench-store"
name = "基准测试门店"
data_dir = {json.dumps(str(folder / "data"))}

[api]
host = "127.0.0.1"
port = {port}

[log]
level = "warning"
{extra}""", encoding="utf-8")
    return path


def store_edge() -> str:
    script = Path(sys.executable).parent / "store-edge"
    found = str(script) if script.exists() else shutil.which("store-edge")
    if not found:
        raise BenchError("the store-edge command is not installed (pip install -e . in the venv)")
    return found


def cli_verify(config: Path) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([store_edge(), "ledger", "verify", "--config", str(config)], capture_output=True,
                          text=True, timeout=300)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchError(f"store-edge ledger verify exited {done.returncode}: "
                         f"{(done.stdout + done.stderr).strip()[:2000]}")
    return elapsed, done.stdout.strip()


def inprocess_verify(path: Path) -> tuple[float, int]:
    conn = db.connect(path, readonly=True)
    try:
        started = time.perf_counter()
        conn.execute("BEGIN")
        moves, mismatches = stock.verify(conn)
        conn.execute("ROLLBACK")
        elapsed = time.perf_counter() - started
    finally:
        conn.close()
    if mismatches:
        raise BenchError(f"edge.store.stock.verify found {len(mismatches)} mismatches, first: {mismatches[0]}")
    return elapsed, moves


def store_prices(path: Path) -> dict[str, int]:
    """sku -> price_fen of every product in the store database at `path`."""
    conn = db.connect(path, readonly=True)
    try:
        return dict(conn.execute("SELECT sku, price_fen FROM products").fetchall())
    finally:
        conn.close()


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def stats(values: list[float]) -> dict:
    """n, p50, p95, p99 and max of timings (ms), rounded for the JSON line."""
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": round(percentile(values, 50), 2), "p95": round(percentile(values, 95), 2),
            "p99": round(percentile(values, 99), 2), "max": round(max(values), 2)}


async def wait_ready(session: aiohttp.ClientSession, base: str, proc: subprocess.Popen, log: Path,
                     timeout: float = 60) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if proc.poll() is not None:
            raise BenchError(f"the daemon exited with {proc.returncode} before it was ready: "
                             f"{log.read_text(errors='replace')[-2000:]}")
        try:
            async with session.get(f"{base}/api/v1/health", timeout=aiohttp.ClientTimeout(total=2)) as resp:
                if resp.status == 200 and (await resp.json()).get("status") == "ok":
                    return time.perf_counter() - started
        except (aiohttp.ClientError, asyncio.TimeoutError):
            pass
        await asyncio.sleep(0.05)
    raise BenchError(f"the daemon did not answer /api/v1/health within {timeout:.0f} s")


def sale_body(rng: random.Random, skus: list[str], prices: dict[str, int]) -> dict:
    lines = [{"sku": sku, "qty": rng.randint(1, 3)} for sku in rng.sample(skus, LINES_PER_SALE)]
    total = sum(prices[line["sku"]] * line["qty"] for line in lines)
    if rng.random() < 0.3:  # cash, rounded up to the next 10 yuan: the till gives change
        payments = [{"method": "cash", "amount_fen": -(-total // 1000) * 1000}]
    else:
        payments = [{"method": rng.choice(("wechat", "alipay")), "amount_fen": total}]
    return {"lines": lines, "payments": payments, "cashier": "基准"}


async def drive(base: str, proc: subprocess.Popen, log: Path, skus: list[str], prices: dict[str, int],
                n_sales: int, n_queries: int) -> dict:
    rng = random.Random(SEED + 1)
    connector = aiohttp.TCPConnector(limit=1, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        ready = await wait_ready(session, base, proc, log)
        progress(f"daemon ready after {ready:.2f} s")

        async def sale(key: str, body: dict, expect_replay: bool = False) -> float:
            started = time.perf_counter()
            async with session.post(f"{base}/api/v1/sales", json=body, headers={"Idempotency-Key": key}) as resp:
                payload = await resp.read()
            elapsed = time.perf_counter() - started
            if resp.status != 201:
                raise BenchError(f"POST /api/v1/sales answered {resp.status}: {payload[:500]!r}")
            if resp.headers.get("Idempotent-Replayed") != ("true" if expect_replay else "false"):
                raise BenchError(f"Idempotent-Replayed is {resp.headers.get('Idempotent-Replayed')!r}")
            sale = json.loads(payload)["sale"]
            if [line["sku"] for line in sale["lines"]] != [line["sku"] for line in body["lines"]]:
                raise BenchError(f"the sale recorded other lines than sent: {sale['lines']}")
            return elapsed

        async def query(sku: str) -> float:
            started = time.perf_counter()
            async with session.get(f"{base}/api/v1/stock/{sku}") as resp:
                payload = await resp.read()
            elapsed = time.perf_counter() - started
            if resp.status != 200 or json.loads(payload)["sku"] != sku:
                raise BenchError(f"GET /api/v1/stock/{sku} answered {resp.status}: {payload[:500]!r}")
            return elapsed

        sale_ms, last = [], None
        for n in range(WARMUP + n_sales):
            last = (str(uuid.uuid4()), sale_body(rng, skus, prices))
            elapsed = await sale(*last)
            if n >= WARMUP:
                sale_ms.append(elapsed * 1000)
            if n >= WARMUP and (n + 1 - WARMUP) % 500 == 0 and n + 1 - WARMUP < n_sales:
                progress(f"sales: {n + 1 - WARMUP} of {n_sales}")
        progress(f"sales: {n_sales} timed after {WARMUP} warm-up")
        await sale(*last, expect_replay=True)  # the same key again: the stored answer, no second sale

        stock_ms = []
        for n in range(WARMUP + n_queries):
            elapsed = await query(rng.choice(skus))
            if n >= WARMUP:
                stock_ms.append(elapsed * 1000)
        progress(f"stock queries: {n_queries} timed after {WARMUP} warm-up")
    return {"sale_ms": sale_ms, "stock_ms": stock_ms, "ready_s": ready}


def stop(proc: subprocess.Popen, log: Path) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise BenchError("the daemon did not stop within 30 s of SIGTERM")
    if proc.returncode != 0:
        raise BenchError(f"the daemon exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")


# -- the run --------------------------------------------------------------------------------------

@contextlib.contextmanager
def scratch_folder(prefix: str, say):
    """A temporary folder for a benchmark's run: removed when the run succeeds, kept (and said where) when it
    fails, so its logs and databases can be looked at."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    except BaseException:
        say(f"kept {folder} for a look")
        raise
    shutil.rmtree(folder, ignore_errors=True)


def load_at_start(say=None) -> float:
    """The load average, with a warning when other work will skew the figures."""
    load = os.getloadavg()[0]
    if load > 1.0:
        (say or progress)(f"warning: load average {load:.1f} at the start on {os.cpu_count()} CPUs: "
                          "other work competes with the benchmark, its times will be worse")
    return load


def run(quick: bool = False) -> dict:
    wall = time.perf_counter()
    counts = COUNTS[quick]
    load_start = load_at_start()
    cached, seed_s = seeded_database()

    folder = Path(tempfile.mkdtemp(prefix="store-edge-bench-"))
    ok = False
    try:
        data = folder / "data"
        data.mkdir()
        path = data / "store.db"
        shutil.copyfile(cached, path)
        port = free_port()
        config = write_config(folder, port)
        progress(f"copied the dataset to {folder}")

        prices = store_prices(path)
        skus = sorted(prices)

        verify_s, moves = inprocess_verify(path)
        if moves != MOVES:
            raise BenchError(f"the dataset has {moves} moves, expected {MOVES}")
        progress(f"edge.store.stock.verify: {moves:,} moves OK in {verify_s:.2f} s")
        verify_cli_s, said = cli_verify(config)
        progress(f"store-edge ledger verify: {verify_cli_s:.2f} s ({said})")

        log = folder / "daemon.log"
        with open(log, "wb") as log_file:
            proc = subprocess.Popen([store_edge(), "run", "--config", str(config)], stdin=subprocess.DEVNULL,
                                    stdout=log_file, stderr=subprocess.STDOUT, cwd=folder)
        progress(f"daemon started (pid {proc.pid}), {counts['sales']} sales and {counts['queries']} queries")
        try:
            timings = asyncio.run(drive(f"http://127.0.0.1:{port}", proc, log, skus, prices, counts["sales"],
                                        counts["queries"]))
        except BaseException:
            if proc.poll() is None:  # the measuring failed: stop the daemon without hiding why
                proc.kill()
                proc.wait()
            raise
        stop(proc, log)
        said_daemon = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        progress(f"daemon stopped; it logged {len(said_daemon)} line(s) at warning or above"
                 + "".join(f"\n    {line}" for line in said_daemon[:5]))

        after_s, said_after = cli_verify(config)
        expected = MOVES + LINES_PER_SALE * (WARMUP + counts["sales"])
        conn = db.connect(path, readonly=True)
        try:
            moves_after = conn.execute("SELECT count(*) FROM stock_moves").fetchone()[0]
        finally:
            conn.close()
        if moves_after != expected:
            raise BenchError(f"after the run the ledger has {moves_after} moves, expected {expected}")
        progress(f"after the run: store-edge ledger verify {after_s:.2f} s ({said_after})")
        ok = True
    finally:
        if ok:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            progress(f"kept {folder} for a look")

    result = {
        "benchmark": "ledger", "moves": MOVES, "skus": SKUS,
        "sale_p50_ms": round(percentile(timings["sale_ms"], 50), 3),
        "sale_p99_ms": round(percentile(timings["sale_ms"], 99), 3),
        "sale_max_ms": round(max(timings["sale_ms"]), 3),
        "stock_p50_ms": round(percentile(timings["stock_ms"], 50), 3),
        "stock_p99_ms": round(percentile(timings["stock_ms"], 99), 3),
        "stock_max_ms": round(max(timings["stock_ms"]), 3),
        "verify_s": round(verify_s, 3), "verify_cli_s": round(verify_cli_s, 3),
        "verify_after_cli_s": round(after_s, 3), "moves_after": expected,
        "sales": counts["sales"], "queries": counts["queries"], "quick": quick,
        "seed_s": None if seed_s is None else round(seed_s, 1),
        "run_s": round(time.perf_counter() - wall, 1),
        "load_start": round(load_start, 2), "load_end": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
        "targets": TARGETS,
    }
    result["met"] = {key: result[key] <= limit for key, limit in TARGETS.items()}

    print(f"ledger benchmark ({'quick' if quick else 'full'}): {SKUS:,} SKUs, {MOVES:,} moves, SQLite "
          f"{sqlite3.sqlite_version}")
    print(f"  sale commit   p50 {result['sale_p50_ms']:7.2f} ms  p99 {result['sale_p99_ms']:7.2f} ms  "
          f"max {result['sale_max_ms']:7.2f} ms  ({counts['sales']} sales of {LINES_PER_SALE} lines; "
          f"target p99 <= {TARGETS['sale_p99_ms']} ms)")
    print(f"  stock query   p50 {result['stock_p50_ms']:7.2f} ms  p99 {result['stock_p99_ms']:7.2f} ms  "
          f"max {result['stock_max_ms']:7.2f} ms  ({counts['queries']} queries; "
          f"target p99 <= {TARGETS['stock_p99_ms']} ms)")
    print(f"  ledger verify {result['verify_s']:.2f} s in process, {result['verify_cli_s']:.2f} s as "
          f"`store-edge ledger verify` (target <= {TARGETS['verify_s']} s); after the run "
          f"{result['verify_after_cli_s']:.2f} s, {expected:,} moves, OK")
    missed = [key for key, met in result["met"].items() if not met]
    print(f"  targets: {'all met' if not missed else 'MISSED ' + ', '.join(missed)}; "
          f"run {result['run_s']} s" + (f" (seeding {result['seed_s']} s)" if seed_s is not None else "")
          + f"; load average {result['load_start']} at the start, {result['load_end']} at the end "
          f"({result['cpus']} CPUs)")
    return result
