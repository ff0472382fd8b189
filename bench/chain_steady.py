"""The chain benchmark's steady traffic: stores that keep their hint WebSocket open and upload a few
events every few seconds, and the admin's online orders, each timed from the admin's POST until the
store it is for hears the hint and until the page that store then pulls holds the order.

Samples carry the perf_counter time they started at, so the report can split them by phase."""

from __future__ import annotations

import asyncio
import random
import time

import aiohttp

from bench.chain_storm import BATCH, SKU, TIMEOUT, envelope
from sync import engine as engine_mod
from sync.client import retry_after


class Steady:
    """What the steady stores measured."""

    def __init__(self):
        self.acks: list[tuple[float, int]] = []        # (when, events the hub confirmed)
        self.uploads: list[tuple[float, float]] = []   # (started, ms until the answer)
        self.late: list[tuple[float, float]] = []      # (started, ms after its scheduled time)
        self.refused = self.failed = self.sockets_lost = self.pull_failed = 0


class Order:
    __slots__ = ("store", "started", "cursor", "answered", "hinted", "pulled", "status")

    def __init__(self, store: "SteadyStore", started: float):
        self.store, self.started = store, started
        self.cursor = self.answered = self.hinted = self.pulled = self.status = None


class OrderBook:
    """Online orders in flight and when their store heard of them (the hint may come before the
    admin's answer, which says the order's cursor: the store keeps the hints it heard)."""

    def __init__(self):
        self.orders: dict[str, Order] = {}

    def start(self, order_id: str, store: "SteadyStore") -> Order:
        order = self.orders[order_id] = Order(store, time.perf_counter())
        store.waiting.append(order)
        return order

    def answered(self, order: Order, status: int, cursor: int | None) -> None:
        order.answered, order.status, order.cursor = time.perf_counter(), status, cursor
        if cursor is None:
            order.store.waiting.remove(order)
            return
        heard = [at for at, hinted in order.store.hints if at >= order.started and hinted >= cursor]
        if heard:
            self._hinted(order, min(heard))

    def hinted(self, store: "SteadyStore", at: float, cursor: int) -> None:
        for order in list(store.waiting):
            if order.cursor is not None and cursor >= order.cursor:
                self._hinted(order, at)

    @staticmethod
    def _hinted(order: Order, at: float) -> None:
        order.hinted = at
        order.store.waiting.remove(order)

    async def heard(self, timeout: float) -> None:
        """Until every order created was hinted and pulled (or `timeout`): the last ones' hints may come
        after the admin's answer, and the run must not close the sockets before them."""
        end = time.perf_counter() + timeout
        while time.perf_counter() < end and any(order.status == 201 and not (order.hinted and order.pulled)
                                                for order in self.orders.values()):
            await asyncio.sleep(0.05)

    def pulled(self, order_id: str, at: float) -> None:
        order = self.orders.get(order_id)
        if order is not None and order.pulled is None:
            order.pulled = at


