"""The sales-by-hour chart of the overview and the reports: stacked bars (till, online) in an inline SVG
with a ￥ axis, computed here (the pages run no chart script; templates/chart_macros.html draws it). The
view box is narrow and its text large, so that scaled down to a phone's 390 px the hours and the ￥
labels stay readable: one drawing for every screen."""

from __future__ import annotations

HOURS = (7, 22)  # shown at least; more when sales fall outside
WIDTH, HEIGHT = 560, 260
LEFT, RIGHT, TOP, BOTTOM = 88, 6, 14, 32  # room for the ￥ labels on the left and the hours below
FONT = 20


def _step(top_fen: int) -> int:
    """A round ￥ step (1, 2 or 5 times a power of ten, in fen) giving at most four grid lines."""
    step = 100
    while True:
        for factor in (1, 2, 5):
            if top_fen <= 4 * step * factor:
                return step * factor
        step *= 10


def _label(fen: int) -> str:
    return f"￥{fen // 100:,}" if fen % 100 == 0 else f"￥{fen / 100:,.2f}"


def chart(hours: list[dict]) -> dict:
    """hours: {hour, sales_count, till_fen, online_count, online_fen} for the hours with sales."""
    by_hour = {h["hour"]: h for h in hours}
    first = min([HOURS[0], *by_hour])
    last = max([HOURS[1], *by_hour])
    totals = {h: s["till_fen"] + s["online_fen"] for h, s in by_hour.items()}
    top = max([*totals.values(), 0])
    step = _step(top) if top > 0 else 100
    scale_top = step * max(1, -(-top // step))
    plot_h = HEIGHT - TOP - BOTTOM
    base = TOP + plot_h
    slot = (WIDTH - LEFT - RIGHT) / (last - first + 1)

    def y(fen: int) -> float:
        return round(base - plot_h * fen / scale_top, 1)

    grid = [{"y": y(v), "label": _label(v)} for v in range(0, scale_top + 1, step)]
    bars = []
    for index, hour in enumerate(range(first, last + 1)):
        s = by_hour.get(hour, {"sales_count": 0, "till_fen": 0, "online_count": 0, "online_fen": 0})
        x = round(LEFT + index * slot + slot * 0.15, 1)
        till_top, online_top = y(s["till_fen"]), y(s["till_fen"] + s["online_fen"])
        bars.append({"hour": hour, **s, "fen": s["till_fen"] + s["online_fen"], "x": x, "w": round(slot * 0.7, 1),
                     "till_y": till_top, "till_h": round(base - till_top, 1), "online_y": online_top,
                     "online_h": round(till_top - online_top, 1), "label_x": round(x + slot * 0.35, 1),
                     # every hour labelled when there is room; else every other one
                     "labelled": slot >= 1.5 * FONT or hour % 2 == 0})
    return {"bars": bars, "grid": grid, "width": WIDTH, "height": HEIGHT, "left": LEFT, "base_y": base,
            "text_y": HEIGHT - 8, "font": FONT, "empty": not totals or top == 0}
