"""The demo's members (会员): the chain's member programme and member prices at the hub, four members
with points and stored value, each with a simulated phone (phone.py) showing dynamic member codes.

About half the till's customers are members. A member shows the phone's code to the till's own scanner
(the sale carries the code), to the counter's serial scanner or to the counter camera (the counter
sees the member verified, and the till's sale names the member by id, as a member verified here in the
last 30 minutes). The sale earns points, spends some (积分抵扣) and pays part from stored value (储值;
not while the cloud is down: offline stored value is off by default). At the end the demo's own tally
of what the sales did is checked against the cloud's ledgers (GET /admin/v1/members/{id}/ledger)."""

from __future__ import annotations

import dataclasses
import os
import time

from edge.ops.demo.phone import Phone

PROGRAM = {"version": 1, "points_per_yuan": 1, "excluded_categories": ["粮油"], "redeem_fen_per_point": 1,
           "redeem_max_pct": 50, "levels": [{"level": "普通", "discount_pct": 100, "points_multiplier_pct": 100},
                                            {"level": "金卡", "discount_pct": 95, "points_multiplier_pct": 150}]}
PRICES = [{"sku": "DRK-002", "level": None, "price_fen": 300}, {"sku": "FOD-003", "level": None, "price_fen": 780},
          {"sku": "FOD-003", "level": "金卡", "price_fen": 720}, {"sku": "DAY-004", "level": None, "price_fen": 2690}]
# (name, phone, level, opening points, opening stored value in fen)
MEMBERS = (("张伟", "13800138001", "金卡", 3000, 50000), ("李娜", "13800138002", "普通", 1200, 20000),
           ("王强", "13800138003", "金卡", 500, 8000), ("赵敏", "13800138004", "普通", 0, 30000))
SEEN_FOR = 25 * 60            # a member verified here this recently is named by id (the store allows 30 min)
WAYS = ("serial", "till", "serial", "till")  # how a member without a recent verification shows the code


@dataclasses.dataclass
class Member:
    member_id: str
    name: str
    level: str
    points: int                  # opening, at the hub
    balance_fen: int
    phone: Phone
    verified_at: float = float("-inf")   # monotonic: when the store last verified one of the phone's codes


