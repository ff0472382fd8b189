"""The chain benchmark: steady traffic from many stores, and a reconnect storm in the middle of it,
against a real `store-edge hub` (SQLite, one process; or PostgreSQL with several, `--postgresql N`).

Two load processes (asyncio and aiohttp, many connections) simulate the chain's stores, at a
higher priority than the hubs and PostgreSQL (SERVER_NICE, run_storm: the generator stands for
the stores' own machines, and its clocks time the hub):

- steady stores (`--steady-stores`, 1,000): each keeps its hint WebSocket open (GET …/hints, as
  sync/client.py's hints() does) and uploads what its tills made every few seconds (`--upload-every`,
  jittered), so the chain offers `--rate` events a second (2,500); an admin creates an online order
  for one of them every `--order-every` seconds (0.5). An order's push time runs from the admin's POST
  until its store's hint socket hears the hint for it (`push`), and until the page of changes the
  store then pulls holds the order (`pulled`);
- storm stores (`--storm-stores` × `--events`, 1,000 × 500), in the second process: after `--before`
  seconds of steady traffic they all come back at once and drain their queues as the store daemon's
  uploader does (bench/chain_storm.py: the daemon's default batch and timeout, its backoff and
  Retry-After jitter, the protocol's "how far did you get"), while the steady traffic goes on;
  `--after` seconds of steady traffic follow the storm's drain.

Reported per phase (before, during, after the storm): events/s applied (every event the hub
confirmed in the phase, and the steady stores' alone), upload p50/p99, order push p50/p99 (and until
pulled; `order_answer`: until the admin's POST was answered, the hub's write alone), hub CPU ms per
event; overall: hub CPU ms per event from /proc/<pid>/stat (the hub processes' sum; PostgreSQL's own
apart), peak RSS per hub process (VmHWM), the storm's amplification
(events in the uploads the hub worked on ÷ queued), its drain time, refusals and timeouts. `load`
says how far behind schedule the load generator ran: its own event loop's lag and CPU, and how late
steady uploads went out (a late upload waited for the hub's previous answer, or for the loop): if
the loop lagged, the figures are the generator's, not the hub's.

`--postgresql N` runs N hub processes on one PostgreSQL database (a private server started as the
tests start theirs, tests/postgres.py, with fsync and synchronous commit on as a real one has them),
each store on process i mod N as a load balancer would spread them (its uploads and hint socket),
the orders created through the first process (so a store on another one hears of them through
LISTEN/NOTIFY). `--base DIR` runs the hub of another checkout, and the storm's stores as that
version's edge did, to measure before and after on the same machine. `--quick`: 200 steady stores at
500 events/s and a 200 × 500 storm. The last stdout line is one JSON object.

The figures of the last runs, and which of issue 13's targets they meet: README, "Performance"; the
storm before and after the hub's back-pressure (`--base`): docs/sync-protocol.md 2.5. On PostgreSQL
the set-up's thousands of stores are followed by ANALYZE and CHECKPOINT (settle_pg) before the
steady traffic is measured.

Two cores cannot show PostgreSQL's point (more cores, more processes): here its server and a second
hub take the same cores as the load generator, and every statement is a round trip. The storm alone
(1,000 x 500, no steady stores, `--postgresql 2`) drained in 113.4 s on 2026-12-06; before the slices
looked their events up once per slice (hub/events.py) the same run took 90.8 s with 115 timeouts, and
173.7 s before the bulk pool served uploads in turn (hub/db_postgres.py BulkTurns).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
import time
from asyncio.subprocess import PIPE
from pathlib import Path

import aiohttp

from bench.chain_proc import applied, applied_pg, cpu_s, parent_pid, peak_rss_mb, server_cpu_s, settle_pg
from bench.chain_steady import OrderBook, Steady, SteadyStore, loop_lag, order_pusher
from bench.chain_storm import BATCH, SKU, TIMEOUT, Tally, envelope
from bench.ledger import BenchError, free_port, percentile, store_edge
from bench.sync import Proc, wait_until

SHAPES = {False: {"steady_stores": 1000, "rate": 2500.0, "storm_stores": 1000, "events": 500, "before": 30.0,
                  "after": 20.0},
          True: {"steady_stores": 200, "rate": 500.0, "storm_stores": 200, "events": 500, "before": 15.0,
                 "after": 10.0}}
UPLOAD_EVERY = 4.0
ORDER_EVERY = 0.5
SETUP_AT_ONCE = 16          # admin calls in flight while the stores are created and stocked
SETUP_TRIES = 20            # a store's stocking upload refused with Retry-After this often is an error
ADMIN = "bench-admin-token"
LATE_LOOP_MS = 100          # the generator's loop later than this at p99: it, not the hub, set the pace
# The hubs and PostgreSQL run at this niceness: the load generator stands for the stores' own machines,
# and when it waited for a core its loop ran a second late at p99 in a storm on two cores, so its
# clocks (an order's push, an upload's time), not the hub, made the tails. The hubs still get every
# cycle the generator does not use (about a third of a core).
SERVER_NICE = 10
PHASES = ("before", "during", "after")
# the targets (13 part 6), checked in "met"
TARGETS = {"upload_p99_ms": 1000, "order_push_p99_ms": 500, "storm_drain_s": 120, "amplification": 1.2,
           "hub_peak_rss_mb": 1024, "order_push_p99_ms_during": 1000}


def progress(message: str) -> None:
    print(f"[chain {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def admin(session: aiohttp.ClientSession, url: str, method: str, path: str, body=None, expect=(200, 201)):
    async with session.request(method, url + "/admin/v1" + path, json=body,
                               headers={"Authorization": f"Bearer {ADMIN}"}) as resp:
        data = await resp.json(content_type=None)
        if resp.status not in expect:
            raise BenchError(f"{method} {path}: {resp.status} {data}")
        return data


async def admin_ready(url: str) -> bool:
    async with aiohttp.ClientSession() as session:
        return bool(await admin(session, url, "GET", "/stores"))


async def at_most(limit: int, calls) -> list:
    """Run the coroutines `limit` at a time (the set-up is not what is measured; it only must be short)."""
    gate = asyncio.Semaphore(limit)

    async def one(call):
        async with gate:
            return await call

    return await asyncio.gather(*(one(call) for call in calls))


async def create_store(session, url: str, store: str) -> str:
    return (await admin(session, url, "POST", "/stores", {"store_id": store, "name": store}))["token"]


async def stock(session, url: str, store: str, index: int, token: str) -> None:
    """seq 1: enough stock that the admin's orders never run the store short. Sent again after
    Retry-After when the hub's gate refuses it, as a store does: SETUP_AT_ONCE uploads at a hub that
    has not measured its pace yet can be more than --max-upload-wait of work."""
    for _ in range(SETUP_TRIES):
        async with session.post(f"{url}/sync/v1/stores/{store}/events",
                                json={"protocol": 1, "events": [envelope(store, index, 1, qty=1_000_000)]},
                                headers={"Authorization": f"Bearer {token}"}) as resp:
            if resp.status == 200:
                return
            if resp.status not in (429, 503) or "Retry-After" not in resp.headers:
                raise BenchError(f"stocking {store}: {resp.status} {await resp.text()}")
            wait = int(resp.headers["Retry-After"])
        await asyncio.sleep(wait)
    raise BenchError(f"stocking {store}: refused {SETUP_TRIES} times")


async def start_hubs(folder: Path, base: Path | None, hub_args: list[str], db_url: str | None,
                     processes: int) -> tuple[list[Proc], list[str]]:
    token_file = folder / "admin-token"
    token_file.write_text(ADMIN + "\n", encoding="utf-8")
    token_file.chmod(0o600)
    if base is None:
        command = [store_edge()]
    else:  # another checkout's hub, on this interpreter (the same dependencies)
        command = [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(base)!r}); "
                   "from edge.ops.cli import main; sys.exit(main())"]
    hubs, urls = [], []
    for n in range(processes):
        port, name = free_port(), "hub" if processes == 1 else f"hub{n + 1}"
        hubs.append(Proc(name, [*command, "hub", "--data", str(folder / name), "--port", str(port),
                                "--admin-token-file", str(token_file), "--log-level", "warning",
                                *(["--db-url", db_url] if db_url else []), *hub_args], folder, nice=SERVER_NICE))
        urls.append(f"http://127.0.0.1:{port}")
        if db_url and n == 0:   # the first makes the schema; the others join it
            await wait_until(lambda: admin_ready(urls[0]), "the first hub", hubs[0])
    return hubs, urls


class Clock:
    """Phase marks and the hub's CPU at each, so samples can be split by when they started."""

    def __init__(self, hubs: list[Proc], pg_folder: Path | None):
        self.hubs, self.pg_folder = hubs, pg_folder
        self.marks: list[tuple[str, float, float, float]] = []   # (phase, at, hub CPU s, PostgreSQL CPU s)

    def mark(self, phase: str, at: float | None = None) -> float:
        """`at`: when the phase began if that was a moment ago (the hub's CPU is read now)."""
        at = time.perf_counter() if at is None else at
        self.marks.append((phase, at, sum(cpu_s(hub.popen.pid) for hub in self.hubs),
                           server_cpu_s(self.pg_folder) if self.pg_folder else 0.0))
        return at

    def span(self, phase: str) -> tuple[float, float, float, float]:
        """(start, end, hub CPU s, PostgreSQL CPU s) of a phase."""
        names = [mark[0] for mark in self.marks]
        i = names.index(phase)
        (_, start, cpu0, pg0), (_, end, cpu1, pg1) = self.marks[i], self.marks[i + 1]
        return start, end, cpu1 - cpu0, pg1 - pg0


