"""Crash safety, proven with real processes: the daemon (`store-edge run`) is killed while tills
send sales to it, and the store it leaves behind is inspected.

1. SIGKILL mid-sale leaves each sale whole or absent: lines, stock moves, payments, the outbox
   event and the idempotency record all commit together; `store-edge ledger verify` passes after
   every kill; a sale that was acknowledged (201) to a till is durable.
2. Idempotency keys hold across restarts: every key sent before a kill is sent again after the
   restart; an acknowledged key replays its sale (Idempotent-Replayed: true, no new row), a key whose
   outcome the till never learned ends with exactly one sale, whether it had committed or not.
3. A SIGTERM (systemd's stop) with sales in flight exits 0, within the unit's TimeoutStopSec=, and
   loses no acknowledged sale.

Every SIGKILL is preceded by a SIGSTOP, so the test can see (in /proc/locks) whether SQLite's write
lock was held, i.e. whether the kill landed inside a write transaction; every other round aims for
that by looking again a few milliseconds later until it is. Kill moments are drawn from a seeded
random generator (CRASH_TEST_SEED overrides the seed), so the schedule is reproducible; where the
kill lands within a request depends on the machine. Run with `-s` to see how many kills caught
requests in flight and how many caught a write transaction open.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import sqlite3
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers_daemon import Daemon, holds_write_lock, request, run_cli

from edge.core.context import WriteContext
from edge.core.schemas import ReceiptIn
from edge.store import catalog, db, stock
from protocol.barcodes import gtin_check_digit
from protocol.changes import ProductIn

SEED = int(os.environ.get("CRASH_TEST_SEED", "20261121"))
KILL_ROUNDS = 6           # SIGKILLs in test 1/2: half of them aimed inside a write transaction
TERM_ROUNDS = 3           # SIGTERMs in test 3
CLIENTS = 12              # concurrent tills; many, so that kills land inside requests
KILL_DELAY = (0.0, 0.35)  # seconds after the round's first acknowledged sale
AIM_TRIES = 25            # aimed kills: freeze/look/thaw until a write transaction is open
DEADLINE = 60.0           # for anything that should take well under a second
# A SIGTERM stop must end before systemd gives up on it and sends SIGKILL (the unit's TimeoutStopSec=).
UNIT = Path(__file__).resolve().parent.parent / "systemd" / "store-edge.service"
STOP_LIMIT = float(re.search(r"^TimeoutStopSec=(\d+)s?\s*$", UNIT.read_text(encoding="utf-8"), re.M).group(1))

SEED_CTX = WriteContext(device="seed", now="2026-01-01T00:00:00.000Z", day="2026-01-01")
OPENING = 500_000


def _ean13(n: int) -> str:
    body = f"69{n:010d}"
    return body + str(gtin_check_digit(body))


# sku -> (name, price in fen, barcode)
PRODUCTS = {f"CR-{i:03d}": (f"测试商品 {i} 号", 150 + 137 * i, _ean13(4_200_000 + i)) for i in range(1, 13)}
SKU_OF_BARCODE = {code: sku for sku, (_, _, code) in PRODUCTS.items()}


# -- the store on disk --------------------------------------------------------------------------

def seed_store(db_path: Path) -> None:
    conn = db.open_store_db(db_path)
    try:
        with db.transaction(conn):
            for sku, (name, price, code) in PRODUCTS.items():
                catalog.upsert_product(conn, ProductIn(sku=sku, name=name, price_fen=price, category="测试",
                                                       barcodes=[code]), SEED_CTX.now)
            stock.record_receipt(conn, ReceiptIn.model_validate(
                {"lines": [{"sku": sku, "qty": OPENING} for sku in PRODUCTS], "supplier": "开业进货"}), SEED_CTX)
    finally:
        conn.close()


def make_sale(rng: random.Random) -> dict:
    """A sale of 3-5 lines, some named by barcode, some discounted, paid exactly or with change."""
    lines, total = [], 0
    for sku in rng.sample(sorted(PRODUCTS), rng.randint(3, 5)):
        _, price, code = PRODUCTS[sku]
        qty = rng.randint(1, 4)
        line = {"barcode": code} if rng.random() < 0.4 else {"sku": sku}
        line["qty"] = qty
        amount = price * qty
        if rng.random() < 0.2:
            line["discount_fen"] = rng.randint(1, amount // 4)
            amount -= line["discount_fen"]
        lines.append(line)
        total += amount
    sale = {"lines": lines, "cashier": rng.choice(["张伟", "李娜", "王芳"])}
    if rng.random() < 0.2:
        sale["discount_fen"] = rng.randint(1, total // 10)
        total -= sale["discount_fen"]
    if rng.random() < 0.5:
        sale["payments"] = [{"method": "cash", "amount_fen": total + rng.choice([0, 50, 1000])}]
    else:
        card = rng.randint(1, total - 1)
        sale["payments"] = [{"method": rng.choice(["wechat", "alipay"]), "amount_fen": card},
                            {"method": "cash", "amount_fen": total - card}]
    return sale


def expected_lines(body: dict) -> list[tuple[str, int]]:
    return [(line.get("sku") or SKU_OF_BARCODE[line["barcode"]], line["qty"]) for line in body["lines"]]


def check_store(db_path: Path, bodies: dict[str, dict], acked: dict[str, str], where: str) -> int:
    """Every sale whole, nothing orphaned, every acknowledged key durable; returns the sale count."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)  # read-only: the daemon does recovery
    try:
        conn.execute("BEGIN")  # one snapshot for every query below
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)], where

        sales = dict(conn.execute("SELECT id, number FROM sales"))
        lines: dict[str, list] = {}
        for sale_id, sku, qty in conn.execute("SELECT sale_id, sku, qty FROM sale_lines ORDER BY sale_id, line_no"):
            lines.setdefault(sale_id, []).append((sku, qty))
        moves: dict[str, Counter] = {}
        for ref_id, sku, qty, reason in conn.execute(
                "SELECT ref_id, sku, qty, reason FROM stock_moves WHERE ref_type = 'sale'"):
            assert reason == "sale" and qty < 0, (where, ref_id, reason, qty)
            moves.setdefault(ref_id, Counter())[sku] += -qty
        payments: dict[str, list] = {}
        for sale_id, method, amount in conn.execute(
                "SELECT sale_id, method, amount_fen FROM sale_payments ORDER BY sale_id, seq"):
            payments.setdefault(sale_id, []).append({"method": method, "amount_fen": amount})
        events: Counter = Counter()
        event_lines: dict[str, int] = {}
        for (payload,) in conn.execute("SELECT payload FROM outbox WHERE type = 'sale.recorded'"):
            sale = json.loads(payload)
            events[sale["id"]] += 1
            event_lines[sale["id"]] = len(sale["lines"])
        other_events = Counter(t for (t,) in conn.execute("SELECT type FROM outbox WHERE type <> 'sale.recorded'"))
        keys: dict[str, str] = {}
        sale_keys: Counter = Counter()
        for device, key, status, response in conn.execute(
                "SELECT device, key, status, response FROM idempotency_keys"):
            sale_id = json.loads(response)["sale"]["id"]
            assert (device, status) == ("local", 201), (where, key)
            keys[key] = sale_id
            sale_keys[sale_id] += 1
        other_moves = conn.execute("SELECT count(*) FROM stock_moves WHERE ref_type <> 'sale'").fetchone()[0]
        balances = dict(conn.execute("SELECT sku, on_hand FROM stock_balances"))
        sold = dict(conn.execute("SELECT sku, sum(qty) FROM sale_lines GROUP BY sku"))
    finally:
        conn.close()

    ids = set(sales)
    # no orphans: nothing belongs to a sale that does not exist
    for name, owners in (("sale_lines", lines), ("stock_moves", moves), ("sale_payments", payments),
                         ("outbox", events), ("idempotency_keys", sale_keys)):
        orphans = set(owners) - ids
        assert not orphans, f"{where}: {name} rows for sales that do not exist: {sorted(orphans)[:5]}"
    # a rolled-back sale takes its number with it: numbers stay 1..n
    assert sorted(sales.values()) == list(range(1, len(sales) + 1)), f"{where}: gaps in sale numbers"
    # each sale whole
    key_of = {sale_id: key for key, sale_id in keys.items()}
    for sale_id in ids:
        got = lines.get(sale_id, [])
        assert 3 <= len(got) <= 5, f"{where}: sale {sale_id} has {len(got)} lines"
        want_moves = Counter()
        for sku, qty in got:
            want_moves[sku] += qty
        assert moves.get(sale_id) == want_moves, f"{where}: sale {sale_id}: lines {got}, moves {moves.get(sale_id)}"
        assert payments.get(sale_id), f"{where}: sale {sale_id} has no payments"
        assert events[sale_id] == 1, f"{where}: sale {sale_id} has {events[sale_id]} sale.recorded events"
        assert event_lines[sale_id] == len(got), f"{where}: sale {sale_id}: the event's lines differ"
        assert sale_keys[sale_id] == 1, f"{where}: sale {sale_id} is the answer of {sale_keys[sale_id]} keys"
        body = bodies[key_of[sale_id]]  # every sale here was sent by this test, under a known key
        assert got == expected_lines(body), f"{where}: sale {sale_id} is not what key {key_of[sale_id]} sent"
        assert payments[sale_id] == body["payments"], f"{where}: sale {sale_id}: payments differ"
    # acknowledged = durable
    lost = {k: v for k, v in acked.items() if keys.get(k) != v}
    assert not lost, f"{where}: {len(lost)} acknowledged sales are missing or changed: {sorted(lost)[:5]}"
    # the ledger as a whole: only the opening receipt and these sales ever moved stock
    assert other_moves == len(PRODUCTS) and other_events == Counter({"stock.received": 1}), where
    assert balances == {sku: OPENING - sold.get(sku, 0) for sku in PRODUCTS}, f"{where}: balances"
    return len(sales)


