"""The dashboard end to end, in headless Chromium (Debian's, driven by Playwright).

One set of real processes for the module (tests/browser.py): the reference hub, the virtual printer
and the daemon, linked. One Chromium; a new context at 1366x768 per test. The flows of the issue:

1. a cashier verifies a pickup code on 收银台, hands the order over, the slip prints, and the same
   code is refused the second time;
2. a manager on 概览 sees a new online order appear without reloading (SSE live region);
3. a manager adjusts stock; a bad submission shows the field error;
4. a dead letter shows on 同步, and retrying it after the chain adds the product clears it;
5. a cashier gets the 403 page for a manager's page; a logged-out visit goes to the login.

Screenshots of every page at 1366x768 go to $STORE_EDGE_ARTIFACTS (else test-artifacts/screenshots/).
A page that has not been written yet fails its test with a message that says so. Chromium or
Playwright missing is a failure, not a skip: the test set-up installs them.
"""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from tests.browser import (
    LOCAL_ONLY,
    USERS,
    VIEWPORT,
    Stack,
    artifacts_dir,
    checked_page,
    running_stack,
    shoot,
)
from tests.helpers_daemon import wait_for

TIMEOUT_MS = 10_000
PAGES = {  # path -> elements docs/dashboard.md promises on it
    "/ui/": ["#today-sales", "#today-orders", "#chart-hours", "#orders-waiting", "#orders-ready", "#orders-short",
             "#low-stock", "#printers", "#scanners", "#sync-health"],
    "/ui/orders": ["select[name=state]"],
    "/ui/stock": ["form#stock-search input[name=q]", "#low-stock"],
    "/ui/stock/SNK-001": ["#moves", "form#adjust-form", "form#count-form"],
    "/ui/sync": ["#queue", "#dead-letters"],
    "/ui/devices": ["#printers", "#scanners", "button#print-status-ticket"],
    "/ui/audit": ["table#audit"],
    "/ui/reports": ["form#report-range input[name=from]", "#report-revenue", "#report-payments", "#report-chart",
                    "#report-pickups", "#report-exports a[data-export=sales]"],
}


# -- fixtures ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("ui-browser")) as s:
        yield s


@pytest.fixture
def page(browser, stack):
    """A new context (no cookies) at 1366x768; JavaScript errors on the page fail the test."""
    with checked_page(browser, stack.base, VIEWPORT, TIMEOUT_MS) as pg:
        yield pg


def require(stack: Stack, path: str) -> None:
    """Fail (not skip) with a clear message when the page is not in the dashboard yet."""
    if not stack.route_exists(path):
        pytest.fail(f"the dashboard has no page at {path} yet (docs/dashboard.md): this test runs when it lands",
                    pytrace=False)


def log_in(page, role: str, next_path: str | None = None) -> None:
    name, _, password = USERS[role]
    page.goto("/ui/login" + (f"?next={quote(next_path, safe='')}" if next_path else ""))
    page.fill("form.login input[name=name]", name)
    page.fill("form.login input[name=password]", password)
    with page.expect_navigation():
        page.click("form.login button[type=submit]")
    assert "/ui/login" not in page.url, f"still on the login page after logging in as {name}: {page.url}"


def on_login(url: str, next_path: str) -> bool:
    """The login page, asked to come back to next_path afterwards."""
    parts = urlsplit(url)
    return parts.path == "/ui/login" and parse_qs(parts.query).get("next") == [next_path]


def submit(form) -> None:
    """Click the form's submit button (the first button that is not type=button)."""
    form.locator("button:not([type=button]), input[type=submit]").first.click()


# -- log in, log out, who may see what ------------------------------------------------------------------

def test_login_page_refuses_a_wrong_password_and_logs_in(page, stack):
    from playwright.sync_api import expect  # noqa: PLC0415

    response = page.goto("/ui/login")
    assert response.status == 200
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    expect(page.locator("form.login h1")).to_have_text("登录")
    shoot(page, "01-login")
    page.fill("input[name=name]", USERS["manager"][0])
    page.fill("input[name=password]", "not-the-password")
    page.click("form.login button[type=submit]")
    expect(page.locator("form.login .error")).to_have_text("用户名或密码不正确")
    assert "/ui/login" in page.url
    page.fill("input[name=password]", USERS["manager"][2])
    with page.expect_navigation():
        page.click("form.login button[type=submit]")
    assert page.url.endswith("/ui/"), page.url
    assert any(c["name"] == "se_session" and c["httpOnly"] for c in page.context.cookies())


