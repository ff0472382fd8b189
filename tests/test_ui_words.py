"""Every dashboard page, in Chinese and English, on a desktop (1366x768) and a phone (390x844), in Chromium.

The pages are not listed here: they come from edge.ui.web.PAGES (every GET page a module registers), so a
page added tomorrow is walked too. A page with a path parameter gets a real value: an order of the stack,
a SKU of the catalog, or else the first link to it found on the pages walked before it.

On each page: a screenshot (test-artifacts/screenshots/words-LANG-SIZE-PAGE.png), no horizontal overflow
of the page at 390 px (a wide table scrolls inside its .table-wrap), no header or cell squeezed to one
character per line, chart labels at least 10 px high, and no machine word in the visible text
(tests/screen_words.py: states, event types, class names, snake_case, UUIDs, ISO times, "0 分钟", and on
a Chinese page the English of the app's own texts). Each page is loaded once per language and measured
at both sizes, the viewport resized in between (measure_at_every_size says why that is the same). One
test per language lists every problem of every page, at both sizes, at once.

The cloud link indicator: the hub stops, and the header's indicator turns red without a reload.
"""

from __future__ import annotations

import re

import pytest

from tests.browser import LOCAL_ONLY, PHONE, STORE_ID, USERS, VIEWPORT, running_stack, shoot
from tests.conftest import CATALOG
from tests.helpers_daemon import wait_for
from tests.screen_words import internal_words

TIMEOUT_MS = 10_000
SIZES = {"desktop": VIEWPORT, "phone": PHONE}
PARAM = re.compile(r"\{(\w+)(?::[^{}]*)?\}")
TYPED = "hello_world-42"  # a scan no code matches: the till lists it as typed (data, not a machine word)

# What the page measures in one go: its text, its width, squeezed cells, tiny chart labels, its links.
MEASURE = """() => {
  const font = parseFloat(getComputedStyle(document.body).fontSize);
  const squeezed = [...document.querySelectorAll('th, td')].filter(cell => {
    const words = cell.innerText.trim(), box = cell.getBoundingClientRect();
    return box.width > 0 && words.length > 1 && box.width < font * 1.4;
  }).map(cell => cell.innerText.trim());
  const tiny = [...document.querySelectorAll('svg text')].filter(label => {
    const box = label.getBoundingClientRect();
    return box.height > 0 && box.height < 10;
  }).map(label => label.textContent);
  return {text: document.body.innerText, scroll: document.documentElement.scrollWidth, width: window.innerWidth,
          squeezed, tiny, links: [...document.querySelectorAll('a[href^="/ui/"]')].map(a => a.getAttribute('href'))};
}"""


def dashboard_pages() -> list[tuple[str | None, str]]:
    """(role, path) of every GET page of the dashboard, as the page modules registered them."""
    import edge.ui  # noqa: F401, PLC0415 (importing the package registers its pages)
    from edge.ui.web import PAGES  # noqa: PLC0415

    found = []
    for p in PAGES:
        if p.method != "GET" or p.template is None:
            # no template: /ui/lang/{lang} (a redirect that sets the language) and the downloads (Excel, CSV)
            continue
        if (p.role, p.path) not in found:
            found.append((p.role, p.path))
    return sorted(found, key=lambda rp: (bool(PARAM.search(rp[1])), rp[1]))  # the plain ones first: their links


def route_pattern(path: str) -> re.Pattern:
    parts, last = [], 0
    for m in PARAM.finditer(path):
        parts.append(re.escape(path[last:m.start()]))
        parts.append("[^/?#]+")
        last = m.end()
    parts.append(re.escape(path[last:]))
    return re.compile("".join(parts) + "$")


# -- the scanner's own check: a page broken on purpose is caught, a clean one passes -------------------

