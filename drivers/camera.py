"""A camera as a QR scanner: OpenCV capture, always the newest frame, one Scan per code in sight.

Two threads per camera (DESIGN.md §6):

  capture  `cv2.VideoCapture(source)` (a device index, /dev/videoN, an rtsp:// URL or a video
           file) read in a loop into a one-slot buffer. A frame still in the slot when the next
           one arrives is replaced (counted in `frames_dropped`): the decoder never works on a
           stale picture, however slow it is. A video file is read at its own frame rate
           (`realtime=True`, the default) or as fast as possible (`realtime=False`, benchmarks);
           `drop_stale=False` makes the capture wait for the decoder instead (every frame decoded).
  decode   takes the newest frame and runs drivers.decoder.decode() on it (the camera's
           `decoder` setting picks the primary library; QR codes only unless `formats` says
           otherwise; frames over 960 px read downscaled first; variants are off: the next frame is the better retry, and a camera mostly
           sees frames without a code).

Dedupe: a code seen in many frames is ONE scan. A code is reported again only after it has been
out of sight for `dedupe_seconds`: missing from a decoded frame, and its last sighting that old. For a video file the clock is
the video's own time (frame number / frame rate), so a file gives the same scans however fast it
is read; for a live source it is time.monotonic().

States: "connecting" (not opened yet), "connected", "disconnected" (cannot be opened, or a read
failed: the device is gone; reopened with exponential backoff), "ended" (a video file came to its
end; `loop=True` starts it again instead, for a demo) and "stopped". Each change is logged once.

`on_scan` is called from the decode thread and must not block (see drivers/scan.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from drivers.decoder import Decoded, decode
from drivers.scan import Scan

log = logging.getLogger("drivers.camera")

RETRY_FIRST = 0.1      # the first retry after a failed open; doubled up to reconnect_max
STABLE_AFTER = 1.0     # a connection that lasted this long resets the backoff
JOIN_TIMEOUT = 2.0
STREAM_TIMEOUT_MS = 5000  # rtsp/http: give up opening or reading after this long (then: disconnected)
# pickup codes and coupons are QR codes; looking for every 1D format too costs ~15x the time per
# frame (640x480: ~17 ms instead of ~1.3 ms with zxing-cpp). None: every format.
CAMERA_FORMATS: tuple[str, ...] | None = ("QRCode",)
# frames wider than this are read downscaled first (drivers/decoder.py: `prescale`); measured
# (bench/scan.py, one core): 1080p with a code ~1 ms instead of ~9, without a code ~20 ms instead of ~58
CAMERA_PRESCALE: int | None = 960
WAIT_SLICE = 0.05      # the longest either thread waits without looking at the stop flag


def is_file(source: int | str) -> bool:
    return isinstance(source, str) and "://" not in source and not source.startswith("/dev/")


class CameraScanner:
    source = "camera"

    def __init__(self, cfg, on_scan: Callable[[Scan], None], *, dedupe_seconds: float = 2.0,
                 realtime: bool = True, loop: bool = False, drop_stale: bool = True,
                 reconnect_max: float = 5.0, width: int | None = None, height: int | None = None,
                 formats: tuple[str, ...] | None = CAMERA_FORMATS, fallback: bool = True,
                 prescale: int | None = CAMERA_PRESCALE,
                 decode_fn: Callable[[np.ndarray], list[Decoded]] | None = None):
        self.cfg = cfg
        self.name: str = cfg.name
        self.on_scan = on_scan
        self.dedupe_seconds = dedupe_seconds
        self.realtime = realtime
        self.loop = loop
        self.drop_stale = drop_stale
        self.reconnect_max = max(reconnect_max, RETRY_FIRST)
        self.width, self.height = width, height
        primary = getattr(cfg, "decoder", "zxing")
        self.formats = formats
        self.decode_fn = decode_fn or (lambda frame: decode(frame, primary=primary, fallback=fallback, variants=False,
                                                            formats=formats, prescale=prescale))

        self.state = "connecting"
        self.last_error: str | None = None
        self.last_scan: Scan | None = None
        self.frames_read = 0
        self.frames_dropped = 0
        self.frames_decoded = 0
        self.scans = 0
        self.reconnects = 0
        self.decode_ms_total = 0.0
        self.fps: float | None = None          # the source's frame rate, as OpenCV reports it
        self.frame_size: tuple[int, int] | None = None

        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._slot: tuple[np.ndarray, float] | None = None  # (frame, clock), newest only
        self._capture_done = False             # the capture thread is finished (ended or stopped)
        # (format, text) -> (clock of its last sighting, missing from a decoded frame since)
        self._seen: dict[tuple[str, str], tuple[float, bool]] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        if self._threads:
            raise RuntimeError("already started")
        self._threads = [threading.Thread(target=self._capture_run, daemon=True, name=f"camera-{self.name}-capture"),
                         threading.Thread(target=self._decode_run, daemon=True, name=f"camera-{self.name}-decode")]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = JOIN_TIMEOUT) -> None:
        """Stop both threads and release the camera; prompt (~50 ms) unless OpenCV is inside a read."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
                if thread.is_alive():
                    log.warning("camera thread did not stop", extra={"kv": {"device": self.name,
                                                                            "thread": thread.name}})
        with self._lock:
            if self.state != "ended":
                self.state = "stopped"

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def wait_idle(self, timeout: float) -> bool:
        """For tests and benchmarks: wait until a file has ended and its last frame is decoded."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (self._capture_done and self._slot is None and not self._decoding):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, WAIT_SLICE))
        return True

    _decoding = False

    def status(self) -> dict[str, Any]:
        """A snapshot for the device page and /health (the shape of drivers/scan.py's, plus frames)."""
        with self._lock:
            last = self.last_scan
            return {
                "device": self.name, "source": self.source, "state": self.state, "last_error": self.last_error,
                "scans": self.scans, "reconnects": self.reconnects,
                "frames": {"read": self.frames_read, "dropped": self.frames_dropped, "decoded": self.frames_decoded},
                "decode_ms_avg": round(self.decode_ms_total / self.frames_decoded, 2) if self.frames_decoded else None,
                "fps": self.fps, "frame_size": self.frame_size,
                "last_scan": None if last is None else {"text": last.text, "at": last.at},
            }

    # -- capture ----------------------------------------------------------------------------------
    def _open(self):
        source = self.cfg.source
        if isinstance(source, str) and "://" in source:
            cap = cv2.VideoCapture(source, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
                                                            cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS])
        else:
            cap = cv2.VideoCapture(source)
        if not cap.isOpened():
            cap.release()
            raise OSError(f"cannot open {source!r}")
        if not is_file(source):
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # V4L2: keep the driver's own queue short too
            if self.width and self.height:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        fps = cap.get(cv2.CAP_PROP_FPS)
        with self._lock:
            self.fps = round(fps, 3) if fps and fps > 0 else None
        return cap

    def _capture_run(self) -> None:
        file = is_file(self.cfg.source)
        delay = RETRY_FIRST
        offset = 0.0  # a looping file: the video time of the loops before this one
        try:
            while not self._stop.is_set():
                try:
                    cap = self._open()
                except OSError as exc:
                    self._set_down(str(exc), opening=True)
                    self._stop.wait(delay)
                    delay = min(delay * 2, self.reconnect_max)
                    continue
                self._set_up()
                since = time.monotonic()
                try:
                    outcome, last_clock = self._read_frames(cap, file, offset)
                finally:
                    cap.release()
                if outcome == "stopped":
                    break
                if outcome == "ended":
                    if self.loop:
                        offset = last_clock + 1.0 / (self.fps or 25.0)
                        continue
                    with self._lock:
                        self.state = "ended"
                    log.info("camera video ended", extra={"kv": {"device": self.name, "frames": self.frames_read}})
                    break
                self._set_down("read failed (device gone?)", opening=False)
                if time.monotonic() - since >= STABLE_AFTER:
                    delay = RETRY_FIRST
                self._stop.wait(delay)
                delay = min(delay * 2, self.reconnect_max)
        except Exception:  # noqa: BLE001 (a bug must not pass silently: the camera would just go quiet)
            log.exception("camera capture thread crashed", extra={"kv": {"device": self.name}})
            with self._lock:
                self.state, self.last_error = "disconnected", "internal error (see log)"
        finally:
            with self._cond:
                self._capture_done = True
                self._cond.notify_all()

    def _read_frames(self, cap, file: bool, offset: float) -> tuple[str, float]:
        """Read until stopped, the end of a file, or a failed read: "stopped" | "ended" | "failed"."""
        fps = self.fps or 25.0
        started, index, clock = time.monotonic(), 0, offset
        while not self._stop.is_set():
            ok, frame = cap.read()
            if not ok or frame is None:
                return ("ended" if file else "failed"), clock
            clock = offset + index / fps if file else time.monotonic()
            index += 1
            with self._cond:
                self.frames_read += 1
                if self.frame_size is None:
                    self.frame_size = (frame.shape[1], frame.shape[0])
                if not self.drop_stale:
                    while self._slot is not None and not self._stop.is_set():
                        self._cond.wait(WAIT_SLICE)
                if self._slot is not None:
                    self.frames_dropped += 1
                self._slot = (frame, clock)
                self._cond.notify_all()
            if file and self.realtime:  # the file's own pace: frame n is due n/fps after the first
                due = started + index / fps
                while not self._stop.is_set() and time.monotonic() < due:
                    self._stop.wait(min(due - time.monotonic(), WAIT_SLICE))
        return "stopped", clock

    def _set_up(self) -> None:
        with self._lock:
            before, self.state = self.state, "connected"
            if before == "disconnected":
                self.reconnects += 1
        kv = {"device": self.name, "source": self.source, "camera": str(self.cfg.source)}
        if before == "disconnected":
            log.info("camera back", extra={"kv": {**kv, "after_error": self.last_error}})
        else:
            log.info("camera connected", extra={"kv": kv})

    def _set_down(self, error: str, *, opening: bool) -> None:
        with self._lock:
            before, self.state = self.state, "disconnected"
            self.last_error = error
        if before != "disconnected":
            message = "camera not available" if opening else "camera disconnected"
            log.warning(message, extra={"kv": {"device": self.name, "source": self.source,
                                               "camera": str(self.cfg.source), "error": error}})

    # -- decode -----------------------------------------------------------------------------------
    def _decode_run(self) -> None:
        try:
            while not self._stop.is_set():
                with self._cond:
                    while self._slot is None and not self._stop.is_set():
                        if self._capture_done:
                            return
                        self._cond.wait(WAIT_SLICE)
                    if self._stop.is_set():
                        return
                    (frame, clock), self._slot = self._slot, None
                    self._decoding = True
                    self._cond.notify_all()  # a capture waiting for room (drop_stale=False)
                try:
                    started = time.perf_counter()
                    found = self.decode_fn(frame)
                    elapsed = (time.perf_counter() - started) * 1000
                    with self._lock:
                        self.frames_decoded += 1
                        self.decode_ms_total += elapsed
                    self._sighted(found, clock)
                finally:
                    with self._cond:
                        self._decoding = False
                        self._cond.notify_all()
        except Exception:  # noqa: BLE001
            log.exception("camera decode thread crashed", extra={"kv": {"device": self.name}})
            with self._lock:
                self.last_error = "internal error in the decoder (see log)"

    def _sighted(self, found: list[Decoded], clock: float) -> None:
        """Report the codes that are new: never seen, or out of sight for more than dedupe_seconds.

        Out of sight means: missing from at least one decoded frame since its last sighting, and that
        sighting is more than dedupe_seconds old. (A gap between two decoded frames, frames dropped
        while the decoder was busy, is not an absence: nobody looked.)
        """
        keys = {(d.format, d.text): d for d in found}
        fresh = []
        for key, d in keys.items():
            last = self._seen.get(key)
            if last is None or (last[1] and clock - last[0] > self.dedupe_seconds):
                fresh.append(d)
            self._seen[key] = (clock, False)
        for key, (last, absent) in list(self._seen.items()):
            if key not in keys:
                if absent and clock - last > self.dedupe_seconds:
                    del self._seen[key]  # would be reported anew anyway
                elif not absent:
                    self._seen[key] = (last, True)
        for d in fresh:
            self._deliver(d)

    def _deliver(self, d: Decoded) -> None:
        scan = Scan(device=self.name, source=self.source, text=d.text,
                    raw=d.raw if d.raw is not None else d.text.encode("utf-8"), at=time.time())
        with self._lock:
            self.scans += 1
            self.last_scan = scan
        log.info("camera scan", extra={"kv": {"device": self.name, "format": d.format, "length": len(d.text)}})
        try:
            self.on_scan(scan)
        except Exception:  # noqa: BLE001 (the caller's bug must not stop the scanner)
            log.exception("on_scan failed", extra={"kv": {"device": self.name}})
