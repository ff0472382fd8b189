"""会员 /ui/members in headless Chromium (tests/browser.py's Stack), with member sales in the store: online
with the cloud's hold, offline within the caps, and a return. At 1366x768 and on a phone (390x844), in
Chinese and English: no sideways scrolling of the page, no cell squeezed to a character a line, no machine
word (tests/screen_words.py), and the figures on screen. Screenshots in test-artifacts/screenshots/."""

from __future__ import annotations

import pytest

from edge.core.context import WriteContext
from edge.core.schemas import ReturnIn, SaleIn
from edge.store import db, members, sales
from edge.store.member_sales import Hold, MemberChecks
from tests.browser import PHONE, VIEWPORT, checked_page, running_stack, shoot
from tests.screen_words import internal_words
from tests.test_member_sales import PROGRAM
from tests.test_members import CHAIN, KEY_PUBLIC, NOW, STORE, feed, issued
from tests.test_ui_browser import TIMEOUT_MS, log_in
from tests.test_ui_words import MEASURE

DAY = "2026-11-29"
HOLD = Hold("h-00000000-0000-4000-8000-00000000cafe", 300, 2000, 980, 3000)


def member_sales(conn) -> None:
    """Three sales of 张* 138****5678 (金卡) on DAY and a return of part of the first."""
    feed(conn, [("key.published", {"kid": "k1", "alg": "Ed25519", "public_key": KEY_PUBLIC}),
                ("member.program", PROGRAM)])
    with db.transaction(conn):
        members.verify_member_code(conn, issued().code(NOW), chain=CHAIN, store_id=STORE, now=NOW)
    ref = {"member_id": "m-000123"}
    for n, (lines, payments, hold) in enumerate((
            ([{"sku": "SNK-001", "qty": 4}], [{"method": "points", "amount_fen": 300},
                                              {"method": "stored_value", "amount_fen": 2000},
                                              {"method": "cash", "amount_fen": 1000}], HOLD),
            ([{"sku": "DRK-001", "qty": 5}], [{"method": "points", "amount_fen": 200},
                                              {"method": "cash", "amount_fen": 1000}], None),
            ([{"sku": "DRK-002", "qty": 1}], [{"method": "wechat", "amount_fen": 333}], None))):
        ctx = WriteContext("till-1", members.iso_unix(NOW + 1 + n), DAY)
        with db.transaction(conn):
            sale = sales.record_sale(conn, SaleIn.model_validate({"lines": lines, "payments": payments, "member": ref}),
                                     ctx, None, frozenset(), MemberChecks(CHAIN, STORE, NOW + 1 + n, hold=hold))["sale"]
        if n == 0:
            first = sale
    with db.transaction(conn):
        sales.record_return(conn, first["id"], ReturnIn.model_validate(
            {"lines": [{"line_no": 1, "qty": 1}], "refund_method": "cash"}), WriteContext("till-1",
                                                                                           members.iso_unix(NOW + 9), DAY))


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("members-browser"), prepare=member_sales,
                       store_config=f'chain = "{CHAIN}"') as s:
        yield s


@pytest.mark.parametrize("size", ["desktop", "phone"])
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_the_members_page_on_a_desktop_and_a_phone(browser, stack, lang, size):
    from edge.ui.web import TEXT  # noqa: PLC0415

    viewport = PHONE if size == "phone" else VIEWPORT
    with checked_page(browser, stack.base, viewport, TIMEOUT_MS) as page:
        log_in(page, "manager", f"/ui/members?date={DAY}")
        if lang == "en":
            page.goto(f"/ui/lang/en?next=/ui/members%3Fdate%3D{DAY}")
        page.wait_for_selector("#members-day")
        seen = page.evaluate(MEASURE)
        shoot(page, f"members-{lang}-{size}", viewport)
    assert seen["scroll"] <= seen["width"], f"the page scrolls sideways at {viewport['width']} px"
    assert seen["squeezed"] == [], seen["squeezed"]
    assert internal_words(seen["text"], lang, ["张* 138****5678", "金卡"], TEXT) == []
    text = seen["text"]
    if lang == "zh":
        assert "3 笔，1 位会员" in text and "待云端确认" in text and "退货退回积分" in text
    else:
        assert "3 sales, 1 members" in text and "Waiting for the cloud" in text
    assert "m-000123" not in text