def ledger_verify(config: Path, daemon: Daemon, where: str) -> None:
    result = run_cli("ledger", "verify", config=config)
    assert result.returncode == 0 and "ledger verify OK" in result.stdout, \
        f"{where}: ledger verify exit {result.returncode}\n{result.stdout}{result.stderr}\n{daemon.log_tail()}"


# -- tills --------------------------------------------------------------------------------------

@dataclass
class Attempt:
    key: str
    body: dict
    outcome: str = "pending"   # acked | refused | send_failed | no_response | rejected
    sale_id: str | None = None
    detail: str = ""


@dataclass
class Round:
    """Tills sending sales until the daemon goes away (or `stop` is set between two sales)."""

    port: int
    label: str
    attempts: list[Attempt] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    first_ack: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for no in range(CLIENTS):
            thread = threading.Thread(target=self._till, args=(no,), name=f"till-{self.label}-{no}", daemon=True)
            self.threads.append(thread)
            thread.start()

    def join(self) -> None:
        deadline = time.monotonic() + DEADLINE
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self.threads), f"{self.label}: tills still waiting after the stop"

    def _till(self, no: int) -> None:
        rng = random.Random(f"{SEED}-{self.label}-{no}")
        n = 0
        while not self.stop.is_set():
            attempt = Attempt(f"{self.label}-till{no}-{n}", make_sale(rng))
            n += 1
            self.attempts.append(attempt)  # recorded before it is sent: its outcome may stay unknown
            if not self._send(attempt):
                return  # the daemon is going away: this till stops

    def _send(self, attempt: Attempt) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=DEADLINE)
        try:
            try:
                conn.connect()
            except OSError as exc:
                attempt.outcome, attempt.detail = "refused", repr(exc)
                return False
            try:
                conn.request("POST", "/api/v1/sales", body=json.dumps(attempt.body, ensure_ascii=False).encode(),
                             headers={"Content-Type": "application/json", "Idempotency-Key": attempt.key})
            except (OSError, http.client.HTTPException) as exc:
                attempt.outcome, attempt.detail = "send_failed", repr(exc)
                return False
            try:
                resp = conn.getresponse()
                raw = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                attempt.outcome, attempt.detail = "no_response", repr(exc)
                return False
            if resp.status != 201 or resp.getheader("Idempotent-Replayed") != "false":
                attempt.outcome = "rejected"
                attempt.detail = f"{resp.status} {resp.getheader('Idempotent-Replayed')} {raw[:300]!r}"
                return False
            attempt.sale_id = json.loads(raw)["sale"]["id"]
            attempt.outcome = "acked"
            self.first_ack.set()
            return True
        finally:
            conn.close()


