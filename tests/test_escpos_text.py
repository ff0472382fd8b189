"""The Chinese ESC/POS text layer: widths, wrapping, layout, GB18030/GBK bytes, commands.

python-escpos's Dummy printer is the golden-bytes harness for what it also implements.
"""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from escpos import printer as escpos_printer

from drivers import escpos_text as et
from drivers.escpos_text import (
    TextBuilder,
    center,
    columns_line,
    encode,
    encode_line,
    item_line,
    qr_bytes,
    separator,
    width,
    wrap,
    yuan,
)
from drivers.virtual_printer import Decoder

LONG_NAME = "农夫山泉 饮用天然水 550ml 整箱装（24瓶）"


# ---------------------------------------------------------------------------------------- widths


@pytest.mark.parametrize(
    "text,expected",
    [
        ("", 0),
        ("abc 123", 7),
        ("中文", 4),
        ("可口可乐 330ml", 14),
        ("（２４瓶）", 10),  # fullwidth punctuation and digits
        ("，。！", 6),
        ("￥3.50", 6),  # U+FFE5 is fullwidth
        ("😀", 2),
        ("奶茶😀x", 7),
        ("e\u0301", 1),  # combining acute: 0
        ("a\u200db", 2),  # zero-width joiner: 0
        ("\x1b", 0),
    ],
)
def test_width(text, expected):
    assert width(text) == expected


def test_ambiguous_width_counts_two_on_chinese_printers():
    # × · … — é are two-byte GBK characters, printed two columns wide in Chinese mode.
    for ch in "×·…—é":
        assert width(ch) == 2
        assert width(ch, ambiguous=1) == 1
        assert len(ch.encode("gbk")) == 2


def test_paper_columns():
    assert et.columns_for_paper(58) == 32
    assert et.columns_for_paper(80) == 48
    assert TextBuilder(58).columns == 32
    assert TextBuilder(80).columns == 48
    with pytest.raises(ValueError):
        et.columns_for_paper(76)


# ------------------------------------------------------------------------------------------ wrap


def _no_split(original: str, lines: list[str]) -> None:
    """Every non-space character survives, whole and in order (wrapping only drops spaces)."""
    strip = lambda s: "".join(ch for ch in s if ch not in " \u3000")  # noqa: E731
    assert strip("".join(lines)) == strip(et.clean(original))


@pytest.mark.parametrize("columns", [32, 48, 16, 24])
def test_wrap_long_product_name(columns):
    lines = wrap(LONG_NAME, columns)
    assert all(width(ln) <= columns for ln in lines)
    _no_split(LONG_NAME, lines)
    if columns == 48:
        assert lines == [LONG_NAME]
    if columns == 32:
        assert lines == ["农夫山泉 饮用天然水 550ml 整箱装", "（24瓶）"]


def test_wrap_keeps_latin_words_and_breaks_cjk_anywhere():
    assert wrap("Nongfu Spring natural water 550ml", 16) == ["Nongfu Spring", "natural water", "550ml"]
    assert wrap("一二三四五六七八九十", 7) == ["一二三", "四五六", "七八九", "十"]
    # an odd column count never splits a wide character: the line is one short instead
    assert all(width(ln) <= 7 for ln in wrap("一二三四五六七八九十", 7))
    # a word longer than a line is split between characters
    assert wrap("abcdefghij", 4) == ["abcd", "efgh", "ij"]
    # combining sequences stay together
    lines = wrap("ae\u0301" * 6, 4)
    assert all(not ln.startswith("\u0301") for ln in lines)
    assert wrap("", 32) == [""]
    assert wrap("第一行\n第二行", 32) == ["第一行", "第二行"]
    with pytest.raises(ValueError):
        wrap("x", 1)


def test_wrap_kinsoku_punctuation():
    for columns in (6, 7, 8, 9, 10):
        lines = wrap("（24瓶）农夫山泉，饮用天然水。【特价】可乐！", columns)
        assert all(width(ln) <= columns for ln in lines)
        assert not any(ln[0] in "，。）！】" for ln in lines), lines
        assert not any(ln[-1] in "（【" for ln in lines), lines
    assert wrap("农夫山泉，饮用天然水。", 8) == ["农夫山", "泉，饮用", "天然水。"]


