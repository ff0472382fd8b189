"""A member in a sale through the till API (POST /sales with `member`), with no cloud: the sale is held to
the offline caps. A bad member or code, or a refused payment, is a clear 4xx that writes nothing (no sale,
no stock move, no event); a retry with the same Idempotency-Key is the same sale with one event; /metrics
counts member sales, points and refusals. The cloud's hold is in tests/test_member_holds.py."""

from __future__ import annotations

import json
import time

import pytest

from edge.core import config as config_mod
from edge.core import jws
from edge.core.refusals import MESSAGES_ZH
from edge.ops.demo.phone import Phone
from edge.store import db
from tests.conftest import Api, dump, query
from tests.test_member_sales import PROGRAM
from tests.test_members import KEY_PUBLIC, OTHER, chain_config, claims, feed
from tests.test_members_api import phone
from tests.test_metrics import parse

CAPS = "\n[members]\noffline_points_cap = 500\noffline_stored_value_cap_fen = 3000\n"


@pytest.fixture
def config(tmp_path):
    cfg = chain_config(tmp_path)
    cfg.path.write_text(cfg.path.read_text(encoding="utf-8") + CAPS, encoding="utf-8")
    cfg = config_mod.load(cfg.path)
    conn = db.open_store_db(cfg.db_path)
    try:
        feed(conn, [("key.published", {"kid": "k1", "alg": "Ed25519", "public_key": KEY_PUBLIC}),
                    ("member.program", PROGRAM),
                    ("member.prices", {"prices": [{"sku": "SNK-001", "level": "金卡", "price_fen": 700}]})])
    finally:
        conn.close()
    return cfg


def sale(member=None, payments=None, lines=None) -> dict:
    body = {"lines": lines or [{"sku": "SNK-001", "qty": 2}],
            "payments": payments or [{"method": "cash", "amount_fen": 2000}], "print_receipt": False}
    if member is not None:
        body["member"] = member
    return body


def activities(db_path) -> list[dict]:
    return [json.loads(r[0]) for r in query(db_path, "SELECT payload FROM outbox WHERE type = 'member.activity'")]


async def test_a_sale_with_a_member_code_gives_the_member_price_points_and_one_event(api, db_path):
    code = phone().code()
    status, body, resp = await api.post("/sales", sale({"code": code}, [
        {"method": "points", "amount_fen": 300}, {"method": "wechat", "amount_fen": 1100}]), key="sale-1")
    assert status == 201, body
    s = body["sale"]
    assert (s["lines"][0]["list_price_fen"], s["lines"][0]["unit_price_fen"], s["lines"][0]["member_saved_fen"]) == (
        750, 700, 100)
    m = s["member"]
    assert {k: m[k] for k in ("member_id", "level", "name", "phone", "points_spent", "points_value_fen",
                              "stored_value_fen", "saved_fen", "offline")} == {
        "member_id": "m-000123", "level": "金卡", "name": "张*", "phone": "138****5678", "points_spent": 300,
        "points_value_fen": 300, "stored_value_fen": 0, "saved_fen": 100, "offline": True}
    assert m["points_earned"] == (1400 - 300) * 150 // 10000
    assert m["points_balance"] == 1280 - 300 + m["points_earned"]
    assert code not in dump(db_path)                     # the code is never kept, not even in the answer kept
    # the same request again (a till retrying after a lost answer): the same sale, still one event
    status, again, resp = await api.post("/sales", sale({"code": code}, [
        {"method": "points", "amount_fen": 300}, {"method": "wechat", "amount_fen": 1100}]), key="sale-1")
    assert status == 201 and again["sale"]["id"] == s["id"] and resp.headers["Idempotent-Replayed"] == "true"
    event, = activities(db_path)
    assert event["activity_id"] == f"sale:{s['id']}" and event["points_spent"] == 300
    assert (await api.get(f"/sales/{s['id']}"))[1]["member"] == m


async def test_a_member_verified_at_the_till_is_named_by_id_for_the_sale(api):
    await api.ok("/members/verify", {"code": phone().code()})
    body = await api.ok("/sales", sale({"member_id": "m-000123"}))
    assert body["sale"]["member"]["member_id"] == "m-000123"


