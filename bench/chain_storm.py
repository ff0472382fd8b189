"""The reconnect storm's stores: each drains the queue it kept while offline as the store daemon's
uploader does (sync.client.CloudClient, the daemon's default batch and timeout, the engine's backoff
and Retry-After jitter, and the protocol's "how far did you get" after an answer it never read).

`python -m bench.chain_storm` runs them in a process of their own (bench/chain.py starts it): the
storm's stores, given on stdin as JSON, and their tally on stdout as JSON. The times are
time.perf_counter()'s, CLOCK_MONOTONIC on Linux: one clock for the benchmark's processes."""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
import uuid

from bench.ledger import BenchError
from edge.core.config import CloudSection
from sync import engine as engine_mod
from sync.client import CloudClient, NeedsPerson, RetryLater

BATCH = CloudSection().batch_size
TIMEOUT = CloudSection().timeout_seconds
SKU = "BEN-0001"
CREATED_AT = "2026-11-21T08:00:00.000Z"


def envelope(store: str, index: int, seq: int, qty: int = 1) -> dict:
    return {"id": str(uuid.UUID(int=(index << 40) | seq)), "store_id": store, "seq": seq, "type": "stock.received",
            "created_at": CREATED_AT, "payload": {"moves": [{"sku": SKU, "qty": qty, "reason": "receipt"}]}}


class Tally:
    def __init__(self, **saved):
        self.posted = self.worked = self.refused = self.timeouts = self.asked = self.skipped = 0
        self.upload_ms: list[float] = []
        self.acks: list[tuple[float, int]] = []   # (when, events the hub newly confirmed): applied per phase
        self.drained = 0.0                        # when the last store's queue was empty
        self.cpu_s = 0.0                          # the CPU time of the process that ran the storm
        self.__dict__.update(saved)               # a tally read back from a storm process (`vars` of one)


async def store_sim(url: str, store: str, index: int, token: str, events: int, tally: Tally, modern: bool,
                    rng: random.Random) -> float:
    """One store's uploader until its queue is empty; returns when (perf_counter) it was."""
    client = CloudClient(url, store, token, timeout=TIMEOUT)
    await client.open()
    timing = engine_mod.Timing()
    acked, attempt, ask = 0, 0, modern
    try:
        while acked < events:
            batch = [envelope(store, index, seq) for seq in range(acked + 1, min(events, acked + BATCH) + 1)]
            started = time.perf_counter()
            try:
                if ask:
                    tally.asked += 1
                    held = await client.get_held(batch[0]["seq"], len(batch))
                    count = 0
                    for event, result in zip(batch, held.body["results"]):
                        if result.get("seq") != event["seq"] or result.get("id") != event["id"]:
                            break
                        count += 1
                    ask = count == len(batch)
                    if count:
                        acked += count
                        tally.skipped += count
                        tally.acks.append((time.perf_counter(), count))
                        continue
                tally.posted += len(batch)
                answer = await client.post_events(batch)
                tally.upload_ms.append((time.perf_counter() - started) * 1000)
                tally.worked += len(batch)
                now_acked = (answer.body["next_seq"] if answer.status == 200 else answer.body["expected_seq"]) - 1
                if now_acked > acked:
                    tally.acks.append((time.perf_counter(), now_acked - acked))
                acked, attempt = now_acked, 0
            except NeedsPerson as exc:
                if not ask:
                    raise BenchError(f"{store}: {exc}") from None
                ask = False  # a hub without GET …/events
            except RetryLater as exc:
                tally.upload_ms.append((time.perf_counter() - started) * 1000)
                if exc.retry_after is not None:
                    tally.refused += 1
                    if modern:
                        await asyncio.sleep(engine_mod.retry_wait(exc.retry_after, rng))
                    else:
                        await asyncio.sleep(exc.retry_after)
                        attempt += 1
                    continue
                if exc.status is None:
                    tally.worked += len(batch)  # sent, and the hub may have worked on it: unknown
                    tally.timeouts += "Timeout" in str(exc)
                    ask = modern
                await asyncio.sleep(engine_mod.backoff(attempt, timing, rng))
                attempt += 1
        return time.perf_counter()
    finally:
        await client.close()


async def storm(spec: dict) -> Tally:
    """Every store of the spec draining its queue at once (as they all come back after an outage)."""
    tally = Tally()
    ends = await asyncio.gather(*(store_sim(url, name, index, token, spec["events"], tally, spec["modern"],
                                            random.Random(index))
                                  for url, name, index, token in spec["stores"]))
    tally.drained = max(ends)
    return tally


def main() -> int:
    tally = asyncio.run(storm(json.load(sys.stdin)))
    tally.cpu_s = time.process_time()
    json.dump(vars(tally), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