BROKEN = """<main><h1>订单</h1><table><tr><th>状态</th><th>时间</th></tr>
<tr><td>picked_up</td><td>2026-03-05T08:15:00Z</td></tr></table>
<p class="error">ConnectionRefusedError: [Errno 111]</p><p>云端已断开 0 分钟</p>
<p>order 3f2b8c1e-9a4d-4e2f-8b1c-0d9e8f7a6b5c · sale.recorded · Ready for pickup · local · o-b459a43d0eda43a483a3c1ee88208b71 · shift.close</p></main>"""
CLEAN = """<main><h1>订单</h1><table><tr><th>状态</th><th>时间</th></tr>
<tr><td>已自提</td><td>03-05 16:15</td></tr></table>
<p>云端已断开 · 刚刚</p><details class="tech"><summary>技术信息</summary><code>ConnectionRefusedError</code></details>
<p>订单 A1024 · 销售 · 乐事 薯片 原味 70g SNK-001 ￥7.50</p></main>"""

WIDE = """<main><h1>订单</h1><p style="width: 600px">一行六百像素宽的字</p></main>"""


def test_the_scanner_catches_a_page_broken_on_purpose(browser):
    from edge.ui.web import TEXT  # noqa: PLC0415

    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    try:
        page.set_content(BROKEN)
        found = internal_words(page.evaluate(MEASURE)["text"], "zh", text_table=TEXT)
        page.set_content(CLEAN)
        clean = internal_words(page.evaluate(MEASURE)["text"], "zh", ["乐事 薯片 原味 70g", "SNK-001"], TEXT)
        # the walk resizes a loaded page rather than loading it again: the measure sees the new layout
        page.set_content(WIDE)
        wide = {}
        for size, viewport in SIZES.items():
            page.set_viewport_size(viewport)
            wide[size] = problems_of(page.evaluate(MEASURE), "zh", size, [])
    finally:
        context.close()
    assert wide["desktop"] == [] and len(wide["phone"]) == 1, wide
    assert wide["phone"][0].startswith("wider than the phone: 6") and wide["phone"][0].endswith(" px in 390"), wide
    for expected in ("order state: picked_up", "ISO time: 2026-03-05T08:15:00Z", "class name: ConnectionRefusedError",
                     "zero minutes: 0 分钟", "UUID: 3f2b8c1e-9a4d-4e2f-8b1c-0d9e8f7a6b5c",
                     "event type: sale.recorded", "English text: Ready for pickup", "English word: local",
                     "id: o-b459a43d0eda43a483a3c1ee88208b71", "dotted code: shift.close"):
        assert expected in found, (expected, found)
    assert clean == [], clean  # the folded technical details are not visible text


def test_the_scanner_lets_english_words_be_english_and_codes_be_codes():
    assert internal_words("Order A1024 is ready · Cash · 3 min ago (e.g. a note)", "en") == []
    assert internal_words("State: picked_up", "en") == ["order state: picked_up", "snake_case: picked_up"]
    assert internal_words("0 min ago", "en") == ["zero minutes: 0 min"]
    assert internal_words("10 分钟前 · 2.0 分钟", "zh") == []
    assert internal_words("SKU · IT · 58mm", "zh") == []


# -- the walk ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("ui-words")) as s:
        yield s


