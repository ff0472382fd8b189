"""/metrics: the store's counters, gauges and request latencies in the Prometheus text format (0.0.4).

The text is prometheus_client's (`generate_latest`: escaping, number formatting, HELP/TYPE). Every
number except the latencies is read fresh at scrape time (from the store or from the subsystems' state
in memory) into metric families built per scrape; the only state kept between scrapes is the latency
histogram, in a CollectorRegistry of this app (never the library's global one, which would be shared by
every app of a process, as the tests build many), and the bookkeeping below.

Counters come from the store, so they survive restarts. Reading them stays cheap however old the
store is: the append-only tables (scans, sales, returns, coupon redemptions) are read only past the
last row seen (a primary-key range), and print jobs past a "frontier" (the oldest job that can still
change state); everything below it is kept in memory, counted once after each start. One scrape is
one read transaction on one reader thread (never the loop), so every number comes from one snapshot.

Access: from loopback, no token; from anywhere else, the same per-device bearer token as the API
(`store-edge token add prometheus`), whatever `tokens_required` says.

Wiring (edge/app.py, build_app): `metrics.install(app)` before the app starts: it puts
`metrics_middleware` first (outermost, so it times auth and error handling too), adds GET /metrics
and the registry under METRICS.
"""

from __future__ import annotations

import asyncio
import ipaddress
import platform
import time
from contextlib import contextmanager
from datetime import datetime, timezone

import prometheus_client
from aiohttp import web
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from edge.core.errors import InputError
from edge.services.app_keys import CONFIG, DEVICES, PRINTING, STARTED, STORE, SYNC
from edge.store import api_tokens, counters, job_runs

CONTENT_TYPE = prometheus_client.CONTENT_TYPE_PLAIN_0_0_4   # what generate_latest writes
PATH = "/metrics"
# a local API on the store's PC: most answers take a few ms; a write waits for an fsync (tens of ms)
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_LABELS = ("route", "method", "status")

LINK_STATES = ("connecting", "online", "offline", "busy", "auth_failed", "refused", "error")
PRINTER_STATES = ("unknown", "ready", "paper_near_end", "paper_out", "cover_open", "offline", "unreachable",
                  "no_status", "disabled")
DEVICE_STATES = ("connecting", "connected", "disconnected", "stopped", "ended", "disabled")


# -- one scrape's families ------------------------------------------------------------------------

class Exposition(Collector):
    """Metric families in order, collected by prometheus_client into the text format."""

    def __init__(self):
        self.families: list[Metric] = []
        self._seen: set[str] = set()
        self._current = ""

    def family(self, name: str, kind: str, help_text: str) -> None:
        assert name not in self._seen, name
        self._seen.add(name)
        self._current = name
        # prometheus_client names a counter family without its _total and adds it back when writing
        self.families.append(Metric(name.removesuffix("_total") if kind == "counter" else name, help_text, kind))

    def add(self, family: Metric) -> None:
        """A family the library built (the latency histogram)."""
        self.family(family.name, family.type, family.documentation)
        self.families[-1] = family

    def sample(self, name: str, value, labels: dict | None = None) -> None:
        assert name.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count") == self._current \
            or name == self._current, f"{name} outside its family {self._current}"  # families stay contiguous
        self.families[-1].add_sample(name, {k: str(v) for k, v in (labels or {}).items()}, value)

    def one(self, name: str, kind: str, help_text: str, value, labels: dict | None = None) -> None:
        self.family(name, kind, help_text)
        self.sample(name, value, labels)

    def enum(self, name: str, help_text: str, states, current: str, labels: dict | None = None,
             family: bool = True) -> None:
        """One gauge per state, 1 for the current one (the current state is listed even if unknown here)."""
        if family:
            self.family(name, "gauge", help_text)
        for state in (*states, *(() if current in states else (current,))):
            self.sample(name, int(state == current), {**(labels or {}), "state": state})

    def collect(self):
        return iter(self.families)

    def text(self) -> str:
        return prometheus_client.generate_latest(self).decode("utf-8")


# -- request latencies ----------------------------------------------------------------------------

