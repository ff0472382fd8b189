"""同步 (/ui/sync): the cloud link, the upload queue, dead letters (retry, discard), what the cloud sent back."""

from __future__ import annotations

from aiohttp import web

from edge.core.errors import NotFound
from edge.services.app_keys import STORE, SYNC
from edge.store import inbox, orders, outbox, reconciliations
from edge.ui.web import LANG, WHO, form_data, page, register_text, render, text, ui_write, yuan

register_text({
    "zh": {
        "sync_title": "同步", "sync_link": "云端连接", "sync_no_cloud": "未配置云端：数据只保存在本店",
        "sync_no_cloud_hint": "在 config.toml 的 [cloud] 中填写 url 后，待上传的记录会自动补传",
        "sync_since": "自 {at} 起（{ago}）", "sync_last_success": "上次成功", "sync_last_error": "最近错误",
        "sync_never": "从未", "sync_queue": "待上传", "sync_depth": "待上传记录", "sync_by_type": "按类型",
        "sync_oldest": "最早未上传", "sync_age_minutes": "{at}（{ago}）", "sync_queue_empty": "全部已上传",
        "sync_dead_letters": "被云端拒收的记录", "sync_dead_letters_hint":
            "先在总部修正原因（例如上架商品），再点“重新发送”；确定不再需要时点“放弃”并写明原因",
        "sync_no_dead_letters": "没有被拒收的记录", "sync_type": "类型", "sync_when": "时间", "sync_reason": "云端原因",
        "sync_summary": "内容", "sync_actions": "操作", "sync_retry": "重新发送", "sync_discard": "放弃",
        "sync_note": "备注（放弃时必填）", "sync_note_required": "放弃前请写明原因",
        "sync_rejected_changes": "未能应用的云端变更", "sync_no_rejected": "没有",
        "sync_received_at": "收到时间", "sync_reconciliations": "与云端对账差异", "sync_no_reconciliations": "没有差异",
        "sync_sku": "商品", "sync_store_side": "本店（在库/预留）", "sync_cloud_side": "云端（在库/预留）",
        "sync_run_at": "对账时间", "sync_done_retry": "已重新发送", "sync_done_discard": "已放弃",
        "sync_lines": "{n} 行", "sync_order_number": "订单 {number}", "sync_total": "合计",
    },
    "en": {
        "sync_title": "Sync", "sync_link": "Cloud link",
        "sync_no_cloud": "No cloud configured: data stays in this store",
        "sync_no_cloud_hint": "Set url under [cloud] in config.toml; what waits here is then sent",
        "sync_since": "since {at} ({ago})",
        "sync_last_success": "Last success", "sync_last_error": "Last error",
        "sync_never": "never", "sync_queue": "Upload queue",
        "sync_depth": "Waiting to upload", "sync_by_type": "By type",
        "sync_oldest": "Oldest unsent", "sync_age_minutes": "{at} ({ago})",
        "sync_queue_empty": "Everything is uploaded",
        "sync_dead_letters": "Rejected by the cloud", "sync_dead_letters_hint":
            "Fix the cause at head office first (e.g. list the product), then Retry; Discard with a note if not needed",
        "sync_no_dead_letters": "Nothing rejected", "sync_type": "Type", "sync_when": "When",
        "sync_reason": "Cloud's reason", "sync_summary": "What", "sync_actions": "Actions", "sync_retry": "Retry",
        "sync_discard": "Discard", "sync_note": "Note (required to discard)",
        "sync_note_required": "Say why before discarding",
        "sync_rejected_changes": "Cloud changes not applied", "sync_no_rejected": "None",
        "sync_received_at": "Received", "sync_reconciliations": "Differences with the cloud",
        "sync_no_reconciliations": "No differences", "sync_sku": "Product",
        "sync_store_side": "Store (on hand/reserved)", "sync_cloud_side": "Cloud (on hand/reserved)",
        "sync_run_at": "Checked", "sync_done_retry": "Sent again", "sync_done_discard": "Discarded",
        "sync_lines": "{n} lines", "sync_order_number": "order {number}", "sync_total": "Total",
    },
})


def summary(lang: str, payload: dict, numbers: dict[str, str]) -> str:
    """A line a person can read: the items of a sale, the order's number, the amount (no ids, no field names)."""
    parts = []
    lines = payload.get("lines")
    if isinstance(lines, list) and lines:
        shown = [f"{line.get('name') or line.get('sku')} ×{line.get('qty')}" for line in lines[:4]
                 if isinstance(line, dict)]
        parts.append("，".join(shown) + (" …" if len(lines) > 4 else ""))
    number = payload.get("number") or numbers.get(payload.get("order_id"))
    if number:
        parts.append(text(lang, "sync_order_number", number=number))
    if payload.get("sku") and not parts:
        parts.append(str(payload["sku"]))
    if isinstance(payload.get("total_fen"), int):
        parts.append(yuan(payload["total_fen"]))
    return "；".join(parts)[:200]


def _read(conn) -> dict:
    status = outbox.queue_status(conn)
    letters = outbox.dead_letters(conn, limit=200)
    numbers = orders.numbers(conn, [letter["payload"].get("order_id") for letter in letters])
    return {"numbers": numbers, "queue": status, "dead_letters": letters, "rejected": inbox.rejected(conn, 50),
            "reconciliations": reconciliations.list_reconciliations(conn, 50)}


async def context(request: web.Request) -> dict:
    data = await request.app[STORE].read(_read)
    lang = request.get(LANG, "zh")
    for letter in data["dead_letters"]:
        letter["summary"] = summary(lang, letter["payload"], data["numbers"])
    engine = request.app.get(SYNC)
    cloud = None
    if engine is not None:
        cloud = engine.link.as_dict()
    data.update(cloud=cloud, errors={}, error_seq=None, note="", done=request.query.get("done", ""))
    return data


@page("/ui/sync", role="manager", template="sync.html")
async def sync_page(request):
    return await context(request)


def _seq(request: web.Request) -> int:
    raw = request.match_info["seq"]
    if not (raw.isascii() and raw.isdigit() and len(raw) < 19):
        raise NotFound("unknown_dead_letter", f"no dead letter {raw}")
    return int(raw)


@page("/ui/sync/dead-letters/{seq}/retry", role="manager", method="POST")
async def retry(request):
    seq, form = _seq(request), await form_data(request)
    operator = request[WHO]["display_name"]
    note = form.get("note", "").strip()[:500] or None
    await ui_write(request, form, lambda conn, ctx: outbox.retry_dead_letter(conn, seq, operator, note, ctx),
                   action="dead_letter.retry", target=str(seq), detail={"note": note} if note else None)
    raise web.HTTPSeeOther("/ui/sync?done=retry")


@page("/ui/sync/dead-letters/{seq}/discard", role="manager", method="POST")
async def discard(request):
    seq, form = _seq(request), await form_data(request)
    operator = request[WHO]["display_name"]
    note = form.get("note", "").strip()[:500]
    if not note:  # nothing is written: the page again, the message next to this row's note
        values = await context(request)
        values.update(errors={"note": "sync_note_required"}, error_seq=seq)
        return render(request, "sync.html", status=422, **values)
    await ui_write(request, form, lambda conn, ctx: outbox.discard_dead_letter(conn, seq, operator, note, ctx),
                   action="dead_letter.discard", target=str(seq), detail={"note": note})
    raise web.HTTPSeeOther("/ui/sync?done=discard")
