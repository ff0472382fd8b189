"""The print spool's rules, on a real store database (no printer involved)."""

from __future__ import annotations

import json

import pytest

from edge.core.context import WriteContext
from edge.core.errors import InputError
from edge.store import db, spool

T0 = WriteContext("till-1", "2026-11-22T02:00:00.000Z", "2026-11-22")
LATER = WriteContext("store-edge", "2026-11-22T03:00:00.000Z", "2026-11-22")
ROUTES = {"receipt": ("counter", 3600), "drawer": ("counter", 10), "order_ticket": ("backroom", 86400)}


@pytest.fixture
def conn(tmp_path):
    conn = db.open_store_db(tmp_path / "store.db")
    with db.transaction(conn):
        spool.set_routes(conn, ROUTES, ["counter", "backroom"])
    yield conn
    conn.close()


def write(conn, fn, *args, **kwargs):
    with db.transaction(conn):
        return fn(conn, *args, **kwargs)


def events(conn) -> list[dict]:
    return [json.loads(r[0]) for r in conn.execute("SELECT payload FROM outbox WHERE type = 'print.result' "
                                                   "ORDER BY seq")]


def test_a_kind_without_a_printer_queues_nothing_and_a_key_queues_once(conn):
    assert write(conn, spool.enqueue, "daily_summary", "daily_summary:x", {"date": "2026-11-22"}, T0) is None
    first = write(conn, spool.enqueue, "receipt", "receipt:s1", {"sale_id": "s1"}, T0)
    again = write(conn, spool.enqueue, "receipt", "receipt:s1", {"sale_id": "s1"}, T0)
    assert first == again and first["printer"] == "counter" and first["expires_at"] == "2026-11-22T03:00:00.000Z"
    assert conn.execute("SELECT count(*) FROM print_jobs").fetchone()[0] == 1


def test_jobs_of_a_removed_printer_follow_their_kind_but_named_ones_stay(conn):
    write(conn, spool.enqueue, "order_ticket", "order_ticket:o1", {"order_id": "o1"}, T0, order_id="o1")
    write(conn, spool.enqueue, "test_page", "test_page:backroom", {"printer": "backroom"}, T0, printer="backroom")
    write(conn, spool.set_routes, {**ROUTES, "order_ticket": ("counter", 86400)}, ["counter"])
    printers = dict(conn.execute("SELECT kind, printer FROM print_jobs"))
    assert printers == {"order_ticket": "counter", "test_page": "backroom"}  # the test page expires visibly


def test_expiry_is_visible_and_told_to_the_cloud_for_orders(conn):
    write(conn, spool.enqueue, "order_ticket", "order_ticket:o1", {"order_id": "o1"}, T0, order_id="o1")
    write(conn, spool.enqueue, "drawer", "drawer:s1", {"sale_id": "s1"}, T0)
    assert spool.next_job(conn, "counter", LATER.now) is None  # the drawer is past its 10 s
    expired = write(conn, spool.expire_overdue, LATER)
    assert [j["kind"] for j in expired] == ["drawer"]
    assert expired[0]["state"] == "expired" and "超时未打印" in expired[0]["last_error"]
    assert events(conn) == []  # a drawer kick is nothing the cloud tracks
    day_later = WriteContext("store-edge", "2026-11-23T02:00:00.000Z", "2026-11-23")
    write(conn, spool.expire_overdue, day_later)
    assert [(e["order_id"], e["result"]) for e in events(conn)] == [("o1", "expired")]


def test_a_job_cut_off_by_a_crash_becomes_uncertain_and_only_a_person_resends_it(conn):
    job = write(conn, spool.enqueue, "order_ticket", "order_ticket:o1", {"order_id": "o1"}, T0, order_id="o1")
    assert write(conn, spool.mark_printing, job["id"], T0)
    assert not write(conn, spool.mark_printing, job["id"], T0)  # only from queued
    [recovered] = write(conn, spool.recover, LATER)
    assert recovered["state"] == "uncertain" and recovered["needs_attention"]
    assert spool.next_job(conn, "backroom", LATER.now) is None
    with pytest.raises(InputError) as err:
        write(conn, spool.reprint, 999, "店长", LATER)
    assert err.value.code == "unknown_print_job"
    done = write(conn, spool.confirm, job["id"], False, "店长", LATER)
    assert done["job"]["resolution"] == "reprinted" and done["reprint"]["reprint"] is True
    assert done["reprint"]["key"] == "order_ticket:o1#1" and done["reprint"]["created_by"] == "店长"
    with pytest.raises(InputError) as err:
        write(conn, spool.confirm, job["id"], True, "店长", LATER)
    assert err.value.status == 409
    with pytest.raises(InputError) as err:  # the reprint has not printed yet
        write(conn, spool.reprint, done["reprint"]["id"], "店长", LATER)
    assert err.value.code == "job_not_finished"
    assert [e["result"] for e in events(conn)] == ["uncertain", "reprinted"]


def test_confirmed_printed_and_reprint_marks(conn):
    job = write(conn, spool.enqueue, "receipt", "receipt:s1", {"sale_id": "s1"}, T0)
    write(conn, spool.mark_printing, job["id"], T0)
    write(conn, spool.finish, job["id"], "uncertain", T0, error="发送中断")
    done = write(conn, spool.confirm, job["id"], True, "小王", LATER)
    assert done["job"]["state"] == "printed" and done["job"]["resolution"] == "confirmed_printed"
    assert done["job"]["resolved_by"] == "小王" and done["reprint"] is None
    again = write(conn, spool.reprint, job["id"], "小王", LATER)["reprint"]
    assert again["reprint"] is True and again["key"] == "receipt:s1#1"
    with pytest.raises(ValueError):
        write(conn, spool.finish, job["id"], "queued", T0)


def test_waiting_reason_is_shown_on_every_queued_job_of_the_printer(conn):
    for n in range(3):
        write(conn, spool.enqueue, "receipt", f"receipt:s{n}", {"sale_id": f"s{n}"}, T0)
    write(conn, spool.record_wait, "counter", "打印机缺纸", T0)
    assert {r[0] for r in conn.execute("SELECT last_error FROM print_jobs")} == {"打印机缺纸"}
    assert spool.counts(conn) == {"counter": {"queued": 3}}
    page = spool.list_jobs(conn, kind="receipt", limit=2)
    assert [j["key"] for j in page["items"]] == ["receipt:s2", "receipt:s1"] and page["next_before"]
