"""Keyboard-wedge scanners: the key-event decoder fed with real evdev InputEvent objects, and the
reader against fake input devices (grab, hot-plug by path and by name) and, where /dev/uinput exists,
a real virtual keyboard."""

from __future__ import annotations

import collections
import errno
import os
import queue
import threading
import time

import pytest
from evdev import InputEvent
from evdev import ecodes as E

from drivers.hid_scanner import KEYMAP, HidScannerReader, KeyDecoder
from drivers.models import HidScanner

# character -> (key code, shifted): the main block first, so "1" is KEY_1 rather than KEY_KP1
CHAR_KEYS: dict[str, tuple[int, bool]] = {}
for _code, (_low, _high) in KEYMAP.items():
    CHAR_KEYS.setdefault(_low, (_code, False))
    CHAR_KEYS.setdefault(_high, (_code, True))


class Clock:
    def __init__(self, t: float = 1_700_000_000.0):
        self.t = t

    def event(self, etype: int, code: int, value: int, dt: float = 0.002) -> InputEvent:
        self.t += dt
        sec = int(self.t)
        return InputEvent(sec, int(round((self.t - sec) * 1e6)), etype, code, value)


def press(clock: Clock, code: int, *, shift: bool = False, syn: bool = True) -> list[InputEvent]:
    """What a scanner sends for one key: MSC scan code, key down, SYN, key up, SYN (shift around it)."""
    evs = []
    if shift:
        evs += [clock.event(E.EV_KEY, E.KEY_LEFTSHIFT, 1)]
    evs += [clock.event(E.EV_MSC, E.MSC_SCAN, 0x70000 + code), clock.event(E.EV_KEY, code, 1)]
    if syn:
        evs.append(clock.event(E.EV_SYN, E.SYN_REPORT, 0))
    evs.append(clock.event(E.EV_KEY, code, 0))
    if shift:
        evs.append(clock.event(E.EV_KEY, E.KEY_LEFTSHIFT, 0))
    if syn:
        evs.append(clock.event(E.EV_SYN, E.SYN_REPORT, 0))
    return evs


def typed(clock: Clock, text: str, enter: int | None = E.KEY_ENTER) -> list[InputEvent]:
    """The events for `text`, then Enter (enter=None: no Enter)."""
    evs = []
    for ch in text:
        code, shift = CHAR_KEYS[ch]
        evs += press(clock, code, shift=shift)
    return evs + (press(clock, enter) if enter is not None else [])


class Recorder:
    def __init__(self, **kw):
        self.discards: list[tuple[str, bytes, int]] = []
        self.decoder = KeyDecoder(on_discard=lambda *a: self.discards.append(a), **kw)

    def run(self, events) -> list[str]:
        return [t for t in map(self.decoder.feed, events) if t is not None]


# ---------------------------------------------------------------------------------------------
# KeyDecoder


def test_digits_and_enter():
    rec, clock = Recorder(), Clock()
    assert rec.run(typed(clock, "6901234567892")) == ["6901234567892"]
    assert rec.decoder.raw.startswith(b"KEY_6 KEY_9 KEY_0 KEY_1") and rec.decoder.raw.endswith(b"KEY_2 KEY_ENTER")
    assert rec.discards == []


@pytest.mark.parametrize("text", [
    "GS1:(01)09501101530003(17)261231",
    "https://pay.example.cn/v1/verify?code=AbC-123_x.y~z&sig=9%2F+Q==",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.Sf1KxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    "!@#$^*()[]{}\\|;'\",<>`",
])
def test_shifted_letters_and_symbols(text):
    rec = Recorder()
    assert rec.run(typed(Clock(), text)) == [text]


def test_keypad_digits_and_keypad_enter():
    rec, clock = Recorder(), Clock()
    evs = []
    for code in (E.KEY_KP6, E.KEY_KP9, E.KEY_KPDOT, E.KEY_KPMINUS, E.KEY_KP0):
        evs += press(clock, code)
    assert rec.run(evs + press(clock, E.KEY_KPENTER)) == ["69.-0"]


