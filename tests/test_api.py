"""The local POS API, through HTTP: sales, idempotency, returns, stock documents, lookups, tokens.

Every test using the `client` fixture also checks, on teardown, that the ledger still adds up
(edge.stock.verify finds no balance that differs from the sum of its moves).
"""

from __future__ import annotations

import json
import random
import sqlite3

import pytest
from conftest import BARCODE, OPENING, PRICE, Api, dump, ledger_mismatches, query, seed, start_client, write_config

from edge.core import config as config_mod
from edge.core.clock import iso, utcnow
from edge.services.app_keys import STORE
from edge.store import api_tokens, db
from edge.store.sales import net_amounts


def cash(amount: int) -> list[dict]:
    return [{"method": "cash", "amount_fen": amount}]


async def on_hand(api: Api, sku: str) -> int:
    status, body = await api.get(f"/stock/{sku}")
    assert status == 200, body
    return body["on_hand"]


# -- sales ----------------------------------------------------------------------------------------

async def test_sale_by_sku_with_cash_change(api, db_path):
    status, body, resp = await api.post("/sales", {"lines": [{"sku": "DRK-001", "qty": 3}], "payments": cash(1000),
                                                   "cashier": "小王"})
    assert status == 201, body
    assert resp.headers["Idempotent-Replayed"] == "false"
    sale = body["sale"]
    assert (sale["subtotal_fen"], sale["discount_fen"], sale["total_fen"]) == (600, 0, 600)
    assert (sale["paid_fen"], sale["change_fen"]) == (1000, 400)
    assert sale["number"] == 1 and sale["device"] == "local" and sale["cashier"] == "小王"
    assert sale["lines"] == [{"line_no": 1, "sku": "DRK-001", "barcode": None, "name": "农夫山泉 饮用天然水 550ml",
                              "qty": 3, "unit_price_fen": 200, "discount_fen": 0, "amount_fen": 600,
                              "list_price_fen": 200, "member_saved_fen": 0}]
    assert sale["payments"] == [{"method": "cash", "amount_fen": 1000}] and sale["member"] is None
    assert body["warnings"] == []
    assert await on_hand(api, "DRK-001") == OPENING["DRK-001"] - 3

    moves = query(db_path, "SELECT sku, qty, reason, ref_type, ref_id, device FROM stock_moves WHERE reason = 'sale'")
    assert moves == [("DRK-001", -3, "sale", "sale", sale["id"], "local")]
    events = query(db_path, "SELECT type, payload FROM outbox WHERE type = 'sale.recorded'")
    assert len(events) == 1
    assert json.loads(events[0][1]) == {**sale, "moves": [{"sku": "DRK-001", "qty": -3, "reason": "sale"}]}

    status, got = await api.get(f"/sales/{sale['id']}")
    assert status == 200 and got == sale


async def test_sale_by_barcode_records_the_scanned_code(api, db_path):
    body = await api.ok("/sales", {"lines": [{"barcode": BARCODE["SNK-001"], "qty": 1},
                                             {"barcode": "IN-SNK-001", "qty": 2}],
                                   "payments": [{"method": "wechat", "amount_fen": 2250}]})
    sale = body["sale"]
    assert [(line["sku"], line["barcode"], line["qty"], line["amount_fen"]) for line in sale["lines"]] == [
        ("SNK-001", BARCODE["SNK-001"], 1, 750), ("SNK-001", "IN-SNK-001", 2, 1500)]
    assert sale["total_fen"] == 2250 and sale["change_fen"] == 0
    assert await on_hand(api, "SNK-001") == OPENING["SNK-001"] - 3
    assert query(db_path, "SELECT qty FROM stock_moves WHERE ref_id = ? ORDER BY id", sale["id"]) == [(-1,), (-2,)]


async def test_line_and_sale_discounts_and_price_override(api):
    body = await api.ok("/sales", {
        "lines": [{"sku": "DRK-002", "qty": 2, "discount_fen": 50},
                  {"sku": "SNK-001", "qty": 1},
                  {"sku": "DAI-001", "qty": 2, "unit_price_fen": 300}],
        "discount_fen": 100,
        "payments": [{"method": "cash", "amount_fen": 500}, {"method": "alipay", "amount_fen": 1500}]})
    sale = body["sale"]
    assert [line["amount_fen"] for line in sale["lines"]] == [650, 750, 600]
    assert [line["unit_price_fen"] for line in sale["lines"]] == [350, 750, 300]
    assert (sale["subtotal_fen"], sale["discount_fen"], sale["total_fen"]) == (2000, 100, 1900)
    assert (sale["paid_fen"], sale["change_fen"]) == (2000, 100)


