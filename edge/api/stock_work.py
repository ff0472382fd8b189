"""Stock work on the local API: count sheets (/api/v1/count-sheets) and purchase suggestions
(/api/v1/purchase-suggestions), the same store functions as the dashboard's 盘点单 and 补货建议 pages."""

from __future__ import annotations

from aiohttp import web

from edge.api.registry import Param, operation, read, write
from edge.core.clock import iso, utcnow
from edge.core.errors import InputError, NotFound
from edge.core.schemas import CountSheetIn, SheetCountsIn
from edge.services.app_keys import CONFIG
from edge.store import count_sheets, purchase, spool

NUMBER = Param("number", "path", {"type": "integer", "minimum": 1}, "The count sheet's number (盘点单号)", True)


def _number(request: web.Request) -> int:
    raw = request.match_info["number"]
    if not (raw.isascii() and raw.isdigit() and len(raw) < 10):
        raise NotFound("unknown_count_sheet", f"no count sheet {raw}", field="number")
    return int(raw)


@operation("get", "/purchase-suggestions", "Purchase suggestions (补货建议): what to order now, from sales velocity",
           params=[Param("category", "query", {"type": "string", "maxLength": 100}, "Only this category"),
                   Param("sort", "query", {"type": "string", "enum": list(purchase.SORTS), "default": "days_left"},
                         "days_left: soonest out first; suggested, sold: largest first; name; sku")],
           responses={200: "items (sku, name, available, sold, sold_per_day, days_left, suggested...), the settings"})
async def get_suggestions(request):
    sort = request.query.get("sort", "days_left")
    if sort not in purchase.SORTS:
        raise InputError("invalid_query", f"sort must be one of {', '.join(purchase.SORTS)}", field="sort", status=400)
    category = request.query.get("category") or None
    if category is not None and len(category) > 100:
        raise InputError("invalid_query", "category is at most 100 characters", field="category", status=400)
    return await read(request, purchase.suggestions, request.app[CONFIG].stock, iso(utcnow()), category=category,
                      sort=sort)


@operation("post", "/count-sheets", "Make a count sheet (盘点单) of a category and/or a shelf, and print it if asked",
           body=CountSheetIn, responses={201: "The sheet: number, lines (no book quantity: a blind count), print job",
                                         409: "Printing asked, and no printer prints count sheets"})
async def post_count_sheet(request):
    def run(conn, body, ctx):
        sheet = count_sheets.create_sheet(conn, ctx, category=body.category, shelf=body.shelf)
        if body.print_sheet:
            job = spool.enqueue(conn, "count_sheet", f"count_sheet:{sheet['number']}:{ctx.now}",
                                {"number": sheet["number"]}, ctx)
            if job is None:
                raise InputError("no_printer", "no printer prints count_sheet (add it to a printer's documents in "
                                 "config.toml)", status=409)
            sheet["print_job"] = job
        return sheet
    return await write(request, CountSheetIn, run)


@operation("get", "/count-sheets/{number}", "A count sheet; once its counts are entered, each line's count and "
           "difference", params=[NUMBER], responses={200: "The sheet", 404: "No such sheet"})
async def get_count_sheet(request):
    return await read(request, count_sheets.get_sheet, _number(request))


@operation("post", "/count-sheets/{number}/counts", "Enter a count sheet's counts: one count document, once",
           body=SheetCountsIn, params=[NUMBER],
           responses={201: "The sheet with its counts and differences", 404: "No such sheet",
                      409: "The sheet's counts are already entered"})
async def post_sheet_counts(request):
    number = _number(request)

    def run(conn, body, ctx):
        counts: dict[int, int] = {}
        for index, line in enumerate(body.lines):
            if line.line_no in counts:
                raise InputError("duplicate_line", f"line {line.line_no} is given twice", field=f"lines[{index}]")
            counts[line.line_no] = line.counted
        return count_sheets.record_counts(conn, number, counts, ctx, note=body.note)
    return await write(request, SheetCountsIn, run)