def resend(port: int, attempts: list[Attempt], acked: dict[str, str], where: str) -> tuple[int, int]:
    """Send every attempt again with its key and body; returns (new sales, unknown keys found committed)."""
    def one(attempt: Attempt):
        status, body, resp = request(port, "POST", "/api/v1/sales", attempt.body,
                                     {"Idempotency-Key": attempt.key}, timeout=DEADLINE)
        return attempt, status, body, resp.getheader("Idempotent-Replayed")

    new = committed_unacked = 0
    with ThreadPoolExecutor(8) as pool:
        for attempt, status, body, replayed in pool.map(one, attempts):
            assert status == 201 and replayed in ("true", "false"), f"{where}: {attempt.key}: {status} {body}"
            sale_id = body["sale"]["id"]
            if attempt.key in acked:
                assert (sale_id, replayed) == (acked[attempt.key], "true"), \
                    f"{where}: acknowledged key {attempt.key} answered {sale_id} (replayed {replayed}), " \
                    f"not its sale {acked[attempt.key]}"
            else:
                acked[attempt.key] = sale_id
                if replayed == "true":
                    committed_unacked += 1  # it had committed; the kill took only the answer
                else:
                    new += 1
    return new, committed_unacked


# -- the tests ----------------------------------------------------------------------------------

