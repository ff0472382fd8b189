"""收银台 (/ui/cashier): scan or type a code, hand an order over, refusals in words, coupons, the last
scans, reprint the last receipt; CSRF and login required. Keys, orders and coupons arrive through the
sync feed as in tests/test_verification.py; tokens are signed here as the cloud does."""

from __future__ import annotations

import html
import json
import re
import time

import pytest

from drivers.scan import Scan
from edge.core.classify import classify
from edge.core.clock import iso, utcnow
from edge.core.context import WriteContext
from edge.core.refusals import MESSAGES_ZH
from edge.store import db, orders, scans, spool, users
from edge.ui.web import TEXT
from tests.conftest import BARCODE, ean13, query, start_client
from tests.test_verification import COUPON, KEY, OTHER_KEY, STORE, coupon_token, feed, pickup_token, public, sign

CODE = "204613"
PASSWORD = "secret-pass-1"
FETCH = {"X-Requested-With": "fetch"}


def _order(order_id, number, code, **extra):
    import hashlib  # noqa: PLC0415

    return ("order.created", {
        "order_id": order_id, "number": number, "kind": "pickup", "total_fen": 1050,
        "lines": [{"sku": "DRK-001", "name": "农夫山泉", "qty": 2, "price_fen": 200},
                  {"sku": "SNK-001", "name": "乐事薯片", "qty": 1, "price_fen": 650}],
        "pickup_code_sha256": hashlib.sha256(code.encode()).hexdigest(), **extra})


def _with_conn(db_path, fn):
    conn = db.open_store_db(db_path)
    try:
        with db.transaction(conn):
            return fn(conn)
    finally:
        conn.close()


@pytest.fixture
def store(db_path):
    """A101 and A102 prepared (ready); A103 (received) and A104 (ready) of customers whose phones end
    in 5678; A105 received, its phone unknown (an older cloud sends none)."""
    feed(db_path, [("key.published", {"kid": "k1", "alg": "Ed25519", "public_key": public(KEY)}),
                   _order("o-1", "A101", CODE, customer_note="不要袋子", pickup_after="2026-11-22T02:30:00Z"),
                   _order("o-2", "A102", "777001"), ("coupon.defined", COUPON),
                   _order("o-3", "A103", "333001", customer_phone_last4="5678"),
                   _order("o-4", "A104", "444001", customer_phone_last4="5678"), _order("o-5", "A105", "555001")])
    now = iso(utcnow())
    ctx = WriteContext("kitchen", now, "2026-11-22")
    _with_conn(db_path, lambda conn: (users.add_user(conn, "wangfang", "王芳", "cashier", users.new_password(PASSWORD), now),
                                      users.add_user(conn, "boss", "李店长", "manager", users.new_password(PASSWORD), now),
                                      [orders.change_state(conn, order_id, orders.StateChange(to="ready", operator="备货员"),
                                                           ctx) for order_id in ("o-1", "o-2", "o-4")]))
    return db_path


@pytest.fixture
async def web(config, store):
    client = await start_client(config)
    try:
        yield client
    finally:
        await client.close()


async def log_in(client, name="wangfang") -> str:
    """Log in through the form; the session's CSRF token (the page's data-csrf)."""
    page = await (await client.get("/ui/login")).text()
    token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    resp = await client.post("/ui/login", data={"csrf": token, "name": name, "password": PASSWORD,
                                                "next": "/ui/cashier"}, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    page = await (await client.get("/ui/cashier")).text()
    return re.search(r'data-csrf="([^"]+)"', page).group(1)


async def post(client, path, csrf, data, headers=FETCH):
    resp = await client.post(path, data={"csrf": csrf, **data} if csrf else data, headers=headers)
    return resp.status, await resp.text()


def form_fields(page: str, form_id_marker: str) -> dict:
    """The hidden fields of the form holding the marker (e.g. 'id="confirm-handover"')."""
    end = page.index(form_id_marker)
    start = page.rindex("<form", 0, end)
    return {html.unescape(n): html.unescape(v) for n, v in
            re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page[start:end])}


def reason(page: str) -> str | None:
    m = re.search(r'class="refusal" data-reason="([^"]+)"', page)
    return m and m.group(1)


