"""Logging in and out, and the language switch."""

from __future__ import annotations

import asyncio
import logging
import secrets

from aiohttp import web

from edge.core.clock import iso, utcnow
from edge.services.app_keys import CONFIG, STORE
from edge.store import users
from edge.ui.login_limit import LoginLimiter
from edge.ui.web import LANG_COOKIE, LANGUAGES, SESSION_COOKIE, WHO, form_data, page, register_text, render

register_text({
    "zh": {"login_title": "登录", "user_name": "用户名", "password": "密码", "log_in": "登录", "log_out": "退出",
           "login_failed": "用户名或密码不正确", "login_hint": "账号由店长或IT用 store-edge user add 创建",
           "field_required": "请填写此项", "login_wait": "登录失败次数过多，请 {seconds} 秒后再试"},
    "en": {"login_title": "Log in", "user_name": "User name", "password": "Password", "log_in": "Log in",
           "log_out": "Log out", "login_failed": "Wrong user name or password",
           "login_hint": "Accounts are created by the manager or IT with store-edge user add",
           "field_required": "Required",
           "login_wait": "Too many failed logins: try again in {seconds} s"},
})

log = logging.getLogger("edge.ui")
LOGIN_LIMITER = web.AppKey("login_limiter", LoginLimiter)

COOKIE = {"httponly": True, "samesite": "Strict", "path": "/"}


def _safe_next(value: str | None) -> str:
    # only our own pages: never an open redirect to another site
    return value if value and value.startswith("/ui/") and not value.startswith("//") else "/ui/"


@page("/ui/login", role=None, template="login.html")
async def login_form(request):
    if request.get(WHO):
        raise web.HTTPSeeOther(_safe_next(request.query.get("next")))
    token = secrets.token_urlsafe(24)
    response = render(request, "login.html", login_csrf=token, errors={}, name="",
                      next=_safe_next(request.query.get("next")))
    response.set_cookie("se_login_csrf", token, max_age=3600, **COOKIE)
    return response


@page("/ui/login", role=None, method="POST", template="login.html")
async def login(request):
    form = await form_data(request)
    name, password = form.get("name", "").strip(), form.get("password", "")
    errors = {k: "field_required" for k, v in (("name", name), ("password", password)) if not v}
    config = request.app[CONFIG]
    result, wait = None, 0.0
    if not errors:
        limiter, address = request.app[LOGIN_LIMITER], request.remote or "-"
        wait = limiter.wait(name, address)
        if wait > 0:  # refused unchecked: a guess during the wait tells nothing, even a right one
            errors["form"] = "login_wait"
        else:
            result = await _check(request, name, password)
            if result is None:
                errors["form"] = "login_failed"
                wait = await _failed(request, limiter, name, address)
            else:
                limiter.succeeded(name)
    if errors:
        token = request.cookies.get("se_login_csrf", "")
        status = 429 if errors.get("form") == "login_wait" else 401 if "form" in errors else 422
        response = render(request, "login.html", status=status, login_csrf=token, errors=errors, name=name,
                          next=_safe_next(form.get("next")), wait_seconds=max(1, round(wait + 0.49)))
        if status == 429:
            response.headers["Retry-After"] = str(max(1, round(wait + 0.49)))
        return response
    token, _ = result
    response = web.HTTPSeeOther(_safe_next(form.get("next")))
    response.set_cookie(SESSION_COOKIE, token, max_age=int(config.dashboard.session_hours * 3600), **COOKIE)
    response.del_cookie("se_login_csrf", path="/")
    raise response


async def _check(request, name: str, password: str):
    store = request.app[STORE]
    stored = await store.read(users.login_hash, name)
    # scrypt on a worker thread: neither the event loop nor the store's writer waits for it
    if await asyncio.to_thread(users.password_matches, password, stored):
        config = request.app[CONFIG]
        return await store.write(users.open_session, name, stored, iso(utcnow()), config.dashboard.session_hours)
    return None


async def _failed(request, limiter: LoginLimiter, name: str, address: str) -> float:
    """Count a wrong password; the audit log shows it under the account it was tried on."""
    failures, wait = limiter.failed(name, address)
    action = "login.locked" if wait > 0 else "login.failed"
    detail = {"address": address, "failures": failures, **({"wait_seconds": round(wait)} if wait else {})}
    known = await request.app[STORE].write(users.audit_login, name, action, detail, iso(utcnow()))
    if not known or wait > 0:
        log.warning("login refused", extra={"kv": {"name": name[:64], "address": address, "failures": failures,
                                                    "wait_seconds": round(wait)}})
    return wait


@page("/ui/logout", method="POST")
async def logout(request):
    await request.app[STORE].write(users.log_out, request.cookies.get(SESSION_COOKIE, ""))
    response = web.HTTPSeeOther("/ui/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


@page("/ui/lang/{lang}", role=None)
async def switch_language(request):
    lang = request.match_info["lang"]
    response = web.HTTPSeeOther(_safe_next(request.query.get("next")))
    if lang in LANGUAGES:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, httponly=True, samesite="Lax", path="/")
    raise response