async def test_discounts_may_make_a_sale_free(api):
    sale = (await api.ok("/sales", {"lines": [{"sku": "DRK-001", "qty": 1, "discount_fen": 100}],
                                    "discount_fen": 100, "payments": cash(1)}))["sale"]
    assert sale["total_fen"] == 0 and sale["change_fen"] == 1


async def test_underpaid_sale_is_refused_and_writes_nothing(api, db_path):
    before = dump(db_path)
    status, body, _ = await api.post("/sales", {"lines": [{"sku": "DRK-001", "qty": 3}], "payments": cash(599)})
    assert status == 422
    assert body["error"]["code"] == "underpaid"
    assert [f["field"] for f in body["error"]["fields"]] == ["payments"]
    assert dump(db_path) == before


@pytest.mark.parametrize("payments", [
    [{"method": "wechat", "amount_fen": 700}],
    # the change (150) is more than the cash handed over (50)
    [{"method": "cash", "amount_fen": 50}, {"method": "card", "amount_fen": 700}],
])
async def test_non_cash_overpay_is_refused(api, db_path, payments):
    before = dump(db_path)
    status, body, _ = await api.post("/sales", {"lines": [{"sku": "DRK-001", "qty": 3}], "payments": payments})
    assert status == 422
    assert body["error"]["code"] == "overpaid"
    assert [f["field"] for f in body["error"]["fields"]] == ["payments"]
    assert dump(db_path) == before


async def test_sale_beyond_recorded_stock_is_accepted_with_a_warning(api):
    body = await api.ok("/sales", {"lines": [{"sku": "SNK-002", "qty": 5}, {"sku": "HOM-001", "qty": 1},
                                             {"sku": "DRK-001", "qty": 1}],
                                   "payments": cash(5 * 890 + 1590 + 200)})
    assert [(w["code"], w["sku"], w["available"]) for w in body["warnings"]] == [
        ("stock_negative", "HOM-001", -1), ("stock_negative", "SNK-002", -3)]
    assert await on_hand(api, "SNK-002") == -3
    status, stock = await api.get("/stock/SNK-002")
    assert stock["available"] == -3 and stock["low"] is True


# -- idempotency ----------------------------------------------------------------------------------

SALE = {"lines": [{"sku": "DRK-001", "qty": 2}], "payments": cash(500)}


async def test_same_key_same_body_replays_the_first_answer(api, db_path):
    status1, first, resp1 = await api.post("/sales", SALE, key="sale-1")
    # the same JSON with its keys in another order is the same request
    reordered = {"payments": SALE["payments"], "lines": [{"qty": 2, "sku": "DRK-001"}]}
    status2, second, resp2 = await api.post("/sales", reordered, key="sale-1")
    assert (status1, status2) == (201, 201)
    assert first == second
    assert resp1.headers["Idempotent-Replayed"] == "false"
    assert resp2.headers["Idempotent-Replayed"] == "true"
    assert query(db_path, "SELECT count(*) FROM sales") == [(1,)]
    assert query(db_path, "SELECT count(*) FROM outbox WHERE type = 'sale.recorded'") == [(1,)]
    assert await on_hand(api, "DRK-001") == OPENING["DRK-001"] - 2


async def test_same_key_other_body_is_refused_and_writes_nothing(api, db_path):
    await api.ok("/sales", SALE)
    await api.post("/sales", SALE, key="sale-2")
    before = dump(db_path)
    status, body, resp = await api.post("/sales", {**SALE, "lines": [{"sku": "DRK-001", "qty": 3}]}, key="sale-2")
    assert status == 422
    assert body["error"]["code"] == "idempotency_key_reused"
    assert body["error"]["fields"][0]["field"] == "Idempotency-Key"
    assert dump(db_path) == before
    # the same key on another endpoint is another request too
    status, body, _ = await api.post("/receipts", {"lines": [{"sku": "DRK-001", "qty": 1}]}, key="sale-2")
    assert status == 422 and body["error"]["code"] == "idempotency_key_reused"
    assert dump(db_path) == before


async def test_missing_key_is_refused(api, db_path):
    before = dump(db_path)
    status, body, _ = await api.post("/sales", SALE, key=None)
    assert status == 400
    assert body["error"]["code"] == "idempotency_key_missing"
    assert dump(db_path) == before