async def test_cashier_page_scan_confirm_and_used_once(web, store):
    csrf = await log_in(web)
    page = await (await web.get("/ui/cashier")).text()
    for marker in ('id="scan-form"', 'id="scan-input"', 'name="text"', "data-autofocus", 'id="scan-result"',
                   'id="last-scans"', 'data-live="cashier_scans"', 'id="reprint-last"', "收银台"):
        assert marker in page, marker

    token = pickup_token("o-1")
    status, answer = await post(web, "/ui/cashier/scan", csrf, {"text": token})
    assert status == 200, answer
    assert re.search(r'class="order-number">A101<', answer) and "农夫山泉" in answer and "乐事薯片" in answer
    assert 'id="confirm-handover"' in answer and "不要袋子" in answer and "离线核销" not in answer
    fields = form_fields(answer, 'id="confirm-handover"')
    assert fields["token"] == token and fields["form_id"] and fields["csrf"] == csrf

    status, done = await post(web, "/ui/cashier/handover", None, fields)
    assert status == 201, done
    assert 'class="handover-done"' in done and "已交货" in done and "未配置打印机" in done
    assert query(store, "SELECT state FROM orders WHERE id = 'o-1'") == [("picked_up",)]
    assert query(store, "SELECT operator, device FROM pickups WHERE order_id = 'o-1'") == [("王芳", "ui:wangfang")]
    assert query(store, "SELECT user_name, role, action, target FROM audit_log WHERE action = 'pickup.hand_over'") \
        == [("wangfang", "cashier", "pickup.hand_over", "o-1")]

    # a double click sends the same form again: it changes nothing more and still says done
    status, again = await post(web, "/ui/cashier/handover", None, fields)
    assert status == 201 and 'class="handover-done"' in again
    assert query(store, "SELECT count(*) FROM pickups") == [(1,)]
    assert query(store, "SELECT count(*) FROM audit_log WHERE action = 'pickup.hand_over'") == [(1,)]

    # scanned (or typed) again: when and by whom
    for text in (token, CODE):
        status, used = await post(web, "/ui/cashier/scan", csrf, {"text": text})
        assert status == 409 and reason(used) == "already_used", used
        assert "王芳" in used and "已于" in used and "核销" in used and "confirm-handover" not in used


async def test_typed_code_hand_over_and_wrong_codes_are_limited(web, store, config):
    csrf = await log_in(web)
    status, answer = await post(web, "/ui/cashier/scan", csrf, {"text": " ７７７００１ "})  # an IME's digits
    assert status == 200 and 'class="order-number">A102<' in answer, answer
    fields = form_fields(answer, 'id="confirm-handover"')
    assert fields["code"] == "777001" and "token" not in fields
    status, done = await post(web, "/ui/cashier/handover", None, fields)
    assert status == 201 and "handover-done" in done
    assert query(store, "SELECT method, operator FROM pickups WHERE order_id = 'o-2'") == [("code", "王芳")]

    # wrong codes: refused in words, then the till (this person) is locked like the API's tills
    for _ in range(config.verification.code_attempts):
        status, wrong = await post(web, "/ui/cashier/scan", csrf, {"text": "999999"})
        assert status == 404 and reason(wrong) == "bad_code" and "提货码不正确" in wrong
    status, locked = await post(web, "/ui/cashier/scan", csrf, {"text": CODE})
    assert status == 429 and reason(locked) == "rate_limited", locked
    # a token is not a typed code: still works
    status, answer = await post(web, "/ui/cashier/scan", csrf, {"text": pickup_token("o-1")})
    assert status == 200 and "A101" in answer


