"""Barcode and QR decoding of one image: zxing-cpp first, pyzbar as the fallback (DESIGN.md §6).

`decode(image)` takes a numpy image (BGR, BGRA or 8-bit grey) and returns what the libraries
report, never more. The order of work, each step only when every step before it found nothing:

  1. the primary library (zxing-cpp by default: faster, finds more, keeps UTF-8 intact);
  2. the other library (`fallback=True`);
  3. `variants=True`: a slightly blurred copy, then (images up to 640 px) a 2x upscaled copy, each
     read by both libraries. Measured on tests/corpus/barcodes (bench/scan.py) they find codes
     neither library finds in the image as it is (qrcode-2 +1, ean13-1 +1, ean13-2 +1) and no false
     hit; they cost nothing when a code is found at once, but up to ~3 more reads of an image with
     no code, so the camera driver leaves them off (the next frame is the better retry).

Text. zxing-cpp is asked for the plain text (TextMode.Plain: the bytes of the code transcoded to
text, control characters such as GS1's GS kept as they are, as a serial scanner sends them).
zbar guesses a character set and converts with iconv, which turns UTF-8 Chinese into Shift-JIS
look-alikes (测试 -> 皜祈岫). We switch zbar's conversion off (ZBAR_CFG_BINARY) and transcode its
raw bytes ourselves: UTF-8 when they are valid UTF-8, else Shift-JIS (what zxing-cpp's guess
would choose for Japanese codes), else GB18030, else Latin-1.

Linear misreads. zxing-cpp can read a one-row sliver of an EAN-13 as a different, check-digit-valid
number (tests/corpus/barcodes/ean13-1/35: 7034759003930 beside the real 5030159003930). When one
image yields two or more *different* linear codes of the same format, each is checked: kept when
the other library reads the same text, or when it was read over many rows (its quad at least
THICK_LINEAR of its length thick); a thin, unconfirmed one is dropped. A single linear code, or
codes of different formats, are kept as read.

Results are deduplicated on (format, text). Blocking and CPU-bound; safe to call from several
threads (zxing-cpp keeps no state between calls, and each zbar call makes its own scanner); the
camera driver calls it from its decode thread.
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass, replace
from typing import Literal

import cv2
import numpy as np
import zxingcpp

Point = tuple[int, int]
Library = Literal["zxing", "zbar"]

THICK_LINEAR = 0.1  # see "Linear misreads" above
ZBAR_CFG_BINARY = 4  # zbar >= 0.23: return the raw bytes of QR codes (pyzbar 0.1.9's enum lacks it)
_ZBAR_QRCODE = 64

# zbar's symbol names -> zxing-cpp's format names, so both report formats the same way
_ZBAR_FORMATS = {
    "QRCODE": "QRCode", "EAN13": "EAN13", "EAN8": "EAN8", "UPCA": "UPCA", "UPCE": "UPCE",
    "ISBN13": "EAN13", "ISBN10": "EAN13", "CODE128": "Code128", "CODE39": "Code39", "CODE93": "Code93",
    "I25": "ITF", "CODABAR": "Codabar", "PDF417": "PDF417", "DATABAR": "DataBar", "DATABAR_EXP": "DataBarExp",
    "SQCODE": "SQCode", "EAN2": "EAN2", "EAN5": "EAN5",
}
_ZBAR_VALUES = {"QRCODE": 64, "EAN13": 13, "EAN8": 8, "UPCA": 12, "UPCE": 9, "ISBN13": 14, "ISBN10": 10, "CODE128": 128,
                "CODE39": 39, "CODE93": 93, "I25": 25, "CODABAR": 38, "PDF417": 57, "DATABAR": 34, "DATABAR_EXP": 35,
                "SQCODE": 80, "EAN2": 2, "EAN5": 5}
_ZBAR_SYMBOLS: dict[str, list[int]] = {}  # zxing-cpp's format name -> zbar's symbologies
for _zbar_name, _value in _ZBAR_VALUES.items():
    _ZBAR_SYMBOLS.setdefault(_ZBAR_FORMATS[_zbar_name], []).append(_value)
_LINEAR = {"EAN13", "EAN8", "UPCA", "UPCE", "Code128", "Code39", "Code93", "ITF", "Codabar", "DataBar",
           "DataBarExp", "DataBarLtd"}


@dataclass(frozen=True)
class Decoded:
    text: str
    format: str            # zxing-cpp's name: "QRCode", "EAN13", "Code128", ...
    raw: bytes | None      # the code's bytes (before any transcoding) where the library gives them
    quad: tuple[Point, Point, Point, Point]  # top-left, top-right, bottom-right, bottom-left (pixels)
    library: Library       # which library read it
    variant: str = "plain"  # which image: "plain" or the name of the preprocessed copy

    @property
    def linear(self) -> bool:
        return self.format in _LINEAR


def to_gray(image: np.ndarray) -> np.ndarray:
    """An 8-bit, C-contiguous grey copy (or the image itself when it is one already)."""
    if image.ndim == 3:
        code = cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        image = cv2.cvtColor(image, code)
    if image.dtype != np.uint8:
        raise ValueError(f"decode: 8-bit images only, not {image.dtype}")
    return np.ascontiguousarray(image)


# -- zxing-cpp ------------------------------------------------------------------------------------

_zx_name_cache: dict[object, str] = {}


def _zx_format(fmt) -> str:
    name = _zx_name_cache.get(fmt)
    if name is None:
        name = _zx_name_cache[fmt] = getattr(fmt, "name", None) or str(fmt).replace("-", "").replace(" ", "")
    return name


_zx_formats_cache: dict[tuple[str, ...], object] = {}


def _zx_formats(formats: tuple[str, ...]):
    parsed = _zx_formats_cache.get(formats)
    if parsed is None:
        parsed = _zx_formats_cache[formats] = zxingcpp.barcode_formats_from_str(",".join(formats))
    return parsed


def read_zxing(gray: np.ndarray, variant: str = "plain", formats: tuple[str, ...] | None = None) -> list[Decoded]:
    out = []
    options = {} if formats is None else {"formats": _zx_formats(formats)}  # none given: every format
    for b in zxingcpp.read_barcodes(gray, text_mode=zxingcpp.TextMode.Plain, **options):
        p = b.position
        quad = ((p.top_left.x, p.top_left.y), (p.top_right.x, p.top_right.y),
                (p.bottom_right.x, p.bottom_right.y), (p.bottom_left.x, p.bottom_left.y))
        out.append(Decoded(b.text, _zx_format(b.format), bytes(b.bytes), quad, "zxing", variant))
    return out


# -- zbar -----------------------------------------------------------------------------------------

def transcode(raw: bytes) -> str:
    """zbar's raw QR bytes as text: UTF-8, else Shift-JIS, else GB18030, else Latin-1."""
    for encoding in ("utf-8", "shift_jis", "gb18030"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


def read_zbar(gray: np.ndarray, variant: str = "plain", formats: tuple[str, ...] | None = None) -> list[Decoded]:
    # pyzbar.decode() with one change: ZBAR_CFG_BINARY on for QR codes (raw bytes, no iconv guess)
    from pyzbar import pyzbar, wrapper  # noqa: PLC0415 (libzbar0 is loaded on first use)

    height, width = gray.shape
    pixels = gray.tobytes()
    out = []
    with pyzbar._image_scanner() as scanner:  # noqa: SLF001 (pyzbar's own context managers)
        if formats is not None:
            wrapper.zbar_image_scanner_set_config(scanner, 0, wrapper.ZBarConfig.CFG_ENABLE, 0)  # 0: all symbologies
            for name in formats:
                for symbol in _ZBAR_SYMBOLS.get(name, ()):
                    wrapper.zbar_image_scanner_set_config(scanner, symbol, wrapper.ZBarConfig.CFG_ENABLE, 1)
        wrapper.zbar_image_scanner_set_config(scanner, _ZBAR_QRCODE, ZBAR_CFG_BINARY, 1)
        with pyzbar._image() as img:  # noqa: SLF001
            wrapper.zbar_image_set_format(img, pyzbar._FOURCC["L800"])  # noqa: SLF001
            wrapper.zbar_image_set_size(img, width, height)
            wrapper.zbar_image_set_data(img, ctypes.cast(pixels, ctypes.c_void_p), len(pixels), None)
            if wrapper.zbar_scan_image(scanner, img) < 0:
                raise RuntimeError("zbar: unsupported image format")
            symbol = wrapper.zbar_image_first_symbol(img)
            while symbol:
                raw = ctypes.string_at(wrapper.zbar_symbol_get_data(symbol),
                                       wrapper.zbar_symbol_get_data_length(symbol))
                try:
                    kind = wrapper.ZBarSymbol(symbol.contents.type).name
                except ValueError:
                    kind = f"zbar-{symbol.contents.type}"
                points = [(wrapper.zbar_symbol_get_loc_x(symbol, i), wrapper.zbar_symbol_get_loc_y(symbol, i))
                          for i in range(wrapper.zbar_symbol_get_loc_size(symbol))]
                fmt = _ZBAR_FORMATS.get(kind, kind)
                text = transcode(raw) if fmt == "QRCode" else raw.decode("latin-1")
                out.append(Decoded(text, fmt, raw, _quad(points), "zbar", variant))
                symbol = wrapper.zbar_symbol_next(symbol)
    return out


def _quad(points: list[Point]) -> tuple[Point, Point, Point, Point]:
    """zbar gives a polygon (4 corners for QR, the scan line's points for 1D): its bounding box."""
    if not points:
        return ((0, 0),) * 4
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, y0, x1, y1 = min(xs), min(ys), max(xs), max(ys)
    return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))


