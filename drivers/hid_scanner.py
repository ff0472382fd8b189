"""Keyboard-wedge (HID) barcode scanners, read through evdev with an exclusive grab.

The grab means the scanner's keys never reach the desktop (no focus problems, no codes typed into
whatever window is open). One thread per scanner (drivers/scan.py: `on_scan` is called from that
thread; hop to the event loop with `loop.call_soon_threadsafe`); it waits with select() and a short
timeout, so stop() is prompt.

The device is found by a stable path (`/dev/input/by-id/usb-...-event-kbd`) or by the name evdev
reports (`device_name`); with both, the device at the path must have that name. Several input nodes
with the same name: the one that has an Enter key wins. Hot-plug: a read that fails (ENODEV) makes
the scanner "disconnected"; it is looked for again, with backoff, and grabbed again.

KeyDecoder turns key events into text (US layout, as scanners send it): letters, digits, the
punctuation of GS1, URLs and tokens, the keypad; Shift and Caps Lock; Ctrl+] is GS (0x1D, the GS1
FNC1 separator, as scanners send it in keyboard mode). Enter / keypad Enter ends a code. Key-ups
and autorepeats are ignored. Any other key (F-keys, arrows, Alt+keypad sequences, other Ctrl
combinations) makes the code garbage: it is discarded at its Enter, with the reason "unknown_key".

With `end_on_pause_ms` set, a pause that long between two keys also ends a code, as scanner tools
do: for scanners set to send no Enter (or set up for a Chinese input method, whose Enter would be a
commit). Scanners type a code within a few ms a key, people and the next scan are far slower. An
Enter that then finds nothing to end (a scanner that does send one, after the pause) is ignored.

Needs read access to /dev/input/event* (the `input` group, or a udev rule for the scanner).
"""

from __future__ import annotations

import errno
import select
import time
from collections.abc import Callable, Iterable

import evdev
from evdev import ecodes

from drivers.models import HidScanner
from drivers.scan import Scan, ScannerError, ScannerReader

READ_TIMEOUT = 0.05     # select() timeout: how soon stop() is seen
MAX_LENGTH = 256        # characters; longer codes are discarded
INCOMPLETE_AFTER = 1.0  # seconds between two keys of one code beyond which the first part is dropped

E = ecodes


def _pairs(spec: dict[int, str]) -> dict[int, tuple[str, str]]:
    return {code: (chars[0], chars[1]) for code, chars in spec.items()}


# key code -> (unshifted, shifted), US layout
KEYMAP: dict[int, tuple[str, str]] = {
    **{getattr(E, f"KEY_{c.upper()}"): (c, c.upper()) for c in "abcdefghijklmnopqrstuvwxyz"},
    **_pairs({E.KEY_1: "1!", E.KEY_2: "2@", E.KEY_3: "3#", E.KEY_4: "4$", E.KEY_5: "5%", E.KEY_6: "6^",
              E.KEY_7: "7&", E.KEY_8: "8*", E.KEY_9: "9(", E.KEY_0: "0)",
              E.KEY_MINUS: "-_", E.KEY_EQUAL: "=+", E.KEY_LEFTBRACE: "[{", E.KEY_RIGHTBRACE: "]}",
              E.KEY_BACKSLASH: "\\|", E.KEY_SEMICOLON: ";:", E.KEY_APOSTROPHE: "'\"", E.KEY_GRAVE: "`~",
              E.KEY_COMMA: ",<", E.KEY_DOT: ".>", E.KEY_SLASH: "/?", E.KEY_SPACE: "  "}),
    # the keypad: scanners in "keypad" mode send digits here, whatever Num Lock says
    **{getattr(E, f"KEY_KP{d}"): (str(d), str(d)) for d in range(10)},
    **_pairs({E.KEY_KPDOT: "..", E.KEY_KPMINUS: "--", E.KEY_KPPLUS: "++", E.KEY_KPASTERISK: "**",
              E.KEY_KPSLASH: "//", E.KEY_KPEQUAL: "==", E.KEY_KPCOMMA: ",,"}),
}
SHIFTS = frozenset({E.KEY_LEFTSHIFT, E.KEY_RIGHTSHIFT})
CTRLS = frozenset({E.KEY_LEFTCTRL, E.KEY_RIGHTCTRL})
OTHER_MODIFIERS = frozenset({E.KEY_LEFTALT, E.KEY_RIGHTALT, E.KEY_LEFTMETA, E.KEY_RIGHTMETA})
ENTERS = frozenset({E.KEY_ENTER, E.KEY_KPENTER})
IGNORED = frozenset({E.KEY_NUMLOCK, E.KEY_SCROLLLOCK})  # no effect on what a scanner types
CTRL_CHARS = {E.KEY_RIGHTBRACE: "\x1d"}  # Ctrl+] = GS
KEY_UP, KEY_DOWN, KEY_REPEAT = 0, 1, 2