def test_clean_turns_half_width_yen_and_controls_safe():
    assert et.clean("¥3\t5\x1b@") == "￥3 5 @"
    assert et.clean("e\u0301") == "é"


# ----------------------------------------------------------------------------------------- money


def test_yuan_uses_fullwidth_yen_sign():
    assert yuan(1250) == "￥12.50"
    assert yuan(5) == "￥0.05"
    assert yuan(0) == "￥0.00"
    assert yuan(-300) == "-￥3.00"
    assert yuan(123456789) == "￥1234567.89"
    for fen in (0, 1, 99, 100, 350, 10**9):
        s = yuan(fen)
        assert "\uffe5" in s and "\u00a5" not in s
        assert s.encode("gbk").startswith(b"\xa3\xa4")
    with pytest.raises(TypeError):
        yuan(12.5)
    with pytest.raises(TypeError):
        yuan(True)


# ---------------------------------------------------------------------------------------- layout


@pytest.mark.parametrize("columns", [32, 48])
def test_columns_line(columns):
    (ln,) = columns_line("合计", yuan(7200), columns)
    assert width(ln) == columns and ln.startswith("合计 ") and ln.endswith("￥72.00")
    lines = columns_line(LONG_NAME * 2, yuan(7200), columns)
    assert lines[0].endswith(" ￥72.00") and width(lines[0]) == columns
    assert all(width(ln) <= columns - width("￥72.00") - 1 for ln in lines[1:])
    _no_split(LONG_NAME * 2, [lines[0][: -len("￥72.00")]] + lines[1:])
    (cut,) = columns_line(LONG_NAME * 2, yuan(7200), columns, overflow="truncate")
    assert width(cut) == columns and "…" in cut and cut.endswith(" ￥72.00")
    with pytest.raises(ValueError):
        columns_line("x", "1" * columns, columns)


def test_item_line_80mm_is_one_row_with_number_columns():
    lines = item_line("可口可乐 330ml", 3, 350, 1050, 48)
    assert lines == ["可口可乐 330ml" + " " * 7 + "     3" + "    ￥3.50" + "    ￥10.50"]
    assert width(lines[0]) == 48
    long = item_line(LONG_NAME, 2, 3600, 7200, 48)
    assert long[0].endswith("2   ￥36.00    ￥72.00") and width(long[0]) == 48
    assert all(width(ln) <= 48 for ln in long)
    assert width(et.item_header(48)) == 48


def test_item_line_58mm_is_name_then_quantity_row():
    lines = item_line("可口可乐 330ml", 3, 350, 1050, 32)
    assert lines == ["可口可乐 330ml", "  3 × ￥3.50" + " " * 12 + "￥10.50"]
    assert all(width(ln) == 32 for ln in lines[1:])
    weighed = item_line("散装大米", Decimal("2.35"), 598, 1405, 32)
    assert weighed[1].startswith("  2.35 × ￥5.98") and weighed[1].endswith("￥14.05")
    with pytest.raises(TypeError):
        item_line("散装大米", 2.35, 598, 1405, 32)
    assert width(et.item_header(32)) == 32


def test_center_and_separator():
    assert center("谢谢惠顾", 32) == [" " * 12 + "谢谢惠顾"]
    assert all(width(ln) <= 16 for ln in center("谢谢惠顾，欢迎再次光临本店", 16))
    assert separator(32) == "-" * 32
    assert separator(48, "=") == "=" * 48
    assert separator(32, "─") == "─" * 16  # box drawing is ambiguous: two columns
    assert separator(31, "＊") == "＊" * 15


# -------------------------------------------------------------------------------------- encoding


def test_encode_line_chinese_golden_bytes():
    data = encode_line("可口可乐 330ml ￥3.50")
    assert data == (
        b"\x1c\x26"  # FS &
        + b"\xbf\xc9\xbf\xda\xbf\xc9\xc0\xd6"  # 可口可乐
        + b" 330ml "
        + b"\xa3\xa4"  # ￥ (U+FFE5)
        + b"3.50"
        + b"\x1c\x2e"  # FS .
    )
    assert data[2:-2] == "可口可乐 330ml ￥3.50".encode("gb18030")
    # the half-width ¥ that python-escpos sends as 81 30 84 36 is printed as ￥
    assert encode_line("可口可乐 330ml ¥3.50") == data


