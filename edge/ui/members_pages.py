"""会员 /ui/members: the members a business day served (sales with a member, how many and how much), the
points and stored value that moved (online and offline apart) and the offline spends with the balance the
till went by (the member code's snapshot with what this store did since). The figures are edge/store/member_reports.py's; members are shown masked, as the
cloud masked them (张*, 138****5678), never by id."""

from __future__ import annotations

from datetime import date, timedelta

from aiohttp import web

from edge.services.app_keys import STORE
from edge.store.member_reports import MOVES, SALES_SHOWN, members_day
from edge.ui.day_close_pages import asked_day, bad_date
from edge.ui.web import page, register_text

register_text({
    "zh": {
        "members_title": "会员", "members_served": "会员消费", "members_served_count": "{n} 笔，{m} 位会员",
        "members_saved": "会员优惠", "members_moves": "积分与储值变动", "members_col_kind": "项目",
        "members_col_online": "在线", "members_col_offline": "离线", "members_col_total": "合计",
        "members_move_points_earned": "获得积分", "members_move_points_spent": "积分抵扣",
        "members_move_points_given_back": "退货退回积分", "members_move_points_taken_back": "退货扣回积分",
        "members_move_stored_value_paid": "储值支付", "members_move_stored_value_refunded": "退货退回储值",
        "members_points_unit": "{n} 分", "members_moves_hint": "离线：云端连不上时用积分或储值的销售（未经云端冻结），及其退货",
        "members_offline": "离线消费", "members_offline_hint": "断网时按会员码里的积分和余额（减去本店此后已用的）"
                                                           "结算，联网后由云端确认；若会员在别处已用掉，云端会标出",
        "members_offline_none": "这一天没有离线使用积分或储值",
        "members_pending": "待云端确认",
        "members_col_before": "会员码余额", "members_col_points": "积分", "members_col_stored": "储值",
        "members_sales": "会员消费明细", "members_sales_none": "这一天没有会员消费",
        "members_sales_more": "只列出最近 {n} 笔", "members_col_sale": "小票号", "members_col_time": "时间",
        "members_col_member": "会员", "members_col_level": "等级", "members_col_amount": "金额",
        "members_col_earned": "得积分", "members_col_spent": "用积分", "members_col_paid": "储值支付",
        "members_offline_mark": "离线",
    },
    "en": {
        "members_title": "Members", "members_served": "Member sales", "members_served_count": "{n} sales, {m} members",
        "members_saved": "Member savings", "members_moves": "Points and stored value", "members_col_kind": "What",
        "members_col_online": "Online", "members_col_offline": "Offline", "members_col_total": "Total",
        "members_move_points_earned": "Points earned", "members_move_points_spent": "Points spent",
        "members_move_points_given_back": "Points given back on returns",
        "members_move_points_taken_back": "Points taken back on returns",
        "members_move_stored_value_paid": "Paid from stored value",
        "members_move_stored_value_refunded": "Stored value refunded on returns",
        "members_points_unit": "{n} pts",
        "members_moves_hint": "Offline: sales that spent points or stored value while the cloud did not answer (no hold "
                              "at the cloud), and their returns",
        "members_offline": "Offline spends",
        "members_offline_hint": "With the link down the till goes by the points and balance in the member code, less "
                                "what this store spent since; the cloud confirms them later, and flags a spend the "
                                "member had already made elsewhere",
        "members_offline_none": "No points or stored value were spent offline this day",
        "members_pending": "Waiting for the cloud",
        "members_col_before": "Code's balance", "members_col_points": "Points", "members_col_stored": "Stored value",
        "members_sales": "Member sales", "members_sales_none": "No member sales this day",
        "members_sales_more": "Only the latest {n} are listed", "members_col_sale": "Sale", "members_col_time": "Time",
        "members_col_member": "Member", "members_col_level": "Level", "members_col_amount": "Amount",
        "members_col_earned": "Earned", "members_col_spent": "Spent", "members_col_paid": "Stored value",
        "members_offline_mark": "offline",
    },
})


@page("/ui/members", role="manager", template="members.html")
async def members_page(request: web.Request):
    day = asked_day(request, request.query.get("date"))
    if day is None:
        return bad_date(request)
    figures = await request.app[STORE].read(members_day, day)
    first = date.fromisoformat(day)
    return {"members": figures, "date": day, "before": (first - timedelta(days=1)).isoformat(),
            "after": (first + timedelta(days=1)).isoformat(), "moves": [key for key, _ in MOVES],
            "shown": SALES_SHOWN}
