"""Chinese text layer for ESC/POS receipt printers (DESIGN.md §6).

python-escpos handles transports, images, native QR, cut and drawer, but its text path is wrong for
Chinese shops: it never turns Chinese mode on (``FS &``), sends ``¥`` (U+00A5) as a four-byte
GB18030 sequence that GBK printers print as garbage, and counts a Han character as one column.
This module is the replacement: pure functions and a byte builder, no I/O. Its bytes can be handed
to any python-escpos printer with ``printer._raw(builder.bytes())``.

Column model (Font A, 12x24 dots): 58 mm paper has 32 columns, 80 mm has 48. In Chinese mode a
printer prints every one-byte (ASCII) character in one column and every two-byte GB character in
two. So:

* East Asian Wide and Fullwidth characters (``中``, ``（``, ``￥``, emoji) count 2;
* East Asian *Ambiguous* characters (``×``, ``·``, ``…``, ``—``, ``é``) are two-byte in GBK and
  print two columns wide on Chinese printers, so they count 2 as well (``ambiguous=1`` gives the
  plain Unicode reading);
* combining marks, format characters and control characters count 0;
* everything else counts 1.

Layout helpers first clean their text (:func:`clean`): NFC, ``¥`` → ``￥``, control characters →
space, format characters (zero-width joiners, BOM) dropped. No line they produce is wider than the
columns asked for.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal
from typing import NamedTuple

__all__ = [
    "COLUMNS_58MM",
    "COLUMNS_80MM",
    "ESC",
    "FS",
    "GS",
    "Encoded",
    "TextBuilder",
    "center",
    "clean",
    "columns_for_paper",
    "columns_line",
    "encode",
    "encode_line",
    "item_header",
    "item_line",
    "qr_bytes",
    "separator",
    "truncate",
    "width",
    "wrap",
    "yuan",
]

ESC = b"\x1b"
GS = b"\x1d"
FS = b"\x1c"
LF = b"\n"

CHINESE_ON = FS + b"&"  # FS &: select Chinese (Kanji) character mode
CHINESE_OFF = FS + b"."  # FS .: cancel Chinese character mode

COLUMNS_58MM = 32
COLUMNS_80MM = 48
_PAPER_COLUMNS = {58: COLUMNS_58MM, 80: COLUMNS_80MM}

YUAN_SIGN = "\uffe5"  # ￥ FULLWIDTH YEN SIGN: GBK A3A4, printable everywhere
_HALFWIDTH_YEN = "\u00a5"  # ¥: GB18030 81308436, not printable on GBK printers

ENCODINGS = ("gb18030", "gbk")
# what a GBK printer gets for a character it cannot hold, by the columns the layout gave it: a
# narrower stand-in would pull the rest of the line (the amount) left
_GBK_STAND_IN = {0: b"", 1: b"?", 2: "\uff1f".encode("gbk")}  # ？ FULLWIDTH QUESTION MARK: A3BF


def columns_for_paper(paper_mm: int) -> int:
    """Font A columns for a paper width: 58 mm → 32, 80 mm → 48."""
    try:
        return _PAPER_COLUMNS[paper_mm]
    except KeyError:
        raise ValueError(f"unsupported paper width {paper_mm!r} mm (58 or 80)") from None


# --------------------------------------------------------------------------------------- widths


def _char_width(ch: str, ambiguous: int = 2) -> int:
    cat = unicodedata.category(ch)
    if cat in ("Mn", "Me", "Cf", "Cc") or unicodedata.combining(ch):
        return 0
    eaw = unicodedata.east_asian_width(ch)
    if eaw in ("W", "F"):
        return 2
    if eaw == "A":
        return ambiguous
    return 1


def width(text: str, *, ambiguous: int = 2) -> int:
    """Display width in printer columns (see the module docstring for the rules)."""
    return sum(_char_width(ch, ambiguous) for ch in text)


def clean(text: str) -> str:
    """Normalise text for printing: NFC, ``¥``→``￥``, controls → space, format chars dropped."""
    text = unicodedata.normalize("NFC", text).replace(_HALFWIDTH_YEN, YUAN_SIGN)
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat == "Cc":
            out.append(" ")
        elif cat == "Cf":
            continue
        else:
            out.append(ch)
    return "".join(out)


def _clusters(text: str) -> list[str]:
    """Split into printable units: a base character with its zero-width followers."""
    out: list[str] = []
    for ch in text:
        if out and _char_width(ch) == 0:
            out[-1] += ch
        else:
            out.append(ch)
    return out


# ----------------------------------------------------------------------------------------- wrap

_SPACE_RUN = re.compile(r"[ \u3000]+")


_NO_LINE_START = set("，。、！？：；）》」』】〕〉”’…,.!?:;)]}%")  # kinsoku: never begins a line
_NO_LINE_END = set("（《「『【〔〈“‘([{")  # never ends a line


def _tokens(text: str) -> list[str]:
    """Break opportunities: space runs, Latin words kept whole, each wide character on its own.

    Closing punctuation sticks to what precedes it and opening punctuation to what follows, so a
    line never starts with ``，`` or ends with ``（`` (unless one token is wider than a line).
    """
    raw: list[str] = []
    word = ""
    for cl in _clusters(text):
        if cl[0] in " \u3000":
            if word:
                raw.append(word)
                word = ""
            if raw and _SPACE_RUN.fullmatch(raw[-1]):
                raw[-1] += cl
            else:
                raw.append(cl)
        elif unicodedata.east_asian_width(cl[0]) in ("W", "F"):
            if word:
                raw.append(word)
                word = ""
            raw.append(cl)
        else:
            word += cl
    if word:
        raw.append(word)
    tokens: list[str] = []
    glue_next = False
    for tok in raw:
        is_space = bool(_SPACE_RUN.fullmatch(tok))
        if glue_next and not is_space:
            tokens[-1] += tok
        elif tok[0] in _NO_LINE_START and tokens and not _SPACE_RUN.fullmatch(tokens[-1]):
            tokens[-1] += tok
        else:
            tokens.append(tok)
        glue_next = not is_space and tok[-1] in _NO_LINE_END
    return tokens


def wrap(text: str, columns: int) -> list[str]:
    """Wrap ``text`` into lines no wider than ``columns``.

    Breaks between CJK characters anywhere and between Latin words at spaces; a word longer than
    a line is split between characters (never inside a character or a combining sequence).
    ``\\n`` forces a break. Spaces at a break are dropped. Always returns at least one line.
    """
    if columns < 2:
        raise ValueError("columns must be at least 2 (a CJK character is 2 wide)")
    lines: list[str] = []
    for paragraph in text.split("\n"):
        paragraph = clean(paragraph)
        if width(paragraph) <= columns:
            lines.append(paragraph)
            continue
        cur, cur_w = "", 0

        def flush() -> None:
            nonlocal cur, cur_w
            lines.append(cur.rstrip(" \u3000"))
            cur, cur_w = "", 0

        for tok in _tokens(paragraph):
            w = width(tok)
            if _SPACE_RUN.fullmatch(tok):
                if cur_w + w <= columns:
                    cur, cur_w = cur + tok, cur_w + w
                elif cur:
                    flush()
                continue  # spaces at the start of a wrapped line are dropped
            if cur_w + w <= columns:
                cur, cur_w = cur + tok, cur_w + w
                continue
            if w <= columns:
                flush()
                cur, cur_w = tok, w
                continue
            # A single token wider than a whole line: fill character by character.
            for cl in _clusters(tok):
                cw = width(cl)
                if cur_w + cw > columns:
                    flush()
                cur, cur_w = cur + cl, cur_w + cw
        if cur or not lines:
            lines.append(cur.rstrip(" \u3000"))
    return lines


def truncate(text: str, columns: int, ellipsis: str = "…") -> str:
    """Cut ``text`` to at most ``columns`` wide, ending with ``ellipsis`` when something was cut."""
    text = clean(text)
    if width(text) <= columns:
        return text
    budget = columns - width(ellipsis)
    if budget < 0:
        ellipsis, budget = "", columns
    out, used = "", 0
    for cl in _clusters(text):
        cw = width(cl)
        if used + cw > budget:
            break
        out, used = out + cl, used + cw
    return out.rstrip(" \u3000") + ellipsis


# --------------------------------------------------------------------------------------- layout


def yuan(fen: int) -> str:
    """Money in fen → ``￥12.50`` (U+FFE5, never U+00A5); negative as ``-￥3.00``."""
    if isinstance(fen, bool) or not isinstance(fen, int):
        raise TypeError(f"yuan() takes integer fen, not {type(fen).__name__}")
    sign = "-" if fen < 0 else ""
    q, r = divmod(abs(fen), 100)
    return f"{sign}{YUAN_SIGN}{q}.{r:02d}"


def _pad_left(text: str, columns: int) -> str:
    return " " * max(0, columns - width(text)) + text


def _pad_right(text: str, columns: int) -> str:
    return text + " " * max(0, columns - width(text))


def columns_line(left: str, right: str, columns: int, *, overflow: str = "wrap") -> list[str]:
    """``left`` on the left, ``right`` (an amount) flush right, at least one space between.

    When ``left`` does not fit beside ``right`` it is wrapped (``overflow="wrap"``: the amount stays
    on the first line, the rest continues below within the same left column) or cut with ``…``
    (``overflow="truncate"``, always one line). Returns the lines.
    """
    if overflow not in ("wrap", "truncate"):
        raise ValueError("overflow must be 'wrap' or 'truncate'")
    right = clean(right)
    avail = columns - width(right) - 1
    if avail < 2:
        raise ValueError(f"{right!r} does not fit in {columns} columns with any text beside it")
    if overflow == "truncate":
        parts = [truncate(left, avail)]
    else:
        parts = wrap(left, avail)
    first = parts[0]
    lines = [first + " " * (columns - width(first) - width(right)) + right]
    lines.extend(parts[1:])
    return lines


def _qty(qty: int | str | Decimal) -> str:
    if isinstance(qty, bool) or isinstance(qty, float):
        raise TypeError("quantity must be int, Decimal or str (no floats for weighed goods)")
    return clean(str(qty))


NARROW_ITEM_LAYOUT_BELOW = 40  # below this many columns, item lines take two rows


def item_line(
    name: str, qty: int | str | Decimal, price_fen: int, amount_fen: int, columns: int
) -> list[str]:
    """A receipt item: name / qty × unit price / amount.

    Wide (≥ 40 columns, 80 mm): one row ``name | qty | price | amount`` with fixed right-aligned
    number columns; a long name wraps inside its own column. Narrow (58 mm, or 80 mm in double
    width): the name on its own row(s), then ``  qty × price`` with the amount flush right.
    """
    q, price, amount = _qty(qty), yuan(price_fen), yuan(amount_fen)
    if columns >= NARROW_ITEM_LAYOUT_BELOW:
        amount_w, price_w, qty_w = 11, 10, 6
        name_w = columns - amount_w - price_w - qty_w
        nums = _pad_left(q, qty_w) + _pad_left(price, price_w) + _pad_left(amount, amount_w)
        if width(nums) == qty_w + price_w + amount_w:
            names = wrap(name, name_w - 1)
            out = [_pad_right(names[0], name_w) + nums]
            return out + names[1:]
        # numbers too long for the fixed grid: fall back to the two-row layout
    lines = wrap(name, columns)
    lines += columns_line(f"  {q} × {price}", amount, columns)
    return lines


def item_header(columns: int, item: str = "商品", qty: str = "数量", price: str = "单价", amount: str = "金额",
                narrow: str = "商品/数量×单价") -> str:
    """The column titles matching :func:`item_line` (one row in both layouts); labels may be translated."""
    if columns >= NARROW_ITEM_LAYOUT_BELOW:
        return _pad_right(item, columns - 27) + _pad_left(qty, 6) + _pad_left(price, 10) + _pad_left(amount, 11)
    return columns_line(narrow, amount, columns, overflow="truncate")[0]


def center(text: str, columns: int) -> list[str]:
    """Lines of ``text`` centred with leading spaces (wrapped first if too wide)."""
    out = []
    for line in wrap(text, columns):
        out.append(" " * ((columns - width(line)) // 2) + line)
    return out


def separator(columns: int, char: str = "-") -> str:
    """A rule across the line, e.g. ``------`` or ``======``; wide characters repeat fewer times."""
    w = width(char)
    if w <= 0:
        raise ValueError("separator character must have a width")
    return char * (columns // w)


# ------------------------------------------------------------------------------------- encoding


class Encoded(NamedTuple):
    data: bytes
    replaced: list[str]  # characters the printer cannot print, in order, one entry per occurrence


def encode(text: str, encoding: str = "gb18030") -> Encoded:
    """Bytes for one line of text (no line feed), with what had to be replaced.

    Pure ASCII is sent as it is. Anything else is wrapped in ``FS &`` … ``FS .`` and encoded as
    GB18030. ``encoding="gbk"`` is for printers that only know the one- and two-byte part (GBK):
    characters that need a four-byte GB18030 sequence are listed in ``replaced`` and printed as a
    stand-in of the same width, so every layout made before encoding still holds on paper: ``？``
    (two columns) for a wide one such as ``𠮷`` or an emoji, ``?`` for a narrow one; zero-width
    ones are dropped. Control characters are never sent (they could be printer
    commands hidden in a product name): they become ``?`` and are listed too. ``¥`` is printed as
    ``￥``.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}")
    text = unicodedata.normalize("NFC", text).replace(_HALFWIDTH_YEN, YUAN_SIGN)
    replaced: list[str] = []
    out = bytearray()
    ascii_only = True
    for ch in text:
        if unicodedata.category(ch) == "Cc":
            replaced.append(ch)
            out += b"?"
            continue
        b = ch.encode("gb18030")
        if len(b) == 4 and encoding == "gbk":
            replaced.append(ch)
            b = _GBK_STAND_IN[_char_width(ch)]
            if not b:
                continue
        if len(b) > 1:
            ascii_only = False
        out += b
    data = bytes(out) if ascii_only else CHINESE_ON + bytes(out) + CHINESE_OFF
    return Encoded(data, replaced)


