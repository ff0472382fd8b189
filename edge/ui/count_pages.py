"""盘点单 /ui/count-sheets: make a count sheet for a category, print it on the receipt printer (or
this page, or download it for Excel), then enter its counts in one form or import the filled-in file."""

from __future__ import annotations

import dataclasses
import hashlib

from aiohttp import web

from edge.core.errors import InputError, NotFound
from edge.services.app_keys import STORE
from edge.store import count_sheets, spool
from edge.ui.orders_pages import error_text
from edge.ui.stock_pages import INTEGER
from edge.ui.web import LANG, WHO, form_data, page, register_text, render, text, ui_write

register_text({
    "zh": {"count_title": "盘点单", "count_new": "新建盘点单", "count_new_hint": "选一个分类、一个货架或两者：盘点单按货架顺序"
           "列出在售商品，不列账面数量（盲盘），清点后在本页录入或导入。", "count_category": "分类",
           "count_no_category": "未分类", "count_shelf": "货架", "count_no_shelf": "未设货架", "count_any": "不限",
           "count_products": "{n} 个商品", "count_create": "生成盘点单", "count_recent": "最近的盘点单",
           "count_none": "还没有盘点单", "count_col_number": "单号", "count_col_made": "制单时间",
           "count_col_lines": "商品数", "count_col_state": "状态", "count_open": "待录入", "count_entered": "已录入 {time}",
           "count_sheet_title": "盘点单 #{number}", "count_print": "打印到小票机",
           "count_download": "下载表格（CSV，可在 Excel 中填写）", "count_print_page": "打印本页：用浏览器的打印功能",
           "count_enter": "录入实盘数量", "count_enter_hint": "每行填写清点到的数量；空着的行表示没有盘点，不会改动库存。"
           "差额按录入时的账面库存计算。", "count_moved": "制单后有变动", "count_moved_hint":
           "标“制单后有变动”的商品在制单后卖出或进货过：请在录入前复核这些商品。",
           "count_col_line": "行", "count_col_name": "商品", "count_col_codes": "编码 / 条码",
           "count_col_counted": "实盘", "count_col_expected": "账面", "count_col_diff": "差额", "count_not_counted": "未盘",
           "count_note": "备注（可选）", "count_submit": "确认录入", "count_import": "导入填好的表格",
           "count_import_hint": "CSV 或 Excel（.xlsx），列：商品编码或条码、实盘数量（与下载的表格相同）。"
           "有任何一行出错，整份文件都不录入。", "count_file": "文件", "count_import_button": "导入",
           "count_err_integer": "请输入 0 或以上的整数", "count_err_file": "请选择一个 .csv 或 .xlsx 文件",
           "count_done_printed": "已发送到打印机", "count_done_entered": "盘点已录入，差额已记入库存",
           "count_result": "盘点结果", "count_form_error": "未保存，请修改标红的项目", "count_not_found": "找不到这张盘点单",
           "count_no_printer": "没有打印机打印盘点单（在 config.toml 打印机的 documents 中加入 count_sheet）",
           "count_rows_problems": "文件中有问题的行："},
    "en": {"count_title": "Count sheets", "count_new": "New count sheet", "count_new_hint": "Pick a category, a "
           "shelf or both: the sheet lists the products for sale in shelf order without the book quantity (a blind "
           "count); enter or import the counts here afterwards.", "count_category": "Category",
           "count_no_category": "No category", "count_shelf": "Shelf", "count_no_shelf": "No shelf",
           "count_any": "Any",
           "count_products": "{n} products", "count_create": "Make the sheet", "count_recent": "Recent sheets",
           "count_none": "No count sheet yet", "count_col_number": "No.", "count_col_made": "Made",
           "count_col_lines": "Products", "count_col_state": "State", "count_open": "To enter",
           "count_entered": "Entered {time}", "count_sheet_title": "Count sheet #{number}",
           "count_print": "Print on the receipt printer", "count_download": "Download (CSV, to fill in Excel)",
           "count_print_page": "Print this page: use the browser's print",
           "count_enter": "Enter the counts", "count_enter_hint": "Write what was counted on each line; a blank line "
           "was not counted and changes nothing. Differences are taken against the stock when you enter them.",
           "count_moved": "moved since", "count_moved_hint": "Products marked “moved since” sold or arrived after the "
           "sheet was made: check them again before entering.",
           "count_col_line": "Line", "count_col_name": "Product", "count_col_codes": "SKU / barcode",
           "count_col_counted": "Counted", "count_col_expected": "Book",
           "count_col_diff": "Difference", "count_not_counted": "not counted", "count_note": "Note (optional)",
           "count_submit": "Enter the counts", "count_import": "Import the filled-in file",
           "count_import_hint": "CSV or Excel (.xlsx) with a SKU or barcode column and a counted column (as "
           "downloaded). If any row is wrong, nothing of the file is entered.", "count_file": "File",
           "count_import_button": "Import", "count_err_integer": "Enter a whole number, 0 or more",
           "count_err_file": "Choose a .csv or .xlsx file", "count_done_printed": "Sent to the printer",
           "count_done_entered": "Counts entered; the differences are in the stock",
           "count_result": "Count result", "count_form_error": "Not saved: correct the fields in red",
           "count_not_found": "No such count sheet",
           "count_no_printer": "No printer prints count sheets (add count_sheet to a printer's documents in "
           "config.toml)", "count_rows_problems": "Rows of the file with a problem:"},
})

