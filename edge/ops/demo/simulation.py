"""The simulation: customers order online at the hub, tills sell, staff prepare orders, customers
collect them (serial scanner, typed code, camera), the counter hands them over, and in the middle the
link to the cloud goes down and comes back. Seeded random, on a timeline scaled to --for."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import os
import random
import time

import aiohttp

from edge.core import config as config_mod
from edge.core.waits import wait_event
from edge.ops.demo.loopback_http import HttpError
from edge.ops.demo.members import Members
from edge.ops.demo.shift import close_shift, open_shift
from edge.ops.demo.summary import finish
from edge.ops.demo.video import write_pickup_video

log = logging.getLogger("edge.ops.demo")

SEED = 20261121
TIMELINE = 240.0             # seconds of the unscaled timeline (one cycle without --for)
OUTAGE = (90.0, 150.0)       # the link is down in this part of the timeline ...
BLACKHOLE_FROM = 130.0       # ... refused until here, then blackholed (requests hang) until its end
ORDERS_UNTIL = 0.85          # no new online orders in the last 15% (they could not be collected)
CAMERA_ORDERS = 4            # orders whose tokens the camera video shows
TOP_UP_BELOW, TOP_UP_TO = 60, 80   # goods received at start for SKUs that ran low in earlier runs
RESTOCK_BELOW = 15           # goods received during the run when a SKU falls to this
OPERATOR = "王芳"            # the cashier who hands orders over
STAFF = ("小李", "小张")       # who prepares orders
CONSUMER = "demo-counter"    # the demo counter's scan consumer
NOTES = (None, None, None, "不要袋子", "请帮忙加热", "下班后来取", "少放冰")
# a member sale's refusals that one way of paying causes: the member pays that part in cash instead
REFUSED_FOR = {"points": ("insufficient_points", "points_offline_cap", "points_over_limit", "points_not_whole"),
               "stored_value": ("insufficient_balance", "stored_value_offline_cap", "stored_value_offline_disabled")}


class Out:
    """What the demo tells the person watching: stdout, one line per happening, with the demo's clock."""

    def __init__(self):
        self.t0 = time.monotonic()

    def __call__(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.1f}s] {text}", flush=True)

    @staticmethod
    def plain(text: str = "") -> None:
        print(text, flush=True)


@dataclasses.dataclass
class Order:
    order_id: str
    number: str
    token: str
    code: str
    lines: list
    created_at: float
    via: str                   # how the customer will collect it: serial, code or camera
    at_edge: bool = False
    picked_up: bool = False


