"""The print benchmark: how long documents take to render, and an online order's way to the printer.

  1. render: drivers.documents.render() of every document kind at 58 and 80 mm in text mode, and
     the receipt and the order ticket in raster mode (chinese_font=False: every text line drawn as
     an image), timed in this process over many runs (median and p99 per document).
  2. orders: the real path, with a store's defaults. A `store-edge hub` and a `store-edge run`
     daemon (subprocesses, as in bench/sync.py) linked to it; the daemon's config has one network
     printer pointing at a VirtualPrinter served by this process ([printing] left at its defaults:
     status_poll_seconds 5, the status ticket at start). For each order: POST
     /admin/v1/stores/{id}/orders at the hub (time.time() just before), the edge downloads it
     (hint WebSocket), queues the order ticket in the order's transaction, its printer worker
     renders and sends it; the end is the VirtualPrinter's cut of that ticket (Receipt.finished_at,
     time.time() in this process: one clock). Two figures per order:
       - hub_to_ticket: from just before the hub POST to the cut (includes the sync);
       - order_to_ticket: from the order's arrival at the edge (orders.received_at in the edge's
         database, ISO UTC milliseconds, the daemon's wall clock on this same machine) to the cut.
     One order at a time, the next created a short random pause after the previous ticket was
     finished at the edge (the worker idle again, as when orders come in over a day); then a burst
     of orders created all at once, reported separately.

The edge's database starts as bench/sync.py seeds it (its catalog and an opening stock receipt,
one outbox event), cached in bench/.cache/.
"""

from __future__ import annotations

import asyncio
import bisect
import os
import random
import shutil
import sqlite3
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

import aiohttp

from bench.document_samples import sample
from bench.ledger import BenchError, free_port, load_at_start, percentile, scratch_folder, stats, write_config
from bench.sync import (
    SEED,
    SKUS,
    STORE_ID,
    Http,
    Proc,
    catalog_products,
    seeded_database,
    sku_of,
    start_edge,
    start_hub,
    wait_until,
)
from drivers.documents import KINDS, PrintOptions, render
from drivers.virtual_printer import Receipt, VirtualPrinter

COUNTS = {False: {"render": 1000, "raster": 100, "orders": 200, "burst": 50, "gap_ms": (100, 300)},
          True: {"render": 200, "raster": 20, "orders": 200, "burst": 50, "gap_ms": (20, 60)}}
RASTER_KINDS = ("receipt", "order_ticket")
PAPERS = (58, 80)
WARMUP_ORDERS = 5
TARGETS = {"order_to_ticket_p99_ms": 300}
TICKET_TIMEOUT = 30.0
STATUS_TICKET_WAIT = 5.0
JOB_BYTES_MIN = 16  # a chunk larger than the status queries (9 bytes) starts a job at the printer