def pct(values: list[float], p: float) -> float | None:
    return round(percentile(values, p), 1) if values else None


def within(samples, start: float, end: float) -> list[float]:
    return [value for at, value in samples if start <= at < end]


def phase_report(clock: Clock, phase: str, steady: Steady, storm: Tally, book: OrderBook, storm_uploads,
                 lags: list[tuple[float, float]]) -> dict:
    start, end, hub_cpu, pg_cpu = clock.span(phase)
    seconds = end - start
    steady_events = sum(within(steady.acks, start, end))
    events = steady_events + sum(within(storm.acks, start, end))
    orders = [order for order in book.orders.values() if start <= order.started < end]
    push = [(order.hinted - order.started) * 1000 for order in orders if order.hinted]
    answered = [(order.answered - order.started) * 1000 for order in orders if order.status == 201]
    pulled = [(order.pulled - order.started) * 1000 for order in orders if order.pulled]
    uploads = within(steady.uploads, start, end)
    storm_ms = within(storm_uploads, start, end)
    lag = within(lags, start, end)
    return {
        "seconds": round(seconds, 1), "events_per_s": round(events / seconds, 1),
        "steady_events_per_s": round(steady_events / seconds, 1),
        "upload_ms_p50": pct(uploads, 50), "upload_ms_p99": pct(uploads, 99), "uploads": len(uploads),
        **({"storm_upload_ms_p50": pct(storm_ms, 50), "storm_upload_ms_p99": pct(storm_ms, 99)} if storm_ms else {}),
        "orders": len(orders), "orders_failed": sum(1 for order in orders if order.status != 201),
        "orders_not_hinted": sum(1 for order in orders if order.status == 201 and not order.hinted),
        "orders_not_pulled": sum(1 for order in orders if order.status == 201 and not order.pulled),
        "order_push_ms_p50": pct(push, 50), "order_push_ms_p99": pct(push, 99),
        "order_answer_ms_p50": pct(answered, 50), "order_answer_ms_p99": pct(answered, 99),
        "order_pulled_ms_p50": pct(pulled, 50), "order_pulled_ms_p99": pct(pulled, 99),
        "hub_cpu_ms_per_event": round(hub_cpu * 1000 / events, 3) if events else None,
        **({"postgres_cpu_ms_per_event": round(pg_cpu * 1000 / events, 3) if events else None}
           if clock.pg_folder else {}),
        "load_loop_lag_ms_p99": pct(lag, 99),
    }