@pytest.mark.parametrize("member, payments, reason, status", [
    ({"code": "not.a.member.code"}, None, "malformed", 422),
    ({"member_id": "m-000999"}, None, "member_not_seen", 422),
    ({"code": "x", "member_id": "m-000123"}, None, "invalid_body", 422),         # both
    (None, [{"method": "points", "amount_fen": 100}, {"method": "cash", "amount_fen": 2000}], "member_required", 422),
    ("code", [{"method": "points", "amount_fen": 701}, {"method": "cash", "amount_fen": 2000}],
     "points_over_limit", 422),
    ("code", [{"method": "points", "amount_fen": 501}, {"method": "cash", "amount_fen": 2000}],
     "points_offline_cap", 422),
    ("code", [{"method": "stored_value", "amount_fen": 1400}, {"method": "points", "amount_fen": 10}],
     "overpaid", 422),
    ("forged", None, "bad_signature", 422),
    ("other_chain", None, "wrong_chain", 422),
])
async def test_a_bad_member_or_payment_is_a_clear_4xx_and_writes_nothing(api, db_path, member, payments, reason,
                                                                         status):
    if member == "code":
        member = {"code": phone().code()}
    elif member == "forged":
        forged = Phone()      # signed with a key the store never trusted, under the store's key id
        forged.certificate = jws.sign(OTHER, "k1", jws.TYP_MEMBER, {**claims(forged), "snp": int(time.time()),
                                                                     "exp": int(time.time()) + 86400})
        member = {"code": forged.code()}
    elif member == "other_chain":
        member = {"code": phone(chn="chain-02").code()}
    before = dump(db_path)
    code, body, _ = await api.post("/sales", sale(member, payments))
    assert code == status and body["error"]["code"] == reason, body
    if reason in MESSAGES_ZH:
        assert body["error"]["detail"]["message_zh"] == MESSAGES_ZH[reason]
    assert dump(db_path) == before                       # no sale, no stock move, no event, no code taken


async def test_a_refund_by_points_or_stored_value_is_refused(api):
    s = (await api.ok("/sales", sale()))["sale"]
    code, body, _ = await api.post(f"/sales/{s['id']}/returns", {"lines": [{"line_no": 1, "qty": 1}],
                                                                  "refund_method": "points"})
    assert code == 422 and body["error"]["code"] == "invalid_body"


async def test_a_return_through_the_api_gives_back_to_the_balance(api, db_path):
    s = (await api.ok("/sales", sale({"code": phone().code()}, [
        {"method": "stored_value", "amount_fen": 1000}, {"method": "cash", "amount_fen": 400}])))["sale"]
    assert s["member"]["stored_value_fen"] == 1000 and s["member"]["stored_value_balance_fen"] == 4000
    r = await api.ok(f"/sales/{s['id']}/returns", {"lines": [{"line_no": 1, "qty": 2}], "refund_method": "cash"})
    assert (r["refund_fen"], r["stored_value_fen"], r["points_value_fen"]) == (1400, 1000, 0)
    day = (await api.get("/sales"))[1]
    assert day["net_by_method_fen"] == {"stored_value": 0, "cash": 0}
    assert [e["stored_value_fen"] for e in activities(db_path)] == [-1000, 1000]


async def test_metrics_count_member_sales_points_and_refusals(client):
    api = Api(client)
    await api.ok("/sales", sale({"code": phone().code()}, [
        {"method": "points", "amount_fen": 200}, {"method": "stored_value", "amount_fen": 500},
        {"method": "cash", "amount_fen": 700}]))
    code, _, _ = await api.post("/sales", sale({"code": phone(sub="m-000124").code()}, [
        {"method": "points", "amount_fen": 501}, {"method": "cash", "amount_fen": 2000}]))
    assert code == 422
    families = parse(await (await client.get("/metrics")).text())
    samples = lambda name: {tuple(sorted(lbl.items())): v for _, lbl, v in families[name]["samples"]}  # noqa: E731
    assert samples("store_edge_member_sales_total") == {(): 1}
    points = samples("store_edge_member_points_total")
    assert points[(("kind", "spent"),)] == 200 and points[(("kind", "earned"),)] == (1400 - 200) * 150 // 10000
    assert samples("store_edge_member_stored_value_fen_total")[(("kind", "paid"),)] == 500
    assert samples("store_edge_member_offline_spends_total") == {(): 1}
    assert samples("store_edge_member_sale_refusals_total") == {(("reason", "points_offline_cap"),): 1}
