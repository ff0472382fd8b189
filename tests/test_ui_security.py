"""The dashboard's locks: every page and action needs a session and the right role, every POST its CSRF
token and our own origin; cookies are HttpOnly and SameSite; errors show no trace and no secret.

The checks walk edge.ui.web.PAGES, so a page added later is covered without touching this file.
"""

from __future__ import annotations

import re

import pytest

from edge.core.clock import iso, utcnow
from edge.store import db, users
from edge.ui import web
from tests.conftest import dump

PASSWORD = "correct-horse-1"


def make_users(db_path):
    conn = db.open_store_db(db_path)
    try:
        with db.transaction(conn):
            users.add_user(conn, "cash", "王芳", "cashier", users.new_password(PASSWORD), iso(utcnow()))
            users.add_user(conn, "boss", "张店长", "manager", users.new_password(PASSWORD), iso(utcnow()))
    finally:
        conn.close()


async def log_in(client, name: str, password: str = PASSWORD, next_path: str = "/ui/"):
    await client.get("/ui/login")
    login_csrf = client.session.cookie_jar.filter_cookies(client.make_url("/"))["se_login_csrf"].value
    return await client.post("/ui/login", data={"csrf": login_csrf, "name": name, "password": password,
                                                "next": next_path}, allow_redirects=False)


async def session_csrf(client) -> str:
    html = await (await client.get("/ui/cashier")).text()  # every page carries the session's token
    match = re.search(r'data-csrf="([^"]*)"', html)
    assert match and match.group(1), "no CSRF token on the page"
    return match.group(1)


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


PROTECTED = [p for p in web.PAGES if p.role is not None]


@pytest.fixture
def people(db_path):
    make_users(db_path)
    return db_path


async def test_every_page_and_action_needs_a_session(client, people):
    for p in PROTECTED:
        resp = await client.request(p.method, concrete(p.path), allow_redirects=False)
        if p.method == "GET":
            assert resp.status == 303 and resp.headers["Location"].startswith("/ui/login"), p.path
        else:
            assert resp.status == 401, (p.method, p.path, resp.status)


async def test_manager_pages_refuse_a_cashier(client, people):
    assert (await log_in(client, "cash")).status == 303
    csrf = await session_csrf(client)
    before = dump(people)
    for p in [p for p in PROTECTED if p.role == "manager"]:
        resp = await client.request(p.method, concrete(p.path), data={"csrf": csrf, "form_id": "f"},
                                    allow_redirects=False)
        assert resp.status == 403, (p.method, p.path, resp.status)
    assert _without_sessions(dump(people)) == _without_sessions(before)


def _without_sessions(text: str) -> str:  # the session's sliding expiry is the only thing a visit may change
    return "\n".join(line for line in text.splitlines() if not line.startswith('INSERT INTO "sessions"'))


async def test_posts_need_the_csrf_token_and_our_origin(client, people):
    assert (await log_in(client, "boss")).status == 303
    csrf = await session_csrf(client)
    before = _without_sessions(dump(people))
    for p in [p for p in PROTECTED if p.method == "POST"]:
        path = concrete(p.path)
        for data, headers in (({"form_id": "f"}, {}),                                  # no token
                              ({"csrf": "wrong", "form_id": "f"}, {}),                 # a wrong one
                              ({"csrf": csrf, "form_id": "f"}, {"Origin": "http://evil.example"})):  # cross-site
            resp = await client.post(path, data=data, headers=headers, allow_redirects=False)
            assert resp.status == 403, (path, data, headers, resp.status)
    assert _without_sessions(dump(people)) == before


async def test_session_cookie_is_httponly_and_strict(client, people):
    resp = await client.get("/ui/login")
    assert "HttpOnly" in resp.headers["Set-Cookie"] and "SameSite=Strict" in resp.headers["Set-Cookie"]
    resp = await log_in(client, "boss")
    cookie = [c for c in resp.headers.getall("Set-Cookie") if c.startswith("se_session=")][0]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie


async def test_wrong_password_no_session_and_no_user_enumeration(client, people):
    wrong = await log_in(client, "boss", "nope-nope-nope")
    nobody = await log_in(client, "nobody", "nope-nope-nope")
    assert wrong.status == nobody.status == 401
    assert "se_session" not in "".join(wrong.headers.getall("Set-Cookie", []))
    assert (await wrong.text()).count("用户名或密码不正确") == 1