async def test_coupon_product_forged_and_bad_input(web, store):
    csrf = await log_in(web)
    status, answer = await post(web, "/ui/cashier/scan", csrf, {"text": coupon_token()})
    assert status == 200 and 'class="coupon"' in answer, answer
    for words in ("满10减2", "立减 ￥2.00", "满 ￥10.00 可用", "零食", "饮料", "剩余可用 1 次", "收银时"):
        assert words in answer, words

    forged = pickup_token("o-1")[:-8] + "AAAAAAAA"
    status, answer = await post(web, "/ui/cashier/scan", csrf, {"text": forged})
    assert status == 422 and reason(answer) == "bad_signature" and "伪造" in answer
    other_key = sign({"sub": "o-1", "sid": STORE, "iat": int(time.time()), "exp": int(time.time()) + 60,
                      "jti": "x"}, key=OTHER_KEY)
    status, answer = await post(web, "/ui/cashier/scan", csrf, {"text": other_key})
    assert reason(answer) == "bad_signature"
    elsewhere = pickup_token("o-1", sid="store-999")
    status, answer = await post(web, "/ui/cashier/scan", csrf, {"text": elsewhere})
    assert reason(answer) == "wrong_store" and "其他门店" in answer

    status, answer = await post(web, "/ui/cashier/scan", csrf, {"text": BARCODE["SNK-001"]})
    assert status == 200 and "乐事 薯片 原味 70g" in answer and "￥7.50" in answer and 'data-sku="SNK-001"' in answer
    status, answer = await post(web, "/ui/cashier/scan", csrf, {"text": ean13("692999999999")})
    assert status == 404 and reason(answer) == "unknown_barcode"
    status, answer = await post(web, "/ui/cashier/scan", csrf, {"text": "hello?"})
    assert status == 422 and reason(answer) == "unknown" and "无法识别" in answer

    before = query(store, "SELECT count(*) FROM audit_log")
    for text in ("   ", "x" * 5000):
        status, answer = await post(web, "/ui/cashier/scan", csrf, {"text": text})
        assert status == 422 and 'class="field-error"' in answer and "refusal" not in answer
    assert query(store, "SELECT count(*) FROM audit_log") == before
    # without JavaScript the whole page comes back, the answer in place
    status, answer = await post(web, "/ui/cashier/scan", csrf, {"text": coupon_token()}, headers={})
    assert status == 200 and 'id="scan-form"' in answer and 'class="coupon"' in answer