DONE = {"printed": "count_done_printed", "entered": "count_done_entered"}
FORMATS = {".csv": "csv", ".xlsx": "xlsx"}


def _number(request: web.Request) -> int:
    raw = request.match_info["number"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        raise web.HTTPNotFound()
    return int(raw)


ANY = "*"   # the pickers' "any category" / "any shelf"


def _choices(conn) -> dict:
    return {"categories": count_sheets.categories(conn), "shelves": count_sheets.shelves(conn),
            "sheets": count_sheets.list_sheets(conn)}


@page("/ui/count-sheets", role="manager", template="count_sheets.html")
async def sheets_page(request: web.Request):
    return {**await request.app[STORE].read(_choices), "error": None, "values": {}}


@page("/ui/count-sheets", role="manager", method="POST")
async def create(request: web.Request):
    form = await form_data(request)
    scope = {key: None if form.get(key, ANY) == ANY else form.get(key, "").strip()[:100]
             for key in ("category", "shelf")}
    try:
        sheet = await ui_write(request, form, lambda conn, ctx: count_sheets.create_sheet(conn, ctx, **scope),
                               action="count_sheet.create", detail=scope)
    except InputError as exc:
        return render(request, "count_sheets.html", status=exc.status, error=error_text(exc, request[LANG]),
                      values=form, **await request.app[STORE].read(_choices))
    raise web.HTTPSeeOther(f"/ui/count-sheets/{sheet['number']}")


async def _sheet(request: web.Request, number: int, *, status: int = 200, **extra):
    try:
        sheet = await request.app[STORE].read(count_sheets.get_sheet, number)
    except NotFound:
        return render(request, "error.html", status=404, error_key="count_not_found", message="")
    context = {"sheet": sheet, "errors": {}, "values": {}, "error": None, "rows": [],
               "done": DONE.get(request.query.get("done", "")), **extra}
    if status != 200:
        return render(request, "count_sheet.html", status=status, **context)
    return context


@page("/ui/count-sheets/{number}", role="manager", template="count_sheet.html")
async def sheet_page(request: web.Request):
    return await _sheet(request, _number(request))


@page("/ui/count-sheets/{number}/file", role="manager")
async def sheet_file(request: web.Request):
    number = _number(request)
    try:
        sheet = await request.app[STORE].read(count_sheets.get_sheet, number)
    except NotFound:
        return render(request, "error.html", status=404, error_key="count_not_found", message="")
    return web.Response(body=count_sheets.export_csv(sheet).encode("utf-8"), content_type="text/csv",
                        charset="utf-8", headers={"Content-Disposition": f'attachment; filename="count-sheet-{number}.csv"',
                                                  "Cache-Control": "no-store"})


@page("/ui/count-sheets/{number}/print", role="manager", method="POST")
async def print_sheet(request: web.Request):
    number = _number(request)
    form = await form_data(request)
    who = request[WHO]

    def run(conn, ctx):
        count_sheets.get_sheet(conn, number)  # 404 before queueing a job for no sheet
        job = spool.enqueue(conn, "count_sheet", f"count_sheet:{number}:{ctx.now}", {"number": number},
                            dataclasses.replace(ctx, device=who["display_name"]))
        if job is None:
            raise InputError("no_printer", "no printer prints count sheets", status=409)
        return job
    try:
        await ui_write(request, form, run, action="count_sheet.print", target=str(number))
    except NotFound:
        return render(request, "error.html", status=404, error_key="count_not_found", message="")
    except InputError as exc:
        key = "count_no_printer" if exc.code == "no_printer" else None
        return await _sheet(request, number, status=exc.status,
                            error=text(request[LANG], key) if key else error_text(exc, request[LANG]))
    raise web.HTTPSeeOther(f"/ui/count-sheets/{number}?done=printed")


def check_counts(form: dict, sheet: dict) -> tuple[dict, dict[int, int]]:
    """The form's counts by line number (a blank line was not counted) and the fields in error."""
    errors, counts = {}, {}
    for line in sheet["lines"]:
        name = f"c-{line['line_no']}"
        value = form.get(name, "").strip()
        if not value:
            continue
        if not INTEGER.fullmatch(value) or not 0 <= int(value) <= count_sheets.MAX_COUNTED:
            errors[name] = "count_err_integer"
        else:
            counts[line["line_no"]] = int(value)
    return errors, counts


async def _enter(request: web.Request, number: int, form: dict, counts_of) -> web.StreamResponse:
    """Record the counts (counts_of(conn) gives them, in the write's transaction) and go back to the sheet."""
    note = form.get("note", "").strip()[:100] or None
    try:
        await ui_write(request, form, lambda conn, ctx: count_sheets.record_counts(
            conn, number, counts_of(conn), ctx, note=note), action="count_sheet.enter", target=str(number))
    except NotFound:
        return render(request, "error.html", status=404, error_key="count_not_found", message="")
    except InputError as exc:
        rows = (exc.detail or {}).get("rows", [])
        return await _sheet(request, number, status=exc.status, error=error_text(exc, request[LANG]), rows=rows,
                            values=form)
    raise web.HTTPSeeOther(f"/ui/count-sheets/{number}?done=entered")


@page("/ui/count-sheets/{number}", role="manager", method="POST")
async def enter_counts(request: web.Request):
    number = _number(request)
    form = await form_data(request)
    response = await _sheet(request, number)
    if isinstance(response, web.StreamResponse):
        return response
    errors, counts = check_counts(form, response["sheet"])
    if errors:
        return await _sheet(request, number, status=422, errors=errors, values=form)
    return await _enter(request, number, form, lambda conn: counts)


@page("/ui/count-sheets/{number}/import", role="manager", method="POST")
async def import_counts(request: web.Request):
    number = _number(request)
    data = await request.post()
    upload = data.get("file")
    name = getattr(upload, "filename", "") or ""
    fmt = FORMATS.get(name[name.rfind("."):].lower()) if "." in name else None
    if fmt is None:
        return await _sheet(request, number, status=422, error=text(request[LANG], "count_err_file"))
    content = upload.file.read()
    form = {k: v for k, v in data.items() if isinstance(v, str)}
    form["file_sha256"] = hashlib.sha256(content).hexdigest()   # the same file sent twice is entered once
    try:
        rows = count_sheets.read_file(content, fmt)
    except InputError as exc:
        return await _sheet(request, number, status=422, error=error_text(exc, request[LANG]))
    return await _enter(request, number, form, lambda conn: count_sheets.counts_from_rows(conn, number, rows))
