"""The pickup counter camera's video: QR codes of pickup tokens on an empty counter (MJPG .avi).

Generated at each run, not bundled: a pickup token is signed by the hub for one order of one run.
"""

from __future__ import annotations

from pathlib import Path

VIDEO_FPS = 5                # 5 frames a second, each code held 1.2 s: ~45 KB a frame, ~1 MB a video
VIDEO_SIZE = (640, 480)


def _background():
    import numpy as np  # noqa: PLC0415

    width, height = VIDEO_SIZE
    x = np.linspace(150, 200, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 30, height, dtype=np.float32)[:, None]
    grey = np.clip(x + y, 0, 255).astype(np.uint8)
    import cv2  # noqa: PLC0415

    return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)


def _qr(text: str):
    import numpy as np  # noqa: PLC0415
    import qrcode  # noqa: PLC0415

    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=1, border=4)
    qr.add_data(text.encode("utf-8"))
    qr.make(fit=True)
    side = qr.modules_count + 8
    box = max(2, min(3, (VIDEO_SIZE[1] - 60) // side))  # 3 px modules: decoded at once, small JPEG frames
    qr.box_size = box
    return np.asarray(qr.make_image(fill_color="black", back_color="white").convert("L"), dtype=np.uint8).copy()


def write_pickup_video(path: Path, shots: list[tuple[str, str]], seconds_each: float = 1.2,
                       gap: float = 1.0) -> Path:
    """A video of the QR codes `shots` = [(caption, text)], each held `seconds_each`, with empty
    counter between them (so each shows as one scan). Written to a temp file, then renamed: a camera
    looping over `path` picks the new video up at its next loop."""
    import cv2  # noqa: PLC0415

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"MJPG"), VIDEO_FPS, VIDEO_SIZE)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write MJPG to {tmp}")
    bg = _background()
    cv2.putText(bg, "store-edge demo: pickup counter camera", (16, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.7,
                (60, 60, 60), 2)
    try:
        empty = max(1, round(gap * VIDEO_FPS))
        for _ in range(empty):
            writer.write(bg)
        for caption, text in shots:
            code = _qr(text)
            h, w = code.shape
            x0, y0 = (VIDEO_SIZE[0] - w) // 2, max(40, (VIDEO_SIZE[1] - h) // 2 + 10)
            for i in range(max(1, round(seconds_each * VIDEO_FPS))):
                frame = bg.copy()
                x = x0 + (i % 3) - 1
                frame[y0:y0 + h, x:x + w] = cv2.cvtColor(code, cv2.COLOR_GRAY2BGR)
                cv2.putText(frame, caption, (16, VIDEO_SIZE[1] - 16), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (40, 40, 40), 2)
                writer.write(frame)
            for _ in range(empty):
                writer.write(bg)
    finally:
        writer.release()
    tmp.replace(path)
    return path
