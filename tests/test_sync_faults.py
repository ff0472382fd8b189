"""Sync under faults, with real processes on loopback.

Three processes per test, started the way an operator starts them: the reference hub
(`store-edge hub`), the fault-injecting proxy (`store-edge fault-proxy`) in front of it, and the
edge daemon (`store-edge run`) whose `[cloud] url` is the proxy. Tills sell through the daemon's
API, each sale under its own Idempotency-Key (resent with the same key until acknowledged, also
across a daemon restart); the chain creates online orders for the store and cancels some through
the hub's admin API. Some sales name products only the store's own catalog has (LOC-*): the hub
rejects those events for real, so dead letters are part of every run.

Every scenario ends the same way: the faults stop, the tills and the chain stop, and then nothing is
done but waiting (polling with a deadline) for the engine's own timers to settle. Then, every run:

1. the hub holds exactly the events the edge committed: each outbox event took exactly one seq at
   the hub, with the edge's id, type and payload; none missing, none extra, none applied twice;
2. the balances agree: the hub's copy of the store's balances (`/state` checksum and `/balances`
   detail) equals the edge's balances less the moves of its dead letters
   (edge.store.reconciliations.expected_cloud_balances);
3. the queue drained without a new write: depth 0, every event acknowledged;
4. the edge's dead letters are exactly the events the hub rejected, with the hub's reason, and
   every rejection is one the scenario provoked on purpose;
and also: every change of the hub's feed for the store is in the edge's inbox, the edge and the hub
agree on every online order's state, the edge's ledger adds up, and every till sale exists once.

Scenarios (each bounded by its deadlines; the edge runs with timeout_seconds = 1 and
retry_max_seconds = person_retry_seconds = 1):

a. proxy rules drawn with probabilities: drop, error_after_upstream (the hub committed, the edge
   sees 500), stall past the edge's timeout (the hub commits after the edge gave up), answers
   409/422/429/503 without the protocol's body; then the stalled requests that were still held
   arrive late and must change nothing.
b. the edge SIGKILLed at random moments (seeded) while it uploads and pulls, several cycles.
c. the hub stopped, its hub.db replaced by a copy taken earlier in the run (while it was stopped),
   restarted: the high-water file makes it start a new epoch by itself; and the same with the
   high-water file restored too and `--new-epoch`. The edge resends what the hub lost.
d. a full outage (`PUT /_proxy/down`) while tills keep selling offline; after `DELETE`, the queue
   drains by the engine's timer alone: no new write happens at the store until it is empty.
e. something else answers in the cloud's place for a while (a captive portal: 200 with a GBK login
   page); the engine must keep retrying, and carry on when the cloud is back.

In (a) and (d) the store writes nothing between the end of the faults and the empty queue: the
engine's retry timer alone drains it (3.).

SYNC_FAULTS_SEED overrides the seed. Run with -s to see a summary per scenario: faults applied by
the proxy (GET /_proxy/stats), events, dead letters, orders, kills, timings.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import helpers_daemon as helpers
import pytest
from helpers_daemon import Daemon, Service, log_tail, request, wait_for

from edge.core.context import WriteContext
from edge.core.schemas import ReceiptIn
from edge.store import catalog, db, stock
from edge.store.reconciliations import expected_cloud_balances
from protocol.barcodes import gtin_check_digit
from protocol.changes import ProductIn
from protocol.stock import checksum

SEED = int(os.environ.get("SYNC_FAULTS_SEED", "20261122"))
STORE_ID = "fault-store"
ADMIN_TOKEN = "hub-admin-" + "7" * 24
TIMEOUT = 1          # the edge's [cloud] timeout_seconds
STALL = 1.6          # a stall past the edge's timeout: the hub commits after the edge gave up
DEADLINE = 45.0      # for what should settle within a few seconds
SEED_CTX = WriteContext(device="seed", now="2026-01-01T00:00:00.000Z", day="2026-01-01")
OPENING = 100_000
SYNC_PATH = "/sync/v1/stores/"


def _ean13(n: int) -> str:
    body = f"69{n:010d}"
    return body + str(gtin_check_digit(body))


# sku -> (name, price in fen, barcode). CHAIN: in the hub's catalog too; LOCAL: only at the store.
CHAIN = {f"FT-{i:03d}": (f"连锁商品 {i} 号", 100 + 37 * i, _ean13(5_100_000 + i)) for i in range(1, 9)}
LOCAL = {f"LOC-{i:03d}": (f"本店自采 {i} 号", 500 + 11 * i, _ean13(5_200_000 + i)) for i in range(1, 3)}
PRICE = {sku: spec[1] for sku, spec in {**CHAIN, **LOCAL}.items()}
# the hub's answers to the events the tests provoke on purpose
LOCAL_REJECTION = "unknown_sku: LOC-"
LOST_ORDER_REJECTION = "unknown_order: "


class Hub(helpers.Hub):
    def __init__(self, root: Path, db_url: str | None = None):
        super().__init__(root, ADMIN_TOKEN)
        self.store_token = ""
        self.db_args = ("--db-url", db_url) if db_url else ()

    def start(self, *extra: str) -> None:
        super().start(*self.db_args, *extra)

    def sync_get(self, path: str) -> dict:
        """The protocol's side, as the store sees it (straight to the hub, not through the proxy)."""
        status, data, _ = request(self.port, "GET", SYNC_PATH + STORE_ID + path,
                                  headers={"Authorization": f"Bearer {self.store_token}"}, timeout=15)
        assert status == 200, (path, status, data)
        return data


