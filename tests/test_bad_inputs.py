"""A table of malformed requests. Each must get a 4xx JSON error naming the offending field (where
there is one), no stack trace, and leave the database byte-for-byte as it was.

Before each case the store holds the seeded catalog plus one sale (its id replaces "{sale}" in
paths) recorded with the Idempotency-Key "used-key", so a case can reuse that key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

import pytest
from conftest import BARCODE, dump, new_key

SALE_LINE = {"sku": "DRK-001", "qty": 1}
CASH = [{"method": "cash", "amount_fen": 200}]
USED_KEY_BODY = {"lines": [{"sku": "DRK-001", "qty": 2}], "payments": [{"method": "cash", "amount_fen": 400}]}
VALID_EAN_NOT_IN_CATALOG = "6900000000001"  # 690000000000 + check digit 1
AUTO = object()
JSON = "application/json"


def sale(**changes) -> dict:
    return {"lines": [SALE_LINE], "payments": CASH, **changes}


def line(**changes) -> dict:
    """A sale with one line, the line changed (None removes a key)."""
    item = {k: v for k, v in {**SALE_LINE, **changes}.items() if v is not None}
    return sale(lines=[item])


@dataclass
class Case:
    id: str
    method: str
    path: str
    body: Any = None              # JSON-encoded unless `raw` is given
    raw: bytes | None = None
    content_type: str | None = JSON
    key: Any = AUTO               # AUTO: a fresh key; None: no header
    status: int = 422
    code: str | None = None
    fields: list[str] = dc_field(default_factory=list)  # each must be among the error's fields


def post(id, path, body=None, **kw) -> Case:
    return Case(id, "POST", path, body, **kw)


def get(id, path, **kw) -> Case:
    return Case(id, "GET", path, content_type=None, key=None, **kw)


CASES = [
    # -- the body as bytes ------------------------------------------------------------------------
    post("invalid-json", "/sales", raw=b'{"lines": [', status=400, code="invalid_json"),
    post("trailing-comma", "/sales", raw=b'{"lines": [], }', status=400, code="invalid_json"),
    post("empty-body", "/sales", raw=b"", status=400, code="invalid_json"),
    post("non-utf8-bytes", "/sales", raw=b'{"lines": [], "note": "\xff\xfe"}', status=400, code="invalid_json"),
    post("gbk-encoded-body", "/sales", raw=json.dumps(sale(cashier="小王收银"), ensure_ascii=False).encode("gbk"),
         status=400, code="invalid_json"),
    post("utf16-body", "/sales", raw=json.dumps(sale()).encode("utf-16"), content_type=f"{JSON}; charset=utf-16",
         status=400, code="invalid_json"),
    post("nan", "/sales", raw=b'{"lines": [{"sku": "DRK-001", "qty": NaN}], "payments": []}', status=400,
         code="invalid_json"),
    post("infinity", "/receipts", raw=b'{"lines": [{"sku": "DRK-001", "qty": Infinity}]}', status=400,
         code="invalid_json"),
    post("minus-infinity", "/adjustments", raw=b'{"lines": [{"sku": "DRK-001", "qty": -Infinity}], "note": "x"}',
         status=400, code="invalid_json"),
    post("5000-digit-int", "/sales", raw=b'{"lines": [{"sku": "DRK-001", "qty": ' + b"9" * 5000 + b"}]}",
         status=400, code="invalid_json"),
    post("nested-100k-deep", "/sales", raw=b"[" * 100_000 + b"]" * 100_000, status=400, code="invalid_json"),
    post("text-plain", "/sales", raw=json.dumps(sale()).encode(), content_type="text/plain", status=415,
         code="unsupported_media_type"),
    post("no-content-type", "/sales", raw=json.dumps(sale()).encode(), content_type=None, status=415,
         code="unsupported_media_type"),
    post("form-encoded", "/receipts", raw=b"sku=DRK-001&qty=1", content_type="application/x-www-form-urlencoded",
         status=415, code="unsupported_media_type"),
    post("body-too-large", "/receipts", {"lines": [{"sku": "DRK-001", "qty": 1}], "note": "x" * (257 * 1024)},
         status=413, code="body_too_large"),

    # -- the body's shape -------------------------------------------------------------------------
    post("empty-object", "/sales", {}, code="invalid_body", fields=["lines", "payments"]),
    post("array-not-object", "/sales", [sale()], code="invalid_body", fields=["(body)"]),
    post("string-not-object", "/counts", "lines", code="invalid_body", fields=["(body)"]),
    post("null-body", "/receipts", None, raw=b"null", code="invalid_body", fields=["(body)"]),
    post("lines-object-not-array", "/sales", sale(lines={"0": SALE_LINE}), fields=["lines"]),
    post("line-array-not-object", "/sales", sale(lines=[["DRK-001", 1]]), fields=["lines[0]"]),
    post("unknown-field", "/sales", sale(colour="红"), fields=["colour"]),
    post("unknown-line-field", "/sales", line(price=100), fields=["lines[0].price"]),
    post("missing-payments", "/sales", {"lines": [SALE_LINE]}, fields=["payments"]),
    post("empty-payments", "/sales", sale(payments=[]), fields=["payments"]),
    post("empty-lines", "/sales", sale(lines=[]), fields=["lines"]),
    post("too-many-lines", "/sales", sale(lines=[SALE_LINE] * 501), fields=["lines"]),
    post("too-many-payments", "/sales", sale(payments=[{"method": "cash", "amount_fen": 20}] * 11),
         fields=["payments"]),

    # -- integers ---------------------------------------------------------------------------------
    post("qty-string", "/sales", line(qty="2"), fields=["lines[0].qty"]),
    post("qty-float-whole", "/sales", line(qty=2.0), fields=["lines[0].qty"]),
    post("qty-float", "/sales", line(qty=1.5), fields=["lines[0].qty"]),
    post("qty-bool", "/sales", line(qty=True), fields=["lines[0].qty"]),
    post("qty-null", "/sales", sale(lines=[{"sku": "DRK-001", "qty": None}]), fields=["lines[0].qty"]),
    post("qty-missing", "/sales", line(qty=None), fields=["lines[0].qty"]),
    post("qty-zero", "/sales", line(qty=0), fields=["lines[0].qty"]),
    post("qty-negative", "/sales", line(qty=-1), fields=["lines[0].qty"]),
    post("qty-huge", "/sales", line(qty=10**30), fields=["lines[0].qty"]),
    post("qty-1e400", "/sales", raw=b'{"lines": [{"sku": "DRK-001", "qty": 1e400}], "payments": []}',
         fields=["lines[0].qty"]),
    post("amount-string", "/sales", sale(payments=[{"method": "cash", "amount_fen": "200"}]),
         fields=["payments[0].amount_fen"]),
    post("amount-zero", "/sales", sale(payments=[{"method": "cash", "amount_fen": 0}]),
         fields=["payments[0].amount_fen"]),
    post("amount-huge", "/sales", sale(payments=[{"method": "cash", "amount_fen": 2**63}]),
         fields=["payments[0].amount_fen"]),
    post("price-negative", "/sales", line(unit_price_fen=-1), fields=["lines[0].unit_price_fen"]),
    post("discount-negative", "/sales", line(discount_fen=-5), fields=["lines[0].discount_fen"]),

    # -- product references -----------------------------------------------------------------------
    post("sku-and-barcode", "/sales", line(barcode=BARCODE["DRK-001"]), fields=["lines[0]"]),
    post("neither-sku-nor-barcode", "/sales", line(sku=None), fields=["lines[0]"]),
    post("sku-with-space", "/sales", line(sku="DRK 001"), fields=["lines[0].sku"]),
    post("sku-too-long", "/sales", line(sku="A" * 65), fields=["lines[0].sku"]),
    post("sku-int", "/sales", line(sku=1001), fields=["lines[0].sku"]),
    post("barcode-non-ascii", "/sales", line(sku=None, barcode="６９２"), fields=["lines[0].barcode"]),
    post("unknown-sku", "/sales", line(sku="NOPE-404"), code="unknown_sku", fields=["lines[0].sku"]),
    post("unknown-barcode", "/sales", line(sku=None, barcode=VALID_EAN_NOT_IN_CATALOG), code="unknown_barcode",
         fields=["lines[0].barcode"]),
    post("unknown-sku-second-line", "/receipts", {"lines": [{"sku": "DRK-001", "qty": 1}, {"sku": "x", "qty": 1}]},
         code="unknown_sku", fields=["lines[1].sku"]),

    # -- sale rules -------------------------------------------------------------------------------
    post("unknown-payment-method", "/sales", sale(payments=[{"method": "bitcoin", "amount_fen": 200}]),
         fields=["payments[0].method"]),
    post("payment-method-chinese", "/sales", sale(payments=[{"method": "现金", "amount_fen": 200}]),
         fields=["payments[0].method"]),
    post("underpaid", "/sales", sale(payments=[{"method": "cash", "amount_fen": 199}]), code="underpaid",
         fields=["payments"]),
    post("non-cash-overpay", "/sales", sale(payments=[{"method": "wechat", "amount_fen": 201}]), code="overpaid",
         fields=["payments"]),
    post("line-discount-too-large", "/sales", line(qty=2, discount_fen=401), code="discount_too_large",
         fields=["lines[0].discount_fen"]),
    post("sale-discount-too-large", "/sales", sale(discount_fen=201), code="discount_too_large",
         fields=["discount_fen"]),
    post("cashier-empty", "/sales", sale(cashier=""), fields=["cashier"]),
    post("note-too-long", "/sales", sale(note="长" * 201), fields=["note"]),
    post("note-lone-surrogate", "/sales", raw=json.dumps(sale(note="\ud800")).encode(), fields=["note"]),

    # -- returns ----------------------------------------------------------------------------------
    post("return-unknown-sale", "/sales/00000000-0000-4000-8000-000000000000/returns",
         {"lines": [{"line_no": 1, "qty": 1}], "refund_method": "cash"}, status=404, code="unknown_sale",
         fields=["sale_id"]),
    post("return-unknown-line", "/sales/{sale}/returns", {"lines": [{"line_no": 9, "qty": 1}],
                                                          "refund_method": "cash"},
         code="unknown_line", fields=["lines[0].line_no"]),
    post("return-duplicate-line", "/sales/{sale}/returns", {"lines": [{"line_no": 1, "qty": 1},
                                                                      {"line_no": 1, "qty": 1}],
                                                            "refund_method": "cash"},
         code="duplicate_line", fields=["lines[1].line_no"]),
    post("return-more-than-sold", "/sales/{sale}/returns", {"lines": [{"line_no": 1, "qty": 3}],
                                                            "refund_method": "cash"},
         code="exceeds_sold", fields=["lines[0].qty"]),
    post("return-line-zero", "/sales/{sale}/returns", {"lines": [{"line_no": 0, "qty": 1}], "refund_method": "cash"},
         fields=["lines[0].line_no"]),
    post("return-no-refund-method", "/sales/{sale}/returns", {"lines": [{"line_no": 1, "qty": 1}]},
         fields=["refund_method"]),
    post("return-restock-string", "/sales/{sale}/returns", {"lines": [{"line_no": 1, "qty": 1}],
                                                            "refund_method": "cash", "restock": "no"},
         fields=["restock"]),
    post("return-no-lines", "/sales/{sale}/returns", {"lines": [], "refund_method": "cash"}, fields=["lines"]),

    # -- goods received, adjustments, counts ------------------------------------------------------
    post("receipt-negative-qty", "/receipts", {"lines": [{"sku": "DRK-001", "qty": -5}]}, fields=["lines[0].qty"]),
    post("receipt-negative-cost", "/receipts", {"lines": [{"sku": "DRK-001", "qty": 5, "cost_fen": -1}]},
         fields=["lines[0].cost_fen"]),
    post("receipt-unknown-barcode", "/receipts", {"lines": [{"barcode": VALID_EAN_NOT_IN_CATALOG, "qty": 5}]},
         code="unknown_barcode", fields=["lines[0].barcode"]),
    post("adjustment-qty-zero", "/adjustments", {"lines": [{"sku": "DRK-001", "qty": 0}], "note": "x"},
         fields=["lines[0]"]),
    post("adjustment-without-note", "/adjustments", {"lines": [{"sku": "DRK-001", "qty": -1}]}, fields=["note"]),
    post("adjustment-empty-note", "/adjustments", {"lines": [{"sku": "DRK-001", "qty": -1}], "note": ""},
         fields=["note"]),
    post("adjustment-qty-too-large", "/adjustments", {"lines": [{"sku": "DRK-001", "qty": -1_000_001}],
                                                      "note": "x"}, fields=["lines[0].qty"]),
    post("adjustment-duplicate-sku", "/adjustments", {"lines": [{"sku": "DRK-001", "qty": 1},
                                                                {"sku": "DRK-001", "qty": 1}], "note": "x"},
         code="duplicate_line", fields=["lines[1]"]),
    post("count-negative", "/counts", {"lines": [{"sku": "DRK-001", "counted": -1}]}, fields=["lines[0].counted"]),
    post("count-string", "/counts", {"lines": [{"sku": "DRK-001", "counted": "5"}]}, fields=["lines[0].counted"]),
    post("count-duplicate-sku", "/counts", {"lines": [{"sku": "DRK-001", "counted": 1},
                                                      {"sku": "DRK-002", "counted": 1},
                                                      {"barcode": BARCODE["DRK-001"], "counted": 1}]},
         code="duplicate_line", fields=["lines[2]"]),
    post("count-unknown-sku", "/counts", {"lines": [{"sku": "NOPE", "counted": 1}]}, code="unknown_sku",
         fields=["lines[0].sku"]),

    # -- Idempotency-Key --------------------------------------------------------------------------
    post("key-missing", "/sales", sale(), key=None, status=400, code="idempotency_key_missing",
         fields=["Idempotency-Key"]),
    post("key-empty", "/sales", sale(), key="", status=400, code="idempotency_key_invalid",
         fields=["Idempotency-Key"]),
    post("key-too-long", "/sales", sale(), key="k" * 129, status=400, code="idempotency_key_invalid",
         fields=["Idempotency-Key"]),
    post("key-with-space", "/sales", sale(), key="my key", status=400, code="idempotency_key_invalid",
         fields=["Idempotency-Key"]),
    post("key-non-ascii", "/sales", sale(), key="幂等键", status=400, code="idempotency_key_invalid",
         fields=["Idempotency-Key"]),
    post("key-reused-other-body", "/sales", sale(), key="used-key", code="idempotency_key_reused",
         fields=["Idempotency-Key"]),
    post("key-reused-other-path", "/receipts", {"lines": [{"sku": "DRK-001", "qty": 2}]}, key="used-key",
         code="idempotency_key_reused", fields=["Idempotency-Key"]),
    post("key-missing-and-bad-body", "/counts", raw=b"nope", key=None, status=400, code="idempotency_key_missing",
         fields=["Idempotency-Key"]),

    # -- queries and paths ------------------------------------------------------------------------
    get("limit-zero", "/stock?limit=0", status=400, code="invalid_query", fields=["limit"]),
    get("limit-abc", "/stock?limit=abc", status=400, code="invalid_query", fields=["limit"]),
    get("limit-too-big", "/stock?limit=1001", status=400, code="invalid_query", fields=["limit"]),
    get("limit-float", "/stock/DRK-001/moves?limit=1.5", status=400, code="invalid_query", fields=["limit"]),
    get("limit-huge", "/sales?limit=" + "9" * 30, status=400, code="invalid_query", fields=["limit"]),
    get("low-maybe", "/stock?low=maybe", status=400, code="invalid_query", fields=["low"]),
    get("q-too-long", "/stock?q=" + "薯" * 101, status=400, code="invalid_query", fields=["q"]),
    get("date-month-13", "/sales?date=2026-13-01", status=400, code="invalid_query", fields=["date"]),
    get("date-feb-30", "/sales?date=2026-02-30", status=400, code="invalid_query", fields=["date"]),
    get("date-compact", "/sales?date=20260101", status=400, code="invalid_query", fields=["date"]),
    get("date-empty", "/sales?date=", status=400, code="invalid_query", fields=["date"]),
    get("sales-after-negative", "/sales?after=-1", status=400, code="invalid_query", fields=["after"]),
    get("before-negative", "/stock/DRK-001/moves?before=-1", status=400, code="invalid_query", fields=["before"]),
    get("before-beyond-int64", "/stock/DRK-001/moves?before=9223372036854775808", status=400,
        code="invalid_query", fields=["before"]),
    get("moves-unknown-sku", "/stock/NOPE/moves", status=404, code="unknown_sku", fields=["sku"]),
    get("unknown-product", "/products/NOPE", status=404, code="unknown_sku", fields=["sku"]),
    get("unknown-barcode-lookup", "/barcodes/" + VALID_EAN_NOT_IN_CATALOG, status=404, code="unknown_barcode",
        fields=["code"]),
    get("unknown-route", "/nothing", status=404, code="not_found"),
    get("get-on-post-only", "/receipts", status=405, code="method_not_allowed"),
    Case("delete-sale", "DELETE", "/sales/{sale}", status=405, code="method_not_allowed", content_type=None,
         key=None),
]

assert len({case.id for case in CASES}) == len(CASES)


@pytest.fixture
async def prepared(api):
    """One sale (2 x DRK-001), recorded with the key 'used-key'; returns its id."""
    status, body, _ = await api.post("/sales", USED_KEY_BODY, key="used-key")
    assert status == 201, body
    return body["sale"]["id"]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_bad_request_changes_nothing(case: Case, api, prepared, db_path):
    path = "/api/v1" + case.path.replace("{sale}", prepared)
    headers = {}
    if case.content_type is not None:
        headers["Content-Type"] = case.content_type
    if case.key is AUTO:
        headers["Idempotency-Key"] = new_key()
    elif case.key is not None:
        headers["Idempotency-Key"] = case.key
    if case.raw is not None:
        data = case.raw
    elif case.method == "POST":
        data = json.dumps(case.body, ensure_ascii=False).encode()
    else:
        data = None

    before = dump(db_path)
    resp = await api.client.request(case.method, path, data=data, headers=headers,
                                    skip_auto_headers=["Content-Type"])
    text = await resp.text()

    assert 400 <= resp.status < 500, (resp.status, text)
    assert resp.status == case.status, text
    assert "Traceback" not in text and 'File "' not in text
    assert resp.content_type == "application/json"
    body = json.loads(text)
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "fields"}
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["fields"], list)
    assert all(set(f) == {"field", "reason"} and f["reason"] for f in error["fields"])
    if case.code is not None:
        assert error["code"] == case.code, error
    named = [f["field"] for f in error["fields"]]
    for field in case.fields:
        assert field in named, error
    if case.status == 422:  # a body that parses but is wrong always says where
        assert named, error
    assert "Idempotent-Replayed" not in resp.headers

    assert dump(db_path) == before


# -- malformed HTTP, methods, the Server header (the real server, as `store-edge run` serves it) -----------

async def _raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await reader.read()  # aiohttp closes the connection after a parse error
    writer.close()
    return answer


@contextlib.asynccontextmanager
async def served(config):
    """The daemon's app served as `store-edge run` serves it (serve_until_stopped); yields its port."""
    from edge.app import build_app  # noqa: PLC0415
    from edge.core.serving import serve_until_stopped  # noqa: PLC0415
    from tests.helpers_daemon import free_port  # noqa: PLC0415

    port, stop, listening = free_port(), asyncio.Event(), asyncio.Event()

    @contextlib.asynccontextmanager
    async def serving(runner):
        listening.set()
        yield

    task = asyncio.create_task(serve_until_stopped(build_app(config), "127.0.0.1", port, stop=stop,
                                                   while_serving=serving))
    await asyncio.wait_for(listening.wait(), 30)
    try:
        yield port
    finally:
        stop.set()
        await task  # waits for the handlers to end


