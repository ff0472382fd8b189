"""A receipt as a PNG at the paper's width in dots, with a Chinese font when one is installed."""

from __future__ import annotations

import io
from typing import Any

from drivers.fonts import find_cjk_font
from drivers.virtual_printer.decoder import Receipt, columns

PAPER_DOTS = {58: 384, 80: 576}
PAPER_COLUMNS = {58: 32, 80: 48}


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
        total = sum(columns(s["text"]) * col * s["width"] for s in line["segments"])
        x = {"left": 0, "center": max(0, (width - total) // 2), "right": max(0, width - total)}[line["align"]]
        for s in line["segments"]:
            f = font(base * s["height"])
            for ch in s["text"]:
                w = columns(ch) * col * s["width"]
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
