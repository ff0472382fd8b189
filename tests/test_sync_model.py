"""A model-based (Hypothesis stateful) test of edge <-> hub sync, with faults.

The real edge app and the real hub app run in-process over loopback (aiohttp TestServer), on an
event loop the machine owns. The edge app runs without a [cloud] url, so it starts no sync tasks:
the machine builds the SyncEngine itself and drives it one step at a time (upload_once / pull),
which makes every run deterministic.

Random sequences of: till sales (now and then of HOM-001, a SKU the hub does not know: its
events must be dead-lettered), returns, the till resending a sale with its Idempotency-Key, online
orders, cancellations, refunds and stock corrections at the hub, staff moving orders on, discarding
dead letters, uploads and pulls, and faults: the link down for a step (a port nobody listens on),
an answer lost after the hub committed, an edge crash (the database and its WAL copied as a kill
would leave them, the app started again on the copy, a new engine), and a hub rewind (stop, put
one of the last few backups of hub.db in place, start: the hub must notice and change its epoch;
a backup is taken after every step that changed the hub).

A model in plain Python predicts the edge (balances, outbox events and their moves, orders, dead
letters, the engine's acked seq and known epoch) and the hub (which events it processed and how,
its orders, its feed, its balances, its epoch changing or not, 409 out_of_stock / order_closed).
After every step the real databases are compared with the model; at the end, with faults healed
and the queue drained, the end-to-end guarantees are checked: each outbox event is held by the hub
exactly once at its seq, rejected there if and only if it is a dead letter at the edge, the hub's
balances are the edge's minus the dead letters' moves (and reconciliation says "match"), both
sides agree on every order's state, and both ledgers add up.
"""

from __future__ import annotations

import asyncio
import copy
import json
import shutil
import socket
import sqlite3
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from edge.app import build_app
from edge.core import config as config_mod
from edge.services.app_keys import STORE
from hub.app import build_hub_app
from hub.state import HUB
from sync.client import CloudClient, NeedsPerson, RetryLater
from sync.engine import SyncEngine
from sync.reconcile import reconcile
from tests.conftest import CATALOG, OPENING, PRICE, ledger_mismatches, ram_tmp_dir, seed

ADMIN = "admin-secret"
STORE_ID = "test-store"
UNKNOWN = "HOM-001"                                     # in the store's catalog, not in the chain's
KNOWN = sorted(s for s in CATALOG if s != UNKNOWN)
BATCH = 4                                               # small: batches and lost answers split the queue
ORDER_EVENTS = ("order.received", "order.state_changed", "order.conflict")
OPEN_STATES = ("received", "accepted", "ready")
STAFF = {"accepted": ("received",), "ready": ("received", "accepted")}
CLOSED_AT_HUB = ("picked_up", "cancelled", "refunded")

# Hypothesis caches what it reads of the source under its home folder even with database=None: not in the repo
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "store-edge-hypothesis")

FAULTS = st.sampled_from([None, None, None, "down", "lose"])


# -- the client, with a fault for the next request --------------------------------------------------

class FaultyClient(CloudClient):
    """The real client; `fault` applies to the next request only: 'down' sends it to a port nobody
    listens on (connection refused), 'lose' lets the hub commit and answer, then drops the answer
    (what the engine sees after a timeout)."""

    def __init__(self, url: str, token: str, dead_url: str):
        super().__init__(url, STORE_ID, token, timeout=10.0)
        self.dead_base = CloudClient(dead_url, STORE_ID, token).base
        self.fault: str | None = None
        self.requests = 0

    def retarget(self, url: str) -> None:
        self.base = CloudClient(url, STORE_ID, "x").base

    async def _request(self, method, path, **kwargs):
        self.requests += 1
        if self.fault == "lose" and (method, path) in (("GET", "/events"), ("GET", "/state")):
            # a lost answer is the batch's (or the page's): the uploader's question "what do you hold?"
            # (protocol 2.6) and the state read on a new epoch go through, the fault waits for the POST or
            # the GET /changes itself ('down' fails whichever request comes first)
            return await super()._request(method, path, **kwargs)
        fault, self.fault = self.fault, None
        if fault == "down":
            real, self.base = self.base, self.dead_base
            try:
                return await super()._request(method, path, **kwargs)
            finally:
                self.base = real
        answer = await super()._request(method, path, **kwargs)
        if fault == "lose":
            raise RetryLater("TimeoutError: the answer was lost after the hub committed")
        return answer