class Members:
    """The members of the demo and the tally of what their sales did."""

    def __init__(self, sim):
        self.sim = sim
        self.members: list[Member] = []
        self.turn = 0
        # verified by the counter's serial scanner or camera, not yet at the till: (member, which)
        self.at_counter: list[tuple[Member, str]] = []
        self.tally = {"sales": 0, "points_earned": 0, "points_spent": 0, "stored_value_fen": 0, "offline": 0,
                      "by": {"till": 0, "serial": 0, "camera": 0, "id": 0}, "refused": {}}
        self.by_member: dict[str, dict] = {}

    async def enrol(self) -> None:
        """The chain's side, once at the start: programme, prices, members and their phones' certificates."""
        hub = self.sim.hub
        status, current = await hub.call("GET", "/member-program", expect=None)
        published = current["program"] if status == 200 else None
        if published is None or {**published, "version": 0} != {**PROGRAM, "version": 0}:
            # a rerun on the same hub: the programme is published again only if it changed, one version up
            await hub.call("PUT", "/member-program", {**PROGRAM, "version": (published or PROGRAM)["version"]
                                                      + (published is not None)})
        await hub.call("POST", "/member-prices", {"prices": PRICES})
        for name, number, level, points, balance in MEMBERS:
            made = await hub.call("POST", "/members", {"name": name, "phone": number, "level": level,
                                                       "points": points, "balance_fen": balance})
            phone = Phone()
            issued = await hub.call("POST", f"/members/{made['member_id']}/certificates",
                                    {"device_key": phone.device_key})
            phone.certificate = issued["certificate"]
            self.members.append(Member(made["member_id"], name, level, points, balance, phone))
            self.by_member[made["member_id"]] = {"earned": 0, "spent": 0, "stored_value_fen": 0, "activities": 0}
        self.sim.out(f"members at the cloud: {', '.join(f'{m.name} ({m.level})' for m in self.members)}; "
                     f"member prices for {len({p['sku'] for p in PRICES})} products")

    def by_id(self, member_id: str) -> Member | None:
        return next((m for m in self.members if m.member_id == member_id), None)

    # -- the counter: a member code read by the serial scanner or the camera ---------------------------
    def seen_at_counter(self, scan: dict) -> None:
        member = self.by_id(((scan.get("detail") or {}).get("member") or {}).get("member_id", ""))
        if member is None:        # refused (the looping video shows an old code again): nothing to sell
            return
        member.verified_at = time.monotonic()
        if all(member is not waiting for waiting, _ in self.at_counter):
            self.at_counter.append((member, "camera" if scan["source"] == "camera" else "serial"))
        self.sim.out(f"{scan['source']}: member {member.name} ({member.level}) verified at the counter")

    def camera_shot(self) -> tuple[str, str] | None:
        """A member's code for the counter camera's video (the code of this moment)."""
        if not self.members:
            return None
        member = self.members[0]
        return f"member {member.member_id}", member.phone.code()

    # -- the till -------------------------------------------------------------------------------------
    async def customer(self, rng) -> tuple[Member, dict, str] | None:
        """(member, the sale's `member`, how it was shown) for about half the customers; None otherwise."""
        if self.at_counter:
            member, source = self.at_counter.pop(0)
            return member, {"member_id": member.member_id}, source
        if not self.members or rng.random() < 0.5:
            return None
        member = rng.choice(self.members)
        if time.monotonic() - member.verified_at < SEEN_FOR:
            return member, {"member_id": member.member_id}, "id"
        way = WAYS[self.turn % len(WAYS)]
        self.turn += 1
        if way == "serial":
            os.write(self.sim.master, member.phone.code().encode("ascii") + b"\r")
            self.sim.out(f"member {member.name} shows the phone's member code to the serial scanner")
            return None    # the counter sees it verified; a later customer at the till is this member
        member.verified_at = time.monotonic()
        return member, {"code": member.phone.code()}, "till"

    def payments(self, list_total: int, *, points: bool = True, stored_value: bool = True) -> list[dict]:
        """Points for about 30% of the list price (at most 600) and stored value for 20% (at most ￥30),
        cash for the rest rounded up: the member total is at least 90% of the list total, so the non-cash
        part never exceeds it and points stay within the programme's 50%."""
        spend = min(list_total * 3 // 10, 600) if points else 0
        stored = min(list_total // 5, 3000) if stored_value else 0
        cash = max(100, -(-(list_total - spend - stored) // 100) * 100)
        return [p for p in ({"method": "points", "amount_fen": spend},
                            {"method": "stored_value", "amount_fen": stored},
                            {"method": "cash", "amount_fen": cash}) if p["amount_fen"] > 0]

    def record(self, member: Member, way: str, sale: dict) -> str:
        """A member sale done: the tally, and the words for the demo's output."""
        block = sale["member"]
        t = self.tally
        t["sales"] += 1
        t["by"][way] += 1
        t["points_earned"] += block["points_earned"]
        t["points_spent"] += block["points_spent"]
        t["stored_value_fen"] += block["stored_value_fen"]
        t["offline"] += bool(block["offline"])
        mine = self.by_member[member.member_id]
        mine["earned"] += block["points_earned"]
        mine["spent"] += block["points_spent"]
        mine["stored_value_fen"] += block["stored_value_fen"]
        mine["activities"] += 1
        return (f"member {member.name}: saved ￥{block['saved_fen'] / 100:.2f}, +{block['points_earned']} points, "
                f"{block['points_spent']} points spent, stored value ￥{block['stored_value_fen'] / 100:.2f}"
                f"{' (offline)' if block['offline'] else ''}")

    def refused(self, code: str) -> None:
        self.tally["refused"][code] = self.tally["refused"].get(code, 0) + 1

    # -- the end: the demo's tally against the cloud's ledgers ----------------------------------------
    async def at_cloud(self) -> dict:
        """Each member's ledgers at the hub: this store's rows add up to the demo's tally, one points row
        per sale (the activity applied once), and the balances are the opening amounts plus them."""
        differences = []
        for member in self.members:
            ledger = await self.sim.hub.call("GET", f"/members/{member.member_id}/ledger?limit=1000")
            now = await self.sim.hub.call("GET", f"/members/{member.member_id}")
            points, value = ([r for r in ledger[name] if r["store_id"] == self.sim.store_id and r["kind"] == "sale"]
                             for name in ("points", "stored_value"))
            cloud = {"earned": sum(r["earned"] for r in points), "spent": sum(r["spent"] for r in points),
                     "stored_value_fen": -sum(r["delta"] for r in value), "activities": len(points),
                     "once": len({r["activity_id"] for r in points}) == len(points)}
            expected = {**self.by_member[member.member_id], "once": True}
            balances = [now["points"], now["balance_fen"]]
            opening = [member.points + cloud["earned"] - cloud["spent"], member.balance_fen - cloud["stored_value_fen"]]
            if cloud != expected or balances != opening:
                differences.append({"member": member.member_id, "demo": expected, "cloud": cloud,
                                    "balances": balances, "opening_plus_sales": opening})
        return {"members_agree": not differences, "member_differences": differences}
