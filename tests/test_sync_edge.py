"""The edge's side of sync without a cloud: the queue bookkeeping, applying changes, online orders,
dead letters, reconciliation maths, and the client's classification of answers."""

import asyncio
import contextlib
import hashlib
import json

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from edge.store import db, orders, outbox, reconciliations, stock
from protocol.stock import checksum
from sync import changes
from sync.client import CloudClient, NeedsPerson, RetryLater, retry_after
from tests.conftest import OPENING, SEED, ledger_mismatches, query


@pytest.fixture
def conn(db_path):
    conn = db.connect(db_path)
    yield conn
    conn.close()


def txn(conn, fn, *args):
    with db.transaction(conn):
        return fn(conn, *args)


def order_change(order_id="o-1", cursor=1, lines=(("DRK-001", 3),), change_id=None):
    return {"cursor": cursor, "id": change_id or f"c-{order_id}", "type": "order.created", "payload": {
        "order_id": order_id, "number": "A001", "kind": "pickup", "total_fen": 600,
        "pickup_code_sha256": hashlib.sha256(b"123456").hexdigest(), "customer_note": "少冰",
        "lines": [{"sku": sku, "name": "商品", "qty": qty, "price_fen": 200} for sku, qty in lines]}}


def balance(db_path, sku):
    return query(db_path, "SELECT on_hand, reserved, available FROM stock_balances WHERE sku = ?", sku)[0]


def events(db_path, event_type):
    return [json.loads(p) for p, in query(db_path, "SELECT payload FROM outbox WHERE type = ? ORDER BY seq",
                                          event_type)]


# -- applying changes --------------------------------------------------------------------------------

def test_order_reserves_stock_and_redelivery_is_a_no_op(conn, db_path):
    page = [order_change()]
    assert txn(conn, changes.apply_page, page, 1, SEED) == {"applied": 1, "rejected": 0, "skipped": 0}
    assert balance(db_path, "DRK-001") == (OPENING["DRK-001"], 3, OPENING["DRK-001"] - 3)
    assert events(db_path, "order.received") == [
        {"order_id": "o-1", "short": [], "moves": [{"sku": "DRK-001", "qty": 3, "reason": "reserve"}]}]
    # the same page again (a retry after a lost answer, or a rewound cursor): nothing happens twice
    assert txn(conn, changes.apply_page, page, 1, SEED) == {"applied": 0, "rejected": 0, "skipped": 1}
    assert balance(db_path, "DRK-001")[1] == 3
    assert query(db_path, "SELECT value FROM sync_state WHERE key = 'cursor'") == [("1",)]
    assert ledger_mismatches(db_path) == []


def test_short_order_is_stored_reserved_and_flagged(conn, db_path):
    # SNK-002 has 2 on the shelf; the order wants 5 in two lines
    txn(conn, changes.apply_page, [order_change("o-2", lines=(("SNK-002", 1), ("SNK-002", 4)))], 1, SEED)
    order = orders.get_order(conn, "o-2")
    assert order["short"] is True and [line["short_qty"] for line in order["lines"]] == [0, 3]
    assert balance(db_path, "SNK-002") == (2, 5, -3)
    assert events(db_path, "order.received")[0]["short"] == [{"sku": "SNK-002", "qty": 4, "available": 1}]


