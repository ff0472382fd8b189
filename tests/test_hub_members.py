"""Members at the reference hub, end to end with a store: the chain creates a member, the simulated phone
gets a certificate for its device key, the store learns the hub's key from the feed and verifies the
phone's code offline; the store looks the member up by phone through its sync client (masked); a key
revoked at the hub reaches the store by the feed and its certificates are refused."""

from __future__ import annotations

import logging

from edge.core import member_code
from edge.core.context import WriteContext
from edge.ops.demo.phone import Phone
from edge.store import db, members
from edge.store.signed_tokens import TokenRefused
from sync.changes import apply_page
from sync.client import CloudClient, RetryLater
from tests.test_hub import database, start_hub  # noqa: F401 (database: autouse, both stores)

CTX = WriteContext("cloud", "2026-11-22T01:00:00.000Z", "2026-11-22")


async def pull(hub, conn, after=0) -> int:
    data = await hub.sync("s1", "changes", params={"after": str(after)})
    with db.transaction(conn):
        apply_page(conn, data["changes"], data["next_cursor"], CTX)
    return data["next_cursor"]


async def test_member_certificate_from_the_hub_verifies_at_the_store(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    hub = await start_hub(tmp_path / "hub", chain="chain-01")
    conn = db.open_store_db(tmp_path / "store.db")
    try:
        await hub.add_store("s1")
        member = await hub.admin("POST", "/members", {"member_id": "m-1", "name": "张三", "phone": "13812345678",
                                                      "level": "金卡", "points": 1280, "balance_fen": 5000},
                                 status=201)
        assert member["phone"] == "13812345678"
        phone = Phone()
        issued = await hub.admin("POST", "/members/m-1/certificates", {"device_key": phone.device_key, "days": 30},
                                 status=201)
        phone.certificate = issued["certificate"]
        assert issued["chain"] == "chain-01"
        code = phone.code(hub.clock().timestamp())
        assert len(code) < 600, len(code)
        cursor = await pull(hub, conn)
        now = hub.clock().timestamp()
        with db.transaction(conn):
            seen = members.verify_member_code(conn, code, chain="chain-01", store_id="s1", now=now)
        assert (seen.name, seen.phone, seen.level, seen.points, seen.balance_fen) == (
            "张*", "138****5678", "金卡", 1280, 5000)

        # the look-up by phone, through the store's sync client: masked, and the number is not logged
        client = CloudClient(str(hub.client.make_url("")), "s1", hub.tokens["s1"])
        await client.open()
        try:
            found = (await client.lookup_member("13812345678")).body["members"]
            assert found == [{"member_id": "m-1", "level": "金卡", "name": "张*", "phone": "138****5678",
                              "points": 1280, "balance_fen": 5000, "snapshot_at": found[0]["snapshot_at"]}]
            assert (await client.lookup_member("13900000000")).body["members"] == []
        finally:
            await client.close()
        assert "13812345678" not in caplog.text and "张三" not in caplog.text

        # a revoked key reaches the store by the feed: the certificate it signed is refused
        await hub.admin("POST", "/keys", status=201)
        await hub.admin("POST", f"/keys/{issued['kid']}/revoke", {"reason": "leaked"})
        await pull(hub, conn, cursor)
        later = now + member_code.STEP_SECONDS
        try:
            with db.transaction(conn):
                members.verify_member_code(conn, phone.code(later), chain="chain-01", store_id="s1", now=later)
            raise AssertionError("a certificate of a revoked key was accepted")
        except TokenRefused as exc:
            assert exc.reason == "unknown_key"
        # a new certificate under the new key works again
        phone.certificate = (await hub.admin("POST", "/members/m-1/certificates",
                                             {"device_key": phone.device_key}, status=201))["certificate"]
        with db.transaction(conn):
            assert members.verify_member_code(conn, phone.code(later), chain="chain-01", store_id="s1", now=later)
    finally:
        conn.close()
        await hub.close()


async def test_hub_refusals(tmp_path):
    hub = await start_hub(tmp_path / "hub")
    try:
        await hub.add_store("s1")
        await hub.add_store("s2")
        body = {"member_id": "m-2", "name": "李四", "phone": "13900001111", "level": "普通"}
        await hub.admin("POST", "/members", body, status=201)
        await hub.admin("POST", "/members", body, status=409)
        await hub.admin("POST", "/members", {**body, "member_id": "m-3", "phone": "123"}, status=400)
        await hub.admin("POST", "/members/m-9/certificates", {"device_key": Phone().device_key}, status=404)
        await hub.admin("POST", "/members/m-2/certificates", {"device_key": "A" * 42 + "B"}, status=400)  # not canonical
        code, _ = await hub.call("POST", "/sync/v1/stores/s1/members/lookup", {"phone": "13900001111"},
                                 token=hub.tokens["s2"])
        assert code == 403
        code, _ = await hub.call("POST", "/sync/v1/stores/s1/members/lookup", {"phone": "13900001111"}, token=None)
        assert code == 401
    finally:
        await hub.close()


async def test_the_store_client_says_retry_later_when_the_cloud_is_gone():
    client = CloudClient("http://127.0.0.1:9", "s1", "token")
    await client.open()
    try:
        try:
            await client.lookup_member("13812345678", timeout=0.5)
            raise AssertionError("no error")
        except RetryLater:
            pass
    finally:
        await client.close()


async def test_the_cashier_look_up_asks_the_cloud_and_says_cloud_unavailable_when_it_is_gone(tmp_path, caplog):
    """edge/services/members.py over the store's sync client: masked members from a live hub; the refusal
    cloud_unavailable (云端不可用) when the cloud does not answer; the number in no log line."""
    from types import SimpleNamespace

    from edge.core.errors import InputError
    from edge.services.app_keys import STORE, SYNC
    from edge.services.members import lookup_by_phone
    from edge.store.db import open_store
    from tests.conftest import query

    caplog.set_level(logging.DEBUG)
    hub = await start_hub(tmp_path / "hub")
    try:
        await hub.add_store("s1")
        await hub.admin("POST", "/members", {"member_id": "m-1", "name": "欧阳娜娜", "phone": "13812345678",
                                             "level": "银卡", "points": 7}, status=201)
        client = CloudClient(str(hub.client.make_url("")), "s1", hub.tokens["s1"])
        await client.open()
        try:
            store = open_store(tmp_path / "store.db")
            store.open()
            try:
                app = {SYNC: SimpleNamespace(client=client), STORE: store}
                found = await lookup_by_phone(app, "13812345678")
            finally:
                store.close()
            assert [(m["name"], m["phone"], m["level"], m["points"]) for m in found] == [
                ("欧***", "138****5678", "银卡", 7)]
            # kept for a sale by member id: the masked view only, as found
            assert query(tmp_path / "store.db", "SELECT member_id, name, phone, source FROM members_seen") == [
                ("m-1", "欧***", "138****5678", "lookup")]
        finally:
            await client.close()
    finally:
        await hub.close()
    gone = CloudClient("http://127.0.0.1:9", "s1", "token")
    await gone.open()
    try:
        try:
            await lookup_by_phone({SYNC: SimpleNamespace(client=gone)}, "13812345678")
            raise AssertionError("no refusal")
        except InputError as exc:
            assert exc.code == "cloud_unavailable" and exc.status == 503
            assert exc.detail["message_zh"].startswith("云端不可用")
    finally:
        await gone.close()
    assert "13812345678" not in caplog.text and "欧阳娜娜" not in caplog.text


async def test_an_answer_that_is_not_masked_is_refused_by_the_store():
    """A cloud that sends a whole name or number: the store's client refuses the answer, nothing shown."""
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    async def leaky(request):
        return web.json_response({"epoch": "e-1", "members": [
            {"member_id": "m-1", "level": "金卡", "name": "张三", "phone": "13812345678", "points": 1,
             "balance_fen": 0, "snapshot_at": "2026-12-01T00:00:00.000Z"}]})

    app = web.Application()
    app.router.add_post("/sync/v1/stores/s1/members/lookup", leaky)
    server = TestServer(app)
    await server.start_server()
    client = CloudClient(str(server.make_url("")), "s1", "token")
    await client.open()
    try:
        try:
            await client.lookup_member("13812345678")
            raise AssertionError("an unmasked answer was taken")
        except RetryLater as exc:
            assert "masked" in str(exc)
    finally:
        await client.close()
        await server.close()
