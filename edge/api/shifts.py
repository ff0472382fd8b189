"""交班 and 日结 on the local API: a till opens its shift, reads it, closes it with the cash counted; the
business day's close with every shift of the day (/api/v1/shifts, /api/v1/day-close)."""

from __future__ import annotations

from aiohttp import web

from edge.api.registry import Param, operation, query_date, read, write
from edge.core.clock import day_bounds
from edge.core.errors import NotFound
from edge.services.app_keys import CONFIG, DEVICE
from edge.store import shifts
from edge.store.day_close import day_close

SHIFT_ID = Param("shift_id", "path", {"type": "integer"}, "The shift's id", True)
DATE = Param("date", "query", {"type": "string", "format": "date"}, "Business day; today if omitted")


def _shift_id(request: web.Request) -> int:
    raw = request.match_info["shift_id"]
    if not (raw.isascii() and raw.isdigit() and len(raw) < 19):
        raise NotFound("unknown_shift", f"no shift {raw}", field="shift_id")
    return int(raw)


@operation("post", "/shifts", "Open a shift at this till (one open shift per till)", tag="shifts",
           body=shifts.ShiftOpen, responses={201: "The shift, open", 409: "This till has a shift open"})
async def open_shift(request):
    till = request[DEVICE]
    return await write(request, shifts.ShiftOpen, lambda conn, body, ctx: shifts.open_shift(conn, body, ctx, till=till))


@operation("get", "/shifts/current", "This till's open shift with its figures so far", tag="shifts",
           responses={200: "The shift", 404: "No shift is open at this till"})
async def current_shift(request):
    till = request[DEVICE]

    def current(conn):
        shift = shifts.open_at(conn, till=till)
        if shift is None:
            raise NotFound("no_open_shift", f"no shift is open at till {till!r}")
        return shift
    return await read(request, current)


@operation("get", "/shifts", "The shifts of a business day (open ones included)", tag="shifts", params=[DATE],
           responses={200: "items"})
async def list_shifts(request):
    day = query_date(request, "date")
    return await read(request, lambda conn: {"date": day, "items": shifts.of_day(conn, day)})


@operation("get", "/shifts/{shift_id}", "One shift with its figures", tag="shifts", params=[SHIFT_ID],
           responses={200: "The shift", 404: "No such shift"})
async def get_shift(request):
    return await read(request, shifts.get_shift, _shift_id(request))


@operation("post", "/shifts/{shift_id}/close", "Close this till's shift with the cash counted: the expected "
           "cash and the difference are kept, the 交班小票 is printed", tag="shifts", body=shifts.ShiftClose,
           params=[SHIFT_ID], responses={201: "The shift, closed, and its print job", 403: "Another till's shift",
                                         404: "No such shift", 409: "Already closed"})
async def close_shift(request):
    shift_id, till = _shift_id(request), request[DEVICE]
    return await write(request, shifts.ShiftClose, lambda conn, body, ctx: shifts.close_shift(
        conn, shift_id, body, ctx, {"user": till, "role": "till"}, till=till))


@operation("get", "/day-close", "日结: a business day's totals, hand-overs and every shift of the day "
           "(print it with POST /print/daily-summary)", tag="shifts", params=[DATE],
           responses={200: "The day's close"})
async def get_day_close(request):
    config = request.app[CONFIG]
    day = query_date(request, "date")
    return await read(request, day_close, day, day_bounds(day, config.tz, config.day_cutoff))
