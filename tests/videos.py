"""Test videos of QR codes, written with OpenCV's VideoWriter (MJPG in .avi: this OpenCV writes
and reads it back; JPEG noise on every frame, like a real camera's MJPG stream).

Each video has a list of the codes it shows, in order of first appearance (`EXPECTED`). Frames
are 640x480 unless told, 10 frames a second (short files, and video time advances fast enough
that dedupe_seconds=2 is 20 frames). bench/scan.py uses `write_video` for its 720p/1080p clips.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np
import qrcode

FPS = 10
SIZE = (640, 480)  # width, height
FOURCC = "MJPG"
SUFFIX = ".avi"

PICKUP = "PICKUP:8848-2931"
CHINESE = "取货码：739104 门店：好邻居便利店 五道口店 优惠券：满80减5"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jws_token(length: int = 300) -> str:
    """A JWS-like `header.payload.signature`, base64url, `length` characters (deterministic)."""
    header = _b64url(b'{"alg":"ES256","typ":"JWT","kid":"store-001"}')
    signature = _b64url(hashlib.sha512(b"signature").digest())[:86]
    body_len = length - len(header) - len(signature) - 2
    seed = b'{"sub":"coupon","order":"ord_20261122_0001","amount_fen":500,"exp":1795000000,"nonce":"'
    payload = _b64url(seed + hashlib.sha256(seed).hexdigest().encode() * 4)[:body_len]
    token = f"{header}.{payload}.{signature}"
    assert len(token) == length
    return token


TOKEN = jws_token()
CODE_A = "COUPON:A-000111"
CODE_B = "COUPON:B-000222"


def qr_image(text: str, *, box: int = 6, border: int = 4, level: str = "M") -> np.ndarray:
    """A grey (uint8) QR code image: black modules on white, with its quiet zone."""
    levels = {"L": qrcode.constants.ERROR_CORRECT_L, "M": qrcode.constants.ERROR_CORRECT_M,
              "Q": qrcode.constants.ERROR_CORRECT_Q, "H": qrcode.constants.ERROR_CORRECT_H}
    qr = qrcode.QRCode(error_correction=levels[level], box_size=box, border=border)
    qr.add_data(text.encode("utf-8"))  # bytes: UTF-8 in byte mode, as phone apps write Chinese
    qr.make(fit=True)
    return np.asarray(qr.make_image(fill_color="black", back_color="white").convert("L"), dtype=np.uint8).copy()


def background(size: tuple[int, int] = SIZE, seed: int = 0) -> np.ndarray:
    """A counter-top-like BGR background: a gradient, some noise and a few boxes (no code)."""
    width, height = size
    rng = np.random.default_rng(seed)
    x = np.linspace(90, 170, width, dtype=np.float32)
    y = np.linspace(0, 40, height, dtype=np.float32)[:, None]
    grey = x[None, :] + y + rng.normal(0, 6, (height, width)).astype(np.float32)
    frame = np.clip(grey, 0, 255).astype(np.uint8)
    frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    for _ in range(4):
        x0, y0 = int(rng.integers(0, width - 80)), int(rng.integers(0, height - 60))
        colour = tuple(int(c) for c in rng.integers(30, 220, 3))
        cv2.rectangle(frame, (x0, y0), (x0 + int(rng.integers(20, 80)), y0 + int(rng.integers(15, 60))), colour, -1)
    cv2.putText(frame, "store-edge test", (20, height - 20), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (40, 40, 40), 2)
    return frame


def paste(frame: np.ndarray, code: np.ndarray, x: int, y: int) -> np.ndarray:
    """`frame` with the grey `code` image pasted at (x, y), clipped to the frame."""
    out = frame.copy()
    h, w = code.shape
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, out.shape[1]), min(y + h, out.shape[0])
    if x1 > x0 and y1 > y0:
        out[y0:y1, x0:x1] = cv2.cvtColor(code[y0 - y:y1 - y, x0 - x:x1 - x], cv2.COLOR_GRAY2BGR)
    return out


def write_video(path: Path, frames: Iterable[np.ndarray], fps: float = FPS) -> Path:
    frames = iter(frames)
    first = next(frames)
    height, width = first.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {FOURCC} to {path}")
    try:
        writer.write(first)
        for frame in frames:
            writer.write(frame)
    finally:
        writer.release()
    return path


# -- the videos -----------------------------------------------------------------------------------

def moving(size: tuple[int, int] = SIZE, frames: int = 30, text: str = PICKUP, box: int = 6) -> Iterator[np.ndarray]:
    """The code slides from left to right (and a little down) across the frame."""
    bg, code = background(size, 1), qr_image(text, box=box)
    width, height = size
    h, w = code.shape
    for i in range(frames):
        x = int((width - w) * i / max(frames - 1, 1))
        y = int((height - h) * (0.2 + 0.5 * i / max(frames - 1, 1)))
        yield paste(bg, code, x, y)


def blurred(frames: int = 20) -> Iterator[np.ndarray]:
    """A code out of focus: Gaussian blur (sigma 2 px on 6 px modules) over the whole frame."""
    bg, code = background(SIZE, 2), qr_image(PICKUP + "-BLUR", box=6)
    for i in range(frames):
        yield cv2.GaussianBlur(paste(bg, code, 200 + i, 120), (0, 0), 2.0)


def covered(frames: int = 20) -> Iterator[np.ndarray]:
    """A code partly covered by a bar (a finger, a receipt's edge): ~14% of it, within level H's 30%."""
    bg, code = background(SIZE, 3), qr_image(PICKUP + "-COVER", box=6, level="H")
    h, w = code.shape
    quiet = 4 * 6
    for i in range(frames):
        frame = paste(bg, code, 180, 100 + i)
        # a dark bar across the lower middle of the symbol, clear of the three finder patterns
        top = 100 + i + quiet + (h - 2 * quiet) * 55 // 100
        bar = (h - 2 * quiet) * 14 // 100
        cv2.rectangle(frame, (180 + quiet + (w - 2 * quiet) // 4, top),
                      (180 + w - quiet - (w - 2 * quiet) // 8, top + bar), (60, 50, 40), -1)
        yield frame


def still(text: str, frames: int = 20, box: int = 5, seed: int = 4) -> Iterator[np.ndarray]:
    bg, code = background(SIZE, seed), qr_image(text, box=box)
    h, w = code.shape
    for i in range(frames):
        yield paste(bg, code, (SIZE[0] - w) // 2 + (i % 3), (SIZE[1] - h) // 2)


def blank(frames: int = 30, seed: int = 5) -> Iterator[np.ndarray]:
    bg = background(SIZE, seed)
    for i in range(frames):
        yield np.roll(bg, i * 3, axis=1)


def sequence(gap_frames: int = 5) -> Iterator[np.ndarray]:
    """Code A, nothing, code B: two scans, A first."""
    yield from still(CODE_A, frames=15, seed=6)
    yield from blank(gap_frames, seed=6)
    yield from still(CODE_B, frames=15, seed=6)


def again(gap_frames: int = 25) -> Iterator[np.ndarray]:
    """Code A, then 2.5 s (at 10 fps) without it, then A again: two scans of A with dedupe_seconds=2."""
    yield from still(CODE_A, frames=10, seed=7)
    yield from blank(gap_frames, seed=7)
    yield from still(CODE_A, frames=10, seed=7)


VIDEOS = {
    "moving": (moving, [PICKUP]),
    "blurred": (blurred, [PICKUP + "-BLUR"]),
    "covered": (covered, [PICKUP + "-COVER"]),
    "chinese": (lambda: still(CHINESE), [CHINESE]),
    "token": (lambda: still(TOKEN, box=4), [TOKEN]),
    "sequence": (sequence, [CODE_A, CODE_B]),
    "again": (again, [CODE_A, CODE_A]),
    "blank": (blank, []),
}
EXPECTED = {name: codes for name, (_, codes) in VIDEOS.items()}


def generate(folder: Path, names: Iterable[str] | None = None) -> dict[str, Path]:
    """Write the videos (those not written yet) into `folder`; their paths by name."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in names or VIDEOS:
        path = folder / f"{name}{SUFFIX}"
        if not path.exists():
            tmp = folder / f".{name}.tmp{SUFFIX}"
            write_video(tmp, VIDEOS[name][0]())
            tmp.replace(path)
        paths[name] = path
    return paths
