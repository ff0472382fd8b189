"""Sync status and dead-letter actions on the local API (/api/v1/sync/...)."""

from __future__ import annotations

from aiohttp import web

from edge.api.registry import LIMIT, Param, json_response, operation, query_bool, query_int, read, write
from edge.core.schemas import Body, Text
from edge.services.app_keys import STORE, SYNC
from edge.store import inbox, outbox, reconciliations

SEQ = Param("seq", "path", {"type": "integer"}, "The dead letter's outbox seq", True)


class DeadLetterAction(Body):
    operator: Text
    note: Text | None = None


def _seq(request: web.Request) -> int:
    raw = request.match_info["seq"]
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 19 else -1


@operation("get", "/sync/status", "Cloud link and upload queue: depth by type, oldest unsent, dead letters",
           tag="sync", responses={200: "link (state, since, last success, last error) and queue"})
async def sync_status(request):
    engine = request.app.get(SYNC)
    status = await request.app[STORE].read(outbox.queue_status)
    link = engine.link.as_dict() if engine else {"state": "disabled", "reason": "no [cloud] url in config.toml"}
    return json_response({"link": link, "queue": status})


@operation("get", "/sync/dead-letters", "Events the cloud rejected, with the reason", tag="sync",
           params=[Param("all", "query", {"type": "boolean"}, "Also those already retried or discarded"), LIMIT],
           responses={200: "items"})
async def list_dead_letters(request):
    include, limit = query_bool(request, "all"), query_int(request, "limit", 100, 1, 1000)
    return await read(request, lambda conn: {"items": outbox.dead_letters(conn, include_resolved=include,
                                                                         limit=limit)})


@operation("post", "/sync/dead-letters/{seq}/retry", "Send a rejected event again, as a new event", tag="sync",
           body=DeadLetterAction, params=[SEQ], responses={201: "retried", 404: "no such dead letter",
                                                           409: "already retried or discarded"})
async def retry_dead_letter(request):
    return await write(request, DeadLetterAction, lambda conn, body, ctx: outbox.retry_dead_letter(
        conn, _seq(request), body.operator, body.note, ctx))


@operation("post", "/sync/dead-letters/{seq}/discard", "Give up on a rejected event (the cloud is told)",
           tag="sync", body=DeadLetterAction, params=[SEQ],
           responses={201: "discarded", 404: "no such dead letter", 409: "already retried or discarded"})
async def discard_dead_letter(request):
    return await write(request, DeadLetterAction, lambda conn, body, ctx: outbox.discard_dead_letter(
        conn, _seq(request), body.operator, body.note, ctx))


@operation("get", "/sync/rejected-changes", "Cloud changes the store could not apply", tag="sync",
           params=[LIMIT], responses={200: "items"})
async def rejected_changes(request):
    limit = query_int(request, "limit", 100, 1, 1000)
    return await read(request, lambda conn: {"items": inbox.rejected(conn, limit)})


@operation("get", "/sync/reconciliations", "Differences found with the cloud's copy of the balances",
           tag="sync", params=[LIMIT], responses={200: "items"})
async def list_reconciliations(request):
    limit = query_int(request, "limit", 100, 1, 1000)
    return await read(request, lambda conn: {"items": reconciliations.list_reconciliations(conn, limit)})
