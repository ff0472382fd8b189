"""The printer driver (drivers/printer.py) on its real transports: no mock of the driver's logic.

Network: python-escpos Network connections to a VirtualPrinter on loopback (and, for one case, a tiny
asyncio server that answers with an extra leading byte). Serial: a pty pair, with a responder thread
on the master side playing the printer (drivers.virtual_printer.Decoder + status_byte). File: a temp
file. USB: an absent device. Blocking driver calls go through the loop's executor, as the daemon's
worker thread does; waits are on conditions (short polls), never fixed sleeps beyond the driver's own
timeouts.
"""

from __future__ import annotations

import asyncio
import os
import select
import socket
import threading
import time

import pytest

from drivers import printer as printer_mod
from drivers.models import FilePrinter, NetworkPrinter, SerialPrinter, UsbPrinter
from drivers.printer import PrinterDevice, PrinterError, Status, parse_dle_eot, parse_gs_r
from drivers.virtual_printer import Decoder, PrinterState, VirtualPrinter, gs_r_byte, status_byte

ESC, GS, FS = b"\x1b", b"\x1d", b"\x1c"
DLE_EOT = b"\x10\x04"
CUT = GS + b"V\x42\x00"


def zh(text: str) -> bytes:
    return FS + b"&" + text.encode("gb18030") + FS + b"."


JOB = (ESC + b"@" + ESC + b"a\x01" + zh("便利店 总店") + b"\n" + ESC + b"a\x00"
       + zh("农夫山泉 550ml") + b"  2 x 2.00\n" + b"TOTAL " + zh("￥7.50") + b"\n" + ESC + b"d\x02" + CUT)
JOB_TEXT = "便利店 总店\n农夫山泉 550ml  2 x 2.00\nTOTAL ￥7.50\n\n"


# ---------------------------------------------------------------------------------------------
# helpers


def net(port: int, **extra) -> NetworkPrinter:
    return NetworkPrinter(name="counter", type="network", host="127.0.0.1", port=port, **extra)


async def run(fn, *args):
    """A blocking driver call on a worker thread, as edge/printing.py does."""
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


async def timed(fn, *args):
    start = time.monotonic()
    result = await run(fn, *args)
    return result, time.monotonic() - start


