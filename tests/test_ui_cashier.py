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
from edge.store import db, scans, spool, users
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
    feed(db_path, [("key.published", {"kid": "k1", "alg": "Ed25519", "public_key": public(KEY)}),
                   _order("o-1", "A101", CODE, customer_note="不要袋子", pickup_after="2026-11-22T02:30:00Z"),
                   _order("o-2", "A102", "777001"), ("coupon.defined", COUPON)])
    now = iso(utcnow())
    _with_conn(db_path, lambda conn: (users.add_user(conn, "wangfang", "王芳", "cashier", users.new_password(PASSWORD), now),
                                      users.add_user(conn, "boss", "李店长", "manager", users.new_password(PASSWORD), now)))
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
    assert query(store, "SELECT state FROM orders WHERE id = 'o-1'") == [("received",)]
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


def test_every_word_in_both_languages():
    keys = {k for k in TEXT["zh"] if k.startswith("cashier_")}
    assert keys and keys == {k for k in TEXT["en"] if k.startswith("cashier_")}
    assert all(f"cashier_reason_{r}" in TEXT["en"] for r in MESSAGES_ZH)


async def test_last_scans_and_look_up_from_a_hardware_scan(web, store, config):
    csrf = await log_in(web)
    page = await (await web.get("/ui/cashier?fragment=cashier_scans")).text()
    assert "还没有扫码记录" in page
    token = pickup_token("o-1")

    def record(conn):
        for i, (source, text) in enumerate((("serial", BARCODE["DRK-001"]), ("camera", token),
                                            ("api", coupon_token()))):
            scans.record(conn, Scan(device=f"dev-{source}", source=source, text=text, raw=text.encode(),
                                    at=time.time() + i), classify(text, config.scanning.scales))
    _with_conn(store, record)
    page = await (await web.get("/ui/cashier?fragment=cashier_scans")).text()
    rows = re.findall(r'<tr data-seq="(\d+)">(.*?)</tr>', page, re.S)
    assert [r[0] for r in rows] == ["3", "2", "1"]  # newest first
    assert "提货二维码" in rows[1][1] and "dev-camera" in rows[1][1] and "…" in rows[1][1]
    assert "look-up" in rows[1][1] and "look-up" not in rows[0][1] and "look-up" not in rows[2][1]
    status, answer = await post(web, "/ui/cashier/scan", csrf, {"seq": rows[1][0]})
    assert status == 200 and 'class="order-number">A101<' in answer
    status, answer = await post(web, "/ui/cashier/scan", csrf, {"seq": "999"})
    assert status == 422 and "field-error" in answer


async def test_reprint_last_receipt(web, store, config):
    csrf = await log_in(web)
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