def test_cancel_releases_and_cancel_after_handover_is_a_conflict(conn, db_path):
    txn(conn, changes.apply_page, [order_change("o-3")], 1, SEED)
    cancel = {"cursor": 2, "id": "c-cancel", "type": "order.cancelled", "payload": {"order_id": "o-3",
                                                                                   "reason": "顾客取消"}}
    txn(conn, changes.apply_page, [cancel], 2, SEED)
    assert orders.get_order(conn, "o-3")["state"] == "cancelled"
    assert balance(db_path, "DRK-001")[1] == 0
    assert events(db_path, "order.state_changed")[-1]["moves"] == [{"sku": "DRK-001", "qty": -3, "reason": "release"}]

    txn(conn, changes.apply_page, [order_change("o-4", cursor=3)], 3, SEED)
    conn.execute("UPDATE orders SET state = 'picked_up' WHERE id = 'o-4'")   # handed over (issue 5's path)
    refund = {"cursor": 4, "id": "c-refund", "type": "order.refunded", "payload": {"order_id": "o-4"}}
    txn(conn, changes.apply_page, [refund], 4, SEED)
    order = orders.get_order(conn, "o-4")
    assert order["state"] == "picked_up" and "refunded upstream after it was handed over" in order["conflict"]
    assert events(db_path, "order.conflict")[0]["order_id"] == "o-4"


@pytest.mark.parametrize("change, reason", [
    ({"type": "order.created", "payload": {"order_id": "x"}}, "number: required field is missing"),
    ({"type": "order.created", "payload": order_change(lines=(("NOPE", 1),))["payload"]}, "NOPE is not in this"),
    ({"type": "order.cancelled", "payload": {"order_id": "never-seen"}}, "no order never-seen"),
    ({"type": "price.exploded", "payload": {}}, "unknown change type 'price.exploded'"),
    ({"type": "product.upserted", "payload": {"sku": "N-1", "name": "x", "price_fen": -5}}, "price_fen"),
    ({"type": "product.upserted", "payload": "not an object"}, "sku: required field is missing"),
    ({"type": "stock.correction", "payload": {"sku": "DRK-001", "qty": "3", "reason": "x"}}, "qty"),
    ({"type": "key.published", "payload": {"kid": "k1", "alg": "RSA", "public_key": "x" * 44}}, "alg"),
    ({"type": "coupon.revoked", "payload": {"coupon_id": "c-9"}}, "coupon c-9 was never defined"),
])
def test_a_bad_change_is_rejected_reported_and_skipped(conn, db_path, change, reason):
    before = query(db_path, "SELECT * FROM stock_balances ORDER BY sku")
    page = [{"cursor": 7, "id": "bad", **change}, order_change("ok", cursor=8)]
    assert txn(conn, changes.apply_page, page, 8, SEED) == {"applied": 1, "rejected": 1, "skipped": 0}
    (status, why), = query(db_path, "SELECT status, reason FROM inbox WHERE id = 'bad'")
    assert status == "rejected" and reason in why, why
    assert events(db_path, "change.rejected")[0]["change_id"] == "bad"
    assert query(db_path, "SELECT value FROM sync_state WHERE key = 'cursor'") == [("8",)]
    after = dict((r[0], r) for r in query(db_path, "SELECT * FROM stock_balances ORDER BY sku"))
    assert {r[0]: r for r in before if r[0] != "DRK-001"} == {k: v for k, v in after.items() if k != "DRK-001"}


def test_catalog_keys_coupons_and_corrections(conn, db_path):
    page = [
        {"cursor": 1, "id": "p", "type": "product.upserted", "payload": {
            "sku": "NEW-1", "name": "新品 酸奶", "price_fen": 650, "barcodes": [], "future_field": 1}},
        {"cursor": 2, "id": "k", "type": "key.published", "payload": {"kid": "k1", "alg": "Ed25519",
                                                                      "public_key": "A" * 44}},
        {"cursor": 3, "id": "cd", "type": "coupon.defined", "payload": {"coupon_id": "c1", "value_fen": 500}},
        {"cursor": 4, "id": "cr", "type": "coupon.revoked", "payload": {"coupon_id": "c1", "reason": "活动结束"}},
        {"cursor": 5, "id": "sc", "type": "stock.correction", "payload": {"sku": "NEW-1", "qty": 12,
                                                                         "reason": "总部调拨"}},
    ]
    assert txn(conn, changes.apply_page, page, 5, SEED)["applied"] == 5
    assert query(db_path, "SELECT name, price_fen FROM products WHERE sku = 'NEW-1'") == [("新品 酸奶", 650)]
    assert balance(db_path, "NEW-1")[0] == 12
    assert query(db_path, "SELECT revoke_reason FROM coupon_definitions") == [("活动结束",)]
    assert events(db_path, "stock.corrected")[0]["moves"] == [{"sku": "NEW-1", "qty": 12, "reason": "correction"}]


