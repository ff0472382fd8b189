"""盘点单 end to end in headless Chromium: a manager makes a count sheet, prints it on the virtual
printer (the real daemon, spool and printer worker), enters the counts in the form, and the stock
moves; 补货建议 lists what to order. Both pages are checked at 1366x768 and on a phone (390 px wide):
nothing wider than the screen but the tables' own scrolling wrappers.

One stack of real processes (tests/browser.py) for the module.
"""

from __future__ import annotations

import contextlib

import pytest

from tests.browser import PHONE, USERS, VIEWPORT, artifacts_dir, checked_page, running_stack, shoot
from tests.helpers_daemon import wait_for

TIMEOUT_MS = 10_000


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("stock-work-browser")) as s:
        yield s


@contextlib.contextmanager
def managers_page(browser, stack, viewport):
    """A checked page (its JavaScript errors fail the test) logged in as the manager."""
    with checked_page(browser, stack.base, viewport, TIMEOUT_MS) as page:
        name, _, password = USERS["manager"]
        page.goto("/ui/login")
        page.fill("form.login input[name=name]", name)
        page.fill("form.login input[name=password]", password)
        with page.expect_navigation():
            page.click("form.login button[type=submit]")
        yield page


def overflow(page) -> list[str]:
    """Elements wider than the window, outside the tables' horizontally scrolling wrappers."""
    return page.evaluate("""() => {
        const width = document.documentElement.clientWidth;
        return [...document.querySelectorAll('main *')]
            .filter(el => !el.closest('.table-wrap') && el.getBoundingClientRect().right > width + 1)
            .map(el => el.tagName + (el.id ? '#' + el.id : '') + '.' + el.className);
    }""")


def test_manager_prints_a_count_sheet_and_enters_the_counts(browser, stack):
    from playwright.sync_api import expect  # noqa: PLC0415

    with managers_page(browser, stack, VIEWPORT) as page:
        page.goto("/ui/stock")
        with page.expect_navigation():
            page.click("#link-count-sheets")
        page.select_option("#new-count-sheet select[name=category]", "零食")
        with page.expect_navigation():
            page.click("#new-count-sheet button[type=submit]")
        number = page.url.rstrip("/").rsplit("/", 1)[1]
        expect(page.locator("h1")).to_contain_text(f"盘点单 #{number}")
        with page.expect_navigation():
            page.click("#print-count-sheet")
        expect(page.locator("#form-done")).to_contain_text("已发送到打印机")

        def printed():
            return [r for r in stack.printer.receipts() if f"盘点单 #{number}" in r["text"]]
        (sheet,) = wait_for(printed, 15, "the count sheet at the virtual printer", stack.logs)
        assert "乐事 薯片 原味 70g" in sheet["text"] and "奥利奥 夹心饼干 97g" in sheet["text"]
        assert "实盘 ________" in sheet["text"] and "SNK-001" in sheet["text"]

        sku_rows = page.locator("#count-sheet-form tbody tr")
        expect(sku_rows).to_have_count(2)
        page.emulate_media(media="print")      # printing the page from the browser: the sheet only
        expect(page.locator("header.top")).to_be_hidden()
        expect(page.locator("#count-import-form")).to_be_hidden()
        expect(sku_rows.first).to_be_visible()
        page.emulate_media(media="screen")
        row = page.locator('#count-sheet-form tr[data-sku="SNK-001"]')
        row.locator("input.count-input").fill("-2")
        with page.expect_navigation():
            page.click("#count-sheet-form button[type=submit]")
        expect(page.locator('#count-sheet-form .field-error')).to_contain_text("请输入 0 或以上的整数")
        assert stack.api_ok("GET", "/stock/SNK-001")["on_hand"] == 20
        page.locator('#count-sheet-form tr[data-sku="SNK-001"] input.count-input').fill("17")
        with page.expect_navigation():
            page.click("#count-sheet-form button[type=submit]")
        expect(page.locator("#form-done")).to_contain_text("盘点已录入")
        result = page.locator("#count-result")
        expect(result.locator('tr[data-sku="SNK-001"]')).to_contain_text("-3")
        expect(result.locator('tr[data-sku="SNK-002"]')).to_contain_text("未盘")
        shoot(page, "30-count-sheet-entered")
        assert stack.api_ok("GET", "/stock/SNK-001")["on_hand"] == 17
        assert stack.api_ok("GET", "/stock/SNK-002")["on_hand"] == 2    # blank: not counted, not changed


@pytest.mark.parametrize("viewport", [VIEWPORT, PHONE], ids=["1366", "390"])
def test_stock_work_pages_fit_the_screen(browser, stack, viewport):
    from playwright.sync_api import expect  # noqa: PLC0415

    sheet = stack.api_ok("POST", "/count-sheets", {"category": "饮料"}, key=f"fit-{viewport['width']}")
    with managers_page(browser, stack, viewport) as page:
        for path, selector in (("/ui/count-sheets", "#count-sheets"), (f"/ui/count-sheets/{sheet['number']}",
                                                                         "#count-sheet-form"),
                               ("/ui/purchase", "#purchase-list")):
            assert page.goto(path).status == 200
            expect(page.locator(selector)).to_be_visible()
            assert overflow(page) == [], (path, viewport)
            name = f"31-{path.strip('/').replace('/', '-')}-{viewport['width']}"
            if viewport == VIEWPORT:
                shoot(page, name)
            else:
                page.screenshot(path=str(artifacts_dir() / f"{name}.png"), full_page=True)
        expect(page.locator('#purchase-list tr[data-sku="SNK-002"]')).to_be_visible()
