"""After a restore from an older backup, the sync protocol brings the store and the cloud back in line.

The store (in-process, with the reference hub) syncs, is backed up, sells more (the cloud applies
those sales), then is restored from the backup: it has forgotten what the cloud already holds. At
the next start the cloud answers its uploads with `seq_taken`, the store renumbers its events after
the cloud's, and reconciliation corrects the cloud's copy of the balances to the store's shelf.
"""

from __future__ import annotations

from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from edge.app import build_app
from edge.core import config as config_mod
from edge.services.app_keys import STORE, SYNC
from edge.store import backup, restore
from hub.app import build_hub_app
from sync.reconcile import reconcile
from tests.conftest import CATALOG, Api, ledger_mismatches, query, seed
from tests.test_sync_e2e import ADMIN, FAST, Hub, products, queue_empty, until


async def start_edge(config):
    app = build_app(config)
    server = TestServer(app)
    await server.start_server()
    app[SYNC].timing.__dict__.update(FAST.__dict__)
    session = ClientSession(base_url=str(server.make_url("")))
    return app, server, session, Api(session)


async def stop_edge(server, session):
    await session.close()
    await server.close()


async def hub_balances(hub) -> dict:
    store = await hub.admin("GET", "/stores/test-store")
    return {r["sku"]: (r["on_hand"], r["reserved"]) for r in store["balances"] if r["on_hand"] or r["reserved"]}


async def edge_balances(edge) -> dict:
    out = {}
    for sku in CATALOG:
        body = (await edge.get(f"/stock/{sku}"))[1]
        if body["on_hand"] or body["reserved"]:
            out[sku] = (body["on_hand"], body["reserved"])
    return out


async def test_restored_store_and_cloud_come_back_in_line(tmp_path):
    hub_server = TestServer(build_hub_app(tmp_path / "hub", admin_token=ADMIN))
    await hub_server.start_server()
    hub_session = ClientSession()
    hub = Hub(hub_server, hub_session)
    try:
        token = (await hub.admin("POST", "/stores", {"store_id": "test-store", "name": "测试门店"}))["token"]
        await hub.admin("POST", "/products", {"products": products()})
        (tmp_path / "cloud-token").write_text(token)
        (tmp_path / "config.toml").write_text(
            '[store]\nid = "test-store"\nname = "测试门店"\ndata_dir = "var"\n'
            f'[cloud]\nurl = "{hub.url}"\ntoken = {{ file = "cloud-token" }}\nreconcile_minutes = 0\n',
            encoding="utf-8")
        config = config_mod.load(tmp_path / "config.toml")
        seed(config.db_path)

        app, server, session, edge = await start_edge(config)
        sale = {"lines": [{"sku": "DRK-001", "qty": 3}], "payments": [{"method": "wechat", "amount_fen": 600}]}
        await edge.ok("/sales", sale)
        await until(lambda: queue_empty(edge), what="first sale uploaded")
        saved = backup.backup(config.db_path, tmp_path / "backups")  # online, while the daemon runs
        for _ in range(2):  # sold after the backup: the cloud has these, the restored store will not
            await edge.ok("/sales", sale)
        await until(lambda: queue_empty(edge), what="later sales uploaded")
        assert (await hub_balances(hub))["DRK-001"][0] == CATALOG["DRK-001"][6] - 9
        await stop_edge(server, session)

        restored = restore.restore(saved, config.db_path)
        assert restored is not None
        assert ledger_mismatches(config.db_path) == []

        app, server, session, edge = await start_edge(config)
        try:
            await edge.ok("/sales", {"lines": [{"sku": "SNK-001", "qty": 1}],
                                     "payments": [{"method": "cash", "amount_fen": 1000}]})
            await until(lambda: queue_empty(edge), timeout=15, what="the restored store's events accepted")
            assert (await edge.get("/sync/dead-letters"))[1]["items"] == []
            offset = query(config.db_path, "SELECT value FROM sync_state WHERE key = 'seq_offset'")
            assert offset and int(offset[0][0]) == 2  # renumbered after the two events the cloud already had
            result = await reconcile(app[STORE], app[SYNC].client)
            assert result["result"] != "match"  # the cloud still counted the two forgotten sales
            await until(lambda: queue_empty(edge), what="the correction uploaded")
            assert await hub_balances(hub) == await edge_balances(edge)
            assert (await reconcile(app[STORE], app[SYNC].client))["result"] == "match"
        finally:
            await stop_edge(server, session)
        assert ledger_mismatches(config.db_path) == []
    finally:
        await hub_session.close()
        await hub_server.close()
