"""The virtual ESC/POS printer (drivers/virtual_printer/), over real TCP with asyncio streams."""

from __future__ import annotations

import asyncio
import io
import random
import struct

import aiohttp
import pytest

from drivers.virtual_printer import Decoder, VirtualPrinter, status_byte

ESC, GS, FS = b"\x1b", b"\x1d", b"\x1c"


def qr(data: str, size: int = 6, ec: int = 49) -> bytes:
    """The native GS ( k QR sequence: model 2, module size, error correction, store, print."""
    payload = data.encode("utf-8")

    def fn(cn_fn_params: bytes) -> bytes:
        return GS + b"(k" + struct.pack("<H", len(cn_fn_params)) + cn_fn_params

    return (fn(b"\x31\x41\x32\x00") + fn(b"\x31\x43" + bytes([size])) + fn(b"\x31\x45" + bytes([ec]))
            + fn(b"\x31\x50\x30" + payload) + fn(b"\x31\x51\x30"))


def zh(text: str) -> bytes:
    return FS + b"&" + text.encode("gb18030") + FS + b"."


RECEIPT = (
    ESC + b"@"
    + ESC + b"a\x01" + ESC + b"E\x01" + GS + b"!\x11" + zh("便利店 总店") + b"\n"
    + ESC + b"E\x00" + GS + b"!\x00" + ESC + b"a\x00"
    + zh("农夫山泉 550ml") + b"  2 x 2.00\n"
    + zh("可口可乐") + b" " + zh("￥3.50") + b"\n"
    + zh("𠀀字") + b"\n"  # a four-byte GB18030 character
    + ESC + b"a\x02" + b"TOTAL 7.50\n"
    + ESC + b"a\x01" + qr("https://shop.example/o/1234?n=核销")
    + ESC + b"p\x00\x19\xfa"
    + ESC + b"d\x02"
    + GS + b"V\x42\x00"
)
EXPECTED_TEXT = "便利店 总店\n农夫山泉 550ml  2 x 2.00\n可口可乐 ￥3.50\n𠀀字\nTOTAL 7.50\n[QR https://shop.example/o/1234?n=核销]\n\n"


@pytest.fixture
async def printer(tmp_path):
    vp = VirtualPrinter(port=0, paper_mm=58, control_port=0, out_dir=tmp_path / "out")
    await vp.start()
    yield vp
    await vp.stop()


async def connect(vp):
    return await asyncio.open_connection("127.0.0.1", vp.port)


async def send(vp, data: bytes, chunk: int | None = None) -> None:
    reader, writer = await connect(vp)
    if chunk is None:
        writer.write(data)
    else:
        for i in range(0, len(data), chunk):
            writer.write(data[i:i + chunk])
            await writer.drain()
    await writer.drain()
    writer.close()
    await writer.wait_closed()


def check_receipt(r) -> None:
    assert r.text == EXPECTED_TEXT  # ESC d 2: two empty lines after the QR
    assert r.lines[0]["align"] == "center" and r.lines[0]["bold"] and (r.lines[0]["width"], r.lines[0]["height"]) == (2, 2)
    assert r.lines[1]["align"] == "left" and not r.lines[1]["bold"] and r.lines[1]["width"] == 1
    assert r.lines[4]["align"] == "right"
    assert r.qr == [{"data": "https://shop.example/o/1234?n=核销", "model": 2, "size": 6, "ec": "M", "line": 5,
                     "align": "center"}]
    assert r.drawer == [{"pin": 2, "on_ms": 50, "off_ms": 500}]
    assert r.cut == "partial"
    assert r.notes == []