class Proxy(Service):
    name = "proxy"

    def __init__(self, root: Path, upstream_port: int):
        super().__init__(root)
        self.upstream_port = upstream_port
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.spawn(["fault-proxy", "--listen", f"127.0.0.1:{self.port}",
                    "--upstream", f"http://127.0.0.1:{self.upstream_port}", "--seed", str(SEED)])
        self.wait_ready(lambda: self.control("GET", "stats") is not None)

    def control(self, method: str, name: str, body=None) -> dict:
        status, data, _ = request(self.port, method, f"/_proxy/{name}", body, timeout=15)
        assert status == 200, (method, name, status, data)
        return data

    def faults(self, seed: int, rules: list[dict]) -> None:
        self.control("PUT", "faults", {"seed": seed, "rules": rules})

    def clear(self) -> None:
        self.control("DELETE", "faults")


# -- the store ------------------------------------------------------------------------------------

def seed_edge(db_path: Path) -> None:
    """The store's catalog (chain and local products) and its opening stock, before the first start.
    Two receipts: the local one is rejected by the hub (its SKUs are not in the chain catalog)."""
    conn = db.open_store_db(db_path)
    try:
        with db.transaction(conn):
            for sku, (name, price, code) in {**CHAIN, **LOCAL}.items():
                catalog.upsert_product(conn, ProductIn(sku=sku, name=name, price_fen=price, category="测试",
                                                       barcodes=[code]), SEED_CTX.now)
            stock.record_receipt(conn, ReceiptIn.model_validate(
                {"lines": [{"sku": sku, "qty": OPENING} for sku in CHAIN], "supplier": "开业进货"}), SEED_CTX)
            stock.record_receipt(conn, ReceiptIn.model_validate(
                {"lines": [{"sku": sku, "qty": 500} for sku in LOCAL], "supplier": "本地供应商"}), SEED_CTX)
    finally:
        conn.close()


class Rig:
    """Hub, proxy and edge daemon, linked: edge -> proxy -> hub."""

    def __init__(self, root: Path, db_url: str | None = None):
        self.root = root
        self.hub = Hub(root, db_url)
        self.proxy = Proxy(root, self.hub.port)
        self.edge: Daemon | None = None
        self.started = time.monotonic()

    def start(self, batch_size: int = 50, *, edge_config: str = "", store_config: str = "") -> None:
        """`edge_config`: more TOML tables for the edge (members' caps); `store_config`: more [store] keys."""
        self.hub.start()
        store = self.hub.admin_ok("POST", "/stores", {"store_id": STORE_ID, "name": "故障测试门店"})
        self.hub.store_token = store["token"]
        (self.root / "cloud-token").write_text(store["token"] + "\n", encoding="utf-8")
        self.hub.admin_ok("POST", "/products", {"products": [
            {"sku": sku, "name": name, "price_fen": price, "category": "测试", "barcodes": [code]}
            for sku, (name, price, code) in CHAIN.items()]})
        self.proxy.start()
        seed_edge(self.root / "edge" / "store.db")
        cloud = (f'[cloud]\nurl = "{self.proxy.url}"\ntoken = {{ file = "cloud-token" }}\n'
                 f'timeout_seconds = {TIMEOUT}\nreconcile_minutes = 0\nbatch_size = {batch_size}\n'
                 'retry_max_seconds = 1\nperson_retry_seconds = 1\n')
        self.edge = Daemon(self.root / "config.toml", self.root / "edge", self.root / "edge.log",
                           store_id=STORE_ID, extra_config=cloud + edge_config, store_config=store_config)
        self.edge.start()

    def close(self) -> None:
        for service in (self.edge, self.proxy, self.hub):
            if service is not None:
                service.stop_quietly()

    @property
    def db_path(self) -> Path:
        return self.root / "edge" / "store.db"

    def logs(self) -> str:
        return "\n".join((self.edge.log_tail() if self.edge else "", self.proxy.tail(), self.hub.tail()))

    # -- observing ------------------------------------------------------------------------------
    def edge_status(self) -> dict:
        status, body, _ = request(self.edge.port, "GET", "/api/v1/sync/status", timeout=10)
        assert status == 200, body
        return body

    def hub_store(self) -> dict:
        return self.hub.admin_ok("GET", f"/stores/{STORE_ID}")

    def settled(self) -> dict | None:
        """Everything sent and acknowledged, everything pulled, in the hub's current epoch."""
        queue = self.edge_status()["queue"]
        hub = self.hub_store()
        if (queue["depth"] == 0 and queue["acked_seq"] == queue["last_seq"] and queue["epoch"] == hub["epoch"]
                and queue["cursor"] == hub["last_cursor"]):
            return {"edge": queue, "hub": hub}
        return None

    def settle(self, what: str, timeout: float = DEADLINE) -> float:
        """Wait, doing nothing else, until settled; returns how long it took."""
        started = time.monotonic()
        wait_for(self.settled, timeout, what, details=lambda: f"{self._progress()}\n{self.logs()}")
        return time.monotonic() - started

    def _progress(self) -> str:
        try:
            hub = {k: v for k, v in self.hub_store().items() if k != "balances"}
            return f"edge: {self.edge_status()}\nhub: {hub}"
        except Exception as exc:  # noqa: BLE001 (only for a failure message)
            return f"(state unavailable: {exc!r})"


