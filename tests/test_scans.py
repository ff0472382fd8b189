"""The scan router end to end: a serial scanner on a pty, typed codes, polling, the WebSocket, acks."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import tty

import pytest

from edge.core import config as config_mod
from edge.core.clock import iso, utcnow
from edge.services.app_keys import SCANS
from edge.services.payment_codes import PaymentCodes
from edge.store import api_tokens, db
from tests.conftest import BARCODE, Api, seed, start_client, write_config


async def wait_scans(api: Api, consumer: str, count: int) -> list[dict]:
    """Long-poll until `count` scans are there. The long poll returns as soon as one scan is past the
    consumer's position, so while fewer are there this waits on the scan router for a newer one (an
    event, not a sleep) before polling again."""
    router = api.client.server.app[SCANS]
    items: list[dict] = []
    for _ in range(20):
        code, body = await api.get("/scans", {"consumer": consumer, "wait": "5"})
        assert code == 200, body
        items = body["items"]
        if len(items) >= count:
            return items
        if items:
            await router.wait_after(items[-1]["seq"], 5)
    raise AssertionError(f"only {len(items)} scans")


def pty_config(tmp_path, api: str = ""):
    """A store with a serial scanner on a pty: (config, master, slave)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    path = tmp_path / "scanner0"
    path.symlink_to(os.ttyname(slave))
    cfg = config_mod.load(write_config(tmp_path, f'{api}[[scanners]]\nname = "counter-scanner"\ntype = "serial"\n'
                                                  f'path = "{path}"\nterminator = "CR"\n'))
    seed(cfg.db_path)
    return cfg, master, slave


@pytest.fixture
async def pty_shop(tmp_path):
    cfg, master, slave = pty_config(tmp_path)
    client = await start_client(cfg)
    try:
        yield cfg, Api(client), master
    finally:
        await client.close()
        os.close(master)
        os.close(slave)


async def test_serial_scans_are_classified_and_delivered_in_order(pty_shop):
    cfg, api, master = pty_shop
    await api.ok("/scans/ack", {"consumer": "pos-1", "seq": 0})  # the till registers before scanning starts
    await _connected(api)
    os.write(master, f"{BARCODE['DRK-001']}\r".encode() + b"204613\r" + b"2212345012343\r")
    items = await wait_scans(api, "pos-1", 3)
    assert [i["text"] for i in items] == [BARCODE["DRK-001"], "204613", "2212345012343"]
    assert items[0]["kind"] == "product" and items[0]["device"] == "counter-scanner"
    assert items[2]["kind"] == "weighed" and items[2]["detail"]["price_fen"] == 1234
    assert items[0]["source"] == "serial" and items[0]["raw_hex"]
    assert items[1]["kind"] == "pickup_code"  # six digits: no barcode is that short
    # acknowledged scans are not delivered again, even to a new poll after a restart of the reader
    await api.ok("/scans/ack", {"consumer": "pos-1", "seq": items[1]["seq"]})
    code, body = await api.get("/scans", {"consumer": "pos-1"})
    assert [i["seq"] for i in body["items"]] == [items[2]["seq"]]
    code, body = await api.get("/scanners")
    scanner = body["items"][0]
    assert scanner["state"] == "connected" and scanner["scans"] == 3
    assert scanner["last_scan"]["text"] == "2212345012343"


async def _connected(api):
    for _ in range(200):
        code, body = await api.get("/scanners")
        if body["items"][0]["state"] == "connected":
            return
        await asyncio.sleep(0.01)  # the reader thread opens the port on its own
    raise AssertionError(body)


async def test_typed_code_is_a_pickup_code_and_websocket_streams_and_acks(client, api):
    ws = await client.ws_connect("/api/v1/scans/ws?consumer=screen-1")
    typed = await api.ok("/scans", {"text": "204613", "typed": True})
    assert typed["kind"] == "pickup_code"
    product = await api.ok("/scans", {"text": BARCODE["SNK-001"]})
    first = await asyncio.wait_for(ws.receive_json(), 5)
    second = await asyncio.wait_for(ws.receive_json(), 5)
    assert [first["seq"], second["seq"]] == [typed["seq"], product["seq"]]
    await ws.send_json({"ack": first["seq"]})
    await ws.send_str("not json")
    assert "error" in await asyncio.wait_for(ws.receive_json(), 5)
    await ws.close()
    # the position is kept: a new connection gets what was not acknowledged
    ws = await client.ws_connect("/api/v1/scans/ws?consumer=screen-1")
    again = await asyncio.wait_for(ws.receive_json(), 5)
    assert again["seq"] == product["seq"]
    await ws.close()