async def test_csrf_login_and_roles(web, store):
    # not logged in: the page sends to the login, a POST is refused
    resp = await web.get("/ui/cashier", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"].startswith("/ui/login")
    status, _ = await post(web, "/ui/cashier/handover", None, {"token": pickup_token("o-1"), "form_id": "f1"})
    assert status == 401
    csrf = await log_in(web)
    page = await (await web.get("/ui/cashier")).text()
    fields = form_fields((await post(web, "/ui/cashier/scan", csrf, {"text": pickup_token("o-1")}))[1],
                         'id="confirm-handover"')
    for bad in ({k: v for k, v in fields.items() if k != "csrf"}, {**fields, "csrf": "forged"}):
        status, _ = await post(web, "/ui/cashier/handover", None, bad)
        assert status == 403
    status, _ = await post(web, "/ui/cashier/handover", None, fields, headers={**FETCH, "Origin": "http://evil.example"})
    assert status == 403
    assert query(store, "SELECT state FROM orders WHERE id = 'o-1'") == [("ready",)]
    assert query(store, "SELECT count(*) FROM pickups") == [(0,)]
    assert query(store, "SELECT count(*) FROM audit_log") == [(0,)]
    assert "data-csrf" in page

    # a manager may open the till too
    await web.post("/ui/logout", data={"csrf": csrf})
    csrf = await log_in(web, "boss")
    resp = await web.get("/ui/cashier")
    assert resp.status == 200 and 'id="scan-form"' in await resp.text()


async def test_english_words(web, store):
    csrf = await log_in(web)
    await web.get("/ui/lang/en?next=/ui/cashier")
    page = await (await web.get("/ui/cashier")).text()
    assert "Scan, or type a pickup code" in page and "Reprint the last receipt" in page
    status, answer = await post(web, "/ui/cashier/scan", csrf, {"text": pickup_token("o-1")})
    assert "Hand over" in answer and "Items" in answer
    fields = form_fields(answer, 'id="confirm-handover"')
    status, done = await post(web, "/ui/cashier/handover", None, fields)
    assert "Handed over" in done and "No printer configured" in done
    status, used = await post(web, "/ui/cashier/scan", csrf, {"text": CODE})
    assert reason(used) == "already_used" and "Handed over on" in used and "by 王芳" in used
    assert "Find by order number or phone digits" in page
    status, answer = await post(web, "/ui/cashier/scan", csrf, {"text": "333001"})
    status, ask = await post(web, "/ui/cashier/handover", None, form_fields(answer, 'id="confirm-handover"'))
    assert "Not prepared yet: hand it over anyway?" in ask and "Hand over anyway" in ask and "New" in ask
    status, found = await post(web, "/ui/cashier/find", csrf, {"q": "5678"})
    assert "2 orders found: check and pick one" in found and "Pick" in found
    status, wrong = await post(web, "/ui/cashier/find", csrf, {"q": "567"})
    assert "Phone digits must be exactly the last 4" in wrong


def test_every_word_in_both_languages():
    keys = {k for k in TEXT["zh"] if k.startswith("cashier_")}
    assert keys and keys == {k for k in TEXT["en"] if k.startswith("cashier_")}
    assert all(f"cashier_reason_{r}" in TEXT["en"] for r in MESSAGES_ZH)


def _scan(conn, config, device, source, text, at):
    return scans.record(conn, Scan(device=device, source=source, text=text, raw=text.encode(), at=at),
                        classify(text, config.scanning.scales))


def _rows(page: str) -> list[tuple[str, str, str]]:
    """(seq, count, the row's HTML) of each row of the last scans, newest first."""
    return re.findall(r'<tr data-seq="(\d+)" data-count="(\d+)">(.*?)</tr>', page, re.S)


async def test_last_scans_say_what_they_meant_never_the_token(web, store, config):
    csrf = await log_in(web)
    page = await (await web.get("/ui/cashier?fragment=cashier_scans")).text()
    assert "还没有扫码记录" in page
    token, coupon, expired = pickup_token("o-1"), coupon_token(), pickup_token("o-2", exp=int(time.time()) - 600)
    t0 = time.time() - 30     # read half a minute ago: the hand-over below comes after
    _with_conn(store, lambda conn: [_scan(conn, config, f"dev-{source}", source, text, t0 + i) for i, (source, text)
                                    in enumerate((("serial", BARCODE["DRK-001"]), ("camera", token), ("api", coupon),
                                                  ("hid", "131234567890123456"), ("hid", "hello?"),
                                                  ("serial", expired), ("serial", "999999"),
                                                  ("camera", pickup_token("o-3"))))])
    page = await (await web.get("/ui/cashier?fragment=cashier_scans")).text()
    rows = _rows(page)
    assert [r[0] for r in rows] == ["8", "7", "6", "5", "4", "3", "2", "1"]  # newest first
    meaning = {seq: re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row)) for seq, _, row in rows}
    assert "农夫山泉" in meaning["1"]                                       # a product: its name
    assert "订单 A101" in meaning["2"] and "已备好待取" in meaning["2"]          # a pickup QR: number, state
    assert "满10减2" in meaning["3"]                                         # a coupon: its title
    assert "付款码" in meaning["4"] and "1312**********3456" in meaning["4"]  # a payment code: masked
    assert "无法识别" in meaning["5"]
    assert "已过期" in meaning["6"] and "A102" not in meaning["6"]           # refused: no order named
    assert "未找到订单" in meaning["7"]
    assert "订单 A103" in meaning["8"] and "新订单" in meaning["8"]
    for secret in (token, coupon, expired, token[:32], token.split(".")[1][:20], "131234567890123456", "s-1"):
        assert secret not in page, secret
    assert "look-up" in rows[6][2] and "look-up" not in rows[5][2]   # a scanner's pickup QR, not a coupon by API

    # looked up from the list and handed over: the token never reaches the browser, the seq names it
    status, answer = await post(web, "/ui/cashier/scan", csrf, {"seq": "2"})
    assert status == 200 and 'class="order-number">A101<' in answer and token not in answer, answer
    fields = form_fields(answer, 'id="confirm-handover"')
    assert fields["seq"] == "2" and "token" not in fields
    status, done = await post(web, "/ui/cashier/handover", None, fields)
    assert status == 201 and "handover-done" in done, done
    assert query(store, "SELECT method, jti FROM pickups WHERE order_id = 'o-1'") == [("token", "j-o-1")]
    page = await (await web.get("/ui/cashier?fragment=cashier_scans")).text()
    assert "核销成功" in {seq: row for seq, _, row in _rows(page)}["2"]
    status, answer = await post(web, "/ui/cashier/scan", csrf, {"seq": "999"})
    assert status == 422 and "field-error" in answer


