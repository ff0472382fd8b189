"""The dashboard's web layer: pages with roles, sessions, CSRF, languages, live updates, safe errors.

A page is declared once with `@page(path, role=...)`; its handler returns a template context (or a
response). Every POST must carry the session's CSRF token (form field `csrf` or header
`X-CSRF-Token`) and, when the browser sends one, an Origin of this server. Templates are Jinja2 with
autoescaping; the text of the pages comes from per-module tables in Chinese and English
(`register_text`), chosen by the `se_lang` cookie.

Live updates: /ui/events is a Server-Sent Events stream that says "change" after any committed write,
printer or scanner change (and every 10 s, for clocks like "offline for N minutes"); the page's
JavaScript then re-fetches its `data-live` regions (`?fragment=NAME`) and swaps them in.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from typing import Awaitable, Callable
from urllib.parse import quote, urlsplit

import jinja2
import jinja2.meta
from aiohttp import web

from edge.core import context
from edge.core.clock import iso, utcnow
from edge.core.errors import InputError
from edge.core.sqlite import ReadTimeout
from edge.services.app_keys import CONFIG, STORE, SYNC
from edge.store import idempotency, users

log = logging.getLogger("edge.ui")

SESSION_COOKIE = users.SESSION_COOKIE
LANG_COOKIE = "se_lang"
LANGUAGES = ("zh", "en")
TOUCH_EVERY = 60.0  # seconds between two slides of a session's expiry
WHO = web.RequestKey("who", object)      # the session: {user, role, csrf, display_name} or None
LANG = web.RequestKey("lang", str)
EVENTS = web.AppKey("ui_events", object)
# the live version a page was read at: its event stream starts from there, so a change committed between
# the page's read and its subscription still refreshes it (else it waited for the 10 s tick)
SEEN = web.RequestKey("live_version", int)

TEXT: dict[str, dict[str, str]] = {"zh": {}, "en": {}}


def register_text(table: dict[str, dict[str, str]]) -> None:
    """Each page module adds its words; a key missing in one language is a bug caught by the tests."""
    for lang in LANGUAGES:
        TEXT[lang].update(table[lang])


def text(lang: str, key: str, **values) -> str:
    phrase = TEXT[lang].get(key) or TEXT["zh"].get(key) or key
    return phrase.format(**values) if values else phrase


@dataclass(frozen=True)
class Page:
    method: str
    path: str
    handler: Callable[[web.Request], Awaitable]
    role: str | None  # None: public (login)
    template: str | None


PAGES: list[Page] = []
ROLE_RANK = {"cashier": 1, "manager": 2}


def page(path: str, *, role: str | None = "cashier", method: str = "GET", template: str | None = None):
    def register(handler):
        PAGES.append(Page(method, path, handler, role, template))
        return handler
    return register


def routes() -> list[web.RouteDef]:
    out = [web.route(p.method, p.path, _wrap(p)) for p in PAGES]
    out.append(web.get("/ui/events", events))
    out.append(web.get("/ui/static/{name}", static))
    return out


# -- templates ------------------------------------------------------------------------------------

_env = jinja2.Environment(loader=jinja2.PackageLoader("edge.ui", "templates"), autoescape=True,
                          trim_blocks=True, lstrip_blocks=True)


def yuan(fen) -> str:
    if fen is None:
        return "-"
    sign = "-" if fen < 0 else ""
    return f"{sign}￥{abs(fen) // 100:,}.{abs(fen) % 100:02d}"


def local_time(value: str | None, tz, fmt: str = "%m-%d %H:%M") -> str:
    if not value:
        return "-"
    from datetime import datetime  # noqa: PLC0415

    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(tz).strftime(fmt)


def seconds_since(value) -> float:
    """Seconds from an ISO time stamp (or a time.time() value) to now; never negative."""
    if isinstance(value, (int, float)):
        return max(0.0, time.time() - value)
    from datetime import datetime, timezone  # noqa: PLC0415

    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return max(0.0, (datetime.now(timezone.utc) - moment).total_seconds())


def ago(value, lang: str) -> str:
    """How long ago, as a person says it: 刚刚, 35 秒前, 3 分钟前, 2 小时前, 3 天前 (never "0 分钟")."""
    if value is None or value == "":
        return "-"
    seconds = int(seconds_since(value))
    if seconds < 10:
        return text(lang, "ago_now")
    for unit, size, below in (("seconds", 1, 60), ("minutes", 60, 3600), ("hours", 3600, 2 * 86400)):
        if seconds < below:
            return text(lang, f"ago_{unit}", n=seconds // size)
    return text(lang, "ago_days", n=seconds // 86400)


_env.filters["yuan"] = yuan
# in every template and fragment, in the page's language (a fragment rendered alone says Chinese)
_env.globals["ago"] = jinja2.pass_context(lambda ctx, value: ago(value, ctx.get("lang") or "zh"))
_env.globals["words"] = jinja2.pass_context(lambda ctx, vocabulary, value: word(ctx.get("lang") or "zh",
                                                                                vocabulary, value))


def render(request: web.Request, template: str, status: int = 200, **values) -> web.Response:
    lang = request.get(LANG, "zh")
    config = request.app[CONFIG]
    who = request.get(WHO)
    body = _env.get_template(template).render(
        t=lambda key, **kw: text(lang, key, **kw), lang=lang, who=who, store=config.store,
        csrf=who["csrf"] if who else "", path=request.path, query=request.query,
        time=lambda v, fmt="%m-%d %H:%M": local_time(v, config.tz, fmt), form_id=str(uuid.uuid4()),
        link=link_state(request), nav=NAV if who else [], live_version=request.get(SEEN, ""), **values)
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8", headers=HEADERS)


# (path, text key, role): the menu; a cashier sees only what a cashier may open
NAV = [("/ui/cashier", "nav_cashier", "cashier"), ("/ui/shift", "nav_shift", "cashier"),
       ("/ui/", "nav_overview", "manager"), ("/ui/day-close", "nav_day_close", "manager"),
       ("/ui/orders", "nav_orders", "manager"), ("/ui/stock", "nav_stock", "manager"),
       ("/ui/sync", "nav_sync", "manager"), ("/ui/devices", "nav_devices", "manager"),
       ("/ui/reports", "nav_reports", "manager"), ("/ui/audit", "nav_audit", "manager")]

register_text({
    "zh": {"nav_cashier": "收银台", "nav_shift": "交班", "nav_day_close": "日结", "nav_overview": "概览",
           "nav_orders": "订单", "nav_stock": "库存",
           "nav_sync": "同步", "nav_devices": "设备", "nav_audit": "操作记录", "link_online": "云端已连接",
           "link_none": "未连接云端（仅本地运行）", "link_down": "云端已断开 · {ago}", "link_busy": "云端繁忙 · 稍后自动补传",
           "link_down_works": "断网期间：收银、核销（临时）、打印照常，恢复后自动补传",
           "error_login_needed": "请先登录", "error_forbidden": "此页面仅限店长",
           "error_cross_site": "请求已被拒绝（页面已过期或来自其他网站），请刷新页面后重试",
           "error_input": "输入有误", "error_internal": "系统出错，已记录日志。请稍后重试或联系IT",
           "error_busy": "系统繁忙，请稍后重试",
           "error_title": "出错了", "error_not_found": "找不到这个页面（或它要显示的记录）", "back": "返回", "loading": "加载中…", "empty": "暂无数据",
           "ago_now": "刚刚", "ago_seconds": "{n} 秒前", "ago_minutes": "{n} 分钟前", "ago_hours": "{n} 小时前",
           "ago_days": "{n} 天前", "tech_details": "技术信息"},
    "en": {"nav_cashier": "Till", "nav_shift": "Shift", "nav_day_close": "Day close", "nav_overview": "Overview", "nav_orders": "Orders", "nav_stock": "Stock",
           "nav_sync": "Sync", "nav_devices": "Devices", "nav_audit": "Audit log", "link_online": "Cloud connected",
           "link_none": "No cloud (running alone)", "link_down": "Cloud down · {ago}", "link_busy": "Cloud busy · will resend",
           "link_down_works": "While offline: sales, pickups (provisional) and printing go on; data is sent later",
           "error_login_needed": "Please log in", "error_forbidden": "Managers only",
           "error_cross_site": "Request refused (the page expired or came from another site): reload and retry",
           "error_input": "Invalid input", "error_internal": "Something went wrong; it is logged. Retry or call IT",
           "error_busy": "The store is busy: try again in a moment",
           "error_title": "Error", "error_not_found": "This page (or what it should show) does not exist", "back": "Back", "loading": "Loading…", "empty": "Nothing yet",
           "ago_now": "just now", "ago_seconds": "{n} s ago", "ago_minutes": "{n} min ago", "ago_hours": "{n} h ago",
           "ago_days": "{n} days ago", "tech_details": "Technical details"},
})


REASON_CODE = re.compile(r"^([a-z][a-z0-9_]*):")


def reason_code(reason: str | None) -> str:
    """The code of a reason the cloud gave ("unknown_sku: HOM-001 is not ..." -> "unknown_sku")."""
    match = REASON_CODE.match(reason or "")
    code = match.group(1) if match else "other"
    return code if f"cloud_reason.{code}" in TEXT["zh"] else "other"


def word(lang: str, vocabulary: str, value) -> str:
    """A stored value (a state, a kind, a code) in words, from edge.ui.vocabulary's tables; a value the
    table lacks is shown as it is, and the page walker (tests/test_ui_words.py) catches it."""
    if value is None:
        return "-"
    if vocabulary == "cloud_reason":
        value = reason_code(value)
    name = ""
    if vocabulary == "device" and ":" in str(value):  # "ui:boss": the dashboard, by the user boss
        value, name = str(value).split(":", 1)
    key = f"{vocabulary}.{value}"
    if key not in TEXT["zh"]:
        return f"{value}:{name}" if name else str(value)
    return text(lang, key, name=name) if name else text(lang, key)


def link_state(request: web.Request) -> dict:
    """The cloud link for the banner: online, none, or down since when (and whether to warn)."""
    engine = request.app.get(SYNC)
    if engine is None:
        return {"state": "none", "minutes": 0, "since": None, "banner": False}
    link = engine.link
    minutes = int((time.time() - link.since) // 60) if link.state != "online" else 0
    # busy: the cloud answered and asked to wait (Retry-After); the store is not cut off
    state = link.state if link.state in ("online", "busy") else "down"
    return {"state": state, "minutes": minutes, "since": link.since,
            "banner": state == "down" and minutes >= request.app[CONFIG].dashboard.offline_banner_minutes}


HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # no inline script, no foreign origin: what a page can run is only ours
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
}


# -- sessions, roles, CSRF --------------------------------------------------------------------------

class Refused(Exception):
    def __init__(self, status: int, key: str):
        super().__init__(key)
        self.status, self.key = status, key


def _wrap(p: Page):
    async def handler(request: web.Request) -> web.StreamResponse:
        who = request.get(WHO)
        if p.role is not None:
            if who is None:
                if request.method == "GET":
                    raise web.HTTPSeeOther(f"/ui/login?next={quote(request.path_qs, safe='')}")
                raise Refused(401, "error_login_needed")
            if ROLE_RANK[who["role"]] < ROLE_RANK[p.role]:
                raise Refused(403, "error_forbidden")
        fragment = request.query.get("fragment")
        if fragment is not None and fragment not in fragments_of(p.template):
            raise web.HTTPNotFound()
        if request.method == "POST":
            await check_csrf(request)
        events = request.app.get(EVENTS)
        if events is not None:
            request[SEEN] = events.version  # before the handler reads anything
        result = await p.handler(request)
        if isinstance(result, web.StreamResponse):
            return result
        template = p.template if fragment is None else f"fragments/{fragment}.html"
        return render(request, template, **result)
    return handler


@functools.cache
def fragments_of(template: str | None) -> frozenset[str]:
    """The fragments a page's template includes (through its base too): the only ones `?fragment=`
    may ask of it, since another page's fragment needs values this page does not compute."""
    if template is None:
        return frozenset()
    found, seen, todo = set(), set(), [template]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        source = _env.loader.get_source(_env, name)[0]
        for ref in jinja2.meta.find_referenced_templates(_env.parse(source)):
            if ref is None:
                continue
            if ref.startswith("fragments/") and ref.endswith(".html"):
                found.add(ref[len("fragments/"):-len(".html")])
            todo.append(ref)
    return frozenset(found)