# -- the workload ---------------------------------------------------------------------------------

class Worker:
    """A thread doing something until stopped; whatever it raises fails the test at stop()."""

    def __init__(self):
        self.halt = threading.Event()
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    def spawn(self, target, *args) -> None:
        def run():
            try:
                target(*args)
            except BaseException as exc:  # noqa: BLE001 (reported by stop())
                self.errors.append(exc)
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)

    def stop(self) -> None:
        self.halt.set()
        for thread in self.threads:
            thread.join(DEADLINE * 2)
            assert not thread.is_alive(), f"{type(self).__name__}: a thread did not stop"
        if self.errors:
            raise self.errors[0]


class Tills(Worker):
    """Tills selling through the daemon; each sale under its own Idempotency-Key, resent with that key
    until acknowledged, even across a daemon restart. Now and then staff accept an online order."""

    def __init__(self, rig: Rig, seed: int, tills: int = 2, local_share: float = 0.1):
        super().__init__()
        self.rig = rig
        self.local_share = local_share
        self.acked: dict[str, str] = {}  # key -> sale id
        self.replayed = 0
        self.accepted = 0
        self.lock = threading.Lock()
        for n in range(tills):
            self.spawn(self._till, n, random.Random(seed * 100 + n))

    def _till(self, n: int, rng: random.Random) -> None:
        i = 0
        while not self.halt.is_set():
            i += 1
            self._sell(f"till-{n}-{i}", self._sale(rng))
            if rng.random() < 0.08:
                self._accept_an_order(f"accept-{n}-{i}")
            self.halt.wait(rng.uniform(0.01, 0.04))

    def _sale(self, rng: random.Random) -> dict:
        skus = rng.sample(sorted(CHAIN), rng.randint(1, 3))
        if rng.random() < self.local_share:
            skus.append(rng.choice(sorted(LOCAL)))
        lines = [{"sku": sku, "qty": rng.randint(1, 3)} for sku in skus]
        total = sum(PRICE[line["sku"]] * line["qty"] for line in lines)
        return {"lines": lines, "payments": [{"method": rng.choice(["cash", "wechat", "alipay"]),
                                              "amount_fen": total}]}

    def _sell(self, key: str, body: dict) -> None:
        """Until acknowledged: a till does not give up on a sale the customer already paid."""
        deadline = time.monotonic() + DEADLINE * 2
        while True:
            try:
                status, data, resp = request(self.rig.edge.port, "POST", "/api/v1/sales", body,
                                             headers={"Idempotency-Key": key}, timeout=10)
            except (OSError, http.client.HTTPException):  # the daemon is down or died mid-request
                if time.monotonic() > deadline:
                    raise AssertionError(f"sale {key} was never acknowledged\n{self.rig.edge.log_tail()}")
                time.sleep(0.02)
                continue
            assert status == 201, (key, status, data)
            with self.lock:
                self.acked[key] = data["sale"]["id"]
                self.replayed += resp.getheader("Idempotent-Replayed") == "true"
            return

    def _accept_an_order(self, key: str) -> None:
        try:
            status, data, _ = request(self.rig.edge.port, "GET", "/api/v1/orders?state=received&limit=5",
                                      timeout=10)
            if status != 200 or not data["items"]:
                return
            order_id = data["items"][-1]["id"]
            status, data, _ = request(self.rig.edge.port, "POST", f"/api/v1/orders/{order_id}/state",
                                      {"to": "accepted", "operator": "店员小王"},
                                      headers={"Idempotency-Key": key}, timeout=10)
        except (OSError, http.client.HTTPException):
            return  # the daemon is down: the staff try another time
        assert status in (201, 409), (status, data)  # 409: cancelled by the chain meanwhile
        if status == 201:
            with self.lock:
                self.accepted += 1