def test_a_product_from_the_cloud_is_found_by_pinyin(conn, db_path):
    upsert = {"cursor": 1, "id": "p-kl", "type": "product.upserted", "payload": {
        "sku": "NEW-9", "name": "可乐", "price_fen": 300, "barcodes": []}}
    assert txn(conn, changes.apply_page, [upsert], 1, SEED)["applied"] == 1
    for q in ("kele", "kl", "KL", "ke"):
        assert [item["sku"] for item in stock.list_balances(conn, q=q)["items"]] == ["DRK-002", "NEW-9"], q
    # renamed by the cloud: the keys follow the name
    renamed = {**upsert, "cursor": 2, "id": "p-kl-2", "payload": {**upsert["payload"], "name": "雪碧"}}
    assert txn(conn, changes.apply_page, [renamed], 2, SEED)["applied"] == 1
    assert [item["sku"] for item in stock.list_balances(conn, q="xuebi")["items"]] == ["NEW-9"]
    assert [item["sku"] for item in stock.list_balances(conn, q="kl")["items"]] == ["DRK-002"]


# -- the upload queue --------------------------------------------------------------------------------

def test_results_dead_letters_and_resync(conn, db_path):
    txn(conn, changes.apply_page, [order_change("a", 1), order_change("b", 2), order_change("c", 3)], 3, SEED)
    batch = outbox.pending_batch(conn, "test-store", 100)
    assert [e["local_seq"] for e in batch] == list(range(1, len(batch) + 1))
    first, second = batch[0], batch[1]
    results = [{"id": first["id"], "seq": first["seq"], "status": "applied"},
               {"id": second["id"], "seq": second["seq"], "status": "rejected", "reason": "unknown_sku: X"}]
    with db.transaction(conn):
        outbox.record_results(conn, batch, results, SEED.now)
        outbox.resync(conn, 3, batch[-1]["local_seq"])
    assert outbox.acked_seq(conn) == 2
    assert [(d["seq"], d["reason"]) for d in outbox.dead_letters(conn)] == [(2, "unknown_sku: X")]
    assert outbox.queue_status(conn)["depth"] == len(batch) - 2
    # the cloud was restored and expects seq 1 again: everything is resent
    with db.transaction(conn):
        outbox.resync(conn, 1, outbox.max_seq(conn))
    assert outbox.acked_seq(conn) == 0
    # seq_taken: the cloud holds seqs up to 40 that this store no longer has
    with db.transaction(conn):
        outbox.renumber(conn, 41)
    assert outbox.pending_batch(conn, "test-store", 1)[0]["seq"] == 41


def reject(conn, db_path, event_type) -> int:
    (seq,), = query(db_path, "SELECT seq FROM outbox WHERE type = ?", event_type)
    txn(conn, lambda c: c.execute("INSERT INTO dead_letters (seq, reason, rejected_at) VALUES (?, 'r', 'now')",
                                  (seq,)))
    return seq


def test_dead_letter_retry_and_discard_are_recorded(conn, db_path):
    txn(conn, changes.apply_page, [order_change("a", 1)], 1, SEED)
    seq = reject(conn, db_path, "order.received")
    result = txn(conn, outbox.retry_dead_letter, seq, "店长", "商品已发布", SEED)
    retried = query(db_path, "SELECT type, payload FROM outbox WHERE id = ?", result["new_event_id"])[0]
    original = query(db_path, "SELECT id, payload FROM outbox WHERE seq = ?", seq)[0]
    assert retried[0] == "order.received" and json.loads(retried[1])["retry_of"] == original[0]
    with pytest.raises(Exception, match="already retried"):
        txn(conn, outbox.discard_dead_letter, seq, "店长", None, SEED)
    assert outbox.dead_letters(conn) == []
    assert outbox.dead_letters(conn, include_resolved=True)[0]["operator"] == "店长"


