"""The program's words as a person reads them: one table per vocabulary, in Chinese and English.

A state, an event type, a document kind or a reason code is never shown as it is stored. A template
says `words('order_state', o.state)`; the older per-page keys (`orders_state_*`, `cashier_state_*`,
`devices_doc_*`...) are made from the same table, so a page cannot call one state two names.
tests/test_ui_words.py walks every page and fails on a stored word that reaches the screen.
"""

from __future__ import annotations

from edge.ui.web import register_text

# vocabulary -> value -> (中文, English)
VOCABULARIES: dict[str, dict[str, tuple[str, str]]] = {
    "order_state": {
        "received": ("新订单", "New"), "accepted": ("已接单", "Accepted"), "ready": ("已备好待取", "Ready for pickup"),
        "picked_up": ("已自提", "Picked up"), "cancelled": ("已取消", "Cancelled"), "refunded": ("已退款", "Refunded"),
    },
    "order_kind": {"pickup": ("到店自提", "Pickup"), "delivery": ("配送", "Delivery")},
    "print_state": {
        "none": ("无打印任务", "No print job"), "queued": ("排队中", "Queued"), "printing": ("打印中", "Printing"),
        "printed": ("已打印", "Printed"), "uncertain": ("可能未打印", "May not have printed"),
        "failed": ("打印失败", "Failed"), "expired": ("已过期未打印", "Expired unprinted"),
        "confirmed_printed": ("已确认打印", "Confirmed printed"), "reprinted": ("已重打", "Reprinted"),
    },
    "document": {
        "receipt": ("小票", "Receipt"), "order_ticket": ("备货单", "Order ticket"),
        "pickup_slip": ("自提单", "Pickup slip"), "daily_summary": ("日结单", "Daily summary"),
        "shift_report": ("交班小票", "Shift hand-over slip"), "count_sheet": ("盘点单", "Count sheet"),
        "status_ticket": ("设备状态单", "Status ticket"), "test_page": ("测试页", "Test page"),
        "drawer": ("钱箱", "Cash drawer"),
    },
    "pickup_method": {"token": ("提货二维码", "Pickup QR"), "code": ("提货码", "Pickup code")},
    "scan_kind": {
        "product": ("商品条码", "Product"), "gs1": ("GS1 条码", "GS1 code"), "weighed": ("称重条码", "Weighed label"),
        "pickup_token": ("提货二维码", "Pickup QR"), "coupon_token": ("优惠券", "Coupon"),
        "member_code": ("会员码", "Member code"),
        "pickup_code": ("提货码", "Pickup code"), "payment_code": ("付款码", "Payment code"),
        "unknown": ("无法识别", "Unknown"),
    },
    "scan_source": {"serial": ("扫码枪", "Scanner"), "hid": ("扫码枪", "Scanner"), "camera": ("摄像头", "Camera"),
                    "typed": ("手输", "Typed"), "api": ("收银机", "Till")},
    # why a reader dropped a scan (edge.services.devices) or classify found nothing (edge.core.classify)
    "scan_reason": {
        "empty": ("空内容", "empty"), "too_long": ("内容过长", "too long"),
        "control_character": ("含控制字符", "control character"), "bad_check_digit": ("校验位错误", "bad check digit"),
        "bad_price_check_digit": ("价格校验位错误", "bad price check digit"), "bad_gs1": ("GS1 格式错误", "bad GS1"),
        "token_malformed": ("二维码格式错误", "malformed QR"), "token_unknown_typ": ("未知二维码", "unknown QR"),
        "unrecognized": ("无法识别", "not recognized"), "classify_error": ("识别出错", "classify failed"),
        "duplicate": ("重复扫码", "duplicate"), "overflow": ("扫码过快", "too fast"),
        "timeout": ("扫码不完整", "incomplete"), "decode": ("无法解码", "undecodable"),
    },
    "payment": {"cash": ("现金", "Cash"), "wechat": ("微信", "WeChat Pay"), "alipay": ("支付宝", "Alipay"),
                "card": ("银行卡", "Bank card"), "unionpay": ("云闪付", "UnionPay"), "voucher": ("券", "Voucher"),
                "other": ("其他", "Other"), "points": ("积分抵扣", "Points"), "stored_value": ("储值", "Stored value")},
    "role": {"manager": ("店长", "Manager"), "cashier": ("收银员", "Cashier"), "till": ("收银机", "Till")},
    "move_reason": {
        "receipt": ("进货", "Received"), "sale": ("销售", "Sale"), "return": ("退货", "Return"),
        "adjustment": ("调整", "Adjustment"), "count": ("盘点", "Count"), "reserve": ("订单预留", "Reserved for order"),
        "release": ("释放预留", "Reservation released"), "pickup": ("自提出库", "Picked up"),
        "correction": ("更正", "Correction"),
    },
    # what a stock move points at (ledger ref_type)
    "ref_type": {"order": ("订单", "Order"), "sale": ("销售单", "Sale"), "return": ("退货单", "Return"),
                 "adjustment": ("调整", "Adjustment"), "count": ("盘点", "Count"), "receipt": ("进货单", "Receipt"),
                 "pickup": ("自提", "Pickup"), "correction": ("更正", "Correction"), "seed": ("初始库存", "Opening"),
                 "import": ("导入", "Import"), "change": ("云端变更", "Cloud change")},
    "event_type": {
        "sale.recorded": ("销售", "Sale"), "sale.returned": ("退货", "Return"),
        "stock.received": ("进货", "Goods received"), "stock.adjusted": ("库存调整", "Stock adjustment"),
        "stock.counted": ("盘点", "Stock count"), "stock.corrected": ("库存更正", "Stock correction"),
        "order.received": ("收到订单", "Order received"), "order.state_changed": ("订单状态变更", "Order state change"),
        "order.conflict": ("订单冲突", "Order conflict"), "print.result": ("打印结果", "Print result"),
        "pickup.verified": ("自提核销", "Pickup hand-over"), "pickup.reversed": ("核销冲正", "Hand-over reversed"),
        "coupon.redeemed": ("优惠券核销", "Coupon redeemed"), "event.voided": ("作废记录", "Voided record"),
        "change.rejected": ("未应用的云端变更", "Cloud change not applied"),
        "dead_letter.discarded": ("放弃的记录", "Discarded record"),
        "product.upserted": ("商品资料", "Product details"), "product.deleted": ("商品下架", "Product removed"),
        "price.changed": ("价格变更", "Price change"), "coupon.issued": ("优惠券发放", "Coupon issued"),
        "coupon.revoked": ("优惠券作废", "Coupon revoked"), "order.created": ("新订单", "New order"),
        "order.cancelled": ("订单取消", "Order cancelled"), "order.refunded": ("订单退款", "Order refunded"),
        "key.added": ("验证密钥", "Signing key"), "key.revoked": ("验证密钥作废", "Signing key revoked"),
    },
    # the code before the colon of a reason the cloud gives (docs/sync-protocol.md)
    "cloud_reason": {
        "unknown_sku": ("总部商品目录里没有这个商品", "The product is not in the chain's catalog"),
        "unknown_order": ("总部没有这个订单", "The chain has no such order"),
        "unknown_coupon": ("总部没有这张优惠券", "The chain has no such coupon"),
        "unknown_serial": ("优惠券编号不对", "Unknown coupon serial"),
        "unknown_type": ("云端不认识这类记录", "The cloud does not know this kind of record"),
        "store_mismatch": ("门店不符", "Sent for another store"),
        "invalid_envelope": ("记录格式有误", "Malformed record"),
        "invalid_payload": ("记录内容有误", "Invalid record content"),
        "invalid_moves": ("库存变动与记录不符", "Stock moves do not match the record"),
        "unknown_product": ("本店没有这个商品", "The store does not have this product"),
        "other": ("被拒收（详情见技术信息）", "Refused (see the technical details)"),
    },
    "link_state": {
        "online": ("已连接", "Connected"), "connecting": ("正在连接", "Connecting"), "offline": ("已断开", "Disconnected"),
        "busy": ("云端繁忙，稍后自动重试", "Cloud busy, retrying when it says"),
        "auth_failed": ("认证失败（请检查门店令牌）", "Authentication failed (check the store token)"),
        "refused": ("云端拒绝连接", "Refused by the cloud"), "error": ("出错", "Error"), "none": ("未配置", "Not configured"),
    },
    "device_state": {
        "ready": ("就绪", "Ready"), "paper_near_end": ("纸将用完", "Paper low"), "paper_out": ("缺纸", "Out of paper"),
        "cover_open": ("上盖打开", "Cover open"), "offline": ("离线", "Offline"), "unreachable": ("连不上", "Unreachable"),
        "no_status": ("不回答状态查询", "Does not answer status queries"), "unknown": ("检查中", "Checking"),
        "disabled": ("已停用", "Disabled"), "connected": ("已连接", "Connected"), "connecting": ("连接中", "Connecting"),
        "disconnected": ("已断开", "Disconnected"), "missing": ("未找到设备", "Device not found"),
        "error": ("出错", "Error"), "stopped": ("已停止", "Stopped"), "ended": ("视频已结束", "Video ended"),
    },
    # who wrote a stock move or a scan (WriteContext.device): a till's own token name is shown as it is
    "device": {"local": ("本机", "this PC"), "cloud": ("云端", "cloud"), "cli": ("命令行", "command line"),
               "store-edge": ("系统", "system"), "seed": ("初始数据", "opening data"), "demo": ("演示", "demo"),
               "ui": ("管理页（{name}）", "dashboard ({name})")},
    "printer_type": {"network": ("网络打印机", "network"), "usb": ("USB 打印机", "USB"), "serial": ("串口打印机", "serial"),
                     "file": ("文件（测试）", "file (test)"), "virtual": ("虚拟打印机", "virtual")},
}

# the keys the pages used before this table: kept, made from it
ALIASES = {
    "order_state": ("orders_state_", "cashier_state_"), "order_kind": ("orders_kind_",),
    "print_state": ("orders_print_",), "document": ("orders_doc_", "devices_doc_"),
    "pickup_method": ("orders_method_", "cashier_method_"), "scan_kind": ("cashier_kind_",),
    "scan_source": ("cashier_source_",), "role": ("audit_role_",), "move_reason": ("stock_reason_",),
    "link_state": ("sync_state_",), "device_state": ("devices_state_",),
}

register_text({lang: {f"{prefix}{value}": pair[index]
                      for name, table in VOCABULARIES.items()
                      for prefix in (f"{name}.", *ALIASES.get(name, ()))
                      for value, pair in table.items()}
               for index, lang in enumerate(("zh", "en"))})