def progress(message: str) -> None:
    print(f"[print {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()




# -- 1. render ------------------------------------------------------------------------------------

def time_render(kind: str, paper_mm: int, chinese_font: bool, runs: int) -> dict:
    data, options = sample(kind, paper_mm), PrintOptions(paper_mm=paper_mm, chinese_font=chinese_font)
    size = len(render(kind, data, options))  # the first call loads the font, imports Pillow...: not timed
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        render(kind, data, options)
        times.append((time.perf_counter() - started) * 1000)
    return {"n": runs, "p50": round(statistics.median(times), 3), "p99": round(percentile(times, 99), 3),
            "max": round(max(times), 3), "bytes": size}


def render_all(counts: dict) -> dict:
    started = time.perf_counter()
    results = {}
    for kind in KINDS:
        for paper in PAPERS:
            results[f"{kind}-{paper}"] = time_render(kind, paper, True, counts["render"])
    for kind in RASTER_KINDS:
        for paper in PAPERS:
            results[f"{kind}-{paper}-raster"] = time_render(kind, paper, False, counts["raster"])
    progress(f"render: {len(results)} documents timed in {time.perf_counter() - started:.1f} s")
    return results


# -- 2. orders to tickets -------------------------------------------------------------------------

class TimedPrinter(VirtualPrinter):
    """The VirtualPrinter, noting when each job's first bytes came (Receipt.started, time.time())."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._job_start: float | None = None
        self.answered: list[float] = []
        self._cut = self.decoder.on_cut
        self.decoder.on_cut = self._timed_cut

    def _answer(self, writer, cmd: str, n: int, value: int) -> None:
        self.answered.append(time.time())  # the arrival of a status query (answered at once)
        super()._answer(writer, cmd, n, value)

    def _accept(self, data: bytes) -> None:
        if self._job_start is None and len(data) > JOB_BYTES_MIN:
            self._job_start = time.time()
        super()._accept(data)

    def _timed_cut(self, receipt: Receipt) -> None:
        receipt.started = self._job_start if self._job_start is not None else receipt.finished_at
        self._job_start = None
        self._cut(receipt)


def edge_config(folder: Path, hub_url: str, printer_port: int) -> tuple[Path, str]:
    port = free_port()
    extra = (f'[cloud]\nurl = "{hub_url}"\ntoken = {{ file = "cloud-token" }}\nreconcile_minutes = 0\n\n'
             f'[[printers]]\nname = "counter"\ntype = "network"\nhost = "127.0.0.1"\nport = {printer_port}\n')
    return write_config(folder, port, extra), f"http://127.0.0.1:{port}"


def order_of(receipt: Receipt) -> str | None:
    for qr in receipt.qr:
        if qr["data"].startswith("order:"):
            return qr["data"][len("order:"):]
    return None


class Bench:
    def __init__(self, folder: Path, vp: TimedPrinter, http: Http, edge: Proc, db_path: Path):
        self.folder, self.vp, self.http, self.edge, self.db_path = folder, vp, http, edge, db_path
        self.rng = random.Random(SEED + 5)
        self.skus = [sku_of(i) for i in range(SKUS)]
        self.seen = len(vp.receipts())
        self.others: list[str] = []
        self.watch = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, isolation_level=None)
        self.watch.execute("PRAGMA busy_timeout = 1000")

    def body(self) -> dict:
        return {"kind": self.rng.choice(("pickup", "delivery")), "customer_note": "基准：请尽快备货",
                "lines": [{"sku": sku, "qty": self.rng.randint(1, 2)}
                          for sku in self.rng.sample(self.skus, self.rng.randint(1, 5))]}

    async def create(self) -> tuple[float, float, dict]:
        started = time.time()
        order = await self.http.hub_admin("POST", f"/stores/{STORE_ID}/orders", self.body(), expect=(201,))
        return started, time.time(), order

    async def tickets(self, count: int) -> list[Receipt]:
        """The next `count` order tickets the printer cuts (anything else it prints is counted, skipped)."""
        got: list[Receipt] = []
        deadline = time.monotonic() + TICKET_TIMEOUT
        while True:
            for receipt in self.vp.receipts()[self.seen:]:
                self.seen += 1
                if order_of(receipt) is None:
                    self.others.append(receipt.text[:80])
                    progress(f"the printer cut something else than an order ticket: {receipt.text[:80]!r}")
                else:
                    got.append(receipt)
            if len(got) >= count:
                return got
            self.edge.check()
            if time.monotonic() >= deadline:
                raise BenchError(f"{count - len(got)} ticket(s) not printed within {TICKET_TIMEOUT:.0f} s")
            try:
                await self.vp.wait_receipts(self.seen + 1, timeout=min(1.0, max(0.01, deadline - time.monotonic())))
            except asyncio.TimeoutError:
                pass

    async def job_finished(self, order_id: str) -> None:
        """Until the edge has finished the order's print job (its worker idle again)."""
        deadline = time.monotonic() + TICKET_TIMEOUT
        while True:
            row = self.watch.execute("SELECT state FROM print_jobs WHERE order_id = ?", (order_id,)).fetchone()
            if row and row[0] not in ("queued", "printing"):
                return
            if time.monotonic() >= deadline:
                raise BenchError(f"the print job of order {order_id} is still {row and row[0]}")
            await asyncio.sleep(0.002)

    async def one_at_a_time(self, count: int, gap_ms: tuple[int, int]) -> list[dict]:
        timed = []
        for _ in range(count):
            started, posted, order = await self.create()
            (ticket,) = await self.tickets(1)
            if order_of(ticket) != order["order_id"]:
                raise BenchError(f"the printer cut {ticket.text[:200]!r}, expected the ticket of {order['order_id']}")
            timed.append({"order_id": order["order_id"], "created": started, "posted": posted,
                          "first_byte": ticket.started, "cut": ticket.finished_at})
            await self.job_finished(order["order_id"])
            await asyncio.sleep(self.rng.uniform(*gap_ms) / 1000)
        return timed

    async def burst(self, count: int) -> list[dict]:
        created = await asyncio.gather(*(self.create() for _ in range(count)))
        tickets = await self.tickets(count)
        cut = {order_of(t): t for t in tickets}
        timed = []
        for started, posted, order in created:
            ticket = cut.get(order["order_id"])
            if ticket is None:
                raise BenchError(f"no ticket for order {order['order_id']} in the burst")
            timed.append({"order_id": order["order_id"], "created": started, "posted": posted,
                          "first_byte": ticket.started, "cut": ticket.finished_at})
        for t in timed:
            await self.job_finished(t["order_id"])
        return timed

    def add_query_times(self, timed: list[dict]) -> None:
        """The status queries around each job, as the printer saw them arrive."""
        answered = self.vp.answered
        for t in timed:
            at = bisect.bisect_left(answered, t["first_byte"])
            t["query_before"] = answered[at - 1] if at else None
            at = bisect.bisect_right(answered, t["cut"])
            t["query_after"] = answered[at] if at < len(answered) else None

    def add_edge_times(self, timed: list[dict]) -> None:
        rows = {r[0]: r[1:] for r in self.watch.execute(
            "SELECT o.id, o.received_at, j.finished_at, j.state, j.note FROM orders o "
            "JOIN print_jobs j ON j.order_id = o.id AND j.kind = 'order_ticket'")}
        for t in timed:
            received_at, finished_at, state, note = rows[t["order_id"]]
            if state != "printed" or note:
                raise BenchError(f"the ticket of order {t['order_id']} ended {state} ({note})")
            t["received"] = epoch(received_at)
            t["job_finished"] = epoch(finished_at) if finished_at else None

    def close(self) -> None:
        self.watch.close()


def summarise(timed: list[dict]) -> dict:
    def ms(a: str, b: str) -> list[float]:
        return [(t[b] - t[a]) * 1000 for t in timed if t.get(a) is not None and t.get(b) is not None]
    return {"hub_to_ticket_ms": stats(ms("created", "cut")), "order_to_ticket_ms": stats(ms("received", "cut")),
            "hub_to_edge_ms": stats(ms("created", "received")), "hub_post_ms": stats(ms("created", "posted")),
            "edge_to_first_byte_ms": stats(ms("received", "first_byte")),
            "edge_to_status_query_ms": stats(ms("received", "query_before")),
            "status_query_to_first_byte_ms": stats(ms("query_before", "first_byte")),
            "first_byte_to_cut_ms": stats(ms("first_byte", "cut")),
            "cut_to_status_query_ms": stats(ms("cut", "query_after")),
            "status_query_to_job_finished_ms": stats(ms("query_after", "job_finished")),
            "cut_to_job_finished_ms": stats(ms("cut", "job_finished"))}




async def orders_run(folder: Path, cached: Path, counts: dict) -> dict:
    admin_token = "hub_bench_" + os.urandom(8).hex()
    hub, hub_url = start_hub(folder, admin_token)
    edge = None
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
    try:
        async with TimedPrinter(port=0) as vp:
            data = folder / "data"
            data.mkdir()
            db_path = data / "store.db"
            shutil.copyfile(cached, db_path)
            config, edge_url = edge_config(folder, hub_url, vp.port)
            http = Http(session, hub_url, edge_url, admin_token)
            await http.wait_ready(hub, f"{hub_url}/admin/v1/stores", http.admin)
            store = await http.hub_admin("POST", "/stores", {"store_id": STORE_ID, "name": "基准测试门店"})
            published = await http.hub_admin("POST", "/products", {"products": catalog_products()})
            (folder / "cloud-token").write_text(store["token"])
            edge = start_edge(folder, config)
            progress(f"hub (pid {hub.popen.pid}) and edge (pid {edge.popen.pid}) started; the edge prints to a "
                     f"VirtualPrinter on port {vp.port}")

            async def synced():
                status = await http.status()
                return (status["link"]["hints_connected"] and status["queue"]["cursor"] >= published["last_cursor"]
                        and status["queue"]["depth"] == 0)
            await wait_until(synced, "the edge to link to the hub (hints, catalog, opening stock)", edge)
            async def printer_ready():
                items = (await http.edge_api("/printers"))[1]["items"]
                return items and items[0]["state"] == "ready"
            await wait_until(printer_ready, "the edge's printer to be ready", edge)
            ready_s = time.perf_counter() - edge.started
            # the status ticket at start (status_ticket_at_start, a default) is queued after every printer's
            # first check: give it time to print so that it is not counted as an order's ticket
            try:
                await vp.wait_receipts(1, timeout=STATUS_TICKET_WAIT)
                started_ticket = True
            except asyncio.TimeoutError:
                started_ticket = False
            progress(f"edge linked to the hub, its printer ready {ready_s:.2f} s after its start; status ticket at "
                     f"start {'printed' if started_ticket else f'NOT printed within {STATUS_TICKET_WAIT:.0f} s'}")

            bench = Bench(folder, vp, http, edge, db_path)
            try:
                await bench.one_at_a_time(WARMUP_ORDERS, counts["gap_ms"])
                started = time.perf_counter()
                single = await bench.one_at_a_time(counts["orders"], counts["gap_ms"])
                single_s = time.perf_counter() - started
                progress(f"orders: {len(single)} one at a time in {single_s:.1f} s (after {WARMUP_ORDERS} warm-up)")
                await asyncio.sleep(0.5)
                started = time.perf_counter()
                burst = await bench.burst(counts["burst"])
                burst_s = time.perf_counter() - started
                progress(f"burst: {len(burst)} orders created at once, all printed in {burst_s:.2f} s")
                bench.add_edge_times(single)
                bench.add_edge_times(burst)
                bench.add_query_times(single)
                bench.add_query_times(burst)
                status_queries = len(vp.status_requests)
            finally:
                bench.close()
            edge.stop()
            hub.stop()
        said = (folder / "edge.log").read_text(encoding="utf-8", errors="replace").strip().splitlines()
        if said:
            progress(f"the edge logged {len(said)} line(s) at warning or above"
                     + "".join(f"\n    {line[:300]}" for line in said[:5]))
        return {"single": single, "burst": burst, "single_s": single_s, "burst_s": burst_s, "ready_s": ready_s,
                "edge_log_lines": len(said), "status_queries": status_queries, "status_ticket": started_ticket,
                "others": bench.others}
    finally:
        await session.close()
        if edge is not None:
            edge.kill()
        hub.kill()


# -- the run --------------------------------------------------------------------------------------

def run(quick: bool = False) -> dict:
    wall = time.perf_counter()
    counts = COUNTS[quick]
    load_start = load_at_start(progress)
    rendered = render_all(counts)
    cached, seed_s = seeded_database(1)  # bench/sync.py's store: catalog and opening stock

    with scratch_folder("store-edge-bench-print-", progress) as folder:
        timed = asyncio.run(orders_run(folder, cached, counts))

    single, burst = summarise(timed["single"]), summarise(timed["burst"])
    target = TARGETS["order_to_ticket_p99_ms"]
    result = {
        "benchmark": "print", "quick": quick,
        "render_ms": rendered,
        "order_to_ticket_ms": {**single["order_to_ticket_ms"], "target_p99": target},
        "hub_to_ticket_ms": single["hub_to_ticket_ms"],
        "breakdown_ms": {k: v for k, v in single.items() if k not in ("order_to_ticket_ms", "hub_to_ticket_ms")},
        "burst": {"orders": counts["burst"], "all_printed_s": round(timed["burst_s"], 3), **burst},
        "orders": counts["orders"], "warmup_orders": WARMUP_ORDERS, "gap_ms": list(counts["gap_ms"]),
        "edge_ready_s": round(timed["ready_s"], 2), "edge_log_lines": timed["edge_log_lines"],
        "status_ticket_at_start_printed": timed["status_ticket"], "other_receipts": timed["others"],
        "seed_s": None if seed_s is None else round(seed_s, 1),
        "run_s": round(time.perf_counter() - wall, 1),
        "load_start": round(load_start, 2), "load_end": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
        "targets": TARGETS,
    }
    result["met"] = {"order_to_ticket_p99_ms": single["order_to_ticket_ms"]["p99"] <= target}

    print(f"print benchmark ({'quick' if quick else 'full'})")
    print(f"  render (ms, in process; text mode x{counts['render']}, raster x{counts['raster']})")
    print(f"    {'document':<26} {'p50':>8} {'p99':>8} {'max':>8} {'bytes':>7}")
    for name, r in rendered.items():
        print(f"    {name:<26} {r['p50']:8.3f} {r['p99']:8.3f} {r['max']:8.3f} {r['bytes']:7d}")

    def line(label: str, s: dict) -> str:
        return f"    {label:<34} p50 {s['p50']:7.1f}  p99 {s['p99']:7.1f}  max {s['max']:7.1f}"
    print(f"  online orders one at a time ({counts['orders']}, after {WARMUP_ORDERS} warm-up; next order "
          f"{counts['gap_ms'][0]}-{counts['gap_ms'][1]} ms after the previous job finished), ms:")
    print(line(f"edge arrival -> ticket cut (target p99 <= {target})", single["order_to_ticket_ms"]))
    print(line("hub POST -> ticket cut", single["hub_to_ticket_ms"]))
    print(line("  hub POST -> edge received_at", single["hub_to_edge_ms"]))
    print(line("  edge received_at -> first job byte", single["edge_to_first_byte_ms"]))
    print(line("    received_at -> status query", single["edge_to_status_query_ms"]))
    print(line("    status query -> first job byte", single["status_query_to_first_byte_ms"]))
    print(line("  first job byte -> cut", single["first_byte_to_cut_ms"]))
    print("    after the ticket (not in the figures above; it spaces the jobs of a burst):")
    print(line("  cut -> job finished at the edge", single["cut_to_job_finished_ms"]))
    print(line("    cut -> status query after it", single["cut_to_status_query_ms"]))
    print(line("    status query -> job finished", single["status_query_to_job_finished_ms"]))
    print(f"  burst of {counts['burst']} orders created at once: all printed {timed['burst_s']:.2f} s after the first "
          "POST; per order, ms:")
    print(line("edge arrival -> ticket cut", burst["order_to_ticket_ms"]))
    print(line("hub POST -> ticket cut", burst["hub_to_ticket_ms"]))
    print(line("  cut -> status query after it", burst["cut_to_status_query_ms"]))
    print(line("  status query -> next first job byte", burst["status_query_to_first_byte_ms"]))
    missed = [key for key, met in result["met"].items() if not met]
    print(f"  targets: {'all met' if not missed else 'MISSED ' + ', '.join(missed)}; run {result['run_s']} s"
          f"; load average {result['load_start']} at the start, {result['load_end']} at the end "
          f"({result['cpus']} CPUs)")
    return result
