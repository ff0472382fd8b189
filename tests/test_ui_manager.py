"""The manager's pages: 概览, 订单, 库存 — roles, live fragments, forms (validation, audit, idempotency)."""

from __future__ import annotations

import re

import pytest

from edge.core.context import make as make_context
from edge.store import db, users
from edge.ui.web import TEXT
from sync.changes import apply_page
from tests.conftest import BARCODE, Api, dump, query, start_client

PASSWORD = "secret-pass-1"


def add_users(db_path) -> None:
    conn = db.open_store_db(db_path)
    try:
        with db.transaction(conn):
            users.add_user(conn, "boss", "王店长", "manager", users.new_password(PASSWORD), "2026-01-01T00:00:00.000Z")
            users.add_user(conn, "till", "李收银", "cashier", users.new_password(PASSWORD), "2026-01-01T00:00:00.000Z")
    finally:
        conn.close()


def feed_order(config, order_id="o-1", number="A101", lines=None) -> None:
    """An online order from the cloud, received now (through the sync inbox, as in production)."""
    ctx = make_context("cloud", config.tz)
    lines = lines or [{"sku": "DRK-001", "name": "农夫山泉", "qty": 2, "price_fen": 200},
                      {"sku": "SNK-001", "name": "乐事薯片", "qty": 1, "price_fen": 650}]
    conn = db.open_store_db(config.db_path)
    try:
        cursor = conn.execute("SELECT coalesce(max(cursor), 0) FROM inbox").fetchone()[0] + 1
        change = {"cursor": cursor, "id": f"ch-{cursor}", "type": "order.created", "created_at": ctx.now,
                  "payload": {"order_id": order_id, "number": number, "kind": "pickup",
                              "total_fen": sum(x["qty"] * x["price_fen"] for x in lines), "lines": lines}}
        with db.transaction(conn):
            assert apply_page(conn, [change], cursor, ctx)["rejected"] == 0
    finally:
        conn.close()


class Browser:
    def __init__(self, client):
        self.client = client
        self.csrf = ""

    async def log_in(self, name: str):
        page = await self.client.get("/ui/login")
        token = re.search(r'name="csrf" value="([^"]+)"', await page.text()).group(1)
        resp = await self.client.post("/ui/login", data={"name": name, "password": PASSWORD, "csrf": token,
                                                         "next": "/ui/"}, allow_redirects=False)
        assert resp.status == 303, await resp.text()

    async def get(self, path: str, status: int = 200, **kw) -> str:
        resp = await self.client.get(path, **kw)
        body = await resp.text()
        assert resp.status == status, (resp.status, body[:2000])
        found = re.search(r'data-csrf="([^"]*)"', body)
        if found and found.group(1):
            self.csrf = found.group(1)
        return body

    async def post(self, path: str, data: dict, form_id: str | None = None):
        form = {"csrf": self.csrf, "form_id": form_id or f"f-{id(data)}-{len(data)}-{sorted(data.items())}"[:120],
                **data}
        return await self.client.post(path, data=form, allow_redirects=False)


@pytest.fixture
async def ui(config):
    add_users(config.db_path)
    client = await start_client(config)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def boss(ui):
    b = Browser(ui)
    await b.log_in("boss")
    await b.get("/ui/")
    return b


BLOCKS = ("failed-jobs", "today-sales", "today-orders", "chart-hours", "orders-waiting", "orders-ready", "orders-short",
          "low-stock", "printers", "scanners", "sync-health", "stock-results", "moves", "orders", "print-jobs")


def section(html: str, element_id: str) -> str:
    """The page from an element's id up to the next block's id (enough for asserts)."""
    start = html.index(f'id="{element_id}"')
    ends = [html.find(f'id="{other}"', start + 1) for other in BLOCKS if other != element_id]
    return html[start:min([e for e in ends if e > 0] or [len(html)])]


def audit_rows(db_path, action: str) -> list[tuple]:
    return query(db_path, "SELECT user_name, role, action, target, detail FROM audit_log WHERE action = ?", action)


