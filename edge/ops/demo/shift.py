"""The demo cashier's shift (交班): opened before the first sale, closed at the end with the drawer
counted, so the 交班小票 comes out of the virtual printer and the 日结 lists a real shift."""

from __future__ import annotations

FLOAT_FEN = 20_000          # 备用金: ￥200 in the drawer at the start


async def open_shift(sim, cashier: str) -> dict:
    """A new shift at the demo's till; one an earlier demo left open is closed first (counted as expected)."""
    status, left_open = await sim.edge.call("GET", "/shifts/current", expect=None)
    if status == 200:
        await close_shift(sim, left_open, cashier)
        sim.out(f"交班: shift {left_open['number']} left open by an earlier run, closed")
    shift = await sim.edge.call("POST", "/shifts", {"cashier": cashier, "float_fen": FLOAT_FEN}, key=True)
    sim.out(f"开班: shift {shift['number']} opened by {cashier}, float ￥{FLOAT_FEN / 100:.2f}")
    return shift


async def close_shift(sim, shift: dict, cashier: str) -> dict:
    """Count the drawer (the demo's cashier counts right) and close: the store prints the 交班小票."""
    now = await sim.edge.call("GET", f"/shifts/{shift['id']}")
    counted = now["figures"]["expected_cash_fen"]
    return await sim.edge.call("POST", f"/shifts/{shift['id']}/close",
                               {"counted_fen": counted, "closed_by": cashier}, key=True)


def printed_shift_slips(printer) -> int:
    """交班小票 that came out of the virtual printer."""
    return sum(1 for r in printer.receipts() if "交班小票" in r.text)