@pytest.fixture
def store(ram_tmp_path):
    """On the RAM disk: on a disk every sale would be an fsync (tests/conftest.py, ram_tmp_path)."""
    data_dir = ram_tmp_path / "data"
    seed_store(data_dir / "store.db")
    daemon = Daemon(ram_tmp_path / "config.toml", data_dir, ram_tmp_path / "daemon.log")
    try:
        yield daemon
    finally:
        daemon.stop_quietly()


def freeze_for_kill(daemon: Daemon, rng: random.Random, tries: int) -> tuple[bool | None, int]:
    """Freeze the daemon (SIGSTOP) and look whether its writer is inside a transaction. With tries > 1,
    thaw and look again a moment later until it is, so the kill lands mid-transaction. Returns
    (inside a write transaction, or None if it cannot be seen; freezes used). The daemon stays frozen."""
    db_path = daemon.data_dir / "store.db"
    for attempt in range(1, tries + 1):
        if not daemon.freeze():
            return None, attempt
        held = holds_write_lock(db_path)
        if held is not False or attempt == tries:
            return held, attempt
        daemon.thaw()
        time.sleep(rng.uniform(0, 0.004))  # the next randomized look
    raise AssertionError("unreachable")


def load_then_stop(daemon: Daemon, label: str, rng: random.Random, graceful: bool, aim: bool = False,
                   stats: Counter | None = None) -> Round:
    """Tills send sales; once one is acknowledged, wait a random moment and kill (or SIGTERM)."""
    stats = Counter() if stats is None else stats
    rnd = Round(daemon.port, label)
    rnd.start()
    try:
        deadline = time.monotonic() + DEADLINE
        while not rnd.first_ack.wait(0.05):  # the event, or a sign that it cannot come
            assert time.monotonic() < deadline and any(t.is_alive() for t in rnd.threads), \
                f"{label}: no sale acknowledged: {Counter(a.outcome for a in rnd.attempts)}\n{daemon.log_tail()}"
        time.sleep(rng.uniform(*KILL_DELAY))  # the randomized kill moment: the point of the test
        if graceful:
            started = time.monotonic()
            status = daemon.terminate(STOP_LIMIT)  # tills keep sending until the daemon refuses them
            assert status == 0, f"{label}: SIGTERM exit status {status}\n{daemon.log_tail()}"
            stats["slowest_stop_ms"] = max(stats["slowest_stop_ms"], int((time.monotonic() - started) * 1000))
        else:
            # SIGSTOP first: the kill then lands exactly where the freeze did, and we can tell whether
            # the writer was inside a transaction (SQLite's write lock held) at that moment
            inside, freezes = freeze_for_kill(daemon, rng, AIM_TRIES if aim else 1)
            rnd.stop.set()  # no new sales after the kill; those in flight (frozen) are caught by it
            status = daemon.kill()
            stats["freezes"] += freezes
            stats[{True: "kills_inside_write_tx", False: "kills_outside_write_tx",
                   None: "kills_tx_unknown"}[inside]] += 1
            assert status == -9, f"{label}: the daemon exited ({status}) before it was killed\n{daemon.log_tail()}"
    finally:
        rnd.stop.set()
        if daemon.proc.poll() is None:
            daemon.kill()
        rnd.join()
    rejected = [a for a in rnd.attempts if a.outcome == "rejected"]
    assert not rejected, f"{label}: sales refused: {[(a.key, a.detail) for a in rejected[:5]]}"
    return rnd


