"""收银台, members (会员): a member found by phone number through the cloud ("云端不可用" when it does not
answer), and the words of a member on the screen. A member code from the scan field is checked offline by
edge/ui/cashier.py `_result_for`. What the screen shows is what a receipt needs, masked by the cloud:
张*, 138****5678, level, points, balance and when they were taken.

The card says what the till puts on the sale (the member id: SaleIn.member, good for 30 minutes after the
code was shown) and takes an online order's pickup code for the member: the hand-over then carries the
member (pickup.verified's member_id), through edge/ui/cashier.py's scan and hand-over.
"""

from __future__ import annotations

from edge.core.errors import InputError
from edge.services.members import lookup_by_phone
from edge.ui.cashier import answer, refusal_answer
from edge.ui.web import form_data, page, register_text


@page("/ui/cashier/member-phone", role="cashier", method="POST", template="cashier.html")
async def member_by_phone(request):
    """Members with the phone number typed (`phone`), from the cloud; never kept here."""
    form = await form_data(request)
    try:
        found = await lookup_by_phone(request.app, form.get("phone", "").strip())
    except InputError as exc:
        return await refusal_answer(request, exc)
    if not found:
        return await answer(request, 404, {"type": "error", "key": "cashier_member_none", "args": {}})
    return await answer(request, 200, {"type": "members", "members": found})


register_text({
    "zh": {"cashier_member": "会员", "cashier_member_level": "等级", "cashier_member_points": "积分",
           "cashier_member_balance": "储值余额", "cashier_member_snapshot": "积分和余额截至 {when}",
           "cashier_member_phone_label": "按手机号查会员（需联网）", "cashier_member_phone_hint": "顾客的 11 位手机号",
           "cashier_member_phone_button": "查会员", "cashier_member_none": "没有找到此手机号的会员",
           "cashier_member_till": "结账时收银机填会员号 {id}（30 分钟内有效）：按会员价结算，积分和储值随单记入",
           "cashier_member_pickup": "此会员取线上订单：扫描或输入取货码",
           "cashier_member_pickup_hint": "取货二维码或 6–8 位取货码", "cashier_member_pickup_button": "查订单",
           "cashier_member_with_pickup": "会员 {who}（{level}）随此交货",
           "cashier_member_handed": "已记入会员 {who}（{level}）"},
    "en": {"cashier_member": "Member", "cashier_member_level": "Level", "cashier_member_points": "Points",
           "cashier_member_balance": "Stored value", "cashier_member_snapshot": "Points and balance as of {when}",
           "cashier_member_phone_label": "Find a member by phone (needs the cloud)",
           "cashier_member_phone_hint": "The customer's 11-digit mobile number",
           "cashier_member_phone_button": "Find member", "cashier_member_none": "No member has this phone number",
           "cashier_member_till": "At checkout the till enters member {id} (good for 30 minutes): member prices, "
                                  "and points and stored value go with the sale",
           "cashier_member_pickup": "An online order for this member: scan or type the pickup code",
           "cashier_member_pickup_hint": "Pickup QR code or 6–8 digit code", "cashier_member_pickup_button": "Find order",
           "cashier_member_with_pickup": "Member {who} ({level}) goes with this hand-over",
           "cashier_member_handed": "Recorded for member {who} ({level})"},
})
