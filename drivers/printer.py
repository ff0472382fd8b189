"""One receipt printer on python-escpos's transports, with a status query that can be trusted.

Blocking code: each printer is driven from its own worker thread (edge/printing.py), so a printer
that hangs never holds up the event loop or another printer.

Status (DESIGN.md §6). `DLE EOT 1, 2, 4` are sent together and the *last three* bytes read are
their answers: a stale byte left in the buffer (a late answer to an earlier query, or an automatic
status byte) arrives before ours, never after, so it is skipped rather than read as the answer.
Bytes already waiting are drained first. Clones that ignore DLE EOT often answer `GS r 1` (paper)
and `GS r 2` (drawer); `status = "auto"` tries DLE EOT, then GS r, and keeps to the one that answers.
After a query goes unanswered the connection is closed, so a late answer cannot meet the next query.

Silence means two different things. A printer that has never answered is one that does not do status
(None: jobs go out with a note, and it is asked again only after NO_STATUS_RETRY). A printer that
has answered before and now does not has stopped, hung or lost its cable: that is an error, raised
on every query (never cached), so no job is sent to it blind or counted as printed.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import time
from dataclasses import dataclass

from escpos import printer as escpos_printer

from drivers.models import FilePrinter, NetworkPrinter, SerialPrinter, UsbPrinter

log = logging.getLogger("drivers.printer")

DLE_EOT = b"\x10\x04"
GS_R = b"\x1dr"
CONNECT_TIMEOUT = 3.0
WRITE_TIMEOUT = 10.0  # a printer that takes no byte of a job for this long has stopped (not: a job's whole time)
WRITE_CHUNK = 16 * 1024  # jobs go out in pieces, each with its own timeout: a long job to a slow printer is fine
STATUS_TIMEOUT = 0.5  # a printer answers real-time status in a few ms; silence this long means it will not
STATUS_GRACE = 0.005  # after the answers arrive, wait this long for a straggler that would shift them
NO_STATUS_RETRY = 60.0  # a printer that never answered either query is asked again after this long
# A status query sent after a job is answered once the printer has read the job: allow for the link's
# speed. Serial: baud / 10 bytes a second; network and USB printers read at least this fast.
MIN_BYTES_PER_SECOND = 2048


class PrinterError(Exception):
    """The printer could not be used. `sent` tells whether any byte of the job may have reached it."""

    def __init__(self, message: str, sent: bool = False):
        super().__init__(message)
        self.sent = sent


@dataclass(frozen=True)
class Status:
    online: bool
    cover_open: bool = False
    paper_near_end: bool = False
    paper_out: bool = False
    drawer_open: bool = False
    source: str = "dle_eot"  # or "gs_r" (which only knows paper and drawer)

    @property
    def ready(self) -> bool:
        return self.online and not self.cover_open and not self.paper_out

    @property
    def state(self) -> str:
        """One word for people and logs; the worst condition wins."""
        if self.paper_out:
            return "paper_out"
        if self.cover_open:
            return "cover_open"
        if not self.online:
            return "offline"
        return "paper_near_end" if self.paper_near_end else "ready"

    def as_dict(self) -> dict:
        return {"online": self.online, "cover_open": self.cover_open, "paper_near_end": self.paper_near_end,
                "paper_out": self.paper_out, "drawer_open": self.drawer_open, "source": self.source}


def parse_dle_eot(b1: int, b2: int, b4: int) -> Status | None:
    """Answers to DLE EOT 1, 2 and 4 (Epson: bits 1 and 4 set, 0 and 7 clear in each), or None if not."""
    if any(b & 0x93 != 0x12 for b in (b1, b2, b4)):
        return None
    paper_out = bool(b2 & 0x20) or (b4 & 0x60) == 0x60
    return Status(online=not b1 & 0x08, cover_open=bool(b2 & 0x04), paper_near_end=bool(b4 & 0x0C),
                  paper_out=paper_out, drawer_open=bool(b1 & 0x04), source="dle_eot")


def parse_gs_r(paper: int, drawer: int) -> Status | None:
    """Answers to GS r 1 (paper sensor) and GS r 2 (drawer), or None if they are not such bytes."""
    if paper & 0x90 or drawer & 0x90:
        return None
    return Status(online=True, paper_near_end=bool(paper & 0x03), paper_out=bool(paper & 0x0C),
                  drawer_open=bool(drawer & 0x01), source="gs_r")


QUERIES = {
    "dle_eot": (DLE_EOT + b"\x01" + DLE_EOT + b"\x02" + DLE_EOT + b"\x04", 3, parse_dle_eot),
    "gs_r": (GS_R + b"\x01" + GS_R + b"\x02", 2, parse_gs_r),
}


def make_escpos(cfg) -> escpos_printer.Escpos:
    """The python-escpos printer object for a config entry (not opened yet)."""
    if isinstance(cfg, NetworkPrinter):
        return escpos_printer.Network(cfg.host, port=cfg.port, timeout=CONNECT_TIMEOUT)
    if isinstance(cfg, SerialPrinter):
        return escpos_printer.Serial(devfile=cfg.path, baudrate=cfg.baud, timeout=STATUS_TIMEOUT)
    if isinstance(cfg, UsbPrinter):
        return escpos_printer.Usb(cfg.vendor_id, cfg.product_id, timeout=int(WRITE_TIMEOUT * 1000))
    if isinstance(cfg, FilePrinter):
        return escpos_printer.File(devfile=cfg.path)
    raise TypeError(f"not a printer config: {cfg!r}")


class PrinterDevice:
    """Open, ask status, write. Not thread-safe: one worker thread per printer uses it."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.name = cfg.name
        self._escpos = make_escpos(cfg)
        self._open = False
        # "none" for a printer whose status cannot be read at all (a file device is write-only)
        self._mode = "none" if isinstance(cfg, FilePrinter) else cfg.status
        self._answered_by: str | None = None  # auto: the query that answered last, asked first next time
        self._no_status_until = 0.0
        self._has_answered = False  # since this device was made: silence after an answer is a fault
        self.stale_bytes = 0  # skipped bytes, counted for the tests and the log

    # -- connection -----------------------------------------------------------------------------
    def open(self) -> None:
        if self._open:
            return
        try:
            self._escpos.open()
        except Exception as exc:  # python-escpos raises its own types, OSError or USB errors
            raise PrinterError(f"cannot open printer: {_reason(exc)}") from exc
        if isinstance(self.cfg, NetworkPrinter):
            sock = self._escpos.device
            sock.settimeout(WRITE_TIMEOUT)
            # the status query after a job is 9 bytes: without this, Nagle holds it until the printer's
            # delayed ACK of the job (40 ms on Linux), for every job
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._open = True

    def close(self) -> None:
        if not self._open:
            return
        self._open = False
        try:
            self._escpos.close()
        except Exception as exc:  # noqa: BLE001 (closing a dead port fails: flushing an unplugged serial port)
            log.debug("close failed", extra={"kv": {"printer": self.name, "error": _reason(exc)}})
            with contextlib.suppress(Exception):
                self._escpos._device.close()
            # python-escpos forgets the port only when its close() succeeds; without this the next open()
            # tries to close the dead port again and fails, and a replugged printer never comes back
            self._escpos._device = False

    # -- status ---------------------------------------------------------------------------------
    def status(self, after_bytes: int = 0) -> Status | None:
        """The printer's status, or None when it does not answer status queries (print anyway).

        `after_bytes`: how much was just sent; the answer waits behind it. Raises PrinterError when the
        printer cannot be reached at all, or when it answered before and does not now.
        """
        if self._mode == "none" or time.monotonic() < self._no_status_until:
            self.open()
            return None
        if self._mode != "auto":
            modes: tuple[str, ...] = (self._mode,)
        elif self._answered_by == "gs_r":
            modes = ("gs_r", "dle_eot")  # a printer swapped for another model is found again
        else:
            modes = ("dle_eot", "gs_r")
        for mode in modes:
            self.open()
            status = self._query(mode, STATUS_TIMEOUT + after_bytes / self._bytes_per_second())
            if status is not None:
                if self._mode == "auto" and mode != self._answered_by:
                    self._answered_by = mode
                    log.info("status query answered", extra={"kv": {"printer": self.name, "mode": mode}})
                self._has_answered = True
                return status
            self.close()  # a late answer must not meet the next query
        if self._has_answered:
            raise PrinterError("the printer stopped answering status queries (it answered before)")
        self._no_status_until = time.monotonic() + NO_STATUS_RETRY
        return None

    def _bytes_per_second(self) -> float:
        return self.cfg.baud / 10 if isinstance(self.cfg, SerialPrinter) else MIN_BYTES_PER_SECOND

    def _query(self, mode: str, timeout: float) -> Status | None:
        request, count, parse = QUERIES[mode]
        self._drain()
        self._send(request, during="status query")
        answer = self._read(count, timeout)
        if len(answer) < count:
            return None
        if len(answer) > count:
            self.stale_bytes += len(answer) - count
            log.info("stale status bytes skipped", extra={"kv": {"printer": self.name, "bytes": len(answer) - count}})
        return parse(*answer[-count:])

    # -- writing --------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """Send a job. PrinterError(sent=True) if it broke off after the printer may have got part of it."""
        self.open()
        self._send(data, during="printing", sent=True)

    def _send(self, data: bytes, *, during: str, sent: bool = False) -> None:
        try:
            if isinstance(self.cfg, NetworkPrinter):
                self._send_socket(data)
                return
            for start in range(0, len(data), WRITE_CHUNK):
                self._escpos._raw(data[start:start + WRITE_CHUNK])
            if isinstance(self.cfg, FilePrinter):
                self._escpos.flush()
        except Exception as exc:  # noqa: BLE001 (any transport failure: the connection is gone)
            self.close()
            raise PrinterError(f"connection lost during {during}: {_reason(exc)}", sent=sent) from exc

    def _send_socket(self, data: bytes) -> None:
        """send() by piece as the printer takes it: sendall's timeout bounds the whole job, so a
        printer reading slowly but steadily would be cut off mid-receipt (and the job end uncertain)."""
        sock = self._escpos.device  # its timeout (WRITE_TIMEOUT, set at open) applies to each send
        view = memoryview(data)
        while view:
            view = view[sock.send(view[:WRITE_CHUNK]):]

    # -- transport-level reads --------------------------------------------------------------------
    def _drain(self) -> None:
        """Throw away bytes already waiting: they answer nothing we are about to ask."""
        dev = self._escpos.device
        if isinstance(self.cfg, NetworkPrinter):
            while select.select([dev], [], [], 0)[0]:
                try:
                    chunk = dev.recv(256)
                except OSError as exc:
                    self.close()
                    raise PrinterError(f"connection lost: {_reason(exc)}") from exc
                if not chunk:
                    self.close()
                    raise PrinterError("the printer closed the connection")
                self.stale_bytes += len(chunk)
        elif isinstance(self.cfg, SerialPrinter):
            try:
                waiting = dev.in_waiting
                dev.reset_input_buffer()
            except OSError as exc:  # pyserial's SerialException too: the port was unplugged
                self.close()
                raise PrinterError(f"connection lost: {_reason(exc)}") from exc
            self.stale_bytes += waiting
        elif isinstance(self.cfg, UsbPrinter):
            try:
                while self._usb_read(10):
                    pass
            except OSError as exc:
                self.close()
                raise PrinterError(f"connection lost: {_reason(exc)}") from exc

    def _read(self, count: int, timeout: float) -> bytes:
        """Read until `count` bytes came, then a short grace for stragglers; b'' on silence."""
        buf = bytearray()
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            wait = (deadline - now) if len(buf) < count else STATUS_GRACE
            if wait <= 0:
                break
            chunk = self._read_some(wait)
            if not chunk:
                if len(buf) >= count or time.monotonic() >= deadline:
                    break
                continue
            buf += chunk
            if len(buf) >= count:
                deadline = time.monotonic()  # from here on only the grace period applies
        return bytes(buf)

    def _read_some(self, timeout: float) -> bytes:
        dev = self._escpos.device
        try:
            if isinstance(self.cfg, NetworkPrinter):
                if not select.select([dev], [], [], timeout)[0]:
                    return b""
                chunk = dev.recv(64)
                if not chunk:
                    raise PrinterError("the printer closed the connection")
                return chunk
            if isinstance(self.cfg, SerialPrinter):
                dev.timeout = timeout
                first = dev.read(1)  # read(64) would wait out the timeout for bytes that never come
                return first + dev.read(dev.in_waiting) if first else b""
            if isinstance(self.cfg, UsbPrinter):
                return self._usb_read(max(1, int(timeout * 1000)))
        except PrinterError:
            self.close()
            raise
        except (OSError, socket.timeout) as exc:
            self.close()
            raise PrinterError(f"connection lost: {_reason(exc)}") from exc
        return b""

    def _usb_read(self, timeout_ms: int) -> bytes:
        import usb.core  # noqa: PLC0415 (pyusb comes with python-escpos; only USB printers need it)

        try:
            return bytes(self._escpos.device.read(self._escpos.in_ep, 64, timeout_ms))
        except usb.core.USBTimeoutError:
            return b""
        except usb.core.USBError as exc:
            raise OSError(str(exc)) from exc


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().replace("\n", " ")
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__