def test_a_cashier_gets_the_403_page_and_a_logged_out_visit_goes_to_the_login(page, stack):
    from playwright.sync_api import expect  # noqa: PLC0415

    for path in ("/ui/", "/ui/cashier", "/ui/stock"):
        require(stack, path)
    with page.expect_navigation():
        page.goto("/ui/")
    assert on_login(page.url, "/ui/"), page.url

    log_in(page, "cashier", "/ui/")
    assert page.url.endswith("/ui/cashier"), f"a cashier at /ui/ is sent to 收银台, not {page.url}"
    nav = page.locator("header nav a")
    expect(nav).to_have_text(["收银台", "交班"])  # a cashier's menu has only what a cashier may open
    response = page.goto("/ui/stock")
    assert response.status == 403, response.status
    expect(page.locator("main")).to_contain_text("此页面仅限店长")
    shoot(page, "11-forbidden-cashier-on-stock")

    with page.expect_navigation():
        page.click("header form[action='/ui/logout'] button")
    assert "/ui/login" in page.url
    page.goto("/ui/cashier")
    assert on_login(page.url, "/ui/cashier"), page.url


# -- 1. the cashier: pickup code, hand-over, slip, refusal ----------------------------------------------

def test_cashier_verifies_a_pickup_code_hands_over_and_the_slip_prints(page, stack):
    from playwright.sync_api import expect  # noqa: PLC0415

    require(stack, "/ui/cashier")
    order = stack.hub.new_order([{"sku": "SNK-001", "qty": 2}, {"sku": "DRK-001", "qty": 1}])
    log_in(page, "cashier", "/ui/cashier")
    stack.wait_order(order["order_id"])

    page.fill("#scan-input", order["pickup_code"])
    page.press("#scan-input", "Enter")
    result = page.locator("#scan-result")
    expect(result.locator(".order-number")).to_contain_text(order["number"])
    expect(result).to_contain_text("乐事 薯片 原味 70g")
    page.click("#confirm-handover")
    # the order was just created, not prepared: the screen asks first
    expect(result.locator(".confirm-not-ready")).to_contain_text("尚未备好，确定交付？")
    page.click("#confirm-not-ready")
    expect(page.locator(".handover-done")).to_be_visible()
    expect(page.locator("#last-scans")).to_be_visible()
    shoot(page, "02-cashier-handover-done")

    def slip():
        return [r for r in stack.printer.receipts()
                if "自提核销凭证" in r["text"] and order["number"] in r["text"]]
    (printed,) = wait_for(slip, 15, "the pickup slip at the virtual printer", stack.logs)
    assert USERS["cashier"][1] in printed["text"] or USERS["cashier"][0] in printed["text"], printed["text"]

    page.fill("#scan-input", order["pickup_code"])
    page.press("#scan-input", "Enter")
    expect(page.locator('#scan-result .refusal[data-reason="already_used"]')).to_be_visible()
    shoot(page, "03-cashier-refusal-already-used")
    assert stack.api_ok("GET", f"/orders/{order['order_id']}")["state"] == "picked_up"


