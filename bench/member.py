"""The member benchmark (issue 12): verifying member codes (会员码) at the store, offline.

A new store database (every migration) with the chain's key published through sync.changes.apply_page,
as the feed delivers it. N members, each with its own simulated phone (edge/ops/demo/phone.py) and a
certificate signed as the hub signs it (hub.members.certificate_claims' claims, the hub's key id form).
Each code shown at one frozen moment is checked as the writer thread checks it: one transaction of
edge.store.members.verify_member_code (the certificate's JWS check with the key looked up in SQLite,
the claims, the phone's Ed25519 signature over SHA-256(certificate) and the step, the (member, step)
row taken, older steps purged) and its commit. Also the check alone (no write, as a reader would) and
a replay's refusal. Timed one code after the other on one thread.

Target: verification p99 <= 5 ms (the issue's).

Then the sale with a member (bench/member_sale.py): a 5-line sale by a member's code, with member prices,
points spent and earned, through the daemon on the ledger benchmark's 1,000,000-move store (`--quick`: a
small store, said in the result). Target: p99 <= 15 ms.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from bench import member_sale
from bench.ledger import load_at_start, percentile, stats
from edge.core import jws, member_code
from edge.core.context import WriteContext
from edge.ops.demo.phone import Phone
from edge.store import db, members
from edge.store.signed_tokens import TokenRefused
from sync.changes import apply_page

TARGETS = {"verify_p99_ms": 5.0, "member_sale_p99_ms": member_sale.TARGET_P99_MS}
COUNTS = {False: 20_000, True: 2_000}
CHAIN, STORE = "chain-bench", "store-bench"
NOW = 1_796_000_015.0
CTX = WriteContext("cloud", "2026-12-01T00:00:00.000Z", "2026-12-01")


def progress(message: str) -> None:
    print(f"[member {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _codes(n: int, private: bytes, kid: str) -> list[str]:
    codes = []
    for i in range(n):
        phone = Phone()
        claims = {"sub": f"m-{i:08d}", "chn": CHAIN, "lv": "金卡", "nm": "张*", "ph": "138****5678",
                  "pts": 1280 + i, "bal": 5000, "snp": int(NOW) - 60, "dk": phone.device_key,
                  "iat": int(NOW) - 86400, "exp": int(NOW) + 30 * 86400}
        phone.certificate = jws.sign(private, kid, jws.TYP_MEMBER, claims)
        # shown in the step before, the same or the next: the window the store accepts
        codes.append(phone.code(NOW + (i % 3 - 1) * member_code.STEP_SECONDS))
    return codes


def run(quick: bool = False) -> dict:
    load_start = load_at_start(progress)
    n = COUNTS[quick]
    private, public = jws.new_key()
    kid = "k-202612-3f9c2a"
    codes = _codes(n, private, kid)
    progress(f"{n:,} member codes made, {len(codes[0])} characters each")
    with tempfile.TemporaryDirectory(prefix="bench-member-") as folder:
        conn = db.open_store_db(Path(folder) / "store.db")
        try:
            with db.transaction(conn):
                apply_page(conn, [{"cursor": 1, "id": "ch-1", "type": "key.published", "created_at": CTX.now,
                                   "payload": {"kid": kid, "alg": "Ed25519", "public_key": public}}], 1, CTX)
            checked, taken, replayed = [], [], []
            for code in codes[:min(n, 2000)]:           # the check alone: reads only
                started = time.perf_counter()
                members.check(conn, code, chain=CHAIN, store_id=STORE, now=NOW)
                checked.append((time.perf_counter() - started) * 1000)
            for code in codes:                          # as the writer does it: check, take, commit
                started = time.perf_counter()
                with db.transaction(conn):
                    members.verify_member_code(conn, code, chain=CHAIN, store_id=STORE, now=NOW)
                taken.append((time.perf_counter() - started) * 1000)
            for code in codes[:min(n, 500)]:            # shown again: refused, nothing written
                started = time.perf_counter()
                try:
                    with db.transaction(conn):
                        members.verify_member_code(conn, code, chain=CHAIN, store_id=STORE, now=NOW)
                except TokenRefused:
                    pass
                replayed.append((time.perf_counter() - started) * 1000)
            rows = conn.execute("SELECT count(*) FROM member_code_uses").fetchone()[0]
        finally:
            conn.close()
    p99 = percentile(taken, 99)
    progress(f"verify and take: p50 {percentile(taken, 50):.2f} ms, p99 {p99:.2f} ms; "
             f"check alone p99 {percentile(checked, 99):.2f} ms; replay refused p99 {percentile(replayed, 99):.2f} ms")
    sale = member_sale.run(quick, progress)
    return {"benchmark": "member", "quick": quick, "codes": n, "code_bytes": len(codes[0]), "uses_rows": rows,
            "verify_ms": stats(taken), "check_only_ms": stats(checked), "replay_refused_ms": stats(replayed),
            "member_sale": sale,
            "load_start": round(load_start, 2), "load_end": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
            "targets": TARGETS, "met": {"verify_p99_ms": p99 <= TARGETS["verify_p99_ms"],
                                        "member_sale_p99_ms": sale["p99_met"]}}
