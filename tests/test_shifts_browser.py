"""交班 and 日结 end to end in headless Chromium (tests/browser.py's Stack: hub, virtual printer, daemon).

1. A cashier logs in, opens a shift at this machine's till with a float, sales and a refund go through the
   till API, an online order is handed over on 收银台, the cashier closes the shift with the cash counted,
   and the 交班小票 is read back from the virtual printer's control API with the right totals.
2. 日结 across midnight: the store's time zone is chosen so that it is just past local midnight now, and
   its day_cutoff is 02:00 (a real setting, no clock faked): a sale made now belongs to the business day
   before the calendar date, and the manager's 日结 shows it there, not on the calendar date; its 日结单
   prints with that date.

Screenshots at 1366x768 and at 390x844 (a phone), where the page must not scroll sideways.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from tests.browser import PHONE, USERS, Stack, checked_page, running_stack, shoot
from tests.helpers_daemon import wait_for
from tests.test_ui_browser import TIMEOUT_MS, log_in

CUTOFF_HOUR = 2


def just_past_midnight() -> str:
    """An Etc/GMT zone where the local hour is 0 now: with the cut-off at 02:00, now is before it."""
    offset = -datetime.now(timezone.utc).hour % 24
    offset = offset - 24 if offset > 14 else offset  # Etc/GMT zones run from UTC-12 to UTC+14
    return f"Etc/GMT{-offset:+d}" if offset else "Etc/GMT"


ZONE = just_past_midnight()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("shifts-browser"),
                       store_config=f'timezone = "{ZONE}"\nday_cutoff = "{CUTOFF_HOUR:02d}:00"\n') as s:
        yield s


@pytest.fixture
def page(browser, stack):
    with checked_page(browser, stack.base, timeout_ms=TIMEOUT_MS) as pg:
        yield pg


def on_a_phone(browser, stack, role: str, path: str, name: str) -> None:
    """The page at 390x844: a screenshot, and no sideways scrolling."""
    with checked_page(browser, stack.base, PHONE, TIMEOUT_MS) as pg:
        log_in(pg, role, path)
        assert pg.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], f"{path} scrolls sideways"
        shoot(pg, name, PHONE)


def printed(stack: Stack, title: str, *needles: str) -> dict:
    def found():
        return [r for r in stack.printer.receipts() if title in r["text"] and all(n in r["text"] for n in needles)]
    return wait_for(found, 15, f"the {title} at the virtual printer", stack.logs)[-1]


def line(receipt: dict, label: str, value: str) -> bool:
    return re.search(rf"^{re.escape(label)}\s+{re.escape(value)}\s*$", receipt["text"], re.M) is not None


def test_a_cashiers_shift_from_login_to_the_hand_over_slip(page, stack, browser):
    from playwright.sync_api import expect  # noqa: PLC0415

    log_in(page, "cashier", "/ui/cashier")
    page.click("header nav a[href='/ui/shift']")
    expect(page.locator("#open-form")).to_be_visible()
    page.select_option("#open-form select[name=till]", "local")
    page.fill("#open-form input[name=float]", "200")
    with page.expect_navigation():
        page.click("#open-shift-button")
    expect(page.locator("#form-done")).to_have_text("已开班")
    expect(page.locator("#current-shift")).to_contain_text("本机收银台")

    cash = stack.api_ok("POST", "/sales", {"lines": [{"sku": "DRK-001", "qty": 3}],  # 6.00, 4.00 change
                                           "payments": [{"method": "cash", "amount_fen": 1000}]}, key="shift-s1")
    stack.api_ok("POST", "/sales", {"lines": [{"sku": "SNK-001", "qty": 1}],
                                    "payments": [{"method": "card", "amount_fen": 750}]}, key="shift-s2")
    stack.api_ok("POST", f"/sales/{cash['sale']['id']}/returns", {"lines": [{"line_no": 1, "qty": 1}],
                                                                    "refund_method": "cash"}, key="shift-r1")
    # the figures follow without a reload (the page's live region)
    expect(page.locator("#shift-figures")).to_have_attribute("data-sales", "2")
    expect(page.locator("#shift-expected")).to_have_text("￥204.00")  # 200 + 10 - 4 - 2

    order = stack.hub.new_order([{"sku": "DAI-001", "qty": 1}])
    stack.wait_order(order["order_id"])
    page.click("header nav a[href='/ui/cashier']")
    page.fill("#scan-input", order["pickup_code"])
    page.press("#scan-input", "Enter")
    page.click("#confirm-handover")
    # the order was not prepared (new from the cloud): the screen asks first
    expect(page.locator(".confirm-not-ready")).to_contain_text("尚未备好，确定交付？")
    page.click("#confirm-not-ready")
    expect(page.locator(".handover-done")).to_be_visible()

    page.click("header nav a[href='/ui/shift']")
    expect(page.locator("#shift-pickups")).to_have_text("1 单")
    shoot(page, "30-shift-open")
    on_a_phone(browser, stack, "cashier", "/ui/shift", "30-shift-open-390")
    page.fill("#close-form input[name=counted]", "203.50")
    with page.expect_navigation():
        page.click("#close-shift")
    expect(page.locator("#form-done")).to_have_text("已交班，交班小票已送去打印")
    expect(page.locator("#shift-difference")).to_have_text("-￥0.50")
    expect(page.locator("main")).to_contain_text("短款")

    slip = printed(stack, "交班小票", "实点现金")
    for label, value in (("销售笔数", "2"), ("销售金额", "￥13.50"), ("退款金额", "-￥2.00"), ("线上订单核销", "1"),
                         ("  现金", "￥4.00"), ("  银行卡", "￥7.50"), ("备用金", "￥200.00"), ("应有现金", "￥204.00"),
                         ("实点现金", "￥203.50"), ("差额 (短款)", "-￥0.50")):
        assert line(slip, label, value), (label, value, slip["text"])
    assert "收银员：" + USERS["cashier"][1] in slip["text"] and "收银机：本机" in slip["text"]
    expect(page.locator("#shift-slip")).to_have_attribute("data-slip", "printed")
    shoot(page, "31-shift-closed")
    on_a_phone(browser, stack, "cashier", page.url.replace(stack.base, ""), "31-shift-closed-390")


def test_the_day_close_with_the_cut_off_after_midnight(page, stack, browser):
    from playwright.sync_api import expect  # noqa: PLC0415

    local_now = datetime.now(ZoneInfo(ZONE))
    assert local_now.hour < CUTOFF_HOUR, "the zone was chosen for local midnight"
    calendar_day = local_now.date().isoformat()
    business_day = (local_now.date() - timedelta(days=1)).isoformat()
    sale = stack.api_ok("POST", "/sales", {"lines": [{"sku": "DRK-002", "qty": 2}],
                                           "payments": [{"method": "wechat", "amount_fen": 700}]}, key="day-s1")
    assert sale["sale"]["business_date"] == business_day  # after midnight, before the cut-off
    day = stack.api_ok("GET", "/day-close")
    assert day["date"] == business_day and day["sales_count"] >= 1

    log_in(page, "manager", "/ui/day-close")
    close = page.locator("#day-close")
    expect(close).to_have_attribute("data-date", business_day)
    expect(close).to_have_attribute("data-sales", str(day["sales_count"]))
    expect(page.locator("#day-methods tr[data-method=wechat]")).to_be_visible()
    expect(page.locator("main")).to_contain_text(f"营业日从 0{CUTOFF_HOUR}:00 到次日 0{CUTOFF_HOUR}:00")
    shoot(page, "32-day-close")

    page.click("#day-after")  # the calendar date: nothing sold there yet
    expect(page.locator("#day-close")).to_have_attribute("data-date", calendar_day)
    expect(page.locator("#day-close")).to_have_attribute("data-sales", "0")
    page.click("#day-before")
    expect(page.locator("#day-close")).to_have_attribute("data-date", business_day)

    with page.expect_navigation():
        page.click("#print-day")
    expect(page.locator("#form-done")).to_have_text("日结单已送去打印")
    summary = printed(stack, "日结单", f"营业日：{business_day}")
    assert line(summary, "销售笔数", str(day["sales_count"])), summary["text"]
    assert line(summary, "  微信", "￥7.00"), summary["text"]
    on_a_phone(browser, stack, "manager", f"/ui/day-close?date={business_day}", "32-day-close-390")