class Chain(Worker):
    """The chain's side: online orders for the store, some cancelled, through the hub's admin API."""

    def __init__(self, rig: Rig, seed: int, cancel_share: float = 0.35):
        super().__init__()
        self.rig = rig
        self.cancel_share = cancel_share
        self.created: list[str] = []
        self.cancelled: list[str] = []
        self.refused: Counter = Counter()
        self.unreachable = 0
        self.spawn(self._run, random.Random(seed))

    def _run(self, rng: random.Random) -> None:
        hub = self.rig.hub
        while not self.halt.wait(rng.uniform(0.08, 0.25)):
            open_orders = [o for o in self.created if o not in self.cancelled]
            try:
                if open_orders and rng.random() < self.cancel_share:
                    order_id = rng.choice(open_orders)
                    status, data = hub.admin("POST", f"/orders/{order_id}/cancel", {"reason": "顾客取消"})
                    if status == 200:
                        self.cancelled.append(order_id)
                        continue
                else:
                    lines = [{"sku": sku, "qty": rng.randint(1, 3)} for sku in rng.sample(sorted(CHAIN), 2)]
                    status, data = hub.admin("POST", f"/stores/{STORE_ID}/orders",
                                             {"kind": rng.choice(["pickup", "delivery"]), "lines": lines})
                    if status == 201:
                        self.created.append(data["order_id"])
                        continue
            except (OSError, http.client.HTTPException):  # the hub is stopped (scenario c)
                self.unreachable += 1
                continue
            # out_of_stock while the hub's copy is stale; order_closed / not_found after a restore
            assert status in (404, 409), (status, data)
            self.refused[data["error"]] += 1


# -- the checks -----------------------------------------------------------------------------------

def read_edge(db_path: Path) -> dict:
    """One read-only snapshot of what the checks need from the edge's store.db (the daemon runs)."""
    conn = db.connect(db_path, readonly=True)
    try:
        conn.execute("BEGIN")
        outbox = {r["id"]: {"seq": r["seq"], "type": r["type"], "payload": json.loads(r["payload"])}
                  for r in conn.execute("SELECT seq, id, type, payload FROM outbox")}
        dead = {r["id"]: r["reason"] for r in conn.execute(
            "SELECT o.id, d.reason FROM dead_letters d JOIN outbox o USING (seq) WHERE d.resolution IS NULL")}
        state = dict(conn.execute("SELECT key, value FROM sync_state").fetchall())
        return {"outbox": outbox, "dead": dead, "state": state,
                "expected": expected_cloud_balances(conn),
                "inbox": {r[0] for r in conn.execute("SELECT id FROM inbox")},
                "orders": dict(conn.execute("SELECT id, state FROM orders").fetchall()),
                "sales": conn.execute("SELECT count(*) FROM sales").fetchone()[0],
                "mismatches": stock.verify(conn)[1]}
    finally:
        conn.close()


def hub_events(hub: Hub) -> list[dict]:
    events, after = [], 0
    while True:
        page = hub.admin_ok("GET", f"/stores/{STORE_ID}/events?after_seq={after}&limit=1000")
        events += page["events"]
        if page["next_after_seq"] is None:
            return events
        after = page["next_after_seq"]


def hub_feed(hub: Hub) -> list[str]:
    ids, after = [], 0
    while True:
        page = hub.sync_get(f"/changes?after={after}&limit=1000")
        ids += [c["id"] for c in page["changes"]]
        if not page["more"]:
            return ids
        after = page["next_cursor"]


def first(items, n: int = 5) -> list:
    return sorted(items)[:n]