# -- the model ----------------------------------------------------------------------------------------

@dataclass
class Ev:
    type: str
    moves: tuple = ()                 # ((sku, qty, reason), ...)
    order_id: str | None = None
    to: str | None = None


@dataclass
class HubModel:
    epoch: str
    catalog: frozenset
    log: list = field(default_factory=list)          # status of the event at seq i+1: applied / rejected
    orders: dict = field(default_factory=dict)       # order_id -> {state, received, lines}
    feed: list = field(default_factory=list)         # (key, kind, args): the changes the edge must apply
    changes: int = 0                                 # rows in the changes table (its max cursor)
    event_rows: int = 0                              # rows in the events table (its max event_row)
    uploaded: bool = False                           # last_upload_at is set: not stale


class Model:
    def __init__(self, epoch: str, product_changes: int):
        self.bal: dict[str, list[int]] = {sku: [qty, 0] for sku, qty in OPENING.items() if qty}
        self.outbox: list[Ev] = [Ev("stock.received", tuple((s, q, "receipt") for s, q in OPENING.items() if q))]
        self.acked = 0
        self.edge_epoch: str | None = None
        self.ask_held = True                            # the engine's _ask_held: true when it starts
        self.dead: dict[int, str | None] = {}           # seq -> resolution (None: open)
        self.sales: list[dict] = []                     # {id, lines: [(sku, qty)], returned: [qty]}
        self.orders: dict[str, dict] = {}               # edge orders: id -> {state, lines, short}
        self.inbox: set[str] = set()
        self.hub = HubModel(epoch=epoch, catalog=frozenset(KNOWN))
        self.hub.feed.append(("key:first-start", "key", None))  # the hub publishes its signing key at start
        for sku in KNOWN[:product_changes]:
            self.hub.feed.append((f"product:{sku}", "product", None))
        self.hub.changes = product_changes + 1

    # -- the edge's own writes ----------------------------------------------------------------------
    def move(self, sku: str, qty: int, reason: str) -> tuple:
        row = self.bal.setdefault(sku, [0, 0])
        row[1 if reason in ("reserve", "release") else 0] += qty
        return (sku, qty, reason)

    def emit(self, ev: Ev) -> None:
        self.outbox.append(ev)

    def receive(self, order_id: str, lines: list) -> None:
        if order_id in self.orders:
            return
        short = False
        for sku, qty in lines:                          # distinct SKUs per order
            on_hand, reserved = self.bal.get(sku, [0, 0])
            short |= qty > max(0, on_hand - reserved)
        moves = tuple(self.move(sku, qty, "reserve") for sku, qty in lines)
        self.orders[order_id] = {"state": "received", "lines": lines, "short": short}
        self.emit(Ev("order.received", moves, order_id))

    def close(self, order_id: str, to: str) -> None:
        order = self.orders[order_id]
        if order["state"] in OPEN_STATES:
            moves = tuple(self.move(sku, -qty, "release") for sku, qty in order["lines"])
        elif order["state"] != to:
            moves = ()
        else:
            return
        self.emit(Ev("order.state_changed", moves, order_id, to))
        order["state"] = to

    def correct(self, sku: str, qty: int) -> None:
        self.emit(Ev("stock.corrected", (self.move(sku, qty, "correction"),)))

    # -- the hub ------------------------------------------------------------------------------------
    def hub_balances(self) -> dict[str, tuple[int, int]]:
        out: dict[str, list[int]] = {}
        for seq, status in enumerate(self.hub.log, start=1):
            if status == "applied":
                for sku, qty, reason in self.outbox[seq - 1].moves:
                    out.setdefault(sku, [0, 0])[1 if reason in ("reserve", "release") else 0] += qty
        return {sku: tuple(v) for sku, v in out.items() if v != [0, 0]}

    def online_available(self, sku: str) -> int:
        if not self.hub.uploaded:
            return 0                                    # stale: never uploaded
        on_hand, reserved = self.hub_balances().get(sku, (0, 0))
        pending = sum(qty for o in self.hub.orders.values() if o["state"] == "created" and not o["received"]
                      for s, qty in o["lines"] if s == sku)
        return max(0, on_hand - reserved - pending)

    def hub_validate(self, ev: Ev) -> bool:
        if any(sku not in self.hub.catalog for sku, _, _ in ev.moves):
            return False
        return not (ev.type in ORDER_EVENTS and ev.order_id not in self.hub.orders)

    def hub_process(self, start: int, end: int) -> tuple[str, list]:
        """process_batch: docs/sync-protocol.md 2.2 (no renumbering here: a seq is always its event's)."""
        log, results = self.hub.log, []
        for seq in range(start, end + 1):
            expected = len(log) + 1
            if seq <= len(log) and log[seq - 1] in ("applied", "voided"):
                results.append((seq, "duplicate"))
            elif seq > expected:
                return "gap", results
            elif seq < expected:                        # held, rejected: the same answer again
                results.append((seq, "rejected"))
            else:
                ev = self.outbox[seq - 1]
                if self.dead.get(seq) is not None:
                    # a dead letter already retried or discarded, which the restored hub lost: it goes up
                    # as event.voided, applied without effect (sync/queue.pending_batch)
                    log.append("voided")
                    self.hub.event_rows += 1
                    results.append((seq, "applied"))
                    continue
                status = "applied" if self.hub_validate(ev) else "rejected"
                if status == "applied" and ev.type == "order.received":
                    self.hub.orders[ev.order_id]["received"] = True
                if status == "applied" and ev.type == "order.state_changed":
                    order = self.hub.orders[ev.order_id]
                    # a step taken before the store learnt of a cancel or refund does not reopen it
                    if not (order["state"] in ("cancelled", "refunded") and ev.to in ("accepted", "ready")):
                        order["state"] = ev.to
                    order["received"] = True
                log.append(status)
                self.hub.event_rows += 1
                results.append((seq, status))
        self.hub.uploaded = True
        return "ok", results

    # -- the engine ---------------------------------------------------------------------------------
    def notice_epoch(self) -> bool:
        """_check_epoch on an answer: True if the queue and the cursor were rewound."""
        if self.edge_epoch == self.hub.epoch:
            return False
        if self.edge_epoch is None:
            self.edge_epoch = self.hub.epoch
            return False
        self.acked = rewound_acked(self.acked, len(self.hub.log))
        self.edge_epoch = self.hub.epoch
        return True

    def upload(self, fault: str | None) -> bool:
        """The engine's upload_once, again and again, until the queue is empty or a request fails; True if
        the fault hit a request (the engine raised RetryLater). An engine that may have lost an answer (one
        just started) first asks the hub what it holds (protocol 2.6) and records that instead of sending
        it; it goes on asking while the hub held whole batches."""
        for _ in range(500):
            if self.acked >= len(self.outbox):
                return False
            if fault == "down":
                return True                             # the first request fails, whichever it is
            start, end = self.acked + 1, min(len(self.outbox), self.acked + BATCH)
            if self.ask_held:
                if self.notice_epoch():
                    continue
                count = max(0, min(end, len(self.hub.log)) - start + 1)
                self.ask_held = count == end - start + 1
                if count:
                    self.answered([(seq, "rejected" if self.hub.log[seq - 1] == "rejected" else "applied")
                                   for seq in range(start, start + count)])
                    self.acked = start + count - 1
                    continue
            _, results = self.hub_process(start, end)
            if fault == "lose":
                return True
            if self.notice_epoch():
                continue
            self.answered(results)
            self.acked = min(len(self.hub.log), end)
        raise AssertionError("the model's upload does not settle")

    def answered(self, results: list) -> None:
        for seq, status in results:
            if status == "rejected":
                self.dead.setdefault(seq, None)
            elif seq in self.dead and self.dead[seq] is None:
                del self.dead[seq]

    def pull(self, fault: str | None) -> None:
        if fault:
            return                                      # a GET changes nothing at the hub
        while self.notice_epoch():
            pass
        for key, kind, args in self.hub.feed:
            if key in self.inbox:
                continue
            self.inbox.add(key)
            if kind == "order":
                self.receive(*args)
            elif kind == "close":
                self.close(*args)
            elif kind == "correction":
                self.correct(*args)


