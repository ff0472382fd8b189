"""A member code (about 500 bytes: a certificate, a time step, the phone's signature) arrives whole and
byte-identical through each kind of scanner: a serial scanner on a pty, a keyboard-wedge scanner's evdev
events through the HID reader, and a camera reading a video of the QR code a phone shows (OpenCV)."""

from __future__ import annotations

import pytest
import videos

from drivers.camera import CameraScanner
from edge.core import member_code
from edge.core.classify import classify
from tests.test_camera import Collector, camera
from tests.test_hid_scanner import Clock, bus, readers, start_reader, typed, until  # noqa: F401 (fixtures)
from tests.test_members import NOW, issued
from tests.test_serial_scanner import harness, pty_scanner  # noqa: F401 (fixtures)

# a certificate as the hub signs it (a key id of its real form), the code the phone shows at NOW
CODE = issued(kid="k-202612-3f9c2a").code(NOW)


def test_the_code_is_of_the_size_the_docs_say():
    assert 450 <= len(CODE) <= 560 and CODE.isascii()
    assert member_code.split(CODE) is not None and classify(CODE).kind == "member_code"


def test_serial_scanner_on_a_pty(pty_scanner, harness):  # noqa: F811
    harness.reader(pty_scanner.path, "CR")
    pty_scanner.send(CODE.encode("ascii") + b"\r")
    scan = harness.next()
    assert scan.text == CODE and scan.raw == CODE.encode("ascii")
    # a scanner that sends a long code in pieces (its UART buffer): still one code
    for i in range(0, len(CODE), 64):
        pty_scanner.send(CODE[i:i + 64].encode("ascii"))
    pty_scanner.send(b"\r")
    assert harness.next().text == CODE
    harness.nothing_more()


def test_hid_scanner_evdev_events(bus, readers):  # noqa: F811
    bus.plug("/dev/input/event6", "Netum Barcode Scanner")
    r, scans = start_reader(bus, readers, device_name="Netum Barcode Scanner")
    until(lambda: r.state == "connected", what="connected")
    bus.grabbed("/dev/input/event6").push(typed(Clock(), CODE))
    scan = scans.get(timeout=5)
    assert scan.text == CODE and classify(scan.text).kind == "member_code"


@pytest.fixture(scope="module")
def member_clip(tmp_path_factory):
    """A phone held still under the camera, showing the member code's QR (about 97 modules a side)."""
    return videos.write_video(tmp_path_factory.mktemp("member") / "member.avi", videos.still(CODE, box=4))


def test_camera_reads_the_qr_code_a_phone_shows(member_clip):
    got = Collector()
    scanner = CameraScanner(camera(member_clip), got, realtime=False, drop_stale=False)
    scanner.start()
    try:
        assert scanner.wait_idle(20), scanner.status()
    finally:
        scanner.stop()
    assert got.texts == [CODE]
    assert got.scans[0].raw == CODE.encode("ascii")