class Histogram:
    """HTTP request durations by (route, method, status class): prometheus_client's Histogram, in
    memory from the start of the process, registered in `registry` (the app's)."""

    def __init__(self, buckets=BUCKETS, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._histogram = prometheus_client.Histogram("latency_seconds", "", LATENCY_LABELS, buckets=buckets,
                                                      registry=self.registry)

    def observe(self, labels: tuple[str, str, str], seconds: float) -> None:
        self._histogram.labels(*labels).observe(seconds)

    def expose(self, out: Exposition, name: str, help_text: str) -> None:
        """Under the family name the scrape gives; the library's `_created` series are left out, as
        /metrics never had them (prometheus_client only turns them off process-wide)."""
        family = HistogramMetricFamily(name, help_text, labels=LATENCY_LABELS)
        for metric in self._histogram.collect():
            for sample in metric.samples:
                suffix = sample.name.removeprefix(metric.name)
                if suffix in ("_bucket", "_sum", "_count"):
                    family.samples.append(sample._replace(name=name + suffix))
        out.add(family)


def route_label(request: web.Request) -> str:
    """The route's canonical path (/api/v1/orders/{order_id}), never the raw path: bounded cardinality."""
    resource = request.match_info.route.resource
    if resource is None:
        return "unmatched"  # 404 and 405: any path a client makes up would be a new series
    return resource.canonical


@web.middleware
async def metrics_middleware(request: web.Request, handler):
    started = time.perf_counter()
    status: int | None = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = None  # the client went away: no status to record
        raise
    finally:
        registry = request.app.get(METRICS)
        # 101: a WebSocket lives for hours; its duration is not a request latency
        if registry is not None and status is not None and status != 101:
            method = request.method if request.method in METHODS else "other"
            registry.latency.observe((route_label(request), method, f"{status // 100}xx"),
                                     time.perf_counter() - started)


# -- the registry and the scrape ------------------------------------------------------------------

class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)   # this app's, never the global one
        self.latency = Histogram(registry=self.registry)
        self.tally = counters.Tally()
        self._lock: asyncio.Lock | None = None
        # a refused sale writes nothing to count in the store: these count since the daemon started
        self.member_refusals: dict[str, int] = {}

    async def read_store(self, store) -> dict:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # one scrape at a time moves the tally forward
            tally, gauges = await store.read(counters.collect, self.tally)
            self.tally = tally
        return gauges


METRICS = web.AppKey("metrics", Metrics)
MEMBER_METHODS = ("points", "stored_value")


@contextmanager
def count_member_refusals(app: web.Application, body):
    """Count the refusals of sales with a member (or paid by points or stored value), by reason."""
    try:
        yield
    except InputError as exc:
        registry = app.get(METRICS)
        if registry is not None and (body.member is not None
                                     or any(p.method in MEMBER_METHODS for p in body.payments)):
            registry.member_refusals[exc.code] = registry.member_refusals.get(exc.code, 0) + 1
        raise


def _timestamp(iso_text: str) -> float:
    at = datetime.fromisoformat(iso_text.replace("Z", "+00:00"))
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return at.timestamp()


def _age(iso_text: str | None, now: float) -> float:
    if not iso_text:
        return 0.0
    return max(0.0, now - _timestamp(iso_text))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("store-edge")
    except PackageNotFoundError:
        return "dev"