async def test_words_exist_in_both_languages():
    import edge.ui  # noqa: F401 (registers every page's words)

    for prefix in ("overview_", "orders_", "stock_"):
        zh = {k for k in TEXT["zh"] if k.startswith(prefix)}
        en = {k for k in TEXT["en"] if k.startswith(prefix)}
        assert zh and zh == en, zh ^ en


async def test_overview_shows_today_after_a_sale(ui, boss, config):
    html = await boss.get("/ui/")
    for element_id in ("today-sales", "today-orders", "chart-hours", "orders-waiting", "orders-ready",
                       "orders-short", "low-stock", "printers", "scanners", "sync-health"):
        assert f'id="{element_id}"' in html, element_id
    assert "暂无待备货的订单" in html
    assert 'data-count="0" data-fen="0"' in section(html, "today-sales")
    assert "<svg" in section(html, "chart-hours") and "style=" not in html

    status, _, _ = await Api(ui).post("/sales", {"lines": [{"sku": "DRK-001", "qty": 3}],
                                                 "payments": [{"method": "cash", "amount_fen": 1000}]})
    assert status == 201
    html = await boss.get("/ui/")
    sales = section(html, "today-sales")
    assert 'data-count="1" data-fen="600"' in sales and "￥6.00" in sales and "1 笔" in sales
    assert 'class="chart-bar"' in section(html, "chart-hours")
    # 奥利奥 (2 on hand, threshold 3) and 洁柔 (0, threshold 0) are low
    low = section(html, "low-stock")
    assert 'data-sku="SNK-002"' in low and 'data-sku="HOM-001"' in low and 'data-sku="DRK-001"' not in low
    fragment = await boss.get("/ui/?fragment=overview_sales")
    assert fragment.lstrip().startswith('<div id="today-sales"') and "<html" not in fragment
    assert 'data-state="none"' in section(html, "sync-health") and 'href="/ui/sync"' in html


async def test_a_change_between_a_pages_read_and_its_event_stream_refreshes_it_at_once(ui, boss):
    """A page says the live version it was read at; its event stream starts from there: a write committed
    before the browser subscribed is a change at once, not at the next 10 s tick."""
    import asyncio  # noqa: PLC0415

    html = await boss.get("/ui/")
    since = re.search(r'data-live-version="(\d+)"', html).group(1)
    status, _, _ = await Api(ui).post("/sales", {"lines": [{"sku": "DRK-001", "qty": 1}],
                                                 "payments": [{"method": "cash", "amount_fen": 200}]})
    assert status == 201

    async def first_change(params: str) -> bytes:
        resp = await ui.get(f"/ui/events{params}")
        try:
            while b"event: change" not in (line := await resp.content.readline()):
                pass
            return line
        finally:
            resp.close()
    assert (await asyncio.wait_for(first_change(f"?since={since}"), 3)).startswith(b"event: change")
    # without it (or with a number from elsewhere) the stream starts at the present: nothing to say yet
    for other in ("", "?since=99999999", "?since=x"):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(first_change(other), 1)


