"""Purchase suggestions (补货建议): what to order, from how fast each product sells.

For each active product: units sold a day over the last `velocity_days` (till sales and online
orders picked up, minus returns: the 'sale', 'pickup' and 'return' moves), the days its available
stock lasts at that pace, and the quantity that covers the lead time and `cover_days` after the
goods arrive: ⌈sold a day × (lead time + cover days) − available⌉, never below 0 (the lead time of
the product's category where [stock] lead_time_by_category names it). A product is listed
when it is at or below its low-stock threshold, or when it runs out within the lead time.

A product with no sales in the window gets 0: the velocity has nothing to say about it, and a
manager decides (it is still listed when it is at or below its threshold).
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta

from edge.core.clock import iso
from edge.store.catalog import excel_text
from edge.store.tables import csv_text

# the moves that are demand: a till sale, an online order handed over, and a return (which undoes one)
DEMAND_REASONS = ("sale", "pickup", "return")
SORTS = ("days_left", "suggested", "sold", "name", "sku")
_DEMAND = ", ".join(f"'{r}'" for r in DEMAND_REASONS)

# The window's demand per SKU. INDEXED BY: without statistics SQLite reads the window through the
# SKU index to save the GROUP BY's sort, which visits every move of a year (3 s on the benchmark's
# 1,000,000 moves instead of 0.2 s); the partial index holds only demand moves, by time.
_QUERY = f"""
WITH sold AS (
    SELECT sku, -sum(qty) AS units FROM stock_moves INDEXED BY stock_moves_demand
    WHERE reason IN ({_DEMAND}) AND created_at >= ? GROUP BY sku)
SELECT p.sku, p.name, p.unit, p.category, p.low_stock, coalesce(b.on_hand, 0) AS on_hand,
       coalesce(b.available, 0) AS available, max(coalesce(s.units, 0), 0) AS sold
FROM products p LEFT JOIN stock_balances b USING (sku) LEFT JOIN sold s USING (sku)
WHERE p.active = 1 AND (coalesce(b.available, 0) <= p.low_stock
                        OR coalesce(b.available, 0) * ? <= max(coalesce(s.units, 0), 0) * ?)
"""


def suggested_qty(sold: int, velocity_days: int, lead_time_days: int, cover_days: int, available: int) -> int:
    """⌈sold / velocity_days × (lead + cover) − available⌉, at least 0, in whole units (integer
    arithmetic: 7 sold in 28 days is 0.25 a day, exactly)."""
    need = sold * (lead_time_days + cover_days) - available * velocity_days
    return max(0, -(-need // velocity_days))


def days_left(sold: int, velocity_days: int, available: int) -> float | None:
    """Days the available stock lasts at the window's pace; None when nothing sold (it never runs out
    by selling), 0 when nothing is available."""
    if sold <= 0:
        return None
    return max(0, available) * velocity_days / sold


def _since(now: str, days: int) -> str:
    return iso(datetime.fromisoformat(now.replace("Z", "+00:00")) - timedelta(days=days))


def suggestions(conn: sqlite3.Connection, settings, now: str, *, category: str | None = None,
                sort: str = "days_left") -> dict:
    """The products to reorder now, with the figures behind each suggestion.

    settings: velocity_days, lead_time_days, cover_days, lead_time_by_category ([stock] in config.toml;
    each item says the lead time it was given). Sorts: days_left
    (soonest out first, unsold last), suggested (largest first), sold (fastest first), name, sku."""
    if sort not in SORTS:
        raise ValueError(f"sort must be one of {', '.join(SORTS)}")
    n, lead, cover = settings.velocity_days, settings.lead_time_days, settings.cover_days
    by_category = getattr(settings, "lead_time_by_category", None) or {}
    # SQL keeps what runs out within the longest lead time; each product's own is applied below
    rows = conn.execute(_QUERY, (_since(now, n), n, max([lead, *by_category.values()]))).fetchall()
    items, categories = [], set()
    for row in rows:
        item = dict(row)
        item["lead_time_days"] = by_category.get(item["category"], lead)
        item["low"] = item["available"] <= item["low_stock"]
        if not item["low"] and item["available"] * n > item["sold"] * item["lead_time_days"]:
            continue
        if item["category"]:
            categories.add(item["category"])
        if category and item["category"] != category:
            continue
        item["sold_per_day"] = round(item["sold"] / n, 2)
        item["days_left"] = days_left(item["sold"], n, item["available"])
        item["suggested"] = suggested_qty(item["sold"], n, item["lead_time_days"], cover, item["available"])
        items.append(item)
    items.sort(key=_SORT_KEYS[sort])
    return {"items": items, "categories": sorted(categories), "velocity_days": n, "lead_time_days": lead,
            "lead_time_by_category": dict(by_category), "cover_days": cover, "since": _since(now, n), "sort": sort, "category": category}


_SORT_KEYS = {
    "days_left": lambda i: (i["days_left"] is None, i["days_left"] or 0, -i["suggested"], i["sku"]),
    "suggested": lambda i: (-i["suggested"], i["sku"]),
    "sold": lambda i: (-i["sold"], i["sku"]),
    "name": lambda i: (i["name"], i["sku"]),
    "sku": lambda i: i["sku"],
}

CSV_HEADER = ("商品编码", "商品名称", "分类", "单位", "可用库存", "预警线", "近期销量", "日均销量", "可售天数", "建议补货")


def export_csv(found: dict) -> str:
    """The list for Excel, with Chinese headers."""
    return csv_text([CSV_HEADER] + [
        (excel_text(i["sku"]), i["name"], i["category"] or "", i["unit"], i["available"], i["low_stock"], i["sold"],
         f"{i['sold_per_day']:.2f}", "" if i["days_left"] is None else f"{i['days_left']:.1f}", i["suggested"])
        for i in found["items"]])