async def test_a_new_consumer_starts_at_the_newest_scan(client, api):
    await api.ok("/scans", {"text": BARCODE["SNK-001"]})
    code, body = await api.get("/scans", {"consumer": "late-till"})
    assert body["items"] == []
    later = await api.ok("/scans", {"text": BARCODE["DRK-001"]})
    code, body = await api.get("/scans", {"consumer": "late-till"})
    assert [i["seq"] for i in body["items"]] == [later["seq"]]


async def test_bad_scan_requests(client, api):
    for params in ({}, {"consumer": "bad name"}, {"consumer": "ok", "wait": "99"}, {"consumer": "ok", "limit": "0"}):
        code, body = await api.get("/scans", params)
        assert code == 400, params
    for body in ({"text": ""}, {"text": "x" * 2049}, {"text": 5}, {"text": "1", "typed": "yes"}):
        code, err, _ = await api.post("/scans", body)
        assert code == 422, body
    code, err, _ = await api.post("/scans/ack", {"consumer": "pos", "seq": -1})
    assert code == 422
    assert client.server.app[SCANS].newest == 0  # nothing was stored


async def test_camera_scans_reach_the_consumer_once(tmp_path):
    from tests import videos  # noqa: PLC0415 (OpenCV and the generator only for this test)

    token = videos.jws_token()
    clip = videos.write_video(tmp_path / "counter.avi", videos.still(token, frames=20))
    cfg = config_mod.load(write_config(tmp_path, f'[[cameras]]\nname = "counter-cam"\ntype = "camera"\n'
                                                  f'source = "{clip}"\n'))
    seed(cfg.db_path)
    client = await start_client(cfg)
    try:
        api = Api(client)
        await api.ok("/scans/ack", {"consumer": "screen", "seq": 0})
        items = await wait_scans(api, "screen", 1)
        assert items[0]["text"] == token and items[0]["source"] == "camera"
        assert items[0]["kind"] in ("pickup_token", "unknown")  # the generator's token has its own typ
        code, body = await api.get("/scans", {"consumer": "screen", "wait": "1"})
        assert len(body["items"]) == 1  # 20 frames with the same code: one scan
    finally:
        await client.close()


@pytest.mark.parametrize("text, typed", [
    ("]E06901234567892", False),              # a symbology identifier: the classified text differs
    ("  204613 ", True),
    ("]C1010690123456789217261231" + "\x1d" + "10LOT-7", False),
    ("2212345012343", False),
    ("not a code at all", False),
])
def test_a_stored_scan_gives_back_its_classification(tmp_path, text, typed):
    import time as time_mod

    from drivers.scan import Scan
    from edge.core.classify import classify
    from edge.store import db, scans

    conn = db.open_store_db(tmp_path / "store.db")
    classified = classify(text, typed=typed)
    with db.transaction(conn):
        item = scans.record(conn, Scan(device="d", source="serial", text=text, raw=text.encode(),
                                       at=time_mod.time()), classified)
    assert scans.classification(conn, item["seq"]) == classified
    assert scans.classification(conn, item["seq"] + 1) is None
    conn.close()


# ---------------------------------------------------------------------------------------------
# payment codes (付款码): whole only to the till that asked, never whole in the journal or the logs

WECHAT = "134567890123456789"        # 18 digits, 10-15
ALIPAY = "2812345678901234567"       # 16-24 digits, 25-30