async def test_the_same_code_read_again_and_again_is_one_row(web, store, config):
    """The camera sees a used code every few seconds: one row with a count, while every consumer of the
    journal still gets every scan."""
    await log_in(web)
    token = pickup_token("o-1")
    t0 = time.time() - 100
    _with_conn(store, lambda conn: _scan(conn, config, "cam-1", "camera", token, t0))
    status, done = await post(web, "/ui/cashier/handover", (await log_in(web)), {"token": token, "form_id": "h1"})
    assert status == 201, done

    def again(conn):
        t1 = time.time() + 1
        for i in range(5):          # 5 s apart, another device's scan in between
            _scan(conn, config, "cam-1", "camera", token, t1 + 5 * i)
            if i == 2:
                _scan(conn, config, "till-2", "serial", BARCODE["SNK-001"], t1 + 11)
        _scan(conn, config, "cam-1", "camera", token, t1 + 85)   # 65 s after the last: a new run
    _with_conn(store, again)
    rows = _rows(await (await web.get("/ui/cashier?fragment=cashier_scans")).text())
    assert [(seq, count) for seq, count, _ in rows] == [("8", "1"), ("7", "5"), ("5", "1"), ("1", "1")]
    assert "×5" in rows[1][2] and "已核销过" in rows[1][2] and "A101" in rows[1][2]
    assert "核销成功" in rows[3][2]          # the first reading, before the hand-over
    assert "已核销过" in rows[0][2] and "乐事" in rows[2][2]
    assert query(store, "SELECT count(*) FROM scans") == [(8,)]    # the journal keeps each scan


async def test_reprint_last_receipt(web, store, config):
    await log_in(web)
    page = await (await web.get("/ui/cashier")).text()
    fields = form_fields(page, 'id="reprint-last"')
    status, answer = await post(web, "/ui/cashier/reprint-last", None, fields)
    assert status == 404 and "还没有小票可以重打" in answer and 'id="reprint-last"' in answer

    ctx = WriteContext("till-1", iso(utcnow()), "2026-11-22")

    def receipt(conn):
        job = spool.enqueue(conn, "receipt", "receipt:s-1", {"sale_id": "s-1"}, ctx, printer="front")
        spool.finish(conn, job["id"], "printed", ctx)
        return job["id"]
    job_id = _with_conn(store, receipt)
    status, answer = await post(web, "/ui/cashier/reprint-last", None, fields)
    assert status == 201 and "已重打小票" in answer and "front" in answer, answer
    rows = query(store, "SELECT reprint_of, reprint, created_by FROM print_jobs WHERE reprint_of IS NOT NULL")
    assert rows == [(job_id, 1, "王芳")]
    assert query(store, "SELECT user_name, action, target FROM audit_log") == [("wangfang", "print.reprint",
                                                                                str(job_id))]
    # the answer carries a new form: the next click is a new reprint (the old form id changes nothing)
    next_fields = form_fields(answer, 'id="reprint-last"')
    assert next_fields["form_id"] != fields["form_id"]
    await post(web, "/ui/cashier/reprint-last", None, fields)
    assert query(store, "SELECT count(*) FROM print_jobs WHERE reprint_of IS NOT NULL") == [(1,)]
    assert json.loads(query(store, "SELECT payload FROM print_jobs WHERE reprint_of = ?", job_id)[0][0]) == \
        {"sale_id": "s-1"}


