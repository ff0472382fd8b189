"""The scan journal: every scan with its classification, in order; each consumer reads from its position.

The scan router (edge/services/scan_router.py) writes each scan here as it arrives. A consumer
(a till's POS, the cashier screen) has a name and an acknowledged position: it gets every scan after
it, over a WebSocket or by polling, and nothing is lost between two polls or across a restart.
A consumer seen for the first time starts at the newest scan: it does not replay the day.

A scan is classified once, when it is recorded: its kind and detail are stored, and whoever looks a
stored scan up again (the cashier screen's list) rebuilds the classification from them
(`classification`) rather than classifying the text again.

A payment code (付款码, kind `payment_code`) is a bearer credential: it is stored masked (first and
last 4 digits), text, raw bytes and detail alike. The whole code lives only in the memory of the scan
router, for the till that asked for it (edge/services/payment_codes.py).

A member code (会员码, kind `member_code`) is kept the same way, masked (edge/core/member_code.py `mask`),
with what its check found (`detail.member`: the member as masked by the cloud, or `detail.refused`: the
reason): the scan router checks it as it records it, so no reader ever needs the code again.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from datetime import date, datetime, timezone

from drivers.scan import Scan
from edge.core import member_code
from edge.core.classify import Classified, mask_payment_code
from edge.core.clock import epoch, iso
from edge.core.context import WriteContext

_FIELDS = {f.name for f in dataclasses.fields(Classified)}


def _jsonable(value):
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (tuple, list)):
        return list(value)
    if hasattr(value, "items"):
        return dict(value)
    return value


def detail(classified: Classified, scanned: str | None = None) -> dict:
    """The classification without its empty fields (kind first), as stored and sent; `text` only when
    it differs from what was scanned (a symbology identifier or spaces removed)."""
    out = {}
    for f in dataclasses.fields(classified):
        value = getattr(classified, f.name)
        if f.name == "text" and (scanned is None or value == scanned):
            continue
        if value not in (None, (), {}) and not (hasattr(value, "items") and not value):
            out[f.name] = _jsonable(value)
    return out


def as_classified(text: str, kind: str, stored: dict) -> Classified:
    """The classification a stored scan was given (the inverse of `detail`)."""
    values = {k: v for k, v in stored.items() if k in _FIELDS and k not in ("kind", "text")}
    if "lookup" in values:
        values["lookup"] = tuple(values["lookup"])
    for name in ("expiry", "best_before"):
        if name in values:
            values[name] = date.fromisoformat(values[name])
    return Classified(kind, stored.get("text", text), **values)


def is_member_code(classified: Classified) -> bool:
    """A member code, or anything of its form (a malformed one is kept no more whole than a good one)."""
    return classified.kind == "member_code" or member_code.split(classified.text) is not None


def record(conn: sqlite3.Connection, scan: Scan, classified: Classified, outcome: dict | None = None) -> dict:
    """`outcome`: what checking the code found, kept in `detail` beside the classification (member codes)."""
    masked = None
    if classified.kind == "payment_code":
        masked = mask_payment_code(classified.text)
    elif is_member_code(classified):
        masked = member_code.mask(classified.text)
    if masked is not None:
        scan = dataclasses.replace(scan, text=masked, raw=masked.encode())
        classified = dataclasses.replace(classified, text=masked, detail=None)
    cur = conn.execute("INSERT INTO scans (device, source, text, raw, kind, detail, scanned_at) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (scan.device, scan.source, scan.text, scan.raw, classified.kind,
                        json.dumps(detail(classified, scan.text) | (outcome or {}), ensure_ascii=False),
                        _iso(scan.at)))
    return get_scan(conn, cur.lastrowid)


def classification(conn: sqlite3.Connection, seq: int) -> Classified | None:
    """A stored scan's classification, as the router made it; None if there is no such scan."""
    row = conn.execute("SELECT text, kind, detail FROM scans WHERE seq = ?", (seq,)).fetchone()
    return as_classified(row[0], row[1], json.loads(row[2])) if row else None


