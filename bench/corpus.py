"""The barcode photographs of tests/corpus/barcodes, for the decoder's tests and `python -m bench scan`.

Each set is a folder of NAME.png|jpg|webp with NAME.txt holding the expected text (read as bytes:
some codes hold CRLF). The photographs are in the repository so that a bare clone runs every decoder
test and the scan benchmark.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SETS = ("qrcode-1", "qrcode-2", "ean13-1", "ean13-2", "falsepositives-1")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
# Codes that are really in the photograph although its .txt names another (checked by eye), so not
# false hits. qrcode-2/16: a "double QR", a code inside a code; the .txt names the inner one.
# ean13-2/23 and /28: the bars and the printed digits say 9784872348880, the .txt 9780804816632.
IN_PICTURE = {
    ("qrcode-2", "16.webp"): {"[外側QRコード]\r\n \r\n*ﾀﾞﾌﾞﾙQR*\r\nhttp://d-qr.net/ex/"},
    ("ean13-2", "23.webp"): {"9784872348880"},
    ("ean13-2", "28.webp"): {"9784872348880"},
}


ROOT = Path(__file__).resolve().parents[1] / "tests" / "corpus" / "barcodes"


def load(path: Path) -> np.ndarray:
    import cv2  # noqa: PLC0415

    grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if grey is None:  # OpenCV reads no 1-pixel-high WebP (falsepositives-1/1x1, 1x100)
        from PIL import Image  # noqa: PLC0415
        grey = np.asarray(Image.open(path).convert("L"))
    return grey


def samples(name: str) -> list[tuple[str, np.ndarray, str | None]]:
    """(file name, grey image, expected text or None) of one set; a .txt without an image is no sample."""
    out = []
    for path in sorted((ROOT / name).iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            txt = path.with_suffix(".txt")
            out.append((path.name, load(path), txt.read_bytes().decode("utf-8") if txt.exists() else None))
    return out