async def test_a_failed_request_stores_nothing_so_it_can_be_corrected(api, db_path):
    before = dump(db_path)
    status, body, _ = await api.post("/sales", {**SALE, "payments": cash(1)}, key="retry-me")
    assert status == 422 and body["error"]["code"] == "underpaid"
    assert dump(db_path) == before
    status, body, resp = await api.post("/sales", SALE, key="retry-me")
    assert status == 201 and resp.headers["Idempotent-Replayed"] == "false"
    assert body["sale"]["change_fen"] == 100


async def test_replay_of_other_writes(api, db_path):
    receipt = {"lines": [{"sku": "DRK-001", "qty": 5}], "supplier": "娃哈哈"}
    _, first, _ = await api.post("/receipts", receipt, key="r-1")
    _, again, resp = await api.post("/receipts", receipt, key="r-1")
    assert first == again and resp.headers["Idempotent-Replayed"] == "true"
    assert await on_hand(api, "DRK-001") == OPENING["DRK-001"] + 5


# -- returns --------------------------------------------------------------------------------------

async def make_sale(api: Api) -> dict:
    # 3 x 200 + 1 x 750 = 1350, minus 100 for the whole sale: 1250
    return (await api.ok("/sales", {"lines": [{"sku": "DRK-001", "qty": 3}, {"sku": "SNK-001", "qty": 1}],
                                    "discount_fen": 100, "payments": cash(1250)}))["sale"]


async def test_partial_returns_refund_the_lines_exactly(api, db_path):
    sale = await make_sale(api)
    nets = net_amounts([600, 750], 100)
    assert nets == [556, 694] and sum(nets) == 1250

    refunds = []
    for qty in (1, 1, 1):
        ret = await api.ok(f"/sales/{sale['id']}/returns", {"lines": [{"line_no": 1, "qty": qty}],
                                                           "refund_method": "cash", "reason": "顾客退货"})
        assert ret["sale_id"] == sale["id"] and ret["restock"] is True
        refunds.append(ret["refund_fen"])
    assert sum(refunds) == nets[0]
    assert refunds == [185, 185, 186]

    ret = await api.ok(f"/sales/{sale['id']}/returns", {"lines": [{"line_no": 2, "qty": 1}], "refund_method": "cash"})
    assert ret["lines"] == [{"line_no": 2, "sku": "SNK-001", "qty": 1, "refund_fen": 694}]
    assert sum(refunds) + ret["refund_fen"] == sale["total_fen"]

    assert await on_hand(api, "DRK-001") == OPENING["DRK-001"]
    assert await on_hand(api, "SNK-001") == OPENING["SNK-001"]
    assert query(db_path, "SELECT count(*), sum(qty) FROM stock_moves WHERE reason = 'return'") == [(4, 4)]
    assert query(db_path, "SELECT count(*) FROM outbox WHERE type = 'sale.returned'") == [(4,)]

    status, got = await api.get(f"/sales/{sale['id']}")
    assert len(got["returns"]) == 4
    status, got = await api.get(f"/returns/{ret['id']}")
    assert status == 200 and got == ret


