"""`store-edge demo [--for SECONDS]`: the whole store on one PC, with a simulated day in fast motion.

Everything runs in this one process, on loopback:

  hub       the reference cloud (sync/hub.py), its data in DATA_DIR/demo-hub/ (kept between runs, so
            the store's cloud copy stays consistent with its database)
  proxy     a fault proxy (sync/faultproxy.py) between the store and the hub: the outage
  printer   a virtual ESC/POS printer: receipts as .txt, .json and .png in DATA_DIR/virtual-printer/
  scanner   a serial scanner on a pty: the demo "scans" by writing a code + CR to the pty's master
  camera    a camera reading DATA_DIR/demo/pickups.avi (loop = true): QR codes of pickup tokens of
            orders created at the hub at start, so they verify. Generated at start, not bundled:
            a pickup token is signed by the hub for one order of one run, so a bundled video could
            only show codes that are refused.
  daemon    the store itself (edge/app.py), on the dashboard port of config.toml (default 8470),
            with [cloud] pointed at the proxy and a token from the hub in DATA_DIR/demo/cloud-token

The simulation (seeded random): customers order online at the hub, tills record cash and WeChat
sales through the local API, staff mark orders accepted and ready, customers collect them (pickup
token on the serial scanner, a typed code, or the camera), the counter hands them over through
the API as the cashier screen does, and in the middle the link to the cloud goes down for about a
minute (refused, then blackholed) and comes back. The timeline is 240 s; `--for S` scales it to S
seconds (60 s: outage ~15 s), then waits for the upload queue to drain and prints a summary whose
last line is one JSON object; the exit code is 1 if a check failed. Without `--for` the timeline
repeats until Ctrl-C.

`python -m edge.ops.demo [--config PATH] [--for SECONDS]` runs the same as `store-edge demo`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import os
import random
import secrets
import signal
import sqlite3
import sys
import time
import tty
import uuid
from importlib import resources
from pathlib import Path

import aiohttp
from aiohttp import web

from edge.store import catalog
from edge.core import config as config_mod
from edge.store import db
from edge.core import log as log_mod
from edge.store import stock
from edge.core.clock import iso, utcnow
from edge.core.context import make as make_context
from edge.core.schemas import ReceiptIn

log = logging.getLogger("edge.ops.demo")

SEED = 20261121
TIMELINE = 240.0             # seconds of the unscaled timeline (one cycle without --for)
OUTAGE = (90.0, 150.0)       # the link is down in this part of the timeline ...
BLACKHOLE_FROM = 130.0       # ... refused until here, then blackholed (requests hang) until its end
ORDERS_UNTIL = 0.85          # no new online orders in the last 15% (they could not be collected)
CAMERA_ORDERS = 4            # orders whose tokens the camera video shows
OPENING_QTY = 40             # opening stock of the demo catalog (first run)
TOP_UP_BELOW, TOP_UP_TO = 60, 80   # goods received at start for SKUs that ran low in earlier runs
RESTOCK_BELOW = 15           # goods received during the run when a SKU falls to this
OPERATOR = "王芳"            # the cashier who hands orders over
STAFF = ("小李", "小张")       # who prepares orders
CONSUMER = "demo-counter"    # the demo counter's scan consumer
NOTES = (None, None, None, "不要袋子", "请帮忙加热", "下班后来取", "少放冰")
VIDEO_FPS = 5                # 5 frames a second, each code held 1.2 s: ~45 KB a frame, ~1 MB a video
VIDEO_SIZE = (640, 480)
SCANNER_NAME, CAMERA_NAME, PRINTER_NAME = "demo-scanner", "demo-camera", "demo-printer"


# -- output ---------------------------------------------------------------------------------------

class Out:
    """What the demo tells the person watching: stdout, one line per happening, with the demo's clock."""

    def __init__(self):
        self.t0 = time.monotonic()

    def __call__(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.1f}s] {text}", flush=True)

    @staticmethod
    def plain(text: str = "") -> None:
        print(text, flush=True)


# -- seeding (as `store-edge demo` always did) ----------------------------------------------------

def seed_store(config: config_mod.Config) -> list[tuple[str, str, str]]:
    """The demo catalog with opening stock (first run only) and the demo logins; the logins that work."""
    from edge.ops.config_file import open_db

    conn = open_db(config)
    try:
        if conn.execute("SELECT count(*) FROM products").fetchone()[0] == 0:
            data = resources.files("edge").joinpath("data/demo-catalog.csv").read_bytes()
            with db.transaction(conn):
                report = catalog.import_products(conn, catalog.read_rows(data, "csv"), "csv", iso(utcnow()))
                ctx = make_context("demo", config.tz)
                lines = [{"sku": r[0], "qty": OPENING_QTY}
                         for r in conn.execute("SELECT sku FROM products ORDER BY sku")]
                stock.record_receipt(conn, ReceiptIn.model_validate({"lines": lines, "supplier": "演示供应商"}),
                                     ctx)
            print(f"demo catalog: {report.imported} products with opening stock", file=sys.stderr)
        return demo_users(conn)
    finally:
        conn.close()


