"""A virtual ESC/POS receipt printer: a TCP server (port 9100) that decodes what it is sent.

Part of the product: the demo prints to it, tests drive the real printer driver against it, and
installers check a till's setup with it. It keeps every receipt as structured data and plain text,
renders a PNG on demand, and simulates the states that hurt in shops (offline, paper out with the
held job printing on refill, cover open, slow link, connection cut off mid-job).

Decoded commands (everything else is skipped with a logged note; garbage never crashes it):

  ESC @            initialise (modes back to defaults)
  ESC a n          align 0/48 left, 1/49 centre, 2/50 right (taken at the start of a line)
  ESC E n          bold on/off            ESC ! n   print mode (bold bit 3, tall bit 4, wide bit 5)
  GS ! n           character size (width = high nibble + 1, height = low nibble + 1)
  LF               print the line         ESC d n   print and feed n lines
  FS & / FS .      Chinese mode on / off: in it text is GB18030 (1, 2 or 4 bytes a character),
                   outside it single bytes (ASCII, CP437 above 0x7F)
  GS V m [n]       cut: ends the current receipt
  GS ( k ...       QR code (cn=49): model (fn 65), module size (67), error correction (69),
                   store data (80), print (81: records a QR with the stored data); other symbols skipped
  ESC p m t1 t2    cash drawer pulse (recorded: pin 2 or 5, on/off times in ms)
  GS k / GS v 0    barcode / raster image: recorded as a placeholder line, payload skipped
  DLE EOT n        real-time status: ONE byte answered at once, as soon as it is received, even
                   while the printer is offline or holding a job (see the bit layout below)
  GS r n           status (n=1/49 paper sensor, n=2/50 drawer), for clones that answer that instead;
                   answered on receipt like DLE EOT. State `answers` picks which queries are answered:
                   all (default), dle_eot, gs_r (a clone) or none (a printer that never answers)
  ESC - n, ESC 2, ESC 3 n, ESC J n, ESC M n, ESC R n, ESC t n, ESC SP n, ESC $ nL nH, GS B n,
  GS L nL nH, GS W nL nH, GS h n, GS w n, GS H n, GS f n, FS ! n, FS - n, FS S n1 n2, FS W n, HT, CR:
                   understood and ignored (no effect on the text record)

Status bytes (Epson ESC/POS; bits 1 and 4 are always 1, bits 0 and 7 always 0, so 0x12 = all clear):

  DLE EOT 1  printer status   bit 2: drawer kick-out connector pin 3 high (drawer_open)
                              bit 3: offline (set when offline, cover open or paper out)
                              bit 5: waiting for online recovery (never set here)
  DLE EOT 2  offline status   bit 2: cover open
                              bit 3: paper being fed by the FEED button (never set here)
                              bit 5: printing stopped by paper end (paper_out)
                              bit 6: error occurred (never set here)
  DLE EOT 3  error status     bit 3: autocutter error, bit 5: unrecoverable, bit 6: auto-recoverable
                              (never set here: always 0x12)
  DLE EOT 4  paper roll       bits 2+3: roll near end (paper_near_end, or paper_out)
                              bits 5+6: roll end (paper_out)
  GS r 1     paper sensor     bits 0+1: near end, bits 2+3: paper end (bit 1 and 4 NOT fixed: 0x00 clear)
  GS r 2     drawer           bit 0: drawer kick-out connector pin 3 high

  e.g. online 0x12/0x12/0x12/0x12; offline 0x1A for n=1; cover open n=1 0x1A, n=2 0x16;
  paper out n=1 0x1A, n=2 0x32, n=4 0x7E; drawer open n=1 0x16.

Held jobs: while the printer is not ready (offline, cover open or paper out) the bytes it receives
are kept in its buffer, not printed; real-time status requests in them are still answered. When it
becomes ready again the held bytes print, which is what real printers do (the "whole buffer prints
once paper is refilled" hazard; a held drawer pulse opens the drawer then, too).

Connections are served one at a time, as raw-port printers do: a second connection is accepted but
not read (its bytes wait, unanswered) until the first one closes.

Control: Python methods on VirtualPrinter (set_state, receipts, clear, render_png) and an HTTP JSON
API (aiohttp, separate port): GET /state, PUT /state {...}, GET /receipts, GET /receipts/{n},
GET /receipts/{n}.txt, GET /receipts/{n}.png, GET /pending, DELETE /receipts.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import signal
import sys
import time
import unicodedata
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from aiohttp import web

from drivers.fonts import find_cjk_font

log = logging.getLogger("drivers.virtual_printer")

ESC, GS, FS, DLE, EOT, LF = 0x1B, 0x1D, 0x1C, 0x10, 0x04, 0x0A
ALIGN = {0: "left", 48: "left", 1: "center", 49: "center", 2: "right", 50: "right"}
PAPER_DOTS = {58: 384, 80: 576}
PAPER_COLUMNS = {58: 32, 80: 48}
EC_LEVELS = {48: "L", 49: "M", 50: "Q", 51: "H"}
MAX_HELD = 4 * 1024 * 1024  # a held job beyond this is dropped (real printers stop reading instead)

# ---------------------------------------------------------------------------------------------
# simulated state and status bytes


@dataclass
class PrinterState:
    online: bool = True
    paper_out: bool = False
    paper_near_end: bool = False
    cover_open: bool = False
    drawer_open: bool = False  # drawer sensor (kick-out connector pin 3) reads high
    slow_delay: float = 0.0  # seconds to sleep after each slow_every bytes read
    slow_every: int = 64
    drop_after: int | None = None  # cut each connection off after this many bytes
    answers: str = "all"  # status queries answered: all, dle_eot, gs_r (a clone), none (a dumb printer)

    @property
    def ready(self) -> bool:
        return self.online and not self.paper_out and not self.cover_open


def status_byte(n: int, s: PrinterState) -> int:
    """The one byte a printer answers to DLE EOT n (n = 1..4), per the Epson spec."""
    b = 0x12
    if n == 1:
        if s.drawer_open:
            b |= 0x04
        if not s.ready:
            b |= 0x08
    elif n == 2:
        if s.cover_open:
            b |= 0x04
        if s.paper_out:
            b |= 0x20
    elif n == 4:
        if s.paper_near_end or s.paper_out:
            b |= 0x0C
        if s.paper_out:
            b |= 0x60
    return b


def gs_r_byte(n: int, s: PrinterState) -> int:
    """The byte answered to GS r n (n = 1/49 paper sensor, 2/50 drawer)."""
    if n in (1, 49):
        b = 0
        if s.paper_near_end or s.paper_out:
            b |= 0x03
        if s.paper_out:
            b |= 0x0C
        return b
    return 0x01 if s.drawer_open else 0x00


# ---------------------------------------------------------------------------------------------
# receipts


def _cols(text: str) -> int:
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


# ---------------------------------------------------------------------------------------------
# decoder


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
            self._add_text(" " * (8 - (sum(_cols(s["text"]) for s in self._segments) % 8)))
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


# ---------------------------------------------------------------------------------------------
# PNG rendering

def render_png(receipt: Receipt, paper_mm: int = 80) -> bytes:
    """A PNG of the receipt at the paper's width in dots (384 for 58 mm, 576 for 80 mm)."""
    from PIL import Image, ImageDraw, ImageFont  # noqa: PLC0415

    width = PAPER_DOTS[paper_mm]
    col = width // PAPER_COLUMNS[paper_mm]  # 12 dots a half-width column
    base = col * 2  # 24-dot characters
    path = find_cjk_font()
    fonts: dict[int, Any] = {}

    def font(size: int):
        if size not in fonts:
            fonts[size] = ImageFont.truetype(path, size) if path else ImageFont.load_default(size)
        return fonts[size]

    heights = [base * line["height"] + 6 for line in receipt.lines]
    img = Image.new("L", (width, max(sum(heights) + 20, 40)), 255)
    draw = ImageDraw.Draw(img)
    y = 10
    qr_by_line = {q["line"]: q for q in receipt.qr}
    for no, (line, h) in enumerate(zip(receipt.lines, heights)):
        if no in qr_by_line:
            q = qr_by_line[no]
            side = min(width - 20, max(4, q["size"]) * 25)
            h = side + 6
            x = {"left": 0, "center": (width - side) // 2, "right": width - side}[line["align"]]
            img = _grow(img, y + h + 10)
            draw = ImageDraw.Draw(img)
            _draw_qr(img, draw, q["data"], x, y, side)
            y += h
            continue
        total = sum(_cols(s["text"]) * col * s["width"] for s in line["segments"])
        x = {"left": 0, "center": max(0, (width - total) // 2), "right": max(0, width - total)}[line["align"]]
        for s in line["segments"]:
            f = font(base * s["height"])
            for ch in s["text"]:
                w = (2 if unicodedata.east_asian_width(ch) in "WF" else 1) * col * s["width"]
                if x + w > width:  # wrap like the printer does
                    x, y = 0, y + h
                    img = _grow(img, y + h + 10)
                    draw = ImageDraw.Draw(img)
                if ch != " ":
                    draw.text((x, y), ch, font=f, fill=0, stroke_width=1 if s["bold"] else 0, stroke_fill=0)
                x += w
        y += h
    img = img.crop((0, 0, width, max(y + 10, 40)))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def _grow(img, height: int):
    if height <= img.height:
        return img
    from PIL import Image  # noqa: PLC0415

    bigger = Image.new("L", (img.width, height + 200), 255)
    bigger.paste(img, (0, 0))
    return bigger


def _draw_qr(img, draw, data: str, x: int, y: int, side: int) -> None:
    try:
        import qrcode  # noqa: PLC0415

        q = qrcode.QRCode(border=0)
        q.add_data(data)
        q.make(fit=True)
        pic = q.make_image().convert("L").resize((side, side))
        img.paste(pic, (x, y))
    except Exception:  # qrcode not installed: a placeholder square with finder marks
        draw.rectangle((x, y, x + side - 1, y + side - 1), outline=0, width=2)
        m = side // 4
        for fx, fy in ((x, y), (x + side - m, y), (x, y + side - m)):
            draw.rectangle((fx + 3, fy + 3, fx + m - 3, fy + m - 3), fill=0)
        draw.text((x + m, y + side // 2 - 6), "QR", fill=0)


# ---------------------------------------------------------------------------------------------
# the server


class VirtualPrinter:
    """The printer: TCP server for the job stream, optional HTTP control server, receipts in memory."""

    def __init__(self, host: str = "127.0.0.1", port: int = 9100, paper_mm: int = 80, out_dir: str | Path | None = None,
                 control_port: int | None = None, chinese_default: bool = False):
        if paper_mm not in PAPER_DOTS:
            raise ValueError("paper_mm must be 58 or 80")
        self.host, self.port, self.paper_mm = host, port, paper_mm
        self.control_port = control_port
        self.out_dir = Path(out_dir) if out_dir else None
        self.state = PrinterState()
        self.decoder = Decoder(self._on_cut, chinese_default=chinese_default)
        self._receipts: list[Receipt] = []
        self.held = bytearray()
        self.status_requests: list[tuple[str, int, int]] = []  # (command, n, byte answered)
        self.connections = 0
        self.bytes_received = 0
        self._server: asyncio.base_events.Server | None = None
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Event()
        # like a real raw-port printer, one connection at a time: the next waits (unread) until it closes
        self._one_at_a_time = asyncio.Lock()
        self._png_cache: dict[int, bytes] = {}

    # -- lifecycle
    async def start(self) -> "VirtualPrinter":
        self._server = await asyncio.start_server(self._client, self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        if self.control_port is not None:
            self._runner = web.AppRunner(self.control_app(), access_log=None, handle_signals=False)
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.host, self.control_port, reuse_address=True)
            await site.start()
            self.control_port = self._runner.addresses[0][1]
        if self.out_dir:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        log.info("listening", extra={"kv": {"port": self.port, "control_port": self.control_port,
                                           "paper_mm": self.paper_mm, "out": self.out_dir or "-"}})
        return self

    async def stop(self) -> None:
        if self._server:
            self._server.close()
            for w in list(getattr(self, "_writers", ())):
                w.transport.abort()
            await self._server.wait_closed()
            self._server = None
        if self._runner:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self):
        return await self.start()

    async def __aexit__(self, *exc):
        await self.stop()

    # -- control
    def set_state(self, **changes) -> PrinterState:
        names = {f.name for f in fields(PrinterState)}
        bad = set(changes) - names
        if bad:
            raise ValueError(f"unknown state keys: {sorted(bad)}")
        if changes.get("answers", "all") not in ("all", "dle_eot", "gs_r", "none"):
            raise ValueError("answers must be all, dle_eot, gs_r or none")
        for k, v in changes.items():
            setattr(self.state, k, v)
        log.info("state", extra={"kv": changes})
        self._release()
        return self.state

    def receipts(self) -> list[Receipt]:
        return list(self._receipts)

    def receipt(self, n: int) -> Receipt:
        return self._receipts[n]

    def pending(self) -> Receipt:
        """What has printed since the last cut (a job cut off mid-way stays here)."""
        return self.decoder.receipt

    def clear(self) -> None:
        self._receipts.clear()
        self._png_cache.clear()
        self.decoder.receipt.lines.clear()

    def render_png(self, n: int) -> bytes:
        if n not in self._png_cache:
            self._png_cache[n] = render_png(self._receipts[n], self.paper_mm)
        return self._png_cache[n]

    async def wait_receipts(self, count: int, timeout: float = 2.0) -> list[Receipt]:
        async def wait():
            while len(self._receipts) < count:
                self._changed.clear()
                await self._changed.wait()
        await asyncio.wait_for(wait(), timeout)
        return self.receipts()

    # -- internals
    def _on_cut(self, r: Receipt) -> None:
        r.index = len(self._receipts)
        self._receipts.append(r)
        self._changed.set()
        log.info("receipt", extra={"kv": {"n": r.index, "lines": len(r.lines), "qr": len(r.qr),
                                         "drawer": len(r.drawer)}})
        if self.out_dir:
            stem = self.out_dir / f"receipt-{r.index + 1:04d}"
            stem.with_suffix(".txt").write_text(r.text + "\n", encoding="utf-8")
            stem.with_suffix(".json").write_text(json.dumps(r.to_dict(), ensure_ascii=False, indent=1), encoding="utf-8")
            try:
                stem.with_suffix(".png").write_bytes(self.render_png(r.index))
            except Exception as exc:  # a missing Pillow must not stop the printer
                log.warning("png failed", extra={"kv": {"n": r.index, "error": repr(exc)}})

    def _release(self) -> None:
        if self.state.ready and self.held:
            data = bytes(self.held)
            self.held.clear()
            log.info("printing held job", extra={"kv": {"bytes": len(data)}})
            self.decoder.feed(data)
            self._changed.set()

    def _accept(self, data: bytes) -> None:
        if self.state.ready:
            self.decoder.feed(data)
        elif len(self.held) + len(data) <= MAX_HELD:
            self.held += data
        else:
            log.warning("buffer full, bytes dropped", extra={"kv": {"bytes": len(data)}})
        self._changed.set()

    def _realtime(self, buf: bytes, writer: asyncio.StreamWriter) -> bytes:
        """Answer DLE EOT n and GS r n found in buf at once; return an incomplete tail to keep."""
        i = 0
        n = len(buf)
        while i < n:
            c = buf[i]
            if c in (DLE, GS):
                if i + 1 >= n:
                    return buf[i:]
                second = buf[i + 1]
                if (c, second) in ((DLE, EOT), (GS, 0x72)):
                    if i + 2 >= n:
                        return buf[i:]
                    arg = buf[i + 2]
                    answers = self.state.answers
                    if c == DLE and 1 <= arg <= 4 and answers in ("all", "dle_eot"):
                        self._answer(writer, "DLE EOT", arg, status_byte(arg, self.state))
                    elif c == GS and arg in (1, 2, 49, 50) and answers in ("all", "gs_r"):
                        self._answer(writer, "GS r", arg, gs_r_byte(arg, self.state))
                    i += 3
                    continue
            i += 1
        return b""

    def _answer(self, writer: asyncio.StreamWriter, cmd: str, n: int, value: int) -> None:
        self.status_requests.append((cmd, n, value))
        if not writer.is_closing():
            writer.write(bytes([value]))

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers = self.__dict__.setdefault("_writers", set())
        writers.add(writer)
        try:
            async with self._one_at_a_time:
                await self._serve(reader, writer)
        finally:
            writers.discard(writer)
            if not writer.is_closing():
                writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        peer = writer.get_extra_info("peername")
        received = 0
        tail = b""
        log.info("connection", extra={"kv": {"peer": peer}})
        try:
            while True:
                st = self.state
                size = max(1, st.slow_every) if st.slow_delay > 0 else 65536
                data = await reader.read(size)
                if not data:
                    break
                drop = st.drop_after is not None and received + len(data) >= st.drop_after
                if drop:
                    data = data[:max(0, st.drop_after - received)]
                received += len(data)
                self.bytes_received += len(data)
                tail = self._realtime(tail + data, writer)
                self._accept(data)
                if drop:
                    log.info("dropping connection", extra={"kv": {"peer": peer, "after": received}})
                    writer.transport.abort()
                    return
                await writer.drain()
                if st.slow_delay > 0:
                    await asyncio.sleep(st.slow_delay)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass

    # -- HTTP control API
    def control_app(self) -> web.Application:
        app = web.Application()
        vp = self

        def summary(r: Receipt) -> dict:
            d = r.to_dict()
            d["png"] = f"/receipts/{r.index}.png"
            d["txt"] = f"/receipts/{r.index}.txt"
            return d

        def pick(request) -> Receipt:
            n = int(request.match_info["n"])
            if not 0 <= n < len(vp._receipts):
                raise web.HTTPNotFound(text=json.dumps({"error": f"no receipt {n}"}), content_type="application/json")
            return vp._receipts[n]

        async def get_state(request):
            return web.json_response({**asdict(vp.state), "ready": vp.state.ready, "held_bytes": len(vp.held),
                                      "receipts": len(vp._receipts), "port": vp.port, "paper_mm": vp.paper_mm})

        async def put_state(request):
            try:
                body = await request.json()
                if not isinstance(body, dict):
                    raise ValueError("body must be a JSON object")
                vp.set_state(**body)
            except (ValueError, TypeError, json.JSONDecodeError) as exc:
                return web.json_response({"error": str(exc)}, status=400)
            return await get_state(request)

        async def list_receipts(request):
            return web.json_response([summary(r) for r in vp._receipts])

        async def one(request):
            return web.json_response(summary(pick(request)))

        async def txt(request):
            return web.Response(text=pick(request).text + "\n", content_type="text/plain", charset="utf-8")

        async def png(request):
            r = pick(request)
            return web.Response(body=vp.render_png(r.index), content_type="image/png")

        async def pending(request):
            return web.json_response({**vp.pending().to_dict(), "held_bytes": len(vp.held)})

        async def delete(request):
            vp.clear()
            return web.json_response({"receipts": 0})

        app.router.add_get("/state", get_state)
        app.router.add_put("/state", put_state)
        app.router.add_get("/receipts", list_receipts)
        app.router.add_delete("/receipts", delete)
        app.router.add_get(r"/receipts/{n:\d+}.txt", txt)
        app.router.add_get(r"/receipts/{n:\d+}.png", png)
        app.router.add_get(r"/receipts/{n:\d+}", one)
        app.router.add_get("/pending", pending)
        return app


# ---------------------------------------------------------------------------------------------
# CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9100, help="ESC/POS port (default 9100; 0: any free port)")
    parser.add_argument("--control-port", type=int, default=9101, help="HTTP JSON control port (default 9101)")
    parser.add_argument("--paper", type=int, choices=(58, 80), default=80, help="paper width in mm (default 80)")
    parser.add_argument("--out", metavar="DIR", help="also write each receipt as .txt, .json and .png here")
    parser.add_argument("--chinese-default", action="store_true",
                        help="start in Chinese mode, as many Chinese printers do (default: FS & needed)")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))


async def serve(args, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    vp = VirtualPrinter(args.host, args.port, args.paper, args.out, args.control_port,
                        chinese_default=getattr(args, "chinese_default", False))
    await vp.start()
    try:
        await stop.wait()
    finally:
        await vp.stop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    log.info("stopped", extra={"kv": {"receipts": len(vp._receipts)}})


def run(args) -> int:
    from edge.core import log as log_mod  # noqa: PLC0415

    log_mod.setup(getattr(args, "log_level", "info"))
    try:
        asyncio.run(serve(args))
    except OSError as exc:
        log.error("cannot start", extra={"kv": {"port": args.port, "error": str(exc)}})
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drivers.virtual_printer", description="virtual ESC/POS printer")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