def verify(rig: Rig, tills: Tills, *, restored: bool = False) -> dict:
    """Checks 1-4 (module docstring) on a settled rig; returns counts for the summary."""
    settled = rig.settled()
    assert settled, f"not settled: {rig._progress()}"
    edge = read_edge(rig.db_path)
    events = hub_events(rig.hub)
    state = rig.hub.sync_get("/state")
    offset = int(edge["state"].get("seq_offset", "0"))
    outbox = edge["outbox"]

    # 1. exactly the events the edge committed, each at one seq, applied at most once
    ids = Counter(e["id"] for e in events)
    assert None not in ids, "the hub holds an event without an id"
    twice = [i for i, n in ids.items() if n > 1]
    assert not twice, f"{len(twice)} events took more than one seq at the hub: {first(twice)}"
    missing, extra = set(outbox) - set(ids), set(ids) - set(outbox)
    assert not missing, f"{len(missing)} events the edge committed are not at the hub: {first(missing)}"
    assert not extra, f"{len(extra)} events at the hub the edge never committed: {first(extra)}"
    applied = Counter(e["id"] for e in events if e["status"] == "applied")
    assert all(n == 1 for n in applied.values())
    for event in events:
        mine = outbox[event["id"]]
        assert (event["seq"], event["type"]) == (mine["seq"] + offset, mine["type"]), (event, mine)
        assert event["payload"] == mine["payload"], f"event {event['id']}: payload differs"
    assert state["next_seq"] == len(outbox) + offset + 1 == max(e["seq"] for e in outbox.values()) + offset + 1
    assert state["epoch"] == settled["edge"]["epoch"]

    # 4. dead letters == rejected at the hub, with its reason; only the rejections provoked on purpose
    rejected = {e["id"]: e["reason"] for e in events if e["status"] == "rejected"}
    assert edge["dead"] == rejected, (f"dead letters at the edge {len(edge['dead'])}, rejected at the hub "
                                      f"{len(rejected)}; differ on {first(set(edge['dead']) ^ set(rejected))}")
    allowed = (LOCAL_REJECTION, LOST_ORDER_REJECTION) if restored else (LOCAL_REJECTION,)
    unexpected = {i: r for i, r in rejected.items() if not r.startswith(allowed)}
    assert not unexpected, f"rejections nobody provoked: {list(unexpected.items())[:3]}"
    for event_id, reason in rejected.items():
        if reason.startswith(LOST_ORDER_REJECTION):  # only orders the restored hub no longer knows
            order_id = outbox[event_id]["payload"]["order_id"]
            assert rig.hub.admin("GET", f"/orders/{order_id}")[0] == 404, (order_id, reason)

    # 2. balances: the hub's copy == the edge's, less the moves of its dead letters
    expected = {sku: v for sku, v in edge["expected"].items() if any(v)}
    cloud = {row["sku"]: (row["on_hand"], row["reserved"]) for row in rig.hub.sync_get("/balances")["balances"]}
    assert cloud == expected, {sku: (expected.get(sku), cloud.get(sku)) for sku in set(cloud) | set(expected)
                               if expected.get(sku) != cloud.get(sku)}
    assert state["balances_checksum"] == checksum(edge["expected"])
    assert edge["mismatches"] == [], edge["mismatches"][:3]

    # 3. drained: nothing unsent, everything acknowledged (settled() checked depth and acked_seq)
    assert settled["edge"]["depth"] == 0 and settled["edge"]["acked_seq"] == len(outbox)

    # downloads: every change of the hub's feed was taken in at the edge
    feed = hub_feed(rig.hub)
    assert set(feed) <= edge["inbox"], f"changes not at the edge: {first(set(feed) - edge['inbox'])}"
    if not restored:
        assert len(feed) == len(edge["inbox"])

    # online orders: the same state on both sides (an order the hub lost was rejected, checked above)
    to_hub = {"received": "created", "accepted": "accepted", "ready": "ready", "cancelled": "cancelled",
              "refunded": "refunded", "picked_up": "picked_up"}
    for order_id, edge_state in edge["orders"].items():
        status, order = rig.hub.admin("GET", f"/orders/{order_id}")
        if status == 404 and restored:
            continue
        assert status == 200, (order_id, status, order)
        assert order["state"] == to_hub[edge_state] and not order["pending"], (order_id, edge_state, order)

    # no failure was hidden behind a retry: neither side hit an internal error
    for path in (rig.hub.log_path, rig.edge.log_path):
        text = path.read_text(encoding="utf-8", errors="replace")
        assert "Traceback" not in text and 'msg="request failed"' not in text, log_tail(path, 60)

    # the tills: every acknowledged sale exists once (Idempotency-Keys across failures)
    assert edge["sales"] == len(tills.acked) == len(set(tills.acked.values()))
    types = Counter(e["type"] for e in outbox.values())
    codes = Counter(reason.split(":", 1)[0] for reason in rejected.values())
    return {"events": len(outbox), "rejected": dict(codes), "sales": edge["sales"],
            "orders": len(edge["orders"]), "changes": len(feed), "types": dict(types),
            "hub_rows": len(events), "checksum": state["balances_checksum"], "next_seq": state["next_seq"]}


def hub_upload_counts(hub: Hub) -> Counter:
    """What the hub's log says it answered to the uploads: applied, duplicate, rejected (summed)."""
    counts: Counter = Counter()
    for line in hub.log_path.read_text(encoding="utf-8").splitlines():
        if 'msg="events uploaded"' in line or 'msg="upload stopped"' in line:
            for key in ("applied", "duplicate", "rejected"):
                counts[key] += int(line.split(f" {key}=", 1)[1].split()[0])
    return counts