async def test_logout_ends_the_session_and_next_is_never_another_site(client, people):
    resp = await log_in(client, "boss", next_path="//evil.example/x")
    assert resp.headers["Location"] == "/ui/"
    token = client.session.cookie_jar.filter_cookies(client.make_url("/"))["se_session"].value
    csrf = await session_csrf(client)
    assert (await client.post("/ui/logout", data={"csrf": csrf}, allow_redirects=False)).status == 303
    client.session.cookie_jar.update_cookies({"se_session": token})  # the old cookie, replayed
    resp = await client.get("/ui/cashier", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"].startswith("/ui/login")


async def test_an_expired_session_is_a_logged_out_one(client, people):
    await log_in(client, "boss")
    conn = db.open_store_db(people)
    with db.transaction(conn):
        conn.execute("UPDATE sessions SET expires_at = '2000-01-01T00:00:00.000Z'")
    conn.close()
    resp = await client.get("/ui/cashier", allow_redirects=False)
    assert resp.status == 303


async def test_errors_show_no_trace_and_no_secret(client, people, monkeypatch):
    await log_in(client, "boss")

    def broken(*args, **kwargs):
        raise RuntimeError("secret-db-password-123 at /etc/store-edge/cloud-token")
    monkeypatch.setattr(users, "session", broken)
    resp = await client.get("/ui/cashier")
    body = await resp.text()
    assert resp.status == 500 and "Traceback" not in body and "secret-db-password" not in body
    assert "系统出错" in body


async def test_an_unknown_page_is_a_page_not_a_trace(client, people):
    resp = await client.get("/ui/no-such-page")
    assert resp.status == 404 and "找不到" in await resp.text()


async def test_pages_have_security_headers(client, people):
    resp = await client.get("/ui/login")
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Frame-Options"] == "DENY" and resp.headers["Cache-Control"] == "no-store"


async def test_every_word_exists_in_both_languages():
    missing_en = set(web.TEXT["zh"]) - set(web.TEXT["en"])
    missing_zh = set(web.TEXT["en"]) - set(web.TEXT["zh"])
    assert not missing_en and not missing_zh, (missing_en, missing_zh)


def test_user_add_from_the_command_line(tmp_path, config):
    import subprocess  # noqa: PLC0415

    from tests.helpers_daemon import child_env, store_edge_command  # noqa: PLC0415

    def user(*args, password=""):
        return subprocess.run([*store_edge_command(), "user", *args, "--config", str(config.path)], input=password,
                              capture_output=True, text=True, env=child_env(), timeout=60)

    assert user("add", "wang", "--role", "cashier", "--display-name", "王芳", "--password-stdin",
                password="long-enough-1\n").returncode == 0
    short = user("add", "li", "--role", "manager", "--password-stdin", password="short\n")
    assert short.returncode == 2 and "at least 8" in short.stderr
    listing = user("list")
    assert "wang\tcashier\t王芳\tactive" in listing.stdout and "li\t" not in listing.stdout


def _record_scrypt(monkeypatch, check=None) -> list[str]:
    """Every scrypt call's thread (and whatever `check` says about that moment)."""
    import hashlib  # noqa: PLC0415
    import threading  # noqa: PLC0415

    calls, real = [], hashlib.scrypt

    def scrypt(*args, **kwargs):
        calls.append(threading.current_thread().name if check is None else check())
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", scrypt)
    return calls


async def test_a_login_checks_the_password_on_a_worker_thread(client, people, monkeypatch):
    import threading  # noqa: PLC0415

    calls = _record_scrypt(monkeypatch)
    assert (await log_in(client, "cash", "wrong-password")).status == 401
    assert (await log_in(client, "nobody")).status == 401           # the fixed hash: as slow as a real one
    assert (await log_in(client, "cash")).status == 303
    assert len(calls) == 3
    # neither the store's writer (every sale waits behind it) nor the event loop
    assert "store-writer" not in calls and threading.main_thread().name not in calls, calls


async def test_a_password_changed_during_a_login_does_not_open_a_session(client, people, monkeypatch):
    checked = _record_scrypt(monkeypatch)
    store = client.app[web.STORE]
    original = users.password_matches

    def matches_then_changed(password, stored):
        ok = original(password, stored)
        conn = db.connect(store.path)
        try:
            with db.transaction(conn):
                users.add_user(conn, "cash", "王芳", "cashier", users.new_password("another-one-2"), iso(utcnow()))
        finally:
            conn.close()
        return ok

    monkeypatch.setattr(users, "password_matches", matches_then_changed)
    assert (await log_in(client, "cash")).status == 401
    assert checked


def test_user_add_hashes_the_password_before_taking_the_write_lock(tmp_path, config, monkeypatch):
    import io  # noqa: PLC0415
    import sqlite3  # noqa: PLC0415

    from edge.ops import cli  # noqa: PLC0415

    def lock_is_free() -> bool:
        probe = sqlite3.connect(config.db_path, timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return True
        except sqlite3.OperationalError:
            return False
        finally:
            probe.close()

    db.open_store_db(config.db_path).close()
    calls = _record_scrypt(monkeypatch, lock_is_free)
    monkeypatch.setattr("sys.stdin", io.StringIO("long-enough-1\n"))
    assert cli.main(["user", "add", "wang", "--role", "cashier", "--password-stdin", "--config",
                     str(config.path)]) == 0
    assert calls == [True]


# -- guessing passwords -------------------------------------------------------------------------------

class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _audit_actions(db_path) -> list[tuple]:
    from tests.conftest import query  # noqa: PLC0415

    return query(db_path, "SELECT user_name, action, detail FROM audit_log WHERE action LIKE 'login.%' ORDER BY id")


async def test_wrong_passwords_make_the_account_wait_longer_each_time(client, people):
    from edge.ui.login import LOGIN_LIMITER  # noqa: PLC0415
    from edge.ui.login_limit import ACCOUNT_FREE  # noqa: PLC0415

    clock = client.app[LOGIN_LIMITER].clock = FakeClock()
    for _ in range(ACCOUNT_FREE):
        assert (await log_in(client, "cash", "wrong-password")).status == 401
    # a wait of 1 s now: even the right password is refused unchecked, with when to come back
    resp = await log_in(client, "cash")
    assert resp.status == 429 and resp.headers["Retry-After"] == "1"
    assert "请 1 秒后再试" in await resp.text()
    assert (await log_in(client, "boss")).status == 303          # another account is not held up
    await client.post("/ui/logout", data={"csrf": await session_csrf(client)})
    clock.now += 1.1
    assert (await log_in(client, "cash", "wrong-password")).status == 401  # the wait doubles: 2 s
    clock.now += 1.5
    assert (await log_in(client, "cash")).status == 429
    clock.now += 0.6
    assert (await log_in(client, "cash")).status == 303
    actions = _audit_actions(people)
    assert [a[1] for a in actions] == ["login.failed"] * (ACCOUNT_FREE - 1) + ["login.locked"] * 2
    assert {a[0] for a in actions} == {"cash"}
    assert '"address": "127.0.0.1"' in actions[-1][2] and '"wait_seconds": 2' in actions[-1][2]


async def test_guessing_many_accounts_from_one_address_makes_that_address_wait(client, people):
    from edge.ui.login import LOGIN_LIMITER  # noqa: PLC0415
    from edge.ui.login_limit import ADDRESS_FREE  # noqa: PLC0415

    client.app[LOGIN_LIMITER].clock = FakeClock()
    for i in range(ADDRESS_FREE):
        assert (await log_in(client, f"guess{i}", "wrong-password")).status == 401
    assert (await log_in(client, "cash")).status == 429
    assert _audit_actions(people) == []  # names that are no account are logged, not audited


def test_passwords_are_hashed_at_current_guidance_and_old_hashes_still_verify(monkeypatch):
    import time  # noqa: PLC0415

    monkeypatch.setattr(users, "SCRYPT", {"n": 2**14, "r": 8, "p": 1})  # the cost in force before
    old = users.hash_password("correct-horse-1")
    monkeypatch.setattr(users, "SCRYPT", dict(users.SCRYPT_GUIDANCE))
    started = time.perf_counter()
    new = users.hash_password("correct-horse-1")
    elapsed = time.perf_counter() - started
    assert new.startswith("scrypt$131072$8$1$"), new
    assert users.check_password("correct-horse-1", new) and not users.check_password("wrong", new)
    assert users.check_password("correct-horse-1", old)  # the cost is read from the hash itself
    assert elapsed < 30, elapsed  # see users.SCRYPT_GUIDANCE for the measured time; only a gross regression fails


# -- unknown input is a 404, never a 500 ----------------------------------------------------------------

async def test_a_static_name_that_is_no_file_of_ours_is_not_found(client, caplog):
    for name in ("%00.js", "app%00.js", "%2e%2e.css", "a%0a.js", "nosuch.js", "x" * 300 + ".js"):
        resp = await client.get(f"/ui/static/{name}")
        assert resp.status == 404, (name, resp.status)
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


async def test_a_page_answers_only_its_own_fragments(client, people, caplog):
    assert (await log_in(client, "cash", next_path="/ui/cashier")).status == 303
    assert (await client.get("/ui/cashier?fragment=cashier_scans")).status == 200
    for fragment in ("overview_sales", "stock_balance", "orders_jobs", "nosuch", "", "../base", "link%00"):
        resp = await client.get(f"/ui/cashier?fragment={fragment}")
        assert resp.status == 404, (fragment, resp.status)
    assert (await client.get("/ui/cashier?fragment=link")).status == 200  # the banner's, on every page
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