def test_cashier_screen_scans_with_order_numbers_find_by_phone_and_a_managers_hand_over(page, stack):
    """The last scans say what they meant (order number, product name; no token in the page), a code read
    again and again is one row with a count; an order is found by its customer's phone digits; a manager
    hands one over without its code. At 1366x768 and on a phone at 390x844, with no sideways scrolling."""
    from playwright.sync_api import expect  # noqa: PLC0415

    from tests.conftest import BARCODE  # noqa: PLC0415

    require(stack, "/ui/cashier")
    first = stack.hub.new_order([{"sku": "SNK-001", "qty": 1}], phone="13900004321")
    second = stack.hub.new_order([{"sku": "DRK-001", "qty": 1}], phone="13800004321")
    for order in (first, second):
        stack.wait_order(order["order_id"])
    token = first["pickup_token"]
    scans = [BARCODE["SNK-001"]] + [token] * 5      # the same QR code, read five times
    for n, text in enumerate(scans):
        stack.api_ok("POST", "/scans", {"text": text}, key=f"ui-scan-{first['order_id']}-{n}")
    log_in(page, "cashier", "/ui/cashier")
    rows = page.locator("#last-scans tr[data-seq]")
    expect(rows.first).to_contain_text(first["number"])
    expect(rows.first).to_contain_text("×5")
    expect(rows.first).to_contain_text("新订单")
    expect(rows.nth(1)).to_contain_text("乐事 薯片 原味 70g")
    assert rows.first.get_attribute("data-count") == "5" and rows.count() == 2
    html = page.content()
    assert token not in html and token.split(".")[1][:24] not in html, "a pickup token is on the page"
    shoot(page, "17-cashier-last-scans")

    page.fill("#find-input", "4321")
    page.press("#find-input", "Enter")
    matches = page.locator("#scan-result .order-matches")
    expect(matches).to_contain_text(first["number"])
    expect(matches).to_contain_text(second["number"])
    matches.locator(f'tr[data-order-id="{first["order_id"]}"] button.pick-order').click()
    found = page.locator("#scan-result .found-order")
    expect(found).to_contain_text(first["number"])
    expect(found).to_contain_text("请顾客出示提货码")
    expect(found.locator("#manual-handover")).to_have_count(0)   # a cashier's screen has no such button

    sideways = "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    assert page.evaluate(sideways) <= 0, "the cashier screen scrolls sideways at 1366 px"
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/ui/cashier")
    expect(page.locator("#last-scans")).to_contain_text(first["number"])
    page.fill("#find-input", "4321")
    page.press("#find-input", "Enter")
    expect(page.locator("#scan-result .order-matches")).to_contain_text(second["number"])
    overflow = page.evaluate(sideways)
    assert overflow <= 0, f"the cashier screen scrolls sideways by {overflow} px at 390 px"
    page.screenshot(path=str(artifacts_dir() / "18-cashier-phone-390.png"), full_page=True)
    page.set_viewport_size(VIEWPORT)

    with page.expect_navigation():
        page.click("header form[action='/ui/logout'] button")
    log_in(page, "manager", "/ui/cashier")
    page.fill("#find-input", second["number"])
    page.press("#find-input", "Enter")
    found = page.locator("#scan-result .found-order")
    expect(found).to_contain_text(second["number"])
    found.locator("#manual-reason").fill("顾客手机没电，已核对身份证")
    found.locator("#manual-handover").click()
    expect(page.locator("#scan-result .confirm-not-ready")).to_contain_text("尚未备好")
    page.click("#confirm-not-ready")
    expect(page.locator(".handover-done")).to_contain_text(second["number"])
    expect(page.locator(".handover-done")).to_contain_text("无码交货，原因：顾客手机没电，已核对身份证")
    shoot(page, "19-cashier-manual-handover")
    assert stack.api_ok("GET", f"/orders/{second['order_id']}")["state"] == "picked_up"


# -- 2. the manager's overview: a new online order without reloading -------------------------------------

def test_manager_sees_a_new_online_order_appear_without_reloading(page, stack):
    from playwright.sync_api import expect  # noqa: PLC0415

    require(stack, "/ui/")
    # the live stream must be open before the order arrives (its first "change" is the next write)
    with page.expect_response(lambda r: "/ui/events" in r.url, timeout=TIMEOUT_MS):
        log_in(page, "manager")
    assert page.url.endswith("/ui/")
    expect(page.locator("#orders-waiting")).to_be_visible()
    page.evaluate("window.__notReloaded = true")
    started = time.monotonic()
    order = stack.hub.new_order([{"sku": "DAI-001", "qty": 3}], note="请尽快备货")
    row = page.locator(f'#orders-waiting tr[data-order-id="{order["order_id"]}"]')
    expect(row).to_be_visible(timeout=8_000)
    seconds = time.monotonic() - started
    expect(row).to_contain_text(order["number"])
    assert page.evaluate("window.__notReloaded === true"), "the page was reloaded"
    assert seconds < 8, seconds
    row.scroll_into_view_if_needed()  # the orders to prepare are below the fold at 1366x768
    shoot(page, "04-overview-live-order")


# -- 3. stock: adjust, and a bad submission -------------------------------------------------------------

def test_manager_adjusts_stock_and_a_bad_submission_shows_the_field_error(page, stack):
    from playwright.sync_api import expect  # noqa: PLC0415

    require(stack, "/ui/stock/DRK-002")
    before = stack.api_ok("GET", "/stock/DRK-002")["on_hand"]
    log_in(page, "manager", "/ui/stock/DRK-002")
    form = page.locator("form#adjust-form")
    form.locator("[name=qty]").fill("-3")
    form.locator("[name=note]").fill("破损报损（浏览器测试）")
    submit(form)
    wait_for(lambda: stack.api_ok("GET", "/stock/DRK-002")["on_hand"] == before - 3, 10, "the adjustment",
               stack.logs)
    expect(page.locator("#moves")).to_contain_text("破损报损（浏览器测试）")
    expect(page.locator("main")).to_contain_text(str(before - 3))
    shoot(page, "05-stock-item-after-adjustment")

    page.goto("/ui/stock/DRK-002")
    form = page.locator("form#adjust-form")
    form.evaluate("f => { f.noValidate = true; }")  # what the server says, not the browser's own check
    form.locator("[name=qty]").fill("0")
    form.locator("[name=note]").fill("数量为零")
    submit(form)
    expect(page.locator("form#adjust-form .field-error").first).to_be_visible()
    assert stack.api_ok("GET", "/stock/DRK-002")["on_hand"] == before - 3  # nothing changed
    shoot(page, "06-stock-item-field-error")

    page.goto("/ui/stock")
    search = page.locator("form#stock-search")
    search.locator("input[name=q]").fill("薯片")
    search.locator("input[name=q]").press("Enter")
    expect(page.locator("main")).to_contain_text("SNK-001")


