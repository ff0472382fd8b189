"""The cashier screen's last scans, each as what it meant: a pickup code's order number and what became of
it, a product's name, a coupon's title, a payment code masked. Never the text of a token: a pickup QR
code shown on a screen is a pickup QR code anyone can photograph.

A code read again and again (a phone held in front of the camera, a used code shown once more) is one
row with a count (edge/store/scans.py `latest_runs`: collapsed in the read, the journal keeps each scan).
What a pickup scan led to is read now, from the order: handed over after the first reading of the run
(核销成功), before it (已核销过), cancelled, still open... A token is verified as of when it was read.
"""

from __future__ import annotations

from pydantic import ValidationError

from edge.core.classify import REASONS, Classified
from edge.core.clock import epoch
from edge.core.errors import InputError
from edge.store import catalog, coupons, orders, pickups, scans, stock
from edge.ui.cashier_text import SCAN_REFUSED

LAST_SCANS = 10
REPEAT_WINDOW = 60.0                       # seconds: the same code again within this is the same run
HARDWARE = ("serial", "hid", "camera")     # sources of the store's own scanners and cameras
LOOKUP_KINDS = ("pickup_token", "coupon_token", "pickup_code")


def find_product(conn, classified: Classified) -> dict | None:
    """The product (with its stock) a product barcode, GS1 code or weighed label names; None if unknown."""
    keys = list(classified.lookup)
    if classified.kind == "weighed":
        keys = [classified.text, classified.item, classified.item.lstrip("0") if classified.item else None]
    keys += [classified.gtin, classified.text]
    seen = set()
    for key in keys:
        if not key or key in seen:
            continue
        seen.add(key)
        sku = catalog.sku_for_barcode(conn, key)
        if sku is not None:
            return {**catalog.get_product(conn, sku), "stock": stock.get_balance(conn, sku), "code": key}
    return None


def last_scans(conn, store_id: str, limit: int = LAST_SCANS) -> list[dict]:
    """The newest runs of scans, newest first, each with `meaning` (what the row says) and no text."""
    out = []
    for run in scans.latest_runs(conn, limit, REPEAT_WINDOW):
        classified = scans.as_classified(run["text"], run["kind"], run["detail"])
        checks = pickups.Checks(store_id=store_id, online=True, now=epoch(run["first_at"]))
        read = member_meaning(run["detail"]) if run["kind"] == "member_code" else \
            meaning(conn, classified, checks, run["first_at"])
        out.append({key: run[key] for key in ("seq", "device", "source", "kind", "scanned_at", "count", "first_at")}
                   | {"meaning": read,
                      "can_look_up": run["source"] in HARDWARE and run["kind"] in LOOKUP_KINDS})
    return out


def member_meaning(stored: dict) -> dict:
    """A member code as the scan router found it when it was read (edge/services/scan_router.py): the
    member, masked, or the refusal; a code is checked once, so it is never checked again here."""
    member = stored.get("member")
    if member:
        return {"member": member, "result": None}
    return {"result": _refused(stored.get("refused") or "malformed")}


def meaning(conn, classified: Classified, checks: pickups.Checks, first_at: str) -> dict:
    """{result: a text key or None, order_number, product, title, code}: what the row shows."""
    kind = classified.kind
    if kind in ("pickup_token", "pickup_code"):
        return _pickup(conn, classified, checks, first_at)
    if kind == "coupon_token":
        try:
            described = coupons.describe(conn, classified.text, checks)
        except InputError as exc:
            return {"result": _refused(exc.code)}
        return {"title": described["coupon"]["title"], "result": None}
    if kind in ("product", "gs1", "weighed"):
        product = find_product(conn, classified)
        if product is None:
            return {"result": "cashier_scan_not_in_catalog", "code": classified.gtin or classified.text}
        return {"product": product["name"], "result": None, "weight_g": classified.weight_g}
    if kind == "payment_code":   # stored masked (edge/store/scans.py)
        return {"code": classified.text, "result": None}
    return {"result": f"cashier_why_{classified.reason}" if classified.reason in REASONS
            else "cashier_scan_unreadable"}


def _pickup(conn, classified: Classified, checks: pickups.Checks, first_at: str) -> dict:
    try:
        body = pickups.PickupIn(token=classified.text) if classified.kind == "pickup_token" else \
            pickups.PickupIn(code=classified.text)
    except ValidationError:
        return {"result": "cashier_scan_unreadable"}
    found = pickups.identify(conn, body, checks)
    if found.refused is not None:
        return {"result": _refused(found.refused.code)}
    order = orders.find_order(conn, found.order_id) if found.order_id else None
    if order is None:
        return {"result": "cashier_scan_not_found"}
    out = {"order_number": order["number"]}
    if order["state"] == "picked_up":
        handed = next((p for p in pickups.for_order(conn, order["id"]) if p["reversed_at"] is None), None)
        # handed over after the run's first reading: this scan was the one handed over
        done = handed is not None and handed["verified_at"] >= first_at
        return out | {"result": "cashier_scan_handed" if done else "cashier_scan_used"}
    return out | {"result": f"cashier_state_{order['state']}"}


def _refused(reason: str) -> str:
    if reason == "already_used":
        return "cashier_scan_used"
    return f"cashier_scan_refused_{reason}" if reason in SCAN_REFUSED["zh"] else "cashier_scan_unreadable"
