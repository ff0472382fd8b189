"""Serial barcode scanners (USB-CDC `/dev/ttyACM*`, USB-serial `/dev/ttyUSB*`, RS-232), via pyserial.

One thread per scanner (drivers/scan.py: `on_scan` is called from that thread; hop to the event loop
with `loop.call_soon_threadsafe`). The port is read with a short timeout, so stop() is prompt and a
code without a terminator (`terminator = "none"`) ends after an idle gap.

Splitting (CodeSplitter, pure, no I/O):
  - CR: a CR ends a code; LF: an LF ends a code; CRLF: a CR or a lone LF ends a code.
    In every mode a CR followed by an LF is *one* terminator: the LF of a CRLF scanner never makes an
    empty code, and a scanner set to CRLF still works when the config says CR or LF.
  - none: a code ends after `idle_gap` seconds without bytes (50 ms: far above the gap between the
    bytes of one code even at 1200 baud, far below the time between two scans).
  - A buffer never grows past `max_length` bytes: the rest of an overlong code is only counted, and
    the whole code is discarded at its terminator ("too_long").
  - A CR or LF that is not the terminator is dropped when it comes before the first byte of a code:
    line noise between codes is dropped, and the next code is kept whole.
  - Bytes that stop for `incomplete_after` seconds with no terminator are a cut-off code (the
    terminator was lost); they are discarded ("incomplete") rather than glued to the next scan.

Checking (classify): control bytes other than GS (0x1D, the GS1 FNC1 separator that GS1 DataMatrix /
GS1-128 scanners transmit) or NUL -> "control_character"; UTF-8 cut off in the middle of its last
character (`E4 B8` then the terminator) -> "incomplete_character"; not UTF-8 and not GB18030 ->
"invalid_encoding" (see decode() for text that is both); C1 control characters in the decoded text ->
"control_character"; nothing -> "empty".
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import serial

from drivers.models import SerialScanner
from drivers.scan import Scan, ScannerError, ScannerReader

CR, LF = 0x0D, 0x0A
GS = 0x1D
READ_TIMEOUT = 0.05      # the longest a read blocks: how soon stop() is seen
IDLE_GAP = 0.05          # terminator "none": a code ends after this long without bytes
MAX_LENGTH = 256         # bytes; longer codes are discarded
INCOMPLETE_AFTER = 1.0   # bytes with no terminator for this long are a cut-off code
PATH_CHECK_EVERY = 1.0   # while idle, check this often that the port's path still exists
ALLOWED_CONTROLS = frozenset({GS})


@dataclass(frozen=True)
class Piece:
    """One code as split from the byte stream. `reason` is set when the splitter already knows it is bad."""
    raw: bytes           # the bytes (at most max_length of them), without the terminator
    length: int          # how many bytes the code really had
    reason: str | None = None


class CodeSplitter:
    """Bytes in, codes out. `feed` with what was read, `idle` when nothing was read; both take
    time.monotonic() so the caller (and a test) controls the clock."""

    def __init__(self, terminator: str, *, max_length: int = MAX_LENGTH, idle_gap: float = IDLE_GAP,
                 incomplete_after: float = INCOMPLETE_AFTER):
        if terminator not in ("CR", "LF", "CRLF", "none"):
            raise ValueError(f"unknown terminator {terminator!r}")
        self.terminator = terminator
        self.max_length = max_length
        self.idle_gap = idle_gap
        self.incomplete_after = incomplete_after
        self._ends = {"CR": (CR,), "LF": (LF,), "CRLF": (CR, LF), "none": ()}[terminator]
        self._buf = bytearray()
        self._length = 0          # bytes in the current code, including those beyond max_length
        self._after_cr = False    # the previous byte was a CR that ended a code: swallow one LF
        self._last_byte = 0.0

    @property
    def pending(self) -> int:
        return self._length

    def feed(self, data: bytes, now: float) -> list[Piece]:
        out: list[Piece] = []
        for b in data:
            if self._after_cr:
                self._after_cr = False
                if b == LF:
                    continue
            if b in self._ends:
                self._end(out)
                self._after_cr = b == CR
            elif b in (CR, LF) and not self._length:
                # line noise (`\r\r\r\n\n`): a CR or LF that is not this mode's terminator, before
                # any byte of a code, would otherwise make the next real code a "control_character"
                continue
            else:
                self._length += 1
                if len(self._buf) < self.max_length:
                    self._buf.append(b)
        if self.terminator == "LF" and out:
            out = [_strip_cr(p) for p in out]
        if data:
            self._last_byte = now
        return out

    def idle(self, now: float) -> list[Piece]:
        """Called when a read returned nothing: ends a code after the gap (none) or drops a cut-off one."""
        quiet = now - self._last_byte
        if self._after_cr and quiet >= self.incomplete_after:
            self._after_cr = False
        if not self._length:
            return []
        if self.terminator == "none" and quiet >= self.idle_gap:
            out: list[Piece] = []
            self._end(out)
            return out
        if self.terminator != "none" and quiet >= self.incomplete_after:
            piece = Piece(bytes(self._buf), self._length, "incomplete")
            self._reset()
            return [piece]
        return []

    def reset(self) -> Piece | None:
        """Forget everything; returns the code that was cut off (as "incomplete"), if any."""
        piece = Piece(bytes(self._buf), self._length, "incomplete") if self._length else None
        self._reset()
        self._after_cr = False
        return piece

    def _end(self, out: list[Piece]) -> None:
        reason = "too_long" if self._length > self.max_length else None
        out.append(Piece(bytes(self._buf), self._length, reason))
        self._reset()

    def _reset(self) -> None:
        self._buf.clear()
        self._length = 0


def _strip_cr(piece: Piece) -> Piece:
    """LF mode: a CR right before the LF belongs to the terminator (a CRLF scanner)."""
    if piece.reason is None and piece.raw.endswith(b"\r"):
        return Piece(piece.raw[:-1], piece.length - 1)
    return piece


# What Chinese text in GB18030 decodes to: CJK ideographs, CJK and full-width punctuation, “”…·
_CJK_RANGES = ((0x3000, 0x303F), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0xFF00, 0xFFEF),
               (0x2010, 0x2027), (0x00B7, 0x00B7))


def _looks_chinese(text: str) -> bool:
    return all(c < "\x80" or any(lo <= ord(c) <= hi for lo, hi in _CJK_RANGES) for c in text)


def decode(raw: bytes) -> str | None:
    """UTF-8, else GB18030, else None.

    Short GB18030 text is often valid UTF-8 too ("券" is C8 AF in GB18030, which UTF-8 reads as "ȯ"):
    when the UTF-8 reading has 2-byte characters (U+0080..U+07FF: Latin accents, Greek, Cyrillic...)
    and the GB18030 reading is plain Chinese, the GB18030 reading wins. Chinese in UTF-8 is 3 bytes a
    character and never hits this.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and not any("\x80" <= c <= "\u07ff" for c in text):
        return text
    try:
        gb = raw.decode("gb18030")
    except UnicodeDecodeError:
        return text
    if text is None or _looks_chinese(gb):
        return gb
    return text