def test_autorepeat_and_key_up_are_ignored():
    rec, clock = Recorder(), Clock()
    evs = [clock.event(E.EV_KEY, E.KEY_7, 1), clock.event(E.EV_KEY, E.KEY_7, 2), clock.event(E.EV_KEY, E.KEY_7, 2),
           clock.event(E.EV_KEY, E.KEY_7, 0), clock.event(E.EV_KEY, E.KEY_ENTER, 0)]  # an Enter key-up: no end
    assert rec.run(evs) == []
    assert rec.run([clock.event(E.EV_KEY, E.KEY_ENTER, 1), clock.event(E.EV_KEY, E.KEY_ENTER, 2)]) == ["7"]
    assert rec.discards == []  # the repeated Enter did not make an empty code


def test_unknown_key_discards_the_code_and_the_next_one_is_fine():
    rec, clock = Recorder(), Clock()
    evs = typed(clock, "12", enter=None) + press(clock, E.KEY_F5) + typed(clock, "3")  # "12", F5, "3", Enter
    evs += typed(clock, "OK-1")
    assert rec.run(evs) == ["OK-1"]
    assert len(rec.discards) == 1
    reason, raw, length = rec.discards[0]
    assert reason == "unknown_key" and b"KEY_F5" in raw and length == 3


def test_two_codes_back_to_back():
    rec, clock = Recorder(), Clock()
    assert rec.run(typed(clock, "A1") + typed(clock, "b2", enter=E.KEY_KPENTER)) == ["A1", "b2"]


def test_caps_lock_and_shift():
    rec, clock = Recorder(), Clock()
    evs = press(clock, E.KEY_CAPSLOCK) + typed(clock, "ab1", enter=None) + press(clock, E.KEY_A, shift=True)
    evs += press(clock, E.KEY_ENTER)
    assert rec.run(evs) == ["AB1a"]  # Caps Lock flips letters only; Shift flips them back
    assert rec.run(press(clock, E.KEY_CAPSLOCK) + typed(clock, "ab")) == ["ab"]


def test_right_shift_held_across_keys():
    rec, clock = Recorder(), Clock()
    evs = [clock.event(E.EV_KEY, E.KEY_RIGHTSHIFT, 1)]
    for code in (E.KEY_X, E.KEY_1, E.KEY_SLASH):
        evs += [clock.event(E.EV_KEY, code, 1), clock.event(E.EV_KEY, code, 0)]
    evs += [clock.event(E.EV_KEY, E.KEY_RIGHTSHIFT, 0)] + press(clock, E.KEY_X) + press(clock, E.KEY_ENTER)
    assert rec.run(evs) == ["X!?x"]


def test_ctrl_bracket_is_gs1_separator_other_ctrl_and_alt_are_garbage():
    rec, clock = Recorder(), Clock()
    ctrl = lambda code: ([clock.event(E.EV_KEY, E.KEY_LEFTCTRL, 1)] + press(clock, code)  # noqa: E731
                         + [clock.event(E.EV_KEY, E.KEY_LEFTCTRL, 0)])
    evs = typed(clock, "0109501101530003", enter=None) + ctrl(E.KEY_RIGHTBRACE) + typed(clock, "10ABC")
    assert rec.run(evs) == ["0109501101530003\x1d10ABC"]
    assert rec.run(typed(clock, "1", enter=None) + ctrl(E.KEY_C) + press(clock, E.KEY_ENTER)) == []
    alt = [clock.event(E.EV_KEY, E.KEY_LEFTALT, 1)] + press(clock, E.KEY_KP1) + press(clock, E.KEY_KP2)
    alt += [clock.event(E.EV_KEY, E.KEY_LEFTALT, 0)]
    assert rec.run(alt + press(clock, E.KEY_ENTER)) == []
    assert [d[0] for d in rec.discards] == ["unknown_key", "unknown_key"]
    assert b"ctrl+KEY_C" in rec.discards[0][1] and b"alt+KEY_KP1" in rec.discards[1][1]