class Simulation:
    """The actors of the demo; the stage (stage.Demo) gives them the hub, proxy, store, printer and pty."""

    def __init__(self, config: config_mod.Config, seconds: float | None, out: Out):
        self.config = config
        self.seconds = seconds
        self.scale = (seconds / TIMELINE) if seconds else 1.0
        self.out = out
        self.rng = random.Random(SEED)
        self.demo_dir = config.data_dir / "demo"
        self.video = self.demo_dir / "pickups.avi"
        self.store_id = config.store.id
        self.orders: dict[str, Order] = {}
        self.sales = {"count": 0, "total_fen": 0, "by_method": {"cash": 0, "wechat": 0}}
        self.pickups: list[dict] = []
        self.refused_scans: dict[str, int] = {}
        self.restocks = 0
        self.order_refusals = 0
        self.link_states: list[tuple[float, str]] = []
        self.outage_started = self.outage_ended = None
        self.outage_active = False
        self.tasks: set[asyncio.Task] = set()
        self.sim_stop = asyncio.Event()
        self.errors: list[str] = []
        self.shift = self.shift_closed = None
        self.members = Members(self)

    # timeline helpers
    def t(self, base_seconds: float) -> float:
        return base_seconds * self.scale

    async def sleep(self, seconds: float) -> bool:
        """Sleep, or return True at once when the simulation stops."""
        return await wait_event(self.sim_stop, max(0.0, seconds))

    def spawn(self, coro, name: str) -> asyncio.Task:
        task = asyncio.create_task(self._guard(coro, name), name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def _guard(self, coro, name: str):
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 (one actor's failure is reported, the demo goes on)
            self.errors.append(f"{name}: {exc!r}")
            log.warning("demo task failed", extra={"kv": {"task": name, "error": repr(exc)}})

    # -- the simulation ---------------------------------------------------------------------
    async def simulate(self, stop_all: asyncio.Event) -> int:
        await self.top_up()
        await self.until(self.edge_synced, 30, "opening stock uploaded to the hub")
        self.out("opening stock is at the hub: the mini-program can sell online")
        self.shift = await open_shift(self, OPERATOR)
        await self.consume_scans(register_only=True)
        self.spawn(self.consume_scans(), "counter")
        cycle = 0
        started = time.monotonic()
        while not self.sim_stop.is_set():
            await self.run_cycle(cycle)
            cycle += 1
            if self.seconds:
                break
        elapsed = time.monotonic() - started
        user_stopped = stop_all.is_set()
        self.sim_stop.set()
        # a till in the middle of a sale finishes it (its next sleep sees the stop): cancelled mid-request, the
        # store could record a sale the demo never counted, and the shift and member checks would disagree
        tills = [task for task in self.tasks if task.get_name() == "tills"]
        if tills:
            await asyncio.wait(tills, timeout=30)
        for task in list(self.tasks):
            if task.get_name() != "link":
                task.cancel()
        await asyncio.gather(*[t for t in self.tasks if t.get_name() != "link"], return_exceptions=True)
        if self.outage_active:
            await self.end_outage()
        self.shift_closed = await close_shift(self, self.shift, OPERATOR)
        summary = await finish(self, elapsed, drain_seconds=30.0 if self.seconds else 10.0)
        return 0 if (user_stopped or summary["checks_passed"]) else 1

    async def run_cycle(self, cycle: int) -> None:
        length = self.t(TIMELINE)
        t0 = time.monotonic()
        self.out(f"-- timeline {'cycle ' + str(cycle + 1) + ' ' if not self.seconds else ''}of {length:g} s: "
                 f"outage from {self.t(OUTAGE[0]):g} s to {self.t(OUTAGE[1]):g} s")
        self.spawn(self.camera_orders(), "camera-orders")
        self.spawn(self.customers(t0 + length * ORDERS_UNTIL), "customers")
        self.spawn(self.tills(t0 + length), "tills")
        self.spawn(self.outage(t0), "outage")
        await self.sleep(t0 + length - time.monotonic())

    async def top_up(self) -> None:
        """Goods received for SKUs that earlier runs sold down (a fresh demo store has 40 of each)."""
        stock_now = await self.edge_stock()
        lines = [{"sku": sku, "qty": TOP_UP_TO - row[2]} for sku, row in stock_now.items()
                 if sku in self.products and row[2] < TOP_UP_BELOW]
        if lines:
            await self.edge.call("POST", "/receipts", {"lines": lines, "supplier": "演示供应商"}, key=True)
            self.out(f"goods received: {len(lines)} SKUs topped up to {TOP_UP_TO}")

    async def edge_stock(self) -> dict[str, tuple[int, int, int]]:
        out, after = {}, None
        while True:
            query = "/stock?limit=1000" + (f"&after={after}" if after else "")
            page = await self.edge.call("GET", query)
            for item in page["items"]:
                out[item["sku"]] = (item["on_hand"], item["reserved"], item["available"])
            after = page.get("next_after")
            if not after:
                return out

    async def edge_synced(self) -> bool:
        status = await self.edge.call("GET", "/sync/status")
        return status["queue"]["depth"] == 0 and status["link"]["state"] == "online"

    async def until(self, check, timeout: float, what: str) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, HttpError):
                if await check():
                    return True
            await asyncio.sleep(0.2)
        self.out(f"(gave up waiting for {what} after {timeout:g} s)")
        return False

    # customers ordering online at the hub
    def pick_lines(self, stock_now: dict | None = None) -> list[dict]:
        skus = list(self.products)
        if stock_now:
            skus = [s for s in skus if stock_now.get(s, (0, 0, 0))[2] > RESTOCK_BELOW] or skus
        chosen = self.rng.sample(skus, k=min(len(skus), self.rng.choice((1, 1, 2, 2, 3))))
        return [{"sku": sku, "qty": self.rng.choice((1, 1, 1, 2))} for sku in chosen]

    async def place_order(self, via: str) -> Order | None:
        body = {"kind": "pickup", "lines": self.pick_lines()}
        note = self.rng.choice(NOTES)
        if note:
            body["customer_note"] = note
        try:
            made = await self.hub.call("POST", f"/stores/{self.store_id}/orders", body)
        except HttpError as exc:
            self.order_refusals += 1
            why = exc.body.get("error") if isinstance(exc.body, dict) else exc
            self.out(f"online order refused by the cloud: {why}")
            return None
        order = Order(made["order_id"], made["number"], made["pickup_token"], made["pickup_code"], made["lines"],
                      time.monotonic(), via)
        self.orders[order.order_id] = order
        items = "、".join(f"{line['name']}×{line['qty']}" for line in made["lines"])
        self.out(f"online order {order.number} at the cloud: {items} (￥{made['total_fen'] / 100:.2f}; "
                 f"pickup code {order.code}; will collect by {via})")
        return order

    async def customers(self, until: float) -> None:
        while time.monotonic() < until:
            if await self.sleep(self.t(self.rng.uniform(4.0, 9.0))):
                return
            if time.monotonic() >= until:
                return
            via = self.rng.choice(("serial", "serial", "serial", "code"))
            order = await self.place_order(via)
            if order:
                self.spawn(self.order_life(order), f"order-{order.number}")

    async def camera_orders(self) -> None:
        """Orders whose customers show their QR code to the counter camera: the video is made of them."""
        made = []
        for _ in range(CAMERA_ORDERS):
            order = await self.place_order("camera")
            if order:
                made.append(order)
                self.spawn(self.order_life(order), f"order-{order.number}")
        if not made:
            return
        await self.until(lambda: self._all_ready(made), 30 * max(self.scale, 0.5), "camera orders ready")
        if self.sim_stop.is_set():
            return
        shots = [(f"order {o.number}", o.token) for o in made]
        member = self.members.camera_shot()   # a member's phone too: its code of this moment
        if member:
            shots.insert(len(shots) // 2, member)
        await asyncio.get_running_loop().run_in_executor(None, write_pickup_video, self.video, shots)
        self.out(f"camera video now shows the pickup QR codes of {', '.join(o.number for o in made)} "
                 f"({self.video.stat().st_size // 1024} KiB)")

    async def _all_ready(self, orders: list[Order]) -> bool:
        for order in orders:
            found = await self.edge.call("GET", f"/orders/{order.order_id}", expect=None)
            if found[0] != 200 or found[1]["state"] not in ("ready", "picked_up"):
                return False
        return True

    async def order_life(self, order: Order) -> None:
        """The store's side of an online order: arrives, is prepared, and (serial/code) is collected."""
        while True:
            status, found = await self.edge.call("GET", f"/orders/{order.order_id}", expect=None)
            if status == 200:
                break
            if await self.sleep(0.2):
                return
        order.at_edge = True
        late = time.monotonic() - order.created_at
        self.out(f"order {order.number} arrived at the store after {late:.1f} s"
                 f"{' (short!)' if found.get('short') else ''}; ticket to the printer")
        staff = self.rng.choice(STAFF)
        if await self.sleep(self.t(self.rng.uniform(2.0, 5.0))):
            return
        await self.edge.call("POST", f"/orders/{order.order_id}/state", {"to": "accepted", "operator": staff}, key=True)
        if await self.sleep(self.t(self.rng.uniform(4.0, 10.0))):
            return
        await self.edge.call("POST", f"/orders/{order.order_id}/state", {"to": "ready", "operator": staff}, key=True)
        self.out(f"order {order.number} packed and ready by {staff}")
        if order.via == "camera":
            return
        if await self.sleep(self.t(self.rng.uniform(6.0, 24.0))):
            return
        if order.via == "serial":
            self.out(f"customer of {order.number} shows the QR code: scanned on the serial scanner")
            os.write(self.master, order.token.encode("ascii") + b"\r")
        else:
            self.out(f"customer of {order.number} reads out pickup code {order.code}: typed at the till")
            await self.edge.call("POST", "/scans", {"text": order.code, "typed": True}, key=True)

    # the counter: scans in, hand-overs out (as the cashier screen's confirm)
    async def consume_scans(self, register_only: bool = False) -> None:
        if register_only:
            await self.edge.call("GET", f"/scans?consumer={CONSUMER}")
            return
        while not self.sim_stop.is_set():
            page = await self.edge.call("GET", f"/scans?consumer={CONSUMER}&wait=1", timeout=15)
            for scan in page["items"]:
                if scan["kind"] == "pickup_token":
                    await self.hand_over({"token": scan["text"]}, scan)
                elif scan["kind"] == "pickup_code":
                    await self.hand_over({"code": scan["text"]}, scan)
                elif scan["kind"] == "member_code":
                    self.members.seen_at_counter(scan)
                await self.edge.call("POST", "/scans/ack", {"consumer": CONSUMER, "seq": scan["seq"]}, key=True)

    async def hand_over(self, ref: dict, scan: dict) -> None:
        source = {"camera": "camera", "serial": "serial scanner"}.get(scan["source"], "typed code")
        status, found = await self.edge.call("POST", "/pickups/lookup", ref, expect=None)
        if status != 200:
            reason = (found or {}).get("error", {}).get("code", str(status))
            self.refused_scans[reason] = self.refused_scans.get(reason, 0) + 1
            if not (reason == "already_used" and scan["source"] == "camera"):  # the looping video shows it again
                self.out(f"{source}: refused ({reason}): {(found or {}).get('error', {}).get('message', '')}")
            return
        done = await self.edge.call("POST", "/pickups", {**ref, "operator": OPERATOR}, key=True)
        pickup, order = done["pickup"], done["order"]
        if order["id"] in self.orders:
            self.orders[order["id"]].picked_up = True
        self.pickups.append({"order_id": order["id"], "number": order["number"], "via": scan["source"],
                             "method": pickup["method"], "provisional": pickup["provisional"]})
        self.out(f"核销 {order['number']} by {source}: handed over by {OPERATOR}"
                 f"{' — PROVISIONAL (cloud down), reconciled on sync' if pickup['provisional'] else ''}")

    # the tills
    async def tills(self, until: float) -> None:
        till = 0
        while time.monotonic() < until:
            if await self.sleep(self.t(self.rng.uniform(5.0, 11.0))):
                return
            stock_now = await self.edge_stock()
            low = [s for s in self.products if stock_now.get(s, (0, 0, 0))[2] <= RESTOCK_BELOW]
            if low:
                await self.edge.call("POST", "/receipts", {"lines": [{"sku": s, "qty": 30} for s in low],
                                                           "supplier": "演示供应商"}, key=True)
                self.restocks += 1
                self.out(f"goods received: {', '.join(low)} (+30 each)")
            lines = self.pick_lines(stock_now)
            total = sum(self.products[line["sku"]]["price_fen"] * line["qty"] for line in lines)
            method = self.rng.choice(("cash", "wechat", "wechat"))
            paid = total if method == "wechat" else int(math.ceil(total / 1000.0) * 1000) or 1000
            till = till % 2 + 1
            body = {"lines": [{"sku": line["sku"], "qty": line["qty"]} for line in lines],
                    "payments": [{"method": method, "amount_fen": paid}], "cashier": OPERATOR}
            customer = await self.members.customer(self.rng)
            if customer:
                await self.member_sale(till, body, total, *customer)
                continue
            sale = await self.edge.call("POST", "/sales", body, key=True)
            sale = sale.get("sale", sale)
            self.count_sale(sale)
            change = f", change ￥{(paid - sale['total_fen']) / 100:.2f}" if method == "cash" else ""
            self.out(f"till {till}: sale ￥{sale['total_fen'] / 100:.2f} paid by "
                     f"{'cash' if method == 'cash' else 'WeChat'}{change}")

    def count_sale(self, sale: dict) -> None:
        self.sales["count"] += 1
        self.sales["total_fen"] += sale["total_fen"]
        for payment in sale["payments"]:
            by = self.sales["by_method"]
            by[payment["method"]] = by.get(payment["method"], 0) + payment["amount_fen"]
        self.sales["by_method"]["cash"] -= sale["change_fen"]

    async def member_sale(self, till: int, body: dict, list_total: int, member, ref: dict, way: str) -> None:
        """A member's sale: points and stored value among the payments (stored value only while the cloud
        answers: offline it is off by default). Refused for want of points or balance, or by the offline
        caps, the member pays that part in cash, still as a member; refused for the member code, the sale
        goes on without the member."""
        use = {"points": True, "stored_value": not self.outage_active}
        while True:
            body = {**body, "member": ref, "payments": self.members.payments(list_total, **use)}
            status, answer = await self.edge.call("POST", "/sales", body, key=True, expect=None)
            code = (answer or {}).get("error", {}).get("code") if status == 422 else None
            if code is None:
                break
            self.members.refused(code)
            dropped = next((kind for kind in use if use[kind] and code in REFUSED_FOR[kind]), None)
            self.out(f"till {till}: member {member.name} refused ({code}): "
                     f"{'no ' + dropped.replace('_', ' ') + ', cash instead' if dropped else 'sold without the member'}")
            if dropped is None:
                status, answer = await self.edge.call("POST", "/sales", {k: v for k, v in body.items() if k != "member"}
                                                      | {"payments": self.members.payments(list_total, points=False,
                                                                                           stored_value=False)},
                                                      key=True, expect=None)
                member = None
                break
            use[dropped] = False
        if status != 201:
            raise HttpError(status, answer)
        sale = answer["sale"]
        self.count_sale(sale)
        words = self.members.record(member, way, sale) if member else "no member"
        self.out(f"till {till}: member sale ￥{sale['total_fen'] / 100:.2f} ({way}); {words}")

    # the outage
    async def outage(self, t0: float) -> None:
        if await self.sleep(t0 + self.t(OUTAGE[0]) - time.monotonic()):
            return
        await self.proxy.call("PUT", "/down")
        self.outage_active = True
        self.outage_started = time.monotonic()
        self.out(f"!! network outage: the cloud is unreachable (connections refused) for "
                 f"{self.t(OUTAGE[1] - OUTAGE[0]):g} s; the store carries on offline")
        if await self.sleep(t0 + self.t(BLACKHOLE_FROM) - time.monotonic()):
            return
        hang = self.t(OUTAGE[1] - BLACKHOLE_FROM) + 1.0
        await self.proxy.call("PUT", "/faults", {"seed": SEED, "rules": [{"match": "/", "fault": "stall",
                                                                           "seconds": hang}]})
        await self.proxy.call("DELETE", "/down")
        self.out("!! the link now blackholes: requests hang without an answer")
        if await self.sleep(t0 + self.t(OUTAGE[1]) - time.monotonic()):
            return
        await self.end_outage()

    async def end_outage(self) -> None:
        await self.proxy.call("DELETE", "/faults")
        await self.proxy.call("DELETE", "/down")
        self.outage_active = False
        self.outage_ended = time.monotonic()
        self.out("!! network back: the store uploads what it did offline and pulls the orders it missed")

    async def watch_link(self) -> None:
        last = None
        while True:
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, HttpError):
                status = await self.edge.call("GET", "/sync/status", timeout=3)
                state = status["link"]["state"]
                if state != last:
                    self.link_states.append((time.monotonic(), state))
                    if last is not None:
                        self.out(f"cloud link: {last} -> {state} (queue {status['queue']['depth']} events waiting)")
                    last = state
            await asyncio.sleep(0.25)
