"""Members' points and stored value under faults (issue 12): each activity applied once at the cloud.

The rig of tests/test_sync_faults.py (the hub, the fault proxy and the daemon as real processes), with
members: the chain publishes its member programme and creates members with opening points and stored
value, each member's phone shows a code the store verifies, and then tills sell to them (by member id)
paying part in points (积分抵扣) and part from stored value (储值): online under the cloud's hold, offline
within the caps when the hold does not come back (the caps are set wide here, so no sale is refused).
Three ways to lose or double an activity: faults drawn at the proxy (answers lost after the hub
committed, stalls, drops, bogus statuses), the daemon SIGKILLed while it sells and uploads, the hub
SIGKILLed while it applies. Then tests/test_sync_faults.py's checks (every event once, balances, the
queue drained without a new write) and, for members: every activity the store committed
(`member_activity`) is in the hub's ledgers exactly once by activity_id (0 lost, 0 doubled) with the
store's amounts, and each member's points and balance at the hub are the opening amounts plus the
store's activity.
"""

from __future__ import annotations

import random
import time
from collections import Counter

import test_sync_faults
from helpers_daemon import request, wait_for
from test_sync_faults import DEADLINE, HINTS_TORN_DOWN, PROBABLE_FAULTS, SEED, SYNC_PATH, Rig, Tills, report, verify

from edge.ops.demo.phone import Phone
from edge.store import db

PROGRAM = {"version": 1, "levels": [{"level": "普通", "discount_pct": 100, "points_multiplier_pct": 100}],
           "points_per_yuan": 1, "excluded_categories": [], "redeem_fen_per_point": 1, "redeem_max_pct": 50}
OPENING_POINTS, OPENING_FEN = 1_000_000, 10_000_000
MEMBERS = 3
# the hub's chain (store-edge hub's default) and caps wide enough that an offline sale is never refused
STORE_CONFIG = 'chain = "chain-1"'
EDGE_CONFIG = "\n[members]\noffline_points_cap = 10000000\noffline_stored_value_cap_fen = 100000000\n"
KILL_CYCLES = 3
rig = test_sync_faults.rig   # the fixture: hub, proxy and daemon, stopped after the test


class MemberTills(Tills):
    """Tills of tests/test_sync_faults.py (each sale resent under its key until acknowledged), four sales
    in five by a member: a quarter in points, a quarter from stored value, the rest by WeChat."""

    def __init__(self, rig: Rig, seed: int, members: list[str]):
        self.members = members
        super().__init__(rig, seed, tills=2, local_share=0.0)

    def _sale(self, rng: random.Random) -> dict:
        body = super()._sale(rng)
        total = body["payments"][0]["amount_fen"]
        if rng.random() < 0.8:
            part = total // 4
            body["member"] = {"member_id": rng.choice(self.members)}
            body["payments"] = [{"method": "points", "amount_fen": part},
                                {"method": "stored_value", "amount_fen": part},
                                {"method": "wechat", "amount_fen": total - 2 * part}]
        return body


def start(rig: Rig) -> list[str]:
    """The rig with members: the programme, the members at the hub, their codes verified at the store."""
    rig.start(batch_size=10, edge_config=EDGE_CONFIG, store_config=STORE_CONFIG)
    rig.hub.admin_ok("PUT", "/member-program", PROGRAM)
    members = []
    for n in range(MEMBERS):
        made = rig.hub.admin_ok("POST", "/members", {"name": f"会员{n}", "phone": f"1390000{n:04d}", "level": "普通",
                                                     "points": OPENING_POINTS, "balance_fen": OPENING_FEN})
        members.append((made["member_id"], Phone()))
    rig.settle("the programme and the hub's keys at the store")
    for n, (member_id, phone) in enumerate(members):
        phone.certificate = rig.hub.admin_ok("POST", f"/members/{member_id}/certificates",
                                             {"device_key": phone.device_key})["certificate"]
        status, data, _ = request(rig.edge.port, "POST", "/api/v1/members/verify", {"code": phone.code()},
                                  headers={"Idempotency-Key": f"verify-{n}"}, timeout=10)
        assert status == 201 and data["member_id"] == member_id, (status, data)
    return [member_id for member_id, _ in members]


def store_activity(rig: Rig) -> dict[str, dict]:
    conn = db.connect(rig.db_path, readonly=True)
    try:
        return {r["activity_id"]: dict(r) for r in conn.execute("SELECT * FROM member_activity")}
    finally:
        conn.close()