def encode_line(text: str, encoding: str = "gb18030") -> bytes:
    """The bytes of :func:`encode` without the report (no line feed appended)."""
    return encode(text, encoding).data


# ------------------------------------------------------------------------------------ commands

QR_EC_LEVELS = {"L": 48, "M": 49, "Q": 50, "H": 51}
QR_MAX_BYTES = 7089


def _gs_k(fn: int, data: bytes, m: bytes = b"") -> bytes:
    body = b"1" + bytes((fn,)) + m + data  # cn = 49 ('1'): QR code
    n = len(body)
    return GS + b"(k" + bytes((n & 0xFF, n >> 8)) + body


def qr_bytes(data: str | bytes, size: int = 6, ec: str = "M") -> bytes:
    """Native QR (``GS ( k``): model 2, module size, error correction, store data, print.

    The same five functions, in the same order, as python-escpos ``qr(..., native=True)``
    (fn 65, 67, 69, 80, 81). Text is stored as UTF-8, which is what phones decode.
    """
    if not 1 <= size <= 16:
        raise ValueError("QR module size must be 1-16")
    if ec not in QR_EC_LEVELS:
        raise ValueError("QR error correction must be L, M, Q or H")
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if not payload:
        raise ValueError("QR data is empty")
    if len(payload) > QR_MAX_BYTES:
        raise ValueError(f"QR data longer than {QR_MAX_BYTES} bytes")
    return (
        _gs_k(65, bytes((50, 0)))  # select model 2
        + _gs_k(67, bytes((size,)))  # module size
        + _gs_k(69, bytes((QR_EC_LEVELS[ec],)))  # error correction
        + _gs_k(80, payload, b"0")  # store data
        + _gs_k(81, b"", b"0")  # print
    )


