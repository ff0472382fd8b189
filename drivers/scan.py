"""What a scanner hands on: one Scan per code, and the reader-thread bookkeeping the scanners share.

Each scanner is read by its own thread (blocking reads with a short timeout, so stop() is prompt).
`on_scan` is called *from that thread*: a caller on an event loop hops over itself, e.g.
`ScannerReader(cfg, lambda scan: loop.call_soon_threadsafe(queue.put_nowait, scan))`.
It must not block: the scanner is not read while it runs.

A reader is always in one of three states: "connecting" (not opened yet), "connected", and
"disconnected" (unplugged or never found; retried with exponential backoff). Each change of state is
logged once, not at every retry; each discarded code is logged once with its reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("drivers.scanner")

RETRY_FIRST = 0.1      # the first retry after a failed open; doubled up to reconnect_max
STABLE_AFTER = 1.0     # a connection that lasted this long resets the backoff
JOIN_TIMEOUT = 2.0


@dataclass(frozen=True)
class Scan:
    device: str        # the scanner's config name
    source: str        # "serial" | "hid" | "camera"
    text: str          # the decoded code (UTF-8; GB18030 fallback for serial bytes that are not UTF-8)
    raw: bytes         # the bytes as received (serial) or the key codes rendered as text bytes (hid)
    at: float          # time.time() when the code ended


class ScannerError(Exception):
    """The scanner cannot be opened or read (not plugged in, no permission, grabbed by another program)."""


def reason_of(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class ScannerReader:
    """The thread, the state, the backoff and the counters; subclasses open, pump and close a device.

    Subclass hooks, all called from the reader thread:
      _open()  -> None   open the device; raise OSError or ScannerError when it cannot be opened
      _pump()  -> None   wait at most ~50 ms for input and handle it; raise OSError when the device is gone
      _close() -> None   release the device (must not raise)
    """

    source = "?"

    def __init__(self, cfg, on_scan: Callable[[Scan], None], *, reconnect_max: float = 5.0):
        self.cfg = cfg
        self.name: str = cfg.name
        self.on_scan = on_scan
        self.reconnect_max = max(reconnect_max, RETRY_FIRST)
        self.state = "connecting"
        self.last_error: str | None = None
        self.last_scan: Scan | None = None
        self.scans = 0
        self.discarded: dict[str, int] = {}
        self.reconnects = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("already started")
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"scanner-{self.name}")
        self._thread.start()

    def stop(self, timeout: float = JOIN_TIMEOUT) -> None:
        """Stop reading and release the device; returns within ~0.1 s (the read timeout)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("scanner thread did not stop", extra={"kv": {"device": self.name}})

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def status(self) -> dict:
        """A snapshot for the device page and /health: state, last error, counters, the last scan."""
        with self._lock:
            last = self.last_scan
            return {
                "device": self.name, "source": self.source, "state": self.state, "last_error": self.last_error,
                "scans": self.scans, "discarded": dict(self.discarded), "reconnects": self.reconnects,
                "last_scan": None if last is None else {
                    "text": last.text, "raw_hex": last.raw.hex(" "), "at": last.at},
            }

    # -- the thread -------------------------------------------------------------------------------
    def _run(self) -> None:
        delay = RETRY_FIRST
        try:
            while not self._stop.is_set():
                try:
                    self._open()
                except (OSError, ScannerError) as exc:
                    self._set_down(reason_of(exc), opening=True)
                    self._stop.wait(delay)
                    delay = min(delay * 2, self.reconnect_max)
                    continue
                self._set_up()
                since = time.monotonic()
                try:
                    while not self._stop.is_set():
                        self._pump()
                except (OSError, ScannerError) as exc:
                    self._close()
                    self._set_down(reason_of(exc), opening=False)
                    if time.monotonic() - since >= STABLE_AFTER:
                        delay = RETRY_FIRST
                    self._stop.wait(delay)
                    delay = min(delay * 2, self.reconnect_max)
                    continue
                self._close()
        except Exception:  # noqa: BLE001 (a bug must not pass silently: the scanner would just go quiet)
            log.exception("scanner thread crashed", extra={"kv": {"device": self.name}})
            with self._lock:
                self.state, self.last_error = "disconnected", "internal error (see log)"

    def _set_up(self) -> None:
        with self._lock:
            before, self.state = self.state, "connected"
            if before == "disconnected":
                self.reconnects += 1
        kv = {"device": self.name, "source": self.source}
        if before == "disconnected":
            log.info("scanner back", extra={"kv": {**kv, "after_error": self.last_error}})
        else:
            log.info("scanner connected", extra={"kv": kv})

    def _set_down(self, error: str, *, opening: bool) -> None:
        with self._lock:
            before, self.state = self.state, "disconnected"
            changed = error != self.last_error
            self.last_error = error
        if before != "disconnected":
            message = "scanner not available" if opening else "scanner disconnected"
            log.warning(message, extra={"kv": {"device": self.name, "source": self.source, "error": error}})
        elif changed:  # still down, for another reason (e.g. no permission): last_error shows it
            log.debug("scanner still not available",
                     extra={"kv": {"device": self.name, "source": self.source, "error": error}})

    # -- results ----------------------------------------------------------------------------------
    def _deliver(self, text: str, raw: bytes, at: float | None = None) -> Scan:
        scan = Scan(device=self.name, source=self.source, text=text, raw=raw,
                    at=time.time() if at is None else at)
        with self._lock:
            self.scans += 1
            self.last_scan = scan
        try:
            self.on_scan(scan)
        except Exception:  # noqa: BLE001 (the caller's bug must not stop the scanner)
            log.exception("on_scan failed", extra={"kv": {"device": self.name}})
        return scan

    def _discard(self, reason: str, raw: bytes, length: int | None = None) -> None:
        with self._lock:
            self.discarded[reason] = self.discarded.get(reason, 0) + 1
        kv = {"device": self.name, "reason": reason, "length": len(raw) if length is None else length}
        if raw:
            # 8 bytes show what went wrong at the start; 16 were most of a payment code (付款码), a
            # bearer credential that the log must never hold whole
            kv["head"] = raw[:8].hex(" ")
        level = logging.INFO if reason in ("empty", "incomplete") else logging.WARNING
        log.log(level, "scan discarded", extra={"kv": kv})