def test_reconcile_expectation_leaves_out_rejected_events(conn, db_path):
    txn(conn, changes.apply_page, [order_change("a", 1)], 1, SEED)
    expected = reconciliations.expected_cloud_balances(conn)
    assert expected["DRK-001"] == (OPENING["DRK-001"], 3)
    reject(conn, db_path, "order.received")
    assert reconciliations.expected_cloud_balances(conn)["DRK-001"] == (OPENING["DRK-001"], 0)
    assert checksum({"B": (1, 0), "A": (0, 0), "a": (2, 1)}) == hashlib.sha256(
        b"B\t1\t0\na\t2\t1\n").hexdigest()


# -- the client's classification -----------------------------------------------------------------------

@contextlib.asynccontextmanager
async def cloud_answering(method: str, path: str, handler):
    """A CloudClient for store s1 talking to a stub cloud whose one route answers with `handler`."""
    app = web.Application()
    app.router.add_route(method, path, handler)
    server = TestServer(app)
    await server.start_server()
    client = CloudClient(str(server.make_url("/")), "s1", "t", timeout=5)
    await client.open()
    try:
        yield client
    finally:
        await client.close()
        await server.close()


@pytest.mark.parametrize("status, body, headers, error, retry", [
    (500, {"epoch": "e"}, {}, RetryLater, None),
    (502, "<html>bad gateway</html>", {}, RetryLater, None),
    (429, {"error": "injected"}, {"Retry-After": "7"}, RetryLater, 7.0),
    (503, {"epoch": "e", "error": "unavailable"}, {"Retry-After": "99999"}, RetryLater, 600.0),
    (401, {"epoch": "e", "error": "unauthorized"}, {}, NeedsPerson, None),
    (403, "forbidden", {}, NeedsPerson, None),
    (422, {"error": "injected"}, {}, NeedsPerson, None),        # not this protocol: nothing is dead-lettered
    (409, {"error": "injected"}, {}, RetryLater, None),      # a 409 the protocol allows, but not from it
    (409, {"epoch": "e", "error": "sequence_gap"}, {}, RetryLater, None),   # 409 without expected_seq
    (200, {"epoch": "e", "results": []}, {}, RetryLater, None),             # 200 without next_seq
    (200, "not json", {}, RetryLater, None),
])
async def test_client_classifies_answers(status, body, headers, error, retry):
    async def handler(request):
        if isinstance(body, dict):
            return web.json_response(body, status=status, headers=headers)
        return web.Response(text=body, status=status, headers=headers)

    async with cloud_answering("POST", "/sync/v1/stores/s1/events", handler) as client:
        with pytest.raises(error) as info:
            await client.post_events([{"seq": 1}])
        if retry is not None:
            assert info.value.retry_after == retry


@pytest.mark.parametrize("body, problem", [
    ({"epoch": "e", "next_seq": 3, "results": [{"id": "a", "seq": 1, "status": "applied"}]}, None),
    ({"epoch": "e", "results": []}, "next_seq"),
    ({"epoch": "e", "next_seq": 3, "results": [{"id": "a", "seq": 1, "status": "duplicate"}]}, "status"),
    ({"epoch": "e", "next_seq": 3, "results": [{"id": "a", "seq": "1", "status": "applied"}]}, "seq"),
    ({"epoch": "e", "next_seq": 0, "results": []}, "next_seq"),
])
async def test_the_held_answer_is_read_by_its_protocol_model(body, problem):
    """GET …/events (protocol 2.6) through protocol.events.HeldEvents: an answer off the contract is
    retried later, never half believed (a wrong status would record events as answered)."""
    async def handler(request):
        return web.json_response(body)

    async with cloud_answering("GET", "/sync/v1/stores/s1/events", handler) as client:
        if problem is None:
            assert (await client.get_held(1, 10)).body == body
        else:
            with pytest.raises(RetryLater, match=problem):
                await client.get_held(1, 10)