async def test_over_return_is_refused(api, db_path):
    sale = await make_sale(api)
    await api.ok(f"/sales/{sale['id']}/returns", {"lines": [{"line_no": 1, "qty": 2}], "refund_method": "cash"})
    before = dump(db_path)
    status, body, _ = await api.post(f"/sales/{sale['id']}/returns",
                                     {"lines": [{"line_no": 2, "qty": 1}, {"line_no": 1, "qty": 2}],
                                      "refund_method": "cash"})
    assert status == 422
    assert body["error"]["code"] == "exceeds_sold"
    assert body["error"]["fields"][0]["field"] == "lines[1].qty"
    assert dump(db_path) == before
    ret = await api.ok(f"/sales/{sale['id']}/returns", {"lines": [{"line_no": 1, "qty": 1}], "refund_method": "cash"})
    assert ret["refund_fen"] == 556 - 2 * (556 // 3)


async def test_return_without_restock_writes_no_move(api, db_path):
    sale = await make_sale(api)
    moves_before = query(db_path, "SELECT count(*) FROM stock_moves")
    ret = await api.ok(f"/sales/{sale['id']}/returns", {"lines": [{"line_no": 2, "qty": 1}],
                                                       "refund_method": "wechat", "restock": False,
                                                       "reason": "包装破损"})
    assert ret["restock"] is False and ret["refund_fen"] == 694
    assert query(db_path, "SELECT count(*) FROM stock_moves") == moves_before
    assert await on_hand(api, "SNK-001") == OPENING["SNK-001"] - 1


def test_net_amounts_spreads_a_discount_exactly():
    assert net_amounts([600, 750], 100) == [556, 694]
    assert net_amounts([100, 100, 100], 100) == [66, 67, 67]  # the leftover fen goes to one line
    assert net_amounts([500, 300], 0) == [500, 300]
    assert net_amounts([500, 300], 800) == [0, 0]
    assert net_amounts([0, 0], 0) == [0, 0]
    assert net_amounts([0, 999, 1], 998) == [0, 1, 1]
    rng = random.Random(20261121)
    for _ in range(2000):
        amounts = [rng.choice([0, 1, 3, rng.randint(0, 100_000)]) for _ in range(rng.randint(1, 8))]
        discount = rng.randint(0, sum(amounts))
        nets = net_amounts(amounts, discount)
        assert sum(nets) == sum(amounts) - discount, (amounts, discount)
        assert all(0 <= n <= a for n, a in zip(nets, amounts)), (amounts, discount)
        # each line carries its proportional share, within one fen
        total = sum(amounts)
        for n, a in zip(nets, amounts):
            if total:
                assert abs((a - n) - discount * a / total) <= 1, (amounts, discount)
            else:
                assert n == a


async def test_refunds_add_up_with_a_spread_discount(api):
    sale = (await api.ok("/sales", {"lines": [{"sku": "DRK-001", "qty": 7}, {"sku": "DRK-002", "qty": 3},
                                              {"sku": "SNK-002", "qty": 1, "discount_fen": 90}],
                                    "discount_fen": 333, "payments": cash(10_000)}))["sale"]
    amounts = [line["amount_fen"] for line in sale["lines"]]
    nets = net_amounts(amounts, 333)
    total = 0
    for line_no, plan in ((1, (2, 4, 1)), (2, (1, 2)), (3, (1,))):
        for qty in plan:
            ret = await api.ok(f"/sales/{sale['id']}/returns", {"lines": [{"line_no": line_no, "qty": qty}],
                                                               "refund_method": "cash"})
            total += ret["refund_fen"]
    assert total == sum(nets) == sale["total_fen"]


# -- stock documents ------------------------------------------------------------------------------

async def test_goods_received(api, db_path):
    doc = await api.ok("/receipts", {"lines": [{"sku": "DRK-001", "qty": 24, "cost_fen": 120},
                                               {"barcode": BARCODE["HOM-001"], "qty": 6}],
                                     "supplier": "康师傅经销商", "note": "周一到货"})
    assert doc["kind"] == "receipt" and doc["supplier"] == "康师傅经销商" and doc["device"] == "local"
    assert [(line["sku"], line["qty"], line["on_hand_now"]) for line in doc["lines"]] == [
        ("DRK-001", 24, OPENING["DRK-001"] + 24), ("HOM-001", 6, 6)]
    assert doc["lines"][0]["cost_fen"] == 120 and "cost_fen" not in doc["lines"][1]
    assert query(db_path, "SELECT sku, qty, reason, ref_type FROM stock_moves WHERE ref_id = ? ORDER BY id",
                 doc["id"]) == [("DRK-001", 24, "receipt", "receipt"), ("HOM-001", 6, "receipt", "receipt")]
    events = query(db_path, "SELECT payload FROM outbox WHERE type = 'stock.received' ORDER BY seq")
    assert json.loads(events[-1][0]) == {**doc, "moves": [{"sku": "DRK-001", "qty": 24, "reason": "receipt"},
                                                          {"sku": "HOM-001", "qty": 6, "reason": "receipt"}]}
    status, got = await api.get(f"/stock-documents/{doc['id']}")
    assert status == 200 and got == doc


async def test_adjustment(api, db_path):
    doc = await api.ok("/adjustments", {"lines": [{"sku": "DAI-001", "qty": -2}, {"sku": "DRK-002", "qty": 1}],
                                        "note": "两盒过期，找到一罐"})
    assert doc["kind"] == "adjustment" and doc["note"] == "两盒过期，找到一罐"
    assert await on_hand(api, "DAI-001") == OPENING["DAI-001"] - 2
    assert await on_hand(api, "DRK-002") == OPENING["DRK-002"] + 1
    assert query(db_path, "SELECT sku, qty, reason, note FROM stock_moves WHERE ref_id = ? ORDER BY id", doc["id"]) == [
        ("DAI-001", -2, "adjustment", "两盒过期，找到一罐"), ("DRK-002", 1, "adjustment", "两盒过期，找到一罐")]


@pytest.mark.parametrize("body, field", [
    ({"lines": [{"sku": "DAI-001", "qty": -2}]}, "note"),
    ({"lines": [{"sku": "DAI-001", "qty": 0}], "note": "x"}, "lines[0]"),
])
async def test_adjustment_needs_a_note_and_a_quantity(api, db_path, body, field):
    before = dump(db_path)
    status, out, _ = await api.post("/adjustments", body)
    assert status == 422
    assert field in [f["field"] for f in out["error"]["fields"]]
    assert dump(db_path) == before


async def test_stock_count(api, db_path):
    doc = await api.ok("/counts", {"lines": [{"sku": "DRK-001", "counted": 45},
                                             {"sku": "DAI-001", "counted": OPENING["DAI-001"]},
                                             {"barcode": BARCODE["HOM-001"], "counted": 3}],
                                   "note": "月底盘点"})
    assert doc["kind"] == "count"
    assert [(line["sku"], line["expected"], line["counted"], line["qty"], line["on_hand_now"])
            for line in doc["lines"]] == [("DRK-001", 50, 45, -5, 45), ("DAI-001", 40, 40, 0, 40),
                                          ("HOM-001", 0, 3, 3, 3)]
    # a zero difference writes no move
    assert query(db_path, "SELECT sku, qty, reason FROM stock_moves WHERE ref_id = ? ORDER BY id", doc["id"]) == [
        ("DRK-001", -5, "count"), ("HOM-001", 3, "count")]
    assert [json.loads(p) for p, in query(db_path, "SELECT payload FROM outbox WHERE type = 'stock.counted'")] == [
        {**doc, "moves": [{"sku": "DRK-001", "qty": -5, "reason": "count"}, {"sku": "HOM-001", "qty": 3, "reason": "count"}]}]


async def test_count_refuses_the_same_product_twice(api, db_path):
    before = dump(db_path)
    # once by SKU and once by its barcode is still the same product
    status, body, _ = await api.post("/counts", {"lines": [{"sku": "DRK-001", "counted": 1},
                                                           {"barcode": BARCODE["DRK-001"], "counted": 2}]})
    assert status == 422
    assert body["error"]["code"] == "duplicate_line"
    assert body["error"]["fields"][0]["field"] == "lines[1]"
    assert dump(db_path) == before


# -- lookups --------------------------------------------------------------------------------------

async def test_product_and_barcode_lookup(api):
    status, product = await api.get("/products/SNK-001")
    assert status == 200
    assert product["name"] == "乐事 薯片 原味 70g" and product["price_fen"] == PRICE["SNK-001"]
    assert product["barcodes"] == [BARCODE["SNK-001"], "IN-SNK-001"] and product["active"] is True

    status, found = await api.get(f"/barcodes/{BARCODE['SNK-001']}")
    assert status == 200 and found["sku"] == "SNK-001" and found["stock"]["on_hand"] == OPENING["SNK-001"]

    wrong_check_digit = BARCODE["SNK-001"][:-1] + str((int(BARCODE["SNK-001"][-1]) + 1) % 10)
    for path, code in ((f"/barcodes/{wrong_check_digit}", "unknown_barcode"),
                       ("/barcodes/nope", "unknown_barcode"),
                       ("/products/NOPE-1", "unknown_sku"), ("/stock/NOPE-1", "unknown_sku"),
                       ("/stock/NOPE-1/moves", "unknown_sku"),
                       ("/sales/00000000-0000-0000-0000-000000000000", "unknown_sale"),
                       ("/returns/00000000-0000-0000-0000-000000000000", "unknown_return"),
                       ("/stock-documents/00000000-0000-0000-0000-000000000000", "unknown_document")):
        status, body = await api.get(path)
        assert status == 404, path
        assert body["error"]["code"] == code and body["error"]["message"]


async def test_unknown_api_path_and_method_are_json(api):
    resp = await api.client.get("/api/v1/nothing-here")
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"
    resp = await api.client.delete("/api/v1/sales")
    assert resp.status == 405 and (await resp.json())["error"]["code"] == "method_not_allowed"


async def test_stock_balance(api):
    status, stock = await api.get("/stock/DRK-001")
    assert status == 200
    assert {k: stock[k] for k in ("sku", "on_hand", "reserved", "available", "low", "low_stock", "unit")} == {
        "sku": "DRK-001", "on_hand": 50, "reserved": 0, "available": 50, "low": False, "low_stock": 12, "unit": "瓶"}


async def skus(api: Api, **params) -> tuple[list[str], str | None]:
    status, body = await api.get("/stock", params={k: str(v) for k, v in params.items()})
    assert status == 200, body
    return [item["sku"] for item in body["items"]], body["next_after"]


async def test_stock_list_search(api):
    assert await skus(api, q="薯片") == (["SNK-001"], None)
    assert await skus(api, q="ml") == (["DAI-001", "DRK-001", "DRK-002"], None)
    assert await skus(api, q="snk") == (["SNK-001", "SNK-002"], None)  # LIKE ignores ASCII case
    assert await skus(api, q=BARCODE["DRK-002"]) == (["DRK-002"], None)
    assert await skus(api, q="IN-SNK-001") == (["SNK-001"], None)
    assert await skus(api, q=BARCODE["DRK-002"][:8]) == ([], None)  # a barcode only matches whole
    assert await skus(api, q="%") == ([], None)  # LIKE wildcards are taken literally
    assert await skus(api, q="_") == ([], None)
    assert await skus(api, category="零食") == (["SNK-001", "SNK-002"], None)
    assert await skus(api, low="true") == (["HOM-001", "SNK-002"], None)
    assert await skus(api, low="false") == ((["DAI-001", "DRK-001", "DRK-002", "HOM-001", "SNK-001", "SNK-002"]),
                                            None)


async def test_stock_search_by_pinyin_and_initials(api):
    # DRK-002 is 可口可乐 330ml 罐装: kekoukele330mlguanzhuang, initials kkkl330mlgz
    for q in ("kele", "kl", "KL", "kekoukele", "kkkl", "ke", "Ke Le", "kkkl330", "guanzhuang"):
        assert await skus(api, q=q) == (["DRK-002"], None), q
    assert await skus(api, q="nfsq") == (["DRK-001"], None)      # 农夫山泉
    assert await skus(api, q="shupian") == (["SNK-001"], None)   # 乐事 薯片
    assert await skus(api, q="kekele") == ([], None)             # a syllable left out is no match
    assert await skus(api, q="k%") == ([], None)                 # not letters: no pinyin, and no name has it


async def test_stock_list_paging(api):
    seen, after = [], None
    for expected in (["DAI-001", "DRK-001"], ["DRK-002", "HOM-001"], ["SNK-001", "SNK-002"]):
        params = {"limit": 2, **({"after": after} if after else {})}
        page, after = await skus(api, **params)
        assert page == expected
        seen += page
    assert after is None
    assert seen == sorted(OPENING)
    assert await skus(api, limit=6) == (sorted(OPENING), None)
    assert await skus(api, limit=5, q="0") == (sorted(OPENING)[:5], sorted(OPENING)[4])


async def test_move_history_paging(api):
    for qty in (1, 2, 3):
        await api.ok("/sales", {"lines": [{"sku": "DRK-002", "qty": qty}], "payments": cash(350 * qty)})
    status, page = await api.get("/stock/DRK-002/moves", params={"limit": "3"})
    assert status == 200
    assert [m["qty"] for m in page["items"]] == [-3, -2, -1]
    assert [m["reason"] for m in page["items"]] == ["sale"] * 3
    assert page["next_before"] == page["items"][-1]["id"]
    status, rest = await api.get("/stock/DRK-002/moves", params={"limit": "3", "before": str(page["next_before"])})
    assert [(m["qty"], m["reason"], m["device"]) for m in rest["items"]] == [(OPENING["DRK-002"], "receipt", "seed")]
    assert rest["next_before"] is None
    status, everything = await api.get("/stock/DRK-002/moves")
    assert everything["items"] == page["items"] + rest["items"] and everything["next_before"] is None


async def test_day_summary(api):
    s1 = (await api.ok("/sales", {"lines": [{"sku": "DRK-001", "qty": 1}], "payments": cash(500)}))["sale"]
    s2 = (await api.ok("/sales", {"lines": [{"sku": "SNK-001", "qty": 2}],
                                  "payments": [{"method": "wechat", "amount_fen": 1000},
                                               {"method": "cash", "amount_fen": 1000}]}))["sale"]
    s3 = (await api.ok("/sales", {"lines": [{"sku": "DAI-001", "qty": 1}],
                                  "payments": [{"method": "alipay", "amount_fen": 350}]}))["sale"]
    await api.ok(f"/sales/{s2['id']}/returns", {"lines": [{"line_no": 1, "qty": 1}], "refund_method": "wechat"})
    day = s1["business_date"]

    status, summary = await api.get("/sales", params={"date": day})
    assert status == 200
    assert summary["date"] == day
    assert (summary["sales_count"], summary["sales_fen"]) == (3, 200 + 1500 + 350)
    assert (summary["returns_count"], summary["refunds_fen"]) == (1, 750)
    assert summary["net_fen"] == 2050 - 750
    # cash: 500 + 1000 taken, 300 + 500 given back as change
    assert summary["net_by_method_fen"] == {"cash": 700, "wechat": 250, "alipay": 350}
    assert sum(summary["net_by_method_fen"].values()) == summary["net_fen"]
    assert [s["id"] for s in summary["sales"]] == [s1["id"], s2["id"], s3["id"]]
    assert summary["next_after"] is None

    status, page = await api.get("/sales", params={"date": day, "limit": "2"})
    assert [s["number"] for s in page["sales"]] == [1, 2] and page["next_after"] == 2
    status, page = await api.get("/sales", params={"date": day, "limit": "2", "after": "2"})
    assert [s["number"] for s in page["sales"]] == [3] and page["next_after"] is None

    status, today = await api.get("/sales")
    assert status == 200 and today["date"] in (day, s3["business_date"])
    status, other = await api.get("/sales", params={"date": "2020-02-29"})
    assert (other["sales_count"], other["net_fen"], other["net_by_method_fen"], other["sales"]) == (0, 0, {}, [])


def test_the_ledger_check_is_not_vacuous(config):
    """The check every `client` test ends with does catch a balance that disagrees with its moves."""
    assert ledger_mismatches(config.db_path) == []
    conn = sqlite3.connect(config.db_path)
    with conn:
        conn.execute("UPDATE stock_balances SET on_hand = on_hand + 1 WHERE sku = 'DRK-001'")
    conn.close()
    assert [m.sku for m in ledger_mismatches(config.db_path)] == ["DRK-001"]


# -- tokens ---------------------------------------------------------------------------------------

@pytest.fixture
def token_config(tmp_path):
    cfg = config_mod.load(write_config(tmp_path, "[api]\nrequire_token = true\n"))
    seed(cfg.db_path)
    return (cfg, *make_tokens(cfg.db_path, "till-1", "till-2"))


def make_tokens(db_path, *devices: str) -> list[str]:
    conn = db.open_store_db(db_path)
    try:
        with db.transaction(conn):
            return [api_tokens.create(conn, device, iso(utcnow())) for device in devices]
    finally:
        conn.close()


@pytest.fixture
async def token_client(token_config):
    cfg, till1, till2 = token_config
    client = await start_client(cfg)
    try:
        yield client, till1, till2
    finally:
        await client.close()
    assert ledger_mismatches(cfg.db_path) == []


def test_tokens_are_required_off_loopback(tmp_path):
    assert config_mod.load(write_config(tmp_path)).tokens_required is False
    assert config_mod.load(write_config(tmp_path, '[api]\nhost = "0.0.0.0"\n')).tokens_required is True
    assert config_mod.load(write_config(tmp_path, '[api]\nhost = "localhost"\n')).tokens_required is False
    assert config_mod.load(write_config(tmp_path, "[api]\nrequire_token = true\n")).tokens_required is True


async def test_without_a_token_the_api_answers_401(token_client):
    client, till1, _ = token_client
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer se_wrong"},
                    {"Authorization": f"Basic {till1}"}, {"Authorization": till1}):
        for method, path in (("GET", "/api/v1/stock/DRK-001"), ("GET", "/api/v1/stock"),
                             ("POST", "/api/v1/sales")):
            resp = await client.request(method, path, headers={**headers, "Idempotency-Key": "k"},
                                        json=SALE if method == "POST" else None)
            assert resp.status == 401, (headers, path)
            body = await resp.json()
            assert body["error"]["code"] == "unauthorized" and body["error"]["fields"] == []