async def chain(folder: Path, shape: dict, base: Path | None, hub_args: list[str], db_url: str | None = None,
                processes: int = 1, pg_folder: Path | None = None) -> dict:
    hubs, urls = [], []
    try:
        hubs, urls = await start_hubs(folder, base, hub_args, db_url, processes)
        connector = aiohttp.TCPConnector(limit=0)   # a connection per store, as each store has its own
        async with aiohttp.ClientSession(connector=connector) as session:
            for proc, address in zip(hubs, urls):
                await wait_until(lambda address=address: admin(session, address, "GET", "/stores"), proc.name, proc)
            result = await run_phases(session, hubs, urls, shape, db_url, processes, pg_folder, folder)
        for proc in hubs:
            proc.stop()
        return result
    finally:
        for proc in hubs:
            proc.kill()


async def run_phases(session, hubs: list[Proc], urls: list[str], shape: dict, db_url: str | None, processes: int,
                     pg_folder: Path | None, folder: Path) -> dict:
    url, rng = urls[0], random.Random(20261206)
    await admin(session, url, "POST", "/products", {"products": [{"sku": SKU, "name": "商品", "price_fen": 100}]})
    steady_names = [f"t{i:04d}" for i in range(shape["steady_stores"])]
    storm_names = [f"s{i:04d}" for i in range(shape["storm_stores"])]
    set_up = time.perf_counter()
    tokens = await at_most(SETUP_AT_ONCE, [create_store(session, url, name) for name in steady_names + storm_names])
    steady_tokens, storm_tokens = tokens[:len(steady_names)], tokens[len(steady_names):]
    await at_most(SETUP_AT_ONCE, [stock(session, urls[i % processes], name, i, token)
                                  for i, (name, token) in enumerate(zip(steady_names, steady_tokens))])
    stats, book = Steady(), OrderBook()
    stores = [SteadyStore(name, i, token, urls[i % processes], session, stats, book)
              for i, (name, token) in enumerate(zip(steady_names, steady_tokens))]
    listeners = [asyncio.create_task(store.listen()) for store in stores]
    try:
        await asyncio.wait_for(asyncio.gather(*(store.hello.wait() for store in stores)), 120)
    except asyncio.TimeoutError:
        raise BenchError(f"{sum(not s.hello.is_set() for s in stores)} hint sockets never said hello") from None
    async with session.get(f"{url}/sync/v1/stores/{storm_names[0]}/events",
                           headers={"Authorization": f"Bearer {storm_tokens[0]}"}) as resp:
        modern = resp.status == 200   # a hub that answers "how far did you get" also has back-pressure
    if db_url:
        await settle_pg(db_url)
    progress(f"set up in {time.perf_counter() - set_up:.1f} s: {len(stores)} steady stores at {shape['rate']:g} "
             f"events/s, uploads every {shape['upload_every']:g} s; storm {len(storm_names)} x {shape['events']} "
             f"events, batch {BATCH}, timeout {TIMEOUT:g} s; {processes} hub process(es) on "
             f"{'PostgreSQL' if db_url else 'SQLite'}")

    clock, stop, lags = Clock(hubs, pg_folder), asyncio.Event(), []
    load_cpu, started = time.process_time(), time.perf_counter()
    workers = [asyncio.create_task(store.upload(shape["rate"] / len(stores), shape["upload_every"], started, stop,
                                                random.Random(store.index))) for store in stores]
    workers.append(asyncio.create_task(order_pusher(session, url, ADMIN, stores, book, shape["order_every"], stop,
                                                    rng)))
    workers.append(asyncio.create_task(loop_lag(stop, lags)))
    # one upload interval unmeasured: every store has uploaded once, so "before" is the steady state
    await watch(hubs, workers, shape["upload_every"])
    clock.mark("before")
    await watch(hubs, workers, shape["before"])
    progress("the storm")
    storm_started = clock.mark("during")
    tally = await run_storm(hubs, workers, {
        "events": shape["events"], "modern": modern,
        "stores": [(urls[i % processes], name, 100_000 + i, token)
                   for i, (name, token) in enumerate(zip(storm_names, storm_tokens))]})
    drained = tally.drained
    clock.mark("after", drained)
    progress(f"drained in {drained - storm_started:.1f} s; steady traffic goes on")
    await watch(hubs, workers, shape["after"])
    clock.mark("end")
    stop.set()
    await asyncio.gather(*workers)
    await book.heard(timeout=10)
    load_cpu = time.process_time() - load_cpu + tally.cpu_s   # the storm's process too
    wall = clock.marks[-1][1] - started
    for listener in listeners:
        listener.cancel()
    await asyncio.gather(*listeners, return_exceptions=True)
    rss = [peak_rss_mb(proc.popen.pid) for proc in hubs]
    unheard = sum(await at_most(SETUP_AT_ONCE, [store.settle() for store in stores]))
    held = await applied_pg(db_url) if db_url else await asyncio.to_thread(applied, folder / "hub" / "hub.db")

    queued = shape["storm_stores"] * shape["events"]
    confirmed = sum(store.next_seq - 2 for store in stores)   # the steady events the hub holds
    hub_cpu, pg_cpu = (clock.marks[-1][k] - clock.marks[0][k] for k in (2, 3))
    first, last = clock.marks[0][1], clock.marks[-1][1]
    events = sum(within(stats.acks, first, last)) + sum(within(tally.acks, first, last))
    lateness = [value for _, value in stats.late]
    lag = [value for _, value in lags]
    behind = pct(lag, 99) or 0.0
    progress(f"the load generator's loop ran {behind:.0f} ms late at p99 ({max(lag, default=0):.0f} ms at most), "
             f"{100 * load_cpu / wall:.0f} % of a core" + (": the figures are partly the generator's, not the hub's"
                                                            if behind > LATE_LOOP_MS else ""))
    return {
        "steady_stores": len(stores), "offered_events_per_s": shape["rate"], "upload_every_s": shape["upload_every"],
        "order_every_s": shape["order_every"], "storm_stores": shape["storm_stores"],
        "events_per_store": shape["events"], "batch": BATCH, "timeout_s": TIMEOUT, "back_pressure": modern,
        "hub_processes": processes, "database": "postgresql" if db_url else "sqlite", "server_nice": SERVER_NICE,
        "phases": {phase: phase_report(clock, phase, stats, tally, book, storm_upload_samples(tally, storm_started),
                                       lags) for phase in PHASES},
        "storm": {"drain_s": round(drained - storm_started, 1), "amplification": round(tally.worked / queued, 2),
                  "posted_ratio": round(tally.posted / queued, 2), "skipped_by_asking": tally.skipped,
                  "uploads": len(tally.upload_ms), "refused": tally.refused, "timeouts": tally.timeouts,
                  "upload_ms_p50": pct(tally.upload_ms, 50), "upload_ms_p99": pct(tally.upload_ms, 99)},
        "steady": {"refused": stats.refused, "failed": stats.failed, "hint_sockets_lost": stats.sockets_lost,
                   "pulls_failed": stats.pull_failed, "applied_unheard": unheard},
        "hub_cpu_s": round(hub_cpu, 1), "hub_cpu_ms_per_event": round(hub_cpu * 1000 / events, 3),
        **({"postgres_cpu_s": round(pg_cpu, 1), "postgres_cpu_ms_per_event": round(pg_cpu * 1000 / events, 3)}
           if pg_folder else {}),
        "hub_peak_rss_mb": rss,
        "events_held": held, "events_expected": len(stores) + confirmed + queued,   # with each store's stocking
        "load": {"loop_lag_ms_p99": pct(lag, 99), "loop_lag_ms_max": round(max(lag), 1) if lag else None,
                 "cpu_pct": round(100 * load_cpu / wall, 1),
                 "upload_late_ms_p50": pct(lateness, 50), "upload_late_ms_p99": pct(lateness, 99),
                 "offered_events": int(shape["rate"] * wall), "steady_events_held": confirmed},
    }