def test_too_long_empty_and_incomplete():
    rec, clock = Recorder(max_length=8, incomplete_after=0.5), Clock()
    assert rec.run(typed(clock, "1" * 50)) == []
    assert rec.run(press(clock, E.KEY_ENTER)) == []
    half = typed(clock, "999", enter=None)  # the Enter got lost
    clock.t += 2.0
    assert rec.run(half + typed(clock, "12345")) == ["12345"]
    assert [(r, n) for r, _, n in rec.discards] == [("too_long", 50), ("empty", 0), ("incomplete", 3)]
    assert len(rec.discards[0][1].split()) <= 8 + 2  # raw stays bounded too


def test_end_on_pause_ends_a_code_without_enter():
    rec, clock = Recorder(end_on_pause=0.1), Clock()
    evs = typed(clock, "A-1", enter=None)
    clock.t += 0.2
    evs += typed(clock, "B-2", enter=None)
    assert rec.run(evs) == ["A-1"]  # the first key of B-2 came after the pause
    assert rec.decoder.raw.endswith(b"KEY_1 (pause)")
    assert rec.decoder.pause() == "B-2" and rec.decoder.pending == 0
    assert rec.decoder.pause() is None
    # a scanner that sends Enter too: ended by it, or by the pause with its late Enter ignored
    assert rec.run(typed(clock, "C-3")) == ["C-3"]
    late = typed(clock, "D-4", enter=None)
    clock.t += 0.2
    assert rec.run(late + press(clock, E.KEY_ENTER)) == ["D-4"]
    assert rec.discards == []
    with pytest.raises(ValueError):
        KeyDecoder(end_on_pause=1.5, incomplete_after=1.0)


def test_other_event_types_are_ignored():
    rec, clock = Recorder(), Clock()
    evs = [clock.event(E.EV_LED, E.LED_NUML, 1), clock.event(E.EV_MSC, E.MSC_SCAN, 0x70027)]
    evs += press(clock, E.KEY_NUMLOCK) + typed(clock, "5")
    assert rec.run(evs) == ["5"]


# ---------------------------------------------------------------------------------------------
# the reader, against fake devices


class FakeDevice:
    """Enough of evdev.InputDevice: a pipe for select(), events pushed by the test, ENODEV when unplugged."""

    def __init__(self, bus: FakeBus, path: str, name: str, has_enter: bool = True):
        self.bus, self.path, self.name, self.has_enter = bus, path, name, has_enter
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        self.events: collections.deque = collections.deque()
        self.grabbed = self.closed = self.gone = False
        self.grab_error: int | None = None
        self.lock = threading.Lock()

    def fileno(self) -> int:
        return self._r

    def capabilities(self):
        return {E.EV_KEY: [E.KEY_A, E.KEY_ENTER] if self.has_enter else [E.KEY_VOLUMEUP]}

    def grab(self):
        if self.grab_error:
            raise OSError(self.grab_error, os.strerror(self.grab_error))
        self.grabbed = True
        self.bus.grabs.append(self.path)

    def ungrab(self):
        if self.gone:
            raise OSError(errno.ENODEV, "No such device")
        self.grabbed = False

    def push(self, events):
        with self.lock:
            self.events.extend(events)
        os.write(self._w, b"x")

    def unplug(self):
        self.gone = True
        os.write(self._w, b"x")

    def read(self):
        try:
            os.read(self._r, 4096)
        except BlockingIOError:
            pass
        if self.gone:
            raise OSError(errno.ENODEV, "No such device")
        with self.lock:
            if not self.events:
                raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
            events, self.events = list(self.events), collections.deque()
        return iter(events)

    def close(self):
        if not self.closed:
            self.closed = True
            os.close(self._r)
            os.close(self._w)