async def until(predicate, timeout: float = 2.0) -> None:
    """Wait for a condition another party makes true (the printer's task or thread)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.002)


def readable(sock) -> bool:
    return bool(select.select([sock], [], [], 0)[0])


def free_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def vp():
    async with VirtualPrinter(port=0) as printer:
        yield printer


@pytest.fixture
def devices():
    """Devices made by a test, closed after it."""
    made: list[PrinterDevice] = []

    def make(cfg) -> PrinterDevice:
        dev = PrinterDevice(cfg)
        made.append(dev)
        return dev

    yield make
    for dev in made:
        dev.close()
        forget_dead_port(dev)


def forget_dead_port(dev: PrinterDevice) -> None:
    """Close a port python-escpos could not close itself. Its Serial.close() raises in flush() on an
    unplugged port and then keeps the dead port, which Escpos.__del__ tries to close again at some
    random garbage collection, raising inside whatever runs then (pytest's own imports included)."""
    port = getattr(dev._escpos, "_device", False)
    if port:
        try:
            port.close()
        except Exception:  # noqa: BLE001 (it is dead: closing its fd is all that is left to do)
            pass
        dev._escpos._device = False


# ---------------------------------------------------------------------------------------------
# 1. parsing the answer bytes

# state -> (PrinterState changes, DLE EOT status, GS r status); GS r cannot see offline or the cover
STATES = {
    "online": ({}, Status(online=True), Status(online=True, source="gs_r")),
    "offline": ({"online": False}, Status(online=False), Status(online=True, source="gs_r")),
    "cover_open": ({"cover_open": True}, Status(online=False, cover_open=True), Status(online=True, source="gs_r")),
    "paper_near_end": ({"paper_near_end": True}, Status(online=True, paper_near_end=True),
                       Status(online=True, paper_near_end=True, source="gs_r")),
    "paper_out": ({"paper_out": True}, Status(online=False, paper_near_end=True, paper_out=True),
                  Status(online=True, paper_near_end=True, paper_out=True, source="gs_r")),
    "drawer_open": ({"drawer_open": True}, Status(online=True, drawer_open=True),
                    Status(online=True, drawer_open=True, source="gs_r")),
}
DLE_STATE = {"online": "ready", "offline": "offline", "cover_open": "cover_open", "paper_near_end": "paper_near_end",
             "paper_out": "paper_out", "drawer_open": "ready"}
GS_R_STATE = {**DLE_STATE, "offline": "ready", "cover_open": "ready"}


@pytest.mark.parametrize("name", STATES)
def test_parse_dle_eot_answers_of_each_state(name):
    changes, expected, _ = STATES[name]
    state = PrinterState(**changes)
    got = parse_dle_eot(status_byte(1, state), status_byte(2, state), status_byte(4, state))
    assert got == expected
    assert got.state == DLE_STATE[name]
    assert got.ready == (name in ("online", "paper_near_end", "drawer_open"))


@pytest.mark.parametrize("name", STATES)
def test_parse_gs_r_answers_of_each_state(name):
    changes, _, expected = STATES[name]
    state = PrinterState(**changes)
    got = parse_gs_r(gs_r_byte(1, state), gs_r_byte(2, state))
    assert got == expected
    assert got.state == GS_R_STATE[name]


def test_parse_epson_spec_bytes():
    """Pinned to the spec's bytes, not only to the virtual printer's (both could drift together)."""
    assert parse_dle_eot(0x12, 0x12, 0x12) == Status(online=True)
    assert parse_dle_eot(0x1A, 0x32, 0x7E).state == "paper_out"
    assert parse_dle_eot(0x1A, 0x16, 0x12).state == "cover_open"
    assert parse_dle_eot(0x12, 0x12, 0x72).paper_out  # roll end (bits 5+6 of DLE EOT 4) alone
    assert parse_dle_eot(0x16, 0x12, 0x12).drawer_open
    assert parse_gs_r(0x0F, 0x01) == Status(online=True, paper_near_end=True, paper_out=True, drawer_open=True,
                                            source="gs_r")
    assert parse_gs_r(0x00, 0x00) == Status(online=True, source="gs_r")  # GS r's all-clear is 0x00


# 0x00: fixed bits 1 and 4 clear; 0xFF / 0x92: bit 7 set; 0x13: bit 0 set; 0x02 / 0x10: one fixed bit missing
@pytest.mark.parametrize("bad", [0x00, 0xFF, 0x92, 0x13, 0x02, 0x10])
@pytest.mark.parametrize("position", [0, 1, 2])
def test_parse_dle_eot_rejects_bytes_that_are_not_answers(bad, position):
    answers = [0x12, 0x12, 0x12]
    answers[position] = bad
    assert parse_dle_eot(*answers) is None


# bit 7 or bit 4 set (0x12 is a DLE EOT answer, not a GS r one); 0x00 is GS r's valid all-clear
@pytest.mark.parametrize("bad", [0x80, 0xFF, 0x10, 0x12, 0x90])
def test_parse_gs_r_rejects_bytes_that_are_not_answers(bad):
    assert parse_gs_r(bad, 0x00) is None
    assert parse_gs_r(0x00, bad) is None


# ---------------------------------------------------------------------------------------------
# 2. status over real TCP


@pytest.mark.parametrize("name", STATES)
async def test_status_over_tcp_for_each_state(vp, devices, name):
    changes, expected, _ = STATES[name]
    vp.set_state(**changes)
    dev = devices(net(vp.port))
    status = await run(dev.status)
    assert status == expected and status.state == DLE_STATE[name]
    assert [r[:2] for r in vp.status_requests] == [("DLE EOT", 1), ("DLE EOT", 2), ("DLE EOT", 4)]
    assert dev.stale_bytes == 0


async def test_auto_mode_falls_back_to_gs_r_and_keeps_to_it(vp, devices):
    vp.set_state(answers="gs_r", paper_out=True)
    dev = devices(net(vp.port))
    status, first = await timed(dev.status)
    assert status.source == "gs_r" and status.paper_out and status.state == "paper_out"
    assert first >= printer_mod.STATUS_TIMEOUT  # DLE EOT went unanswered first
    vp.set_state(paper_out=False, drawer_open=True)
    asked = len(vp.status_requests)
    status, again = await timed(dev.status)
    assert status == Status(online=True, drawer_open=True, source="gs_r")
    assert again < printer_mod.STATUS_TIMEOUT / 2  # straight to GS r
    assert {r[0] for r in vp.status_requests[asked:]} == {"GS r"}


async def test_auto_mode_finds_the_other_query_when_the_printer_is_swapped(vp, devices):
    dev = devices(net(vp.port))
    assert (await run(dev.status)).source == "dle_eot"
    vp.set_state(answers="gs_r", paper_out=True)  # the printer was replaced by a clone
    status = await run(dev.status)
    assert status is not None and status.source == "gs_r" and status.paper_out


async def test_printer_that_never_answers_gives_none_then_cached_and_still_prints(vp, devices):
    vp.set_state(answers="none")
    dev = devices(net(vp.port))
    status, first = await timed(dev.status)
    assert status is None
    assert first >= 2 * printer_mod.STATUS_TIMEOUT  # DLE EOT then GS r, each waited out
    status, again = await timed(dev.status)
    assert status is None and again < printer_mod.STATUS_TIMEOUT / 2  # NO_STATUS_RETRY: not asked again
    await run(dev.write, JOB)
    receipts = await vp.wait_receipts(1)
    assert receipts[0].text == JOB_TEXT
    assert vp.status_requests == []


async def test_printer_that_stops_answering_is_an_error_every_time_not_no_status(vp, devices):
    dev = devices(net(vp.port))
    assert (await run(dev.status)).ready  # it answered: silence from now on is a fault, not a kind of printer
    vp.set_state(answers="none")  # hung firmware, a stopped process: the port still takes bytes
    for _ in range(2):  # asked again each time: no "unchecked for a minute" cache
        start = time.monotonic()
        with pytest.raises(PrinterError, match="stopped answering"):
            await run(dev.status)
        assert time.monotonic() - start >= 2 * printer_mod.STATUS_TIMEOUT
    vp.set_state(answers="all")
    assert (await run(dev.status)).ready
    assert vp.receipts() == [] and vp.pending().lines == []


async def test_fixed_dle_eot_mode_against_a_gs_r_only_printer_is_none(vp, devices):
    vp.set_state(answers="gs_r")
    dev = devices(net(vp.port, status="dle_eot"))
    assert await run(dev.status) is None
    assert vp.status_requests == []  # it never fell back to GS r


async def test_fixed_gs_r_mode(vp, devices):
    vp.set_state(paper_near_end=True)
    dev = devices(net(vp.port, status="gs_r"))
    status = await run(dev.status)
    assert status == Status(online=True, paper_near_end=True, source="gs_r")
    assert {r[0] for r in vp.status_requests} == {"GS r"}


async def test_status_none_mode_asks_nothing(vp, devices):
    dev = devices(net(vp.port, status="none"))
    assert await run(dev.status) is None
    await run(dev.write, JOB)
    await vp.wait_receipts(1)
    assert vp.status_requests == []


# ---------------------------------------------------------------------------------------------
# 3. stale bytes


async def test_stale_answer_waiting_in_the_socket_is_drained(vp, devices):
    dev = devices(net(vp.port))
    await run(dev.open)
    await run(dev._escpos._raw, DLE_EOT + b"\x01")  # an earlier query whose answer nobody reads
    await until(lambda: len(vp.status_requests) == 1)
    assert vp.status_requests[0] == ("DLE EOT", 1, 0x12)  # "ready", sitting in our socket
    await until(lambda: readable(dev._escpos.device))
    vp.set_state(paper_out=True)
    status = await run(dev.status)
    assert status.paper_out and status.state == "paper_out"
    assert dev.stale_bytes == 1


class LeadingByteServer:
    """A printer that answers DLE EOT 1 with an extra byte before it (a late answer or an automatic
    status byte that turns up after the driver drained, but before the real answers)."""

    def __init__(self, state: PrinterState, extra: bytes = b"\x12"):
        self.state, self.extra = state, extra
        self.answered: list[bytes] = []
        self._server = None
        self.port = 0

    async def __aenter__(self):
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self._server.close()
        await self._server.wait_closed()

    async def _client(self, reader, writer):
        buf = b""
        try:
            while data := await reader.read(256):
                buf += data
                while (i := buf.find(DLE_EOT)) >= 0 and len(buf) > i + 2:
                    n = buf[i + 2]
                    buf = buf[i + 3:]
                    if n == 1:  # the stale byte goes out first, in its own write
                        writer.write(self.extra)
                        await writer.drain()
                        self.answered.append(self.extra)
                    answer = bytes([status_byte(n, self.state)])
                    writer.write(answer)
                    await writer.drain()
                    self.answered.append(answer)
        except ConnectionError:
            pass
        finally:
            writer.close()


async def test_stale_byte_arriving_after_the_drain_is_skipped(devices):
    async with LeadingByteServer(PrinterState(paper_out=True)) as server:
        dev = devices(net(server.port))
        status = await run(dev.status)
        assert server.answered == [b"\x12", b"\x1a", b"\x32", b"\x7e"]
        assert status is not None and status.paper_out and status.state == "paper_out"
        assert dev.stale_bytes == 1  # read with the answers, not drained: it came after the query


# ---------------------------------------------------------------------------------------------
# 4. writes over TCP


async def test_job_reaches_the_printer_intact(vp, devices):
    dev = devices(net(vp.port))
    assert (await run(dev.status)).ready
    await run(dev.write, JOB)
    receipts = await vp.wait_receipts(1)
    assert receipts[0].text == JOB_TEXT and receipts[0].cut == "partial"
    await until(lambda: vp.bytes_received == 9 + len(JOB))  # the status query, then every byte of the job
    assert vp.connections == 1


async def test_long_job_reaches_a_slow_printer_whole(vp, devices, monkeypatch):
    """A printer that reads slowly but steadily gets all of a job that takes longer than the write
    timeout: the timeout is for a printer that takes nothing, not for a long job."""
    monkeypatch.setattr(printer_mod, "WRITE_TIMEOUT", 0.3)
    width_bytes, height = 72, 40000  # 576-dot rasters, ~2.9 MB each: more than the kernel buffers on the way
    raster = GS + b"v0\x00" + bytes((width_bytes, 0, height & 0xFF, height >> 8)) + b"\xaa" * (width_bytes * height)
    lines = b"".join(b"line %05d\n" % i for i in range(500))
    job = ESC + b"@" + lines + raster + raster + b"end\n" + CUT
    dev = devices(net(vp.port))
    assert (await run(dev.status)).ready
    vp.set_state(slow_delay=0.005, slow_every=65536)  # it reads steadily, just not at loopback speed
    _, took = await timed(dev.write, job)
    assert took > printer_mod.WRITE_TIMEOUT  # it did outlast the timeout, and still went through
    receipt = (await vp.wait_receipts(1, timeout=10))[0]
    texts = [line["text"] for line in receipt.lines]
    assert texts[:2] == ["line 00000", "line 00001"] and texts[-3:] == ["[image 576x40000]"] * 2 + ["end"]
    assert vp.bytes_received == 9 + len(job) and vp.connections == 1
    assert (await run(dev.status, len(job))).ready


async def test_connection_refused_is_printer_error_not_sent(devices):
    dev = devices(net(free_port()))
    with pytest.raises(PrinterError, match="cannot open printer") as err:
        await run(dev.write, JOB)
    assert err.value.sent is False
    with pytest.raises(PrinterError, match="cannot open printer"):
        await run(dev.status)


async def test_printer_dropping_the_connection_mid_job_then_back(vp, devices):
    line = b"line 00000\n"  # 11 bytes: the cut falls between lines, so nothing half-decoded is left over
    big = b"".join(b"line %05d\n" % i for i in range(20000)) + CUT  # ~220 KB, far beyond drop_after
    assert len(line) == 11
    dev = devices(net(vp.port))
    assert (await run(dev.status)).ready
    vp.set_state(drop_after=11 * 100)  # counted per connection: the 9 query bytes come first
    failed_at = None
    try:
        await run(dev.write, big)
    except PrinterError as exc:
        failed_at = "write"
        assert exc.sent is True
    if failed_at is None:
        with pytest.raises(PrinterError):
            await run(dev.status)
        failed_at = "status"
    assert vp.receipts() == []  # the cut never arrived

    vp.set_state(drop_after=None)
    vp.clear()
    status = await run(dev.status)  # reconnects by itself
    assert status is not None and status.ready
    await run(dev.write, JOB)
    receipts = await vp.wait_receipts(1)
    assert receipts[0].text.endswith(JOB_TEXT)
    assert vp.connections == 2


async def test_printer_gone_between_jobs_is_printer_error(devices):
    """The printer is switched off after a status: the next status or write fails, it does not hang."""
    async with VirtualPrinter(port=0) as printer:
        dev = devices(net(printer.port))
        assert (await run(dev.status)).ready
    with pytest.raises(PrinterError):
        await run(dev.status)  # the closed connection is seen; reopening is refused
    with pytest.raises(PrinterError) as err:
        await run(dev.write, JOB)
    assert err.value.sent is False  # nothing listening: the job cannot have started


# ---------------------------------------------------------------------------------------------
# 5. serial, through a pty pair


class PtyPrinter:
    """A serial printer on the master side of a pty. The driver opens a symlink to the slave, so the
    printer can be unplugged (master closed) and plugged back in (a new pty behind the same path)."""

    def __init__(self, path):
        self.path = path
        self.state = PrinterState()
        self.receipts = []
        self.requests: list[tuple[int, int]] = []
        self.received = 0
        self._thread = None
        self._plug()

    def _plug(self) -> None:
        self.master, self.slave = os.openpty()  # the slave stays open here too: reads never get EIO
        if os.path.lexists(self.path):
            os.unlink(self.path)
        os.symlink(os.ttyname(self.slave), self.path)
        self.decoder = Decoder(self.receipts.append)
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="pty-printer")
        self._thread.start()

    def _serve(self) -> None:
        tail = b""
        while True:
            ready = select.select([self.master, self._stop_r], [], [])[0]
            if self._stop_r in ready:
                return
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            self.received += len(data)
            self.decoder.feed(data)
            buf = tail + data
            i = 0
            while (j := buf.find(DLE_EOT, i)) >= 0:
                if j + 2 >= len(buf):
                    break
                n = buf[j + 2]
                answer = status_byte(n, self.state)
                self.requests.append((n, answer))
                os.write(self.master, bytes([answer]))
                i = j + 3
            tail = buf[max(i, len(buf) - 2):]

    def inject(self, data: bytes) -> None:
        """Bytes the printer sends unasked (an automatic status byte, a late answer)."""
        os.write(self.master, data)

    def unplug(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(2)
        for fd in (self.master, self.slave, self._stop_r, self._stop_w):
            os.close(fd)
        self.master = None

    def replug(self) -> None:
        self._plug()

    def close(self) -> None:
        if self.master is not None:
            self.unplug()


@pytest.fixture
def pty_printer(tmp_path):
    p = PtyPrinter(str(tmp_path / "ttyPRINTER"))
    yield p
    p.close()


def serial_cfg(path: str, **extra) -> SerialPrinter:
    return SerialPrinter(name="kitchen", type="serial", path=path, baud=115200, **extra)


async def test_serial_status_ready_and_paper_out(pty_printer, devices):
    dev = devices(serial_cfg(pty_printer.path))
    assert await run(dev.status) == Status(online=True)
    pty_printer.state.paper_out = True
    status = await run(dev.status)
    assert status.paper_out and status.state == "paper_out" and status.source == "dle_eot"
    assert [n for n, _ in pty_printer.requests] == [1, 2, 4, 1, 2, 4]
    assert dev.stale_bytes == 0


async def test_serial_job_arrives_decoded(pty_printer, devices):
    dev = devices(serial_cfg(pty_printer.path))
    await run(dev.write, JOB)
    await until(lambda: len(pty_printer.receipts) == 1)
    assert pty_printer.receipts[0].text == JOB_TEXT
    assert pty_printer.received == len(JOB)  # no byte translated (LF stays LF) or lost


async def test_serial_stale_bytes_are_drained(pty_printer, devices):
    dev = devices(serial_cfg(pty_printer.path))
    await run(dev.open)
    pty_printer.inject(b"\x12\x12")  # "ready" bytes nobody asked for
    await until(lambda: dev._escpos.device.in_waiting == 2)
    pty_printer.state.paper_out = True
    status = await run(dev.status)
    assert status.paper_out and status.state == "paper_out"
    assert dev.stale_bytes == 2


async def test_serial_unplugged_write_is_printer_error(pty_printer, devices):
    dev = devices(serial_cfg(pty_printer.path))
    assert (await run(dev.status)).ready
    pty_printer.unplug()
    start = time.monotonic()
    with pytest.raises(PrinterError) as err:
        await run(dev.write, JOB)
    assert err.value.sent is True
    assert time.monotonic() - start < printer_mod.STATUS_TIMEOUT  # no hang: the port says EIO at once


async def test_serial_unplugged_status_is_printer_error(pty_printer, devices):
    dev = devices(serial_cfg(pty_printer.path))
    assert (await run(dev.status)).ready
    pty_printer.unplug()
    start = time.monotonic()
    with pytest.raises(PrinterError):
        await run(dev.status)
    assert time.monotonic() - start < 2 * printer_mod.STATUS_TIMEOUT + 0.5


async def test_serial_printer_comes_back_after_replug(pty_printer, devices):
    dev = devices(serial_cfg(pty_printer.path))
    assert (await run(dev.status)).ready
    pty_printer.unplug()
    with pytest.raises(PrinterError):
        await run(dev.write, JOB)
    pty_printer.replug()  # the same path, a live port behind it
    status = await run(dev.status)
    assert status is not None and status.ready
    await run(dev.write, JOB)
    await until(lambda: len(pty_printer.receipts) == 1)


def test_serial_printer_device_can_be_made_and_fails_as_printer_error(tmp_path):
    dev = PrinterDevice(serial_cfg(str(tmp_path / "no-such-tty")))
    with pytest.raises(PrinterError, match="cannot open printer"):
        dev.open()


# ---------------------------------------------------------------------------------------------
# 6. file printer


def file_cfg(path) -> FilePrinter:
    return FilePrinter(name="spool", type="file", path=str(path))


async def test_file_printer_has_no_status_and_gets_exact_bytes(tmp_path, devices):
    out = tmp_path / "lp0"
    dev = devices(file_cfg(out))
    assert await run(dev.status) is None
    await run(dev.write, JOB)
    assert out.read_bytes() == JOB  # flushed at once, before close
    assert await run(dev.status) is None  # does not reopen (truncate) the file
    await run(dev.write, b"\x00\xff" + CUT)
    assert out.read_bytes() == JOB + b"\x00\xff" + CUT


async def test_file_printer_in_a_missing_folder_is_printer_error(tmp_path, devices):
    dev = devices(file_cfg(tmp_path / "missing" / "lp0"))
    with pytest.raises(PrinterError, match="cannot open printer"):
        await run(dev.open)
    with pytest.raises(PrinterError, match="cannot open printer") as err:
        await run(dev.write, JOB)
    assert err.value.sent is False
    with pytest.raises(PrinterError, match="cannot open printer"):
        await run(dev.status)


# ---------------------------------------------------------------------------------------------
# 7. USB


def usb_cfg() -> UsbPrinter:
    return UsbPrinter(name="usb", type="usb", vendor_id=0xFFFE, product_id=0xFFFD)


@pytest.fixture
def usb_device():
    dev = PrinterDevice(usb_cfg())
    yield dev
    dev.close()


async def test_usb_printer_that_cannot_be_opened_is_printer_error(usb_device):
    """A USB printer that is not plugged in: the worker gets a PrinterError it handles."""
    with pytest.raises(PrinterError, match="cannot open printer"):
        await run(usb_device.open)
    with pytest.raises(PrinterError, match="cannot open printer"):
        await run(usb_device.status)
    with pytest.raises(PrinterError, match="cannot open printer") as err:
        await run(usb_device.write, JOB)
    assert err.value.sent is False


async def test_usb_absent_device_is_printer_error(usb_device):
    with pytest.raises(PrinterError, match="cannot open printer.*not found"):
        await run(usb_device.open)