async def test_public_paths_need_no_token(token_client):
    client, _, _ = token_client
    resp = await client.get("/api/v1/health")
    assert resp.status == 200 and await resp.json() == {"status": "ok"}
    resp = await client.get("/api/v1/openapi.json")
    doc = await resp.json()
    assert resp.status == 200 and doc["paths"]["/api/v1/sales"]["post"]["security"] == [{"deviceToken": []}]
    assert "security" not in doc["paths"]["/api/v1/health"]["get"]


async def test_a_token_names_the_device(token_client):
    client, till1, till2 = token_client
    api = Api(client, headers={"Authorization": f"Bearer {till1}"})
    sale = (await api.ok("/sales", SALE))["sale"]
    assert sale["device"] == "till-1"
    status, moves = await api.get("/stock/DRK-001/moves", params={"limit": "1"})
    assert status == 200 and moves["items"][0]["device"] == "till-1"
    doc = await api.ok("/receipts", {"lines": [{"sku": "DRK-001", "qty": 1}]})
    assert doc["device"] == "till-1"

    # idempotency keys belong to a device: another till may use the same key for its own sale
    _, replay, resp = await api.post("/sales", SALE, key="shared")
    other = Api(client, headers={"Authorization": f"bearer  {till2}"})
    _, second, resp2 = await other.post("/sales", SALE, key="shared")
    assert resp2.headers["Idempotent-Replayed"] == "false"
    assert second["sale"]["device"] == "till-2" and second["sale"]["id"] != replay["sale"]["id"]


