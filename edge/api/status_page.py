"""The status page at /: what a person opening the store PC's address sees until the dashboard
arrives. Chinese for store staff; numbers straight from the store."""

from __future__ import annotations

import html
import time

from aiohttp import web

from drivers.documents import STATE_LABELS
from edge import __version__
from edge.core.clock import business_date, iso, utcnow
from edge.core.config import is_loopback
from edge.services.app_keys import CONFIG, DEVICES, PRINTING, STARTED, STORE, SYNC
from edge.store import overview, users

routes = web.RouteTableDef()

DEVICE_KINDS = {"printers": "打印机", "scanners": "扫码枪", "cameras": "摄像头"}
# how a device is connected, in words (config.toml's `type`)
INTERFACES = {"network": "网络", "serial": "串口", "usb": "USB", "file": "设备文件", "hid": "USB（键盘方式）",
              "camera": "摄像头"}


def _yuan(fen: int) -> str:
    return f"￥{fen / 100:,.2f}"


def _uptime(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 1440}天{minutes // 60 % 24}小时{minutes % 60}分" if minutes >= 1440 \
        else f"{minutes // 60}小时{minutes % 60}分"


async def _private(request: web.Request) -> bool:
    """Whether the takings are hidden: the port is reachable beyond this PC and nobody with a
    manager's dashboard session asks (today's sales are the manager's, as on the dashboard)."""
    config = request.app[CONFIG]
    if is_loopback(config.api.host):
        return False
    token = request.cookies.get(users.SESSION_COOKIE, "")
    who = await request.app[STORE].read(users.session, token, iso(utcnow())) if token else None
    return who is None or who["role"] != "manager"


@routes.get("/")
async def status(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    day = business_date(utcnow(), config.tz, config.day_cutoff)
    f = await request.app[STORE].read(overview.status_figures, day)
    private = await _private(request)
    e = html.escape
    printers = {p["name"]: p for p in request.app[PRINTING].printers()}

    readers = {r["device"]: r for r in request.app[DEVICES].states()}

    def device_state(section: str, device) -> str:
        d = printers[device.name] if section == "printers" else readers[device.name]
        text = STATE_LABELS["zh"].get(d["state"], d["state"])
        error = d.get("error") or d.get("last_error")
        # a program's own message, folded away for IT as on the dashboard
        return text + (f"<details><summary><small>技术信息</small></summary><small>{e(error)}</small></details>"
                       if error else "")

    devices = "".join(f"<tr><td>{DEVICE_KINDS[section]}</td><td>{e(d.name)}</td><td>{INTERFACES.get(d.type, e(d.type))}</td>"
                      f"<td>{device_state(section, d)}</td></tr>" for section, d in config.devices()) \
        or '<tr><td colspan="4">未配置设备。在 config.toml 中添加 [[printers]] 或 [[scanners]]。</td></tr>'
    engine = request.app.get(SYNC)
    if engine is None:
        cloud = "未配置（仅本地运行）"
    else:
        cloud = {"online": "已连接", "offline": "离线（销售照常，恢复后自动补传）", "connecting": "连接中",
                 "busy": "云端繁忙，稍后自动补传（销售照常）",
                 "auth_failed": "云端拒绝门店令牌，请联系IT", "refused": "云端拒绝请求，请联系IT",
                 "error": "同步出错，正在重试（详见日志）"}.get(
            engine.link.state, engine.link.state)
    if private:
        sales = '<div class="card">今日销售<b>—</b><a href="/ui/login?next=%2Fui%2F">店长登录后查看</a></div>'
        version = ""
    else:
        sales = f'<div class="card">今日销售（{day}）<b>{f["sales"]} 笔</b>{_yuan(f["sales_fen"])}</div>'
        version = f" · 版本 {__version__}"
    page = f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="30"><title>{e(config.store.name)} · store-edge</title>
<style>body{{font-family:system-ui,"Noto Sans CJK SC","Microsoft YaHei",sans-serif;margin:2rem;color:#222;max-width:60rem}}
h1{{font-size:1.6rem}}.grid{{display:grid;grid-template-columns:repeat(auto-fit,minmax(11rem,1fr));gap:1rem}}
.card{{border:1px solid #ddd;border-radius:8px;padding:1rem}}.card b{{display:block;font-size:1.8rem}}
table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #eee;padding:.4rem;text-align:left}}
.ok{{color:#0a7d28}}small{{color:#666}}</style></head><body>
<h1>{e(config.store.name)} <small>门店 {e(config.store.id)}</small></h1>
<p class="ok">● 服务运行中 · 已运行 {_uptime(time.time() - request.app[STARTED])}{version}</p>
<div class="grid">
{sales}
<div class="card">在售商品<b>{f["products"]}</b>低库存 {f["low"]} 种</div>
<div class="card">库存流水<b>{f["moves"]}</b>条</div>
<div class="card">待同步事件<b>{f["queue"]["depth"]}</b>云端：{cloud}<br>
待处理失败事件 {f["queue"]["dead_letters"]} 条</div>
<div class="card">线上订单（待处理）<b>{f["orders_open"]}</b>缺货 {f["orders_short"]} 单<br>
未打印 {len(request.app[PRINTING].alerts)} 单</div>
<div class="card">待确认的打印<b>{f["print_attention"]}</b>打印中断，请确认是否已打印</div>
</div>
<h2>设备</h2><table><tr><th>类型</th><th>名称</th><th>接口</th><th>状态</th></tr>{devices}</table>
<p><small>给 IT：<a href="/api/v1/openapi.json">收银接口文档（OpenAPI）</a> ·
<a href="/api/v1/health">健康检查</a></small></p>
</body></html>"""
    return web.Response(text=page, content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-store"})
