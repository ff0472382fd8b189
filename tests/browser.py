"""Harness for the dashboard's browser tests: real processes on loopback, and headless Chromium.

- `Stack`: the reference hub (`store-edge hub`), the virtual printer (`store-edge virtual-printer`, with
  its HTTP control API) and the daemon (`store-edge run`), linked the way a store is set up: the
  daemon's `[cloud]` points at the hub with a token file, one network printer is the virtual printer,
  the catalog is tests.conftest's (the hub's copy lacks HOM-001, so a sale of it is a dead letter), and
  a cashier and a manager exist before the first start.
- `launch_chromium`: Debian's Chromium (/usr/bin/chromium) driven by Playwright; when either is
  missing the tests FAIL with what to install (the test set-up, `make test`, installs them).
- `artifacts_dir`, `shoot`: screenshots at 1366x768 (or a phone's 390x844), checked to be real PNGs of that size.

Every wait polls observable state with a deadline; none is a fixed sleep.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from edge.core.clock import iso, utcnow
from edge.store import db, users
from tests.conftest import CATALOG, seed
from tests.helpers_daemon import REPO, Daemon, Hub, VirtualPrinter, request, wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}  # a phone held upright (iPhone 12-15 in CSS pixels)
STORE_ID = "ui-store"
ADMIN_TOKEN = "hub-admin-" + "5" * 24
LOCAL_ONLY = "HOM-001"  # in the store's catalog, not in the chain's: a sale of it is rejected by the hub
USERS = {"cashier": ("xiaowang", "王芳", "cashier-pass-1"), "manager": ("boss", "李店长", "manager-pass-1")}


# -- artifacts -------------------------------------------------------------------------------------

def artifacts_dir() -> Path:
    """$STORE_EDGE_ARTIFACTS, else test-artifacts/screenshots/ in the repository."""
    env = os.environ.get("STORE_EDGE_ARTIFACTS")
    path = Path(env) if env else REPO / "test-artifacts" / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", \
        f"{path} is not a real PNG ({len(data)} bytes)"
    return struct.unpack(">II", data[16:24])


def shoot(page, name: str, viewport: dict = VIEWPORT) -> Path:
    """A screenshot of the page as it is shown in its viewport (1366x768 unless the test set a phone's),
    saved as NAME.png in the artifacts folder."""
    path = artifacts_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    assert png_size(path) == (viewport["width"], viewport["height"]), (path, png_size(path))
    return path


# -- the browser -----------------------------------------------------------------------------------

def launch_chromium(playwright):
    """Debian's Chromium, headless, a new empty profile (Playwright's own temporary one)."""
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail(f"Chromium is not installed ({CHROMIUM}): the browser tests need Debian's chromium package "
                    "(`make test` installs it: apt-get install chromium)", pytrace=False)
    try:
        return playwright.chromium.launch(executable_path=CHROMIUM if Path(CHROMIUM).exists()
                                          else shutil.which("chromium"), headless=True, args=CHROMIUM_ARGS,
                                          timeout=30_000)
    except Exception as exc:  # noqa: BLE001 (the message says what failed)
        pytest.fail(f"Chromium did not start under Playwright: {exc}", pytrace=False)


def start_playwright():
    try:
        from playwright.sync_api import sync_playwright  # noqa: PLC0415
    except ImportError:
        pytest.fail("playwright is not installed in this environment: the browser tests need it "
                    "(pip install playwright; the browser itself is Debian's chromium)", pytrace=False)
    return sync_playwright().start()


@contextlib.contextmanager
def chromium():
    """Playwright and one Chromium, for a test module's `browser` fixture."""
    playwright = start_playwright()
    try:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()
    finally:
        playwright.stop()


def open_page(browser, base: str, viewport: dict = VIEWPORT, timeout_ms: int = 10_000):
    """(context, page): a new context (no cookies) in Chinese at `viewport`; the page's JavaScript errors
    are collected in page.js_errors (for the test to fail on)."""
    from playwright.sync_api import expect  # noqa: PLC0415

    expect.set_options(timeout=timeout_ms)
    context = browser.new_context(viewport=viewport, locale="zh-CN", base_url=base, accept_downloads=True)
    context.set_default_timeout(timeout_ms)
    page = context.new_page()
    page.js_errors = []
    page.on("pageerror", lambda exc: page.js_errors.append(f"uncaught: {exc}"))
    # "Failed to load resource" is how Chromium logs any 4xx answer (the 403 and 422 pages are expected)
    page.on("console", lambda msg: msg.type == "error" and "Failed to load resource" not in msg.text
            and page.js_errors.append(f"console: {msg.text}"))
    return context, page


@contextlib.contextmanager
def checked_page(browser, base: str, viewport: dict = VIEWPORT, timeout_ms: int = 10_000):
    """A page of open_page; on leaving, its context is closed and its JavaScript errors fail the test."""
    context, page = open_page(browser, base, viewport, timeout_ms)
    try:
        yield page
    finally:
        errors = list(page.js_errors)
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@contextlib.contextmanager
def running_stack(root: Path, prepare=None, **options):
    """A started Stack (Stack.start's `prepare`; `options` for Stack, e.g. store_config), stopped after."""
    s = Stack(root, **options)
    try:
        s.start(prepare)
        yield s
    finally:
        s.stop()