async def test_network_errors_are_retried_later(unused_tcp_port):
    client = CloudClient(f"http://127.0.0.1:{unused_tcp_port}", "s1", "t", timeout=2)
    await client.open()
    try:
        with pytest.raises(RetryLater):
            await client.get_state()
    finally:
        await client.close()


def test_retry_after_forms():
    assert retry_after("3") == 3.0 and retry_after(None) is None and retry_after("soon") is None
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


class StubClient:
    """The cloud client's lifecycle, for engines whose answers a test scripts."""
    store_id = "test-store"

    async def open(self):
        pass

    async def close(self):
        pass

    async def get_held(self, from_seq, limit):  # a cloud without protocol 2.6: the batch is simply sent
        raise NeedsPerson("no such request (404)", 404)


async def test_an_unexpected_error_does_not_end_the_sync_tasks(config):
    """A bug or a full disk in one round must not stop uploads for good: the task logs and retries."""
    from edge.store.db import open_store
    from sync.engine import SyncEngine, Timing

    store = open_store(config.db_path)
    store.open()
    calls = []

    class Client(StubClient):
        async def post_events(self, envelopes):
            calls.append(len(envelopes))
            if len(calls) == 1:
                raise OSError(28, "No space left on device")
            raise RetryLater("stop here")

        async def get_changes(self, after, limit):
            raise RetryLater("offline")

        def hints(self):
            raise RetryLater("offline")

    engine = SyncEngine(store, Client(), tz=config.tz,
                        timing=Timing(backoff_base=0.001, backoff_cap=0.001, poll_without_hints=0.01))
    await engine.start()
    try:
        deadline = asyncio.get_running_loop().time() + 5
        while len(calls) < 2 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.005)
        assert len(calls) >= 2 and engine.link.state == "offline"
    finally:
        await engine.stop()
        store.close()


@pytest.mark.parametrize("sign", ["download", "hint socket"])
async def test_the_uploader_retries_at_once_when_the_cloud_is_back(config, monkeypatch, sign):
    """Issue 15 item 9: after an outage the uploader does not sleep out its backoff (up to 300 s)
    once a page was downloaded or the hint socket connected: the link is back, the queue goes."""
    import contextlib

    import sync.engine
    from edge.store.db import open_store
    from sync.client import Answer
    from sync.engine import SyncEngine, Timing

    monkeypatch.setattr(sync.engine, "backoff", lambda attempt, timing, rng: 300.0)
    store = open_store(config.db_path)
    store.open()
    network_back, first_failed, resent = asyncio.Event(), asyncio.Event(), asyncio.Event()

    class Client(StubClient):
        async def post_events(self, envelopes):
            if first_failed.is_set():
                resent.set()
            first_failed.set()
            raise RetryLater("offline")

        async def get_changes(self, after, limit):
            if sign == "hint socket":
                raise RetryLater("offline")
            await network_back.wait()
            return Answer(200, {"changes": [], "next_cursor": after, "more": False})

        @contextlib.asynccontextmanager
        async def hints(self):
            if sign == "download":
                raise RetryLater("offline")
            await network_back.wait()
            yield Silent()

    class Silent:  # a hint socket that stays open and says nothing
        def __aiter__(self):
            return self

        async def __anext__(self):
            await asyncio.Event().wait()

    engine = SyncEngine(store, Client(), tz=config.tz, timing=Timing(poll_without_hints=300))
    await engine.start()
    try:
        await asyncio.wait_for(first_failed.wait(), 5)
        await asyncio.sleep(0)
        assert engine.link.state == "offline" and not resent.is_set()
        network_back.set()
        await asyncio.wait_for(resent.wait(), 5)
    finally:
        await engine.stop()
        store.close()