async def render(app: web.Application) -> str:
    started = time.perf_counter()
    registry = app[METRICS]
    gauges = await registry.read_store(app[STORE])
    tally, now, out = registry.tally, time.time(), Exposition()

    out.family("store_edge_scans_total", "counter", "Scans stored, by source (serial, hid, camera, api, typed) "
               "and kind (product, pickup_code, ...)")
    for (source, kind), n in sorted(tally.scans.items()):
        out.sample("store_edge_scans_total", n, {"source": source, "kind": kind})
    out.one("store_edge_sales_total", "counter", "Sales recorded", tally.sales[0])
    out.one("store_edge_sales_amount_fen_total", "counter", "Sales totals, in fen (1/100 yuan)", tally.sales[1])
    out.one("store_edge_returns_total", "counter", "Returns recorded", tally.returns[0])
    out.one("store_edge_returns_refund_fen_total", "counter", "Money refunded by returns, in fen", tally.returns[1])

    member_metrics(out, tally.members, registry.member_refusals)

    jobs = gauges["jobs_open"]
    out.family("store_edge_print_jobs_finished_total", "counter", "Print jobs settled, by document kind and "
               "result (printed, failed, expired; uncertain once resolved by a reprint)")
    for (kind, state), n in sorted(jobs["finished"].items()):
        out.sample("store_edge_print_jobs_finished_total", n, {"kind": kind, "result": state})
    out.family("store_edge_print_jobs_open", "gauge", "Print jobs not settled, by kind and state (queued, "
               "printing, uncertain waiting for a person)")
    for (kind, state), n in sorted(jobs["open"].items()):
        out.sample("store_edge_print_jobs_open", n, {"kind": kind, "state": state})

    handed, provisional, reversed_ = gauges["pickups"]
    out.one("store_edge_pickups_total", "counter", "Online orders handed over (核销), reversed ones included",
            handed)
    out.one("store_edge_pickups_provisional_total", "counter", "Hand-overs verified offline (provisional)",
            provisional)
    out.one("store_edge_pickups_reversed_total", "counter", "Hand-overs reversed (冲正)", reversed_)
    for i, (name, help_text) in enumerate((
            ("store_edge_coupon_redemptions_total", "Coupons redeemed in sales, by whether verified offline "
             "(provisional)"),
            ("store_edge_coupon_discount_fen_total", "Discount given by redeemed coupons, in fen"))):
        out.family(name, "counter", help_text)
        for provisional_ in (0, 1):
            out.sample(name, tally.coupons.get(provisional_, (0, 0))[i],
                       {"provisional": "true" if provisional_ else "false"})

    queue = gauges["queue"]
    out.one("store_edge_sync_queue_depth", "gauge", "Events in the outbox not yet acknowledged by the cloud",
            queue["depth"])
    out.one("store_edge_sync_oldest_unsent_age_seconds", "gauge", "Age of the oldest unsent event (0 when none)",
            _age(queue["oldest_unsent_at"], now))
    out.one("store_edge_sync_dead_letters", "gauge", "Events the cloud rejected, waiting for a person",
            queue["dead_letters"])
    out.one("store_edge_sync_rejected_changes", "gauge", "Changes from the cloud this store rejected",
            queue["rejected_changes"])

    engine = app.get(SYNC)
    link = getattr(engine, "link", None)
    if link is None:
        out.enum("store_edge_cloud_link", "Cloud link state, 1 for the current one ('none': no cloud configured)",
                 (*LINK_STATES, "none"), "none")
        out.one("store_edge_cloud_link_state_age_seconds", "gauge", "Seconds since the cloud link entered its "
                "state", now - app[STARTED])
    else:
        out.enum("store_edge_cloud_link", "Cloud link state, 1 for the current one ('none': no cloud configured)",
                 (*LINK_STATES, "none"), link.state)
        out.one("store_edge_cloud_link_state_age_seconds", "gauge", "Seconds since the cloud link entered its "
                "state", max(0.0, now - link.since))

    out.family("store_edge_printer_state", "gauge", "Printer state, 1 for the current one")
    printing = app.get(PRINTING)
    for printer in (printing.printers() if printing is not None else []):
        out.enum("store_edge_printer_state", "", PRINTER_STATES, printer["state"], {"printer": printer["name"]},
                 family=False)
    out.family("store_edge_scan_device_state", "gauge", "Scanner and camera state, 1 for the current one")
    devices = app.get(DEVICES)
    for device in (devices.states() if devices is not None else []):
        out.enum("store_edge_scan_device_state", "", DEVICE_STATES, device["state"], {"device": device["device"]},
                 family=False)

    out.family("store_edge_open_orders", "gauge", "Online orders not yet handed over, by state")
    for state, n in gauges["orders"].items():
        out.sample("store_edge_open_orders", n, {"state": state})
    out.one("store_edge_unprinted_orders", "gauge", "Open online orders whose ticket has not printed in time "
            "(the dashboard alert; at most 100)", len(printing.alerts) if printing is not None else 0)

    runs = gauges["job_runs"]
    out.family("store_edge_scheduled_job_failed", "gauge", "1 when the last run of a scheduled job (backup, "
               "ledger_check) failed, until it next succeeds; 0 when it succeeded or has not run yet")
    for job in job_runs.JOBS:
        out.sample("store_edge_scheduled_job_failed", int(job in runs and not runs[job]["ok"]), {"job": job})
    out.family("store_edge_scheduled_job_last_success_timestamp_seconds", "gauge", "When a scheduled job last "
               "succeeded (Unix time; 0: never)")
    for job in job_runs.JOBS:
        last_ok = runs.get(job, {}).get("last_ok_at")
        out.sample("store_edge_scheduled_job_last_success_timestamp_seconds",
                   _timestamp(last_ok) if last_ok else 0.0, {"job": job})

    latency_help = "HTTP request durations by route (canonical path), method and status class"
    registry.latency.expose(out, "store_edge_http_request_duration_seconds", latency_help)

    out.one("store_edge_start_time_seconds", "gauge", "When the daemon started (Unix time)", app[STARTED])
    out.one("store_edge_uptime_seconds", "gauge", "Seconds since the daemon started", now - app[STARTED])
    out.one("store_edge_build_info", "gauge", "The running store-edge, always 1",
            1, {"version": _version(), "python": platform.python_version(), "store": app[CONFIG].store.id})
    out.one("store_edge_scrape_duration_seconds", "gauge", "How long this scrape took to collect",
            time.perf_counter() - started)
    return out.text()