def test_offline_words():
    """While the cloud is down: the provisional notice on a pickup, and what still works (no cloud in these
    tests' app, so the templates are rendered directly with a link that is down)."""
    from edge.ui.web import _env, text  # noqa: PLC0415

    values = {"t": lambda key, **kw: text("zh", key, **kw), "time": lambda v, fmt="": v or "-", "csrf": "c",
              "form_id": "f", "link": {"state": "down", "minutes": 12, "since": time.time() - 12 * 60 - 5, "banner": True}}
    order = {"id": "o-1", "number": "A101", "state": "ready", "lines": [{"name": "农夫山泉", "qty": 2}],
             "pickup_after": None, "customer_note": None}
    page = _env.get_template("fragments/cashier_result.html").render(
        result={"type": "pickup", "order": order, "method": "token", "provisional": True, "token": "t"}, **values)
    assert "离线核销，待同步确认" in page and 'id="confirm-handover"' in page
    note = _env.get_template("fragments/cashier_offline.html").render(**values)
    assert "12 分钟前" in note and "扫码核销提货" in note


async def test_the_hand_over_verifies_the_token_once(web, store, monkeypatch):
    from tests.test_verification import _count_verifications

    csrf = await log_in(web)
    status, answer = await post(web, "/ui/cashier/scan", csrf, {"text": pickup_token("o-1")})
    assert status == 200, answer
    calls = _count_verifications(monkeypatch)
    status, done = await post(web, "/ui/cashier/handover", None, form_fields(answer, 'id="confirm-handover"'))
    assert status == 201 and 'class="handover-done"' in done, done
    # once, for both the hand-over and its audit line's target, and not on the store's writer
    assert len(calls) == 1 and calls[0] != "store-writer", calls
    assert query(store, "SELECT target FROM audit_log WHERE action = 'pickup.hand_over'") == [("o-1",)]


async def test_a_stored_scan_is_looked_up_with_its_stored_classification(web, store, config, monkeypatch):
    from edge.ui import cashier

    csrf = await log_in(web)
    token = pickup_token("o-1")
    item = _with_conn(store, lambda conn: scans.record(conn, Scan(
        device="dev-camera", source="camera", text="]Q1" + token, raw=token.encode(), at=time.time()),
        classify("]Q1" + token, config.scanning.scales)))
    calls = []
    monkeypatch.setattr(cashier, "classify", lambda *a, **k: calls.append(a) or classify(*a, **k))
    status, answer = await post(web, "/ui/cashier/scan", csrf, {"seq": str(item["seq"])})
    assert status == 200 and 'class="order-number">A101<' in answer, answer
    assert calls == []   # the router's classification, from the journal: the token without its ]Q1


# -- not prepared, finding an order, a manager's hand-over without the code ------------------------------

async def test_an_order_not_prepared_is_handed_over_only_when_confirmed(web, store):
    csrf = await log_in(web)
    status, answer = await post(web, "/ui/cashier/scan", csrf, {"text": "333001"})   # A103, received
    assert status == 200 and "A103" in answer and "尚未备好" in answer, answer
    status, ask = await post(web, "/ui/cashier/handover", None, form_fields(answer, 'id="confirm-handover"'))
    assert status == 200 and "尚未备好，确定交付？" in ask and 'id="confirm-not-ready"' in ask, ask
    assert "新订单" in ask and "received" not in ask.replace('"received"', "")
    assert query(store, "SELECT state FROM orders WHERE id = 'o-3'") == [("received",)]
    assert query(store, "SELECT count(*) FROM pickups") == [(0,)]
    fields = form_fields(ask, 'id="confirm-not-ready"')
    assert fields["confirm"] == "1" and fields["code"] == "333001" and fields["form_id"]
    # without JavaScript: the same two POSTs, the whole page each time
    status, done = await post(web, "/ui/cashier/handover", None, fields, headers={})
    assert status == 201 and 'class="handover-done"' in done and 'id="scan-form"' in done, done
    assert query(store, "SELECT state FROM orders WHERE id = 'o-3'") == [("picked_up",)]
    # a prepared order is not asked about
    status, answer = await post(web, "/ui/cashier/scan", csrf, {"text": "777001"})
    status, done = await post(web, "/ui/cashier/handover", None, form_fields(answer, 'id="confirm-handover"'))
    assert status == 201 and "handover-done" in done