def faults_applied(proxy: Proxy) -> dict:
    stats = proxy.control("GET", "stats")
    return {"forwarded": stats["forwarded"], "upstream_errors": stats["upstream_errors"],
            **{k: v for k, v in stats["faults"].items() if v}}


def report(name: str, **parts) -> None:
    print(f"\n[{name}] " + "; ".join(f"{k}={v}" for k, v in parts.items()))


@pytest.fixture
def rig(ram_tmp_path, hub_db):
    """Each scenario with the hub on SQLite and on PostgreSQL (conftest's hub_db); the stores on the RAM disk:
    thousands of commits at the edge and the hub (tests/conftest.py)."""
    rig = Rig(ram_tmp_path, hub_db)
    try:
        yield rig
    finally:
        rig.close()


# -- a. faults drawn with probabilities -----------------------------------------------------------

# every request of the protocol (uploads, pulls, state, the hint WebSocket's handshake) draws; the
# rules are tried in order, so the rarer answers come first
PROBABLE_FAULTS = [
    {"match": SYNC_PATH, "fault": "respond", "status": 409, "probability": 0.05},
    {"match": SYNC_PATH, "fault": "respond", "status": 422, "probability": 0.05},
    {"match": SYNC_PATH, "fault": "respond", "status": 429, "retry_after": 1, "probability": 0.05},
    {"match": SYNC_PATH, "fault": "respond", "status": 503, "retry_after": 1, "probability": 0.05},
    {"match": SYNC_PATH, "fault": "stall", "seconds": STALL, "probability": 0.1},
    {"match": SYNC_PATH, "method": "POST", "fault": "error_after_upstream", "probability": 0.15},
    {"match": SYNC_PATH, "fault": "error_after_upstream", "probability": 0.08},
    {"match": SYNC_PATH, "fault": "drop", "probability": 0.1},
]
# applied once, when the rules are installed: the open hint WebSocket is torn down, so its
# reconnection handshakes go through the faults above too
HINTS_TORN_DOWN = {"match": f"{SYNC_PATH}{STORE_ID}/hints", "fault": "down", "probability": 1, "count": 1}


def rule_label(rule: dict) -> str:
    if rule["fault"] == "down":
        return "down/hints"
    return rule["fault"] + (f"/{rule['status']}" if rule["fault"] == "respond" else "") + \
        (f"/{rule['method']}" if rule.get("method") else "")


def test_random_faults_lose_nothing_and_apply_nothing_twice(rig):
    rig.start(batch_size=10)
    rig.settle("the opening stock uploaded")
    rig.proxy.faults(SEED, [HINTS_TORN_DOWN, *PROBABLE_FAULTS])
    tills, chain = Tills(rig, SEED), Chain(rig, SEED)
    started = time.monotonic()
    # the run lasts at least 6 s, and until every rule was applied at least once
    wait_for(lambda: time.monotonic() - started > 6 and
             all(r["applied"] for r in rig.proxy.control("GET", "faults")["rules"]), DEADLINE,
             "every fault rule applied")
    tills.stop()
    chain.stop()
    # still under faults: the edge takes in what the chain published (its own writes, order.received)
    wait_for(lambda: rig.edge_status()["queue"]["cursor"] == rig.hub_store()["last_cursor"], DEADLINE,
             "the edge to pull every change through the faults", details=rig.logs)
    before = rig.edge_status()["queue"]
    applied = {rule_label(r): r["applied"] for r in rig.proxy.control("GET", "faults")["rules"]}
    rig.proxy.clear()
    cleared = time.monotonic()
    took = rig.settle("the queue drained by itself after the faults stopped")
    assert rig.edge_status()["queue"]["last_seq"] == before["last_seq"], "a write was needed to drain the queue"
    summary = verify(rig, tills)
    # stalled requests still held by the proxy reach the hub late: they must change nothing
    wait_for(lambda: time.monotonic() > cleared + STALL + 1, STALL + 5, "the last stalled request forwarded")
    again = verify(rig, tills)
    assert again == summary
    stats, hub_said = faults_applied(rig.proxy), hub_upload_counts(rig.hub)
    report("a: random faults", faults=stats, by_rule=applied, hub_answers=dict(hub_said),
           run_s=round(cleared - started, 1), unsent_when_cleared=before["last_seq"] - before["acked_seq"],
           settle_s=round(took, 1), **summary,
           orders_created=len(chain.created), cancelled=len(chain.cancelled), refused=dict(chain.refused),
           accepted=tills.accepted, replays=tills.replayed)
    # the hub did see events again whose answer had been lost, and said duplicate
    assert hub_said["duplicate"] > 0
    assert hub_said["applied"] == summary["events"] - sum(summary["rejected"].values())
    assert summary["rejected"] and summary["types"].get("order.received")