async def test_a_revoked_token_is_refused(token_client):
    client, till1, till2 = token_client
    api = Api(client, headers={"Authorization": f"Bearer {till1}"})
    assert (await api.get("/stock/DRK-001"))[0] == 200
    assert await client.app[STORE].write(api_tokens.revoke, "till-1", iso(utcnow())) is True
    status, body = await api.get("/stock/DRK-001")
    assert status == 401 and body["error"]["code"] == "unauthorized"
    status, _, _ = await api.post("/sales", SALE)
    assert status == 401
    # the other till is unaffected
    assert (await Api(client, headers={"Authorization": f"Bearer {till2}"}).get("/stock/DRK-001"))[0] == 200


async def test_status_page_in_chinese(client, api):
    await api.ok("/sales", {"lines": [{"sku": "DRK-001", "qty": 1}], "payments": [{"method": "cash", "amount_fen": 200}]})
    resp = await client.get("/")
    text = await resp.text()
    assert resp.status == 200 and resp.content_type == "text/html"
    assert "测试门店" in text and "今日销售" in text and "1 笔" in text and "未配置（仅本地运行）" in text


async def test_status_page_says_how_devices_are_connected_in_words(tmp_path):
    """Issue 14 part 4: the status page showed config.toml's `type` (network, serial) to people."""
    config = config_mod.load(write_config(tmp_path, '[[printers]]\nname = "front"\ntype = "network"\nhost = "127.0.0.1"\n'
                                          'port = 1\n[[scanners]]\nname = "gun1"\ntype = "serial"\n'
                                          f'path = "{tmp_path / "no-such-tty"}"\n'))
    seed(config.db_path)
    client = await start_client(config)
    try:
        text = await (await client.get("/")).text()
        cells = [c for c in text.split("<td>") if c.startswith(("网络", "串口"))]
        assert len(cells) == 2, text
        for word in (">network<", ">serial<"):
            assert word not in text, text
    finally:
        await client.close()