def verify_members(rig: Rig, members: list[str]) -> dict:
    """Every activity of the store once in the hub's ledgers, with its amounts; balances = opening + activity."""
    activity = store_activity(rig)
    assert {a["member_id"] for a in activity.values()} <= set(members)
    for member_id in members:
        ledger = rig.hub.admin_ok("GET", f"/members/{member_id}/ledger?limit=1000")
        points = [r for r in ledger["points"] if r["kind"] in ("sale", "return")]
        value = [r for r in ledger["stored_value"] if r["kind"] in ("sale", "return")]
        assert len(points) < 1000 and len(value) < 1000, "more rows than one page: raise the limit"
        mine = {a: r for a, r in activity.items() if r["member_id"] == member_id}
        at_hub = Counter(r["activity_id"] for r in points)
        doubled = [a for a, n in at_hub.items() if n > 1] + [a for a, n in Counter(r["activity_id"] for r in value).items()
                                                             if n > 1]
        assert not doubled, f"member {member_id}: applied twice at the hub: {doubled[:5]}"
        lost, extra = set(mine) - set(at_hub), set(at_hub) - set(mine)
        assert not lost, f"member {member_id}: {len(lost)} activities never reached the ledger: {sorted(lost)[:5]}"
        assert not extra, f"member {member_id}: activities the store never committed: {sorted(extra)[:5]}"
        for row in points:
            a = mine[row["activity_id"]]
            assert (row["earned"], row["spent"], row["store_id"]) == (a["points_earned"], a["points_spent"],
                                                                      rig.edge.store_id), (row, a)
        assert {r["activity_id"]: r["delta"] for r in value} == \
            {a: r["stored_value_fen"] for a, r in mine.items() if r["stored_value_fen"]}
        now = rig.hub.admin_ok("GET", f"/members/{member_id}")
        assert now["points"] == OPENING_POINTS + sum(r["points_earned"] - r["points_spent"] for r in mine.values())
        assert now["balance_fen"] == OPENING_FEN + sum(r["stored_value_fen"] for r in mine.values())
        assert not [r for r in points + value if r["flags"]], "an overspend flagged with balances this large"
    offline = [a for a in activity.values() if a["offline"]]
    return {"activities": len(activity), "offline": len(offline),
            "points_spent": sum(a["points_spent"] for a in activity.values()),
            "stored_value_fen": -sum(a["stored_value_fen"] for a in activity.values())}


def test_member_activity_through_random_faults_is_applied_once(rig):
    members = start(rig)
    rig.proxy.faults(SEED + 7, [HINTS_TORN_DOWN, *PROBABLE_FAULTS])
    tills = MemberTills(rig, SEED + 7, members)
    started = time.monotonic()
    wait_for(lambda: time.monotonic() - started > 5 and len(tills.acked) >= 40, DEADLINE, "member sales under faults")
    tills.stop()
    applied = Counter()
    for r in rig.proxy.control("GET", "faults")["rules"]:
        applied[r["fault"] + str(r.get("status", ""))] += r["applied"]
    rig.proxy.clear()
    took = rig.settle("the queue drained after the faults stopped")
    summary = verify(rig, tills)
    members_summary = verify_members(rig, members)
    report("members a: random faults", by_rule=dict(applied), settle_s=round(took, 1), sales=summary["sales"],
           **members_summary)
    # the proxy did lose answers after the hub had committed, and holds went offline past their timeout
    assert applied["error_after_upstream"] > 0 and members_summary["activities"] >= 30


def test_member_activity_with_the_daemon_killed_is_applied_once(rig):
    rng = random.Random(SEED + 8)
    members = start(rig)
    # posts held a little before the hub gets them: a kill often lands while the hub commits a batch
    rig.proxy.faults(SEED + 8, [{"match": SYNC_PATH, "method": "POST", "fault": "stall", "seconds": 0.3,
                                 "probability": 0.5}])
    tills = MemberTills(rig, SEED + 8, members)
    unsent = []
    for cycle in range(KILL_CYCLES):
        wait_for(lambda n=len(tills.acked): len(tills.acked) >= n + 15, DEADLINE, "member sales before the kill")
        time.sleep(rng.uniform(0.0, 0.3))  # the kill moment (seeded), not a wait for anything
        before = rig.edge_status()["queue"]
        unsent.append(before["last_seq"] - before["acked_seq"])
        rig.edge.kill()
        rig.edge.start()
    wait_for(lambda n=len(tills.acked): len(tills.acked) >= n + 10, DEADLINE, "member sales after the last restart")
    tills.stop()
    rig.proxy.clear()
    took = rig.settle("the edge converged after its restarts")
    summary = verify(rig, tills)
    members_summary = verify_members(rig, members)
    report("members b: daemon SIGKILL", kills=KILL_CYCLES, unsent_at_kill=unsent, settle_s=round(took, 1),
           sales=summary["sales"], replays=tills.replayed, **members_summary)
    assert any(unsent) and members_summary["activities"] >= 30


def test_member_activity_with_the_hub_killed_is_applied_once(rig):
    members = start(rig)
    tills = MemberTills(rig, SEED + 9, members)
    for cycle in range(KILL_CYCLES):
        wait_for(lambda n=len(tills.acked): len(tills.acked) >= n + 15, DEADLINE, "member sales before the kill")
        rig.hub.proc.kill()   # SIGKILL mid-apply: no handler, no checkpoint
        rig.hub.proc.wait(30)
        # while it is down the holds cannot be asked for: sales spend offline, within the caps
        wait_for(lambda n=len(tills.acked): len(tills.acked) >= n + 5, DEADLINE, "member sales with the hub down")
        rig.hub.start()
    wait_for(lambda n=len(tills.acked): len(tills.acked) >= n + 10, DEADLINE, "member sales after the last restart")
    tills.stop()
    took = rig.settle("the edge converged after the hub's restarts")
    summary = verify(rig, tills)
    members_summary = verify_members(rig, members)
    report("members c: hub SIGKILL", kills=KILL_CYCLES, settle_s=round(took, 1), sales=summary["sales"],
           **members_summary)
    assert members_summary["offline"] > 0 and members_summary["activities"] > members_summary["offline"]