def test_encode_line_pure_ascii_is_plain():
    assert encode_line("Coca-Cola 330ml 3.50") == b"Coca-Cola 330ml 3.50"
    assert encode_line("") == b""
    assert encode_line("x", encoding="gbk") == b"x"


def test_encode_gb18030_keeps_four_byte_characters():
    enc = encode("𠀀奶茶😀")
    assert enc.replaced == []
    assert enc.data == b"\x1c&" + "𠀀奶茶😀".encode("gb18030") + b"\x1c."


def test_encode_gbk_only_printer_replaces_four_byte_characters():
    enc = encode("奶茶😀 𠀀 ¥5", encoding="gbk")
    assert enc.data == b"\x1c&\xc4\xcc\xb2\xe8\xa3\xbf \xa3\xbf \xa3\xa45\x1c."  # ？ for each wide one
    assert enc.replaced == ["😀", "𠀀"]
    assert encode("😀", encoding="gbk") == et.Encoded(b"\x1c&\xa3\xbf\x1c.", ["😀"])
    b = TextBuilder(58, encoding="gbk").text("奶茶😀")
    assert b.replaced == ["😀"] and b.bytes() == b"\x1c&\xc4\xcc\xb2\xe8\xa3\xbf\x1c.\n"
    with pytest.raises(ValueError):
        encode("x", encoding="utf-8")


def test_gbk_stand_ins_keep_the_columns_the_layout_counted():
    """What a GBK printer prints is as wide as what was laid out: amounts stay flush right."""
    names = ["𠮷野家 牛肉饭", "可乐😀", "🍺🍺 啤酒 500ml", "奶茶\U0001f9cb 大杯 少冰 去糖 加珍珠 椰果"]
    for columns, paper in ((32, 58), (48, 80)):
        b = TextBuilder(paper, encoding="gbk")
        laid_out = []
        for name in names:
            laid_out += columns_line(name, "￥12.50", columns)
            laid_out += item_line(name, 2, 350, 700, columns)
        b.lines(laid_out)
        decoder = Decoder()
        decoder.feed(b.bytes())
        printed = [line["text"] for line in decoder.receipt.lines]
        assert len(printed) == len(laid_out)
        assert [width(p) for p in printed] == [width(line) for line in laid_out]
        assert [p.endswith("￥12.50") for p in printed] == [line.endswith("￥12.50") for line in laid_out]
        assert "?" not in "".join(printed) and "？" in "".join(printed)
        assert b.replaced


def test_encode_never_sends_control_characters():
    enc = encode("可乐\x1bi\x1d")
    assert b"\x1b" not in enc.data[2:-2] and b"\x1d" not in enc.data
    assert enc.replaced == ["\x1b", "\x1d"]


# -------------------------------------------------------------------------------------- commands

QR_URL = "https://shop.example.cn/p/8F3K2"


def test_qr_golden_bytes():
    data = QR_URL.encode()
    n = len(data) + 3
    assert qr_bytes(QR_URL, size=6, ec="M") == (
        b"\x1d(k\x04\x001A2\x00"  # model 2
        + b"\x1d(k\x03\x001C\x06"  # module size 6
        + b"\x1d(k\x03\x001E1"  # error correction M (49)
        + b"\x1d(k" + bytes((n, 0)) + b"1P0" + data  # store
        + b"\x1d(k\x03\x001Q0"  # print
    )
    with pytest.raises(ValueError):
        qr_bytes("")
    with pytest.raises(ValueError):
        qr_bytes("x", size=17)


@pytest.mark.parametrize("content", [QR_URL, "取货码 123456", "x" * 300])
def test_qr_equals_python_escpos_native(content):
    from escpos.constants import QR_ECLEVEL_M

    d = escpos_printer.Dummy()
    d.qr(content, ec=QR_ECLEVEL_M, size=6, native=True)
    assert d.output == qr_bytes(content, size=6, ec="M")
    assert TextBuilder().qr(content).bytes() == d.output


