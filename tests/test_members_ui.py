"""The cashier screen and members: a member code from the scan field (the member masked, or the refusal
in Chinese), a scanned one in the last scans, the phone look-up without a cloud (云端不可用)."""

from __future__ import annotations

import logging
import re
import time

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from edge.core import jws
from edge.ops.demo.phone import Phone
from tests.conftest import Api, dump
from tests.test_members import chain_config, claims
from tests.test_ui_cashier import log_in, post, reason, store, web  # noqa: F401 (fixtures)
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