# -- b. the edge killed while it uploads and pulls ------------------------------------------------

KILL_CYCLES = 4  # then a last kill; in every run seen, each kill found events unsent and changes to pull


def test_edge_killed_while_syncing_resends_and_converges(rig):
    rng = random.Random(SEED + 2)
    rig.start(batch_size=10)
    rig.settle("the opening stock uploaded")
    # posts are held a little (less than the edge's timeout) before the hub gets them: a kill often
    # lands while the hub is committing a batch whose answer the edge will never read
    rig.proxy.faults(SEED + 2, [{"match": SYNC_PATH, "method": "POST", "fault": "stall", "seconds": 0.3,
                                 "probability": 0.5}])
    tills, chain = Tills(rig, SEED + 2), Chain(rig, SEED + 2)
    kills = []
    wait_for(lambda: len(tills.acked) >= 20, DEADLINE, "the first sales")
    for cycle in range(KILL_CYCLES):
        rig.edge.kill()
        # while the edge is dead: more to pull at its restart, catalog changes over several pages
        rig.hub.admin_ok("POST", "/products", {"store_id": STORE_ID, "products": [
            {"sku": f"BURST-{i:04d}", "name": f"批量商品 {i} 号 第 {cycle} 版", "price_fen": 100 + cycle + i}
            for i in range(2500)]})
        rig.edge.start()
        time.sleep(rng.uniform(0.0, 0.3))  # the kill moment (seeded), not a wait for anything
        before = rig.edge_status()["queue"]
        hub = rig.hub_store()
        kills.append({"unsent": before["last_seq"] - before["acked_seq"],
                      "to_pull": hub["last_cursor"] - before["cursor"]})
    rig.edge.kill()
    rig.edge.start()
    tills.stop()
    chain.stop()
    rig.proxy.clear()
    took = rig.settle("the edge converged after its last restart")
    summary = verify(rig, tills)
    hub_said = hub_upload_counts(rig.hub)
    report("b: SIGKILL", kills=len(kills) + 1, with_unsent=sum(1 for k in kills if k["unsent"] > 0),
           with_changes_to_pull=sum(1 for k in kills if k["to_pull"] > 0), kill_states=kills,
           faults=faults_applied(rig.proxy), hub_answers=dict(hub_said), settle_s=round(took, 1), **summary,
           replays=tills.replayed, orders_created=len(chain.created), cancelled=len(chain.cancelled))
    assert sum(1 for k in kills if k["unsent"] > 0) >= 1 and sum(1 for k in kills if k["to_pull"] > 0) >= 1


# -- c. the hub restored from an older copy -------------------------------------------------------

HUB_FILES = ("hub.db", "hub.db-wal", "hub.db-shm")