async def test_a_read_past_the_limit_answers_503_json(tmp_path, monkeypatch):
    from conftest import write_config

    from edge.api import pos

    config = config_mod.load(write_config(tmp_path, "[api]\nread_timeout_seconds = 0.1\n"))
    seed(config.db_path)

    def runaway(conn, sku):
        return conn.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000000) "
                            "SELECT count(*) FROM n").fetchone()[0]

    monkeypatch.setattr(pos.stock, "get_balance", runaway)
    client = await start_client(config)
    try:
        resp = await client.get("/api/v1/stock/DRK-001")
        assert resp.status == 503
        assert (await resp.json())["error"]["code"] == "read_timeout"
        monkeypatch.undo()
        resp = await client.get("/api/v1/stock/DRK-001")
        assert resp.status == 200
    finally:
        await client.close()


async def test_status_page_beyond_loopback_shows_no_money_without_a_manager_login(tmp_path):
    from conftest import write_config

    from tests.test_ui_security import log_in, make_users

    cfg = config_mod.load(write_config(tmp_path, '[api]\nhost = "0.0.0.0"\n'))
    seed(cfg.db_path)
    make_users(cfg.db_path)
    [till] = make_tokens(cfg.db_path, "till-1")
    client = await start_client(cfg)
    try:
        await Api(client, headers={"Authorization": f"Bearer {till}"}).ok("/sales", SALE)
        anyone = await (await client.get("/")).text()
        assert "测试门店" in anyone and "￥" not in anyone and "1 笔" not in anyone and "版本" not in anyone
        assert "店长登录后查看" in anyone
        assert (await log_in(client, "cash")).status == 303           # a cashier does not see the takings
        assert "￥" not in await (await client.get("/")).text()
        await client.post("/ui/logout", data={"csrf": await _csrf(client)})
        assert (await log_in(client, "boss")).status == 303
        manager = await (await client.get("/")).text()
        assert "1 笔" in manager and "￥" in manager
    finally:
        await client.close()


async def _csrf(client) -> str:
    import re

    return re.search(r'data-csrf="([^"]*)"', await (await client.get("/ui/cashier")).text()).group(1)