def _iso(at: float) -> str:
    return iso(datetime.fromtimestamp(at, timezone.utc))


def _row(row: sqlite3.Row) -> dict:
    item = dict(row)
    item["detail"] = json.loads(item["detail"])
    item["raw_hex"] = item.pop("raw").hex(" ") if item.get("raw") is not None else None
    return item


def get_scan(conn: sqlite3.Connection, seq: int) -> dict:
    return _row(conn.execute("SELECT * FROM scans WHERE seq = ?", (seq,)).fetchone())


def position(conn: sqlite3.Connection, consumer: str) -> int | None:
    row = conn.execute("SELECT acked_seq FROM scan_consumers WHERE name = ?", (consumer,)).fetchone()
    return row[0] if row else None


def register(conn: sqlite3.Connection, consumer: str, ctx: WriteContext) -> int:
    """The consumer's position; a new consumer starts at the newest scan."""
    conn.execute("INSERT INTO scan_consumers (name, acked_seq, updated_at) SELECT ?, coalesce(max(seq), 0), ? "
                 "FROM scans WHERE true ON CONFLICT (name) DO NOTHING", (consumer, ctx.now))  # WHERE: SQLite's parser
    return position(conn, consumer)


def latest_runs(conn: sqlite3.Connection, limit: int, window_seconds: float, depth: int = 5000,
                page: int = 500) -> list[dict]:
    """The newest scans, newest first, a run of the same code read again and again on one device as one
    item: `count` readings from `first_seq` (at `first_at`) to `seq` (at `scanned_at`). A reading joins
    the run when it comes within `window_seconds` of the run's reading after it; another device's scans
    in between do not break it. Read a page at a time until more than `limit` runs are found, at most
    `depth` scans (a run may be older still: its count is then of the scans read).

    Collapsed here, in the read, and never when recording: each consumer still gets every scan."""
    runs: list[dict] = []
    open_run: dict[str, dict] = {}      # device -> its run the next older reading may join
    before, read = 2 ** 63 - 1, 0
    while read < depth and len(runs) <= limit:
        rows = conn.execute("SELECT seq, device, source, text, kind, scanned_at FROM scans WHERE seq < ? "
                            "ORDER BY seq DESC LIMIT ?", (before, page)).fetchall()
        for row in rows:
            at = epoch(row["scanned_at"])
            run = open_run.get(row["device"])
            if run is not None and run["text"] == row["text"] and run["_first"] - at <= window_seconds:
                run.update(count=run["count"] + 1, first_seq=row["seq"], first_at=row["scanned_at"], _first=at)
                continue
            run = {**dict(row), "count": 1, "first_seq": row["seq"], "first_at": row["scanned_at"], "_first": at}
            open_run[row["device"]] = run
            runs.append(run)
        if len(rows) < page:
            break
        read, before = read + len(rows), rows[-1]["seq"]
    for run in runs[:limit]:
        del run["_first"]
        run["detail"] = json.loads(conn.execute("SELECT detail FROM scans WHERE seq = ?", (run["seq"],)).fetchone()[0])
    return runs[:limit]


def after(conn: sqlite3.Connection, seq: int, limit: int = 100) -> list[dict]:
    return [_row(r) for r in conn.execute("SELECT * FROM scans WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit))]


def ack(conn: sqlite3.Connection, consumer: str, seq: int, ctx: WriteContext) -> dict:
    """Move a consumer's position forward (never back: a late or repeated ack is harmless)."""
    newest = conn.execute("SELECT coalesce(max(seq), 0) FROM scans").fetchone()[0]
    seq = min(seq, newest)
    conn.execute("INSERT INTO scan_consumers (name, acked_seq, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) "
                 "DO UPDATE SET acked_seq = max(acked_seq, excluded.acked_seq), updated_at = excluded.updated_at",
                 (consumer, seq, ctx.now))
    return {"consumer": consumer, "acked_seq": position(conn, consumer)}


def newest_seq(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT coalesce(max(seq), 0) FROM scans").fetchone()[0]