def run_rounds(daemon: Daemon, rounds: int, graceful: bool, name: str) -> dict:
    """The loop shared by both tests: restart, resend the previous round's keys, load, stop, check."""
    rng = random.Random(f"{SEED}-{name}")
    config, db_path = daemon.config_path, daemon.data_dir / "store.db"
    bodies: dict[str, dict] = {}
    acked: dict[str, str] = {}
    previous: list[Attempt] = []
    stats = Counter()
    for number in range(rounds + 1):
        where = f"{name} round {number} (seed {SEED})"
        daemon.start(ready_timeout=DEADLINE)

        if previous:  # idempotency across the restart
            before = check_store(db_path, bodies, acked, where + " after restart")
            new, committed_unacked = resend(daemon.port, previous, acked, where)
            after = check_store(db_path, bodies, acked, where + " after resending")
            assert after == before + new, f"{where}: {after - before} sales appeared for {new} new keys"
            stats["resent"] += len(previous)
            stats["unknown_committed"] += committed_unacked
            stats["unknown_not_committed"] += new
        if number == rounds:
            break

        rnd = load_then_stop(daemon, f"{name}{number}", rng, graceful, aim=number % 2 == 1, stats=stats)
        outcomes = Counter(a.outcome for a in rnd.attempts)
        stats.update(outcomes)
        in_flight = outcomes["send_failed"] + outcomes["no_response"]
        stats["stops_with_requests_in_flight"] += in_flight > 0
        stats["stops"] += 1
        for attempt in rnd.attempts:
            bodies[attempt.key] = attempt.body
            if attempt.outcome == "acked":
                acked[attempt.key] = attempt.sale_id

        ledger_verify(config, daemon, where)
        check_store(db_path, bodies, acked, where + " after the " + ("SIGTERM" if graceful else "kill"))
        previous = rnd.attempts

    # every key ever sent has now been answered: one sale per key, none lost, none doubled
    total = check_store(db_path, bodies, acked, f"{name} at the end")
    assert set(acked) == set(bodies) and total == len(acked) == len(set(acked.values())), \
        f"{name}: {total} sales for {len(acked)} acknowledged keys ({len(bodies)} sent)"
    assert daemon.terminate(STOP_LIMIT) == 0, daemon.log_tail()
    ledger_verify(config, daemon, f"{name} after the final stop")
    stats["sales"] = total
    print(f"\n{name} (seed {SEED}): {dict(sorted(stats.items()))}")
    return stats


def test_sigkill_mid_sale_leaves_whole_sales_and_keys_survive_restarts(store):
    stats = run_rounds(store, KILL_ROUNDS, graceful=False, name="kill")
    assert stats["stops"] == KILL_ROUNDS and stats["acked"] > 0 and stats["sales"] > 0
    # what the rounds are for: kills that caught a write transaction open and requests in flight
    assert stats["kills_inside_write_tx"] >= 1 or stats["kills_tx_unknown"] == KILL_ROUNDS, stats
    assert stats["stops_with_requests_in_flight"] >= 1, stats


def test_sigterm_with_sales_in_flight_loses_no_acknowledged_sale(store):
    stats = run_rounds(store, TERM_ROUNDS, graceful=True, name="term")
    assert stats["stops"] == TERM_ROUNDS and stats["acked"] > 0
