"""Reports under /api/v1: the figures of the manager's 报表 page for a business day or a range."""

from __future__ import annotations

from edge.api.registry import Param, json_response, operation, query_date
from edge.core.clock import business_date, utcnow
from edge.services.app_keys import CONFIG, REPORTS, STORE
from edge.store import reports

DATE = {"type": "string", "format": "date"}


@operation("get", "/reports", "Revenue (till sales - refunds + online orders handed over), payment split, by day "
           "and hour, best sellers, categories, 核销 records and comparisons, for business days from..to",
           params=[Param("from", "query", DATE, "First business day; today if omitted"),
                   Param("to", "query", DATE, f"Last business day, at most {reports.MAX_DAYS} days from the "
                         "first; `from` if omitted")],
           responses={200: "The report (docs/api.md: what each figure counts)",
                      400: f"A date that is not YYYY-MM-DD, `to` before `from`, or more than {reports.MAX_DAYS} "
                           "days"},
           tag="reports")
async def get_report(request):
    config = request.app[CONFIG]
    first = query_date(request, "from")
    last = query_date(request, "to") if "to" in request.query else first
    today = business_date(utcnow(), config.tz, config.day_cutoff)
    # the long-job reader: a year's report read whole takes longer than a request's read limit
    return json_response(await request.app[STORE].read_long(
        lambda conn: reports.report(conn, first, last, config.tz, config.day_cutoff, today=today,
                                    closed=request.app.get(REPORTS))))