@pytest.fixture(scope="module")
def shop(browser, stack):
    """Something on every page: orders (one marked ready on its page, so the audit log names it), a sale, a
    dead letter, an adjustment, scans."""
    order = stack.hub.new_order([{"sku": "SNK-001", "qty": 1}, {"sku": "DRK-001", "qty": 2}], note="请尽快备货")
    stack.wait_order(order["order_id"])
    stack.api_ok("POST", "/sales", {"lines": [{"sku": "DRK-002", "qty": 2}],
                                    "payments": [{"method": "cash", "amount_fen": 700}]}, key="words-sale-1")
    stack.api_ok("POST", "/sales", {"lines": [{"sku": LOCAL_ONLY, "qty": 1}],
                                    "payments": [{"method": "wechat", "amount_fen": 1590}]}, key="words-sale-2")
    stack.api_ok("POST", "/adjustments", {"lines": [{"sku": "SNK-001", "qty": -1}], "note": "破损"}, key="words-adj-1")
    for text, typed in ((CATALOG["DAI-001"][5][0], False), (TYPED, True)):
        stack.api_ok("POST", "/scans", {"text": text, "typed": typed}, key=f"words-scan-{text}")
    wait_for(lambda: stack.api_ok("GET", "/sync/dead-letters")["items"], 15, "the hub to reject the local product",
             stack.logs)
    ready = stack.hub.new_order([{"sku": "DAI-001", "qty": 1}])
    stack.wait_order(ready["order_id"])
    context, page = open_as(browser, stack, "manager", "zh", "desktop")
    try:
        page.goto(f"/ui/orders/{ready['order_id']}")
        with page.expect_navigation():
            page.click("#mark-ready")
    finally:
        context.close()
    # the cashier's closed shift (交班, opened and closed on the dashboard: a cashier sees only her own) and a
    # count sheet (盘点单), for their pages
    context, page = open_as(browser, stack, "cashier", "zh", "desktop")
    try:
        page.goto("/ui/shift")
        page.select_option("#open-form select[name=till]", "local")
        page.fill("#open-form input[name=float]", "200")
        with page.expect_navigation():
            page.click("#open-shift-button")
        page.fill("#close-form input[name=counted]", "205")
        with page.expect_navigation():
            page.click("#close-shift")
        shift_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    finally:
        context.close()
    sheet = stack.api_ok("POST", "/count-sheets", {"category": "零食"}, key="words-count-sheet")
    numbers = [o["number"] for o in stack.api_ok("GET", "/orders?limit=20")["items"]]
    data = [spec[0] for spec in CATALOG.values()] + list(CATALOG) + [code for spec in CATALOG.values()
                                                                     for code in spec[5]]
    data += [part for name, display, _ in USERS.values() for part in (name, display)]
    data += ["好邻居便利店 五道口店", STORE_ID, "counter", TYPED, "请尽快备货", "破损", *numbers]
    return {"order_id": order["order_id"], "sku": "SNK-001", "shift_id": shift_id,
            "number": str(sheet["number"]), "data": data}


def open_as(browser, stack, role: str | None, lang: str, size: str):
    context = browser.new_context(viewport=SIZES[size], locale="zh-CN", base_url=stack.base)
    context.set_default_timeout(TIMEOUT_MS)
    context.add_cookies([{"name": "se_lang", "value": lang, "url": stack.base}])
    page = context.new_page()
    if role is not None:
        name, _, password = USERS[role]
        page.goto("/ui/login")
        page.fill("form.login input[name=name]", name)
        page.fill("form.login input[name=password]", password)
        with page.expect_navigation():
            page.click("form.login button[type=submit]")
        assert "/ui/login" not in page.url, f"could not log in as {name}"
    return context, page


def problems_of(measured: dict, lang: str, size: str, data: list[str]) -> list[str]:
    from edge.ui.web import TEXT  # noqa: PLC0415

    found = internal_words(measured["text"], lang, data, TEXT)
    if size == "phone" and measured["scroll"] > measured["width"]:
        found.append(f"wider than the phone: {measured['scroll']} px in {measured['width']}")
    found += [f"squeezed to a character a line: {words!r}" for words in measured["squeezed"]]
    if size == "phone":
        found += [f"chart label under 10 px: {label!r}" for label in measured["tiny"]]
    return found