def test_a_resolved_dead_letter_is_resent_as_voided(conn, db_path):
    """After a cloud restore the queue is resent; a dead letter already retried must not count twice."""
    txn(conn, changes.apply_page, [order_change("a", 1)], 1, SEED)
    seq = reject(conn, db_path, "order.received")
    txn(conn, outbox.retry_dead_letter, seq, "店长", None, SEED)
    batch = {e["local_seq"]: e for e in outbox.pending_batch(conn, "test-store", 100)}
    assert batch[seq]["type"] == "event.voided"
    assert batch[seq]["payload"] == {"voided_type": "order.received", "resolution": "retried"}
    retry = batch[max(batch)]
    assert retry["type"] == "order.received" and retry["payload"]["moves"][0]["reason"] == "reserve"


async def test_a_page_is_applied_in_slices_that_each_move_the_cursor(config, db_path, monkeypatch):
    """Five changes, at most two per write transaction: three short writes, each committing its changes
    with the cursor past them; a crash in the middle keeps the slices before it, and the next pull
    applies the rest exactly once."""
    from types import SimpleNamespace

    from edge.store.db import open_store
    from sync.engine import SyncEngine

    page = [order_change(f"o-{n}", n) for n in range(1, 6)]

    class Client:
        store_id = "test-store"

        async def get_changes(self, after, limit):
            rest = [c for c in page if c["cursor"] > after]
            return SimpleNamespace(body={"changes": rest, "more": False,
                                         "next_cursor": rest[-1]["cursor"] if rest else after})

    store = open_store(config.db_path)
    store.open()
    committed = []
    probe = db.connect(db_path, readonly=True)
    store.listeners.append(lambda: committed.append(int(outbox.get_state(probe, "cursor", "0"))))
    original = changes.APPLY["order.created"]

    def fails_on_o4(conn, payload, ctx, change_id):
        if payload["order_id"] == "o-4":
            raise RuntimeError("disk full")
        return original(conn, payload, ctx, change_id)

    engine = SyncEngine(store, Client(), tz=config.tz, slice_changes=2)
    try:
        monkeypatch.setitem(changes.APPLY, "order.created", fails_on_o4)
        with pytest.raises(RuntimeError, match="disk full"):
            await engine.pull()
        assert committed == [2]                        # o-1, o-2 with their cursor; o-3 rolled back with o-4
        assert query(db_path, "SELECT count(*) FROM inbox") == [(2,)]
        monkeypatch.setitem(changes.APPLY, "order.created", original)
        committed.clear()
        assert await engine.pull() == 3
        assert committed == [4, 5]
        assert [r for r, in query(db_path, "SELECT id FROM inbox ORDER BY cursor")] == [f"c-o-{n}" for n in range(1, 6)]
        assert balance(db_path, "DRK-001")[1] == 15    # each order reserved once
    finally:
        probe.close()
        store.close()
    assert ledger_mismatches(db_path) == []


async def test_a_slice_ends_when_its_time_is_up(config, db_path):
    """No time left: each change is its own slice, however many a slice may hold."""
    from types import SimpleNamespace

    from edge.store.db import open_store
    from sync.engine import SyncEngine, Timing

    page = [order_change(f"o-{n}", n) for n in range(1, 4)]

    class Client:
        async def get_changes(self, after, limit):
            return SimpleNamespace(body={"changes": page, "more": False, "next_cursor": 3})

    store = open_store(config.db_path)
    store.open()
    probe = db.connect(db_path, readonly=True)
    committed = []
    store.listeners.append(lambda: committed.append(int(outbox.get_state(probe, "cursor", "0"))))
    try:
        engine = SyncEngine(store, Client(), tz=config.tz, slice_changes=100, timing=Timing(slice_seconds=0))
        assert await engine.pull() == 3
        assert committed == [1, 2, 3]
    finally:
        probe.close()
        store.close()