def _cut_utf8(raw: bytes) -> bool:
    """UTF-8 that is valid up to its end, where a character's bytes stop short (`E4 B8`).

    GB18030 would read those last bytes as some other character (E4 B8 is 涓): a lost byte would
    become a wrong code. A GB18030 scanner's code can look the same only when every byte of it is
    also valid UTF-8 up to a 2-byte character at its end, which is rare; such a code is discarded.
    """
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.reason == "unexpected end of data" and exc.end == len(raw)
    return False


def classify(raw: bytes) -> tuple[str | None, str | None]:
    """(text, None) for a good code, (None, reason) for one to discard."""
    if not raw:
        return None, "empty"
    if any((b < 0x20 or b == 0x7F) and b not in ALLOWED_CONTROLS for b in raw):
        return None, "control_character"  # NUL included; never part of a UTF-8 or GB18030 sequence
    if _cut_utf8(raw):
        return None, "incomplete_character"
    text = decode(raw)
    if text is None:
        return None, "invalid_encoding"
    if any("\x80" <= c <= "\x9f" for c in text):
        return None, "control_character"
    return text, None


class SerialScannerReader(ScannerReader):
    """Reads one serial scanner in its own thread; see drivers/scan.py for state, counters and on_scan.

    `idle_gap` (terminator "none") and `max_length` default to the config's `idle_gap_ms` /
    `max_length` when the config model has them, else to IDLE_GAP / MAX_LENGTH.
    """

    source = "serial"

    def __init__(self, cfg: SerialScanner, on_scan: Callable[[Scan], None], *, reconnect_max: float = 5.0,
                 idle_gap: float | None = None, max_length: int | None = None,
                 incomplete_after: float = INCOMPLETE_AFTER):
        super().__init__(cfg, on_scan, reconnect_max=reconnect_max)
        if idle_gap is None:
            gap_ms = getattr(cfg, "idle_gap_ms", None)
            idle_gap = IDLE_GAP if gap_ms is None else gap_ms / 1000
        if max_length is None:
            max_length = getattr(cfg, "max_length", None) or MAX_LENGTH
        self.splitter = CodeSplitter(cfg.terminator, max_length=max_length, idle_gap=idle_gap,
                                     incomplete_after=incomplete_after)
        # a read must return well within the gap for "none" to end codes on time
        self._read_timeout = min(READ_TIMEOUT, idle_gap / 4) if cfg.terminator == "none" else READ_TIMEOUT
        self._port: serial.Serial | None = None
        self._path_checked = 0.0

    def _open(self) -> None:
        try:
            # exclusive: a second program (or a second daemon) opening the scanner fails instead of
            # stealing half of the bytes
            self._port = serial.Serial(self.cfg.path, self.cfg.baud, timeout=self._read_timeout, exclusive=True)
        except ValueError as exc:  # pyserial: a parameter the port refuses
            raise ScannerError(f"cannot open {self.cfg.path}: {exc}") from exc
        self.splitter.reset()
        self._path_checked = time.monotonic()

    def _close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except Exception:  # noqa: BLE001 (closing an unplugged port may fail; it is gone either way)
                pass
        piece = self.splitter.reset()
        if piece is not None:  # unplugged in the middle of a code
            self._handle(piece)

    def _pump(self) -> None:
        port = self._port
        data = port.read(1)  # blocks at most the read timeout
        if data and port.in_waiting:
            data += port.read(port.in_waiting)
        now = time.monotonic()
        pieces = self.splitter.feed(data, now) if data else self.splitter.idle(now)
        if not data and now - self._path_checked >= PATH_CHECK_EVERY:
            # some USB-serial drivers keep a dead port quiet instead of failing the read
            self._path_checked = now
            if not os.path.exists(self.cfg.path):
                raise ScannerError(f"{self.cfg.path} is gone")
        for piece in pieces:
            self._handle(piece)

    def _handle(self, piece: Piece) -> None:
        if piece.reason is not None:
            self._discard(piece.reason, piece.raw, piece.length)
            return
        text, reason = classify(piece.raw)
        if reason is not None:
            self._discard(reason, piece.raw, piece.length)
        else:
            self._deliver(text, piece.raw)
