"""Config reload on SIGHUP: a printer added without a restart; an invalid file refused, the old one kept."""

from __future__ import annotations

import json
import signal
import time

from drivers.virtual_printer import VirtualPrinter
from edge.core import config as config_mod
from edge.services.app_keys import CONFIG, PRINTING
from edge.services.reload import reload
from tests.conftest import Api, seed, start_client, write_config
from tests.helpers_daemon import Daemon, request
from tests.helpers_daemon import write_config as daemon_config
from tests.test_printing import SALE, printer_toml


async def test_reload_adds_a_printer_and_refuses_a_broken_file(tmp_path):
    async with VirtualPrinter(port=0) as first, VirtualPrinter(port=0) as second:
        base = '[printing]\nstatus_poll_seconds = 0.05\nstatus_ticket_at_start = false\n'
        path = write_config(tmp_path, base + printer_toml("counter", first.port, ["receipt", "drawer"]))
        cfg = config_mod.load(path)
        seed(cfg.db_path)
        client = await start_client(cfg)
        app = client.server.app
        try:
            path.write_text(path.read_text(encoding="utf-8") + printer_toml("backroom", second.port, ["test_page"]),
                            encoding="utf-8")
            assert await reload(app) == {"ok": True, "restart_needed": []}
            assert sorted(app[PRINTING].workers) == ["backroom", "counter"]
            await Api(client).ok("/printers/backroom/test-page", {"operator": "IT"})
            assert "打印测试" in (await second.wait_receipts(1, timeout=5))[0].text
            await Api(client).ok("/sales", SALE)
            await first.wait_receipts(1, timeout=5)

            good = path.read_text(encoding="utf-8")
            path.write_text(good + '\n[printing.ttl_seconds]\ndrawer = "soon"\n', encoding="utf-8")
            result = await reload(app)
            assert result["ok"] is False and "printing.ttl_seconds.drawer" in result["problems"][0]
            assert sorted(app[PRINTING].workers) == ["backroom", "counter"]  # still running as before

            path.write_text(good.replace('name = "测试门店"', 'name = "新店名"'), encoding="utf-8")
            assert (await reload(app))["restart_needed"] == ["store"]
            assert app[CONFIG].store.name == "测试门店"  # the store's identity changes only at a restart
        finally:
            await client.close()


def test_sighup_reloads_a_running_daemon(tmp_path):
    data = tmp_path / "var"
    seed(data / "store.db")
    daemon = Daemon(tmp_path / "config.toml", data, tmp_path / "daemon.log", level="info")
    daemon.start()
    try:
        status, body, _ = request(daemon.port, "GET", "/api/v1/printers")
        assert body["items"] == []
        daemon.extra_config = ('[[printers]]\nname = "added"\ntype = "file"\n'
                               f'path = "{tmp_path / "printer.out"}"\n')
        daemon_config(daemon.config_path, data, daemon.port, extra=daemon.extra_config, level="info")
        daemon.proc.send_signal(signal.SIGHUP)
        for _ in range(500):  # polling another process: the new printer listed and the reload logged
            status, body, _ = request(daemon.port, "GET", "/api/v1/printers")
            if body["items"] and "config reloaded" in daemon.log_path.read_text(encoding="utf-8"):
                break
            time.sleep(0.01)
        assert [p["name"] for p in body["items"]] == ["added"], json.dumps(body)
        assert "config reloaded" in daemon.log_path.read_text(encoding="utf-8")
    finally:
        daemon.terminate()