async def test_find_an_order_by_number_or_phone_digits(web, store):
    csrf = await log_in(web)
    status, answer = await post(web, "/ui/cashier/find", csrf, {"q": "5678"})   # A103 and A104
    assert status == 200 and 'class="matches"' in answer, answer
    picks = re.findall(r'<tr data-order-id="([^"]+)">(.*?)</tr>', answer, re.DOTALL)
    assert [p[0] for p in picks] == ["o-4", "o-3"] or [p[0] for p in picks] == ["o-3", "o-4"]
    row = dict(picks)["o-3"]
    assert "A103" in row and "￥10.50" in row and "新订单" in row, row
    assert "o-3" not in re.sub(r'(data-order-id|value)="[^"]*"', "", answer)   # ids only in attributes
    status, one = await post(web, "/ui/cashier/find", csrf, {"order": "o-3"})
    assert status == 200 and 'class="pickup found-order"' in one and "A103" in one and "手机尾号 5678" in one
    assert "请顾客出示提货码" in one and "manual-handover" not in one   # a cashier is not shown the form

    for q in ("a102", "Ａ１０２", " A102 "):   # the number, whatever the case or width
        status, answer = await post(web, "/ui/cashier/find", csrf, {"q": q})
        assert status == 200 and 'class="order-number">A102<' in answer, (q, answer)
    status, answer = await post(web, "/ui/cashier/find", csrf, {"q": "A101"})
    assert status == 200 and 'data-order-id="o-1"' in answer
    before = query(store, "SELECT count(*) FROM audit_log")
    for q, words, code in (("Z999", "没有找到未取货的订单", 404), ("1234", "没有找到未取货的订单", 404),
                           ("567", "手机尾号须为 4 位数字", 422), ("15678", "手机尾号须为 4 位数字", 422),
                           ("  ", "请输入订单号或手机尾号", 422), ("A" * 40, "订单号太长", 422)):
        status, answer = await post(web, "/ui/cashier/find", csrf, {"q": q})
        assert status == code and words in answer and 'class="field-error"' in answer, (q, answer)
    status, answer = await post(web, "/ui/cashier/find", csrf, {"order": "no-such-order"})
    assert status == 404 and "没有找到" in answer
    assert query(store, "SELECT count(*) FROM audit_log") == before

    # typed in the scan field, what is no code is looked for as an order number or phone digits
    status, answer = await post(web, "/ui/cashier/scan", csrf, {"text": "5678"})
    assert status == 200 and 'class="matches"' in answer and "A103" in answer and "A104" in answer
    status, answer = await post(web, "/ui/cashier/scan", csrf, {"text": "a105"})
    assert status == 200 and 'class="pickup found-order"' in answer and "A105" in answer
    status, answer = await post(web, "/ui/cashier/scan", csrf, {"text": "1234"})
    assert status == 422 and reason(answer) == "unknown"


