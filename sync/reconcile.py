"""Reconciliation: does the cloud's copy of this store's balances match the store's?

Run on a schedule when the upload queue is empty. A checksum first; the detail only on mismatch.
Each difference is recorded for the manager and fixed by a `stock.corrected` event that brings the
cloud's copy to the store's value. The store's own balance is never overwritten: it is the shelf.
"""

from __future__ import annotations

import logging

from edge.store import reconciliations
from sync.client import CloudClient

log = logging.getLogger("sync.reconcile")


async def reconcile(store, client: CloudClient) -> dict:
    """One run; returns what happened. Network errors propagate (the scheduler tries next time)."""
    # every balance and dead letter: the long-job thread, never a reader a request may be waiting for
    acked, depth, expected, mine = await store.read_long(reconciliations.snapshot)
    if depth:
        return {"result": "skipped", "reason": f"{depth} events still to upload"}
    state = await client.get_state()
    if state.body.get("balances_checksum") == mine:
        return {"result": "match", "skus": sum(1 for v in expected.values() if any(v))}
    detail = await client.get_balances()
    cloud = {}
    for row in detail.body["balances"]:
        if isinstance(row, dict) and isinstance(row.get("sku"), str):
            cloud[row["sku"]] = (int(row.get("on_hand", 0)), int(row.get("reserved", 0)))
    diffs = await store.write(reconciliations.correct, expected, cloud, acked)
    if diffs:
        log.warning("reconciliation found differences", extra={"kv": {"skus": len(diffs),
                                                                      "first": diffs[0]["sku"]}})
    return {"result": "corrected" if diffs else "match", "differences": diffs}