async def test_a_payment_code_goes_whole_only_to_the_till_that_asked(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    cfg, master, slave = pty_config(tmp_path, '[api]\nrequire_token = true\n')
    conn = db.open_store_db(cfg.db_path)
    with db.transaction(conn):
        tokens = {t: api_tokens.create(conn, t, iso(utcnow())) for t in ("till-1", "till-2")}
    conn.close()
    client = await start_client(cfg)
    try:
        till1, till2 = (Api(client, headers={"Authorization": f"Bearer {tokens[t]}"}) for t in ("till-1", "till-2"))
        for api, consumer in ((till1, "pos-1"), (till2, "pos-2")):
            await api.ok("/scans/ack", {"consumer": consumer, "seq": 0})
        await _connected(till1)
        code, asked, _ = await till1.post("/scans/payment-request", {"consumer": "pos-1", "scanner": "counter-scanner"},
                                          key=None)
        assert code == 200 and asked["wait_seconds"] == 60
        ws = await client.ws_connect("/api/v1/scans/ws?consumer=pos-1", headers=till1.headers)
        os.write(master, f"{WECHAT}\r".encode())
        pushed = await asyncio.wait_for(ws.receive_json(), 5)
        assert pushed["kind"] == "payment_code" and pushed["detail"]["format"] == "wechat_pay"
        assert pushed["payment_code"] == WECHAT and pushed["text"] == "1345**********6789"
        assert bytes.fromhex(pushed["raw_hex"]) == b"1345**********6789"

        # the same till polling gets it too (not acked yet); another till, or another token using the
        # same consumer name, gets the masked code only
        items = await wait_scans(till1, "pos-1", 1)
        assert items[0]["payment_code"] == WECHAT
        for api, consumer in ((till2, "pos-2"), (till2, "pos-1")):
            code, body = await api.get("/scans", {"consumer": consumer})
            assert [(i["text"], "payment_code" in i) for i in body["items"]] == [("1345**********6789", False)]

        # a code nobody asked for (the request was used up), and a typed one: masked for everyone
        await till2.ok("/scans/ack", {"consumer": "pos-2", "seq": pushed["seq"]})  # so the next poll waits
        os.write(master, f"{ALIPAY}\r".encode())
        items = await wait_scans(till2, "pos-2", 1)
        assert items[0]["kind"] == "payment_code" and items[0]["text"] == "2812***********4567"
        typed = await till2.ok("/scans", {"text": f" {WECHAT} ", "typed": True})
        assert typed["kind"] == "payment_code" and typed["text"] == "1345**********6789"
        second = await asyncio.wait_for(ws.receive_json(), 5)
        assert second["text"] == "2812***********4567" and "payment_code" not in second
        assert client.server.app[SCANS].payments.held == 1
        assert (await asyncio.wait_for(ws.receive_json(), 5))["seq"] == typed["seq"]
        await ws.close()
        await till1.ok("/scans/ack", {"consumer": "pos-1", "seq": pushed["seq"]})  # the till has it: forgotten
        assert client.server.app[SCANS].payments.held == 0
        code, body = await till1.get("/scans", {"consumer": "pos-1"})
        assert all("payment_code" not in i for i in body["items"])

        os.write(master, f"{WECHAT}\x07\r".encode())  # discarded: its log line shows the first 8 bytes only
        for _ in range(200):
            code, scanners = await till1.get("/scanners")
            if scanners["items"][0]["discarded"]:
                break
            await asyncio.sleep(0.01)  # the reader thread counts it; nothing to await
        assert scanners["items"][0]["discarded"] == {"control_character": 1}
        last = scanners["items"][0]["last_scan"]
        assert last["text"] == "2812***********4567" and ALIPAY.encode().hex(" ") not in last["raw_hex"]
        metrics = await client.get("/metrics", headers=till1.headers)
        everything = await metrics.text()
    finally:
        await client.close()
        os.close(master)
        os.close(slave)
    conn = sqlite3.connect(cfg.db_path)
    everything += "\n".join(conn.iterdump())
    conn.close()
    everything += "\n".join(f"{r.getMessage()} {getattr(r, 'kv', '')}" for r in caplog.records)
    for whole in (WECHAT, ALIPAY, WECHAT[:9].encode().hex(" "), ALIPAY[:9].encode().hex(" ")):
        assert whole not in everything
    assert "payment code for a till" in everything and "1345**********6789" in everything


def test_payment_codes_are_held_for_a_minute_for_their_till_only():
    now = [0.0]
    codes = PaymentCodes(clock=lambda: now[0])
    assert codes.claim(1, "front", WECHAT) is None  # nobody asked: not kept
    codes.request("pos-1", "till-1", scanner="front")
    codes.request("pos-2", "till-2")
    assert codes.claim(2, "back", ALIPAY) == "pos-2"  # pos-1 waits for its own scanner
    assert codes.claim(3, "front", WECHAT) == "pos-1"
    assert codes.whole(3, "pos-1", "till-1") == WECHAT
    assert codes.whole(3, "pos-1", "till-2") is None and codes.whole(3, "pos-2", "till-2") is None
    assert codes.whole(1, "pos-1", "till-1") is None
    codes.acked("pos-2", 2)
    assert codes.whole(2, "pos-2", "till-2") is None
    now[0] = 60.0
    assert codes.whole(3, "pos-1", "till-1") is None and codes.held == 0
    codes.request("pos-1", "till-1")
    now[0] = 121.0
    assert codes.claim(4, "front", WECHAT) is None  # the request ran out