class FakeBus:
    """The machine's input devices: path -> name; opened devices are remembered for the test."""

    def __init__(self):
        self.present: dict[str, tuple[str, bool]] = {}
        self.opened: list[FakeDevice] = []
        self.grabs: list[str] = []
        self.grab_error: int | None = None

    def plug(self, path: str, name: str, has_enter: bool = True) -> None:
        self.present[path] = (name, has_enter)

    def unplug(self, path: str) -> None:
        del self.present[path]
        for dev in self.opened:
            if dev.path == path and not dev.closed:
                dev.unplug()

    def list_devices(self):
        return [p for p in self.present if p.startswith("/dev/input/event")]

    def open_device(self, path: str) -> FakeDevice:
        if path not in self.present:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        dev = FakeDevice(self, path, *self.present[path])
        dev.grab_error = self.grab_error
        self.opened.append(dev)
        return dev

    def grabbed(self, path: str) -> FakeDevice:
        return next(d for d in reversed(self.opened) if d.path == path and d.grabbed and not d.closed)


def until(cond, timeout: float = 3.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


@pytest.fixture
def bus():
    return FakeBus()


@pytest.fixture
def readers():
    made = []
    yield made
    for r in made:
        r.stop()


def start_reader(bus, readers, **cfg) -> tuple[HidScannerReader, queue.Queue]:
    scans: queue.Queue = queue.Queue()
    r = HidScannerReader(HidScanner(name="till-1", type="hid", **cfg), scans.put, reconnect_max=0.2,
                         open_device=bus.open_device, list_devices=bus.list_devices)
    readers.append(r)
    r.start()
    return r, scans


def test_reader_by_name_grabs_the_scanner_only_and_survives_replug(bus, readers):
    bus.plug("/dev/input/event2", "AT Translated Set 2 keyboard")
    bus.plug("/dev/input/event5", "Netum Barcode Scanner", has_enter=False)  # its consumer-control node
    bus.plug("/dev/input/event6", "Netum Barcode Scanner")
    r, scans = start_reader(bus, readers, device_name="Netum Barcode Scanner")
    until(lambda: r.state == "connected", what="connected")
    assert bus.grabs == ["/dev/input/event6"] and r.device_path == "/dev/input/event6"
    assert all(d.closed for d in bus.opened if d.path != "/dev/input/event6")  # the others were let go
    dev = bus.grabbed("/dev/input/event6")
    dev.push(typed(Clock(), "6901234567892"))
    scan = scans.get(timeout=2)
    assert (scan.device, scan.source, scan.text) == ("till-1", "hid", "6901234567892")
    assert scan.raw.startswith(b"KEY_6 KEY_9") and abs(scan.at - time.time()) < 2

    dev.push(typed(Clock(), "12", enter=None))  # unplugged mid-code
    until(lambda: r.decoder.pending == 2)
    bus.unplug("/dev/input/event5")
    bus.unplug("/dev/input/event6")
    until(lambda: r.state == "disconnected", what="disconnected")
    assert "No such device" in r.last_error and dev.closed
    assert r.discarded == {"incomplete": 1}

    bus.plug("/dev/input/event9", "Netum Barcode Scanner")  # back, as another event node
    until(lambda: r.state == "connected", what="reconnected")
    assert bus.grabs[-1] == "/dev/input/event9" and r.reconnects == 1
    bus.grabbed("/dev/input/event9").push(typed(Clock(), "AFTER-REPLUG"))
    assert scans.get(timeout=2).text == "AFTER-REPLUG"
    assert r.scans == 2


def test_reader_by_path(bus, readers):
    path = "/dev/input/by-id/usb-Honeywell_1900-event-kbd"
    r, scans = start_reader(bus, readers, path=path)
    until(lambda: r.state == "disconnected", what="not plugged in yet")
    assert "No such file" in r.last_error
    bus.plug(path, "Honeywell 1900")
    until(lambda: r.state == "connected", what="connected")
    dev = bus.grabbed(path)
    dev.push(typed(Clock(), "A-1") + typed(Clock(), "B-2"))
    assert [scans.get(timeout=2).text for _ in range(2)] == ["A-1", "B-2"]
    bus.unplug(path)
    until(lambda: r.state == "disconnected")
    bus.plug(path, "Honeywell 1900")
    until(lambda: r.state == "connected")
    assert bus.grabs == [path, path]


def test_reader_path_with_the_wrong_name_is_not_used(bus, readers):
    path = "/dev/input/by-id/usb-kbd"
    bus.plug(path, "Some Keyboard")
    r, _ = start_reader(bus, readers, path=path, device_name="Netum Barcode Scanner")
    until(lambda: r.state == "disconnected")
    assert "not 'Netum Barcode Scanner'" in r.last_error and bus.grabs == []


def test_reader_device_grabbed_elsewhere_is_an_error_and_retried(bus, readers):
    bus.plug("/dev/input/event3", "Scanner")
    bus.grab_error = errno.EBUSY
    r, scans = start_reader(bus, readers, device_name="Scanner")
    until(lambda: r.state == "disconnected")
    assert "EBUSY" in r.last_error
    bus.grab_error = None  # the other program let go
    until(lambda: r.state == "connected")
    bus.grabbed("/dev/input/event3").push(typed(Clock(), "X"))
    assert scans.get(timeout=2).text == "X"


def test_reader_stop_is_prompt_and_ungrabs(bus, readers):
    bus.plug("/dev/input/event3", "Scanner")
    r, _ = start_reader(bus, readers, device_name="Scanner")
    until(lambda: r.state == "connected")
    dev = bus.grabbed("/dev/input/event3")
    start = time.monotonic()
    r.stop()
    assert time.monotonic() - start < 0.3
    assert not dev.grabbed and dev.closed and not r.running


def test_reader_ends_a_code_on_a_pause_when_the_scanner_sends_no_enter(bus, readers):
    bus.plug("/dev/input/event3", "Scanner")
    r, scans = start_reader(bus, readers, device_name="Scanner", end_on_pause_ms=40)
    until(lambda: r.state == "connected")
    dev = bus.grabbed("/dev/input/event3")
    dev.push(typed(Clock(), "6901234567892", enter=None))  # nothing more comes: the pause ends it
    scan = scans.get(timeout=2)
    assert scan.text == "6901234567892" and scan.raw.endswith(b"KEY_2 (pause)")
    clock = Clock()
    first = typed(clock, "A-1", enter=None)
    clock.t += 0.1
    dev.push(first + typed(clock, "B-2"))  # two codes in one read, the first ended by the gap
    assert [scans.get(timeout=2).text for _ in range(2)] == ["A-1", "B-2"]
    assert r.discarded == {} and r.scans == 3
    with pytest.raises(ValueError):
        HidScanner(name="x", type="hid", device_name="Scanner", end_on_pause_ms=5)


def test_config_needs_path_or_name(bus):
    with pytest.raises(ValueError):
        HidScannerReader(HidScanner(name="x", type="hid"), print)


# ---------------------------------------------------------------------------------------------
# a real virtual keyboard (needs /dev/uinput and /dev/input)


def _uinput_usable() -> bool:
    return os.access("/dev/uinput", os.W_OK) and os.path.isdir("/dev/input")


@pytest.mark.skipif(not _uinput_usable(), reason="/dev/uinput is not available here (no uinput module or "
                    "no permission): the real-device path is covered by the fake devices above")
def test_reader_with_a_uinput_keyboard(readers):
    from evdev import UInput

    name = f"store-edge test scanner {os.getpid()}"
    ui = UInput({E.EV_KEY: sorted({E.KEY_ENTER, E.KEY_LEFTSHIFT} | {c for c, _ in CHAR_KEYS.values()})}, name=name)
    try:
        scans: queue.Queue = queue.Queue()
        r = HidScannerReader(HidScanner(name="uinput", type="hid", device_name=name), scans.put, reconnect_max=0.2)
        readers.append(r)
        r.start()
        until(lambda: r.state == "connected", timeout=5, what="uinput device found and grabbed")
        for ev in typed(Clock(), "Ab-1"):
            if ev.type == E.EV_KEY:
                ui.write(ev.type, ev.code, ev.value)
                ui.syn()
        assert scans.get(timeout=3).text == "Ab-1"
    finally:
        ui.close()
    until(lambda: r.state == "disconnected", what="gone with the uinput device")