def storm_upload_samples(tally: Tally, storm_started: float) -> list[tuple[float, float]]:
    """The storm's uploads all belong to its phase (their start times are not kept)."""
    return [(storm_started, ms) for ms in tally.upload_ms]


async def run_storm(hubs: list[Proc], workers: list[asyncio.Task], spec: dict) -> Tally:
    """The storm's stores in a process of their own (bench/chain_storm.py). On the steady stores' loop,
    and even on a thread of their own, their bursts (a thousand batches of 200 events encoded at once)
    held that loop up to a second: the clocks of the orders' pushes and the steady uploads stopped with it."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.chain_storm", stdin=PIPE, stdout=PIPE,
                                                cwd=Path(__file__).resolve().parent.parent)
    answer = asyncio.create_task(proc.communicate(json.dumps(spec).encode()))
    try:
        while not answer.done():
            await asyncio.wait({answer}, timeout=1.0)
            check(hubs, workers)
    finally:
        if not answer.done():
            proc.kill()
            await asyncio.wait({answer})
    if proc.returncode != 0:
        raise BenchError(f"the storm's process exited with {proc.returncode}")
    return Tally(**json.loads(answer.result()[0]))


def check(hubs: list[Proc], workers: list[asyncio.Task]) -> None:
    for proc in hubs:
        proc.check()
    for task in workers:
        if task.done() and task.exception():
            raise task.exception()


async def watch(hubs: list[Proc], workers: list[asyncio.Task], seconds: float) -> None:
    """`seconds` of the traffic running, the hubs and the load checked once a second."""
    end = time.perf_counter() + seconds
    while (left := end - time.perf_counter()) > 0:
        await asyncio.wait(workers, timeout=min(1.0, left), return_when=asyncio.FIRST_EXCEPTION)
        check(hubs, workers)


def nice_tree(pid: int, nice: int) -> None:
    """The process and its children (PostgreSQL's postmaster and its background workers; the backends it
    forks later inherit it)."""
    pids = [pid] + [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit() and parent_pid(d) == pid]
    for each in pids:
        with contextlib.suppress(ProcessLookupError):
            os.setpriority(os.PRIO_PROCESS, each, nice)


def postgres_chain(folder: Path, shape: dict, base: Path | None, hub_args: list[str], processes: int) -> dict:
    """The run with the hubs on a private PostgreSQL server, durable as a production one is."""
    from tests.postgres import PostgresServer  # noqa: PLC0415 (only this benchmark needs a server)

    server = PostgresServer().start()
    try:
        nice_tree(int((server.data / "postmaster.pid").read_text().split()[0]), SERVER_NICE)
        for setting in ("fsync = on", "synchronous_commit = on", "full_page_writes = on"):
            server.sql(f"ALTER SYSTEM SET {setting}")
        server.sql("SELECT pg_reload_conf()")
        name = server.create_database("bench")
        return asyncio.run(chain(folder, shape, base, hub_args, server.url(name), processes, server.root))
    finally:
        server.stop()


def met(result: dict) -> dict:
    """The issue's targets, each true or false (13 part 6: the steady figures on PostgreSQL's two processes)."""
    phases, storm = result["phases"], result["storm"]
    steady_upload = max(phases[p]["upload_ms_p99"] or 0 for p in ("before", "after"))
    steady_push = max(phases[p]["order_push_ms_p99"] or 0 for p in ("before", "after"))
    return {
        "no_timeouts": storm["timeouts"] == 0,
        "steady_upload_p99": steady_upload <= TARGETS["upload_p99_ms"],
        "steady_order_push_p99": steady_push <= TARGETS["order_push_p99_ms"],
        "steady_rate_applied": all(phases[p]["steady_events_per_s"] >= 0.95 * result["offered_events_per_s"]
                                   for p in ("before", "after")),
        "storm_drain": storm["drain_s"] <= TARGETS["storm_drain_s"],
        "amplification": storm["amplification"] <= TARGETS["amplification"],
        "peak_rss": max(result["hub_peak_rss_mb"]) <= TARGETS["hub_peak_rss_mb"],
        "order_push_p99_during_storm": (phases["during"]["order_push_ms_p99"] or 0)
        <= TARGETS["order_push_p99_ms_during"],
        "every_event_held": result["events_held"] == result["events_expected"],
    }


def run(quick: bool = False, base: Path | None = None, hub_args: list[str] | None = None, postgresql: int = 0,
        **shape) -> dict:
    """`shape`: steady_stores, rate, storm_stores, events, before, after, upload_every, order_every (None: the
    default of a full or `quick` run)."""
    full = {**SHAPES[quick], "upload_every": UPLOAD_EVERY, "order_every": ORDER_EVERY,
            **{key: value for key, value in shape.items() if value is not None}}
    with tempfile.TemporaryDirectory(prefix="bench-chain-") as tmp:
        args = (Path(tmp), full, base, hub_args or [])
        result = postgres_chain(*args, postgresql) if postgresql else asyncio.run(chain(*args))
    return {"benchmark": "chain", "quick": quick, **result, "met": met(result)}


def from_args(argv: list[str] | None = None) -> dict:
    """The run the command line asks for (`python -m bench chain …` hands its options here)."""
    parser = argparse.ArgumentParser(prog="python -m bench chain", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 steady stores at 500 events/s, a 200 x 500 storm")
    parser.add_argument("--steady-stores", type=int, help="stores keeping a hint socket and uploading steadily")
    parser.add_argument("--rate", type=float, help="events a second the steady stores offer, all together")
    parser.add_argument("--upload-every", type=float, help=f"seconds between a store's uploads ({UPLOAD_EVERY:g})")
    parser.add_argument("--order-every", type=float, help=f"seconds between online orders ({ORDER_EVERY:g})")
    parser.add_argument("--storm-stores", "--stores", dest="storm_stores", type=int, help="stores in the storm")
    parser.add_argument("--events", type=int, help="events each storm store queued")
    parser.add_argument("--before", type=float, help="seconds of steady traffic before the storm")
    parser.add_argument("--after", type=float, help="seconds of steady traffic after the storm drained")
    parser.add_argument("--base", type=Path, help="the checkout whose hub to run (before/after)")
    parser.add_argument("--hub-arg", action="append", default=[], help="an option for the hub (repeatable), "
                        "e.g. --hub-arg=--max-uploads=32")
    parser.add_argument("--postgresql", type=int, default=0, metavar="N",
                        help="N hub processes on one PostgreSQL database (default: one on SQLite)")
    args = parser.parse_args(argv)
    shape = {key: getattr(args, key) for key in ("steady_stores", "rate", "upload_every", "order_every",
                                                 "storm_stores", "events", "before", "after")}
    return run(args.quick, args.base, args.hub_arg, args.postgresql, **shape)


def main(argv: list[str] | None = None) -> int:
    print(json.dumps(from_args(argv), ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