class SteadyStore:
    def __init__(self, store: str, index: int, token: str, url: str, session: aiohttp.ClientSession,
                 stats: Steady, book: OrderBook):
        self.store, self.index, self.session, self.stats, self.book = store, index, session, stats, book
        self.base = f"{url}/sync/v1/stores/{store}"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.cursor: int | None = None
        self.hello = asyncio.Event()
        self.hints: list[tuple[float, int]] = []
        self.waiting: list[Order] = []
        self.next_seq = 2          # seq 1 stocked the store before the run
        self._pull: asyncio.Task | None = None
        self._again = False

    async def listen(self) -> None:
        """The hint socket, as sync/client.py's hints() opens it, for the whole run."""
        try:
            async with self.session.ws_connect(self.base + "/hints", headers=self.headers, heartbeat=20.0) as ws:
                async for message in ws:
                    if message.type != aiohttp.WSMsgType.TEXT:
                        break
                    at, data = time.perf_counter(), message.json()
                    if self.cursor is None:
                        self.cursor = data["cursor"]
                        self.hello.set()
                        continue
                    self.hints.append((at, data["cursor"]))
                    self.book.hinted(self, at, data["cursor"])
                    self.pull_soon()
        except aiohttp.ClientError:
            pass
        self.stats.sockets_lost += 1   # cancelled at the end never gets here

    def pull_soon(self) -> None:
        if self._pull is not None and not self._pull.done():
            self._again = True     # a hint during a pull: pull again after it, as the daemon does
        else:
            self._pull = asyncio.create_task(self.pull())

    async def pull(self) -> None:
        while True:
            self._again = False
            try:
                async with self.session.get(self.base + "/changes", headers=self.headers,
                                            params={"after": str(self.cursor), "limit": "500"}) as resp:
                    body = await resp.json(content_type=None)
                    if resp.status != 200:
                        raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status)
            except (aiohttp.ClientError, asyncio.TimeoutError):
                self.stats.pull_failed += 1
                return
            at = time.perf_counter()
            for change in body["changes"]:
                if change["type"] == "order.created":
                    self.book.pulled(change["payload"]["order_id"], at)
            self.cursor = body["next_cursor"]
            if not (body["more"] or self._again):
                return

    async def upload(self, rate: float, every: float, started: float, stop: asyncio.Event,
                     rng: random.Random) -> None:
        """Upload what the store's tills made since the last upload (`rate` events a second), every
        `every` seconds on average (jittered); a slow answer leaves more for the next, as in a store."""
        timing, attempt = engine_mod.Timing(), 0
        due = started + rng.uniform(0, every)
        timeout = aiohttp.ClientTimeout(total=TIMEOUT)
        while True:
            wait = due - time.perf_counter()
            if wait > 0:
                try:
                    await asyncio.wait_for(stop.wait(), wait)
                except asyncio.TimeoutError:
                    pass
            if stop.is_set():
                return
            now = time.perf_counter()
            made = int((now - started) * rate) + 2           # the next seq the tills have not made yet
            count = min(made - self.next_seq, BATCH)
            if count <= 0:
                due += every * rng.uniform(0.5, 1.5)
                continue
            self.stats.late.append((now, max(0.0, now - due) * 1000))
            batch = [envelope(self.store, self.index, seq) for seq in range(self.next_seq, self.next_seq + count)]
            try:
                async with self.session.post(self.base + "/events", json={"protocol": 1, "events": batch},
                                             headers=self.headers, timeout=timeout) as resp:
                    body = await resp.json(content_type=None)
                    status, after = resp.status, retry_after(resp.headers.get("Retry-After"))
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                status, body, after = None, None, None
            answered = time.perf_counter()
            self.stats.uploads.append((now, (answered - now) * 1000))
            if status in (200, 409):
                seq = body["next_seq"] if status == 200 else body["expected_seq"]
                if seq > self.next_seq:
                    self.stats.acks.append((answered, seq - self.next_seq))
                self.next_seq, attempt = seq, 0
                due += every * rng.uniform(0.5, 1.5)
            elif status in (429, 503) and after is not None:
                self.stats.refused += 1
                due = answered + engine_mod.retry_wait(after, rng)
            else:
                self.stats.failed += 1
                due = answered + engine_mod.backoff(attempt, timing, rng)
                attempt += 1


    async def settle(self) -> int:
        """After the run: how many of the events it sent the hub applied without the store hearing it (an
        upload that timed out near the end), so the hub's count can be checked against the stores'."""
        async with self.session.get(self.base + "/state", headers=self.headers) as resp:
            held = (await resp.json(content_type=None))["next_seq"]
        unheard, self.next_seq = held - self.next_seq, held
        return unheard


async def order_pusher(session: aiohttp.ClientSession, url: str, admin_token: str, stores: list[SteadyStore],
                       book: OrderBook, every: float, stop: asyncio.Event, rng: random.Random) -> None:
    """An online order for a steady store every `every` seconds, each on its own (a slow answer does
    not slow the schedule)."""
    headers = {"Authorization": f"Bearer {admin_token}"}

    async def one(number: int) -> None:
        store = rng.choice(stores)
        order_id = f"bench-{number}"
        order = book.start(order_id, store)
        try:
            async with session.post(f"{url}/admin/v1/stores/{store.store}/orders", headers=headers,
                                    json={"order_id": order_id, "kind": "pickup",
                                          "lines": [{"sku": SKU, "qty": 1}]}) as resp:
                body = await resp.json(content_type=None)
                book.answered(order, resp.status, body.get("cursor") if resp.status == 201 else None)
        except (aiohttp.ClientError, asyncio.TimeoutError):
            book.answered(order, 0, None)

    tasks, number, due = set(), 0, time.perf_counter()
    while not stop.is_set():
        number += 1
        task = asyncio.create_task(one(number))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        due += every
        try:
            await asyncio.wait_for(stop.wait(), max(0.0, due - time.perf_counter()))
        except asyncio.TimeoutError:
            pass
    if tasks:
        await asyncio.wait(tasks)


async def loop_lag(stop: asyncio.Event, samples: list[tuple[float, float]], tick: float = 0.05) -> None:
    """How late the load generator's own event loop wakes: if it is busy, the offered load is not what
    was asked for and the figures are the generator's, not the hub's."""
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(tick)   # the measurement itself: how much later than `tick` it returns
        samples.append((started, (time.perf_counter() - started - tick) * 1000))