async def check_csrf(request: web.Request) -> None:
    origin = request.headers.get("Origin")
    if origin is not None and urlsplit(origin).netloc != request.host:
        raise Refused(403, "error_cross_site")
    who = request.get(WHO)
    if who is None:  # the login form: its CSRF token is the one set in a cookie by the login page
        sent = (await request.post()).get("csrf", "")
        expected = request.cookies.get("se_login_csrf", "")
    else:
        sent = request.headers.get("X-CSRF-Token") or (await request.post()).get("csrf", "")
        expected = who["csrf"]
    if not expected or not isinstance(sent, str) or not _same(sent, expected):
        raise Refused(403, "error_cross_site")


def _same(a: str, b: str) -> bool:
    import hmac  # noqa: PLC0415

    return hmac.compare_digest(a.encode(), b.encode())


@web.middleware
async def ui_middleware(request: web.Request, handler):
    """Session and language for /ui pages; errors as a page that says what to do, never a trace."""
    if not request.path.startswith("/ui"):
        return await handler(request)
    lang = request.cookies.get(LANG_COOKIE, "zh")
    request[LANG] = lang if lang in LANGUAGES else "zh"
    request[WHO] = None
    token = request.cookies.get(SESSION_COOKIE)
    store, config = request.app[STORE], request.app[CONFIG]
    try:
        if token:
            now = iso(utcnow())
            who = await store.read(users.session, token, now)
            if who is not None:
                request[WHO] = who
                seen = time.mktime(time.strptime(who["last_seen_at"][:19], "%Y-%m-%dT%H:%M:%S"))
                if time.mktime(time.gmtime()) - seen > TOUCH_EVERY:
                    await store.write(users.touch, token, now, config.dashboard.session_hours)
        return await handler(request)
    except Refused as exc:
        return _error(request, exc.status, exc.key)
    except web.HTTPNotFound:
        return _error(request, 404, "error_not_found")
    except web.HTTPException:
        raise
    except InputError as exc:
        return _error(request, exc.status, "error_input", message=exc.message)
    except ReadTimeout as exc:
        return _error(request, exc.status, "error_busy")
    except Exception:  # noqa: BLE001 (logged with its trace; the page shows none)
        log.exception("page failed", extra={"kv": {"path": request.path}})
        return _error(request, 500, "error_internal")