def hub_event_count(path: Path) -> int:
    """Events of the store in a stopped hub's database file (read as an immutable file)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        return conn.execute("SELECT count(*) FROM events WHERE store_id = ?", (STORE_ID,)).fetchone()[0]
    finally:
        conn.close()


def copy_hub_files(src: Path, dst: Path, names) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (dst / name).exists():
            (dst / name).unlink()
        if (src / name).exists():
            shutil.copy2(src / name, dst / name)


@pytest.mark.sqlite_only("hub.db restored from a copy; PostgreSQL is restored with its own tools")
@pytest.mark.parametrize("how", ["high-water", "new-epoch"])
def test_hub_restored_from_an_older_copy_gets_what_it_lost(rig, how):
    rig.start(batch_size=50)
    rig.settle("the opening stock uploaded")
    seed = SEED + (3 if how == "high-water" else 4)
    tills, chain = Tills(rig, seed), Chain(rig, seed)
    wait_for(lambda: len(chain.created) >= 3 and len(tills.acked) >= 30, DEADLINE, "a first stretch of sales")

    # the backup: taken while the hub is stopped, so its files are consistent
    backup = rig.root / "hub-backup"
    rig.hub.stop()
    copy_hub_files(rig.hub.data, backup, (*HUB_FILES, "hub.highwater"))
    rig.hub.start()
    epoch_before = rig.hub_store()["epoch"]
    at_backup = hub_event_count(backup / "hub.db")
    wait_for(lambda: len(chain.created) >= 8 and len(hub_events(rig.hub)) >= at_backup + 40, DEADLINE,
             "sales and orders after the backup reached the hub")

    # the restore: the older copy replaces the database; tills and the chain carry on meanwhile
    rig.hub.stop()
    before_restore = hub_event_count(rig.hub.data / "hub.db")
    assert before_restore >= at_backup + 40
    if how == "high-water":  # the hub.highwater file stays: the hub must notice by itself
        copy_hub_files(backup, rig.hub.data, HUB_FILES)
        rig.hub.start()
        why = "high-water mark"
    else:  # restored with its high-water file: only --new-epoch tells the hub
        copy_hub_files(backup, rig.hub.data, (*HUB_FILES, "hub.highwater"))
        rig.hub.start("--new-epoch")
        why = "--new-epoch"
    epoch_after = rig.hub_store()["epoch"]
    assert epoch_after != epoch_before
    new_epoch_lines = [line for line in rig.hub.log_path.read_text(encoding="utf-8").splitlines()
                       if 'msg="new epoch"' in line]
    assert why in new_epoch_lines[-1], new_epoch_lines[-1]
    restored_at = len(tills.acked)
    wait_for(lambda: len(tills.acked) >= restored_at + 30, DEADLINE, "more sales after the restore")
    tills.stop()
    chain.stop()
    took = rig.settle("the edge resent what the restored hub lost")
    assert "cloud epoch changed" in rig.edge.log_path.read_text(encoding="utf-8")
    summary = verify(rig, tills, restored=True)
    report(f"c: restore ({how})", hub_events_in_backup=at_backup, hub_events_lost=before_restore - at_backup,
           settle_s=round(took, 1), **summary, orders_created=len(chain.created), cancelled=len(chain.cancelled),
           refused=dict(chain.refused), hub_unreachable=chain.unreachable)


# -- d. a full outage -----------------------------------------------------------------------------

def test_outage_then_the_queue_drains_by_itself(rig):
    rig.start(batch_size=200)
    tills, chain = Tills(rig, SEED + 5), Chain(rig, SEED + 5)
    wait_for(lambda: len(chain.created) >= 4, DEADLINE, "online orders before the outage")
    chain.stop()
    rig.settle("everything synced before the outage")

    rig.proxy.control("PUT", "down")
    wait_for(lambda: rig.edge_status()["link"]["state"] == "offline", DEADLINE, "the edge to see the link down")
    outage = time.monotonic()
    wait_for(lambda: time.monotonic() - outage > 4 and rig.edge_status()["queue"]["depth"] >= 50, DEADLINE,
             "sales piling up offline")
    tills.stop()
    before = rig.edge_status()["queue"]
    assert rig.edge_status()["link"]["state"] == "offline"

    rig.proxy.control("DELETE", "down")
    took = rig.settle("the queue drained by the engine's timer alone")
    after = rig.edge_status()
    assert after["queue"]["last_seq"] == before["last_seq"], "something was written while draining"
    assert after["link"]["state"] == "online"
    summary = verify(rig, tills)
    report("d: outage", queued_offline=before["depth"], drained_s=round(took, 1),
           faults=faults_applied(rig.proxy), **summary)


# -- e. something else answers in the cloud's place -----------------------------------------------

# A captive portal or a broken middlebox on the store's line: it answers every request itself, 200
# with a login page in GBK (not UTF-8, not JSON). The engine must take it for "not the cloud yet".
PORTAL = r'''
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGE = "<html><head><title>上网认证</title></head><body>请先登录后再访问网络</body></html>".encode("gbk")

class Portal(BaseHTTPRequestHandler):
    def answer(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)
        print(self.command, self.path.split("?")[0], flush=True)

    do_GET = do_POST = do_PUT = do_DELETE = answer

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Portal).serve_forever()
'''


def test_a_portal_answering_in_the_clouds_place_does_not_stop_the_sync(rig):
    rig.start(batch_size=50)
    rig.settle("the opening stock uploaded")
    tills = Tills(rig, SEED + 6)
    wait_for(lambda: len(tills.acked) >= 20, DEADLINE, "the first sales")
    rig.hub.stop()
    portal_log = rig.root / "portal.log"
    with open(portal_log, "w", encoding="utf-8") as out:
        portal = subprocess.Popen([sys.executable, "-c", PORTAL, str(rig.hub.port)],
                                  stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        def portal_served():  # the uploader read the page, backed off, and tried again, more than once
            served = portal_log.read_text(encoding="utf-8").splitlines()
            return served if sum(line == f"POST {SYNC_PATH}{STORE_ID}/events" for line in served) >= 3 else None
        served = wait_for(portal_served, 15, "the edge to keep trying to upload through the portal",
                          details=lambda: f"{log_tail(portal_log)}\n{rig.edge.log_tail()}")
    finally:
        portal.terminate()
        portal.wait(30)
    rig.hub.start()
    tills.stop()
    took = rig.settle("the sync to carry on once the cloud answers again")
    summary = verify(rig, tills)
    report("e: portal", portal_answers=dict(Counter(line.rsplit("/", 1)[-1] for line in served)),
           settle_s=round(took, 1), **summary)
