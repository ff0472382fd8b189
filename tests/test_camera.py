"""drivers/camera.py on real video files through OpenCV: one scan per code, in order, intact text;
disconnected and back; a prompt stop; stale frames dropped when decoding is slower than capture."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest
import videos

from drivers.camera import CameraScanner
from drivers.decoder import decode
from drivers.models import Camera


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict[str, Path]:
    return videos.generate(tmp_path_factory.mktemp("videos"))


class Collector:
    def __init__(self):
        self.scans = []
        self.event = threading.Event()

    def __call__(self, scan):
        self.scans.append(scan)
        self.event.set()

    @property
    def texts(self) -> list[str]:
        return [s.text for s in self.scans]


def camera(source, **kw) -> Camera:
    return Camera(name="cam-1", type="camera", source=str(source), **kw)


def run_to_end(source, timeout: float = 10.0, **options) -> tuple[CameraScanner, Collector]:
    got = Collector()
    options = {"realtime": False, "drop_stale": False, **options}
    scanner = CameraScanner(camera(source), got, **options)
    scanner.start()
    try:
        assert scanner.wait_idle(timeout), scanner.status()
    finally:
        scanner.stop()
    return scanner, got


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@pytest.mark.parametrize("name", list(videos.VIDEOS))
def test_each_code_once_in_order_intact(clips, name):
    scanner, got = run_to_end(clips[name])
    assert got.texts == videos.EXPECTED[name]
    status = scanner.status()
    assert status["state"] == "ended"
    frames = status["frames"]
    assert frames["read"] > 0 and frames["decoded"] == frames["read"] and frames["dropped"] == 0
    assert status["scans"] == len(videos.EXPECTED[name])
    for scan in got.scans:
        assert scan.device == "cam-1" and scan.source == "camera"
        assert scan.raw == scan.text.encode("utf-8")  # byte-mode UTF-8: the bytes as in the code


def test_chinese_and_long_token_intact(clips):
    _, chinese = run_to_end(clips["chinese"])
    _, token = run_to_end(clips["token"])
    assert chinese.texts == [videos.CHINESE] and "好邻居便利店" in chinese.texts[0]
    assert token.texts == [videos.TOKEN] and len(token.texts[0]) == 300 and token.texts[0].count(".") == 2


def test_dedupe_seconds_is_the_time_out_of_sight(clips):
    # "again": A for 1 s, 2.5 s (video time) without it, A again
    _, short = run_to_end(clips["again"], dedupe_seconds=2.0)
    _, long = run_to_end(clips["again"], dedupe_seconds=5.0)
    assert short.texts == [videos.CODE_A, videos.CODE_A]
    assert long.texts == [videos.CODE_A]


def test_realtime_pacing_and_newest_frame(clips):
    # the default: a file read at its own 10 fps; 30 frames take ~3 s, so read only the first 0.6 s
    got = Collector()
    scanner = CameraScanner(camera(clips["moving"]), got)
    started = time.monotonic()
    scanner.start()
    try:
        assert got.event.wait(2.0)
        time.sleep(0.6)
        read = scanner.status()["frames"]["read"]
    finally:
        scanner.stop()
    elapsed = time.monotonic() - started
    assert 3 <= read <= 10 * elapsed + 2, (read, elapsed)
    assert got.texts == [videos.PICKUP]


def test_stale_frames_are_dropped_when_decoding_is_slow(clips):
    seen = []

    def slow(frame):
        time.sleep(0.05)
        seen.append(frame)
        return decode(frame, variants=False)

    scanner, got = run_to_end(clips["moving"], decode_fn=slow, drop_stale=True)
    frames = scanner.status()["frames"]
    assert frames["read"] == 30
    assert frames["dropped"] > 0
    assert frames["decoded"] + frames["dropped"] == frames["read"]  # each frame decoded or replaced by a newer one
    assert frames["decoded"] < 30
    assert got.texts == [videos.PICKUP]


def test_missing_source_disconnected_then_back(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="drivers.camera")
    later = tmp_path / "later.avi"
    got = Collector()
    scanner = CameraScanner(camera(later), got, realtime=False, drop_stale=False, reconnect_max=0.2)
    scanner.start()
    try:
        assert wait_for(lambda: scanner.status()["state"] == "disconnected")
        assert "cannot open" in scanner.status()["last_error"]
        time.sleep(0.7)  # several retries (0.1, 0.2, 0.2, ...): logged once
        videos.write_video(tmp_path / "part.avi", videos.still(videos.CODE_B, frames=10))
        (tmp_path / "part.avi").replace(later)
        assert got.event.wait(5.0)
        assert scanner.wait_idle(5.0)
    finally:
        scanner.stop()
    status = scanner.status()
    assert got.texts == [videos.CODE_B]
    assert status["state"] == "ended" and status["reconnects"] == 1
    messages = [r.getMessage() for r in caplog.records if r.name == "drivers.camera"]
    assert messages.count("camera not available") == 1
    assert messages.count("camera back") == 1


def test_stop_is_prompt(clips):
    scanner = CameraScanner(camera(clips["moving"]), Collector())  # realtime: would run 3 s
    scanner.start()
    time.sleep(0.3)
    started = time.monotonic()
    scanner.stop()
    assert time.monotonic() - started < 0.5
    assert not scanner.running and scanner.status()["state"] == "stopped"


def test_stop_while_disconnected_is_prompt(tmp_path):
    scanner = CameraScanner(camera(tmp_path / "never.avi"), Collector(), reconnect_max=5.0)
    scanner.start()
    assert wait_for(lambda: scanner.status()["state"] == "disconnected")
    time.sleep(0.5)  # in a longer backoff wait
    started = time.monotonic()
    scanner.stop()
    assert time.monotonic() - started < 0.5 and not scanner.running


def test_loop_for_the_demo(clips):
    got = Collector()
    scanner = CameraScanner(camera(clips["sequence"]), got, realtime=False, drop_stale=False, loop=True,
                            dedupe_seconds=0.2)
    scanner.start()
    try:
        assert wait_for(lambda: len(got.scans) >= 4, 10.0)
    finally:
        scanner.stop()
    assert got.texts[:4] == [videos.CODE_A, videos.CODE_B, videos.CODE_A, videos.CODE_B]
    assert scanner.status()["state"] == "stopped"