# -- access and the route -------------------------------------------------------------------------

def member_metrics(out: Exposition, tally: dict, refusals: dict) -> None:
    sales, returns = tally.get("sale", counters.NO_MEMBER_ACTIVITY), tally.get("return", counters.NO_MEMBER_ACTIVITY)
    out.one("store_edge_member_sales_total", "counter", "Sales with a member (会员)", sales[0])
    out.family("store_edge_member_points_total", "counter", "Members' points moved by sales and returns: earned "
               "and spent by sales, taken back and given back by returns")
    for sample, value in (("earned", sales[1]), ("spent", sales[2]), ("taken_back", -returns[1]),
                          ("given_back", -returns[2])):
        out.sample("store_edge_member_points_total", value, {"kind": sample})
    out.family("store_edge_member_stored_value_fen_total", "counter", "Stored value (储值) paid by sales and "
               "refunded to the balance by returns, in fen")
    out.sample("store_edge_member_stored_value_fen_total", -sales[3], {"kind": "paid"})
    out.sample("store_edge_member_stored_value_fen_total", returns[3], {"kind": "refunded"})
    out.one("store_edge_member_offline_spends_total", "counter", "Sales that spent points or stored value "
            "without the cloud's hold (within the offline caps)", sales[4])
    out.family("store_edge_member_sale_refusals_total", "counter", "Sales with a member refused, by reason, "
               "since the daemon started (a refusal writes nothing to the store)")
    for reason, n in sorted(refusals.items()):
        out.sample("store_edge_member_sale_refusals_total", n, {"reason": reason})


def is_loopback(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


async def allowed(request: web.Request) -> bool:
    """Loopback reads freely; anyone else shows a till token (`store-edge token add prometheus`)."""
    if is_loopback(request.remote):
        return True
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    return await request.app[STORE].read(api_tokens.device_for, token.strip()) is not None


async def metrics_handler(request: web.Request) -> web.Response:
    if not await allowed(request):
        return web.Response(status=401, text="send 'Authorization: Bearer <token>' with a token from "
                            "`store-edge token add`, or scrape from loopback\n",
                            headers={"WWW-Authenticate": 'Bearer realm="store-edge"'})
    body = await render(request.app)
    return web.Response(body=body.encode("utf-8"), headers={"Content-Type": CONTENT_TYPE,
                                                            "Cache-Control": "no-store"})


def routes() -> list[web.RouteDef]:
    return [web.get(PATH, metrics_handler)]


def install(app: web.Application) -> None:
    """Everything /metrics needs, on an app not started yet (build_app's last line)."""
    app[METRICS] = Metrics()
    app.middlewares.insert(0, metrics_middleware)
    app.add_routes(routes())