def rewound_acked(acked: int, hub_count: int) -> int:
    """The engine's acked seq after it saw a new epoch and asked the hub's state: back to what the hub
    holds, never forward (the answers for events the hub holds beyond it were not read)."""
    return min(hub_count, acked)


def nonzero(balances: dict) -> dict:
    return {sku: tuple(v) for sku, v in balances.items() if tuple(v) != (0, 0)}


def moves_of(payload: dict) -> tuple:
    return tuple((m["sku"], m["qty"], m["reason"]) for m in payload.get("moves", []))


def ro(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    return conn


# -- the machine --------------------------------------------------------------------------------------

class SyncMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = ram_tmp_dir("sync-model-")  # an fsync a commit on disk: see tests/conftest.py
        self.broken = False
        self.generation = 0
        self.backups: list[tuple[tuple, Path, HubModel]] = []
        self.last_sale: tuple[str, dict, str] | None = None
        self.keys = 0
        self.dead_socket = socket.socket()
        self.dead_socket.bind(("127.0.0.1", 0))         # bound, never listening: connection refused
        self.dead_url = f"http://127.0.0.1:{self.dead_socket.getsockname()[1]}"
        self.hub_server = self.edge_server = None
        self.admin = self.till = None
        self.engine = None
        self.run(self._setup())

    def run(self, coro):
        try:
            return self.loop.run_until_complete(coro)
        except BaseException:
            self.broken = True
            raise

    # -- setup and teardown -------------------------------------------------------------------------
    async def _start_hub(self) -> None:
        self.hub_app = build_hub_app(self.tmp / "hub", admin_token=ADMIN, stale_after=3600)
        self.hub_server = TestServer(self.hub_app)
        await self.hub_server.start_server()
        self.hub_url = str(self.hub_server.make_url("")).rstrip("/")
        self.admin = ClientSession(headers={"Authorization": f"Bearer {ADMIN}"})

    async def _setup(self) -> None:
        await self._start_hub()
        status, body = await self.hub_call("POST", "/stores", {"store_id": STORE_ID, "name": "测试门店"})
        assert status == 201, body
        self.token = body["token"]
        products = [{"sku": sku, "name": spec[0], "price_fen": spec[1], "unit": spec[2], "category": spec[3],
                     "low_stock": spec[4], "barcodes": spec[5]} for sku, spec in CATALOG.items() if sku in KNOWN]
        status, body = await self.hub_call("POST", "/products", {"products": products})
        assert status == 200, body
        self.model = Model(self.hub_app[HUB].epoch, len(products))
        config = self._edge_config()
        seed(config.db_path)
        await self._start_edge(config)

    def _edge_config(self):
        self.generation += 1
        folder = self.tmp / f"edge-{self.generation}"
        folder.mkdir()
        (folder / "config.toml").write_text(f'[store]\nid = "{STORE_ID}"\nname = "测试门店"\ndata_dir = "var"\n',
                                            encoding="utf-8")
        return config_mod.load(folder / "config.toml")

    async def _start_edge(self, config) -> None:
        self.config = config
        self.edge_app = build_app(config)
        self.edge_server = TestServer(self.edge_app)
        await self.edge_server.start_server()
        self.till = ClientSession(base_url=str(self.edge_server.make_url("")))
        client = FaultyClient(self.hub_url, self.token, self.dead_url)
        self.engine = SyncEngine(self.edge_app[STORE], client, tz=config.tz, batch_size=BATCH, seed=0)
        await client.open()

    async def _stop_edge(self) -> None:
        await self.engine.client.close()
        await self.till.close()
        await self.edge_server.close()

    async def _stop_hub(self) -> None:
        await self.admin.close()
        await self.hub_server.close()

    def teardown(self):
        try:
            # Hypothesis calls this in a `finally`: after a failed step (or an aborted example) only clean up
            if not self.broken and sys.exc_info()[0] is None:
                self.run(self._heal_and_check())
        finally:
            try:
                async def stop():
                    if self.edge_server is not None:
                        await self._stop_edge()
                    if self.hub_server is not None:
                        await self._stop_hub()
                self.loop.run_until_complete(stop())
            finally:
                self.loop.close()
                self.dead_socket.close()
                shutil.rmtree(self.tmp, ignore_errors=True)

    # -- HTTP helpers -------------------------------------------------------------------------------
    async def hub_call(self, method: str, path: str, body=None):
        async with self.admin.request(method, self.hub_url + "/admin/v1" + path, json=body) as resp:
            return resp.status, await resp.json()

    async def edge_post(self, path: str, body, key: str | None = None):
        if key is None:
            self.keys += 1
            key = f"model-key-{self.keys}"
        async with self.till.post("/api/v1" + path, json=body, headers={"Idempotency-Key": key}) as resp:
            return resp.status, await resp.json(), resp.headers.get("Idempotent-Replayed")

    # -- driving the engine -------------------------------------------------------------------------
    async def drive_upload(self, fault):
        self.engine.client.fault = fault
        try:
            for _ in range(500):
                if not await self.engine.upload_once():
                    return None
            raise AssertionError("upload_once keeps finding batches")
        except (RetryLater, NeedsPerson) as exc:
            return exc
        finally:
            self.engine.client.fault = None

    async def drive_pull(self, fault):
        self.engine.client.fault = fault
        try:
            await self.engine.pull()
            return None
        except (RetryLater, NeedsPerson) as exc:
            return exc
        finally:
            self.engine.client.fault = None

    # -- rules: the till ----------------------------------------------------------------------------
    @rule(lines=st.lists(st.tuples(st.sampled_from(KNOWN * 2 + [UNKNOWN]), st.integers(1, 4)),
                         min_size=1, max_size=2, unique_by=lambda line: line[0]))
    def sale(self, lines):
        body = {"lines": [{"sku": sku, "qty": qty} for sku, qty in lines],
                "payments": [{"method": "cash", "amount_fen": sum(PRICE[s] * q for s, q in lines)}]}
        self.keys += 1
        key = f"sale-{self.keys}"
        status, answer, _ = self.run(self.edge_post("/sales", body, key))
        assert status == 201, answer
        sale_id = answer["sale"]["id"]
        self.last_sale = (key, body, sale_id)
        m = self.model
        m.sales.append({"id": sale_id, "lines": list(lines), "returned": [0] * len(lines)})
        m.emit(Ev("sale.recorded", tuple(m.move(sku, -qty, "sale") for sku, qty in lines)))

    @precondition(lambda self: self.last_sale is not None)
    @rule()
    def till_resends_last_sale(self):
        """The till did not see the answer (or the edge crashed after the commit): same key, same body."""
        key, body, sale_id = self.last_sale
        status, answer, replayed = self.run(self.edge_post("/sales", body, key))
        assert (status, replayed, answer["sale"]["id"]) == (201, "true", sale_id), answer

    @precondition(lambda self: any(q > r for s in self.model.sales for (_, q), r in zip(s["lines"], s["returned"])))
    @rule(data=st.data(), restock=st.booleans())
    def sale_return(self, data, restock):
        choices = [(s, no) for s in self.model.sales for no, ((_, q), r) in enumerate(zip(s["lines"], s["returned"]))
                   if q > r]
        sale, no = data.draw(st.sampled_from(choices), label="sale line")
        sku, sold = sale["lines"][no]
        qty = data.draw(st.integers(1, sold - sale["returned"][no]), label="qty")
        status, answer, _ = self.run(self.edge_post(f"/sales/{sale['id']}/returns", {
            "lines": [{"line_no": no + 1, "qty": qty}], "refund_method": "cash", "restock": restock}))
        assert status == 201, answer
        sale["returned"][no] += qty
        m = self.model
        m.emit(Ev("sale.returned", (m.move(sku, qty, "return"),) if restock else ()))

    @precondition(lambda self: any(o["state"] in ("received", "accepted") for o in self.model.orders.values()))
    @rule(data=st.data(), to=st.sampled_from(["accepted", "ready"]))
    def staff_moves_order(self, data, to):
        order_id = data.draw(st.sampled_from(sorted(self.model.orders)), label="order")
        status, answer, _ = self.run(self.edge_post(f"/orders/{order_id}/state", {"to": to, "operator": "小李"}))
        order = self.model.orders[order_id]
        if order["state"] not in STAFF[to]:
            assert status == 409 and answer["error"]["code"] == "invalid_transition", (status, answer)
            return
        assert status == 201, answer
        self.model.emit(Ev("order.state_changed", (), order_id, to))
        order["state"] = to

    @precondition(lambda self: any(r is None for r in self.model.dead.values()))
    @rule(data=st.data())
    def manager_discards_dead_letter(self, data):
        seq = data.draw(st.sampled_from(sorted(s for s, r in self.model.dead.items() if r is None)), label="seq")
        status, answer, _ = self.run(self.edge_post(f"/sync/dead-letters/{seq}/discard",
                                                    {"operator": "店长", "note": "总部不卖这个"}))
        assert status == 201, answer
        self.model.dead[seq] = "discarded"
        self.model.emit(Ev("dead_letter.discarded"))

    # -- rules: the chain, at the hub ---------------------------------------------------------------
    @rule(lines=st.lists(st.tuples(st.sampled_from(KNOWN), st.integers(1, 6)), min_size=1, max_size=2,
                         unique_by=lambda line: line[0]))
    def online_order(self, lines):
        m = self.model
        expect_ok = all(qty <= m.online_available(sku) for sku, qty in lines)
        status, answer = self.run(self.hub_call("POST", f"/stores/{STORE_ID}/orders", {
            "kind": "pickup", "lines": [{"sku": sku, "qty": qty} for sku, qty in lines]}))
        if not expect_ok:
            assert status == 409 and answer["error"] == "out_of_stock", (status, answer)
            return
        assert status == 201, answer
        order_id = answer["order_id"]
        m.hub.orders[order_id] = {"state": "created", "received": False, "lines": list(lines)}
        m.hub.feed.append((answer["change_id"], "order", (order_id, list(lines))))
        m.hub.changes += 1

    @precondition(lambda self: self.model.hub.orders)
    @rule(data=st.data(), to=st.sampled_from(["cancelled", "refunded"]))
    def chain_closes_order(self, data, to):
        m = self.model
        order_id = data.draw(st.sampled_from(sorted(m.hub.orders)), label="order")
        action = "cancel" if to == "cancelled" else "refund"
        status, answer = self.run(self.hub_call("POST", f"/orders/{order_id}/{action}", {"reason": "顾客取消"}))
        if m.hub.orders[order_id]["state"] in CLOSED_AT_HUB:
            assert status == 409 and answer["error"] == "order_closed", (status, answer)
            return
        assert status == 200, answer
        m.hub.orders[order_id]["state"] = to
        m.hub.feed.append((answer["change_id"], "close", (order_id, to)))
        m.hub.changes += 1

    @rule(sku=st.sampled_from(KNOWN), qty=st.sampled_from([-3, -1, 2, 5]))
    def chain_corrects_stock(self, sku, qty):
        status, answer = self.run(self.hub_call("POST", f"/stores/{STORE_ID}/corrections",
                                                {"sku": sku, "qty": qty, "reason": "调拨"}))
        assert status == 201, answer
        self.model.hub.feed.append((answer["change_id"], "correction", (sku, qty)))
        self.model.hub.changes += 1

    # -- rules: the link ----------------------------------------------------------------------------
    @rule(fault=FAULTS)
    def upload(self, fault):
        error = self.run(self.drive_upload(fault))
        if self.model.upload(fault):
            assert isinstance(error, RetryLater), error
        else:
            assert error is None, error

    @rule(fault=FAULTS)
    def pull(self, fault):
        error = self.run(self.drive_pull(fault))
        self.model.pull(fault)
        assert (error is None) == (fault is None), error

    # -- rules: crashes and restores ----------------------------------------------------------------
    @rule()
    def edge_crashes(self):
        """kill -9 and start again: the database and its WAL as they are on disk; nothing in memory."""
        async def crash():
            old = self.config
            new = self._edge_config()
            new.data_dir.mkdir(parents=True, exist_ok=True)
            for path in old.data_dir.iterdir():
                if not path.name.endswith("-shm"):
                    shutil.copy2(path, new.data_dir / path.name)
            await self._stop_edge()
            await self._start_edge(new)
        self.run(crash())
        self.model.ask_held = True  # a new engine: it asks the hub before it sends

    def backup_hub(self) -> None:
        """The hub's backup job: a consistent copy of hub.db (SQLite's backup API), whenever it changed."""
        hub = self.model.hub
        marks = (hub.epoch, hub.changes, hub.event_rows)
        if self.backups and self.backups[-1][0] == marks:
            return
        path = self.tmp / f"hub-backup-{len(self.backups)}.db"
        src, dst = sqlite3.connect(self.tmp / "hub" / "hub.db"), sqlite3.connect(path)
        try:
            src.backup(dst)
        finally:
            src.close()
            dst.close()
        self.backups.append((marks, path, copy.deepcopy(hub)))

    @precondition(lambda self: self.backups)
    @rule(back=st.integers(1, 4))
    def hub_restored_from_backup(self, back):
        """Stop the hub, put the copy of `back` backups ago in place (the last one: no change), start it."""
        _, path, snapshot = self.backups[-min(back, len(self.backups))]
        current = self.model.hub
        older = snapshot.changes < current.changes or snapshot.event_rows < current.event_rows

        async def restore():
            await self._stop_hub()
            folder = self.tmp / "hub"
            for suffix in ("", "-wal", "-shm"):
                (folder / f"hub.db{suffix}").unlink(missing_ok=True)
            shutil.copy2(path, folder / "hub.db")
            await self._start_hub()
            self.engine.client.retarget(self.hub_url)
            await self.engine.client.close()       # no pooled connection to the old server
            await self.engine.client.open()
        self.run(restore())
        epoch = self.hub_app[HUB].epoch
        assert (epoch != current.epoch) == (older or snapshot.epoch != current.epoch), (epoch, current.epoch)
        self.model.hub = copy.deepcopy(snapshot)
        self.model.hub.epoch = epoch

    # -- invariants ---------------------------------------------------------------------------------
    @invariant()
    def databases_match_the_model(self):
        if not self.broken:
            self.run(self._check_step())
            self.backup_hub()

    async def _check_step(self) -> None:
        m = self.model
        await self.edge_app[STORE].read(lambda conn: None)  # the edge has settled
        conn = ro(self.config.db_path)
        try:
            balances = {r["sku"]: (r["on_hand"], r["reserved"]) for r in conn.execute(
                "SELECT sku, on_hand, reserved FROM stock_balances")}
            outbox = conn.execute("SELECT seq, id, type, payload FROM outbox ORDER BY seq").fetchall()
            state = dict(conn.execute("SELECT key, value FROM sync_state").fetchall())
            dead = dict(conn.execute("SELECT seq, resolution FROM dead_letters").fetchall())
            orders = {r["id"]: (r["state"], bool(r["short"])) for r in conn.execute("SELECT id, state, short FROM orders")}
            inbox = conn.execute("SELECT status, count(*) FROM inbox GROUP BY status").fetchall()
        finally:
            conn.close()
        assert nonzero(balances) == nonzero(m.bal)
        assert ledger_mismatches(self.config.db_path) == []
        assert [r["seq"] for r in outbox] == list(range(1, len(m.outbox) + 1))
        for row, ev in zip(outbox, m.outbox):
            payload = json.loads(row["payload"])
            got = Ev(row["type"], moves_of(payload), payload.get("order_id") if row["type"] in ORDER_EVENTS else None,
                     payload.get("to"))
            assert got == ev, (row["seq"], got, ev)
        assert int(state.get("acked_seq", 0)) == m.acked
        assert int(state.get("seq_offset", 0)) == 0
        assert state.get("epoch") == m.edge_epoch
        assert dead == m.dead
        assert orders == {oid: (o["state"], o["short"]) for oid, o in m.orders.items()}
        assert {s: n for s, n in inbox} == ({"applied": len(m.inbox)} if m.inbox else {})
        self.outbox_ids = [r["id"] for r in outbox]

        conn = ro(self.tmp / "hub" / "hub.db")
        try:
            events = conn.execute("SELECT seq, event_id, status FROM events WHERE store_id = ? ORDER BY seq",
                                  (STORE_ID,)).fetchall()
            next_seq, uploaded = conn.execute("SELECT next_seq, last_upload_at IS NOT NULL FROM stores "
                                              "WHERE store_id = ?", (STORE_ID,)).fetchone()
            hub_balances = {r["sku"]: (r["on_hand"], r["reserved"]) for r in conn.execute(
                "SELECT sku, on_hand, reserved FROM balances WHERE store_id = ?", (STORE_ID,))}
            hub_orders = {r["order_id"]: (r["state"], bool(r["received"])) for r in conn.execute(
                "SELECT order_id, state, received_at IS NOT NULL AS received FROM orders")}
            changes = conn.execute("SELECT coalesce(max(cursor), 0) FROM changes").fetchone()[0]
            event_rows = conn.execute("SELECT coalesce(max(event_row), 0) FROM events").fetchone()[0]
        finally:
            conn.close()
        assert [(r["seq"], r["event_id"], r["status"]) for r in events] == [
            (seq, self.outbox_ids[seq - 1], "applied" if status == "voided" else status)
            for seq, status in enumerate(m.hub.log, start=1)]
        assert next_seq == len(m.hub.log) + 1
        assert bool(uploaded) == m.hub.uploaded
        assert nonzero(hub_balances) == m.hub_balances()
        assert hub_orders == {oid: (o["state"], o["received"]) for oid, o in m.hub.orders.items()}
        assert (changes, event_rows) == (m.hub.changes, m.hub.event_rows)
        assert self.hub_app[HUB].epoch == m.hub.epoch

    # -- the end: heal, drain, and the end-to-end guarantees ---------------------------------------------
    async def _heal_and_check(self) -> None:
        m = self.model
        for _ in range(10):
            assert await self.drive_upload(None) is None
            m.upload(None)
            assert await self.drive_pull(None) is None
            m.pull(None)
            if m.acked == len(m.outbox) and all(key in m.inbox for key, _, _ in m.hub.feed) \
                    and m.edge_epoch == m.hub.epoch:
                break
        else:
            raise AssertionError("sync does not become quiescent")
        assert await self.drive_upload(None) is None        # nothing left: no request, no change
        await self._check_step()

        # each outbox event is held by the hub exactly once, at its seq; rejected there iff a dead letter here
        assert len(m.hub.log) == len(m.outbox)
        rejected = {seq for seq, status in enumerate(m.hub.log, start=1) if status == "rejected"}
        voided = {seq for seq, status in enumerate(m.hub.log, start=1) if status == "voided"}
        assert rejected | voided == set(m.dead) and not rejected & voided, (
            "rejected at the hub but not a dead letter at the edge, or back", sorted((rejected | voided) ^ set(m.dead)))
        assert all(m.dead[seq] is not None for seq in voided)
        # and what the model predicts: only events naming the SKU the chain does not sell, or an order
        # the restored hub no longer knows, are rejected
        for seq in rejected:
            ev = m.outbox[seq - 1]
            assert any(s == UNKNOWN for s, _, _ in ev.moves) or ev.order_id not in m.hub.orders, (seq, ev)

        # the hub's balances are the edge's less the moves of the dead letters; reconciliation agrees
        expected = {sku: list(v) for sku, v in m.bal.items()}
        for seq in m.dead:
            for sku, qty, reason in m.outbox[seq - 1].moves:
                expected[sku][1 if reason in ("reserve", "release") else 0] -= qty
        assert m.hub_balances() == nonzero(expected)
        result = await reconcile(self.edge_app[STORE], self.engine.client)
        assert result["result"] == "match", result

        conn = ro(self.tmp / "hub" / "hub.db")
        try:
            applied = conn.execute("SELECT event_id, payload FROM events WHERE store_id = ? AND status = 'applied'",
                                   (STORE_ID,)).fetchall()
            hub_balances = {r[0]: (r[1], r[2]) for r in conn.execute(
                "SELECT sku, on_hand, reserved FROM balances WHERE store_id = ?", (STORE_ID,))}
            hub_orders = {r[0]: r[1] for r in conn.execute("SELECT order_id, state FROM orders")}
        finally:
            conn.close()
        # no event applied twice, and the hub's copy is the sum of the moves of what it applied
        assert len({r[0] for r in applied}) == len(applied)
        sums: dict[str, list[int]] = {}
        for _, payload in applied:
            for sku, qty, reason in moves_of(json.loads(payload)):
                sums.setdefault(sku, [0, 0])[1 if reason in ("reserve", "release") else 0] += qty
        assert nonzero(hub_balances) == nonzero(sums)

        # both sides agree on every order they both know; the hub knows every order it created here
        for order_id, state in hub_orders.items():
            edge_state = m.orders[order_id]["state"]
            assert state == ("created" if edge_state == "received" else edge_state), (order_id, state, edge_state)
        assert ledger_mismatches(self.config.db_path) == []


SyncMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, derandomize=True, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
TestSyncModel = SyncMachine.TestCase