# -- 4. sync: a dead letter, retried -----------------------------------------------------------------------

def test_a_dead_letter_shows_on_sync_and_retry_clears_it(page, stack):
    from playwright.sync_api import expect  # noqa: PLC0415

    require(stack, "/ui/sync")
    stack.api_ok("POST", "/sales", {"lines": [{"sku": LOCAL_ONLY, "qty": 1}],
                                    "payments": [{"method": "cash", "amount_fen": 1590}]}, key="ui-dead-letter-1")

    def dead_letter():
        items = stack.api_ok("GET", "/sync/dead-letters")["items"]
        return items[0] if items else None
    letter = wait_for(dead_letter, 15, "the hub to reject the sale of a product it does not know", stack.logs)
    assert LOCAL_ONLY in letter["reason"]

    log_in(page, "manager", "/ui/sync")
    row = page.locator(f'#dead-letters tr[data-seq="{letter["seq"]}"]')
    expect(row).to_be_visible()
    expect(row).to_contain_text(LOCAL_ONLY)
    row.scroll_into_view_if_needed()  # the dead letters are below the fold at 1366x768
    shoot(page, "07-sync-dead-letter")

    stack.hub.add_products([LOCAL_ONLY])  # the chain lists the product
    page.on("dialog", lambda dialog: dialog.accept())
    row.locator("button.retry").click()
    expect(page.locator(f'#dead-letters tr[data-seq="{letter["seq"]}"]')).to_have_count(0, timeout=15_000)
    wait_for(lambda: stack.api_ok("GET", "/sync/dead-letters")["items"] == [], 15, "no dead letter left",
               stack.logs)
    stack.wait_synced()


# -- screenshots of every page -------------------------------------------------------------------------------

def test_every_page_renders_at_1366x768_with_its_elements(page, stack):
    from playwright.sync_api import expect  # noqa: PLC0415

    for path in PAGES:
        require(stack, path)
    orders = stack.api_ok("GET", "/orders?limit=5")["items"]
    if not orders:
        order = stack.hub.new_order([{"sku": "SNK-002", "qty": 1}])
        stack.wait_order(order["order_id"])
        orders = stack.api_ok("GET", "/orders?limit=5")["items"]
    order_id = orders[0]["id"]
    require(stack, f"/ui/orders/{order_id}")
    log_in(page, "manager")
    shots = {"/ui/": "08-overview", "/ui/orders": "09-orders", f"/ui/orders/{order_id}": "10-order-detail",
             "/ui/stock": "12-stock", "/ui/stock/SNK-001": "13-stock-item", "/ui/sync": "14-sync",
             "/ui/devices": "15-devices", "/ui/audit": "16-audit", "/ui/reports": "17-reports"}
    for path, name in shots.items():
        response = page.goto(path)
        assert response.status == 200, (path, response.status)
        for selector in PAGES.get(path, []):
            expect(page.locator(selector).first).to_be_attached()
        if path == "/ui/orders":
            expect(page.locator(f'tr[data-order-id="{order_id}"]')).to_be_visible()
        if path.startswith("/ui/orders/"):
            expect(page.locator("main")).to_contain_text(orders[0]["number"])
            expect(page.locator("#reprint-ticket")).to_be_attached()
        if path == "/ui/audit":  # the manager's stock adjustment and retry were recorded, by whom
            expect(page.locator("table#audit")).to_contain_text(re.compile(f"{USERS['manager'][0]}|{USERS['manager'][1]}"))
        assert page.locator("main").inner_text().strip(), f"{path} shows nothing"
        shoot(page, name)
    pngs = sorted(artifacts_dir().glob("*.png"))
    assert all(p.stat().st_size > 1000 for p in pngs), pngs
