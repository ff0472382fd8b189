"""Printed documents (drivers/documents.py), checked through the virtual printer's decoder.

Golden files: tests/golden/<kind>-<paper>-<lang>.txt hold the decoded text of each document. After
an intended layout change, rewrite them and read the diff before committing:

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest -q tests/test_documents.py

Golden line format: ``|<line as printed>|`` with the printer's alignment applied (padding counted
in real columns, so a double-width line looks shorter than it prints) and its style after the bar
(``bold``, ``2x2`` = width x height); ``[QR ...]`` lines stand for a printed QR code; the
``-- ...`` lines at the end list the QR contents, drawer pulses and the cut.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pytest

from bench.document_samples import (
    DASHBOARD,
    MEMBER,
    MEMBER_RETURN,
    MEMBER_SALE,
    ORDER,
    ORDER_ID,
    PICKUP_CODE_SHA256,
    SALE,
    SALE_ID,
    STORE,
    sample,
)
from drivers import escpos_text as et
from drivers.documents import KINDS, LABELS, PAYMENT_LABELS, STATE_LABELS, DocumentError, PrintOptions, layout, render
from drivers.virtual_printer import Decoder, Receipt
from edge.core.schemas import PAYMENT_METHODS

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"

EXPECTED_QR = {
    "receipt": [f"sale:{SALE_ID}"],
    "order_ticket": [f"order:{ORDER_ID}"],
    "pickup_slip": [],
    "daily_summary": [],
    "shift_report": [],
    "status_ticket": [DASHBOARD],
    "test_page": ["test:front"],
    "count_sheet": [],
    "drawer": [],
}


def decode(data: bytes) -> Receipt:
    """The one receipt in ``data``: the cut one, or what is pending when nothing was cut."""
    cut: list[Receipt] = []
    decoder = Decoder(cut.append)
    decoder.feed(data)
    assert not decoder.buf, "incomplete command at the end"
    assert len(cut) <= 1
    if cut:
        assert not decoder.receipt.lines and not decoder.receipt.drawer, "something after the cut"
        return cut[0]
    return decoder.receipt


def golden_text(receipt: Receipt, columns: int) -> str:
    qr_lines = {q["line"] for q in receipt.qr}
    out = []
    for no, line in enumerate(receipt.lines):
        if no in qr_lines:
            out.append(f"  {line['text']}")
            continue
        used = et.width(line["text"]) * line["width"]
        pad = {"left": 0, "center": (columns - used) // 2, "right": columns - used}[line["align"]]
        fill = columns - pad - et.width(line["text"])
        tags = (["bold"] if line["bold"] else []) + ([f"{line['width']}x{line['height']}"]
                                                     if (line["width"], line["height"]) != (1, 1) else [])
        out.append(f"|{' ' * pad}{line['text']}{' ' * max(0, fill)}| {' '.join(tags)}".rstrip())
    out += [f"-- qr: {q['data']}" for q in receipt.qr]
    out += [f"-- drawer: pin {d['pin']}, {d['on_ms']} ms on, {d['off_ms']} ms off" for d in receipt.drawer]
    out.append(f"-- cut: {receipt.cut or 'none'}")
    return "\n".join(out) + "\n"


ALL = [(kind, paper, lang) for kind in KINDS for paper in (58, 80) for lang in ("zh", "en")]


@pytest.mark.parametrize("kind,paper,lang", ALL)
def test_golden(kind, paper, lang):
    data = render(kind, sample(kind, paper), PrintOptions(paper_mm=paper, language=lang))
    receipt = decode(data)
    text = golden_text(receipt, et.columns_for_paper(paper))
    path = GOLDEN / f"{kind}-{paper}-{lang}.txt"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{path.name} differs (UPDATE_GOLDEN=1 to rewrite)"

    assert [q["data"] for q in receipt.qr] == EXPECTED_QR[kind]
    if kind == "drawer":
        assert data == b"\x1bp\x00\x19\xfa"  # ESC p, pin 2, 50 ms on, 500 ms off: nothing else
        assert receipt.drawer == [{"pin": 2, "on_ms": 50, "off_ms": 500}]
        assert receipt.cut is None and not receipt.lines
    else:
        assert data.startswith(b"\x1b@")
        assert data.endswith(b"\x1dVB\x00")
        assert receipt.cut == "partial" and not receipt.drawer


@pytest.mark.parametrize("paper", (58, 80))
@pytest.mark.parametrize("lang", ("zh", "en"))
@pytest.mark.parametrize("reprint", (False, True))
def test_every_line_fits_the_paper(paper, lang, reprint):
    columns = et.columns_for_paper(paper)
    for kind in KINDS:
        receipt = decode(render(kind, sample(kind, paper), PrintOptions(paper_mm=paper, language=lang),
                                reprint=reprint))
        qr_lines = {q["line"] for q in receipt.qr}
        for no, line in enumerate(receipt.lines):
            if no in qr_lines:
                continue
            assert et.width(line["text"]) * line["width"] <= columns, (kind, line["text"])


def test_test_page_ruler_and_chinese_line_fill_the_width():
    for paper in (58, 80):
        columns = et.columns_for_paper(paper)
        texts = [line["text"] for line in decode(render("test_page", sample("test_page", paper),
                                                        PrintOptions(paper_mm=paper))).lines]
        assert ("1234567890" * 5)[:columns] in texts
        assert any(text.startswith("中文") and et.width(text) == columns for text in texts)


def test_layout_ops_fit_their_width():
    for kind in KINDS:
        for paper in (58, 80):
            options = PrintOptions(paper_mm=paper)
            for op in layout(kind, sample(kind, paper), options):
                if hasattr(op, "text"):
                    assert et.width(op.text) <= options.columns // op.width, (kind, op)


@pytest.mark.parametrize("lang,banner", [("zh", "** 重打 **"), ("en", "** REPRINT 重打 **")])
def test_reprint_banner_first(lang, banner):
    for kind in KINDS[:-1]:
        receipt = decode(render(kind, sample(kind), PrintOptions(language=lang), reprint=True))
        first = receipt.lines[0]
        assert first["text"] == banner and first["bold"] and first["align"] == "center"
        assert "重打" not in "\n".join(line["text"] for line in decode(render(kind, sample(kind),
                                                                                 PrintOptions(language=lang))).lines)
    assert render("drawer", {}, reprint=True) == render("drawer", {})


def test_drawer_pin_5():
    assert render("drawer", {}, PrintOptions(drawer_pin=5)) == b"\x1bp\x01\x19\xfa"
    assert decode(render("drawer", {}, PrintOptions(drawer_pin=5))).drawer[0]["pin"] == 5


@pytest.mark.parametrize("paper,dots", [(58, 384), (80, 576)])
def test_raster_mode_has_no_text(paper, dots):
    data = render("receipt", sample("receipt"), PrintOptions(paper_mm=paper, chinese_font=False))
    assert b"\x1c&" not in data  # never in Chinese mode
    assert "好邻居".encode("gb18030") not in data and "合计".encode("gb18030") not in data
    receipt = decode(data)
    images = [line["text"] for line in receipt.lines if line["text"].startswith("[image ")]
    assert len(images) > 25  # one a text line
    for image in images:
        width, height = map(int, re.fullmatch(r"\[image (\d+)x(\d+)\]", image).groups())
        assert width == dots and height in (30, 54)  # 24 + 6 dots, or 48 + 6 for double height
    texts = [line["text"] for line in receipt.lines if not line["text"].startswith("[")]
    assert not any(texts), texts  # nothing but images, QR and feeds
    assert [q["data"] for q in receipt.qr] == [f"sale:{SALE_ID}"]  # native QR is independent of the font
    assert receipt.cut == "partial"


def test_raster_qr():
    data = render("order_ticket", sample("order_ticket"), PrintOptions(native_qr=False))
    assert b"\x1d(k" not in data
    receipt = decode(data)
    assert receipt.qr == []
    texts = [line["text"] for line in receipt.lines]
    qr_image = next(text for text in texts if text.startswith("[image "))
    width, height = map(int, re.fullmatch(r"\[image (\d+)x(\d+)\]", qr_image).groups())
    assert width == 576 and 100 < height <= 576
    assert texts[texts.index(qr_image) + 1].strip() == "#1023"  # the number under the code


def test_gbk_replaces_what_it_cannot_encode(caplog):
    odd = {**SALE, "lines": [{**SALE["lines"][2], "name": "𠮷野家 牛肉饭"}]}  # U+20BB7: four bytes in GB18030
    data = {"store": STORE, "sale": odd}
    receipt = decode(render("receipt", data, PrintOptions(encoding="gb18030")))
    assert any("𠮷野家 牛肉饭" in line["text"] for line in receipt.lines)
    with caplog.at_level(logging.WARNING, logger="drivers.documents"):
        receipt = decode(render("receipt", data, PrintOptions(encoding="gbk")))
    assert any(line["text"].startswith("？野家 牛肉饭") for line in receipt.lines)  # as wide as 𠮷
    assert [r.kv["chars"] for r in caplog.records] == ["𠮷"]  # reported once, with the character


def test_secret_pickup_code_is_not_printed():
    for kind in ("order_ticket", "pickup_slip"):
        data = render(kind, sample(kind), PrintOptions())
        assert PICKUP_CODE_SHA256.encode() not in data


def test_order_without_pickup_time_and_delivery():
    order = {**ORDER, "kind": "delivery", "pickup_after": None, "customer_note": None}
    texts = [line["text"] for line in decode(render("order_ticket", {"store": STORE, "order": order})).lines]
    assert "线上订单 配送" in texts and "配送时间：尽快" in texts
    assert not any(text.startswith("备注") for text in texts)


def test_no_cut_feeds_past_the_tear_bar():
    data = render("receipt", sample("receipt"), PrintOptions(cut=False))
    assert data.endswith(b"\x1bd\x04") and b"\x1dV" not in data


def test_deterministic():
    for kind in KINDS:
        options = PrintOptions(chinese_font=False, native_qr=False, paper_mm=58)
        assert render(kind, sample(kind, 58), options) == render(kind, sample(kind, 58), options)


def test_label_tables_are_complete():
    for lang in ("zh", "en"):
        assert set(PAYMENT_LABELS[lang]) == set(PAYMENT_METHODS)
    assert set(LABELS["zh"]) == set(LABELS["en"])
    assert set(STATE_LABELS["zh"]) == set(STATE_LABELS["en"])


def _without(data: dict, path: str) -> dict:
    """A deep copy of ``data`` with the field at ``a.b[1].c`` removed."""
    import copy

    data = copy.deepcopy(data)
    *parents, last = re.findall(r"[^.\[\]]+", path)
    node = data
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    del node[last]
    return data


@pytest.mark.parametrize("kind,path", [
    ("receipt", "store"),
    ("receipt", "store.timezone"),
    ("receipt", "sale.lines[1].qty"),
    ("receipt", "sale.payments[0].method"),
    ("receipt", "sale.total_fen"),
    ("order_ticket", "order.id"),
    ("order_ticket", "order.lines[2].name"),
    ("pickup_slip", "operator"),
    ("daily_summary", "summary.net_by_method_fen"),
    ("daily_summary", "shifts[1].opened_at"),
    ("shift_report", "shift.counted_fen"),
    ("shift_report", "shift.figures.change_fen"),
    ("status_ticket", "cloud.queue"),
    ("status_ticket", "printers[1].state"),
    ("test_page", "printer"),
    ("count_sheet", "sheet.lines[1].unit"),
    ("count_sheet", "sheet.created_at"),
])
def test_missing_field_is_named(kind, path):
    with pytest.raises(DocumentError) as info:
        render(kind, _without(sample(kind), path))
    assert str(info.value).startswith(f"{path}: missing")


@pytest.mark.parametrize("kind,data,field", [
    ("receipt", {"store": {**STORE, "timezone": "Mars/Olympus"}, "sale": SALE}, "store.timezone"),
    ("receipt", {"store": STORE, "sale": {**SALE, "created_at": "yesterday"}}, "sale.created_at"),
    ("receipt", {"store": STORE, "sale": {**SALE, "total_fen": 80.0}}, "sale.total_fen"),
    ("receipt", {"store": STORE, "sale": {**SALE, "paid_fen": True}}, "sale.paid_fen"),
    ("receipt", {"store": STORE, "sale": {**SALE, "lines": ["x"]}}, "sale.lines[0]"),
    ("receipt", {"store": STORE, "sale": SALE, "coupons": [{"title": "券"}]}, "coupons[0].amount_fen"),
    ("order_ticket", {"store": STORE, "order": {**ORDER, "kind": "dine_in"}}, "order.kind"),
    ("test_page", {**sample("test_page"), "paper_mm": 58}, "paper_mm"),
    ("nonsense", {}, "kind"),
])
def test_bad_field_is_named(kind, data, field):
    with pytest.raises(DocumentError) as info:
        render(kind, data)
    assert str(info.value).startswith(f"{field}:")


def test_bad_options():
    for bad in ({"paper_mm": 76}, {"encoding": "utf-8"}, {"drawer_pin": 3}, {"language": "fr"}):
        with pytest.raises(ValueError):
            PrintOptions(**bad)


def test_count_sheet_is_blind_and_names_its_one_shelf_once():
    sheet = {**sample("count_sheet")["sheet"], "category": None, "shelf": "A-01"}
    sheet["lines"] = [line for line in sheet["lines"] if line["shelf"] == "A-01"]
    texts = [line["text"] for line in decode(render("count_sheet", {"store": STORE, "sheet": sheet})).lines]
    assert "货架：A-01" in texts and not any(text.startswith("分类") or text.startswith("==") for text in texts)
    assert sum("实盘 ________" in text for text in texts) == 2
    # the book quantity has no place on the sheet even when the data carries it
    counted = {**sheet, "lines": [{**line, "expected": 987654} for line in sheet["lines"]]}
    assert "987654" not in "\n".join(line["text"] for line in decode(render(
        "count_sheet", {"store": STORE, "sheet": counted})).lines)


MEMBER_DOCUMENTS = {"receipt_member": {"store": STORE, "sale": MEMBER_SALE},
                    "return_member": {"store": STORE, "sale": MEMBER_SALE, "return": MEMBER_RETURN}}


@pytest.mark.parametrize("paper", (58, 80))
@pytest.mark.parametrize("lang", ("zh", "en"))
@pytest.mark.parametrize("name", MEMBER_DOCUMENTS)
def test_member_receipt_golden(name, paper, lang):
    receipt = decode(render("receipt", MEMBER_DOCUMENTS[name], PrintOptions(paper_mm=paper, language=lang)))
    text = golden_text(receipt, et.columns_for_paper(paper))
    path = GOLDEN / f"{name}-{paper}-{lang}.txt"
    if UPDATE:
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{path.name} differs (UPDATE_GOLDEN=1 to rewrite)"
    columns, qr_lines = et.columns_for_paper(paper), {q["line"] for q in receipt.qr}
    assert all(et.width(line["text"]) * line["width"] <= columns for no, line in enumerate(receipt.lines)
               if no not in qr_lines)


def _texts(sale: dict, **options) -> list[str]:
    return [line["text"] for line in decode(render("receipt", {"store": STORE, "sale": sale},
                                                   PrintOptions(**options))).lines]


def test_member_receipt_adds_up():
    texts = _texts(MEMBER_SALE, paper_mm=58)
    assert "会员：张* 138****5678 金卡" in texts
    # the row at the list price, the member price and the line discount under it: they reach the line's amount
    assert "  2 × ￥36.00           ￥72.00" in texts
    assert "  会员价 ￥34.00         -￥4.00" in texts and "  单品优惠               -￥5.00" in texts
    assert "  会员价 ￥3.33          -￥0.51" in texts
    line = MEMBER_SALE["lines"][0]
    assert line["qty"] * line["list_price_fen"] - line["member_saved_fen"] - line["discount_fen"] == line["amount_fen"]
    for label, value in (("积分抵扣 500分", "￥5.00"), ("储值支付", "￥50.00"), ("会员优惠", "￥4.51"),
                         ("本次积分", "+101"), ("积分余额", "1601"), ("储值余额", "￥150.00")):
        assert any(t.startswith(label + " ") and t.endswith(" " + value) for t in texts), (label, texts)
    assert "离线积分与储值，待同步确认" not in "\n".join(texts)
    # the member's id and whole phone never print: the masked view is all a receipt needs
    assert MEMBER["member_id"] not in "\n".join(texts)


def test_member_receipt_offline_and_without_savings():
    member = {**MEMBER, "offline": True, "saved_fen": 0, "points_earned": 0}
    sale = {**MEMBER_SALE, "member": member,
            "lines": [{**line, "unit_price_fen": line["list_price_fen"], "member_saved_fen": 0,
                       "amount_fen": line["amount_fen"] + line["member_saved_fen"]} for line in MEMBER_SALE["lines"]]}
    texts = _texts(sale, language="en")
    assert "Offline points and stored value, pending sync" in [t.strip() for t in texts]
    assert not any(t.startswith("  Member price") or t.startswith("Member savings") for t in texts)
    assert any(t.startswith("Points earned") and t.endswith(" +0") for t in texts)


def test_member_receipt_missing_field_is_named():
    sale = {**MEMBER_SALE, "member": {k: v for k, v in MEMBER.items() if k != "points_balance"}}
    with pytest.raises(DocumentError, match=r"^sale\.member\.points_balance: missing"):
        render("receipt", {"store": STORE, "sale": sale})
    sale = {**MEMBER_SALE, "lines": [{k: v for k, v in MEMBER_SALE["lines"][0].items() if k != "list_price_fen"}]}
    with pytest.raises(DocumentError, match=r"^sale\.lines\[0\]\.list_price_fen: missing"):
        render("receipt", {"store": STORE, "sale": sale})


def test_member_return_shows_what_goes_back_and_adds_up():
    texts = decode(render("receipt", MEMBER_DOCUMENTS["return_member"], PrintOptions(paper_mm=58))).lines
    texts = [line["text"] for line in texts]
    for label, value in (("原单号：1024", None), ("可口可乐 Coca-Cola 330ml", None), ("  -3", "-￥9.99"),
                         ("退款合计", "-￥9.99"), ("积分抵扣 42分", "-￥0.42"), ("储值支付", "-￥4.23"),
                         ("微信", "-￥5.34"), ("退回积分", "+42"), ("扣回积分", "-8")):
        assert any(t == label if value is None else t.startswith(label + " ") and t.endswith(" " + value)
                   for t in texts), (label, texts)
    member = MEMBER_RETURN["member"]
    assert 999 - member["stored_value_fen"] - member["points_value_fen"] == 534
    # a return without a member: the whole refund through its method, nothing about points
    plain = {**MEMBER_RETURN, "member": None}
    texts = [line["text"] for line in decode(render("receipt", {"store": STORE, "sale": SALE, "return": plain})).lines]
    assert any(t.startswith("微信 ") and t.endswith(" -￥9.99") for t in texts)
    assert not any("积分" in t or "会员" in t for t in texts)
