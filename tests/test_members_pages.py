"""会员 /ui/members, the manager's page of a business day's members: the sales with a member, the points
and stored value that moved (online and offline apart, returns included) and the offline spends against
the member code's snapshot; in Chinese and English, members masked and never by id. The sales are made
by the store's own functions (tests/test_member_sales.py's till); the page is read through the app."""

from __future__ import annotations

import re

import pytest

from edge.core import config as config_mod
from edge.core.clock import iso, utcnow
from edge.store import db, users
from edge.store.member_sales import Hold
from tests.conftest import start_client, write_config
from tests.test_member_sales import GOLD, Till, line
from tests.test_ui_cashier import PASSWORD, log_in

DAY = "2026-11-29"   # the till's business day
HOLD = Hold("h-00000000-0000-4000-8000-00000000beef", 300, 2000, 980, 3000)


def pay(points=0, stored=0, cash=100_000) -> list[dict]:
    return [p for p in ({"method": "points", "amount_fen": points}, {"method": "stored_value", "amount_fen": stored},
                        {"method": "cash", "amount_fen": cash}) if p["amount_fen"]]


@pytest.fixture
def sold(tmp_path):
    """Three member sales of one member: online with points and stored value (a hold), offline with
    points, one spending nothing; a return of part of the first; and a sale without a member."""
    config = config_mod.load(write_config(tmp_path))
    till = Till(config.db_path)
    online = till.sell([line("SNK-001", 4)], pay(300, 2000), hold=HOLD)
    offline = till.sell([line("DRK-001", 5)], pay(200))
    plain = till.sell([line("DRK-002")])
    back = till.give_back(online, [{"line_no": 1, "qty": 1}])
    till.sell([line("DRK-002")], member=None)
    with db.transaction(till.conn):
        users.add_user(till.conn, "boss", "李店长", "manager", users.new_password(PASSWORD), iso(utcnow()))
    till.conn.close()
    return config, {"online": online, "offline": offline, "plain": plain, "back": back}


def cells(page: str, move: str) -> list[str]:
    row = re.search(rf'<tr data-move="{move}">(.*?)</tr>', page, re.S).group(1)
    return [" ".join(re.sub(r"<[^>]+>", "", c).split()) for c in re.findall(r'<td class="num">(.*?)</td>', row, re.S)]


def yuan(fen: int) -> str:
    return f"{'-' if fen < 0 else ''}￥{abs(fen) // 100:,}.{abs(fen) % 100:02d}"


async def test_the_members_page_of_a_day(sold):
    config, s = sold
    web = await start_client(config)
    try:
        await log_in(web, "boss")
        page = await (await web.get(f"/ui/members?date={DAY}")).text()
        assert 'href="/ui/members"' in page  # in the menu
        online, offline, plain, back = s["online"], s["offline"], s["plain"], s["back"]
        sales = (online, offline, plain)
        assert re.search(r'id="members-day" data-date="2026-11-29" data-sales="3"', page)
        assert yuan(sum(x["total_fen"] for x in sales)) in page and "3 笔，1 位会员" in page
        assert yuan(sum(x["member"]["saved_fen"] for x in sales)) in page
        om, fm = online["member"], offline["member"]
        assert cells(page, "points_earned") == [f"{om['points_earned'] + plain['member']['points_earned']} 分",
                                                f"{fm['points_earned']} 分",
                                                f"{om['points_earned'] + fm['points_earned'] + plain['member']['points_earned']} 分"]
        assert cells(page, "points_spent") == ["300 分", "200 分", "500 分"]
        assert cells(page, "points_given_back") == [f"{back['member']['points_given_back']} 分", "0 分",
                                                    f"{back['member']['points_given_back']} 分"]
        assert cells(page, "stored_value_paid") == [yuan(2000), yuan(0), yuan(2000)]
        assert cells(page, "stored_value_refunded")[0] == yuan(back["member"]["stored_value_fen"])
        # the offline spend, against what the member code allowed, waiting for the cloud
        offline_rows = re.findall(r'<tr data-sale-number="(\d+)" data-offline="1">(.*?)</tr>', page, re.S)
        assert [number for number, _ in offline_rows] == [str(offline["number"])]
        before = offline["member"]["points_balance"] + 200 - offline["member"]["points_earned"]
        assert f"{before} 分 · {yuan(offline['member']['stored_value_balance_fen'])}" in offline_rows[0][1]
        listed = re.findall(r'<tr data-sale-number="(\d+)">', page)
        assert sorted(listed) == sorted(str(x["number"]) for x in sales)
        assert "待云端确认" in page and "离线消费" in page
        assert "张*" in page and "138****5678" in page and GOLD["member_id"] not in page
        assert online["id"] not in page
        # another day: nothing; a bad date: refused in words
        empty = await (await web.get("/ui/members?date=2026-11-28")).text()
        assert "这一天没有会员消费" in empty and "这一天没有离线使用积分或储值" in empty
        resp = await web.get("/ui/members?date=yesterday")
        assert resp.status == 400 and "日期格式不对" in await resp.text()
        # the live region alone, and in English
        fragment = await (await web.get(f"/ui/members?date={DAY}&fragment=members_day")).text()
        assert fragment.lstrip().startswith('<div id="members-day"')
        await web.get("/ui/lang/en?next=/ui/members")
        page = await (await web.get(f"/ui/members?date={DAY}")).text()
        for words in ("Member sales", "3 sales, 1 members", "Points given back on returns", "Offline spends",
                      "Waiting for the cloud", "200 pts"):
            assert words in page, words
        assert "积分抵扣" not in page
    finally:
        await web.close()


async def test_a_cashier_cannot_open_it(sold):
    config, _ = sold
    web = await start_client(config)
    try:
        with db.transaction(conn := db.open_store_db(config.db_path)):
            users.add_user(conn, "wangfang", "王芳", "cashier", users.new_password(PASSWORD), iso(utcnow()))
        conn.close()
        await log_in(web, "wangfang")
        resp = await web.get(f"/ui/members?date={DAY}", allow_redirects=False)
        assert resp.status in (303, 403)
        assert 'href="/ui/members"' not in await (await web.get("/ui/cashier")).text()
    finally:
        await web.close()