async def test_a_manager_hands_over_without_the_code_with_a_reason(web, store):
    csrf = await log_in(web)
    # a cashier may not: refused, nothing changed
    status, _ = await post(web, "/ui/cashier/handover-manual", csrf,
                           {"order": "o-4", "reason": "顾客手机没电", "form_id": "m0"})
    assert status == 403
    await web.post("/ui/logout", data={"csrf": csrf})
    csrf = await log_in(web, "boss")
    status, one = await post(web, "/ui/cashier/find", csrf, {"order": "o-4"})
    fields = form_fields(one, 'id="manual-handover"')
    assert fields["order"] == "o-4" and 'name="reason"' in one
    for blank in ("", "   "):          # no reason: nothing happens
        status, answer = await post(web, "/ui/cashier/handover-manual", None, {**fields, "reason": blank})
        assert status == 422 and "请填写无码交货的原因" in answer, answer
    status, answer = await post(web, "/ui/cashier/handover-manual", None, {**fields, "reason": "长" * 201})
    assert status == 422 and "原因太长" in answer
    status, answer = await post(web, "/ui/cashier/handover-manual", None,
                                {**fields, "order": "no-such", "reason": "顾客手机没电"})
    assert status == 404 and reason(answer) == "unknown_order", answer
    assert query(store, "SELECT count(*) FROM pickups") == [(0,)]
    assert query(store, "SELECT count(*) FROM audit_log WHERE action LIKE 'pickup.%'") == [(0,)]
    assert query(store, "SELECT count(*) FROM outbox WHERE type = 'pickup.verified'") == [(0,)]

    status, done = await post(web, "/ui/cashier/handover-manual", None, {**fields, "reason": " 顾客手机没电，已核对身份 "})
    assert status == 201 and 'class="handover-done"' in done and "无码交货，原因：顾客手机没电，已核对身份" in done, done
    assert query(store, "SELECT method, jti, operator, manual_reason FROM pickups WHERE order_id = 'o-4'") == \
        [("code", None, "李店长", "顾客手机没电，已核对身份")]
    assert query(store, "SELECT state FROM orders WHERE id = 'o-4'") == [("picked_up",)]
    (audit,) = query(store, "SELECT user_name, role, target, detail FROM audit_log WHERE action = 'pickup.hand_over_manual'")
    assert audit[:3] == ("boss", "manager", "o-4")
    assert json.loads(audit[3]) == {"reason": "顾客手机没电，已核对身份"}
    audit_page = await (await web.get("/ui/audit")).text()
    assert "无码交货" in audit_page and "原因: 顾客手机没电，已核对身份" in audit_page
    (event,) = query(store, "SELECT payload FROM outbox WHERE type = 'pickup.verified'")
    payload = json.loads(event[0])
    assert payload["method"] == "code" and payload["jti"] is None and payload["manual_reason"] == "顾客手机没电，已核对身份"
    # the same form again (a double click): nothing more
    status, again = await post(web, "/ui/cashier/handover-manual", None, {**fields, "reason": " 顾客手机没电，已核对身份 "})
    assert status == 201 and "handover-done" in again and query(store, "SELECT count(*) FROM pickups") == [(1,)]
    # a new form for an order already handed over: refused in words
    status, used = await post(web, "/ui/cashier/handover-manual", None,
                              {**fields, "form_id": "m2", "reason": "再试一次"})
    assert status == 409 and reason(used) == "already_used"


async def test_a_manual_hand_over_of_an_order_not_prepared_asks_first(web, store):
    csrf = await log_in(web, "boss")
    status, one = await post(web, "/ui/cashier/find", csrf, {"order": "o-5"})   # A105, received
    assert "尚未备好" in one
    fields = {**form_fields(one, 'id="manual-handover"'), "reason": "顾客忘带手机"}
    status, ask = await post(web, "/ui/cashier/handover-manual", None, fields)
    assert status == 200 and "尚未备好，确定交付？" in ask
    assert query(store, "SELECT count(*) FROM pickups") == [(0,)]
    confirm = form_fields(ask, 'id="confirm-not-ready"')
    assert confirm["reason"] == "顾客忘带手机" and confirm["order"] == "o-5" and confirm["confirm"] == "1"
    status, done = await post(web, "/ui/cashier/handover-manual", None, confirm)
    assert status == 201 and "handover-done" in done
    assert query(store, "SELECT manual_reason FROM pickups WHERE order_id = 'o-5'") == [("顾客忘带手机",)]



def test_a_flood_of_one_code_does_not_push_the_other_scans_out_of_the_list(store, config):
    """1,200 readings of one code (more than a page of the journal): still one row, and the scans
    before it are still listed under it."""
    t0 = time.time() - 1000
    token = pickup_token("o-1")

    def flood(conn):
        for i, sku in enumerate(("DRK-001", "SNK-001")):
            _scan(conn, config, "till-1", "serial", BARCODE[sku], t0 + i)
        for i in range(1200):
            _scan(conn, config, "cam-1", "camera", token, t0 + 10 + i * 0.5)
        return scans.latest_runs(conn, 10, 60.0)
    runs = _with_conn(store, flood)
    assert [(r["device"], r["count"]) for r in runs] == [("cam-1", 1200), ("till-1", 1), ("till-1", 1)]
    assert runs[0]["first_seq"] == 3 and runs[0]["seq"] == 1202 and runs[0]["detail"]["kind"] == "pickup_token"
