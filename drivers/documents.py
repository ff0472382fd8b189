"""Every printed document, rendered to ESC/POS bytes.

Two stages. :func:`layout` turns a document's data into a list of ops (text lines already fitted
to the paper, QR codes, feeds, cut, drawer pulse); :func:`render` encodes the ops either as
Chinese text through :class:`drivers.escpos_text.TextBuilder`, or, for printers without a Chinese
font (``PrintOptions(chinese_font=False)``), as one raster image (``GS v 0``) per text line drawn
with a CJK font. Laying out first keeps the two encodings identical on paper and lets tests check
every line against the paper width.

Pure: no I/O besides loading the font, and the same input always gives the same bytes. Times in
the data are ISO UTC strings; they are printed in the store's time zone (``store.timezone``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from drivers import escpos_text as et
from drivers.fonts import find_cjk_font

__all__ = ["KINDS", "DocumentError", "PrintOptions", "Op", "Init", "Text", "Qr", "Feed", "Cut", "Drawer", "layout",
           "render"]

log = logging.getLogger("drivers.documents")

KINDS = ("receipt", "order_ticket", "pickup_slip", "daily_summary", "shift_report", "status_ticket", "test_page",
         "count_sheet", "drawer")

PAPER_DOTS = {58: 384, 80: 576}
COLUMN_DOTS = 12  # Font A: a half-width column is 12 dots, a CJK character 24x24
CHAR_DOTS = 24
LINE_GAP_DOTS = 6  # ESC 2 default spacing is about 30 dots a line: 24 for the glyph, 6 between
QR_MODULE_DOTS = 6
# python-escpos printer profiles used only for their media width, so Dummy().image() checks that an
# image fits the paper (and does not print a warning about an unknown width): two common Chinese
# models, 58 mm / 384 dots and 80 mm / 576 dots.
_ESCPOS_PROFILES = {58: "POS-5890", 80: "NT-80-V-UL"}


class DocumentError(ValueError):
    """The data for a document is missing a field or has a bad one (the message names it)."""


@dataclass(frozen=True)
class PrintOptions:
    paper_mm: int = 80  # 58 or 80
    encoding: str = "gb18030"  # or "gbk"
    chinese_font: bool = True  # False: text lines are sent as raster images
    native_qr: bool = True  # False: QR codes are sent as raster images
    cut: bool = True
    drawer_pin: int = 2  # 2 or 5
    language: str = "zh"  # "zh" or "en": the labels; names are printed as given

    def __post_init__(self) -> None:
        if self.paper_mm not in PAPER_DOTS:
            raise ValueError(f"paper_mm must be 58 or 80, not {self.paper_mm!r}")
        if self.encoding not in et.ENCODINGS:
            raise ValueError(f"encoding must be one of {et.ENCODINGS}, not {self.encoding!r}")
        if self.drawer_pin not in (2, 5):
            raise ValueError(f"drawer_pin must be 2 or 5, not {self.drawer_pin!r}")
        if self.language not in LABELS:
            raise ValueError(f"language must be one of {tuple(LABELS)}, not {self.language!r}")

    @property
    def columns(self) -> int:
        return et.columns_for_paper(self.paper_mm)


# ------------------------------------------------------------------------------------------ ops


@dataclass(frozen=True)
class Init:
    """ESC @: reset the printer."""


@dataclass(frozen=True)
class Text:
    """One printed line, already no wider than the paper at its character width."""

    text: str
    align: str = "left"
    bold: bool = False
    width: int = 1
    height: int = 1


@dataclass(frozen=True)
class Qr:
    data: str


@dataclass(frozen=True)
class Feed:
    lines: int


@dataclass(frozen=True)
class Cut:
    """Feed to the cutter and cut (partial)."""


@dataclass(frozen=True)
class Drawer:
    pin: int  # 2 or 5


Op = Union[Init, Text, Qr, Feed, Cut, Drawer]

# ---------------------------------------------------------------------------------------- labels

LABELS: dict[str, dict[str, str]] = {
    "zh": {
        "reprint": "** 重打 **",
        "receipt": "销售小票",
        "sale_no": "单号",
        "time": "时间",
        "cashier": "收银员",
        "item": "商品",
        "qty": "数量",
        "price": "单价",
        "amount": "金额",
        "item_narrow": "商品/数量×单价",
        "line_discount": "单品优惠",
        "subtotal": "小计",
        "discount": "优惠",
        "coupon": "其中券",
        "total": "合计",
        "paid": "实收",
        "change": "找零",
        "note": "备注",
        "thanks": "谢谢惠顾，欢迎再次光临",
        "order_pickup": "线上订单 自提",
        "order_delivery": "线上订单 配送",
        "ordered_at": "下单时间",
        "pickup_at": "取货时间",
        "delivery_at": "配送时间",
        "asap": "尽快",
        "short": "缺货",
        "scan_handover": "交付时扫码",
        "pickup_slip": "自提核销凭证",
        "order_no": "订单号",
        "verified_at": "核销时间",
        "operator": "操作员",
        "provisional": "离线核销，待同步确认",
        "daily_summary": "日结单",
        "business_date": "营业日",
        "sales_count": "销售笔数",
        "sales_amount": "销售金额",
        "returns_count": "退货笔数",
        "refunds": "退款金额",
        "net": "净收入",
        "by_method": "按支付方式",
        "printed_at": "打印时间",
        "pickups": "线上订单核销",
        "shifts": "班次",
        "shift_no": "第{number}班",
        "shift_open": "未交班",
        "outside_shifts": "不在班次内的销售",
        "shift_report": "交班小票",
        "till": "收银机",
        "till_local": "本机",
        "opened_at": "开班",
        "closed_at": "交班",
        "closed_by": "交班人",
        "float": "备用金",
        "cash_taken": "现金收款",
        "cash_refunds": "现金退款",
        "expected_cash": "应有现金",
        "counted_cash": "实点现金",
        "difference": "差额",
        "over": "长款",
        "short_cash": "短款",
        "status": "设备状态",
        "version": "版本",
        "dashboard": "管理页面",
        "cloud": "云端连接",
        "since": "状态始于",
        "queue": "待同步",
        "printers": "打印机",
        "scanners": "扫码枪",
        "none_configured": "无",
        "test_page": "打印测试",
        "printer": "打印机",
        "paper": "纸宽",
        "columns": "列",
        "ruler": "列标尺",
        "chinese_sample": "中文打印测试汉字宽两列",
        "money_sample": "金额示例",
        "bold_sample": "粗体 Bold",
        "large_sample": "大字 ABC",
        "count_sheet": "盘点单",
        "category": "分类",
        "no_category": "未分类",
        "shelf": "货架",
        "no_shelf": "未设货架",
        "sheet_made": "制单时间",
        "blind": "按实物清点，单上不列账面数量",
        "sku": "编码",
        "barcode": "条码",
        "unit": "单位",
        "counted": "实盘",
        "items": "共 {n} 项",
        "counted_by": "盘点人",
        "checked_by": "复核人",
    },
    "en": {
        "reprint": "** REPRINT 重打 **",
        "receipt": "RECEIPT",
        "sale_no": "No.",
        "time": "Time",
        "cashier": "Cashier",
        "item": "Item",
        "qty": "Qty",
        "price": "Price",
        "amount": "Amount",
        "item_narrow": "Item/Qty x Price",
        "line_discount": "Item discount",
        "subtotal": "Subtotal",
        "discount": "Discount",
        "coupon": "incl. coupon",
        "total": "TOTAL",
        "paid": "Paid",
        "change": "Change",
        "note": "Note",
        "thanks": "Thank you, please come again",
        "order_pickup": "ONLINE ORDER - PICKUP",
        "order_delivery": "ONLINE ORDER - DELIVERY",
        "ordered_at": "Ordered",
        "pickup_at": "Pickup",
        "delivery_at": "Delivery",
        "asap": "as soon as possible",
        "short": "SHORT",
        "scan_handover": "Scan at hand-over",
        "pickup_slip": "PICKUP VERIFICATION",
        "order_no": "Order",
        "verified_at": "Verified",
        "operator": "Operator",
        "provisional": "Offline verification, pending sync",
        "daily_summary": "DAILY SUMMARY",
        "business_date": "Business date",
        "sales_count": "Sales",
        "sales_amount": "Sales amount",
        "returns_count": "Returns",
        "refunds": "Refunds",
        "net": "Net",
        "by_method": "By payment method",
        "printed_at": "Printed",
        "pickups": "Online orders handed over",
        "shifts": "Shifts",
        "shift_no": "Shift {number}",
        "shift_open": "still open",
        "outside_shifts": "Sales outside shifts",
        "shift_report": "SHIFT HAND-OVER",
        "till": "Till",
        "till_local": "this machine",
        "opened_at": "Opened",
        "closed_at": "Closed",
        "closed_by": "Closed by",
        "float": "Opening float",
        "cash_taken": "Cash taken",
        "cash_refunds": "Cash refunds",
        "expected_cash": "Expected cash",
        "counted_cash": "Counted cash",
        "difference": "Difference",
        "over": "over",
        "short_cash": "short",
        "status": "DEVICE STATUS",
        "version": "Version",
        "dashboard": "Dashboard",
        "cloud": "Cloud link",
        "since": "Since",
        "queue": "Queued",
        "printers": "Printers",
        "scanners": "Scanners",
        "none_configured": "none",
        "test_page": "PRINT TEST",
        "printer": "Printer",
        "paper": "Paper",
        "columns": "columns",
        "ruler": "Column ruler",
        "chinese_sample": "中文打印测试汉字宽两列",
        "money_sample": "Money",
        "bold_sample": "Bold 粗体",
        "large_sample": "LARGE 大字",
        "count_sheet": "STOCK COUNT SHEET",
        "category": "Category",
        "no_category": "none",
        "shelf": "Shelf",
        "no_shelf": "no shelf",
        "sheet_made": "Made",
        "blind": "Count what is there: the sheet shows no book quantity",
        "sku": "SKU",
        "barcode": "Barcode",
        "unit": "Unit",
        "counted": "Counted",
        "items": "{n} items",
        "counted_by": "Counted by",
        "checked_by": "Checked by",
    },
}

# edge.core.schemas.PAYMENT_METHODS, in that order; an unknown method is printed as it is
PAYMENT_LABELS = {
    "zh": {"cash": "现金", "wechat": "微信", "alipay": "支付宝", "card": "银行卡", "unionpay": "云闪付",
           "voucher": "券", "other": "其他", "points": "积分抵扣", "stored_value": "储值"},
    "en": {"cash": "Cash", "wechat": "WeChat Pay", "alipay": "Alipay", "card": "Bank card",
           "unionpay": "UnionPay", "voucher": "Voucher", "other": "Other", "points": "Points",
           "stored_value": "Stored value"},
}

# Device states (drivers, edge/printing.py) and cloud link states (sync/engine.py); others print as they are.
STATE_LABELS = {
    "zh": {"ready": "就绪", "offline": "离线", "paper_out": "缺纸", "paper_near_end": "纸将尽", "cover_open": "开盖",
           "unknown": "未知", "disabled": "已停用", "unreachable": "无法连接", "no_status": "不报状态",
           "online": "在线", "none": "未配置", "connecting": "连接中", "busy": "云端繁忙", "auth_failed": "认证失败",
           "refused": "被拒绝", "error": "出错", "connected": "已连接", "disconnected": "已断开",
           "ended": "视频已结束", "stopped": "已停止"},
    "en": {"ready": "ready", "offline": "offline", "paper_out": "paper out", "paper_near_end": "paper low",
           "cover_open": "cover open", "unknown": "unknown", "disabled": "disabled", "unreachable": "unreachable",
           "no_status": "no status", "online": "online", "none": "not configured", "connecting": "connecting", "busy": "cloud busy",
           "auth_failed": "auth failed", "refused": "refused", "error": "error", "connected": "connected",
           "disconnected": "disconnected", "ended": "video ended", "stopped": "stopped"},
}

# -------------------------------------------------------------------------------------- validation


def _field(data: Any, key: str, path: str, kind: type | tuple[type, ...], *, optional: bool = False) -> Any:
    """data[key], checked: a missing or mistyped field raises DocumentError naming ``path.key``."""
    name = f"{path}.{key}" if path else key
    if not isinstance(data, dict):
        raise DocumentError(f"{path or 'data'}: expected an object, got {type(data).__name__}")
    value = data.get(key)
    if value is None:
        if optional:
            return None
        raise DocumentError(f"{name}: missing")
    # bool is an int in Python; a True where an amount belongs is a bug, not 1 fen
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise DocumentError(f"{name}: expected {_type_names(kind)}, got bool")
    if not isinstance(value, kind):
        raise DocumentError(f"{name}: expected {_type_names(kind)}, got {type(value).__name__}")
    if isinstance(value, str) and not value.strip():
        if optional:  # a blank note or cashier is no note or cashier
            return None
        raise DocumentError(f"{name}: empty")
    return value


def _type_names(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _list(data: dict, key: str, path: str, *, optional: bool = False) -> list[tuple[str, dict]]:
    """The objects of a list field, each with its path (``sale.lines[2]``)."""
    items = _field(data, key, path, list, optional=optional) or []
    name = f"{path}.{key}" if path else key
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise DocumentError(f"{name}[{index}]: expected an object, got {type(item).__name__}")
    return [(f"{name}[{index}]", item) for index, item in enumerate(items)]


def _store_zone(store: dict) -> ZoneInfo:
    name = _field(store, "timezone", "store", str)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise DocumentError(f"store.timezone: unknown time zone {name!r}") from None


def _time(data: dict, key: str, path: str, zone: ZoneInfo, *, optional: bool = False) -> str | None:
    """An ISO UTC timestamp field as local ``2026-11-22 09:05`` (None when optional and absent)."""
    value = _field(data, key, path, str, optional=optional)
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise DocumentError(f"{path + '.' if path else ''}{key}: not an ISO time: {value!r}") from None
    if moment.tzinfo is None:  # the data's times are UTC; one without an offset is too
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


# ---------------------------------------------------------------------------------------- layout


class _Page:
    """Collects the ops of one document, fitting every text line to the paper."""

    def __init__(self, options: PrintOptions) -> None:
        self.options = options
        self.labels = LABELS[options.language]
        self.ops: list[Op] = []

    def cols(self, width: int = 1) -> int:
        return self.options.columns // width

    def add(self, lines: list[str], *, align: str = "left", bold: bool = False, width: int = 1,
            height: int = 1) -> None:
        self.ops.extend(Text(line, align, bold, width, height) for line in lines)

    def text(self, text: str, *, align: str = "left", bold: bool = False, width: int = 1, height: int = 1) -> None:
        self.add(et.wrap(text, self.cols(width)), align=align, bold=bold, width=width, height=height)

    def pair(self, left: str, right: str, *, bold: bool = False) -> None:
        """A label on the left and a value (amount, state) flush right."""
        right = et.truncate(right, self.cols() - 3)  # an odd, long state string must not fail the print
        self.add(et.columns_line(left, right, self.cols()), bold=bold)

    def labelled(self, label: str, value: str) -> None:
        """``label：value``; a value that fits a line of its own but not beside the label (an
        address, a URL) goes under it unbroken, a longer one wraps indented under its start."""
        sep = "：" if self.options.language == "zh" else ": "
        head = f"{label}{sep}"
        if et.width(head) + et.width(et.clean(value)) > self.cols() >= et.width(et.clean(value)):
            self.add([head.rstrip(), et.clean(value)])
            return
        indent = " " * et.width(head)
        lines = et.wrap(value, self.cols() - et.width(head))
        self.add([head + lines[0], *(indent + line for line in lines[1:])])

    def rule(self, char: str = "-") -> None:
        self.add([et.separator(self.cols(), char)])

    def qr(self, data: str, caption: str | None = None) -> None:
        self.ops.append(Qr(data))
        if caption:
            self.text(caption, align="center")

    def end(self) -> list[Op]:
        if self.options.cut:
            # GS V 66 0 itself feeds to the cutter; one line keeps the last text off the blade
            self.ops += [Feed(1), Cut()]
        else:
            self.ops.append(Feed(4))  # clear the tear bar
        return self.ops


def _start(options: PrintOptions, store: dict, reprint: bool) -> _Page:
    """Init, the reprint banner, the store name."""
    page = _Page(options)
    page.ops.append(Init())
    if reprint:
        page.text(page.labels["reprint"], align="center", bold=True, height=2)
    name = _field(store, "name", "store", str)
    page.text(name, align="center", bold=True, width=2, height=2)
    return page


def _money(data: dict, key: str, path: str) -> int:
    return _field(data, key, path, int)


def _method(method: str, language: str) -> str:
    return PAYMENT_LABELS[language].get(method, method)


def _state(state: str, language: str) -> str:
    return STATE_LABELS[language].get(state, state)


def _item_header(page: _Page) -> str:
    lab = page.labels
    return et.item_header(page.cols(), lab["item"], lab["qty"], lab["price"], lab["amount"], lab["item_narrow"])


def _receipt(data: dict, options: PrintOptions, reprint: bool) -> list[Op]:
    store = _field(data, "store", "", dict)
    zone = _store_zone(store)
    sale = _field(data, "sale", "", dict)
    page = _start(options, store, reprint)
    lab, lang = page.labels, options.language
    for key in ("address", "phone"):
        value = _field(store, key, "store", str, optional=True)
        if value:
            page.text(value, align="center")
    page.text(lab["receipt"], align="center", bold=True)
    page.rule()
    page.labelled(lab["sale_no"], str(_field(sale, "number", "sale", (int, str))))
    page.labelled(lab["time"], _time(sale, "created_at", "sale", zone))
    cashier = _field(sale, "cashier", "sale", str, optional=True)
    if cashier:
        page.labelled(lab["cashier"], cashier)
    page.rule()
    page.add([_item_header(page)])
    for path, line in _list(sale, "lines", "sale"):
        name = _field(line, "name", path, str)
        qty = _field(line, "qty", path, int)
        price = _money(line, "unit_price_fen", path)
        discount = _money(line, "discount_fen", path)
        amount = _money(line, "amount_fen", path)
        # the row shows the price before the line discount, the discount goes under it
        page.add(et.item_line(name, qty, price, amount + discount, page.cols()))
        if discount:
            page.pair(f"  {lab['line_discount']}", et.yuan(-discount))
    page.rule()
    page.pair(lab["subtotal"], et.yuan(_money(sale, "subtotal_fen", "sale")))
    discount = _money(sale, "discount_fen", "sale")
    if discount:
        page.pair(lab["discount"], et.yuan(-discount))
    # Coupons itemise the sale discount above (they are already in discount_fen): listed, not subtracted.
    for path, coupon in _list(data, "coupons", "", optional=True):
        title = _field(coupon, "title", path, str)
        page.pair(f"  {lab['coupon']} {title}", et.yuan(-_money(coupon, "amount_fen", path)))
    page.pair(lab["total"], et.yuan(_money(sale, "total_fen", "sale")), bold=True)
    for path, payment in _list(sale, "payments", "sale"):
        method = _field(payment, "method", path, str)
        page.pair(_method(method, lang), et.yuan(_money(payment, "amount_fen", path)))
    page.pair(lab["paid"], et.yuan(_money(sale, "paid_fen", "sale")))
    page.pair(lab["change"], et.yuan(_money(sale, "change_fen", "sale")))
    note = _field(sale, "note", "sale", str, optional=True)
    if note:
        page.rule()
        page.labelled(lab["note"], note)
    page.rule()
    qr = _field(data, "qr", "", str, optional=True) or "sale:" + _field(sale, "id", "sale", str)
    page.qr(qr)
    page.text(lab["thanks"], align="center")
    return page.end()


def _order_number(order: dict) -> str:
    number = str(_field(order, "number", "order", (str, int)))
    return number if number.startswith("#") else f"#{number}"


def _order_items(page: _Page, order: dict) -> None:
    """Name and quantity of each line, with a bold ``缺货 N`` under a line the shelf cannot fill."""
    page.add([et.columns_line(page.labels["item"], page.labels["qty"], page.cols())[0]])
    for path, line in _list(order, "lines", "order"):
        name = _field(line, "name", path, str)
        qty = _field(line, "qty", path, int)
        page.pair(name, f"×{qty}")
        short = _field(line, "short_qty", path, int, optional=True) or 0
        if short > 0:
            page.text(f"  ** {page.labels['short']} {short} **", bold=True)


def _order_ticket(data: dict, options: PrintOptions, reprint: bool) -> list[Op]:
    store = _field(data, "store", "", dict)
    zone = _store_zone(store)
    order = _field(data, "order", "", dict)
    order_id = _field(order, "id", "order", str)
    kind = _field(order, "kind", "order", str)
    if kind not in ("pickup", "delivery"):
        raise DocumentError(f"order.kind: expected 'pickup' or 'delivery', got {kind!r}")
    page = _start(options, store, reprint)
    lab = page.labels
    page.text(lab[f"order_{kind}"], align="center", bold=True)
    number = _order_number(order)
    page.text(number, align="center", bold=True, width=2, height=2)
    page.rule()
    page.labelled(lab["ordered_at"], _time(order, "created_at", "order", zone))
    page.labelled(lab[f"{kind}_at"], _time(order, "pickup_after", "order", zone, optional=True) or lab["asap"])
    page.rule()
    _order_items(page, order)
    page.rule()
    note = _field(order, "customer_note", "order", str, optional=True)
    if note:
        page.labelled(lab["note"], note)
        page.rule()
    page.pair(lab["total"], et.yuan(_money(order, "total_fen", "order")), bold=True)
    # The QR carries the order id only. The customer's secret pickup code is deliberately not
    # printed: this ticket rides on the bag, where anyone at the counter can read it, and the code
    # is what proves the person collecting is the customer.
    page.text(lab["scan_handover"], align="center")
    page.qr(f"order:{order_id}", caption=number)
    return page.end()


def _pickup_slip(data: dict, options: PrintOptions, reprint: bool) -> list[Op]:
    store = _field(data, "store", "", dict)
    zone = _store_zone(store)
    order = _field(data, "order", "", dict)
    page = _start(options, store, reprint)
    lab = page.labels
    page.text(lab["pickup_slip"], align="center", bold=True)
    page.rule()
    page.labelled(lab["order_no"], _order_number(order))
    _order_items(page, order)
    page.rule()
    page.labelled(lab["verified_at"], _time(data, "verified_at", "", zone))
    page.labelled(lab["operator"], _field(data, "operator", "", str))
    provisional = _field(data, "provisional", "", bool, optional=True)
    if provisional:
        page.text(lab["provisional"], align="center", bold=True)
    return page.end()


def _ordered_methods(by_method: dict[str, int]) -> list[str]:
    known = [m for m in PAYMENT_LABELS["zh"] if m in by_method]
    return known + sorted(m for m in by_method if m not in PAYMENT_LABELS["zh"])


def _daily_summary(data: dict, options: PrintOptions, reprint: bool) -> list[Op]:
    store = _field(data, "store", "", dict)
    zone = _store_zone(store)
    summary = _field(data, "summary", "", dict)
    page = _start(options, store, reprint)
    lab = page.labels
    page.text(lab["daily_summary"], align="center", bold=True)
    page.rule()
    page.labelled(lab["business_date"], _field(summary, "date", "summary", str))
    page.labelled(lab["printed_at"], _time(data, "printed_at", "", zone))
    page.rule()
    page.pair(lab["sales_count"], str(_field(summary, "sales_count", "summary", int)))
    page.pair(lab["sales_amount"], et.yuan(_money(summary, "sales_fen", "summary")))
    page.pair(lab["returns_count"], str(_field(summary, "returns_count", "summary", int)))
    page.pair(lab["refunds"], et.yuan(-_money(summary, "refunds_fen", "summary")))
    page.pair(lab["net"], et.yuan(_money(summary, "net_fen", "summary")), bold=True)
    pickups = _field(summary, "pickups_count", "summary", int, optional=True)
    if pickups is not None:
        page.pair(lab["pickups"], str(pickups))
    outside = _field(summary, "outside_shifts", "summary", dict, optional=True)
    if outside and _field(outside, "sales_count", "summary.outside_shifts", int):
        page.pair(lab["outside_shifts"], et.yuan(_money(outside, "sales_fen", "summary.outside_shifts")))
    page.rule()
    _by_method(page, summary, "summary")
    shifts = _list(data, "shifts", "", optional=True)
    if shifts:
        page.rule()
        page.text(lab["shifts"], bold=True)
    for path, shift in shifts:
        number = lab["shift_no"].format(number=_field(shift, "number", path, int))
        page.text(f"{number} {_field(shift, 'cashier', path, str)} {_till(page, shift, path)}")
        closed = _time(shift, "closed_at", path, zone, optional=True) or ""
        span = f"  {_time(shift, 'opened_at', path, zone)[-5:]}-{closed[-5:]}"
        difference = _field(shift, "difference_fen", path, int, optional=True)
        page.pair(span, lab["shift_open"] if difference is None else f"{lab['difference']} {et.yuan(difference)}")
    return page.end()


def _by_method(page: _Page, data: dict, path: str) -> None:
    page.text(page.labels["by_method"], bold=True)
    by_method = _field(data, "net_by_method_fen", path, dict)
    for method in _ordered_methods(by_method):
        page.pair(f"  {_method(method, page.options.language)}",
                  et.yuan(_money(by_method, method, f"{path}.net_by_method_fen")))


def _till(page: _Page, shift: dict, path: str) -> str:
    till = _field(shift, "till", path, str)
    return page.labels["till_local"] if till == "local" else till


def _shift_report(data: dict, options: PrintOptions, reprint: bool) -> list[Op]:
    """交班小票: what the shift took, and the cash counted against the cash the drawer should hold."""
    store = _field(data, "store", "", dict)
    zone = _store_zone(store)
    shift = _field(data, "shift", "", dict)
    figures = _field(shift, "figures", "shift", dict)
    page = _start(options, store, reprint)
    lab = page.labels
    page.text(lab["shift_report"], align="center", bold=True)
    page.text(lab["shift_no"].format(number=_field(shift, "number", "shift", int)), align="center", bold=True)
    page.rule()
    page.labelled(lab["till"], _till(page, shift, "shift"))
    page.labelled(lab["cashier"], _field(shift, "cashier", "shift", str))
    page.labelled(lab["business_date"], _field(shift, "business_date", "shift", str))
    page.labelled(lab["opened_at"], _time(shift, "opened_at", "shift", zone))
    page.labelled(lab["closed_at"], _time(shift, "closed_at", "shift", zone))
    page.rule()
    where = "shift.figures"
    page.pair(lab["sales_count"], str(_field(figures, "sales_count", where, int)))
    page.pair(lab["sales_amount"], et.yuan(_money(figures, "sales_fen", where)))
    page.pair(lab["returns_count"], str(_field(figures, "returns_count", where, int)))
    page.pair(lab["refunds"], et.yuan(-_money(figures, "refunds_fen", where)))
    page.pair(lab["net"], et.yuan(_money(figures, "net_fen", where)), bold=True)
    page.pair(lab["pickups"], str(_field(figures, "pickups_count", where, int)))
    page.rule()
    _by_method(page, figures, where)
    page.rule()
    page.pair(lab["float"], et.yuan(_money(shift, "float_fen", "shift")))
    page.pair(lab["cash_taken"], et.yuan(_money(figures, "cash_taken_fen", where)))
    page.pair(lab["change"], et.yuan(-_money(figures, "change_fen", where)))
    page.pair(lab["cash_refunds"], et.yuan(-_money(figures, "cash_refunds_fen", where)))
    page.pair(lab["expected_cash"], et.yuan(_money(shift, "expected_fen", "shift")), bold=True)
    page.pair(lab["counted_cash"], et.yuan(_money(shift, "counted_fen", "shift")), bold=True)
    difference = _money(shift, "difference_fen", "shift")
    word = f" ({lab['over']})" if difference > 0 else f" ({lab['short_cash']})" if difference < 0 else ""
    page.pair(lab["difference"] + word, et.yuan(difference), bold=True)
    page.rule()
    page.labelled(lab["closed_by"], _field(shift, "closed_by", "shift", str))
    note = _field(shift, "note", "shift", str, optional=True)
    if note:
        page.labelled(lab["note"], note)
    page.labelled(lab["printed_at"], _time(data, "printed_at", "", zone))
    return page.end()


def _devices(page: _Page, data: dict, key: str) -> None:
    page.text(page.labels[key], bold=True)
    devices = _list(data, key, "")
    if not devices:
        page.text(f"  {page.labels['none_configured']}")
    for path, device in devices:
        name = _field(device, "name", path, str)
        state = _field(device, "state", path, str)
        page.pair(f"  {name}", _state(state, page.options.language))


def _status_ticket(data: dict, options: PrintOptions, reprint: bool) -> list[Op]:
    store = _field(data, "store", "", dict)
    zone = _store_zone(store)
    page = _start(options, store, reprint)
    lab, lang = page.labels, options.language
    page.text(lab["status"], align="center", bold=True)
    page.rule()
    page.labelled(lab["printed_at"], _time(data, "printed_at", "", zone))
    page.labelled(lab["version"], _field(data, "version", "", str))
    url = _field(data, "dashboard_url", "", str)
    page.labelled(lab["dashboard"], url)
    page.rule()
    cloud = _field(data, "cloud", "", dict)
    page.labelled(lab["cloud"], _state(_field(cloud, "state", "cloud", str), lang))
    since = _time(cloud, "since", "cloud", zone, optional=True)
    if since:
        page.labelled(lab["since"], since)
    page.labelled(lab["queue"], str(_field(cloud, "queue", "cloud", int)))
    page.rule()
    _devices(page, data, "printers")
    _devices(page, data, "scanners")
    page.rule()
    page.qr(url, caption=lab["dashboard"])
    return page.end()


def _test_page(data: dict, options: PrintOptions, reprint: bool) -> list[Op]:
    store = _field(data, "store", "", dict)
    zone = _store_zone(store)
    paper = _field(data, "paper_mm", "", int)
    if paper != options.paper_mm:
        raise DocumentError(f"paper_mm: the data says {paper} mm but the print options say {options.paper_mm} mm")
    page = _start(options, store, reprint)
    lab, cols = page.labels, page.cols()
    printer = _field(data, "printer", "", str)
    page.text(lab["test_page"], align="center", bold=True)
    page.rule()
    page.labelled(lab["printer"], printer)
    page.labelled(lab["paper"], f"{paper}mm, {cols} {lab['columns']}")
    page.labelled(lab["printed_at"], _time(data, "printed_at", "", zone))
    page.rule()
    page.text(lab["ruler"])
    page.add([("1234567890" * (cols // 10 + 1))[:cols]])
    sample = lab["chinese_sample"]
    page.add([(sample * (cols // (2 * len(sample)) + 1))[: cols // 2]])  # exactly the width: 2 each
    page.pair(lab["money_sample"], et.yuan(123456))
    page.text(lab["bold_sample"], bold=True)
    page.text(lab["large_sample"], align="center", width=2, height=2)
    page.rule()
    page.qr(f"test:{printer}", caption=f"test:{printer}")
    return page.end()


def _count_sheet(data: dict, options: PrintOptions, reprint: bool) -> list[Op]:
    """A blind count sheet: what to count and a blank to write the count in, never the book quantity
    (who sees the number tends to find it)."""
    store = _field(data, "store", "", dict)
    zone = _store_zone(store)
    sheet = _field(data, "sheet", "", dict)
    page = _start(options, store, reprint)
    lab = page.labels
    page.text(f"{lab['count_sheet']} #{_field(sheet, 'number', 'sheet', int)}", align="center", bold=True,
              width=2, height=2)
    page.rule()
    # None: the sheet is of any category (or shelf); "": of the products without one
    for key, none in (("category", "no_category"), ("shelf", "no_shelf")):
        if sheet.get(key) is not None:
            page.labelled(lab[key], _field(sheet, key, "sheet", str, optional=True) or lab[none])
    page.labelled(lab["sheet_made"], _time(sheet, "created_at", "sheet", zone))
    page.text(lab["blind"])
    page.rule()
    blank = f"{lab['counted']} {'_' * 8}"
    lines = _list(sheet, "lines", "sheet")
    # a heading where the shelf changes, on a sheet across shelves of a store that uses them
    shelves = [_field(line, "shelf", path, str, optional=True) for path, line in lines]
    headings = sheet.get("shelf") is None and any(shelves)
    for (path, line), shelf, before in zip(lines, shelves, [object(), *shelves]):
        if headings and shelf != before:
            page.text(f"== {lab['shelf']} {shelf} ==" if shelf else f"== {lab['no_shelf']} ==", bold=True)
        page.text(f"{_field(line, 'line_no', path, int)}. {_field(line, 'name', path, str)}", bold=True)
        codes = [f"  {lab['sku']} {_field(line, 'sku', path, str)}"]
        barcode = _field(line, "barcode", path, str, optional=True)
        if barcode:
            codes.append(f"  {lab['barcode']} {barcode}")
        both = "".join(codes)
        page.add([both] if et.width(both) <= page.cols() else [et.truncate(c, page.cols()) for c in codes])
        page.pair(f"  {lab['unit']} {_field(line, 'unit', path, str)}", blank)
        page.add([""])
    page.rule()
    page.text(lab["items"].format(n=len(lines)))
    for key in ("counted_by", "checked_by"):
        page.add([""])
        page.pair(lab[key], "_" * 12)
    return page.end()


_LAYOUTS = {
    "receipt": _receipt,
    "order_ticket": _order_ticket,
    "pickup_slip": _pickup_slip,
    "daily_summary": _daily_summary,
    "shift_report": _shift_report,
    "status_ticket": _status_ticket,
    "test_page": _test_page,
    "count_sheet": _count_sheet,
}


def layout(kind: str, data: dict, options: PrintOptions = PrintOptions(), *, reprint: bool = False) -> list[Op]:
    """The ops of a document: every Text fits the paper at its width (columns // width)."""
    if kind == "drawer":  # only the pulse: no reset, no paper moved, nothing printed
        return [Drawer(options.drawer_pin)]
    if kind not in _LAYOUTS:
        raise DocumentError(f"kind: unknown document {kind!r} (one of {', '.join(KINDS)})")
    if not isinstance(data, dict):
        raise DocumentError(f"data: expected an object, got {type(data).__name__}")
    return _LAYOUTS[kind](data, options, reprint)


# -------------------------------------------------------------------------------------- encoding


def render(kind: str, data: dict, options: PrintOptions = PrintOptions(), *, reprint: bool = False) -> bytes:
    """The ESC/POS bytes of a document (see the module docstring)."""
    ops = layout(kind, data, options, reprint=reprint)
    builder = et.TextBuilder(options.paper_mm, encoding=options.encoding)
    style = (None, None, None)  # (align, bold, size) last sent: commands only when they change
    for op in ops:
        if isinstance(op, Init):
            builder.init()
            style = (None, None, None)
        elif isinstance(op, Text):
            if options.chinese_font:
                style = _set_style(builder, op, style)
                builder.text(op.text)
            else:
                builder.raw(_image_bytes(_text_image(op, options.paper_mm), options.paper_mm))
        elif isinstance(op, Qr):
            if options.native_qr:
                style = _set_style(builder, _QR_STYLE, style)
                builder.qr(op.data, size=QR_MODULE_DOTS)
            else:
                builder.raw(_image_bytes(_qr_image(op.data, options.paper_mm), options.paper_mm))
        elif isinstance(op, Feed):
            builder.feed(op.lines)
        elif isinstance(op, Cut):
            builder.cut()
        elif isinstance(op, Drawer):
            builder.drawer(0 if op.pin == 2 else 1)
    if builder.replaced:
        log.warning("characters the printer cannot print were replaced with '？' or '?'",
                    extra={"kv": {"kind": kind, "encoding": options.encoding, "chars": "".join(builder.replaced)}})
    return builder.bytes()


_QR_STYLE = Text("", align="center")  # QR codes print centred; the size and bold reset do no harm


def _set_style(builder: et.TextBuilder, op: Text, last: tuple) -> tuple:
    align, bold, size = last
    if op.align != align:
        builder.align(op.align)
    if op.bold != bold:
        builder.bold(op.bold)
    if (op.width, op.height) != size:
        builder.size(op.width, op.height)
    return op.align, op.bold, (op.width, op.height)


# ----------------------------------------------------------------------------------------- raster




@lru_cache(maxsize=1)
def _font():
    from PIL import ImageFont  # noqa: PLC0415

    path = find_cjk_font()
    if path is None:
        raise DocumentError("no CJK font installed: raster printing needs one (fonts-wqy-microhei: make system-packages)")
    return ImageFont.truetype(path, CHAR_DOTS)


def _text_image(op: Text, paper_mm: int):
    """One text line as a paper-wide 1-bit image, laid out on the printer's 12-dot column grid.

    Each character is centred in its cell (24 dots for CJK, 12 for ASCII) so the picture matches
    the text-mode line column for column; double width/height scales the drawn line up.
    """
    from PIL import Image, ImageDraw  # noqa: PLC0415

    font = _font()
    text = et.clean(op.text)
    glyphs = Image.new("L", (max(1, et.width(text)) * COLUMN_DOTS, CHAR_DOTS), 255)
    draw = ImageDraw.Draw(glyphs)
    x = 0
    for ch in text:
        cell = et.width(ch) * COLUMN_DOTS
        if cell and not ch.isspace():
            left = x + (cell - font.getlength(ch)) / 2
            for dx in (0, 1) if op.bold else (0,):  # bold as printers do it: strike twice, one dot apart
                draw.text((left + dx, 0), ch, font=font, fill=0)
        x += cell
    glyphs = glyphs.resize((glyphs.width * op.width, glyphs.height * op.height), Image.Resampling.NEAREST)
    dots = PAPER_DOTS[paper_mm]
    line = Image.new("L", (dots, glyphs.height + LINE_GAP_DOTS), 255)
    offset = {"left": 0, "center": (dots - glyphs.width) // 2, "right": dots - glyphs.width}[op.align]
    line.paste(glyphs, (max(0, offset), LINE_GAP_DOTS // 2))
    return line.point(lambda v: 0 if v < 128 else 255)  # pure black and white: no dithering later


def _qr_image(data: str, paper_mm: int):
    """A QR code centred on a paper-wide image (for printers without native QR)."""
    import qrcode  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415

    dots = PAPER_DOTS[paper_mm]
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=2)
    code.add_data(data.encode("utf-8"))
    code.make(fit=True)
    code.box_size = min(QR_MODULE_DOTS, dots // (code.modules_count + 2 * code.border))
    picture = code.make_image().get_image().convert("L")
    line = Image.new("L", (dots, picture.height), 255)
    line.paste(picture, ((dots - picture.width) // 2, 0))
    return line


def _image_bytes(image, paper_mm: int) -> bytes:
    from escpos.printer import Dummy  # noqa: PLC0415

    printer = Dummy(profile=_ESCPOS_PROFILES[paper_mm])
    printer.image(image, impl="bitImageRaster")
    return printer.output