async def test_an_over_long_url_or_header_is_one_warning_line_and_names_no_versions(config, caplog):
    caplog.set_level(logging.DEBUG)
    async with served(config) as port:
        long_url = await _raw(port, b"GET /api/v1/health?" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        long_header = await _raw(port, b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20000
                                 + b"\r\n\r\n")
        fine = await _raw(port, b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        wrong_method = await _raw(port, b"DELETE /api/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    for answer in (long_url, long_header):
        head = answer.split(b"\r\n\r\n")[0].decode().lower()
        assert head.split("\r\n")[0].endswith(" 400 bad request"), head
        assert "python" not in head and "aiohttp" not in head, head
    assert fine.startswith(b"HTTP/1.1 200")
    head = fine.split(b"\r\n\r\n")[0].decode().lower()
    assert "server: store-edge\r\n" in head + "\r\n" and "python" not in head and "aiohttp" not in head, head
    assert wrong_method.startswith(b"HTTP/1.1 405")
    assert "\r\nallow: get" in wrong_method.split(b"\r\n\r\n")[0].decode().lower()
    refused = [r for r in caplog.records if r.getMessage() == "malformed request refused"]
    assert len(refused) == 2 and all(r.levelname == "WARNING" and not r.exc_info for r in refused)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]


async def test_a_till_that_disconnects_mid_request_is_one_info_line(config, caplog):
    """A till switched off mid-sale drops its connection mid-body: the daemon, served as `store-edge run`
    serves it (handlers not cancelled on disconnect), logs one info line, no error, no traceback, and
    the half-sent sale is not recorded."""
    from tests.helpers_daemon import drop_mid_body  # noqa: PLC0415

    before = dump(config.db_path)
    caplog.set_level(logging.INFO)
    async with served(config) as port:
        caplog.clear()
        body = json.dumps({"lines": [{"barcode": BARCODE, "qty": 1}],
                           "payments": [{"method": "cash", "amount_fen": 10000}]}).encode()
        await drop_mid_body(port, f"POST /api/v1/sales HTTP/1.1\r\nHost: x\r\nIdempotency-Key: {new_key()}\r\n"
                            "Content-Type: application/json\r\n", body)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info] == []
    assert [(r.levelname, r.getMessage()) for r in caplog.records if "disconnected" in r.getMessage()] == [
        ("INFO", "client disconnected mid-request")]
    assert dump(config.db_path) == before
