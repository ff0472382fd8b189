"""Shared fixtures: a temporary store with a small Chinese catalog, and an HTTP client for its app.

`ram_tmp_path`: a tmp_path on the RAM disk, for the tests that commit to their stores thousands of times.

The aiohttp test client is started by hand (aiohttp.test_utils.TestServer/TestClient) rather than
through aiohttp's pytest plugin, so pytest-asyncio (asyncio_mode=auto) alone owns the event loop.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from edge.app import build_app
from edge.core import config as config_mod
from edge.core.context import WriteContext
from edge.core.context import make as make_context
from edge.core.schemas import ReceiptIn
from edge.store import catalog, db, stock, users
from protocol.barcodes import gtin_check_digit
from protocol.changes import ProductIn
from tests.hub_database import HUB_DB

RAM_DISK = Path("/dev/shm")
RAM_DISK_ROOM = 2 << 30  # a test writes a few MiB; leave the machine its memory


def ram_disk_folder() -> Path | None:
    """This user's folder on the RAM disk (tmpfs), or None when there is none with room."""
    try:
        if not RAM_DISK.is_dir() or shutil.disk_usage(RAM_DISK).free < RAM_DISK_ROOM:
            return None
        folder = RAM_DISK / f"store-edge-tests-{os.getuid()}"
        folder.mkdir(mode=0o700, exist_ok=True)
        return folder if folder.stat().st_uid == os.getuid() else None
    except OSError:
        return None


def ram_tmp_dir(prefix: str) -> Path:
    """A new folder on the RAM disk (else in the usual temporary folder); the caller removes it."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir=ram_disk_folder()))


@pytest.fixture
def ram_tmp_path(request, tmp_path):
    """tmp_path, but on the RAM disk when there is one with room, for the tests whose stores commit
    thousands of times: the store commits with synchronous = FULL, an fsync a write, which on a busy
    disk costs more than the test itself (the sync model: 78 s on disk, 35 s here, back to back). No test
    cuts the power, and a SIGKILLed or SIGSTOPped process leaves its writes in the page cache either
    way, so nothing a test proves rests on the fsync. Not for camera videos: a source under /dev/ is a
    device (drivers/camera.py). Removed after a test that passed, kept (and named) after a failure."""
    if ram_disk_folder() is None:
        yield tmp_path
        return
    path = ram_tmp_dir(f"{request.node.name[:40]}-")
    failed = request.session.testsfailed
    yield path
    if request.session.testsfailed == failed:
        shutil.rmtree(path, ignore_errors=True)
    else:
        print(f"\n{request.node.nodeid}: its files are kept in {path}")


@pytest.fixture(autouse=True, scope="session")
def cheap_password_hashes():
    """The production scrypt cost takes a second of a busy test machine per hash; tests that are not
    about the cost hash cheaply (tests/test_ui_security.py checks the real cost). For the whole session,
    so that the users of module-scoped stores and stacks (tests/browser.py) are made cheaply too: the
    cost is written into each hash, so their daemons then check every login cheaply."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(users, "SCRYPT", {"n": 2**10, "r": 8, "p": 1})
        yield


def ean13(body12: str) -> str:
    assert len(body12) == 12 and body12.isdigit()
    return body12 + str(gtin_check_digit(body12))


# SKU -> (name, price in fen, unit, category, low-stock threshold, barcodes, opening stock)
CATALOG = {
    "DRK-001": ("农夫山泉 饮用天然水 550ml", 200, "瓶", "饮料", 12, [ean13("692123450000")], 50),
    "DRK-002": ("可口可乐 330ml 罐装", 350, "罐", "饮料", 12, [ean13("692123453701")], 30),
    "SNK-001": ("乐事 薯片 原味 70g", 750, "袋", "零食", 5, [ean13("690123456789"), "IN-SNK-001"], 20),
    "SNK-002": ("奥利奥 夹心饼干 97g", 890, "盒", "零食", 3, [ean13("690987654321")], 2),
    "DAI-001": ("伊利 纯牛奶 250ml", 350, "盒", "乳品", 10, [ean13("692123461103")], 40),
    "HOM-001": ("洁柔 抽纸 3包装", 1590, "提", "日用", 0, [ean13("697111122223")], 0),
}
BARCODE = {sku: spec[5][0] for sku, spec in CATALOG.items()}
PRICE = {sku: spec[1] for sku, spec in CATALOG.items()}
OPENING = {sku: spec[6] for sku, spec in CATALOG.items()}
SEED = WriteContext(device="seed", now="2026-01-01T00:00:00.000Z", day="2026-01-01")