def test_cut_and_drawer_golden_bytes():
    assert TextBuilder().cut().bytes() == b"\x1dV\x42\x00"  # GS V 66 0
    assert TextBuilder().drawer().bytes() == b"\x1bp\x00\x19\xfa"  # ESC p 0 25 250
    d = escpos_printer.Dummy()
    d.cut(feed=False)  # python-escpos sends the same GS V 66 0 here
    d.cashdraw([27, 112, 0, 25, 250])
    assert d.output == TextBuilder().cut().drawer().bytes()


def test_style_commands():
    b = TextBuilder().init().align("center").bold().bold(False).size(2, 2).size().feed(3)
    assert b.bytes() == (
        b"\x1b@" + b"\x1ba\x01" + b"\x1bE\x01" + b"\x1bE\x00" + b"\x1d!\x11" + b"\x1d!\x00"
        + b"\x1bd\x03"
    )


def test_double_width_halves_the_columns():
    b = TextBuilder(58)
    assert b.columns == 32
    b.size(width=2)
    assert b.columns == 16 and b.bytes() == b"\x1d!\x10"
    b.size(width=2, height=2)
    assert b.columns == 16
    b.size(height=2)
    assert b.columns == 32
    assert TextBuilder(80).size(width=2).columns == 24
    assert TextBuilder(80).size(width=3).columns == 16

    big = TextBuilder(58).size(width=2)
    big.item(LONG_NAME, 2, 3600, 7200)
    text_lines = big.bytes()[3:].split(b"\n")[:-1]
    assert len(text_lines) > 2
    for raw in text_lines:
        s = raw.replace(b"\x1c&", b"").replace(b"\x1c.", b"").decode("gb18030")
        assert width(s) <= 16
    # init resets the width back to normal
    assert big.init().columns == 32


def test_builder_bytes_through_python_escpos_dummy():
    b = (
        TextBuilder(58)
        .init()
        .align("center")
        .size(2, 2)
        .text("便利店 (演示)")
        .size()
        .align()
        .separator()
        .item("可口可乐 330ml", 3, 350, 1050)
        .item(LONG_NAME, 1, 3600, 3600)
        .separator("=")
        .bold()
        .columns_line("合计", yuan(4650))
        .bold(False)
        .center("谢谢惠顾")
        .qr(QR_URL)
        .feed(2)
        .cut()
        .drawer()
    )
    data = b.bytes()
    d = escpos_printer.Dummy()
    d._raw(data)
    assert d.output == data
    assert b"\x1c&" + "合计".encode("gb18030") in data
    assert "￥46.50".encode("gb18030") in data and "¥".encode("gb18030") not in data
    assert data.startswith(b"\x1b@") and data.endswith(b"\x1dVB\x00\x1bp\x00\x19\xfa")


# -------------------------------------------------------------------------- property-style sweep

_POOL = (
    "abcdefghijklmnopqrstuvwxyz0123456789-./%()"
    + "农夫山泉饮用天然水整箱装瓶可口乐罐薯片原味袋"
    + "（）【】，。！：￥＊２４"
    + "×·…é—¥"
    + "😀🍜𠀀"
    + "e\u0301"
    + "     "
)


@pytest.mark.parametrize("columns", [16, 24, 32, 48])
def test_every_produced_line_fits(columns):
    rng = random.Random(columns)
    for _ in range(250):
        s = "".join(rng.choice(_POOL) for _ in range(rng.randint(0, 90)))
        lines = wrap(s, columns)
        assert lines and all(width(ln) <= columns for ln in lines), (s, lines)
        _no_split(s, lines)
        for ln in columns_line(s, yuan(rng.randint(0, 10**7)), columns):
            assert width(ln) <= columns, (s, ln)
        (cut,) = columns_line(s, yuan(rng.randint(0, 10**5)), columns, overflow="truncate")
        assert width(cut) <= columns
        qty = rng.choice([1, 12, 250, Decimal("0.532")])
        for ln in item_line(s, qty, rng.randint(0, 10**5), rng.randint(0, 10**6), columns):
            assert width(ln) <= columns, (s, ln)
        for ln in center(s, columns):
            assert width(ln) <= columns
        # and the bytes decode back to the same text, one line per LF
        b = TextBuilder(columns=columns).text(s)
        decoded = [
            raw.replace(b"\x1c&", b"").replace(b"\x1c.", b"").decode("gb18030")
            for raw in b.bytes().split(b"\n")[:-1]
        ]
        assert decoded == lines
