"""The ESC/POS stream decoded into receipts: text lines with their modes, QR codes, drawer pulses."""

from __future__ import annotations

import logging
import time
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Callable

log = logging.getLogger("drivers.virtual_printer")

ESC, GS, FS, DLE, EOT, LF = 0x1B, 0x1D, 0x1C, 0x10, 0x04, 0x0A
ALIGN = {0: "left", 48: "left", 1: "center", 49: "center", 2: "right", 50: "right"}
EC_LEVELS = {48: "L", 49: "M", 50: "Q", 51: "H"}


def columns(text: str) -> int:
    """Columns the text takes on paper: Chinese and other wide characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


@dataclass
class Receipt:
    index: int
    lines: list[dict] = field(default_factory=list)  # {text, align, bold, width, height, segments}
    qr: list[dict] = field(default_factory=list)  # {data, model, size, ec, line}
    drawer: list[dict] = field(default_factory=list)  # {pin, on_ms, off_ms}
    barcodes: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # skipped/unknown commands
    cut: str | None = None  # "full" / "partial"
    finished_at: float | None = None

    @property
    def text(self) -> str:
        return "\n".join(line["text"] for line in self.lines)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["text"] = self.text
        return d


class Decoder:
    """Incremental ESC/POS parser. feed() any chunking of the stream; it keeps what is incomplete."""

    def __init__(self, on_cut: Callable[[Receipt], None] | None = None, chinese_default: bool = False):
        self.on_cut = on_cut or (lambda r: None)
        self.chinese_default = chinese_default
        self.buf = bytearray()
        self.count = 0
        self._reset_modes()
        self.receipt = Receipt(index=self.count)
        self._segments: list[dict] = []
        self._line_align: str | None = None
        self.qr_store: bytes = b""
        self.qr_params = {"model": 2, "size": 3, "ec": "L"}

    def _reset_modes(self) -> None:
        self.align = "left"
        self.bold = False
        self.width = 1
        self.height = 1
        self.chinese = self.chinese_default

    # -- output building
    def _add_text(self, text: str) -> None:
        if not text:
            return
        if self._line_align is None:
            self._line_align = self.align
        seg = self._segments[-1] if self._segments else None
        if seg and (seg["bold"], seg["width"], seg["height"]) == (self.bold, self.width, self.height):
            seg["text"] += text
        else:
            self._segments.append({"text": text, "bold": self.bold, "width": self.width, "height": self.height})

    def _newline(self) -> None:
        segs = self._segments
        self.receipt.lines.append({
            "text": "".join(s["text"] for s in segs),
            "align": self._line_align or self.align,
            "bold": any(s["bold"] for s in segs),
            "width": max((s["width"] for s in segs), default=self.width),
            "height": max((s["height"] for s in segs), default=self.height),
            "segments": segs,
        })
        self._segments = []
        self._line_align = None

    def _flush_partial(self) -> None:
        if self._segments:
            self._newline()

    def _note(self, what: str) -> None:
        self.receipt.notes.append(what)
        log.info("skipped", extra={"kv": {"what": what}})

    def _cut(self, kind: str) -> None:
        self._flush_partial()
        r = self.receipt
        r.cut = kind
        r.finished_at = time.time()
        self.count += 1
        self.receipt = Receipt(index=self.count)
        self.on_cut(r)

    # -- parsing
    def feed(self, data: bytes) -> None:
        self.buf += data
        i = 0
        buf = self.buf
        while i < len(buf):
            try:
                j = self._one(buf, i)
            except Exception as exc:  # never crash on garbage: skip one byte
                self._note(f"error at byte 0x{buf[i]:02x}: {exc!r}")
                j = i + 1
            if j is None:  # incomplete command: wait for more bytes
                break
            i = j
        del self.buf[:i]

    def _one(self, b: bytearray, i: int) -> int | None:
        c = b[i]
        n = len(b)

        def need(k: int) -> bool:
            return i + k <= n

        if c == LF:
            self._newline()
            return i + 1
        if c == ESC:
            if not need(2):
                return None
            cmd = b[i + 1]
            if cmd == 0x40:  # ESC @
                self._reset_modes()
                return i + 2
            if cmd in (0x61, 0x45, 0x64, 0x21, 0x2D, 0x33, 0x4A, 0x4D, 0x52, 0x74, 0x20, 0x47, 0x56,
                       0x7B, 0x55, 0x63):
                if not need(3):
                    return None
                arg = b[i + 2]
                if cmd == 0x61:
                    self.align = ALIGN.get(arg, self.align)
                elif cmd == 0x45:
                    self.bold = bool(arg & 1)
                elif cmd == 0x64:
                    self._flush_partial()
                    for _ in range(arg):
                        self._newline()
                elif cmd == 0x21:
                    self.bold = bool(arg & 0x08)
                    self.height = 2 if arg & 0x10 else 1
                    self.width = 2 if arg & 0x20 else 1
                elif cmd == 0x63:  # ESC c 3/4/5 n: one more byte
                    if not need(4):
                        return None
                    return i + 4
                return i + 3
            if cmd == 0x70:  # ESC p m t1 t2
                if not need(5):
                    return None
                m, t1, t2 = b[i + 2], b[i + 3], b[i + 4]
                self.receipt.drawer.append({"pin": 5 if m in (1, 49) else 2, "on_ms": t1 * 2, "off_ms": t2 * 2})
                return i + 5
            if cmd == 0x32:  # ESC 2
                return i + 2
            if cmd == 0x24:  # ESC $ nL nH
                return i + 4 if need(4) else None
            self._note(f"ESC 0x{cmd:02x}")
            return i + 2
        if c == GS:
            if not need(2):
                return None
            cmd = b[i + 1]
            if cmd == 0x21:  # GS ! n
                if not need(3):
                    return None
                arg = b[i + 2]
                self.width = min(8, (arg >> 4) + 1)
                self.height = min(8, (arg & 0x0F) + 1)
                return i + 3
            if cmd == 0x56:  # GS V m [n]
                if not need(3):
                    return None
                m = b[i + 2]
                k = 4 if m in (65, 66, 97, 98, 103, 104) else 3
                if not need(k):
                    return None
                self._cut("full" if m in (0, 48, 65, 97, 103) else "partial")
                return i + k
            if cmd == 0x28:  # GS ( X pL pH ...
                if not need(5):
                    return None
                fn_class = b[i + 2]
                ln = b[i + 3] + 256 * b[i + 4]
                if not need(5 + ln):
                    return None
                body = bytes(b[i + 5:i + 5 + ln])
                if fn_class == 0x6B:  # GS ( k
                    self._symbol(body)
                else:
                    self._note(f"GS ( 0x{fn_class:02x}")
                return i + 5 + ln
            if cmd == 0x72:  # GS r n: answered on receipt by the server
                return i + 3 if need(3) else None
            if cmd in (0x42, 0x68, 0x77, 0x48, 0x66, 0x62, 0x61):  # one-byte arguments
                return i + 3 if need(3) else None
            if cmd in (0x4C, 0x57, 0x50):
                return i + 4 if need(4) else None
            if cmd == 0x6B:  # GS k m ...
                if not need(3):
                    return None
                m = b[i + 2]
                if m <= 6:
                    end = b.find(0, i + 3)
                    if end < 0:
                        return None if n - i < 512 else i + 3
                    data, nxt = bytes(b[i + 3:end]), end + 1
                else:
                    if not need(4):
                        return None
                    k = b[i + 3]
                    if not need(4 + k):
                        return None
                    data, nxt = bytes(b[i + 4:i + 4 + k]), i + 4 + k
                text = data.decode("ascii", "replace")
                self.receipt.barcodes.append({"type": m, "data": text})
                self._flush_partial()
                self._add_text(f"[barcode {text}]")
                self._newline()
                return nxt
            if cmd == 0x76:  # GS v 0 m xL xH yL yH data
                if not need(8):
                    return None
                w = b[i + 4] + 256 * b[i + 5]
                h = b[i + 6] + 256 * b[i + 7]
                if not need(8 + w * h):
                    return None
                self._flush_partial()
                self._add_text(f"[image {w * 8}x{h}]")
                self._newline()
                return i + 8 + w * h
            self._note(f"GS 0x{cmd:02x}")
            return i + 2
        if c == FS:
            if not need(2):
                return None
            cmd = b[i + 1]
            if cmd == 0x26:
                self.chinese = True
                return i + 2
            if cmd == 0x2E:
                self.chinese = False
                return i + 2
            if cmd in (0x21, 0x2D, 0x57, 0x43):
                return i + 3 if need(3) else None
            if cmd == 0x53:
                return i + 4 if need(4) else None
            self._note(f"FS 0x{cmd:02x}")
            return i + 2
        if c == DLE:
            if not need(2):
                return None
            if b[i + 1] in (0x04, 0x05):  # DLE EOT n / DLE ENQ n: answered on receipt by the server
                return i + 3 if need(3) else None
            if b[i + 1] == 0x14:  # DLE DC4 fn a b
                return i + 5 if need(5) else None
            self._note("DLE 0x%02x" % b[i + 1])
            return i + 2
        if c == 0x09:  # HT
            self._add_text(" " * (8 - (sum(columns(s["text"]) for s in self._segments) % 8)))
            return i + 1
        if c == 0x0D or c == 0x0C:  # CR ignored; FF (page mode) ignored
            return i + 1
        if c < 0x20 or c == 0x7F:
            self._note(f"control 0x{c:02x}")
            return i + 1
        return self._text(b, i)

    def _text(self, b: bytearray, i: int) -> int | None:
        """A run of printable bytes up to the next control byte (keeping multibyte characters whole)."""
        n = len(b)
        j = i
        out: list[str] = []
        while j < n:
            c = b[j]
            if c < 0x20 or c == 0x7F:
                break
            if c < 0x80:
                out.append(chr(c))
                j += 1
                continue
            if not self.chinese:
                out.append(bytes([c]).decode("cp437"))
                j += 1
                continue
            if c == 0x80 or c == 0xFF:
                out.append("\ufffd")
                j += 1
                continue
            if j + 1 >= n:
                break  # need the trail byte
            c2 = b[j + 1]
            if 0x30 <= c2 <= 0x39:  # four-byte GB18030
                if j + 3 >= n:
                    break
                chunk = bytes(b[j:j + 4])
                k = 4
            else:
                chunk = bytes(b[j:j + 2])
                k = 2
            try:
                out.append(chunk.decode("gb18030"))
                j += k
            except UnicodeDecodeError:
                out.append("\ufffd")
                j += 1
        if j == i:
            return None  # an incomplete multibyte character only
        self._add_text("".join(out))
        return j

    def _symbol(self, body: bytes) -> None:
        if len(body) < 2:
            self._note("GS ( k short")
            return
        cn, fn, p = body[0], body[1], body[2:]
        if cn != 49:  # PDF417 and others
            self._note(f"GS ( k cn={cn} fn={fn}")
            return
        if fn == 65 and p:
            self.qr_params["model"] = {49: 1, 50: 2, 51: 3}.get(p[0], 2)
        elif fn == 67 and p:
            self.qr_params["size"] = p[0]
        elif fn == 69 and p:
            self.qr_params["ec"] = EC_LEVELS.get(p[0], "L")
        elif fn == 80:  # store: m=48 then data
            self.qr_store = p[1:]
        elif fn == 81:
            try:
                data = self.qr_store.decode("utf-8")
            except UnicodeDecodeError:
                data = self.qr_store.decode("gb18030", "replace")
            self._flush_partial()
            line = len(self.receipt.lines)
            self.receipt.qr.append({"data": data, **self.qr_params, "line": line, "align": self.align})
            self._add_text(f"[QR {data}]")
            self._newline()
        else:
            self._note(f"GS ( k cn=49 fn={fn}")
