"""设备 (/ui/devices): printers (state, jobs, test page, status ticket, uncertain jobs) and scanners (scan test)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

from aiohttp import web

from edge.core.clock import iso
from edge.core.errors import InputError, NotFound
from edge.services.app_keys import CONFIG, DEVICES, PRINTING, STORE
from edge.store import spool
from edge.ui.web import WHO, form_data, page, register_text, ui_write

PRINTER_STATES = ("ready", "paper_near_end", "paper_out", "cover_open", "offline", "unreachable", "no_status",
                  "unknown", "disabled")
SCANNER_STATES = ("connected", "connecting", "disconnected", "missing", "error", "stopped", "ended", "disabled")
DOCUMENTS = ("receipt", "order_ticket", "pickup_slip", "daily_summary", "status_ticket", "test_page", "count_sheet",
             "drawer")

register_text({
    "zh": {
        "devices_title": "设备", "devices_printers": "打印机", "devices_scanners": "扫码枪与摄像头",
        "devices_name": "名称", "devices_state": "状态", "devices_since": "自", "devices_last_error": "最近错误",
        "devices_jobs": "任务", "devices_waiting": "等待 {n}", "devices_uncertain_n": "待确认 {n}",
        "devices_documents": "打印单据", "devices_test_print": "打印测试页", "devices_status_ticket": "打印设备状态单",
        "devices_status_ticket_on": "打印到", "devices_status_ticket_auto": "（默认打印机）",
        "devices_no_printers": "未配置打印机（在 config.toml 中添加 [[printers]]）",
        "devices_no_scanners": "未配置扫码枪或摄像头（在 config.toml 中添加 [[scanners]] 或 [[cameras]]）",
        "devices_scans": "扫码次数", "devices_discarded": "丢弃", "devices_last_scan": "最近一次扫码（扫码测试）",
        "devices_raw": "原始字节", "devices_no_scan": "尚未扫码：扫一个条码即可在此看到结果",
        "devices_uncertain": "需要人工确认的打印", "devices_uncertain_hint":
            "打印时连接中断，系统无法确定是否已打出。请查看打印机：已打出点“已打印”，没有就点“重打”",
        "devices_no_uncertain": "没有待确认的打印", "devices_job": "单据", "devices_printed": "已打印",
        "devices_reprint": "重打", "devices_kind": "类型", "devices_created": "时间",
        "devices_done_test": "测试页已加入打印队列", "devices_done_ticket": "设备状态单已加入打印队列",
        "devices_done_confirm": "已处理", "devices_no_ticket_printer": "没有可用的打印机",
        "devices_state_ready": "就绪", "devices_state_paper_near_end": "纸将用完", "devices_state_paper_out": "缺纸",
        "devices_state_cover_open": "上盖打开", "devices_state_offline": "离线", "devices_state_unreachable": "连不上",
        "devices_state_no_status": "不回答状态查询", "devices_state_unknown": "检查中", "devices_state_disabled": "已停用",
        "devices_state_connected": "已连接", "devices_state_connecting": "连接中", "devices_state_disconnected": "已断开",
        "devices_state_missing": "未找到设备", "devices_state_error": "出错", "devices_state_stopped": "已停止",
        "devices_state_ended": "视频已结束",
        "devices_doc_receipt": "小票", "devices_doc_order_ticket": "订单备货单", "devices_doc_pickup_slip": "取货单",
        "devices_doc_daily_summary": "日结单", "devices_doc_status_ticket": "设备状态单", "devices_doc_test_page": "测试页",
        "devices_doc_count_sheet": "盘点单",
        "devices_doc_drawer": "钱箱",
    },
    "en": {
        "devices_title": "Devices", "devices_printers": "Printers", "devices_scanners": "Scanners and cameras",
        "devices_name": "Name", "devices_state": "State", "devices_since": "since", "devices_last_error": "Last error",
        "devices_jobs": "Jobs", "devices_waiting": "{n} waiting", "devices_uncertain_n": "{n} to check",
        "devices_documents": "Prints", "devices_test_print": "Test page",
        "devices_status_ticket": "Print status ticket",
        "devices_status_ticket_on": "On", "devices_status_ticket_auto": "(default printer)",
        "devices_no_printers": "No printer configured (add [[printers]] to config.toml)",
        "devices_no_scanners": "No scanner or camera configured (add [[scanners]] or [[cameras]] to config.toml)",
        "devices_scans": "Scans", "devices_discarded": "Discarded", "devices_last_scan": "Last scan (scan test)",
        "devices_raw": "Raw bytes", "devices_no_scan": "No scan yet: scan a barcode to see it here",
        "devices_uncertain": "Print jobs to check", "devices_uncertain_hint":
            "The connection broke while printing, so nobody knows if it came out. Look at the printer: Printed if "
            "it did, Reprint if not",
        "devices_no_uncertain": "Nothing to check", "devices_job": "Job", "devices_printed": "Printed",
        "devices_reprint": "Reprint", "devices_kind": "Kind", "devices_created": "When",
        "devices_done_test": "Test page queued", "devices_done_ticket": "Status ticket queued",
        "devices_done_confirm": "Done", "devices_no_ticket_printer": "No printer available",
        "devices_state_ready": "Ready", "devices_state_paper_near_end": "Paper low",
        "devices_state_paper_out": "Out of paper", "devices_state_cover_open": "Cover open",
        "devices_state_offline": "Offline", "devices_state_unreachable": "Unreachable",
        "devices_state_no_status": "Does not answer status queries", "devices_state_unknown": "Checking",
        "devices_state_disabled": "Disabled", "devices_state_connected": "Connected",
        "devices_state_connecting": "Connecting", "devices_state_disconnected": "Disconnected",
        "devices_state_missing": "Device not found", "devices_state_error": "Error", "devices_state_stopped": "Stopped",
        "devices_state_ended": "Video ended",
        "devices_doc_receipt": "Receipts", "devices_doc_order_ticket": "Order tickets",
        "devices_doc_pickup_slip": "Pickup slips", "devices_doc_daily_summary": "Daily summary",
        "devices_doc_status_ticket": "Status ticket", "devices_doc_test_page": "Test page",
        "devices_doc_count_sheet": "Count sheets",
        "devices_doc_drawer": "Cash drawer",
    },
})


def _read(conn) -> dict:
    counts = spool.counts(conn)
    attention = spool.list_jobs(conn, attention=True, limit=100)["items"]
    return {"counts": counts, "uncertain_jobs": attention}


async def context(request: web.Request) -> dict:
    data = await request.app[STORE].read(_read)
    service = request.app.get(PRINTING)
    printers = []
    for p in service.printers() if service else []:
        jobs = data["counts"].get(p["name"], {})
        printers.append({**p, "waiting": jobs.get("queued", 0) + jobs.get("printing", 0),
                         "uncertain": sum(1 for j in data["uncertain_jobs"] if j["printer"] == p["name"]),
                         "enabled": service is not None and p["name"] in service.workers})
    devices = request.app.get(DEVICES)
    scanners = []
    for state in devices.states() if devices else []:
        last = state.get("last_scan")
        if last and isinstance(last.get("at"), (int, float)):  # time.time() of the scan: as ISO for time()
            last = {**last, "at": iso(datetime.fromtimestamp(last["at"], timezone.utc))}
        scanners.append({**state, "last_scan": last})
    ticket_default = (service.routes.get("status_ticket", (None,))[0] if service else None)
    return {"printers": printers, "scanners": scanners, "uncertain_jobs": data["uncertain_jobs"],
            "ticket_default": ticket_default, "printer_states": PRINTER_STATES, "scanner_states": SCANNER_STATES,
            "documents": DOCUMENTS, "done": request.query.get("done", "")}


@page("/ui/devices", role="manager", template="devices.html")
async def devices_page(request):
    return await context(request)


def _operator_ctx(request):
    """Jobs a person asks for are created by that person (the job's created_by), as on the API."""
    name = request[WHO]["display_name"]
    return name, lambda ctx: dataclasses.replace(ctx, device=name)


def _printer(request: web.Request, name: str) -> str:
    service = request.app.get(PRINTING)
    if service is None or name not in service.workers:
        raise NotFound("unknown_printer", f"no enabled printer {name!r}", field="printer")
    return name


@page("/ui/devices/printers/{name}/test-page", role="manager", method="POST")
async def test_page(request):
    form = await form_data(request)
    name = _printer(request, request.match_info["name"])
    paper = next(p.paper_mm for p in request.app[CONFIG].raw.printers if p.name == name)
    _, by = _operator_ctx(request)

    def run(conn, ctx):
        job = spool.enqueue(conn, "test_page", f"test_page:{name}:{ctx.now}", {"printer": name, "paper_mm": paper},
                            by(ctx), printer=name)
        return {"job_id": job["id"]}
    await ui_write(request, form, run, action="print.test", target=name)
    raise web.HTTPSeeOther("/ui/devices?done=test")


@page("/ui/devices/status-ticket", role="manager", method="POST")
async def status_ticket(request):
    form = await form_data(request)
    service = request.app.get(PRINTING)
    chosen = form.get("printer", "").strip()
    if chosen:
        name = _printer(request, chosen)
    else:
        name = None
        if service is not None:
            name = service.routes.get("status_ticket", (None,))[0] or next(iter(service.workers), None)
    if name is None:
        raise InputError("no_printer", "no printer is available for the status ticket", field="printer", status=409)
    payload = await service.status_ticket_data()
    _, by = _operator_ctx(request)

    def run(conn, ctx):
        job = spool.enqueue(conn, "status_ticket", f"status_ticket:{name}:{ctx.now}", payload, by(ctx), printer=name)
        return {"job_id": job["id"]}
    await ui_write(request, form, run, action="print.status_ticket", target=name)
    raise web.HTTPSeeOther("/ui/devices?done=ticket")


@page("/ui/devices/jobs/{job_id}/confirm", role="manager", method="POST")
async def confirm_job(request):
    raw = request.match_info["job_id"]
    if not (raw.isascii() and raw.isdigit() and len(raw) < 19):
        raise NotFound("unknown_print_job", f"no print job {raw}", field="job_id")
    job_id, form = int(raw), await form_data(request)
    printed = form.get("printed") == "1"
    operator, by = _operator_ctx(request)

    def run(conn, ctx):
        result = spool.confirm(conn, job_id, printed, operator, by(ctx))
        return {"job_id": job_id, "reprint_id": (result.get("reprint") or {}).get("id")}
    await ui_write(request, form, run, action="print.confirm", target=str(job_id),
                   detail={"printed": printed})
    raise web.HTTPSeeOther("/ui/devices?done=confirm")