async def test_receipt_decodes(printer):
    await send(printer, RECEIPT)
    [r] = await printer.wait_receipts(1)
    check_receipt(r)
    out = printer.out_dir
    assert (out / "receipt-0001.txt").read_text(encoding="utf-8") == r.text + "\n"
    assert (out / "receipt-0001.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_byte_by_byte_decodes_identically(printer):
    await send(printer, RECEIPT, chunk=1)
    await send(printer, RECEIPT * 2, chunk=7)
    rs = await printer.wait_receipts(3)
    for r in rs:
        check_receipt(r)
    assert [r.lines for r in rs[1:]] == [rs[0].lines] * 2


def test_decoder_random_chunking_same_result():
    whole = Decoder()
    whole.feed(RECEIPT)
    rng = random.Random(7)
    for _ in range(30):
        d = Decoder()
        i = 0
        while i < len(RECEIPT):
            k = rng.randint(1, 9)
            d.feed(RECEIPT[i:i + k])
            i += k
        assert d.count == 1 and not d.buf
    assert whole.count == 1


def test_outside_chinese_mode_bytes_are_single_byte():
    got = []
    d = Decoder(on_cut=got.append)
    d.feed("价".encode("gb18030") + b"\n" + b"\x9c1\n" + GS + b"V\x00")
    assert got[0].text == "价".encode("gb18030").decode("cp437") + "\n£1"  # CP437, not GB18030, without FS &
    assert "价" not in got[0].text


async def status(reader, writer, n: int, cmd: bytes = b"\x10\x04") -> bytes:
    writer.write(cmd + bytes([n]))
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(1), 1)


@pytest.mark.parametrize("state, expected", [
    ({}, [0x12, 0x12, 0x12, 0x12]),
    ({"online": False}, [0x1A, 0x12, 0x12, 0x12]),
    ({"paper_out": True}, [0x1A, 0x32, 0x12, 0x7E]),
    ({"paper_near_end": True}, [0x12, 0x12, 0x12, 0x1E]),
    ({"cover_open": True}, [0x1A, 0x16, 0x12, 0x12]),
    ({"drawer_open": True}, [0x16, 0x12, 0x12, 0x12]),
])
async def test_dle_eot_exact_bytes(printer, state, expected):
    printer.set_state(**state)
    reader, writer = await connect(printer)
    assert [(await status(reader, writer, n))[0] for n in (1, 2, 3, 4)] == expected
    assert [status_byte(n, printer.state) for n in (1, 2, 3, 4)] == expected
    # exactly one byte each: nothing more is waiting
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(reader.read(1), 0.05)
    writer.close()


async def test_gs_r_paper_sensor(printer):
    reader, writer = await connect(printer)
    assert await status(reader, writer, 1, GS + b"r") == b"\x00"
    printer.set_state(paper_out=True)
    assert await status(reader, writer, 1, GS + b"r") == b"\x0f"
    printer.set_state(paper_out=False, paper_near_end=True, drawer_open=True)
    assert await status(reader, writer, 49, GS + b"r") == b"\x03"
    assert await status(reader, writer, 2, GS + b"r") == b"\x01"
    writer.close()


async def test_one_byte_per_request_even_split_and_batched(printer):
    reader, writer = await connect(printer)
    # three requests in one write, and one split across writes: four bytes, no more
    writer.write(b"\x10\x04\x01\x10\x04\x02hello\x10\x04\x04\x10")
    await writer.drain()
    await asyncio.sleep(0.02)
    writer.write(b"\x04\x01")
    await writer.drain()
    got = await asyncio.wait_for(reader.readexactly(4), 1)
    assert got == b"\x12\x12\x12\x12"
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(reader.read(1), 0.05)
    assert len(printer.status_requests) == 4
    writer.close()


async def test_paper_out_holds_then_refill_prints(printer):
    printer.set_state(paper_out=True)
    reader, writer = await connect(printer)
    writer.write(RECEIPT)
    assert await status(reader, writer, 4) == b"\x7e"  # answered while the job is held
    await asyncio.sleep(0.05)
    assert printer.receipts() == [] and len(printer.held) == len(RECEIPT) + 3
    printer.set_state(paper_out=False)  # refill: the held job prints by itself
    [r] = await printer.wait_receipts(1)
    check_receipt(r)
    assert printer.held == b""
    writer.close()