def store_products(config: config_mod.Config) -> list[dict]:
    conn = db.open_store_db(config.db_path)
    try:
        return list(catalog.iter_products(conn))
    finally:
        conn.close()


# -- the pickup video -----------------------------------------------------------------------------

def _background():
    import numpy as np  # noqa: PLC0415

    width, height = VIDEO_SIZE
    x = np.linspace(150, 200, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 30, height, dtype=np.float32)[:, None]
    grey = np.clip(x + y, 0, 255).astype(np.uint8)
    import cv2  # noqa: PLC0415

    return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)


def _qr(text: str):
    import numpy as np  # noqa: PLC0415
    import qrcode  # noqa: PLC0415

    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=1, border=4)
    qr.add_data(text.encode("utf-8"))
    qr.make(fit=True)
    side = qr.modules_count + 8
    box = max(2, min(3, (VIDEO_SIZE[1] - 60) // side))  # 3 px modules: decoded at once, small JPEG frames
    qr.box_size = box
    return np.asarray(qr.make_image(fill_color="black", back_color="white").convert("L"), dtype=np.uint8).copy()


def write_pickup_video(path: Path, shots: list[tuple[str, str]], seconds_each: float = 1.2,
                       gap: float = 1.0) -> Path:
    """A video of the QR codes `shots` = [(caption, text)], each held `seconds_each`, with empty
    counter between them (so each shows as one scan). Written to a temp file, then renamed: a camera
    looping over `path` picks the new video up at its next loop."""
    import cv2  # noqa: PLC0415

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"MJPG"), VIDEO_FPS, VIDEO_SIZE)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write MJPG to {tmp}")
    bg = _background()
    cv2.putText(bg, "store-edge demo: pickup counter camera", (16, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.7,
                (60, 60, 60), 2)
    try:
        empty = max(1, round(gap * VIDEO_FPS))
        for _ in range(empty):
            writer.write(bg)
        for caption, text in shots:
            code = _qr(text)
            h, w = code.shape
            x0, y0 = (VIDEO_SIZE[0] - w) // 2, max(40, (VIDEO_SIZE[1] - h) // 2 + 10)
            for i in range(max(1, round(seconds_each * VIDEO_FPS))):
                frame = bg.copy()
                x = x0 + (i % 3) - 1
                frame[y0:y0 + h, x:x + w] = cv2.cvtColor(code, cv2.COLOR_GRAY2BGR)
                cv2.putText(frame, caption, (16, VIDEO_SIZE[1] - 16), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (40, 40, 40), 2)
                writer.write(frame)
            for _ in range(empty):
                writer.write(bg)
    finally:
        writer.release()
    tmp.replace(path)
    return path


# -- the servers ----------------------------------------------------------------------------------

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


# -- the demo -------------------------------------------------------------------------------------

@dataclasses.dataclass
class Order:
    order_id: str
    number: str
    token: str
    code: str
    lines: list
    created_at: float
    via: str                   # how the customer will collect it: serial, code or camera
    at_edge: bool = False
    picked_up: bool = False


class Demo:
    def __init__(self, config: config_mod.Config, seconds: float | None, out: Out):
        self.config = config
        self.seconds = seconds
        self.scale = (seconds / TIMELINE) if seconds else 1.0
        self.out = out
        self.rng = random.Random(SEED)
        self.demo_dir = config.data_dir / "demo"
        self.video = self.demo_dir / "pickups.avi"
        self.store_id = config.store.id
        self.orders: dict[str, Order] = {}
        self.sales = {"count": 0, "total_fen": 0, "by_method": {"cash": 0, "wechat": 0}}
        self.pickups: list[dict] = []
        self.refused_scans: dict[str, int] = {}
        self.restocks = 0
        self.order_refusals = 0
        self.link_states: list[tuple[float, str]] = []
        self.outage_started = self.outage_ended = None
        self.outage_active = False
        self.tasks: set[asyncio.Task] = set()
        self.sim_stop = asyncio.Event()
        self.errors: list[str] = []

    # timeline helpers
    def t(self, base_seconds: float) -> float:
        return base_seconds * self.scale

    async def sleep(self, seconds: float) -> bool:
        """Sleep, or return True at once when the simulation stops."""
        try:
            await asyncio.wait_for(self.sim_stop.wait(), max(0.0, seconds))
            return True
        except asyncio.TimeoutError:
            return False

    def spawn(self, coro, name: str) -> asyncio.Task:
        task = asyncio.create_task(self._guard(coro, name), name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def _guard(self, coro, name: str):
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 (one actor's failure is reported, the demo goes on)
            self.errors.append(f"{name}: {exc!r}")
            log.warning("demo task failed", extra={"kv": {"task": name, "error": repr(exc)}})

    # -- run ----------------------------------------------------------------------------------
    async def main(self, logins) -> int:
        config = self.config
        api_host = config.api.host
        local = "127.0.0.1" if api_host in ("0.0.0.0", "::", "") else api_host
        self.out.plain("store-edge demo")
        self.out.plain(f"  dashboard  http://{local}:{config.api.port}/ui/   (status page http://{local}:"
                       f"{config.api.port}/)")
        for name, role, password in logins:
            self.out.plain(f"  {role:8}   login: {name} / {password}")
        self.out.plain(f"  {'runs for ' + format(self.seconds, 'g') + ' s' if self.seconds else 'Ctrl-C stops'}; "
                       f"data in {config.data_dir}")
        self.demo_dir.mkdir(parents=True, exist_ok=True)

        stop_all = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._signals = 0

        def on_signal():
            self._signals += 1
            if self._signals > 1:
                os._exit(1)
            self.out("stopping (Ctrl-C again exits at once)")
            self.sim_stop.set()
            stop_all.set()

        def take_signals():
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, on_signal)
        take_signals()

        from hub.faultproxy import build_proxy_app  # noqa: PLC0415
        from hub.app import build_hub_app  # noqa: PLC0415
        from drivers.virtual_printer import VirtualPrinter  # noqa: PLC0415

        admin_token = "hub_demo_" + secrets.token_urlsafe(24)
        hub_dir = config.data_dir / "demo-hub"
        hub_dir.mkdir(parents=True, exist_ok=True)
        hub_runner, hub_url = await start_site(build_hub_app(hub_dir, admin_token=admin_token))
        proxy_app = build_proxy_app(hub_url, seed=SEED)
        proxy_runner, proxy_url = await start_site(proxy_app)
        vp = await VirtualPrinter(port=0, control_port=0, out_dir=config.data_dir / "virtual-printer").start()
        self.vp = vp
        master, slave = os.openpty()
        tty.setraw(slave)
        scanner_path = os.ttyname(slave)
        self.master = master
        session = aiohttp.ClientSession()
        edge_task = None
        edge_stop = asyncio.Event()
        try:
            self.hub = Client(session, hub_url + "/admin/v1", {"Authorization": f"Bearer {admin_token}"})
            self.proxy = Client(session, proxy_url + "/_proxy")
            registered = await self.hub.call("POST", "/stores", {"store_id": self.store_id, "name": config.store.name})
            token_file = self.demo_dir / "cloud-token"
            token_file.unlink(missing_ok=True)
            fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(registered["token"] + "\n")
            products = store_products(config)
            self.products = {p["sku"]: p for p in products if p["active"]}
            for chunk in range(0, len(products), 5000):
                await self.hub.call("POST", "/products", {"products": products[chunk:chunk + 5000]})
            self.hub_before = await self.hub.call("GET", f"/stores/{self.store_id}")
            await loop.run_in_executor(None, write_pickup_video, self.video, [])
            self.out(f"cloud hub {hub_url} (data {hub_dir}), fault proxy {proxy_url}/_proxy/")
            self.out(f"virtual printer 127.0.0.1:{vp.port}: receipts in {vp.out_dir}/ (txt, json, png); "
                     f"http://127.0.0.1:{vp.control_port}/receipts")
            self.out(f"serial scanner on {scanner_path}; camera on {self.video} (loop)")

            demo_config = self.demo_config(proxy_url, token_file, scanner_path, vp.port)
            from edge import app as edge_app  # noqa: PLC0415

            edge_task = asyncio.create_task(edge_app.serve(demo_config, stop=edge_stop), name="edge")
            self.edge = Client(session, f"http://{local}:{config.api.port}/api/v1", self.till_headers(config))
            await self.wait_edge(edge_task)
            take_signals()  # the daemon took SIGINT/SIGTERM for itself: the demo stops first, then the daemon
            self.out(f"store daemon up: store {self.store_id} linked to the hub through the proxy")
            self.spawn(self.watch_link(), "link")
            return await self.simulate(stop_all)
        finally:
            self.sim_stop.set()
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            edge_stop.set()
            if edge_task is not None:
                with contextlib.suppress(Exception):
                    await edge_task
            await session.close()
            await proxy_runner.cleanup()
            await hub_runner.cleanup()
            await vp.stop()
            os.close(master)
            os.close(slave)
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    def till_headers(self, config) -> dict:
        """Loopback API without tokens, as on a single PC; a till token when the config asks for tokens."""
        if not config.tokens_required:
            return {}
        from edge.store import api_tokens  # noqa: PLC0415

        conn = db.open_store_db(config.db_path)
        try:
            with db.transaction(conn):
                token = api_tokens.create(conn, "demo-till", iso(utcnow()))
        finally:
            conn.close()
        return {"Authorization": f"Bearer {token}"}

    def demo_config(self, proxy_url: str, token_file: Path, scanner_path: str, printer_port: int):
        from drivers.models import Camera, NetworkPrinter, SerialScanner  # noqa: PLC0415

        raw = self.config.raw
        cloud = config_mod.CloudSection(
            url=proxy_url, token=config_mod.SecretRef(file=str(token_file)), timeout_seconds=5.0,
            reconcile_minutes=0, retry_max_seconds=max(1.0, min(5.0, 8.0 * self.scale)),
            person_retry_seconds=max(1.0, min(30.0, 30.0 * self.scale)))
        printer = NetworkPrinter(name=PRINTER_NAME, type="network", host="127.0.0.1", port=printer_port)
        scanner = SerialScanner(name=SCANNER_NAME, type="serial", path=scanner_path, terminator="CR")
        camera = Camera(name=CAMERA_NAME, type="camera", source=str(self.video), loop=True, dedupe_seconds=2.0)
        raw = raw.model_copy(update={
            "cloud": cloud, "printers": [printer],
            "scanners": [s for s in raw.scanners if s.name != SCANNER_NAME] + [scanner],
            "cameras": [c for c in raw.cameras if c.name != CAMERA_NAME] + [camera]})
        secret = config_mod.read_secret(cloud.token, self.config.path.parent)
        return dataclasses.replace(self.config, raw=raw, cloud_token=secret)

    async def wait_edge(self, edge_task: asyncio.Task) -> None:
        deadline = time.monotonic() + 60
        while True:
            if edge_task.done():
                edge_task.result()  # raises what stopped it (port taken ...)
                raise RuntimeError("the store daemon stopped at start")
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, HttpError):
                await self.edge.call("GET", "/health", timeout=2)
                return
            if time.monotonic() > deadline:
                raise RuntimeError("the store daemon did not answer within 60 s")
            await asyncio.sleep(0.1)

    # -- the simulation ---------------------------------------------------------------------
    async def simulate(self, stop_all: asyncio.Event) -> int:
        await self.top_up()
        await self.until(self.edge_synced, 30, "opening stock uploaded to the hub")
        self.out("opening stock is at the hub: the mini-program can sell online")
        await self.consume_scans(register_only=True)
        self.spawn(self.consume_scans(), "counter")
        cycle = 0
        started = time.monotonic()
        while not self.sim_stop.is_set():
            await self.run_cycle(cycle)
            cycle += 1
            if self.seconds:
                break
        elapsed = time.monotonic() - started
        user_stopped = stop_all.is_set()
        self.sim_stop.set()
        for task in list(self.tasks):
            if task.get_name() != "link":
                task.cancel()
        await asyncio.gather(*[t for t in self.tasks if t.get_name() != "link"], return_exceptions=True)
        if self.outage_active:
            await self.end_outage()
        summary = await self.finish(elapsed, drain_seconds=30.0 if self.seconds else 10.0)
        return 0 if (user_stopped or summary["checks_passed"]) else 1

    async def run_cycle(self, cycle: int) -> None:
        length = self.t(TIMELINE)
        t0 = time.monotonic()
        self.out(f"-- timeline {'cycle ' + str(cycle + 1) + ' ' if not self.seconds else ''}of {length:g} s: "
                 f"outage from {self.t(OUTAGE[0]):g} s to {self.t(OUTAGE[1]):g} s")
        self.spawn(self.camera_orders(), "camera-orders")
        self.spawn(self.customers(t0 + length * ORDERS_UNTIL), "customers")
        self.spawn(self.tills(t0 + length), "tills")
        self.spawn(self.outage(t0), "outage")
        await self.sleep(t0 + length - time.monotonic())

    async def top_up(self) -> None:
        """Goods received for SKUs that earlier runs sold down (a fresh demo store has 40 of each)."""
        stock_now = await self.edge_stock()
        lines = [{"sku": sku, "qty": TOP_UP_TO - row[2]} for sku, row in stock_now.items()
                 if sku in self.products and row[2] < TOP_UP_BELOW]
        if lines:
            await self.edge.call("POST", "/receipts", {"lines": lines, "supplier": "演示供应商"}, key=True)
            self.out(f"goods received: {len(lines)} SKUs topped up to {TOP_UP_TO}")

    async def edge_stock(self) -> dict[str, tuple[int, int, int]]:
        out, after = {}, None
        while True:
            query = "/stock?limit=1000" + (f"&after={after}" if after else "")
            page = await self.edge.call("GET", query)
            for item in page["items"]:
                out[item["sku"]] = (item["on_hand"], item["reserved"], item["available"])
            after = page.get("next_after")
            if not after:
                return out

    async def edge_synced(self) -> bool:
        status = await self.edge.call("GET", "/sync/status")
        return status["queue"]["depth"] == 0 and status["link"]["state"] == "online"

    async def until(self, check, timeout: float, what: str) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, HttpError):
                if await check():
                    return True
            await asyncio.sleep(0.2)
        self.out(f"(gave up waiting for {what} after {timeout:g} s)")
        return False

    # customers ordering online at the hub
    def pick_lines(self, stock_now: dict | None = None) -> list[dict]:
        skus = list(self.products)
        if stock_now:
            skus = [s for s in skus if stock_now.get(s, (0, 0, 0))[2] > RESTOCK_BELOW] or skus
        chosen = self.rng.sample(skus, k=min(len(skus), self.rng.choice((1, 1, 2, 2, 3))))
        return [{"sku": sku, "qty": self.rng.choice((1, 1, 1, 2))} for sku in chosen]

    async def place_order(self, via: str) -> Order | None:
        body = {"kind": "pickup", "lines": self.pick_lines()}
        note = self.rng.choice(NOTES)
        if note:
            body["customer_note"] = note
        try:
            made = await self.hub.call("POST", f"/stores/{self.store_id}/orders", body)
        except HttpError as exc:
            self.order_refusals += 1
            why = exc.body.get("error") if isinstance(exc.body, dict) else exc
            self.out(f"online order refused by the cloud: {why}")
            return None
        order = Order(made["order_id"], made["number"], made["pickup_token"], made["pickup_code"], made["lines"],
                      time.monotonic(), via)
        self.orders[order.order_id] = order
        items = "、".join(f"{line['name']}×{line['qty']}" for line in made["lines"])
        self.out(f"online order {order.number} at the cloud: {items} (￥{made['total_fen'] / 100:.2f}; "
                 f"pickup code {order.code}; will collect by {via})")
        return order

    async def customers(self, until: float) -> None:
        while time.monotonic() < until:
            if await self.sleep(self.t(self.rng.uniform(4.0, 9.0))):
                return
            if time.monotonic() >= until:
                return
            via = self.rng.choice(("serial", "serial", "serial", "code"))
            order = await self.place_order(via)
            if order:
                self.spawn(self.order_life(order), f"order-{order.number}")

    async def camera_orders(self) -> None:
        """Orders whose customers show their QR code to the counter camera: the video is made of them."""
        made = []
        for _ in range(CAMERA_ORDERS):
            order = await self.place_order("camera")
            if order:
                made.append(order)
                self.spawn(self.order_life(order), f"order-{order.number}")
        if not made:
            return
        await self.until(lambda: self._all_ready(made), 30 * max(self.scale, 0.5), "camera orders ready")
        if self.sim_stop.is_set():
            return
        shots = [(f"order {o.number}", o.token) for o in made]
        await asyncio.get_running_loop().run_in_executor(None, write_pickup_video, self.video, shots)
        self.out(f"camera video now shows the pickup QR codes of {', '.join(o.number for o in made)} "
                 f"({self.video.stat().st_size // 1024} KiB)")

    async def _all_ready(self, orders: list[Order]) -> bool:
        for order in orders:
            found = await self.edge.call("GET", f"/orders/{order.order_id}", expect=None)
            if found[0] != 200 or found[1]["state"] not in ("ready", "picked_up"):
                return False
        return True

    async def order_life(self, order: Order) -> None:
        """The store's side of an online order: arrives, is prepared, and (serial/code) is collected."""
        while True:
            status, found = await self.edge.call("GET", f"/orders/{order.order_id}", expect=None)
            if status == 200:
                break
            if await self.sleep(0.2):
                return
        order.at_edge = True
        late = time.monotonic() - order.created_at
        self.out(f"order {order.number} arrived at the store after {late:.1f} s"
                 f"{' (short!)' if found.get('short') else ''}; ticket to the printer")
        staff = self.rng.choice(STAFF)
        if await self.sleep(self.t(self.rng.uniform(2.0, 5.0))):
            return
        await self.edge.call("POST", f"/orders/{order.order_id}/state", {"to": "accepted", "operator": staff}, key=True)
        if await self.sleep(self.t(self.rng.uniform(4.0, 10.0))):
            return
        await self.edge.call("POST", f"/orders/{order.order_id}/state", {"to": "ready", "operator": staff}, key=True)
        self.out(f"order {order.number} packed and ready by {staff}")
        if order.via == "camera":
            return
        if await self.sleep(self.t(self.rng.uniform(6.0, 24.0))):
            return
        if order.via == "serial":
            self.out(f"customer of {order.number} shows the QR code: scanned on the serial scanner")
            os.write(self.master, order.token.encode("ascii") + b"\r")
        else:
            self.out(f"customer of {order.number} reads out pickup code {order.code}: typed at the till")
            await self.edge.call("POST", "/scans", {"text": order.code, "typed": True}, key=True)

    # the counter: scans in, hand-overs out (as the cashier screen's confirm)
    async def consume_scans(self, register_only: bool = False) -> None:
        if register_only:
            await self.edge.call("GET", f"/scans?consumer={CONSUMER}")
            return
        while not self.sim_stop.is_set():
            page = await self.edge.call("GET", f"/scans?consumer={CONSUMER}&wait=1", timeout=15)
            for scan in page["items"]:
                if scan["kind"] == "pickup_token":
                    await self.hand_over({"token": scan["text"]}, scan)
                elif scan["kind"] == "pickup_code":
                    await self.hand_over({"code": scan["text"]}, scan)
                await self.edge.call("POST", "/scans/ack", {"consumer": CONSUMER, "seq": scan["seq"]}, key=True)

    async def hand_over(self, ref: dict, scan: dict) -> None:
        source = {"camera": "camera", "serial": "serial scanner"}.get(scan["source"], "typed code")
        status, found = await self.edge.call("POST", "/pickups/lookup", ref, expect=None)
        if status != 200:
            reason = (found or {}).get("error", {}).get("code", str(status))
            self.refused_scans[reason] = self.refused_scans.get(reason, 0) + 1
            if not (reason == "already_used" and scan["source"] == "camera"):  # the looping video shows it again
                self.out(f"{source}: refused ({reason}): {(found or {}).get('error', {}).get('message', '')}")
            return
        done = await self.edge.call("POST", "/pickups", {**ref, "operator": OPERATOR}, key=True)
        pickup, order = done["pickup"], done["order"]
        if order["id"] in self.orders:
            self.orders[order["id"]].picked_up = True
        self.pickups.append({"order_id": order["id"], "number": order["number"], "via": scan["source"],
                             "method": pickup["method"], "provisional": pickup["provisional"]})
        self.out(f"核销 {order['number']} by {source}: handed over by {OPERATOR}"
                 f"{' — PROVISIONAL (cloud down), reconciled on sync' if pickup['provisional'] else ''}")

    # the tills
    async def tills(self, until: float) -> None:
        till = 0
        while time.monotonic() < until:
            if await self.sleep(self.t(self.rng.uniform(5.0, 11.0))):
                return
            stock_now = await self.edge_stock()
            low = [s for s in self.products if stock_now.get(s, (0, 0, 0))[2] <= RESTOCK_BELOW]
            if low:
                await self.edge.call("POST", "/receipts", {"lines": [{"sku": s, "qty": 30} for s in low],
                                                           "supplier": "演示供应商"}, key=True)
                self.restocks += 1
                self.out(f"goods received: {', '.join(low)} (+30 each)")
            lines = self.pick_lines(stock_now)
            total = sum(self.products[line["sku"]]["price_fen"] * line["qty"] for line in lines)
            method = self.rng.choice(("cash", "wechat", "wechat"))
            paid = total if method == "wechat" else int(math.ceil(total / 1000.0) * 1000) or 1000
            till = till % 2 + 1
            sale = await self.edge.call("POST", "/sales", {
                "lines": [{"sku": line["sku"], "qty": line["qty"]} for line in lines],
                "payments": [{"method": method, "amount_fen": paid}], "cashier": OPERATOR}, key=True)
            sale = sale.get("sale", sale)
            self.sales["count"] += 1
            self.sales["total_fen"] += sale["total_fen"]
            self.sales["by_method"][method] += sale["total_fen"]
            change = f", change ￥{(paid - sale['total_fen']) / 100:.2f}" if method == "cash" else ""
            self.out(f"till {till}: sale ￥{sale['total_fen'] / 100:.2f} paid by "
                     f"{'cash' if method == 'cash' else 'WeChat'}{change}")

    # the outage
    async def outage(self, t0: float) -> None:
        if await self.sleep(t0 + self.t(OUTAGE[0]) - time.monotonic()):
            return
        await self.proxy.call("PUT", "/down")
        self.outage_active = True
        self.outage_started = time.monotonic()
        self.out(f"!! network outage: the cloud is unreachable (connections refused) for "
                 f"{self.t(OUTAGE[1] - OUTAGE[0]):g} s; the store carries on offline")
        if await self.sleep(t0 + self.t(BLACKHOLE_FROM) - time.monotonic()):
            return
        hang = self.t(OUTAGE[1] - BLACKHOLE_FROM) + 1.0
        await self.proxy.call("PUT", "/faults", {"seed": SEED, "rules": [{"match": "/", "fault": "stall",
                                                                           "seconds": hang}]})
        await self.proxy.call("DELETE", "/down")
        self.out("!! the link now blackholes: requests hang without an answer")
        if await self.sleep(t0 + self.t(OUTAGE[1]) - time.monotonic()):
            return
        await self.end_outage()

    async def end_outage(self) -> None:
        await self.proxy.call("DELETE", "/faults")
        await self.proxy.call("DELETE", "/down")
        self.outage_active = False
        self.outage_ended = time.monotonic()
        self.out("!! network back: the store uploads what it did offline and pulls the orders it missed")

    async def watch_link(self) -> None:
        last = None
        while True:
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, HttpError):
                status = await self.edge.call("GET", "/sync/status", timeout=3)
                state = status["link"]["state"]
                if state != last:
                    self.link_states.append((time.monotonic(), state))
                    if last is not None:
                        self.out(f"cloud link: {last} -> {state} (queue {status['queue']['depth']} events waiting)")
                    last = state
            await asyncio.sleep(0.25)

    # -- the end ------------------------------------------------------------------------------
    async def finish(self, elapsed: float, drain_seconds: float) -> dict:
        self.out("the simulation ends: waiting for the store to catch up with the cloud")
        created = list(self.orders.values())

        async def caught_up() -> bool:
            for order in created:
                if not order.at_edge:
                    status, _ = await self.edge.call("GET", f"/orders/{order.order_id}", expect=None)
                    if status != 200:
                        return False
                    order.at_edge = True
            if len(self.printed_orders() & {o.order_id for o in created}) < len(created):
                return False
            return await self.edge_synced()
        # stable: synced twice in a row, half a second apart (an order's print.result comes after its ticket)
        drained = await self.until(caught_up, drain_seconds, "the upload queue to drain")
        if drained:
            await asyncio.sleep(0.5)
            drained = await self.until(caught_up, drain_seconds / 2, "the upload queue to drain")

        status = await self.edge.call("GET", "/sync/status")
        hub_after = await self.hub.call("GET", f"/stores/{self.store_id}")
        hub_bal = {r["sku"]: (r["on_hand"], r["reserved"]) for r in hub_after["balances"]}
        edge_bal = {sku: row[:2] for sku, row in (await self.edge_stock()).items()}
        differences = [{"sku": sku, "hub": list(hub_bal.get(sku, (0, 0))), "edge": list(edge_bal.get(sku, (0, 0)))}
                       for sku in sorted(set(hub_bal) | set(edge_bal))
                       if hub_bal.get(sku, (0, 0)) != edge_bal.get(sku, (0, 0))]
        moves, mismatches = self.ledger_verify()
        at_cloud = 0  # hand-overs the hub knows as picked up (provisional ones included, once uploaded)
        for pickup in self.pickups:
            status_code, hub_order = await self.hub.call("GET", f"/orders/{pickup['order_id']}", expect=None)
            at_cloud += status_code == 200 and hub_order["state"] == "picked_up"
        printed = self.printed_orders() & {o.order_id for o in created}
        went_down = any(state != "online" for at, state in self.link_states
                        if self.outage_started and at >= self.outage_started)
        came_back = bool(self.link_states) and self.link_states[-1][1] == "online" and self.outage_ended is not None
        events = hub_after["events"]
        before = self.hub_before.get("events", {})
        dead = status["queue"]["dead_letters"]
        rejected = events.get("rejected", 0) - before.get("rejected", 0)
        summary = {
            "seconds": self.seconds, "elapsed_s": round(elapsed, 1),
            "orders_created": len(created), "orders_printed": len(printed),
            "orders_refused_by_cloud": self.order_refusals,
            "pickups_verified": len(self.pickups),
            "pickups_provisional": sum(1 for p in self.pickups if p["provisional"]),
            "pickups_at_cloud": at_cloud,
            "pickups_by": {via: sum(1 for p in self.pickups if p["via"] == via)
                           for via in ("serial", "camera", "typed")},
            "scans_refused": self.refused_scans,
            "sales": self.sales["count"], "sales_fen": self.sales["total_fen"],
            "sales_by_method_fen": self.sales["by_method"], "restocks": self.restocks,
            "receipts_printed": len(self.vp.receipts()),
            "events_synced": events.get("applied", 0) - before.get("applied", 0),
            "events_rejected": rejected, "dead_letters": dead, "queue_depth": status["queue"]["depth"],
            "queue_drained": drained and status["queue"]["depth"] == 0,
            "outage": {"seconds": round((self.outage_ended or 0) - (self.outage_started or 0), 1)
                       if self.outage_started else 0, "link_went_down": went_down, "link_came_back": came_back},
            "outage_survived": bool(went_down and came_back and dead == 0 and rejected == 0),
            "ledger_moves": moves, "ledger_clean": not mismatches, "ledger_mismatches": [str(m) for m in mismatches],
            "balances_equal": not differences, "balance_differences": differences[:20],
            "all_orders_printed": len(printed) == len(created),
            "errors": self.errors[:10],
        }
        summary["checks_passed"] = all((summary["outage_survived"], summary["ledger_clean"], summary["balances_equal"],
                                        summary["queue_drained"], summary["all_orders_printed"],
                                        summary["pickups_at_cloud"] == summary["pickups_verified"]))
        self.print_summary(summary)
        return summary

    def printed_orders(self) -> set[str]:
        """Orders whose picking ticket came out of the virtual printer (its QR says order:ID)."""
        return {qr["data"].removeprefix("order:") for r in self.vp.receipts() for qr in r.qr
                if str(qr.get("data", "")).startswith("order:")}

    def ledger_verify(self):
        conn = db.connect(self.config.db_path, readonly=True)
        try:
            conn.execute("BEGIN")
            result = stock.verify(conn)
            conn.execute("ROLLBACK")
            return result
        finally:
            conn.close()

    def print_summary(self, s: dict) -> None:
        yes = lambda ok: "yes" if ok else "NO"  # noqa: E731
        p = self.out.plain
        p()
        p("== demo summary ==")
        p(f"  online orders      {s['orders_created']} created at the cloud, {s['orders_printed']} tickets printed")
        p(f"  pickups verified   {s['pickups_verified']} ({s['pickups_provisional']} provisional, offline); "
          f"by serial scanner {s['pickups_by']['serial']}, camera {s['pickups_by']['camera']}, "
          f"typed code {s['pickups_by']['typed']}; {s['pickups_at_cloud']} picked up at the cloud")
        p(f"  till sales         {s['sales']}, ￥{s['sales_fen'] / 100:.2f} (cash ￥"
          f"{s['sales_by_method_fen']['cash'] / 100:.2f}, WeChat ￥{s['sales_by_method_fen']['wechat'] / 100:.2f})")
        p(f"  receipts printed   {s['receipts_printed']} (in {self.vp.out_dir}/)")
        p(f"  events synced      {s['events_synced']} (rejected {s['events_rejected']}, dead letters "
          f"{s['dead_letters']}, still queued {s['queue_depth']})")
        p(f"  outage survived    {yes(s['outage_survived'])} (link down {yes(s['outage']['link_went_down'])}, "
          f"back {yes(s['outage']['link_came_back'])}, {s['outage']['seconds']} s)")
        p(f"  ledger verify      {'clean' if s['ledger_clean'] else 'FAILED'} ({s['ledger_moves']} moves)")
        p(f"  hub = edge stock   {yes(s['balances_equal'])}"
          + ("" if s["balances_equal"] else f" {s['balance_differences']}"))
        p(f"  all checks passed  {yes(s['checks_passed'])}")
        print(json.dumps(s, ensure_ascii=False, separators=(",", ":")), flush=True)