# -- the processes ---------------------------------------------------------------------------------

class ChainHub(Hub):
    """The reference hub, and the chain's side of it: products and online orders for this store."""

    def __init__(self, root: Path):
        super().__init__(root, ADMIN_TOKEN)

    def add_products(self, skus) -> None:
        self.admin_ok("POST", "/products", {"products": [
            {"sku": sku, "name": spec[0], "price_fen": spec[1], "unit": spec[2], "category": spec[3],
             "low_stock": spec[4], "barcodes": spec[5]} for sku, spec in CATALOG.items() if sku in skus]})

    def new_order(self, lines: list[dict], note: str = "到店自提", phone: str | None = None) -> dict:
        """An online pickup order for the store; the answer carries order_id, number, pickup_code/token."""
        return self.admin_ok("POST", f"/stores/{STORE_ID}/orders", {"kind": "pickup", "lines": lines,
                                                                     "customer_note": note,
                                                                     **({"customer_phone": phone} if phone else {})})


class Stack:
    """Hub, virtual printer and daemon, linked; users and catalog in place before the daemon starts."""

    def __init__(self, root: Path, store_config: str = ""):
        self.root = root
        self.store_config = store_config  # more keys of the daemon's [store] (time zone, day_cutoff)
        self.hub = ChainHub(root)
        self.printer = VirtualPrinter(root)
        self.data_dir = root / "edge"
        self.daemon: Daemon | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.daemon.port}"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "store.db"

    def start(self, prepare=None) -> None:
        """`prepare(conn)`, when given, writes to the store (its own transactions, after the catalog and the
        users) before the daemon starts: history on earlier business days, say."""
        self.hub.start("--log-level", "warning")
        token = self.hub.admin_ok("POST", "/stores", {"store_id": STORE_ID, "name": "界面测试门店"})["token"]
        (self.root / "cloud-token").write_text(token + "\n", encoding="utf-8")
        (self.root / "cloud-token").chmod(0o600)
        self.hub.add_products([sku for sku in CATALOG if sku != LOCAL_ONLY])
        self.printer.start("--log-level", "warning")
        seed(self.db_path)
        conn = db.open_store_db(self.db_path)
        try:
            with db.transaction(conn):
                for role, (name, display, password) in USERS.items():
                    users.add_user(conn, name, display, role, users.new_password(password), iso(utcnow()))
            if prepare is not None:
                prepare(conn)
        finally:
            conn.close()
        extra = (f'[cloud]\nurl = "{self.hub.url}"\ntoken = {{ file = "cloud-token" }}\ntimeout_seconds = 5\n'
                 'reconcile_minutes = 0\nretry_max_seconds = 1\nperson_retry_seconds = 1\n\n'
                 '[printing]\nstatus_poll_seconds = 0.2\nstatus_ticket_at_start = false\n\n'
                 f'[[printers]]\nname = "counter"\ntype = "network"\nhost = "127.0.0.1"\n'
                 f'port = {self.printer.port}\n')
        self.daemon = Daemon(self.root / "config.toml", self.data_dir, self.root / "daemon.log",
                             store_id=STORE_ID, store_name="好邻居便利店 五道口店", extra_config=extra,
                             store_config=self.store_config)
        self.daemon.start()
        # the store's opening stock at the cloud before a test sells online (the hub refuses an order for
        # stock it has not heard of)
        self.wait_synced()

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop_quietly()
        self.printer.stop()
        self.hub.stop()

    def logs(self) -> str:
        return "\n".join((self.daemon.log_tail() if self.daemon else "", self.hub.tail(), self.printer.tail()))

    # -- the daemon's API, for setting up and checking (the tests act through the browser) -------
    def api(self, method: str, path: str, body=None, key: str | None = None) -> tuple[int, object]:
        headers = {"Idempotency-Key": key} if key else None
        status, data, _ = request(self.daemon.port, method, "/api/v1" + path, body, headers=headers, timeout=15)
        return status, data

    def api_ok(self, method: str, path: str, body=None, key: str | None = None):
        status, data = self.api(method, path, body, key)
        assert status in (200, 201), (method, path, status, data)
        return data

    def wait_order(self, order_id: str, timeout: float = 10.0) -> dict:
        def arrived():
            status, body = self.api("GET", f"/orders/{order_id}")
            return body if status == 200 else None
        return wait_for(arrived, timeout, f"order {order_id} at the edge", self.logs)

    def wait_synced(self, timeout: float = 15.0) -> None:
        wait_for(lambda: self.api_ok("GET", "/sync/status")["queue"]["depth"] == 0, timeout,
                   "the sync queue to drain", self.logs)

    def route_exists(self, path: str) -> bool:
        """A dashboard page is registered: without a session it redirects to the login (404 if it is not there)."""
        req = urllib.request.Request(self.base + path, method="GET")

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None
        try:
            with urllib.request.build_opener(NoRedirect).open(req, timeout=10) as resp:
                return resp.status != 404
        except urllib.error.HTTPError as exc:
            return exc.code != 404