ALIGN = {"left": 0, "center": 1, "right": 2}


class TextBuilder:
    """Accumulates the bytes of one receipt. Layout follows the current character width.

    ``TextBuilder(paper_mm=58)`` lays out for 32 columns, ``80`` for 48 (or pass ``columns``).
    After ``size(width=2)`` only half the columns are available, and :meth:`text`,
    :meth:`columns_line`, :meth:`item`, :meth:`center` and :meth:`separator` use that.
    Characters the printer cannot print are collected in :attr:`replaced`.
    """

    def __init__(
        self, paper_mm: int = 80, *, columns: int | None = None, encoding: str = "gb18030"
    ) -> None:
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}")
        self.base_columns = columns if columns is not None else columns_for_paper(paper_mm)
        self.encoding = encoding
        self.replaced: list[str] = []
        self._buf = bytearray()
        self._width_mult = 1
        self._height_mult = 1

    # state ---------------------------------------------------------------------------------
    @property
    def columns(self) -> int:
        """Columns available at the current character width."""
        return self.base_columns // self._width_mult

    def bytes(self) -> bytes:
        return bytes(self._buf)

    def raw(self, data: bytes) -> TextBuilder:
        self._buf += data
        return self

    # commands ------------------------------------------------------------------------------
    def init(self) -> TextBuilder:
        """ESC @: reset the printer (and our idea of the character size)."""
        self._width_mult = self._height_mult = 1
        return self.raw(ESC + b"@")

    def align(self, how: str = "left") -> TextBuilder:
        """ESC a n: 0 left, 1 centre, 2 right."""
        return self.raw(ESC + b"a" + bytes((ALIGN[how],)))

    def bold(self, on: bool = True) -> TextBuilder:
        """ESC E n."""
        return self.raw(ESC + b"E" + (b"\x01" if on else b"\x00"))

    def size(self, width: int = 1, height: int = 1) -> TextBuilder:
        """GS ! n: character width and height multipliers 1-8 (width 2 halves the columns)."""
        if not (1 <= width <= 8 and 1 <= height <= 8):
            raise ValueError("size multipliers must be 1-8")
        self._width_mult, self._height_mult = width, height
        return self.raw(GS + b"!" + bytes((((width - 1) << 4) | (height - 1),)))

    def feed(self, lines: int = 1) -> TextBuilder:
        """ESC d n: print and feed n lines."""
        if not 0 <= lines <= 255:
            raise ValueError("feed lines must be 0-255")
        return self.raw(ESC + b"d" + bytes((lines,)))

    def cut(self) -> TextBuilder:
        """GS V 66 0: feed to the cutter, then partial cut."""
        return self.raw(GS + b"VB\x00")

    def qr(self, data: str | bytes, size: int = 6, ec: str = "M") -> TextBuilder:
        return self.raw(qr_bytes(data, size, ec))

    def drawer(self, pin: int = 0, on: int = 25, off: int = 250) -> TextBuilder:
        """ESC p m t1 t2: cash drawer pulse on pin 2 (m=0) or 5 (m=1), times in 2 ms units."""
        if pin not in (0, 1) or not (0 <= on <= 255 and 0 <= off <= 255):
            raise ValueError("drawer pin must be 0 or 1, times 0-255")
        return self.raw(ESC + b"p" + bytes((pin, on, off)))

    # text ----------------------------------------------------------------------------------
    def line(self, text: str = "") -> TextBuilder:
        """One already laid-out line plus LF (wrapped if it is still too wide)."""
        return self.text(text)

    def text(self, text: str) -> TextBuilder:
        """Text wrapped to the current columns, each line encoded and ended with LF."""
        for ln in wrap(text, self.columns):
            enc = encode(ln, self.encoding)
            self.replaced.extend(enc.replaced)
            self._buf += enc.data + LF
        return self

    def lines(self, lines: list[str]) -> TextBuilder:
        for ln in lines:
            self.text(ln)
        return self

    def columns_line(self, left: str, right: str, overflow: str = "wrap") -> TextBuilder:
        return self.lines(columns_line(left, right, self.columns, overflow=overflow))

    def item(
        self, name: str, qty: int | str | Decimal, price_fen: int, amount_fen: int
    ) -> TextBuilder:
        return self.lines(item_line(name, qty, price_fen, amount_fen, self.columns))

    def center(self, text: str) -> TextBuilder:
        return self.lines(center(text, self.columns))

    def separator(self, char: str = "-") -> TextBuilder:
        return self.text(separator(self.columns, char))
