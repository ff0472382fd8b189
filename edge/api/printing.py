"""Printers and print jobs on the local API (/api/v1/printers, /api/v1/print-jobs)."""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Annotated

from aiohttp import web
from pydantic import Field, field_validator

from drivers.models import DOCUMENT_KINDS
from edge.api.registry import LIMIT, Param, cursor, json_response, operation, query_bool, query_int, read, write
from edge.core.context import WriteContext
from edge.core.errors import InputError, NotFound
from edge.core.schemas import Body, Text
from edge.services.app_keys import CONFIG, PRINTING, STORE
from edge.store import spool
from edge.store.migrations import PRINT_JOB_STATES

JOB_ID = Param("job_id", "path", {"type": "integer"}, "The print job's id", True)
PRINTER = Param("name", "path", {"type": "string"}, "The printer's name in config.toml", True)


class Confirm(Body):
    printed: bool = Field(description="true: it did print; false: it did not, print it again (marked 重打)")
    operator: Text


class Reprint(Body):
    operator: Text
    printer: Annotated[str, Field(min_length=1, max_length=32)] | None = Field(
        None, description="Another printer to use; the job's own by default")


class PrinterAction(Body):
    operator: Text


class DailySummary(Body):
    operator: Text
    date: Annotated[str, Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
                               json_schema_extra={"format": "date"})] | None = Field(
        None, description="Business day; today if omitted")

    @field_validator("date")
    @classmethod
    def _real_date(cls, value: str | None) -> str | None:
        if value is not None:
            date.fromisoformat(value)  # 2026-02-30 is refused here with a clear message
        return value


def by(body, ctx: WriteContext) -> WriteContext:
    """Jobs a person asks for are created by that person (the job's created_by)."""
    return dataclasses.replace(ctx, device=body.operator)


def _job_id(request: web.Request) -> int:
    raw = request.match_info["job_id"]
    if not (raw.isascii() and raw.isdigit() and len(raw) < 19):
        raise NotFound("unknown_print_job", f"no print job {raw}", field="job_id")
    return int(raw)


def _printer(request: web.Request, name: str | None = None) -> str:
    name = name or request.match_info["name"]
    if name not in request.app[PRINTING].workers:
        known = ", ".join(request.app[PRINTING].workers) or "none is configured"
        raise NotFound("unknown_printer", f"no enabled printer {name!r} ({known})", field="printer")
    return name


@operation("get", "/printers", "Printers: state (ready, paper out, offline...), since when, jobs by state",
           tag="printing", responses={200: "items, routes and alerts"})
async def list_printers(request):
    service = request.app[PRINTING]
    counts = await request.app[STORE].read(spool.counts)
    items = [{**p, "jobs": counts.get(p["name"], {})} for p in service.printers()]
    return json_response({"items": items, "routes": {k: p for k, (p, _) in service.routes.items()},
                          "unprinted_orders": service.alerts})


@operation("get", "/print-jobs", "Print jobs, newest first", tag="printing",
           params=[Param("state", "query", {"type": "string", "enum": list(PRINT_JOB_STATES)}, "Only this state"),
                   Param("printer", "query", {"type": "string"}, "Only this printer"),
                   Param("kind", "query", {"type": "string", "enum": list(DOCUMENT_KINDS)},
                         "Only this kind (receipt: the last receipt to reprint is the first item)"),
                   Param("order_id", "query", {"type": "string"}, "Only the jobs of this online order"),
                   Param("attention", "query", {"type": "boolean"},
                         "Only uncertain jobs nobody has confirmed or reprinted yet"),
                   cursor("before", "The next_before of the previous page"), LIMIT],
           responses={200: "items and next_before"})
async def list_jobs(request):
    state = request.query.get("state")
    if state is not None and state not in PRINT_JOB_STATES:
        raise InputError("invalid_query", f"state must be one of {', '.join(PRINT_JOB_STATES)}", field="state",
                         status=400)
    kind = request.query.get("kind")
    if kind is not None and kind not in DOCUMENT_KINDS:
        raise InputError("invalid_query", f"kind must be one of {', '.join(DOCUMENT_KINDS)}", field="kind",
                         status=400)
    return await read(request, spool.list_jobs, state=state, printer=request.query.get("printer") or None,
                      kind=kind,
                      order_id=request.query.get("order_id") or None, attention=query_bool(request, "attention"),
                      before=query_int(request, "before", None, 0, 2**63 - 1),
                      limit=query_int(request, "limit", 100, 1, 1000))


@operation("get", "/print-jobs/{job_id}", "One print job", tag="printing", params=[JOB_ID],
           responses={200: "The job", 404: "No such job"})
async def get_job(request):
    return await read(request, spool.get_job, _job_id(request))


@operation("post", "/print-jobs/{job_id}/confirm", "Resolve an uncertain job: it printed, or print it again",
           tag="printing", body=Confirm, params=[JOB_ID],
           responses={201: "job, and the reprint job when printed is false", 404: "No such job",
                      409: "The job is not an unresolved uncertain job"})
async def confirm_job(request):
    job_id = _job_id(request)
    return await write(request, Confirm, lambda conn, body, ctx: spool.confirm(
        conn, job_id, body.printed, body.operator, ctx))


@operation("post", "/print-jobs/{job_id}/reprint", "Print a finished job again (marked 重打 if it had printed)",
           tag="printing", body=Reprint, params=[JOB_ID],
           responses={201: "job and reprint", 404: "No such job or printer", 409: "The job has not finished"})
async def reprint_job(request):
    job_id = _job_id(request)

    return await write(request, Reprint, lambda conn, body, ctx: spool.reprint(
        conn, job_id, body.operator, ctx, printer=_printer(request, body.printer) if body.printer else None))


@operation("post", "/printers/{name}/test-page", "Print a test page (paper width ruler, Chinese, ￥, QR)",
           tag="printing", body=PrinterAction, params=[PRINTER], responses={201: "The queued job", 404: "No such printer"})
async def test_page(request):
    name = _printer(request)
    paper = next(p.paper_mm for p in request.app[CONFIG].raw.printers if p.name == name)

    def run(conn, body, ctx):
        return spool.enqueue(conn, "test_page", f"test_page:{name}:{ctx.now}", {"printer": name, "paper_mm": paper},
                             by(body, ctx), printer=name)
    return await write(request, PrinterAction, run)


@operation("post", "/printers/{name}/status-ticket", "Print the status ticket (dashboard address, devices, cloud)",
           tag="printing", body=PrinterAction, params=[PRINTER], responses={201: "The queued job",
                                                                             404: "No such printer"})
async def status_ticket(request):
    name = _printer(request)
    payload = await request.app[PRINTING].status_ticket_data()

    def run(conn, body, ctx):
        return spool.enqueue(conn, "status_ticket", f"status_ticket:{name}:{ctx.now}", payload, by(body, ctx),
                             printer=name)
    return await write(request, PrinterAction, run)


@operation("post", "/print/daily-summary", "Print the daily summary (日结单) of a business day", tag="printing",
           body=DailySummary, responses={201: "The queued job", 409: "No printer prints daily summaries"})
async def daily_summary(request):
    def run(conn, body, ctx):
        day = body.date or ctx.day
        job = spool.enqueue(conn, "daily_summary", f"daily_summary:{day}:{ctx.now}", {"date": day}, by(body, ctx))
        if job is None:
            raise InputError("no_printer", "no printer prints daily_summary (add it to a printer's documents in "
                             "config.toml)", status=409)
        return job
    return await write(request, DailySummary, run)