# -- entry points ---------------------------------------------------------------------------------

def run(config_path: str, seconds: float | None) -> int:
    """`store-edge demo [--for SECONDS]`: exit code 0 when every check passed (or stopped by Ctrl-C)."""
    from edge.ops.config_file import load_config

    if seconds is not None and not seconds > 0:
        print("--for must be a positive number of seconds", file=sys.stderr)
        return 2
    config = load_config(config_path)
    level = config.log.level if config.log.level in ("debug", "error") else "warning"
    log_mod.setup(level)  # the demo narrates on stdout; the daemon's info lines would drown it
    try:
        logins = seed_store(config)
    except (OSError, sqlite3.Error) as exc:
        print(f"error: cannot prepare the demo store in {config.data_dir}: {exc}", file=sys.stderr)
        return 1
    demo = Demo(config, seconds, Out())
    try:
        return asyncio.run(demo.main(logins))
    except (OSError, db.SchemaTooNew, RuntimeError) as exc:  # port taken, folder not writable ...
        logging.getLogger("edge").error("cannot start the demo", extra={"kv": {"error": str(exc)}})
        print(f"error: {exc}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    from edge.ops.config_file import default_config

    parser = argparse.ArgumentParser(prog="python -m edge.ops.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=default_config())
    parser.add_argument("--for", dest="seconds", type=float, default=None, metavar="SECONDS",
                        help="run a timeline of this many seconds, print a summary and exit (1 if a check failed)")
    args = parser.parse_args(argv)
    return run(args.config, args.seconds)


if __name__ == "__main__":
    raise SystemExit(main())


DEMO_USERS = (("manager", "张店长", "manager", "manager-demo"), ("cashier", "王芳", "cashier", "cashier-demo"))


def demo_users(conn) -> list[tuple[str, str, str]]:
    """The demo's two accounts, created on the first run; the logins that still work (a password may
    have been changed since)."""
    from edge.store import users  # noqa: PLC0415

    if not conn.execute("SELECT count(*) FROM users").fetchone()[0]:
        with db.transaction(conn):
            for name, display, role, password in DEMO_USERS:
                users.add_user(conn, name, display, role, password, iso(utcnow()))
    out = []
    for name, _, role, password in DEMO_USERS:
        row = conn.execute("SELECT password_hash FROM users WHERE name = ? AND active = 1", (name,)).fetchone()
        if row and users.check_password(password, row[0]):
            out.append((name, role, password))
    return out
