"""The cashier screen and members: a member code from the scan field (the member masked, or the refusal
in Chinese), a scanned one in the last scans, the phone look-up without a cloud (云端不可用), an online
order handed over to the member shown (pickup.verified's member_id)."""

from __future__ import annotations

import json
import logging
import re
import time

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from edge.core import jws
from edge.ops.demo.phone import Phone
from tests.conftest import Api, dump, query
from tests.test_members import chain_config, claims
from tests.test_ui_cashier import CODE, form_fields, log_in, post, reason, store, web  # noqa: F401 (fixtures)
from tests.test_verification import KEY

RAW_KEY = KEY.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


@pytest.fixture
def config(tmp_path):
    return chain_config(tmp_path)


def phone(**over) -> Phone:
    p = Phone()
    now = int(time.time())
    p.certificate = jws.sign(RAW_KEY, "k1", jws.TYP_MEMBER,
                             {**claims(p), "snp": now - 60, "iat": now - 60, "exp": now + 86400, **over})
    return p


def words(page: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))


async def test_a_member_code_in_the_scan_field(web, store, caplog):  # noqa: F811
    caplog.set_level(logging.DEBUG)
    csrf = await log_in(web)
    code = phone().code()
    status, answer = await post(web, "/ui/cashier/scan", csrf, {"text": code})
    assert status == 200 and 'class="member"' in answer, answer
    for shown in ("张*", "138****5678", "金卡", "1280", "￥50.00", "积分和余额截至"):
        assert shown in words(answer), shown
    assert code.rsplit(".", 1)[1] not in answer
    before = dump(store)
    status, answer = await post(web, "/ui/cashier/scan", csrf, {"text": code})
    assert status == 422 and reason(answer) == "replayed" and "已使用过" in answer
    status, answer = await post(web, "/ui/cashier/scan", csrf, {"text": phone(chn="chain-02").code()})
    assert status == 422 and reason(answer) == "wrong_chain" and "其他连锁" in answer
    assert dump(store) == before
    assert code.rsplit(".", 1)[1] not in caplog.text and code.split(".")[1] not in caplog.text


async def test_a_scanned_member_code_in_the_last_scans(web, store):  # noqa: F811
    await log_in(web)
    member = phone()
    code = member.code()
    await Api(web).ok("/scans", {"text": code})
    await Api(web).ok("/scans", {"text": member.code(time.time() - 60)})     # two steps old
    page = await (await web.get("/ui/cashier?fragment=cashier_scans")).text()
    rows = words(page)
    assert "会员码" in rows and "张* 138****5678" in rows and "金卡" in rows and "会员码过时" in rows
    assert code.rsplit(".", 1)[1] not in page and code.split(".")[1] not in page


async def test_phone_look_up_without_a_cloud(web, store):  # noqa: F811
    csrf = await log_in(web)
    page = await (await web.get("/ui/cashier")).text()
    assert 'id="member-phone-form"' in page and "按手机号查会员" in page
    status, answer = await post(web, "/ui/cashier/member-phone", csrf, {"phone": "13812345678"})
    assert status == 422 and reason(answer) == "no_cloud" and "云端不可用" in answer
    status, answer = await post(web, "/ui/cashier/member-phone", csrf, {"phone": "138"})
    assert status == 422 and reason(answer) == "bad_phone"


async def test_the_member_card_says_what_the_till_gets_and_hands_an_order_over_to_the_member(web, store):  # noqa: F811
    csrf = await log_in(web)
    member_id = claims(Phone())["sub"]
    status, card = await post(web, "/ui/cashier/scan", csrf, {"text": phone().code()})
    assert status == 200 and 'class="member-till"' in card, card
    assert f"结账时收银机填会员号 {member_id}（30 分钟内有效）" in words(card)
    assert form_fields(card, 'name="text"')["member_id"] == member_id
    # the pickup code typed on the member's card: the order, with the member going along
    status, pickup = await post(web, "/ui/cashier/scan", csrf, {"text": CODE, "member_id": member_id})
    assert status == 200 and 'id="confirm-handover"' in pickup, pickup
    assert "会员 张* 138****5678（金卡）随此交货" in words(pickup) and member_id not in words(pickup)
    fields = form_fields(pickup, 'id="confirm-handover"')
    assert fields["member_id"] == member_id and fields["code"] == CODE
    status, done = await post(web, "/ui/cashier/handover", None, fields)
    assert status == 201 and "已记入会员 张* 138****5678（金卡）" in words(done), done
    [(payload,)] = query(store, "SELECT payload FROM outbox WHERE type = 'pickup.verified'")
    assert json.loads(payload)["member_id"] == member_id and json.loads(payload)["order_id"] == "o-1"
    # without a member the event is as it always was: no member_id at all
    status, pickup = await post(web, "/ui/cashier/scan", csrf, {"text": "777001"})
    assert "随此交货" not in pickup and "member_id" not in form_fields(pickup, 'id="confirm-handover"')
    status, done = await post(web, "/ui/cashier/handover", None, form_fields(pickup, 'id="confirm-handover"'))
    assert status == 201 and "已记入会员" not in done
    payloads = [json.loads(p) for (p,) in query(store, "SELECT payload FROM outbox WHERE type = 'pickup.verified' "
                                                       "ORDER BY seq")]
    assert "member_id" not in payloads[1]


async def test_a_hand_over_to_a_member_not_seen_here_or_malformed_is_refused_and_writes_nothing(web, store):  # noqa: F811
    csrf = await log_in(web)
    status, pickup = await post(web, "/ui/cashier/scan", csrf, {"text": CODE})
    fields = form_fields(pickup, 'id="confirm-handover"')
    for member_id, words_shown in (("m 1", "field-error"), ("m-999999", "此会员未在本店验证")):
        # on the member's card's form, and on a hand-over form whose member was changed since
        status, answer = await post(web, "/ui/cashier/scan", csrf, {"text": CODE, "member_id": member_id})
        assert status == 422 and words_shown in answer and 'id="confirm-handover"' not in answer, answer
        before = dump(store)
        status, answer = await post(web, "/ui/cashier/handover", None, {**fields, "member_id": member_id})
        assert status == 422 and words_shown in answer, answer
        assert dump(store) == before


async def test_the_till_api_hands_over_to_a_member_verified_here(web, store):  # noqa: F811
    api = Api(web)
    member = await api.ok("/members/verify", {"code": phone().code()})
    before = dump(store)
    status, refused, _ = await api.post("/pickups", {"code": "777001", "operator": "收银员", "member_id": "m-404"})
    assert status == 422 and refused["error"]["code"] == "member_not_seen", refused
    assert dump(store) == before
    done = await api.ok("/pickups", {"code": "777001", "operator": "收银员", "member_id": member["member_id"]})
    assert done["member_id"] == member["member_id"] and done["order"]["state"] == "picked_up"
    [(payload,)] = query(store, "SELECT payload FROM outbox WHERE type = 'pickup.verified'")
    assert json.loads(payload)["member_id"] == member["member_id"]
