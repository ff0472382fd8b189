"""/metrics: counters that move, a strictly parsed exposition, bounded route labels, the access rule.

The app is the daemon's own (edge.app.build_app installs /metrics). One test-only middleware, outside everything,
lets a request claim a non-loopback peer address (X-Test-Remote) to exercise the access rule.
"""

from __future__ import annotations

import math
import re
import sqlite3

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from drivers.virtual_printer import VirtualPrinter
from edge.api import metrics
from edge.app import build_app
from edge.core import config as config_mod
from edge.core.clock import iso, utcnow
from edge.services.app_keys import PRINTING, STORE
from edge.store import api_tokens, counters
from tests.conftest import BARCODE, PRICE, Api, seed, write_config

SALE = {"lines": [{"barcode": BARCODE["DRK-001"], "qty": 2}, {"sku": "SNK-001", "qty": 1}],
        "payments": [{"method": "cash", "amount_fen": 2000}], "cashier": "小王"}
SALE_FEN = 2 * PRICE["DRK-001"] + PRICE["SNK-001"]


# -- a strict parser of the text format (0.0.4) ---------------------------------------------------

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
SAMPLE = re.compile(rf"^({NAME})(?:\{{(.*)\}})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def parse_labels(text: str) -> dict[str, str]:
    labels, pos = {}, 0
    while pos < len(text):
        m = LABEL.match(text, pos)
        assert m, f"bad labels at {text[pos:]!r}"
        assert m.group(1) not in labels, f"label {m.group(1)} twice"
        labels[m.group(1)] = re.sub(r'\\[\\"n]', lambda e: UNESCAPE[e.group(0)], m.group(2))
        pos = m.end()
        if pos < len(text):
            assert text[pos] == ",", f"expected ',' in {text!r}"
            pos += 1
    return labels


def parse_value(text: str) -> float:
    if text in ("+Inf", "-Inf", "NaN"):
        return float(text.replace("Inf", "inf").replace("NaN", "nan"))
    assert re.fullmatch(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?", text), f"bad value {text!r}"
    return float(text)


def parse(text: str) -> dict:
    """{family: {"type", "help", "samples": [(name, labels, value)]}}; asserts the format's rules."""
    assert text.endswith("\n")
    families: dict[str, dict] = {}
    current = None
    for line in text.split("\n")[:-1]:
        if line == "":
            continue
        if line.startswith("#"):
            m = re.fullmatch(rf"# (HELP|TYPE) ({NAME}) ?(.*)", line)
            if m is None:
                continue  # a plain comment
            kind, name, rest = m.groups()
            fam = families.setdefault(name, {"samples": []})
            assert kind.lower() not in fam, f"second {kind} for {name}"
            assert not fam["samples"], f"{kind} for {name} after its samples"
            if kind == "TYPE":
                assert rest in ("counter", "gauge", "histogram", "summary", "untyped"), line
                assert "help" in fam, f"TYPE before HELP for {name}"
            fam[kind.lower()] = rest
            current = name
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample: {line!r}"
        name, labels, value = m.group(1), parse_labels(m.group(2) or ""), parse_value(m.group(3))
        fam_name = name
        if current and families[current].get("type") == "histogram" and name in (
                f"{current}_bucket", f"{current}_sum", f"{current}_count"):
            fam_name = current
        assert fam_name == current, f"{name} outside its family (current {current})"
        fam = families[fam_name]
        assert "help" in fam and "type" in fam, f"{name} without HELP and TYPE"
        families[fam_name]["samples"].append((name, labels, value))
    for name, fam in families.items():
        assert name.startswith("store_edge_"), name
        assert "type" in fam and "help" in fam, name
        if fam["type"] == "counter":
            assert name.endswith("_total"), name
            assert all(v >= 0 for _, _, v in fam["samples"]), name
        seen = [(n, tuple(sorted(lbl.items()))) for n, lbl, _ in fam["samples"]]
        assert len(seen) == len(set(seen)), f"duplicate series in {name}"
        if fam["type"] == "histogram":
            check_histogram(name, fam["samples"])
    return families


def check_histogram(name: str, samples) -> None:
    series: dict[tuple, dict] = {}
    for sample, labels, value in samples:
        key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        entry = series.setdefault(key, {"buckets": []})
        if sample.endswith("_bucket"):
            entry["buckets"].append((parse_value(labels["le"]), value))
        else:
            entry[sample.rsplit("_", 1)[1]] = value
    for key, entry in series.items():
        bounds = [b for b, _ in entry["buckets"]]
        counts = [c for _, c in entry["buckets"]]
        assert bounds == sorted(bounds) and bounds[-1] == math.inf, (name, key, bounds)
        assert counts == sorted(counts), f"buckets not cumulative: {name} {key}"
        assert counts[-1] == entry["count"], f"+Inf != _count: {name} {key}"
        assert "sum" in entry, (name, key)


def value(families: dict, name: str, **labels) -> float:
    family = families.get(name) or families[name.rsplit("_", 1)[0]]
    found = [v for n, lbl, v in family["samples"] if n == name and all(lbl.get(k) == w for k, w in labels.items())]
    assert len(found) == 1, (name, labels, found)
    return found[0]


# -- the app under test ---------------------------------------------------------------------------

@web.middleware
async def fake_remote(request: web.Request, handler):
    """Test only: let a request say which address it comes from."""
    remote = request.headers.get("X-Test-Remote")
    return await handler(request.clone(remote=remote) if remote else request)


async def start_app(cfg) -> TestClient:
    app = build_app(cfg)
    app.middlewares.insert(0, fake_remote)     # test only
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.fixture
async def shop(tmp_path):
    async with VirtualPrinter(port=0) as vp:
        text = ('[printing]\nstatus_poll_seconds = 0.05\nstatus_ticket_at_start = false\n'
                f'[[printers]]\nname = "counter"\ntype = "network"\nhost = "127.0.0.1"\nport = {vp.port}\n')
        cfg = config_mod.load(write_config(tmp_path, text))
        seed(cfg.db_path)
        client = await start_app(cfg)
        try:
            yield client, vp
        finally:
            await client.close()


async def scrape(client, **headers) -> dict:
    resp = await client.get("/metrics", headers=headers)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"] == metrics.CONTENT_TYPE
    return parse(await resp.text())


async def settled(service) -> bool:
    rows = await service.store.read(lambda conn: conn.execute("SELECT state FROM print_jobs").fetchall())
    return bool(rows) and all(r[0] not in ("queued", "printing") for r in rows)


# -- tests ----------------------------------------------------------------------------------------

async def test_counters_move_after_a_sale_a_scan_and_printing(shop):
    client, vp = shop
    api, service = Api(client), client.server.app[PRINTING]
    await service.workers["counter"].checked.wait()
    before = await scrape(client)
    assert value(before, "store_edge_sales_total") == 0
    assert value(before, "store_edge_printer_state", printer="counter", state="ready") == 1
    assert value(before, "store_edge_printer_state", printer="counter", state="offline") == 0
    assert value(before, "store_edge_cloud_link", state="none") == 1
    assert value(before, "store_edge_cloud_link", state="online") == 0
    info = before["store_edge_build_info"]["samples"][0][1]
    assert set(info) == {"version", "python", "store"} and info["store"] == "test-store"

    sale = await api.ok("/sales", SALE)
    assert sale["sale"]["total_fen"] == SALE_FEN
    await api.ok("/scans", {"text": BARCODE["SNK-001"]})
    await api.ok("/scans", {"text": "204613", "typed": True})
    await service.wait_for(lambda: settled(service))

    after = await scrape(client)
    assert value(after, "store_edge_sales_total") == 1
    assert value(after, "store_edge_sales_amount_fen_total") == SALE_FEN
    assert value(after, "store_edge_scans_total", source="api", kind="product") == 1
    assert value(after, "store_edge_scans_total", source="typed") == 1
    assert value(after, "store_edge_print_jobs_finished_total", kind="receipt", result="printed") == 1
    assert value(after, "store_edge_print_jobs_finished_total", kind="drawer", result="printed") == 1
    assert after["store_edge_print_jobs_open"]["samples"] == []
    assert value(after, "store_edge_open_orders", state="received") == 0
    assert value(after, "store_edge_sync_queue_depth") >= 1  # the sale's event waits (no cloud)
    assert value(after, "store_edge_sync_oldest_unsent_age_seconds") >= 0
    assert value(after, "store_edge_uptime_seconds") > 0
    assert value(after, "store_edge_http_request_duration_seconds_count",
                 route="/api/v1/sales", method="POST", status="2xx") == 1

    # a restarted daemon counts the same from the store (a fresh tally reads it all once)
    fresh = metrics.Metrics()
    await fresh.read_store(client.server.app[STORE])
    assert fresh.tally.scans == client.server.app[metrics.METRICS].tally.scans
    assert fresh.tally.sales == (1, SALE_FEN)


async def test_route_labels_are_canonical_paths(shop):
    client, _ = shop
    for order_id in ("o-secret-4711", "o-secret-4712"):
        resp = await client.get(f"/api/v1/orders/{order_id}")
        assert resp.status == 404
    assert (await client.get("/no/such/page-8823")).status == 404
    text = await (await client.get("/metrics")).text()
    families = parse(text)
    assert "secret" not in text and "8823" not in text
    assert value(families, "store_edge_http_request_duration_seconds_count",
                 route="/api/v1/orders/{order_id}", method="GET", status="4xx") == 2
    assert value(families, "store_edge_http_request_duration_seconds_count",
                 route="unmatched", method="GET", status="4xx") == 1
    routes = {lbl["route"] for _, lbl, _ in families["store_edge_http_request_duration_seconds"]["samples"]}
    assert all(r == "unmatched" or r.startswith("/") for r in routes)


async def test_only_loopback_reads_without_a_token(shop):
    client, _ = shop
    lan = {"X-Test-Remote": "192.168.1.20"}
    assert (await client.get("/metrics", headers=lan)).status == 401
    assert (await client.get("/metrics", headers={**lan, "Authorization": "Bearer se_wrong"})).status == 401
    token = await client.server.app[STORE].write(api_tokens.create, "prometheus", iso(utcnow()))
    await scrape(client, **lan, Authorization=f"Bearer {token}")
    await scrape(client, **{"X-Test-Remote": "::1"})
    await client.server.app[STORE].write(api_tokens.revoke, "prometheus", iso(utcnow()))
    assert (await client.get("/metrics", headers={**lan, "Authorization": f"Bearer {token}"})).status == 401
    for address, loop in (("127.0.0.1", True), ("127.8.0.1", True), ("::1", True), ("::ffff:127.0.0.1", True),
                          ("10.0.0.1", False), ("::ffff:10.0.0.1", False), ("fe80::1%eth0", False), ("", False),
                          (None, False), ("not-an-ip", False)):
        assert metrics.is_loopback(address) is loop, address


def test_label_escaping_round_trips():
    out = metrics.Exposition()
    out.family("store_edge_test", "gauge", "a help line with a \\ and a\nnewline")
    tricky = 'back\\slash "quoted"\nnew line 打印机'
    out.sample("store_edge_test", 1, {"printer": tricky, "b": ""})
    text = out.text()
    assert 'printer="back\\\\slash \\"quoted\\"\\nnew line 打印机"' in text
    assert text.count("\n") == 3  # HELP, TYPE, one sample: nothing leaked onto a line of its own
    families = parse(text)
    assert families["store_edge_test"]["samples"] == [("store_edge_test", {"printer": tricky, "b": ""}, 1.0)]


def test_histogram_buckets_are_cumulative():
    h = metrics.Histogram()
    for seconds in (0.0005, 0.001, 0.003, 0.2, 7.0):
        h.observe(("/r", "GET", "2xx"), seconds)
    out = metrics.Exposition()
    h.expose(out, "store_edge_h_seconds", "test")
    families = parse(out.text())
    assert value(families, "store_edge_h_seconds_bucket", le="0.001") == 2  # le is inclusive
    assert value(families, "store_edge_h_seconds_bucket", le="0.005") == 3
    assert value(families, "store_edge_h_seconds_bucket", le="2.5") == 4
    assert value(families, "store_edge_h_seconds_bucket", le="+Inf") == 5
    assert value(families, "store_edge_h_seconds_sum") == pytest.approx(7.2045)


def test_print_job_tally_is_incremental_and_exact(tmp_path):
    """The frontier bookkeeping equals a plain GROUP BY, through state changes and confirmations."""
    cfg = config_mod.load(write_config(tmp_path))
    seed(cfg.db_path)
    conn = sqlite3.connect(cfg.db_path)
    conn.isolation_level = None

    def add(state, kind="receipt", resolution=None):
        n = conn.execute("SELECT count(*) FROM print_jobs").fetchone()[0]
        conn.execute("INSERT INTO print_jobs (key, kind, printer, payload, state, resolution, created_by, "
                     "created_at, expires_at, updated_at) VALUES (?, ?, 'counter', '{}', ?, ?, 't', 'x', 'x', 'x')",
                     (f"k{n}", kind, state, resolution))
        return conn.execute("SELECT max(id) FROM print_jobs").fetchone()[0]

    def truth():
        finished, open_ = {}, {}
        for kind, state, res, n in conn.execute("SELECT kind, state, resolution, count(*) FROM print_jobs "
                                                "GROUP BY 1, 2, 3"):
            target = open_ if state in ("queued", "printing") or (state == "uncertain" and res is None) else finished
            target[(kind, state)] = target.get((kind, state), 0) + n
        return {"open": open_, "finished": finished}

    tally = counters.Tally()

    def check():
        nonlocal tally
        tally, gauges = counters.collect(conn, tally)
        assert gauges["jobs_open"] == truth()
        assert counters.collect(conn, counters.Tally())[1]["jobs_open"] == truth()  # as after a restart

    for state in ("printed", "failed", "expired"):
        add(state)
    stuck = add("uncertain")
    add("uncertain", resolution="reprinted")
    add("printed", kind="drawer")
    check()
    queued = add("queued")
    add("printed")
    check()
    assert tally.jobs_frontier == queued and tally.jobs_pending == {stuck: "receipt"}
    conn.execute("UPDATE print_jobs SET state = 'printed', resolution = 'confirmed_printed' WHERE id = ?", (stuck,))
    conn.execute("UPDATE print_jobs SET state = 'printing' WHERE id = ?", (queued,))
    check()
    conn.execute("UPDATE print_jobs SET state = 'uncertain' WHERE id = ?", (queued,))
    add("queued", kind="order_ticket")
    check()
    assert tally.jobs_pending == {queued: "receipt"}
    conn.close()