READERS = {"zxing": read_zxing, "zbar": read_zbar}


# -- variants: only when both libraries found nothing in the image as it is ----------------------

UPSCALE_MAX_SIDE = 640  # upscaling a large image costs much and found nothing more on the corpus


def _blur(gray: np.ndarray) -> np.ndarray | None:
    # smooths JPEG noise and moire on photographed codes (corpus: qrcode-2/12, ean13-2/17)
    return cv2.GaussianBlur(gray, (0, 0), 1.0)


def _upscale(gray: np.ndarray) -> np.ndarray | None:
    # small codes with modules of 1-2 pixels (corpus: ean13-1/34)
    if max(gray.shape) > UPSCALE_MAX_SIDE:
        return None
    return cv2.resize(gray, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)


# tried in this order; measured alternatives (bench/scan.py's corpus, 2026-11): sharpening, Otsu and
# adaptive thresholds, CLAHE, histogram equalisation, median blur, halving: none found a code that
# these two miss, and no variant produced a false hit on falsepositives-1.
VARIANTS = {"blur": _blur, "upscale": _upscale}


# -- the decoder ----------------------------------------------------------------------------------

def _thickness_ratio(d: Decoded) -> float:
    tl, tr, br, bl = d.quad
    length = (math.dist(tl, tr) + math.dist(bl, br)) / 2
    thickness = (math.dist(tl, bl) + math.dist(tr, br)) / 2
    return thickness / length if length else 0.0