def measure_at_every_size(page, lang: str, name: str, data: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """The loaded page at each size of SIZES, with a screenshot at each: (its links, its problems by size).
    The viewport is resized, the page not loaded again: the same as loading it at that size, since the
    layout follows the viewport (app.css's media queries) and no page script or server answer depends
    on the width."""
    links, found = [], {}
    for size, viewport in SIZES.items():
        if page.viewport_size != viewport:
            page.set_viewport_size(viewport)
        measured = page.evaluate(MEASURE)
        assert measured["width"] == viewport["width"], (name, size, measured["width"])
        shoot(page, f"words-{lang}-{size}-{name}", viewport)
        links, found[size] = measured["links"], problems_of(measured, lang, size, data)
    return links, found


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_every_page_in_words_a_person_reads(browser, stack, shop, lang):
    """Each page is loaded once per language and checked at both sizes (measure_at_every_size)."""
    known = {key: shop[key] for key in ("order_id", "sku", "shift_id", "number")}
    links: list[str] = []
    problems: dict[str, list[str]] = {}
    sessions = {}
    walked = 0
    try:
        for role, route in dashboard_pages():
            for who in ((None,) if role is None else ("cashier", "manager") if role == "cashier" else ("manager",)):
                path = route
                for name in PARAM.findall(route):
                    if name in known:
                        path = PARAM.sub(lambda m, n=name: known[n] if m.group(1) == n else m.group(0), path, count=1)
                if PARAM.search(path):
                    pattern = route_pattern(route)
                    path = next((link for link in links if pattern.match(link.split("?")[0])), None)
                    if path is None:
                        problems[route] = [f"no value for its path parameter: add one to `known` in {__name__}, "
                                           "or link to the page from another"]
                        continue
                if who not in sessions:
                    sessions[who] = open_as(browser, stack, who, lang, "desktop")
                page = sessions[who][1]
                if page.viewport_size != VIEWPORT:
                    page.set_viewport_size(VIEWPORT)
                response = page.goto(path)
                assert response.status == 200, (who, path, response.status)
                where = page.url.split(stack.base)[1]
                slug = re.sub(r"[^a-z0-9]+", "-", f"{who or 'guest'}{where}".lower()).strip("-")
                seen, found = measure_at_every_size(page, lang, slug, shop["data"])
                links += seen
                walked += 1
                for size, words in found.items():
                    if words:
                        problems[f"{who} {where} at {size}"] = words
    finally:
        for context, _ in sessions.values():
            context.close()
    assert walked >= len(dashboard_pages()), f"only {walked} pages walked"
    assert not problems, "\n".join(f"{where}: {'; '.join(found)}" for where, found in problems.items())


def test_the_status_page_in_words_on_every_screen(browser, stack, shop):
    """The status page at / (outside the dashboard's PAGES): the same checks, as a guest and a manager."""
    for who in (None, "manager"):
        context, page = open_as(browser, stack, who, "zh", "desktop")
        try:
            assert page.goto("/").status == 200
            _, found = measure_at_every_size(page, "zh", f"{who or 'guest'}-status", shop["data"])
            assert not any(found.values()), (who, found)
        finally:
            context.close()


def test_the_link_indicator_turns_red_without_a_reload(browser, stack, shop):
    """Last in the module: it stops the hub."""
    from playwright.sync_api import expect  # noqa: PLC0415

    context, page = open_as(browser, stack, "manager", "zh", "desktop")
    try:
        indicator = page.locator("header [data-live=link] .link-state")
        expect(indicator).to_have_attribute("data-state", "online")
        online = indicator.evaluate("e => getComputedStyle(e).color")
        page.evaluate("window.__notReloaded = true")
        stack.hub.stop()
        expect(indicator).to_have_attribute("data-state", "down", timeout=15_000)
        expect(indicator).to_have_class(re.compile(r"\blink-down\b"))
        down = indicator.evaluate("e => getComputedStyle(e).color")
        assert page.evaluate("window.__notReloaded === true"), "the page was reloaded"
        assert (online, down) == ("rgb(10, 125, 40)", "rgb(198, 40, 40)"), (online, down)  # --ok, then --bad
        expect(indicator).to_contain_text(re.compile(r"云端已断开 · (刚刚|\d+ 秒前)"))
        expect(page.locator("#sync-health .pill")).to_have_class(re.compile(r"\bbad\b"))
        # the link's error (English, from the HTTP client) is folded away: the page is still in words
        assert problems_of(page.evaluate(MEASURE), "zh", "desktop", shop["data"]) == []
        shoot(page, "words-link-down")
    finally:
        context.close()
