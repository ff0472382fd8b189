"""Serial scanners through a pty pair: the reader opens a symlink to the pty's slave, so the scanner
can be unplugged (master closed, symlink removed) and plugged back in (a new pty behind the same path).

Waits are on the scan queue or on the reader's state, never fixed sleeps (except for the idle gap
that ends a code when the scanner sends no terminator).
"""

from __future__ import annotations

import logging
import os
import queue
import time

import pytest

from drivers.models import SerialScanner
from drivers.scan import Scan
from drivers.serial_scanner import CodeSplitter, Piece, SerialScannerReader, classify

CHINESE = "核销码:券-12345"


def until(cond, timeout: float = 3.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


class PtyScanner:
    """A serial scanner on the master side of a pty, reached through a symlink that outlives it."""

    def __init__(self, path: str):
        self.path = path
        self.master = self.slave = None
        self.plug()

    def plug(self) -> None:
        self.master, self.slave = os.openpty()  # the slave stays open here too, like a device node
        if os.path.lexists(self.path):
            os.unlink(self.path)
        os.symlink(os.ttyname(self.slave), self.path)

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def unplug(self) -> None:
        os.unlink(self.path)
        os.close(self.master)
        os.close(self.slave)
        self.master = self.slave = None

    def close(self) -> None:
        if self.master is not None:
            self.unplug()


@pytest.fixture
def pty_scanner(tmp_path):
    s = PtyScanner(str(tmp_path / "ttySCANNER"))
    yield s
    s.close()


class Harness:
    def __init__(self):
        self.scans: queue.Queue[Scan] = queue.Queue()
        self.readers: list[SerialScannerReader] = []

    def reader(self, path: str, terminator: str = "CR", *, connected: bool = True, **kw) -> SerialScannerReader:
        cfg = SerialScanner(name="front", type="serial", path=path, baud=115200, terminator=terminator)
        kw.setdefault("reconnect_max", 0.2)
        r = SerialScannerReader(cfg, self.scans.put, **kw)
        self.readers.append(r)
        r.start()
        if connected:
            until(lambda: r.state == "connected", what="connected")
        return r

    def next(self, timeout: float = 2.0) -> Scan:
        return self.scans.get(timeout=timeout)

    def texts(self, n: int) -> list[str]:
        return [self.next().text for _ in range(n)]

    def nothing_more(self) -> None:
        assert self.scans.empty(), self.scans.get_nowait()


@pytest.fixture
def harness():
    h = Harness()
    yield h
    for r in h.readers:
        r.stop()


# ---------------------------------------------------------------------------------------------
# terminators


@pytest.mark.parametrize("terminator,end", [("CR", b"\r"), ("LF", b"\n"), ("CRLF", b"\r\n")])
def test_codes_with_each_terminator(pty_scanner, harness, terminator, end):
    r = harness.reader(pty_scanner.path, terminator)
    pty_scanner.send(b"6901234567892" + end)
    scan = harness.next()
    assert (scan.text, scan.raw, scan.device, scan.source) == ("6901234567892", b"6901234567892", "front", "serial")
    assert abs(scan.at - time.time()) < 2
    pty_scanner.send(b"A-1" + end + b"B-2" + end)  # several codes in one write
    assert harness.texts(2) == ["A-1", "B-2"]
    assert r.scans == 3 and r.discarded == {}  # a CRLF scanner's LF made no empty code
    assert r.last_scan.text == "B-2" and r.status()["last_scan"]["raw_hex"] == "42 2d 32"


def test_terminator_none_ends_a_code_after_the_idle_gap(pty_scanner, harness):
    r = harness.reader(pty_scanner.path, "none", idle_gap=0.05)
    sent = time.monotonic()
    pty_scanner.send(b"QR-TOKEN_abc")
    scan = harness.next()
    assert scan.text == "QR-TOKEN_abc" and time.monotonic() - sent >= 0.05
    pty_scanner.send(CHINESE.encode())
    assert harness.next().text == CHINESE
    assert r.discarded == {}


def test_crlf_scanner_on_a_cr_or_lf_config_still_gives_clean_codes(pty_scanner, harness):
    r = harness.reader(pty_scanner.path, "CR")
    pty_scanner.send(b"111\r\n222\r\n")
    assert harness.texts(2) == ["111", "222"]
    r.stop()
    r2 = harness.reader(pty_scanner.path, "LF")
    pty_scanner.send(b"333\r\n444\n")
    assert harness.texts(2) == ["333", "444"]
    assert r.discarded == r2.discarded == {}


# ---------------------------------------------------------------------------------------------
# content


@pytest.mark.parametrize("encoding", ["utf-8", "gb18030"])
def test_chinese_content(pty_scanner, harness, encoding):
    harness.reader(pty_scanner.path, "CR")
    raw = CHINESE.encode(encoding)
    pty_scanner.send(raw + b"\r")
    scan = harness.next()
    assert scan.text == CHINESE and scan.raw == raw


def test_a_code_split_across_writes(pty_scanner, harness):
    r = harness.reader(pty_scanner.path, "CRLF")
    data = "https://例子.cn/v?t=Ab_9-".encode() + b"\r\n"
    for i in range(0, len(data), 5):
        pty_scanner.send(data[i:i + 5])
        until(lambda: r.splitter.pending >= min(i + 5, len(data) - 2) or r.scans, what="bytes read")
    assert harness.next().text == "https://例子.cn/v?t=Ab_9-"
    # a multi-byte character cut between two reads, and the CRLF cut between CR and LF
    r2_data = CHINESE.encode("gb18030")
    pty_scanner.send(r2_data[:3])
    until(lambda: r.splitter.pending == 3, what="first part")
    pty_scanner.send(r2_data[3:] + b"\r")
    assert harness.next().text == CHINESE
    pty_scanner.send(b"\n")
    pty_scanner.send(b"OK\r\n")
    assert harness.next().text == "OK"
    assert r.discarded == {}


def test_overlong_garbage_and_empty_are_discarded_and_the_next_code_comes_through(pty_scanner, harness, caplog):
    caplog.set_level(logging.INFO, logger="drivers.scanner")
    r = harness.reader(pty_scanner.path, "CR", max_length=64)
    pty_scanner.send(b"9" * 5000 + b"\r")
    pty_scanner.send(b"GOOD-1\r")
    assert harness.next().text == "GOOD-1"
    assert r.splitter._buf.__len__() == 0
    pty_scanner.send(b"\x00\x01\x02\x03\r")       # NUL and control bytes
    pty_scanner.send(b"\xff\xfe\xff\xfe\r")       # neither UTF-8 nor GB18030
    pty_scanner.send(b"AB\x1bC\r")                # an escape sequence in the middle
    pty_scanner.send(b"\r")                       # nothing
    pty_scanner.send(b"GOOD-2\r")
    assert harness.next().text == "GOOD-2"
    harness.nothing_more()
    assert r.discarded == {"too_long": 1, "control_character": 2, "invalid_encoding": 1, "empty": 1}
    assert r.scans == 2
    discards = [rec.kv for rec in caplog.records if rec.getMessage() == "scan discarded"]
    assert [(d["reason"], d["length"], d["device"]) for d in discards] == [
        ("too_long", 5000, "front"), ("control_character", 4, "front"), ("invalid_encoding", 4, "front"),
        ("control_character", 4, "front"), ("empty", 0, "front")]


@pytest.mark.parametrize("terminator", ["CR", "LF", "CRLF"])
def test_line_noise_between_codes_is_dropped_and_the_next_code_kept(pty_scanner, harness, terminator):
    r = harness.reader(pty_scanner.path, terminator)
    pty_scanner.send(b"\r\r\r\n\n")
    pty_scanner.send(b"6901234567892\r\n")
    assert harness.next().text == "6901234567892"
    pty_scanner.send(b"\n\r\n\rA-1\r\n")
    assert harness.next().text == "A-1"
    harness.nothing_more()
    assert r.scans == 2 and set(r.discarded) <= {"empty"}  # no code lost as a "control_character"


def test_a_cut_off_utf8_character_is_discarded_with_a_reason(pty_scanner, harness, caplog):
    caplog.set_level(logging.INFO, logger="drivers.scanner")
    r = harness.reader(pty_scanner.path, "CR")
    pty_scanner.send(b"\xe4\xb8\r")            # the first two bytes of 中 (E4 B8 AD)
    pty_scanner.send("券A".encode() + b"\xe5\r")  # valid UTF-8, then a lone lead byte
    pty_scanner.send("中".encode() + b"\r")
    assert harness.next().text == "中"
    harness.nothing_more()
    assert r.discarded == {"incomplete_character": 2}
    discards = [rec.kv["reason"] for rec in caplog.records if rec.getMessage() == "scan discarded"]
    assert discards == ["incomplete_character"] * 2


def test_a_code_whose_terminator_was_lost_is_not_glued_to_the_next(pty_scanner, harness):
    r = harness.reader(pty_scanner.path, "CR", incomplete_after=0.2)
    pty_scanner.send(b"69012")  # the scanner was cut off mid-code
    until(lambda: r.discarded.get("incomplete") == 1, what="incomplete discarded")
    pty_scanner.send(b"6901234567892\r")
    assert harness.next().text == "6901234567892"


def test_on_scan_that_raises_does_not_stop_the_reader(pty_scanner, harness):
    got = []

    def on_scan(scan):
        got.append(scan.text)
        if len(got) == 1:
            raise RuntimeError("caller bug")

    cfg = SerialScanner(name="front", type="serial", path=pty_scanner.path, baud=9600, terminator="CR")
    r = SerialScannerReader(cfg, on_scan)
    harness.readers.append(r)
    r.start()
    until(lambda: r.state == "connected")
    pty_scanner.send(b"1\r2\r")
    until(lambda: got == ["1", "2"], what="both scans")
    assert r.running


# ---------------------------------------------------------------------------------------------
# the splitter alone (deterministic clock)


def test_splitter_byte_by_byte_and_bounded():
    s = CodeSplitter("CRLF", max_length=8)
    out = []
    for i, b in enumerate(b"12345\r\nABC\n\r\n"):
        out += s.feed(bytes([b]), now=i * 0.001)
    assert out == [Piece(b"12345", 5), Piece(b"ABC", 3), Piece(b"", 0)]  # a lone CRLF is one empty code
    out = s.feed(b"x" * 100_000, now=1.0)
    assert out == [] and len(s._buf) == 8 and s.pending == 100_000
    assert s.feed(b"\r", now=1.0) == [Piece(b"x" * 8, 100_000, "too_long")]


def test_splitter_none_and_incomplete():
    s = CodeSplitter("none", idle_gap=0.05)
    assert s.feed(b"abc", now=10.0) == [] and s.idle(10.04) == []
    assert s.idle(10.05) == [Piece(b"abc", 3)]
    c = CodeSplitter("CR", incomplete_after=1.0)
    c.feed(b"abc", now=0.0)
    assert c.idle(0.9) == [] and c.idle(1.0) == [Piece(b"abc", 3, "incomplete")]
    c.feed(b"x\r", now=2.0)
    assert c.feed(b"\n", now=5.0) == []  # swallowed: the LF right after the CR


def test_classify():
    # short GB18030 text that is valid UTF-8 too: read as Chinese, not as Latin letters
    for word in ("券", "核销", "￥12", "A区·3号"):
        assert classify(word.encode("gb18030")) == (word, None), word
        assert classify(word.encode("utf-8")) == (word, None), word
    # the price of that rule, accepted in a Chinese store: accented Latin in UTF-8 reads as GB18030 Chinese
    assert classify("café".encode()) == ("caf茅", None)
    assert classify("Ω≈3".encode()) == ("Ω≈3", None)  # not valid GB18030: UTF-8 it is
    assert classify(b"]d2010950123456789017\x1d10ABC") == ("]d2010950123456789017\x1d10ABC", None)  # GS1 FNC1
    assert classify(b"a\tb") == (None, "control_character")
    assert classify("\x85€".encode()) == (None, "control_character")  # a C1 control, valid UTF-8
    assert classify(b"\x80") == (None, "invalid_encoding")
    assert classify(b"\xe4\xb8") == (None, "incomplete_character")  # not GB18030's 涓
    assert classify(b"12\xf0\x9f\x98") == (None, "incomplete_character")
    assert classify(b"") == (None, "empty")


# ---------------------------------------------------------------------------------------------
# unplug, replug, stop


def test_unplug_and_replug_recover_by_themselves(pty_scanner, harness, caplog):
    caplog.set_level(logging.INFO, logger="drivers.scanner")
    r = harness.reader(pty_scanner.path, "CR", reconnect_max=0.2)
    pty_scanner.send(b"BEFORE\r")
    assert harness.next().text == "BEFORE"
    pty_scanner.send(b"HALF")  # unplugged mid-code: those bytes are dropped, not delivered later
    until(lambda: r.splitter.pending == 4)
    pty_scanner.unplug()
    until(lambda: r.state == "disconnected", what="disconnected")
    assert r.last_error
    first_error = r.last_error
    # it keeps retrying (the path is gone) without logging every attempt
    until(lambda: r.last_error != first_error, what="a failed reopen")
    pty_scanner.plug()
    until(lambda: r.state == "connected", what="reconnected")
    pty_scanner.send(b"AFTER-1\rAFTER-2\r")
    assert harness.texts(2) == ["AFTER-1", "AFTER-2"]
    harness.nothing_more()
    messages = [rec.getMessage() for rec in caplog.records if rec.name == "drivers.scanner"]
    assert messages.count("scanner disconnected") == 1 and messages.count("scanner back") == 1
    assert messages.count("scanner not available") == 0
    assert r.discarded == {"incomplete": 1} and r.reconnects == 1


def test_port_missing_at_start_then_plugged_in(tmp_path, harness):
    path = str(tmp_path / "ttyLATE")
    r = harness.reader(path, "CR", connected=False)
    until(lambda: r.state == "disconnected")
    assert "ttyLATE" in r.last_error
    late = PtyScanner(path)
    try:
        until(lambda: r.state == "connected", what="connected")
        late.send(b"X1\r")
        assert harness.next().text == "X1"
    finally:
        r.stop()
        late.close()


@pytest.mark.parametrize("plugged", [True, False])
def test_stop_is_prompt(pty_scanner, harness, tmp_path, plugged):
    path = pty_scanner.path if plugged else str(tmp_path / "absent")
    r = harness.reader(path, "none", connected=plugged, reconnect_max=5.0)
    if not plugged:
        until(lambda: r.state == "disconnected")  # now waiting out its backoff
    start = time.monotonic()
    r.stop()
    assert time.monotonic() - start < 0.3
    assert not r.running
