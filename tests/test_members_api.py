"""Member codes through the API and the scan journal: POST /members/verify, a scan of a member code
(checked by the scan router, kept masked: never the code, in the journal or the log), the cashier
screen's answer, and the phone look-up when no cloud answers."""

from __future__ import annotations

import logging
import time

import pytest

from edge.core import jws
from edge.ops.demo.phone import Phone
from edge.store import db
from tests.conftest import dump, query
from tests.test_members import KEY, KEY_PUBLIC, chain_config, claims, feed


@pytest.fixture
def config(tmp_path):
    cfg = chain_config(tmp_path)
    conn = db.open_store_db(cfg.db_path)
    try:
        feed(conn, [("key.published", {"kid": "k1", "alg": "Ed25519", "public_key": KEY_PUBLIC})])
    finally:
        conn.close()
    return cfg


def phone(**over) -> Phone:
    p = Phone()
    p.certificate = jws.sign(KEY, "k1", jws.TYP_MEMBER, {**claims(p), "snp": int(time.time()) - 60,
                                                          "iat": int(time.time()) - 60,
                                                          "exp": int(time.time()) + 86400, **over})
    return p


async def test_verify_then_replay_refused_in_chinese(api, db_path, caplog):
    caplog.set_level(logging.DEBUG)
    code = phone().code()
    member = await api.ok("/members/verify", {"code": code})
    assert (member["name"], member["phone"], member["level"], member["points"], member["balance_fen"]) == (
        "张*", "138****5678", "金卡", 1280, 5000)
    before = dump(db_path)
    status, err, _ = await api.post("/members/verify", {"code": code})
    assert status == 422 and err["error"]["code"] == "replayed"
    assert err["error"]["detail"]["message_zh"] == "此会员码已使用过，请让顾客刷新后重扫"
    assert dump(db_path) == before
    assert code.rsplit(".", 1)[1] not in caplog.text and code.split(".")[1] not in caplog.text
    assert code.rsplit(".", 1)[1] not in dump(db_path)      # the idempotency answer holds the member, not the code


@pytest.mark.parametrize("over, reason", [({"chn": "chain-02"}, "wrong_chain"),
                                          ({"exp": 1_000_000}, "member_expired")])
async def test_refusals_write_nothing(api, db_path, over, reason):
    before = dump(db_path)
    status, err, _ = await api.post("/members/verify", {"code": phone(**over).code()})
    assert status == 422 and err["error"]["code"] == reason and err["error"]["detail"]["message_zh"]
    assert dump(db_path) == before


async def test_not_a_code_is_a_refusal_not_a_crash(api):
    status, err, _ = await api.post("/members/verify", {"code": "hello"})
    assert status in (400, 422), err


async def test_a_scanned_member_code_is_checked_and_kept_masked(api, db_path, caplog):
    caplog.set_level(logging.DEBUG)
    p = phone()
    code = p.code()
    signature, certificate = code.rsplit(".", 1)[1], p.certificate
    stored = await api.ok("/scans", {"text": code})
    assert stored["kind"] == "member_code" and stored["detail"]["member"]["name"] == "张*"
    again = await api.ok("/scans", {"text": code})                     # the same code shown twice
    assert again["detail"]["refused"] == "replayed"
    journal = "\n".join(str(row) for row in query(db_path, "SELECT text, raw, detail FROM scans"))
    everything = dump(db_path) + caplog.text
    for secret in (signature, certificate, certificate.split(".")[1], certificate.split(".")[2]):
        assert secret not in journal and secret not in everything
    assert "member code" in journal
    status, data = await api.get("/scans", {"consumer": "pos-1"})
    assert status == 200


async def test_phone_lookup_without_a_cloud_says_no_cloud(api):
    status, err, _ = await api.post("/members/lookup", {"phone": "13812345678"}, key=None)
    assert status == 422 and err["error"]["code"] == "no_cloud"
    assert "云端不可用" in err["error"]["detail"]["message_zh"]
    status, err, _ = await api.post("/members/lookup", {"phone": "12345"}, key=None)
    assert status == 422 and err["error"]["code"] == "invalid_body", err
