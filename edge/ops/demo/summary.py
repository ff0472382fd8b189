"""The end of a timed demo: wait for the store to catch up with the cloud, then the checks
(outage survived, ledger clean, hub = edge stock, every order printed, hand-overs at the cloud)."""

from __future__ import annotations

import asyncio
import json

from edge.ops.demo.shift import printed_shift_slips
from edge.store import stock


async def finish(sim, elapsed: float, drain_seconds: float) -> dict:
    """Wait for the store to catch up with the cloud, then check and print the summary (last line JSON)."""
    sim.out("the simulation ends: waiting for the store to catch up with the cloud")
    created = list(sim.orders.values())

    async def caught_up() -> bool:
        for order in created:
            if not order.at_edge:
                status, _ = await sim.edge.call("GET", f"/orders/{order.order_id}", expect=None)
                if status != 200:
                    return False
                order.at_edge = True
        if len(printed_orders(sim.vp) & {o.order_id for o in created}) < len(created):
            return False
        return await sim.edge_synced()
    # stable: synced twice in a row, half a second apart (an order's print.result comes after its ticket)
    drained = await sim.until(caught_up, drain_seconds, "the upload queue to drain")
    if drained:
        await asyncio.sleep(0.5)
        drained = await sim.until(caught_up, drain_seconds / 2, "the upload queue to drain")

    status = await sim.edge.call("GET", "/sync/status")
    hub_after = await sim.hub.call("GET", f"/stores/{sim.store_id}")
    hub_bal = {r["sku"]: (r["on_hand"], r["reserved"]) for r in hub_after["balances"]}
    edge_bal = {sku: row[:2] for sku, row in (await sim.edge_stock()).items()}
    differences = [{"sku": sku, "hub": list(hub_bal.get(sku, (0, 0))), "edge": list(edge_bal.get(sku, (0, 0)))}
                   for sku in sorted(set(hub_bal) | set(edge_bal))
                   if hub_bal.get(sku, (0, 0)) != edge_bal.get(sku, (0, 0))]
    moves, mismatches = stock.verify_file(sim.config.db_path)
    at_cloud = 0  # hand-overs the hub knows as picked up (provisional ones included, once uploaded)
    for pickup in sim.pickups:
        status_code, hub_order = await sim.hub.call("GET", f"/orders/{pickup['order_id']}", expect=None)
        at_cloud += status_code == 200 and hub_order["state"] == "picked_up"
    printed = printed_orders(sim.vp) & {o.order_id for o in created}
    members = sim.members.tally
    ledgers = await sim.members.at_cloud()
    shift = sim.shift_closed or {}

    async def slip_out() -> bool:
        return printed_shift_slips(sim.vp) >= 1
    slips = bool(shift) and await sim.until(slip_out, 10, "the 交班小票 to print")
    went_down = any(state != "online" for at, state in sim.link_states
                    if sim.outage_started and at >= sim.outage_started)
    came_back = bool(sim.link_states) and sim.link_states[-1][1] == "online" and sim.outage_ended is not None
    events = hub_after["events"]
    before = sim.hub_before.get("events", {})
    dead = status["queue"]["dead_letters"]
    rejected = events.get("rejected", 0) - before.get("rejected", 0)
    summary = {
        "seconds": sim.seconds, "elapsed_s": round(elapsed, 1),
        "orders_created": len(created), "orders_printed": len(printed),
        "orders_refused_by_cloud": sim.order_refusals,
        "pickups_verified": len(sim.pickups),
        "pickups_provisional": sum(1 for p in sim.pickups if p["provisional"]),
        "pickups_at_cloud": at_cloud,
        "pickups_by": {via: sum(1 for p in sim.pickups if p["via"] == via)
                       for via in ("serial", "camera", "typed")},
        "scans_refused": sim.refused_scans,
        "sales": sim.sales["count"], "sales_fen": sim.sales["total_fen"],
        "sales_by_method_fen": sim.sales["by_method"], "restocks": sim.restocks,
        "receipts_printed": len(sim.vp.receipts()),
        "member_sales": members["sales"], "member_points_earned": members["points_earned"],
        "member_points_spent": members["points_spent"], "member_stored_value_fen": members["stored_value_fen"],
        "member_sales_offline": members["offline"], "member_sales_by": members["by"],
        "member_refusals": members["refused"], **ledgers,
        "shift": {"number": shift.get("number"), "sales": (shift.get("figures") or {}).get("sales_count"),
                  "expected_cash_fen": shift.get("expected_fen"), "counted_fen": shift.get("counted_fen"),
                  "difference_fen": shift.get("difference_fen"), "slip_printed": bool(slips)},
        "events_synced": events.get("applied", 0) - before.get("applied", 0),
        "events_rejected": rejected, "dead_letters": dead, "queue_depth": status["queue"]["depth"],
        "queue_drained": drained and status["queue"]["depth"] == 0,
        "outage": {"seconds": round((sim.outage_ended or 0) - (sim.outage_started or 0), 1)
                   if sim.outage_started else 0, "link_went_down": went_down, "link_came_back": came_back},
        "outage_survived": bool(went_down and came_back and dead == 0 and rejected == 0),
        "ledger_moves": moves, "ledger_clean": not mismatches, "ledger_mismatches": [str(m) for m in mismatches],
        "balances_equal": not differences, "balance_differences": differences[:20],
        "all_orders_printed": len(printed) == len(created),
        "errors": sim.errors[:10], "errors_count": len(sim.errors),
    }
    summary["failed_checks"] = [name for name, ok in checks(summary).items() if not ok]
    summary["checks_passed"] = not summary["failed_checks"]
    print_summary(sim.out, summary, sim.vp.out_dir)
    return summary