def key_name(code: int) -> str:
    name = ecodes.KEY.get(code) or ecodes.BTN.get(code)
    if isinstance(name, (list, tuple)):
        name = name[0]
    return name or f"KEY_{code}"


class KeyDecoder:
    """Key events in, codes out. Pure: no device, no clock but the events' own timestamps.

    feed(event) returns the text of a code when its Enter arrives, else None. A code that is thrown
    away goes to `on_discard(reason, raw, length)` instead (reasons: "unknown_key", "too_long",
    "empty", "incomplete"). After a code ends, `raw` holds its keys rendered as text bytes, e.g.
    b"KEY_A shift+KEY_B KEY_ENTER", for the device page.
    """

    def __init__(self, *, max_length: int = MAX_LENGTH, incomplete_after: float = INCOMPLETE_AFTER,
                 end_on_pause: float | None = None,
                 on_discard: Callable[[str, bytes, int], None] | None = None):
        if end_on_pause is not None and not 0 < end_on_pause < incomplete_after:
            raise ValueError(f"end_on_pause must be between 0 and incomplete_after ({incomplete_after} s)")
        self.max_length = max_length
        self.incomplete_after = incomplete_after
        self.end_on_pause = end_on_pause
        self.on_discard = on_discard
        self.raw = b""
        self._shift: set[int] = set()
        self._ctrl: set[int] = set()
        self._other: set[int] = set()
        self._caps = False
        self._chars: list[str] = []
        self._keys: list[str] = []
        self._length = 0
        self._unknown = False
        self._last_key = None  # timestamp of the last key-down of the current code

    @property
    def pending(self) -> int:
        """Keys typed into the current, unfinished code."""
        return len(self._keys)

    def reset(self) -> None:
        """Forget modifiers and any unfinished code (the device was unplugged or regrabbed)."""
        if self._keys:
            self._drop("incomplete")
        self._shift.clear()
        self._ctrl.clear()
        self._other.clear()
        self._caps = False

    def feed(self, event) -> str | None:
        """The text of a code that this event ended (its Enter, or with end_on_pause, the first key
        after the pause), else None."""
        if event.type != ecodes.EV_KEY:
            return None  # EV_SYN, EV_MSC (scan codes), EV_LED...
        code, value = event.code, event.value
        held = (self._shift if code in SHIFTS else self._ctrl if code in CTRLS
                else self._other if code in OTHER_MODIFIERS else None)
        if held is not None:  # a modifier: only its state matters
            if value == KEY_DOWN:
                held.add(code)
            elif value == KEY_UP:
                held.discard(code)
            return None
        if value != KEY_DOWN:
            return None  # key-up, autorepeat
        now = event.timestamp()
        ended = None
        gap = now - self._last_key if self._keys and self._last_key is not None else 0.0
        if self.end_on_pause is not None and gap >= self.end_on_pause:
            ended = self._end(None)  # the pause ended it: this key starts the next code
        elif gap > self.incomplete_after:
            self._drop("incomplete")  # the Enter of the previous code was lost
        self._last_key = now
        if code == E.KEY_CAPSLOCK:
            self._caps = not self._caps
        elif code in ENTERS:
            if self._keys or self.end_on_pause is None:
                return self._end(code)
        elif code not in IGNORED:
            self._add_key(code)
        return ended

    def pause(self) -> str | None:
        """The reader saw no key for end_on_pause: the code typed so far ends (its text, or None when it
        is discarded or there is none)."""
        if self.end_on_pause is None or not self._keys:
            return None
        return self._end(None)

    # -- internals --------------------------------------------------------------------------------
    def _add_key(self, code: int) -> None:
        shift = bool(self._shift)
        prefix = "".join(p for p, on in (("ctrl+", self._ctrl), ("alt+", self._other), ("shift+", shift)) if on)
        if len(self._keys) <= self.max_length:  # raw stays bounded too
            self._keys.append(prefix + key_name(code))
        char = None
        if self._other:
            pass  # Alt/Meta combinations (e.g. Alt+keypad character codes): not supported
        elif self._ctrl:
            char = CTRL_CHARS.get(code)
        elif code in KEYMAP:
            low, high = KEYMAP[code]
            upper = shift != (self._caps and low.isalpha())
            char = high if upper else low
        if char is None:
            self._unknown = True
            return
        self._length += 1
        if self._length <= self.max_length:
            self._chars.append(char)

    def _end(self, code: int | None) -> str | None:
        """End the current code at the key `code` (an Enter) or, None, at a pause."""
        self._keys.append(key_name(code) if code is not None else "(pause)")
        raw = " ".join(self._keys).encode()
        reason = ("unknown_key" if self._unknown else "too_long" if self._length > self.max_length
                  else "empty" if not self._chars else None)
        text = "".join(self._chars)
        length = self._length
        self._clear()
        self.raw = raw
        if reason is not None:
            if self.on_discard is not None:
                self.on_discard(reason, raw, length)
            return None
        return text

    def _drop(self, reason: str) -> None:
        raw = " ".join(self._keys).encode()
        length = self._length
        self._clear()
        self.raw = raw
        if self.on_discard is not None:
            self.on_discard(reason, raw, length)

    def _clear(self) -> None:
        self._chars = []
        self._keys = []
        self._length = 0
        self._unknown = False


