"""The stage of the demo: the hub, the fault proxy, the virtual printer, the scanner's pty and the
store daemon started in this process around the simulation, and stopped after it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
import signal
import time
import tty
from pathlib import Path

import aiohttp

from edge.core import config as config_mod
from edge.core.clock import iso, utcnow
from edge.ops.demo.loopback_http import Client, HttpError, start_site
from edge.ops.demo.seed import store_products
from edge.ops.demo.simulation import SEED, Simulation
from edge.ops.demo.video import write_pickup_video
from edge.store import db

SCANNER_NAME, CAMERA_NAME, PRINTER_NAME = "demo-scanner", "demo-camera", "demo-printer"
DEMO_CHAIN = "demo-chain"    # the demo hub's chain when the config names none: member codes verify


class Demo(Simulation):
    """The simulation with its stage: main() starts everything, simulates, and stops everything."""

    async def main(self, logins) -> int:
        config = self.config
        api_host = config.api.host
        local = "127.0.0.1" if api_host in ("0.0.0.0", "::", "") else api_host
        self.out.plain("store-edge demo")
        self.out.plain(f"  dashboard  http://{local}:{config.api.port}/ui/   (status page http://{local}:"
                       f"{config.api.port}/)")
        for name, role, password in logins:
            self.out.plain(f"  {role:8}   login: {name} / {password}")
        self.out.plain(f"  {'runs for ' + format(self.seconds, 'g') + ' s' if self.seconds else 'Ctrl-C stops'}; "
                       f"data in {config.data_dir}")
        self.demo_dir.mkdir(parents=True, exist_ok=True)

        stop_all = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._signals = 0

        def on_signal():
            self._signals += 1
            if self._signals > 1:
                os._exit(1)
            self.out("stopping (Ctrl-C again exits at once)")
            self.sim_stop.set()
            stop_all.set()

        def take_signals():
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, on_signal)
        take_signals()

        from drivers.virtual_printer import VirtualPrinter  # noqa: PLC0415
        from hub.app import build_hub_app  # noqa: PLC0415
        from hub.faultproxy import build_proxy_app  # noqa: PLC0415

        admin_token = "hub_demo_" + secrets.token_urlsafe(24)
        hub_dir = config.data_dir / "demo-hub"
        hub_dir.mkdir(parents=True, exist_ok=True)
        chain = config.store.chain or DEMO_CHAIN
        hub_runner, hub_url = await start_site(build_hub_app(hub_dir, admin_token=admin_token, chain=chain))
        proxy_app = build_proxy_app(hub_url, seed=SEED)
        proxy_runner, proxy_url = await start_site(proxy_app)
        vp = await VirtualPrinter(port=0, control_port=0, out_dir=config.data_dir / "virtual-printer").start()
        self.vp = vp
        master, slave = os.openpty()
        tty.setraw(slave)
        scanner_path = os.ttyname(slave)
        self.master = master
        session = aiohttp.ClientSession()
        edge_task = None
        edge_stop = asyncio.Event()
        try:
            self.hub = Client(session, hub_url + "/admin/v1", {"Authorization": f"Bearer {admin_token}"})
            self.proxy = Client(session, proxy_url + "/_proxy")
            registered = await self.hub.call("POST", "/stores", {"store_id": self.store_id, "name": config.store.name})
            token_file = self.demo_dir / "cloud-token"
            token_file.unlink(missing_ok=True)
            fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(registered["token"] + "\n")
            products = store_products(config)
            self.products = {p["sku"]: p for p in products if p["active"]}
            for chunk in range(0, len(products), 5000):
                await self.hub.call("POST", "/products", {"products": products[chunk:chunk + 5000]})
            await self.members.enrol()
            self.hub_before = await self.hub.call("GET", f"/stores/{self.store_id}")
            await loop.run_in_executor(None, write_pickup_video, self.video, [])
            self.out(f"cloud hub {hub_url} (data {hub_dir}), fault proxy {proxy_url}/_proxy/")
            self.out(f"virtual printer 127.0.0.1:{vp.port}: receipts in {vp.out_dir}/ (txt, json, png); "
                     f"http://127.0.0.1:{vp.control_port}/receipts")
            self.out(f"serial scanner on {scanner_path}; camera on {self.video} (loop)")

            demo_config = self.demo_config(proxy_url, token_file, scanner_path, vp.port)
            from edge import app as edge_app  # noqa: PLC0415

            edge_task = asyncio.create_task(edge_app.serve(demo_config, stop=edge_stop), name="edge")
            self.edge = Client(session, f"http://{local}:{config.api.port}/api/v1", self.till_headers(config))
            await self.wait_edge(edge_task)
            take_signals()  # the daemon took SIGINT/SIGTERM for itself: the demo stops first, then the daemon
            self.out(f"store daemon up: store {self.store_id} linked to the hub through the proxy")
            self.spawn(self.watch_link(), "link")
            return await self.simulate(stop_all)
        finally:
            self.sim_stop.set()
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            edge_stop.set()
            if edge_task is not None:
                with contextlib.suppress(Exception):
                    await edge_task
            await session.close()
            await proxy_runner.cleanup()
            await hub_runner.cleanup()
            await vp.stop()
            os.close(master)
            os.close(slave)
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    def till_headers(self, config) -> dict:
        """Loopback API without tokens, as on a single PC; a till token when the config asks for tokens."""
        if not config.tokens_required:
            return {}
        from edge.store import api_tokens  # noqa: PLC0415

        conn = db.open_store_db(config.db_path)
        try:
            with db.transaction(conn):
                token = api_tokens.create(conn, "demo-till", iso(utcnow()))
        finally:
            conn.close()
        return {"Authorization": f"Bearer {token}"}

    def demo_config(self, proxy_url: str, token_file: Path, scanner_path: str, printer_port: int):
        from drivers.models import Camera, NetworkPrinter, SerialScanner  # noqa: PLC0415

        raw = self.config.raw
        cloud = config_mod.CloudSection(
            url=proxy_url, token=config_mod.SecretRef(file=str(token_file)), timeout_seconds=5.0,
            reconcile_minutes=0, retry_max_seconds=max(1.0, min(5.0, 8.0 * self.scale)),
            person_retry_seconds=max(1.0, min(30.0, 30.0 * self.scale)))
        printer = NetworkPrinter(name=PRINTER_NAME, type="network", host="127.0.0.1", port=printer_port)
        scanner = SerialScanner(name=SCANNER_NAME, type="serial", path=scanner_path, terminator="CR")
        camera = Camera(name=CAMERA_NAME, type="camera", source=str(self.video), loop=True, dedupe_seconds=2.0)
        raw = raw.model_copy(update={
            "cloud": cloud, "printers": [printer], "store": raw.store.model_copy(update={
                "chain": raw.store.chain or DEMO_CHAIN}),
            "scanners": [s for s in raw.scanners if s.name != SCANNER_NAME] + [scanner],
            "cameras": [c for c in raw.cameras if c.name != CAMERA_NAME] + [camera]})
        secret = config_mod.read_secret(cloud.token, self.config.path.parent)
        return dataclasses.replace(self.config, raw=raw, cloud_token=secret)

    async def wait_edge(self, edge_task: asyncio.Task) -> None:
        deadline = time.monotonic() + 60
        while True:
            if edge_task.done():
                edge_task.result()  # raises what stopped it (port taken ...)
                raise RuntimeError("the store daemon stopped at start")
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, HttpError):
                await self.edge.call("GET", "/health", timeout=2)
                return
            if time.monotonic() > deadline:
                raise RuntimeError("the store daemon did not answer within 60 s")
            await asyncio.sleep(0.1)
