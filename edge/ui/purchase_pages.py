"""补货建议 /ui/purchase: what to order now, from how fast each product sells ([stock] in config.toml),
filtered by category and sorted; the same list as a CSV for Excel."""

from __future__ import annotations

from aiohttp import web

from edge.core.clock import iso, utcnow
from edge.services.app_keys import CONFIG, STORE
from edge.store import purchase
from edge.ui.web import page, register_text

register_text({
    "zh": {"purchase_title": "补货建议", "purchase_hint": "按最近 {days} 天的销量（销售和线上自提，减去退货）计算日均销量；"
           "建议补货 = 日均销量 ×（到货 {lead} 天 + 备货 {cover} 天）− 可用库存，向上取整。列出低于预警线或到货前会卖完的商品。",
           "purchase_category": "分类", "purchase_all": "全部分类", "purchase_sort": "排序",
           "purchase_sort_days_left": "最先卖完", "purchase_sort_suggested": "建议数量最多", "purchase_sort_sold": "卖得最快",
           "purchase_sort_name": "商品名称", "purchase_sort_sku": "商品编码", "purchase_apply": "筛选",
           "purchase_export": "导出 CSV（Excel）", "purchase_col_name": "商品", "purchase_col_available": "可用",
           "purchase_col_sold": "日均销量", "purchase_col_days_left": "可售天数", "purchase_col_suggested": "建议补货",
           "purchase_no_sales": "无近期销量", "purchase_empty": "目前没有需要补货的商品", "purchase_count": "共 {n} 个商品",
           "purchase_low": "低于预警线",
           "purchase_more": "只显示前 {shown} 个，全部 {n} 个请导出", "purchase_lead_by_category": "另设到货天数的分类：",
           "purchase_lead_of": "{category} {days} 天"},
    "en": {"purchase_title": "Purchase suggestions", "purchase_hint": "Units sold a day over the last {days} days "
           "(sales and online pickups, less returns); suggested = sold a day × (lead time {lead} days + cover "
           "{cover} days) − available, rounded up. Listed: at or below the threshold, or out before goods arrive.",
           "purchase_category": "Category", "purchase_all": "All categories", "purchase_sort": "Sort",
           "purchase_sort_days_left": "Out soonest", "purchase_sort_suggested": "Largest suggestion",
           "purchase_sort_sold": "Fastest selling", "purchase_sort_name": "Name", "purchase_sort_sku": "SKU",
           "purchase_apply": "Filter", "purchase_export": "Export CSV (Excel)", "purchase_col_name": "Product",
           "purchase_col_available": "Available", "purchase_col_sold": "Sold a day",
           "purchase_col_days_left": "Days left", "purchase_col_suggested": "Suggested",
           "purchase_no_sales": "no recent sales", "purchase_empty": "Nothing needs ordering now",
           "purchase_count": "{n} products", "purchase_low": "low",
           "purchase_more": "The first {shown} are shown: export all {n}",
           "purchase_lead_by_category": "Categories with a lead time of their own: ",
           "purchase_lead_of": "{category} {days} days"},
})


def _query(request: web.Request) -> tuple[str | None, str]:
    category = request.query.get("category", "").strip()[:100] or None
    sort = request.query.get("sort", "days_left")
    return category, sort if sort in purchase.SORTS else "days_left"


async def _suggestions(request: web.Request) -> dict:
    category, sort = _query(request)
    settings, now = request.app[CONFIG].stock, iso(utcnow())
    return await request.app[STORE].read(lambda conn: purchase.suggestions(conn, settings, now, category=category,
                                                                           sort=sort))


SHOWN = 500   # rows on the page; the export has them all


@page("/ui/purchase", role="manager", template="purchase.html")
async def purchase_page(request: web.Request):
    found = await _suggestions(request)
    return {"found": found, "shown": found["items"][:SHOWN], "sorts": purchase.SORTS}


@page("/ui/purchase/export", role="manager")
async def purchase_export(request: web.Request):
    found = await _suggestions(request)
    return web.Response(body=purchase.export_csv(found).encode("utf-8"), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": 'attachment; filename="purchase-suggestions.csv"',
                                 "Cache-Control": "no-store"})
