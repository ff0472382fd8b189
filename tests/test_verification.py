"""核销: pickup tokens and codes, coupons, through the API, on keys and orders synced the real way.

Keys, orders and coupon definitions arrive through sync.changes.apply_page, as they do from the
cloud. Tokens are signed here with Ed25519 exactly as docs/tokens.md says (the cloud's side).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edge.core.context import WriteContext
from edge.store import db, pickups
from sync.changes import apply_page
from tests.conftest import Api, dump, query

STORE = "test-store"
KEY = Ed25519PrivateKey.generate()
OTHER_KEY = Ed25519PrivateKey.generate()
CODE = "204613"
CTX = WriteContext("cloud", "2026-11-22T01:00:00.000Z", "2026-11-22")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(claims: dict, *, typ="se-pickup+jwt", kid="k1", key=KEY, header: dict | None = None) -> str:
    head = b64url(json.dumps(header or {"alg": "EdDSA", "kid": kid, "typ": typ}).encode())
    body = b64url(json.dumps(claims).encode())
    return f"{head}.{body}.{b64url(key.sign(f'{head}.{body}'.encode()))}"


def pickup_token(order_id="o-1", **over) -> str:
    now = int(time.time())
    return sign({"sub": order_id, "sid": STORE, "iat": now, "exp": now + 3600, "jti": f"j-{order_id}", **over})


def coupon_token(coupon_id="c-20off100", serial="s-1", **over) -> str:
    now = int(time.time())
    return sign({"sub": serial, "cid": coupon_id, "iat": now, "exp": now + 3600, "jti": f"cj-{serial}", **over},
                typ="se-coupon+jwt")


def public(key) -> str:
    return base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def feed(db_path, changes: list[tuple[str, dict]]) -> None:
    conn = db.open_store_db(db_path)
    try:
        cursor = conn.execute("SELECT coalesce(max(cursor), 0) FROM inbox").fetchone()[0]
        page = [{"cursor": cursor + i + 1, "id": f"ch-{cursor + i + 1}", "type": t, "created_at": CTX.now,
                 "payload": p} for i, (t, p) in enumerate(changes)]
        with db.transaction(conn):
            result = apply_page(conn, page, cursor + len(page), CTX)
        assert result["rejected"] == 0, result
    finally:
        conn.close()


def order(order_id="o-1", number="A101", code=CODE):
    return ("order.created", {
        "order_id": order_id, "number": number, "kind": "pickup", "total_fen": 1050,
        "lines": [{"sku": "DRK-001", "name": "农夫山泉", "qty": 2, "price_fen": 200},
                  {"sku": "SNK-001", "name": "乐事薯片", "qty": 1, "price_fen": 650}],
        "pickup_code_sha256": hashlib.sha256(code.encode()).hexdigest()})


COUPON = {"coupon_id": "c-20off100", "title": "满10减2", "kind": "value", "value_fen": 200, "min_spend_fen": 1000,
          "scope": {"categories": ["零食", "饮料"]}, "uses": 1}


@pytest.fixture
def synced(db_path):
    feed(db_path, [("key.published", {"kid": "k1", "alg": "Ed25519", "public_key": public(KEY)}), order(),
                   order("o-2", "A102", "777001"), ("coupon.defined", COUPON),
                   ("coupon.defined", {**COUPON, "coupon_id": "c-pct", "title": "九折", "kind": "percent",
                                       "value_fen": None, "percent_off": 10, "min_spend_fen": 0,
                                       "online_only": True})])
    return db_path


def balances(db_path, sku):
    return query(db_path, "SELECT on_hand, reserved FROM stock_balances WHERE sku = ?", sku)[0]


async def test_pickup_by_token_two_steps_then_used_once(api, synced):
    before = balances(synced, "DRK-001")
    code, found, _ = await api.post("/pickups/lookup", {"token": pickup_token()}, key=None)
    assert code == 200 and found["order"]["number"] == "A101" and found["method"] == "token"
    assert found["provisional"] is False
    done = await api.ok("/pickups", {"token": pickup_token(), "operator": "小王"})
    assert done["order"]["state"] == "picked_up" and done["pickup"]["operator"] == "小王"
    assert balances(synced, "DRK-001") == (before[0] - 2, before[1] - 2)  # reserved released, stock issued
    event = json.loads(query(synced, "SELECT payload FROM outbox WHERE type = 'pickup.verified'")[0][0])
    assert event["order_id"] == "o-1" and event["method"] == "token" and event["jti"] == "j-o-1"
    assert sorted((m["sku"], m["qty"], m["reason"]) for m in event["moves"]) == sorted(
        [("DRK-001", -2, "release"), ("DRK-001", -2, "pickup"), ("SNK-001", -1, "release"),
         ("SNK-001", -1, "pickup")])
    # the second try, by token or by code, says when and by whom
    for body in ({"token": pickup_token()}, {"code": CODE}):
        code, err, _ = await api.post("/pickups/lookup", body, key=None)
        assert code == 409 and err["error"]["code"] == "already_used", err
        assert err["error"]["detail"]["used_by"] == "小王" and err["error"]["detail"]["used_at"]
        assert "已使用" in err["error"]["detail"]["message_zh"]


async def test_pickup_by_typed_code_and_reversal(api, synced):
    done = await api.ok("/pickups", {"code": "777001", "operator": "小李"})
    assert done["order"]["number"] == "A102" and done["pickup"]["method"] == "code"
    reserved_after = balances(synced, "DRK-001")
    back = await api.ok("/pickups/o-2/reverse", {"operator": "店长", "reason": "拿错了订单"})
    assert back["order"]["state"] == "ready" and back["pickup"]["reversed_by"] == "店长"
    assert balances(synced, "DRK-001") == (reserved_after[0] + 2, reserved_after[1] + 2)
    code, err, _ = await api.post("/pickups/o-2/reverse", {"operator": "店长", "reason": "again"})
    assert code == 409 and err["error"]["code"] == "not_picked_up"
    again = await api.ok("/pickups", {"code": "777001", "operator": "小李"})  # handed over again, properly
    assert again["order"]["state"] == "picked_up"
    assert [r[0] for r in query(synced, "SELECT type FROM outbox WHERE type LIKE 'pickup.%' ORDER BY seq")] == [
        "pickup.verified", "pickup.reversed", "pickup.verified"]


def _tampered() -> str:
    head, body, sig = pickup_token().split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["sub"] = "o-2"
    return f"{head}.{b64url(json.dumps(claims).encode())}.{sig}"


_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def respelled(token: str, part: int) -> str:
    """The same token with the unused low bit of one part's last character set: a lenient decoder
    reads the same bytes, so a re-spelled signature would still verify."""
    parts = token.split(".")
    assert len(parts[part]) % 4 in (2, 3)          # the last character carries unused bits
    last = _B64URL.index(parts[part][-1])
    parts[part] = parts[part][:-1] + _B64URL[last ^ 1]
    assert base64.urlsafe_b64decode(parts[part] + "==") == base64.urlsafe_b64decode(token.split(".")[part] + "==")
    return ".".join(parts)


NOW = int(time.time())
REFUSED = [
    ("forged (another key, same kid)", {"token": sign({"sub": "o-1", "sid": STORE, "exp": NOW + 99, "jti": "x"},
                                                      key=OTHER_KEY)}, "bad_signature"),
    ("tampered claims", {"token": _tampered()}, "bad_signature"),
    ("expired", {"token": pickup_token(exp=NOW - 3600)}, "expired"),
    ("not yet valid", {"token": pickup_token(nbf=NOW + 3600)}, "not_yet_valid"),
    ("other store", {"token": pickup_token(sid="store-999")}, "wrong_store"),
    ("unknown key", {"token": sign({"sub": "o-1", "sid": STORE, "exp": NOW + 99, "jti": "x"}, kid="k9")},
     "unknown_key"),
    ("unknown order", {"token": pickup_token("o-404")}, "unknown_order"),
    ("coupon token at pickup", {"token": coupon_token()}, "malformed"),
    ("alg none", {"token": sign({"sub": "o-1"}, header={"alg": "none", "kid": "k1", "typ": "se-pickup+jwt"})},
     "malformed"),
    ("extra header", {"token": sign({"sub": "o-1"}, header={"alg": "EdDSA", "kid": "k1", "typ": "se-pickup+jwt",
                                                            "jku": "http://evil"})}, "malformed"),
    ("signature re-spelled", {"token": respelled(pickup_token(), 2)}, "malformed"),
    ("claims re-spelled", {"token": respelled(sign({"sub": "o-1", "sid": STORE, "exp": NOW + 99, "jti": "xy"}), 1)},
     "malformed"),
    ("padded", {"token": pickup_token().replace(".", "==.", 1)}, "malformed"),
    ("alg Ed25519", {"token": sign({"sub": "o-1"}, header={"alg": "Ed25519", "kid": "k1", "typ": "se-pickup+jwt"})},
     "malformed"),
    ("alg HS256", {"token": sign({"sub": "o-1"}, header={"alg": "HS256", "kid": "k1", "typ": "se-pickup+jwt"})},
     "malformed"),
    ("header crit", {"token": sign({"sub": "o-1"}, header={"alg": "EdDSA", "kid": "k1", "typ": "se-pickup+jwt",
                                                           "crit": ["b64"], "b64": False})}, "malformed"),
    ("no typ", {"token": sign({"sub": "o-1"}, header={"alg": "EdDSA", "kid": "k1"})}, "malformed"),
    ("two parts", {"token": "abc.def"}, "malformed"),
    ("not base64", {"token": "a$b.c.d"}, "malformed"),
    ("exp as text", {"token": pickup_token(exp="tomorrow")}, "malformed"),
    ("no exp", {"token": sign({"sub": "o-1", "sid": STORE, "jti": "x"})}, "malformed"),
    ("wrong code", {"code": "000000"}, "bad_code"),
]


@pytest.mark.parametrize("what,body,reason", REFUSED, ids=[r[0] for r in REFUSED])
async def test_refused_codes_write_nothing(api, synced, what, body, reason):
    before = dump(synced)
    for path, extra in (("/pickups/lookup", {}), ("/pickups", {"operator": "小王"})):
        code, err, _ = await api.post(path, {**body, **extra}, key=None if path.endswith("lookup") else "auto")
        assert code in (404, 409, 422) and err["error"]["code"] == reason, (what, path, err)
        assert err["error"]["detail"]["message_zh"]
    assert dump(synced) == before


async def test_replayed_token_after_hand_over_is_refused(api, synced):
    await api.ok("/pickups", {"token": pickup_token(), "operator": "小王"})
    before = dump(synced)
    code, err, _ = await api.post("/pickups", {"token": pickup_token(), "operator": "小张"})
    assert code == 409 and err["error"]["code"] == "already_used"
    assert dump(synced) == before


async def test_malformed_bodies(api, synced):
    for body in ({}, {"token": "x", "code": "123456"}, {"code": "12345"}, {"code": "12345a"}, {"token": ""},
                 {"token": "x" * 1025}, {"code": 123456}):
        code, err, _ = await api.post("/pickups/lookup", body, key=None)
        assert code == 422 and err["error"]["code"] == "invalid_body", body


async def test_typed_codes_are_rate_limited_per_till(api, synced):
    for n in range(5):
        code, err, _ = await api.post("/pickups/lookup", {"code": f"99999{n}"}, key=None)
        assert err["error"]["code"] == "bad_code"
    code, err, _ = await api.post("/pickups/lookup", {"code": CODE}, key=None)  # even the right one, now
    assert code == 429 and err["error"]["code"] == "rate_limited"
    code, found, _ = await api.post("/pickups/lookup", {"token": pickup_token()}, key=None)  # tokens are not
    assert code == 200


def test_offline_hand_over_is_provisional(synced):
    conn = db.open_store_db(synced)
    try:
        checks = pickups.Checks(store_id=STORE, online=False)
        with db.transaction(conn):
            done = pickups.hand_over(conn, pickups.HandOver(token=pickup_token(), operator="小王"), checks,
                                    WriteContext("till-1", "2026-11-22T02:00:00.000Z", "2026-11-22"))
        assert done["pickup"]["provisional"] is True
        event = json.loads(conn.execute("SELECT payload FROM outbox WHERE type = 'pickup.verified'").fetchone()[0])
        assert event["provisional"] is True
    finally:
        conn.close()
    # cancelled upstream meanwhile: a visible conflict, the hand-over stands
    feed(synced, [("order.cancelled", {"order_id": "o-1", "reason": "顾客申请退款"})])
    assert query(synced, "SELECT state, conflict IS NOT NULL FROM orders WHERE id = 'o-1'") == [("picked_up", 1)]


# -- coupons --------------------------------------------------------------------------------------

SALE = {"lines": [{"sku": "SNK-001", "qty": 1}, {"sku": "DRK-001", "qty": 2}, {"sku": "HOM-001", "qty": 1}],
        "payments": [{"method": "wechat", "amount_fen": 2740}]}


async def test_coupon_redeemed_with_the_sale_once(api, synced):
    code, about, _ = await api.post("/coupons/check", {"token": coupon_token()}, key=None)
    assert code == 200 and about["coupon"]["title"] == "满10减2" and about["uses_left"] == 1
    sale = await api.ok("/sales", {**SALE, "coupons": [coupon_token()], "payments": [
        {"method": "wechat", "amount_fen": 2740 - 200}]})
    assert sale["sale"]["discount_fen"] == 200 and sale["sale"]["coupons"][0]["amount_fen"] == 200
    event = json.loads(query(synced, "SELECT payload FROM outbox WHERE type = 'coupon.redeemed'")[0][0])
    assert event["serial"] == "s-1" and event["sale_id"] == sale["sale"]["id"]
    before = dump(synced)
    code, err, _ = await api.post("/sales", {**SALE, "coupons": [coupon_token()]})
    assert code == 409 and err["error"]["code"] == "already_used" and err["error"]["fields"][0]["field"] == \
        "coupons[0]"
    assert dump(synced) == before  # no sale without its coupon


async def test_coupon_terms_are_checked_against_the_sale(api, synced):
    before = dump(synced)
    cases = [
        ({"lines": [{"sku": "HOM-001", "qty": 1}], "payments": [{"method": "cash", "amount_fen": 2000}]},
         coupon_token(), "out_of_scope"),   # 日用 is not in scope
        ({"lines": [{"sku": "DRK-001", "qty": 1}], "payments": [{"method": "cash", "amount_fen": 2000}]},
         coupon_token(), "min_spend"),      # ￥2 of drinks, the coupon needs ￥10
        (SALE, coupon_token(exp=NOW - 3600), "expired"),
        (SALE, coupon_token(sid="store-999"), "wrong_store"),
        (SALE, coupon_token("c-none"), "coupon_unknown"),
        (SALE, pickup_token(), "malformed"),
    ]
    for sale, token, reason in cases:
        code, err, _ = await api.post("/sales", {**sale, "coupons": [token]})
        assert err["error"]["code"] == reason, (reason, err)
    code, err, _ = await api.post("/sales", {**SALE, "coupons": [coupon_token(serial="s-2"),
                                                                 coupon_token(serial="s-2")]})
    assert err["error"]["code"] == "already_used" and err["error"]["fields"][0]["field"] == "coupons[1]"
    assert dump(synced) == before


def test_online_only_coupon_refused_offline(synced):
    from edge.store import coupons  # noqa: PLC0415

    conn = db.open_store_db(synced)
    try:
        lines = [coupons.SaleLine("SNK-001", "零食", 1000)]
        token = coupon_token("c-pct", "s-9")
        with pytest.raises(Exception) as err:
            coupons.evaluate(conn, [token], lines, pickups.Checks(STORE, online=False))
        assert err.value.code == "online_only"
        [applied] = coupons.evaluate(conn, [token], lines, pickups.Checks(STORE, online=True))
        assert applied.discount_fen == 100
        # the config can make a kind online-only too
        with pytest.raises(Exception) as err:
            coupons.evaluate(conn, [coupon_token(serial="s-8")], lines + [coupons.SaleLine("DRK-001", "饮料", 900)],
                             pickups.Checks(STORE, online=False), frozenset({"value"}))
        assert err.value.code == "online_only"
    finally:
        conn.close()


async def test_pickup_slip_is_queued_with_the_hand_over(api, synced):
    from edge.store import spool  # noqa: PLC0415

    conn = db.open_store_db(synced)
    with db.transaction(conn):
        spool.set_routes(conn, {"pickup_slip": ("counter", 3600)}, ["counter"])
    conn.close()
    done = await api.ok("/pickups", {"token": pickup_token(), "operator": "小王"})
    assert done["print_job"]["printer"] == "counter"
    job = query(synced, "SELECT kind, order_id, payload FROM print_jobs")[0]
    assert job[:2] == ("pickup_slip", "o-1") and json.loads(job[2])["operator"] == "小王"


async def test_keys_from_config_verify_before_the_first_sync(tmp_path):
    from edge.core import config as config_mod  # noqa: PLC0415
    from tests.conftest import seed, start_client, write_config  # noqa: PLC0415

    cfg = config_mod.load(write_config(tmp_path, f'[[verification.keys]]\nkid = "k1"\npublic_key = "{public(KEY)}"\n'))
    seed(cfg.db_path)
    feed(cfg.db_path, [order()])
    client = await start_client(cfg)
    try:
        code, found, _ = await Api(client).post("/pickups/lookup", {"token": pickup_token()}, key=None)
        assert code == 200 and found["order"]["id"] == "o-1"
    finally:
        await client.close()
    bad = tmp_path / "bad"
    bad.mkdir()
    with pytest.raises(config_mod.ConfigError) as err:
        config_mod.load(write_config(bad, '[[verification.keys]]\nkid = "k1"\npublic_key = "not-a-key"\n'))
    assert "verification.keys[0].public_key" in str(err.value)


def _count_verifications(monkeypatch) -> list[str]:
    """The thread of every token verification on the pickup path."""
    import threading  # noqa: PLC0415

    from edge.store import pickups  # noqa: PLC0415

    calls, real = [], pickups.verify

    def counted(*args, **kwargs):
        calls.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(pickups, "verify", counted)
    return calls


async def test_a_hand_over_verifies_its_token_once_off_the_writer(api, synced, monkeypatch):
    calls = _count_verifications(monkeypatch)
    key = "hand-over-once"
    code, done, _ = await api.post("/pickups", {"token": pickup_token(), "operator": "小王"}, key=key)
    assert code == 201 and done["order"]["state"] == "picked_up"
    assert len(calls) == 1 and calls[0] != "store-writer", calls
    # the same request again (a retry of a lost answer) is answered from the first, as before
    code, again, resp = await api.post("/pickups", {"token": pickup_token(), "operator": "小王"}, key=key)
    assert code == 201 and resp.headers["Idempotent-Replayed"] == "true" and again == done
    # a refused token is refused inside the write, as before: nothing written
    code, err, _ = await api.post("/pickups", {"token": pickup_token(exp=int(time.time()) - 3600),
                                               "operator": "小王"})
    assert code == 422 and err["error"]["code"] == "expired", err
    assert "store-writer" not in calls