# A run that did nothing passes no check worth the name: at least one of each part of the day.
ACTIVITY = ("orders_created", "sales", "pickups_verified", "events_synced", "receipts_printed", "member_sales")


def checks(s: dict) -> dict[str, bool]:
    """Each check of a timed demo by name; it passes only if every one holds."""
    return {
        "outage_survived": s["outage_survived"], "ledger_clean": s["ledger_clean"],
        "balances_equal": s["balances_equal"], "queue_drained": s["queue_drained"],
        "all_orders_printed": s["all_orders_printed"],
        "pickups_at_cloud": s["pickups_at_cloud"] == s["pickups_verified"],
        # every till sale of the run is in the shift, and its 交班小票 came out
        "shift_closed": s["shift"]["sales"] == s["sales"] and s["shift"]["slip_printed"],
        # what the member sales earned, spent and paid is what the cloud's ledgers hold, each sale once
        "members_agree": s["members_agree"],
        "no_errors": s["errors_count"] == 0,  # a simulated part that crashed did not do its share
        "enough_activity": all(s[key] >= 1 for key in ACTIVITY),
    }


def printed_orders(printer) -> set[str]:
    """Orders whose picking ticket came out of the virtual printer (its QR says order:ID)."""
    return {qr["data"].removeprefix("order:") for r in printer.receipts() for qr in r.qr
            if str(qr.get("data", "")).startswith("order:")}




def print_summary(out, s: dict, printer_dir) -> None:
    yes = lambda ok: "yes" if ok else "NO"  # noqa: E731
    p = out.plain
    p()
    p("== demo summary ==")
    p(f"  online orders      {s['orders_created']} created at the cloud, {s['orders_printed']} tickets printed")
    p(f"  pickups verified   {s['pickups_verified']} ({s['pickups_provisional']} provisional, offline); "
      f"by serial scanner {s['pickups_by']['serial']}, camera {s['pickups_by']['camera']}, "
      f"typed code {s['pickups_by']['typed']}; {s['pickups_at_cloud']} picked up at the cloud")
    paid = s["sales_by_method_fen"]
    p(f"  till sales         {s['sales']}, ￥{s['sales_fen'] / 100:.2f} (" + ", ".join(
        f"{label} ￥{paid[method] / 100:.2f}" for method, label in (
            ("cash", "cash"), ("wechat", "WeChat"), ("points", "points"), ("stored_value", "stored value"))
        if paid.get(method)) + ")")
    p(f"  receipts printed   {s['receipts_printed']} (in {printer_dir}/)")
    by = s["member_sales_by"]
    p(f"  member sales       {s['member_sales']} ({s['member_sales_offline']} offline; code at the till {by['till']}, "
      f"serial scanner {by['serial']}, camera {by['camera']}, by id {by['id']}): points +{s['member_points_earned']} "
      f"-{s['member_points_spent']}, stored value ￥{s['member_stored_value_fen'] / 100:.2f}; "
      f"cloud ledgers agree {yes(s['members_agree'])}" + ("" if s["members_agree"] else f" {s['member_differences']}"))
    sh = s["shift"]
    if sh["number"] is not None:
        p(f"  交班 (shift)       no. {sh['number']}: {sh['sales']} sales; cash expected ￥{sh['expected_cash_fen'] / 100:.2f}, "
          f"counted ￥{sh['counted_fen'] / 100:.2f}; 交班小票 printed {yes(sh['slip_printed'])}")
    p(f"  events synced      {s['events_synced']} (rejected {s['events_rejected']}, dead letters "
      f"{s['dead_letters']}, still queued {s['queue_depth']})")
    p(f"  outage survived    {yes(s['outage_survived'])} (link down {yes(s['outage']['link_went_down'])}, "
      f"back {yes(s['outage']['link_came_back'])}, {s['outage']['seconds']} s)")
    p(f"  ledger verify      {'clean' if s['ledger_clean'] else 'FAILED'} ({s['ledger_moves']} moves)")
    p(f"  hub = edge stock   {yes(s['balances_equal'])}"
      + ("" if s["balances_equal"] else f" {s['balance_differences']}"))
    if s["errors_count"]:
        p(f"  errors             {s['errors_count']}: {'; '.join(s['errors'][:3])}")
    p(f"  all checks passed  {yes(s['checks_passed'])}"
      + ("" if s["checks_passed"] else f" (failed: {', '.join(s['failed_checks'])})"))
    print(json.dumps(s, ensure_ascii=False, separators=(",", ":")), flush=True)