def _has_enter(device) -> bool:
    try:
        return E.KEY_ENTER in device.capabilities().get(E.EV_KEY, [])
    except (OSError, AttributeError):
        return False


class HidScannerReader(ScannerReader):
    """Reads one keyboard-wedge scanner in its own thread; see drivers/scan.py for state and counters.

    `open_device` / `list_devices` default to evdev.InputDevice / evdev.list_devices (tests pass fakes).
    """

    source = "hid"

    def __init__(self, cfg: HidScanner, on_scan: Callable[[Scan], None], *, reconnect_max: float = 5.0,
                 max_length: int | None = None, incomplete_after: float = INCOMPLETE_AFTER,
                 open_device: Callable[[str], object] = evdev.InputDevice,
                 list_devices: Callable[[], Iterable[str]] = evdev.list_devices):
        super().__init__(cfg, on_scan, reconnect_max=reconnect_max)
        if not cfg.path and not cfg.device_name:
            raise ValueError(f"hid scanner {cfg.name}: set path or device_name")
        pause_ms = getattr(cfg, "end_on_pause_ms", None)
        self.decoder = KeyDecoder(max_length=max_length or getattr(cfg, "max_length", None) or MAX_LENGTH,
                                  incomplete_after=incomplete_after, on_discard=self._discard,
                                  end_on_pause=None if pause_ms is None else pause_ms / 1000)
        # select() must come back well within the pause for a code to end on time
        self._read_timeout = READ_TIMEOUT if pause_ms is None else min(READ_TIMEOUT, pause_ms / 4000)
        # when keys last arrived, on this PC's clock: event timestamps may be on another clock
        # (CLOCK_REALTIME or CLOCK_MONOTONIC, as the device was set), so they only measure gaps
        # between events, never against now
        self._last_input = 0.0
        self._open_device = open_device
        self._list_devices = list_devices
        self.device = None
        self.device_path: str | None = None  # the /dev/input/eventN found, for the device page

    # -- finding and grabbing ---------------------------------------------------------------------
    def _find(self):
        name = self.cfg.device_name
        if self.cfg.path:
            device = self._open_device(self.cfg.path)  # FileNotFoundError while unplugged
            if name and device.name != name:
                found = device.name
                _close_quietly(device)
                raise ScannerError(f"{self.cfg.path} is {found!r}, not {name!r}")
            return device
        matches = []
        for path in sorted(self._list_devices()):
            try:
                device = self._open_device(path)
            except OSError:
                continue  # gone meanwhile, or no permission for this one
            if device.name == name:
                matches.append(device)
            else:
                _close_quietly(device)
        if not matches:
            raise ScannerError(f"no input device named {name!r}")
        matches.sort(key=lambda d: not _has_enter(d))
        for extra in matches[1:]:
            _close_quietly(extra)
        return matches[0]

    def _open(self) -> None:
        device = self._find()
        try:
            device.grab()
        except OSError as exc:
            _close_quietly(device)
            if exc.errno == errno.EBUSY:
                raise ScannerError("grabbed by another program (EBUSY)") from exc
            raise
        self.device = device
        self.device_path = getattr(device, "path", None)
        self.decoder.reset()

    def _close(self) -> None:
        device, self.device = self.device, None
        self.decoder.reset()  # an unfinished code is dropped as "incomplete"
        if device is not None:
            try:
                device.ungrab()
            except (OSError, AttributeError):
                pass  # an unplugged device cannot be ungrabbed; the kernel released it
            _close_quietly(device)

    def _pump(self) -> None:
        device = self.device
        ready, _, _ = select.select([device.fileno()], [], [], self._read_timeout)
        try:
            events = list(device.read()) if ready else []
        except BlockingIOError:
            events = []
        now = time.monotonic()
        if not events:
            pause = self.decoder.end_on_pause
            if pause is not None and self.decoder.pending and now - self._last_input >= pause:
                text = self.decoder.pause()
                if text is not None:
                    self._deliver(text, self.decoder.raw, time.time())
            return
        self._last_input = now
        for event in events:
            text = self.decoder.feed(event)
            if text is not None:
                self._deliver(text, self.decoder.raw, time.time())


def _close_quietly(device) -> None:
    try:
        device.close()
    except Exception:  # noqa: BLE001 (a device that is gone may fail to close)
        pass