def _error(request: web.Request, status: int, key: str, message: str = "") -> web.Response:
    if request.headers.get("Accept", "").startswith("application/json"):
        return web.json_response({"error": {"code": key, "message": text(request[LANG], key)}}, status=status)
    return render(request, "error.html", status=status, error_key=key, message=message)


# -- writes from pages -----------------------------------------------------------------------------

async def ui_write(request: web.Request, form: dict, fn, *, action: str | None = None, target: str | None = None,
                   detail: dict | None = None):
    """One transaction for a form: the change, its audit line, and the form's id as an idempotency key
    (a form sent twice, by a double click or a reload, changes things once)."""
    who = request[WHO]
    ctx = context.make(f"ui:{who['user']}", request.app[CONFIG].tz, request.app[CONFIG].day_cutoff)
    form_id = str(form.get("form_id") or uuid.uuid4())[:128]
    req_hash = hashlib.sha256(json.dumps({"path": request.path, "form": {k: v for k, v in form.items()
                                                                        if k not in ("csrf", "form_id")}},
                                         sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def run(conn):
        def once():
            result = fn(conn, ctx)
            if action:
                users.audit(conn, who, action, target, detail, ctx.now)
            return result
        return idempotency.run_once(conn, form_id, req_hash, ctx, once)

    _, result, _ = await request.app[STORE].write(run)
    return result


async def form_data(request: web.Request) -> dict:
    data = await request.post()
    return {k: v for k, v in data.items() if isinstance(v, str)}


# -- live updates ------------------------------------------------------------------------------------

class EventHub:
    """A version number that goes up on every change; /ui/events streams "change" when it moves."""

    def __init__(self):
        self.version = 0
        self._cond = asyncio.Condition()
        self._loop = asyncio.get_running_loop()

    def bump(self) -> None:
        self.version += 1
        self._loop.create_task(self._notify())

    async def _notify(self) -> None:
        async with self._cond:
            self._cond.notify_all()

    async def wait(self, seen: int, timeout: float) -> int:
        async with self._cond:
            try:
                async with asyncio.timeout(timeout):  # not wait_for: edge/core/waits.py says why
                    await self._cond.wait_for(lambda: self.version != seen)
            except TimeoutError:
                pass
        return self.version


async def events(request: web.Request) -> web.StreamResponse:
    if request.get(WHO) is None:
        return web.Response(status=401, text="login needed")
    hub = request.app[EVENTS]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    since = request.query.get("since", "")
    # from the version the page was read at (SEEN); a number from elsewhere is only the present
    seen = int(since) if since.isdigit() and len(since) < 16 and int(since) <= hub.version else hub.version
    try:
        await response.write(b"retry: 2000\n\n")
        while True:
            now = await hub.wait(seen, 10.0)
            await response.write(f"event: change\ndata: {now}\n\n".encode())
            seen = now
            await asyncio.sleep(0.15)  # coalesce a burst of writes into one refresh
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    return response


STATIC_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}")


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    kinds = {".js": "application/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    suffix = name[name.rfind("."):] if "." in name else ""
    # our own file names only: a NUL, a slash or a dot-name is no file of ours (and a NUL makes the
    # file system call raise rather than answer "not found")
    if suffix not in kinds or not STATIC_NAME.fullmatch(name):
        raise web.HTTPNotFound()
    try:
        body = resources.files("edge.ui").joinpath("static", name).read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        raise web.HTTPNotFound() from None
    return web.Response(body=body, content_type=kinds[suffix], headers={"Cache-Control": "max-age=300",
                                                                        "X-Content-Type-Options": "nosniff"})