async def test_offline_accepts_but_does_not_print(printer):
    printer.set_state(online=False)
    await send(printer, RECEIPT)
    await asyncio.sleep(0.05)
    assert printer.receipts() == [] and printer.held
    printer.set_state(online=True)
    await printer.wait_receipts(1)


async def test_drop_after_n_cuts_the_connection(printer):
    printer.set_state(drop_after=40)
    reader, writer = await connect(printer)
    writer.write(RECEIPT)
    await writer.drain()
    try:  # the printer went away: a clean close or a reset, as the system reports it
        assert await asyncio.wait_for(reader.read(100), 1) == b""
    except ConnectionResetError:
        pass
    with pytest.raises((ConnectionError, OSError)):
        for _ in range(50):
            writer.write(b"x" * 1000)
            await writer.drain()
            await asyncio.sleep(0.01)
    assert printer.receipts() == []
    assert printer.pending().text.startswith("便利店 总店")  # half a job on the paper, no cut
    assert printer.bytes_received == 40


async def test_slow_printer_still_decodes(printer):
    printer.set_state(slow_delay=0.01, slow_every=64)
    t = asyncio.get_running_loop().time()
    await send(printer, RECEIPT)
    [r] = await printer.wait_receipts(1)
    check_receipt(r)
    assert asyncio.get_running_loop().time() - t >= 0.01 * (len(RECEIPT) // 64)


async def test_garbage_does_not_crash(printer):
    rng = random.Random(1)
    junk = bytes(rng.randrange(256) for _ in range(20000)).replace(b"\x1dV", b"..").replace(b"\x1d(", b"..")
    reader, writer = await connect(printer)
    writer.write(junk + b"\x1b@" + RECEIPT)  # a long GS ( could swallow the job: removed above
    await writer.drain()
    [r] = await printer.wait_receipts(1)
    assert "TOTAL 7.50" in r.text
    assert await status(reader, writer, 1) == b"\x12"
    writer.close()
    # a truncated command at the end of a connection just waits; the printer keeps serving
    await send(printer, b"\x1d(k\xff\xff\x31")
    reader, writer = await connect(printer)
    assert await status(reader, writer, 2) == b"\x12"
    writer.close()


async def test_png_renders_at_paper_width(printer):
    from PIL import Image

    await send(printer, RECEIPT)
    await printer.wait_receipts(1)
    img = Image.open(io.BytesIO(printer.render_png(0)))
    assert img.format == "PNG" and img.width == 384
    vp80 = VirtualPrinter(port=0, paper_mm=80)
    vp80._on_cut(printer.receipt(0))
    assert Image.open(io.BytesIO(vp80.render_png(0))).width == 576


async def test_http_control_api(printer):
    await send(printer, RECEIPT)
    await printer.wait_receipts(1)
    base = f"http://127.0.0.1:{printer.control_port}"
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base}/receipts") as resp:
            [r] = await resp.json()
            assert r["qr"][0]["data"].endswith("核销") and r["drawer"][0]["pin"] == 2
        async with s.get(f"{base}/receipts/0.txt") as resp:
            assert (await resp.text()).startswith("便利店 总店\n")
        async with s.get(f"{base}/receipts/0.png") as resp:
            assert resp.content_type == "image/png" and (await resp.read())[:4] == b"\x89PNG"
        async with s.get(f"{base}/receipts/5.txt") as resp:
            assert resp.status == 404
        async with s.put(f"{base}/state", json={"paper_out": True}) as resp:
            body = await resp.json()
            assert body["paper_out"] and not body["ready"]
        assert printer.state.paper_out
        async with s.put(f"{base}/state", json={"bogus": 1}) as resp:
            assert resp.status == 400
        async with s.delete(f"{base}/receipts") as resp:
            assert resp.status == 200
        assert printer.receipts() == []