async def test_cashier_is_sent_to_the_till_and_kept_out(ui):
    till = Browser(ui)
    await till.log_in("till")
    resp = await ui.get("/ui/", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/ui/cashier"
    for path in ("/ui/orders", "/ui/orders/o-1", "/ui/stock", "/ui/stock/DRK-001"):
        resp = await ui.get(path, allow_redirects=False)
        assert resp.status == 403, path
    resp = await ui.get("/ui/stock", allow_redirects=False, headers={})
    assert "此页面仅限店长" in await resp.text()


async def test_not_logged_in_goes_to_login(ui):
    resp = await ui.get("/ui/orders", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"].startswith("/ui/login?next=")


async def test_new_order_appears_live_then_mark_ready(ui, boss, config):
    html = await boss.get("/ui/")
    assert 'data-order-id="o-1"' not in html
    feed_order(config)
    fragment = await boss.get("/ui/?fragment=overview_orders")
    waiting = section(fragment, "orders-waiting")
    assert 'data-order-id="o-1"' in waiting and "A101" in waiting and "新订单" in waiting
    assert 'data-order-id="o-1"' not in section(fragment, "orders-ready")
    today = await boss.get("/ui/?fragment=overview_today")
    assert 'data-received="1"' in today

    listing = await boss.get("/ui/orders?state=open")
    assert 'tr data-order-id="o-1"' in listing and 'select name="state"' in listing
    assert 'data-order-id="o-1"' not in await boss.get("/ui/orders?state=ready")
    detail = await boss.get("/ui/orders/o-1")
    assert 'id="mark-ready"' in detail and "农夫山泉" in detail and 'id="reverse-handover"' not in detail
    form_id = re.search(r'name="form_id" value="([^"]+-ready)"', detail).group(1)
    resp = await boss.post("/ui/orders/o-1/ready", {}, form_id=form_id)
    assert resp.status == 303 and resp.headers["Location"] == "/ui/orders/o-1?done=ready"
    assert query(config.db_path, "SELECT state FROM orders WHERE id = 'o-1'") == [("ready",)]
    rows = audit_rows(config.db_path, "order.ready")
    assert [r[:4] for r in rows] == [("boss", "manager", "order.ready", "o-1")]
    # a double click: the same form id changes nothing more, and is not an error
    resp = await boss.post("/ui/orders/o-1/ready", {}, form_id=form_id)
    assert resp.status == 303 and len(audit_rows(config.db_path, "order.ready")) == 1
    # a new attempt on a ready order is refused in words, nothing written
    resp = await boss.post("/ui/orders/o-1/ready", {}, form_id="another")
    assert resp.status == 409 and 'id="form-error"' in await resp.text()

    done = await boss.get("/ui/orders/o-1?done=ready")
    assert 'id="form-done"' in done and "已备好待取" in done and 'id="mark-ready"' not in done
    fragment = await boss.get("/ui/?fragment=overview_orders")
    assert 'data-order-id="o-1"' in section(fragment, "orders-ready")
    assert 'data-order-id="o-1"' not in section(fragment, "orders-waiting")
    state = re.search(r'data-order-id="o-1" data-state="(\w+)"', fragment).group(1)
    assert state == "ready"


async def test_unknown_order_is_a_friendly_404(ui, boss):
    html = await boss.get("/ui/orders/nope", status=404)
    assert "找不到这个订单" in html


async def test_short_order_is_flagged(ui, boss, config):
    feed_order(config, "o-9", "A109", [{"sku": "SNK-002", "name": "奥利奥", "qty": 5, "price_fen": 890}])
    html = await boss.get("/ui/")
    assert 'data-order-id="o-9"' in section(html, "orders-short")
    listing = await boss.get("/ui/orders?state=&short=1")
    assert 'data-order-id="o-9"' in listing and "缺货" in listing


async def test_reverse_needs_a_reason(ui, boss, config):
    feed_order(config)
    conn = db.open_store_db(config.db_path)
    try:  # a hand-over made at the till (the code path of the cashier's page)
        with db.transaction(conn):
            from edge.store import pickups
            from edge.store.stock import Move, apply_moves

            ctx = make_context("till-1", config.tz)
            order = pickups.get_order(conn, "o-1")
            apply_moves(conn, [m for line in order["lines"] for m in (
                Move(line["sku"], -line["qty"], "release"), Move(line["sku"], -line["qty"], "pickup"))],
                "order", "o-1", ctx)
            conn.execute("INSERT INTO pickups (order_id, method, jti, operator, device, provisional, verified_at) "
                         "VALUES ('o-1', 'code', NULL, '李收银', 'till-1', 0, ?)", (ctx.now,))
            conn.execute("UPDATE orders SET state = 'picked_up' WHERE id = 'o-1'")
    finally:
        conn.close()
    detail = await boss.get("/ui/orders/o-1")
    assert 'id="reverse-handover"' in detail
    before = dump(config.db_path)
    resp = await boss.post("/ui/orders/o-1/reverse", {"reason": "  "})
    body = await resp.text()
    assert resp.status == 422 and 'class="field-error"' in body
    assert dump(config.db_path) == before
    resp = await boss.post("/ui/orders/o-1/reverse", {"reason": "误核销"})
    assert resp.status == 303
    assert query(config.db_path, "SELECT state FROM orders WHERE id = 'o-1'") == [("ready",)]
    assert audit_rows(config.db_path, "pickup.reverse")[0][3] == "o-1"


async def test_stock_search_by_barcode_and_low_list(ui, boss):
    html = await boss.get("/ui/stock")
    assert 'id="stock-search"' in html and 'name="q"' in html
    assert 'data-sku="SNK-002"' in section(html, "low-stock")
    html = await boss.get("/ui/stock", params={"q": BARCODE["DAI-001"]})
    results = section(html, "stock-results")
    assert 'data-sku="DAI-001"' in results and 'data-sku="DRK-001"' not in results
    html = await boss.get("/ui/stock", params={"q": "薯片"})
    assert 'data-sku="SNK-001"' in section(html, "stock-results")
    html = await boss.get("/ui/stock", params={"q": "kl"})   # 可口可乐 by its initials
    results = section(html, "stock-results")
    assert 'data-sku="DRK-002"' in results and 'data-sku="DRK-001"' not in results
    html = await boss.get("/ui/stock", params={"q": "no-such-thing"})
    assert "没有与“no-such-thing”匹配的商品" in html
    await boss.get("/ui/stock/NOPE-1", status=404)


async def test_adjustment_form(ui, boss, config):
    html = await boss.get("/ui/stock/DRK-001")
    assert 'id="adjust-form"' in html and 'id="count-form"' in html and 'id="moves"' in html

    def on_hand() -> int:
        return query(config.db_path, "SELECT on_hand FROM stock_balances WHERE sku = 'DRK-001'")[0][0]

    assert on_hand() == 50

    before = dump(config.db_path)
    resp = await boss.post("/ui/stock/DRK-001", {"op": "adjust", "qty": "0", "note": ""})
    body = await resp.text()
    assert resp.status == 422
    assert "调整数量不能为 0" in body and "请填写此项" in body and body.count('class="field-error"') == 2
    resp = await boss.post("/ui/stock/DRK-001", {"op": "adjust", "qty": "abc", "note": "x"})
    assert resp.status == 422 and "请输入整数" in await resp.text()
    assert dump(config.db_path) == before

    form = {"op": "adjust", "qty": "-3", "note": "破损"}
    resp = await boss.post("/ui/stock/DRK-001", form, form_id="adjust-1")
    assert resp.status == 303 and resp.headers["Location"] == "/ui/stock/DRK-001?done=adjust"
    resp = await boss.post("/ui/stock/DRK-001", form, form_id="adjust-1")  # the double click
    assert resp.status == 303
    assert on_hand() == 47
    rows = audit_rows(config.db_path, "stock.adjust")
    assert len(rows) == 1 and rows[0][:4] == ("boss", "manager", "stock.adjust", "DRK-001") and "破损" in rows[0][4]
    html = await boss.get("/ui/stock/DRK-001?done=adjust")
    assert 'id="form-done"' in html
    moves = section(html, "moves")
    assert moves.index("-3") < moves.index("+50")  # newest first
    assert "破损" in moves

    resp = await boss.post("/ui/stock/DRK-001", {"op": "count", "counted": "-1", "note": ""})
    assert resp.status == 422 and "实盘数量不能小于 0" in await resp.text()
    resp = await boss.post("/ui/stock/DRK-001", {"op": "count", "counted": "45", "note": "月底盘点"})
    assert resp.status == 303 and resp.headers["Location"] == "/ui/stock/DRK-001?done=count"
    assert on_hand() == 45 and len(audit_rows(config.db_path, "stock.count")) == 1


async def test_forms_need_the_session_csrf(ui, boss, config):
    before = dump(config.db_path)
    resp = await ui.post("/ui/stock/DRK-001", data={"op": "adjust", "qty": "5", "note": "x", "form_id": "z",
                                                     "csrf": "wrong"}, allow_redirects=False)
    assert resp.status == 403 and dump(config.db_path) == before


async def test_english(ui, boss, config):
    resp = await ui.get("/ui/lang/en?next=/ui/", allow_redirects=False)
    assert resp.status == 303
    html = await boss.get("/ui/")
    assert "Sales today" in html and "No orders to prepare" in html and "今日销售" not in html
    feed_order(config)
    assert "New" in section(await boss.get("/ui/orders"), "orders")
    html = await boss.get("/ui/stock/DRK-001")
    assert "Adjust stock" in html and "Stock count" in html
    resp = await boss.post("/ui/stock/DRK-001", {"op": "adjust", "qty": "0", "note": ""})
    assert "The change cannot be 0" in await resp.text()


async def test_reprint_ticket_and_printers_block(tmp_path):
    from drivers.virtual_printer import VirtualPrinter
    from tests.test_printing import all_final, printer_toml, start

    async with VirtualPrinter(port=0) as vp:
        cfg, client, service = await start(tmp_path, printer_toml("counter", vp.port))
        try:
            add_users(cfg.db_path)
            boss = Browser(client)
            await boss.log_in("boss")
            feed_order(cfg)
            await service.wait_for(lambda: all_final(service))
            html = await boss.get("/ui/")
            assert 'data-printer="counter"' in section(html, "printers")
            detail = await boss.get("/ui/orders/o-1")
            assert 'id="reprint-ticket"' in detail and "已打印" in section(detail, "print-jobs")
            resp = await boss.post("/ui/orders/o-1/reprint", {}, form_id="reprint-1")
            assert resp.status == 303 and resp.headers["Location"] == "/ui/orders/o-1?done=reprint"
            jobs = query(cfg.db_path, "SELECT kind, reprint_of IS NOT NULL FROM print_jobs "
                         "WHERE order_id = 'o-1' ORDER BY id")
            assert jobs == [("order_ticket", 0), ("order_ticket", 1)]
            assert audit_rows(cfg.db_path, "print.reprint")[0][3] == "o-1"
        finally:
            await client.close()


async def test_a_failed_backup_or_ledger_check_shows_on_metrics_the_dashboard_and_doctor(ui, boss, config):
    """Issue 15 item 18: a failed scheduled backup or nightly ledger check was only logged."""
    import dataclasses

    from edge.core.config import BackupSection
    from edge.ops import doctor
    from edge.services import jobs
    from edge.services.app_keys import STORE
    from tests.test_metrics import parse, value

    store = ui.app[STORE]

    async def failed(job: str) -> float:
        return value(parse(await (await ui.get("/metrics")).text()), "store_edge_scheduled_job_failed", job=job)

    assert await failed("backup") == 0 and await failed("ledger_check") == 0
    assert "failed-jobs" not in await boss.get("/ui/")

    nowhere = dataclasses.replace(config, raw=config.raw.model_copy(
        update={"backup": BackupSection(folder="/proc/no-backups-here")}))
    assert await jobs.scheduled_backup(store, nowhere) is None
    await store.write(lambda conn: conn.execute("UPDATE stock_balances SET on_hand = on_hand + 1 "
                                                "WHERE sku = 'DRK-001'"))
    await jobs.nightly_ledger_check(store)

    assert await failed("backup") == 1 and await failed("ledger_check") == 1
    alert = section(await boss.get("/ui/"), "failed-jobs")
    assert "定时任务上次运行失败" in alert and "自动备份" in alert and "夜间库存账核对" in alert
    assert "/proc/no-backups-here" in alert and "连续失败 1 次" in alert
    checks = {c.name: c for c in doctor.diagnose(str(config.path), timeout=0.5)}
    assert checks["backup"].status == "fail" and "/proc/no-backups-here" in checks["backup"].message
    assert checks["ledger check"].status == "fail" and "1 mismatch" in checks["ledger check"].message

    # the next good run clears it
    assert await jobs.scheduled_backup(store, config) is not None
    assert await failed("backup") == 0 and await failed("ledger_check") == 1
    assert {c.name: c.status for c in doctor.diagnose(str(config.path), timeout=0.5)}["backup"] == "ok"