def _vet_linear(found: list[Decoded], gray: np.ndarray, primary: Library,
                formats: tuple[str, ...] | None = None) -> list[Decoded]:
    """Drop thin, unconfirmed linear reads that disagree with another code of the same format."""
    by_format: dict[str, set[str]] = {}
    for d in found:
        if d.linear:
            by_format.setdefault(d.format, set()).add(d.text)
    if all(len(texts) < 2 for texts in by_format.values()):
        return found
    other = "zbar" if primary == "zxing" else "zxing"
    confirmed = {(d.format, d.text) for d in READERS[other](gray, "confirm", formats)}
    return [d for d in found
            if not d.linear or len(by_format[d.format]) < 2 or (d.format, d.text) in confirmed
            or _thickness_ratio(d) >= THICK_LINEAR]


def _unique(found: list[Decoded]) -> list[Decoded]:
    seen, out = set(), []
    for d in found:
        key = (d.format, d.text)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


def _scaled(found: list[Decoded], factor: float) -> list[Decoded]:
    return [replace(d, quad=tuple((round(x * factor), round(y * factor)) for x, y in d.quad)) for d in found]


def decode(image: np.ndarray, *, primary: Library = "zxing", fallback: bool = True, variants: bool = True,
           formats: tuple[str, ...] | None = None, prescale: int | None = None) -> list[Decoded]:
    """Every code in `image`, as the libraries report them (see the module's docstring).

    `formats`: zxing-cpp format names to look for, e.g. ("QRCode",); None: every format. Fewer
    formats is much faster (a 640x480 frame: ~17 ms for all, ~1.3 ms for QR codes only).
    `prescale`: for camera frames. When the image's longer side is over `prescale` pixels, the
    primary library first reads a copy downscaled to it, then (nothing found) the full image;
    the fallback library reads the downscaled copy only. A 1080p frame: ~1 ms with a code held
    up to the camera, ~20 ms without one, instead of ~10 and ~60 ms. Quads are in the full
    image's pixels either way.
    """
    if primary not in READERS:
        raise ValueError(f"decode: primary must be 'zxing' or 'zbar', not {primary!r}")
    if formats is not None:
        formats = tuple(formats)
    gray = to_gray(image)
    other: Library = "zbar" if primary == "zxing" else "zxing"
    small, factor = None, 1.0
    if prescale and max(gray.shape) > prescale:
        factor = max(gray.shape) / prescale
        small = cv2.resize(gray, (round(gray.shape[1] / factor), round(gray.shape[0] / factor)),
                           interpolation=cv2.INTER_AREA)
    if small is None:
        passes = [(primary, gray, 1.0)] + ([(other, gray, 1.0)] if fallback else [])
    else:
        passes = [(primary, small, factor), (primary, gray, 1.0)] + ([(other, small, factor)] if fallback else [])
    for reader, picture, scale in passes:
        found = READERS[reader](picture, "plain" if scale == 1.0 else "prescaled", formats)
        if found:
            found = _unique(_vet_linear(found, picture, reader, formats))
            return _scaled(found, scale) if scale != 1.0 else found
    if variants:
        order = [primary] + ([other] if fallback else [])
        for name, make in VARIANTS.items():
            if min(gray.shape) < 8:
                break
            copy = make(gray)
            if copy is None:
                continue
            for reader in order:
                found = READERS[reader](copy, name, formats)
                if found:
                    found = _unique(_vet_linear(found, copy, reader, formats))
                    return _scaled(found, 0.5) if name == "upscale" else found
    return []
