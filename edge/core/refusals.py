"""Why a scanned or typed code is refused: one reason code (docs/tokens.md), its HTTP status, and
the words the cashier reads (`detail.message_zh` in the API's error)."""

from __future__ import annotations

from edge.core.errors import InputError

MESSAGES_ZH = {
    "malformed": "无法识别的码，请让顾客刷新后重扫",
    "unknown_key": "无法验证此码（签发密钥未同步或已停用），请联网后重试",
    "bad_signature": "伪造或被改动的码，不能使用",
    "expired": "码已过期，请让顾客在小程序中刷新",
    "not_yet_valid": "码尚未生效",
    "wrong_store": "这是其他门店的码，不能在本店使用",
    "unknown_order": "本店没有这个订单（可能尚未同步），请核对门店",
    "bad_code": "提货码不正确",
    "already_used": "此码已使用过",
    "not_ready": "订单已取消或退款，不能交货",
    "rate_limited": "提货码输错次数过多，请稍后再试",
    "not_picked_up": "此订单未核销，无需冲正",
    "coupon_unknown": "未知的优惠券（可能尚未同步）",
    "coupon_revoked": "优惠券已被停用",
    "coupon_expired": "优惠券不在有效期内",
    "online_only": "此优惠券需联网核销，当前网络中断，请稍后再试",
    "min_spend": "未达到优惠券的最低消费",
    "out_of_scope": "本单没有适用此优惠券的商品",
    # member codes (docs/members.md)
    "member_expired": "会员证书已过期，请让顾客在小程序中联网更新",
    "device_signature": "会员码与顾客手机不符（签名错误），不能使用",
    "code_stale": "会员码已过时，请让顾客刷新后重扫",
    "code_ahead": "会员码时间超前，请核对收银机和顾客手机的时间",
    "replayed": "此会员码已使用过，请让顾客刷新后重扫",
    "wrong_chain": "这是其他连锁的会员，不能在本店使用",
    "no_chain": "本店未设置所属连锁，无法验证会员码",
    "cloud_unavailable": "云端不可用，请稍后再试或扫会员码",
    "no_cloud": "云端不可用：本店未连接云端，请扫会员码",
    "bad_phone": "请输入 11 位手机号",
    # a member in the sale (docs/members.md "At the till")
    "member_not_seen": "此会员未在本店验证（30 分钟内），请让顾客出示会员码",
    "member_required": "积分抵扣和储值支付需要先识别会员",
    "no_member_program": "会员积分规则尚未同步，暂不能用积分抵扣",
    "points_not_whole": "积分抵扣金额须为整数个积分",
    "points_over_limit": "积分抵扣超过本单可抵扣的上限",
    "points_offline_cap": "网络中断，积分抵扣超过离线上限，请减少抵扣或改用其他支付方式",
    "stored_value_offline_cap": "网络中断，储值支付超过离线上限，请减少金额或改用其他支付方式",
    "stored_value_offline_disabled": "网络中断，暂不能使用储值支付，请改用其他支付方式",
    "insufficient_points": "会员积分不足",
    "insufficient_balance": "会员储值余额不足",
    "unknown_member": "云端没有此会员，请核对会员",
    "hold_mismatch": "积分和储值的冻结与本单不符，请重新结账",
}
STATUS = {"unknown_order": 404, "bad_code": 404, "already_used": 409, "not_ready": 409, "rate_limited": 429,
          "not_picked_up": 409, "online_only": 503,
          "cloud_unavailable": 503}


def refusal(reason: str, message: str, *, field: str | None = None, **detail) -> InputError:
    return InputError(reason, message, field=field, status=STATUS.get(reason, 422),
                      detail={"message_zh": MESSAGES_ZH.get(reason, message), **detail})
