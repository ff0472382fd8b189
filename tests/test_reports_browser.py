"""报表 in headless Chromium (tests/browser.py's Stack: hub, virtual printer, daemon): a report for a past
business day picked with the date inputs, at 1366x768 and on a phone (390x844, no sideways scrolling),
and an Excel export downloaded through the page's link, opened with openpyxl, its total the API's.

The past day is written before the daemon starts, through the store's own functions at that day's
times (tests/test_reports.py's a_day: till sales, a return, orders handed over, cancelled, reversed)."""

from __future__ import annotations

from datetime import date, timedelta
from zoneinfo import ZoneInfo

import openpyxl
import pytest

from edge.core.clock import business_date, utcnow
from tests.browser import PHONE, VIEWPORT, artifacts_dir, checked_page, png_size, running_stack, shoot
from tests.test_reports import DAY, a_day
from tests.test_ui_browser import TIMEOUT_MS, log_in


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("reports-browser"), prepare=a_day) as s:
        yield s


@pytest.fixture
def page(browser, stack):
    with checked_page(browser, stack.base, VIEWPORT, TIMEOUT_MS) as pg:
        yield pg


def test_a_past_day_picked_with_the_dates_shows_its_figures(page, stack):
    from playwright.sync_api import expect  # noqa: PLC0415

    api = stack.api_ok("GET", f"/reports?from={DAY}&to={DAY}")
    log_in(page, "manager", "/ui/reports")
    expect(page.locator("header nav a[aria-current=page]")).to_have_text("报表")
    page.fill("#report-range input[name=from]", DAY)
    page.fill("#report-range input[name=to]", DAY)
    with page.expect_navigation():
        page.click("#report-range button[type=submit]")
    expect(page.locator("#report-period")).to_contain_text("2026-11-20（周五）营业日")
    expect(page.locator("#report-revenue b")).to_have_text("￥31.00")
    assert api["revenue_fen"] == 3100
    expect(page.locator("#report-till b")).to_have_text("￥25.00")
    expect(page.locator("#report-online b")).to_have_text("￥6.00")
    expect(page.locator("#report-revenue [data-compare=previous_day]")).to_contain_text("+210.0%")
    expect(page.locator("#report-payments tr[data-method=cash]")).to_contain_text("现金")
    expect(page.locator("#report-pickups tr[data-order-number=A101]")).to_contain_text("12:05:00")
    expect(page.locator("#report-pickups tr[data-order-number=A103]")).to_contain_text("已冲正")
    expect(page.locator("#report-chart svg text.chart-axis-label").last).to_contain_text("￥")
    expect(page.locator("#report-products tbody tr").first).to_contain_text("伊利 纯牛奶")
    shoot(page, "30-reports-past-day")

    # a range typed in: the week up to that day, each day a row, compared with the week before
    page.fill("#report-range input[name=from]", "2026-11-14")
    with page.expect_navigation():
        page.click("#report-range button[type=submit]")
    expect(page.locator("#report-period")).to_contain_text("2026-11-14 至 2026-11-20，共 7 天")
    expect(page.locator("#report-days tr[data-date='2026-11-20']")).to_contain_text("￥31.00")
    expect(page.locator("#report-days tr[data-date='2026-11-19']")).to_contain_text("￥10.00")
    expect(page.locator("#report-revenue [data-compare=previous_range]")).to_contain_text("2026-11-07 至 2026-11-13")
    shoot(page, "31-reports-a-week")

    # the quick links count back from the store's business day today
    today = date.fromisoformat(business_date(utcnow(), ZoneInfo("Asia/Shanghai")))
    page.click("#report-picker a[data-quick=last_31]")
    expect(page.locator("#report-period")).to_have_attribute("data-to", today.isoformat())
    expect(page.locator("#report-period")).to_have_attribute("data-from", (today - timedelta(days=30)).isoformat())
    expect(page.locator("#report-days tbody tr")).to_have_count(31)


def test_on_a_phone_the_report_fits_390px_without_sideways_scrolling(browser, stack):
    from playwright.sync_api import expect  # noqa: PLC0415

    with checked_page(browser, stack.base, PHONE, TIMEOUT_MS) as page:
        log_in(page, "manager", f"/ui/reports?from={DAY}&to={DAY}")
        expect(page.locator("#report-revenue b")).to_have_text("￥31.00")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"the page is {width} px wide at 390 px: it scrolls sideways"
        # the chart's hour and ￥ labels scaled to the phone: still at least 11 px high
        smallest = page.evaluate("Math.min(...[...document.querySelectorAll('#report-chart svg text')]"
                                 ".map(t => t.getBoundingClientRect().height))")
        assert smallest >= 11, f"chart labels are {smallest:.1f} px high on a phone"
        path = artifacts_dir() / "32-reports-phone-390.png"
        page.screenshot(path=str(path), full_page=False)
        assert png_size(path) == (PHONE["width"], PHONE["height"])
        page.locator("#report-chart").scroll_into_view_if_needed()
        path = artifacts_dir() / "33-reports-phone-390-chart.png"
        page.screenshot(path=str(path), full_page=False)
        assert png_size(path) == (PHONE["width"], PHONE["height"])
        # a range adds the by-day table: it scrolls inside its own box, never the page
        page.goto("/ui/reports?from=2026-11-14&to=2026-11-20")
        expect(page.locator("#report-days tr[data-date='2026-11-20']")).to_be_visible()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"a range's page is {width} px wide at 390 px"
        page.locator("#report-days").scroll_into_view_if_needed()
        path = artifacts_dir() / "34-reports-phone-390-days.png"
        page.screenshot(path=str(path), full_page=False)
        assert png_size(path) == (PHONE["width"], PHONE["height"])


def test_the_sales_export_downloads_through_the_link_and_adds_up_to_the_api(page, stack):
    api = stack.api_ok("GET", f"/reports?from={DAY}&to={DAY}")
    log_in(page, "manager", f"/ui/reports?from={DAY}&to={DAY}")
    for what, title, column, expected in (("sales", "销售和退货", "实收（退款为负）", api["till"]["net_fen"]),
                                          ("pickups", "核销记录", "计入营业额", api["online"]["fen"])):
        with page.expect_download() as caught:
            page.click(f"#report-exports a[data-export={what}]")
        download = caught.value
        assert download.suggested_filename == f"{title}-{DAY}-{DAY}.xlsx"  # the Chinese name (filename*)
        with open(download.path(), "rb") as file:  # a temporary name without .xlsx
            sheet = openpyxl.load_workbook(file).active
        header, *_, totals = list(sheet.iter_rows(values_only=True))
        assert round(totals[header.index(column)] * 100) == expected, (what, totals)