def write_config(tmp_path: Path, api: str = "") -> Path:
    path = tmp_path / "config.toml"
    path.write_text('[store]\nid = "test-store"\nname = "测试门店"\ndata_dir = "var"\n' + api, encoding="utf-8")
    return path


def seed(db_path: Path) -> None:
    conn = db.open_store_db(db_path)
    try:
        with db.transaction(conn):
            for sku, (name, price, unit, category, low, codes, _) in CATALOG.items():
                catalog.upsert_product(conn, ProductIn(sku=sku, name=name, price_fen=price, unit=unit,
                                                       category=category, low_stock=low, barcodes=codes),
                                       SEED.now)
            stock.record_receipt(conn, ReceiptIn.model_validate(
                {"lines": [{"sku": sku, "qty": qty} for sku, qty in OPENING.items() if qty],
                 "supplier": "开业进货"}), SEED)
    finally:
        conn.close()


def ledger_mismatches(db_path: Path) -> list:
    conn = db.connect(db_path, readonly=True)
    try:
        return stock.verify(conn)[1]
    finally:
        conn.close()


def dump(db_path: Path) -> str:
    """The whole database as SQL text, from a separate connection (sees committed data only)."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()


def query(db_path: Path, sql: str, *args) -> list[tuple]:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def local_context(config) -> WriteContext:
    return make_context("local", config.tz)


@pytest.fixture
def config(tmp_path):
    cfg = config_mod.load(write_config(tmp_path))
    seed(cfg.db_path)
    return cfg


@pytest.fixture
def db_path(config) -> Path:
    return config.db_path


async def start_client(config) -> TestClient:
    client = TestClient(TestServer(build_app(config)))
    await client.start_server()
    return client


@pytest.fixture
async def client(config):
    """A client of the running app; after the test, the ledger must still add up."""
    client = await start_client(config)
    try:
        yield client
    finally:
        await client.close()
    assert ledger_mismatches(config.db_path) == []


_KEYS = iter(range(1, 10**9))


def new_key() -> str:
    return f"test-key-{next(_KEYS)}"


class Api:
    """Small helpers over the client: writes carry a fresh Idempotency-Key unless given one."""

    def __init__(self, client: TestClient, headers: dict | None = None):
        self.client = client
        self.headers = headers or {}

    async def post(self, path: str, body, key: str | None = "auto", headers: dict | None = None):
        hdrs = dict(self.headers)
        if key == "auto":
            key = new_key()
        if key is not None:
            hdrs["Idempotency-Key"] = key
        hdrs.update(headers or {})
        resp = await self.client.post("/api/v1" + path, json=body, headers=hdrs)
        return resp.status, await resp.json(), resp

    async def get(self, path: str, params=None):
        resp = await self.client.get("/api/v1" + path, params=params, headers=self.headers)
        return resp.status, await resp.json()

    async def ok(self, path: str, body, status: int = 201):
        code, data, _ = await self.post(path, body)
        assert code == status, data
        return data


@pytest.fixture
def api(client) -> Api:
    return Api(client)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium through Playwright, one per browser test module (tests/browser.py)."""
    from tests.browser import chromium  # noqa: PLC0415 (only the browser modules need Playwright)

    with chromium() as b:
        yield b


@pytest.fixture(scope="session")
def postgres_server():
    """One real PostgreSQL server for the session (tests/postgres.py); stopped and removed at its end.
    Not installed is a failure, not a skip: `make test` (and so CI) installs it."""
    from tests.postgres import PostgresMissing, PostgresServer, sweep_orphans  # noqa: PLC0415 (only these tests)

    try:
        sweep_orphans()
        server = PostgresServer()
    except PostgresMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server, request) -> str:
    """A fresh empty database for this test, dropped after it: its postgresql:// URL."""
    name = postgres_server.create_database(request.node.originalname)
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def hub_db(request) -> str | None:
    """The hub's database for a hub test, each test run on both: None (SQLite in the hub's data folder,
    the default) or the URL of a fresh PostgreSQL database. A test marked `sqlite_only` checks what only
    SQLite has (its file, its migrations) and is skipped on PostgreSQL."""
    if request.param == "sqlite":
        return None
    marker = request.node.get_closest_marker("sqlite_only")
    if marker is not None:
        pytest.skip(f"SQLite's own: {marker.args[0] if marker.args else 'the hub.db file'}")
    return request.getfixturevalue("postgres_url")




@pytest.fixture
def hub_database(hub_db):
    """Hubs a test starts without naming a database go to this test's (hub_db: SQLite, then PostgreSQL)."""
    HUB_DB["url"] = hub_db
    yield
    HUB_DB["url"] = None
