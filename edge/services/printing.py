"""Printing: one worker per printer taking jobs from the spool, printer states, alerts.

Each worker is an asyncio task that keeps the spool's bookkeeping on the loop and does every
blocking device call (connect, status, write) on its printer's own thread, so a printer that hangs
never holds up the loop or another printer. The order of one job:

1. make the document (its data read from the store, rendered on the printer's thread);
2. ask the printer's status: not reachable, offline or out of paper → the job waits, nothing is sent
   (a printer keeps what it is sent while out of paper and prints it all on refill: we do not feed it);
   no answer to the query → print anyway and note it on the job;
3. mark the job 'printing' (committed), send it;
4. ask the status again: the answer comes after the job's last byte, so it proves delivery. A
   connection lost while sending or before that answer → 'uncertain', never resent by itself.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from concurrent.futures import ThreadPoolExecutor
from datetime import time, timedelta
from zoneinfo import ZoneInfo

from drivers.documents import DocumentError, PrintOptions, render
from drivers.models import DOCUMENT_KINDS
from drivers.printer import PrinterDevice, PrinterError, Status
from edge.core import context
from edge.core.clock import day_bounds, iso, utcnow
from edge.core.config import Config
from edge.core.errors import NotFound
from edge.core.waits import wait_event
from edge.store import count_sheets, orders, outbox, sales, shifts, spool
from edge.store.day_close import day_close
from edge.store.db import Store

log = logging.getLogger("edge.services.printing")

WAIT_REASONS = {  # why a job waits, as staff read it on the dashboard
    "offline": "打印机离线", "paper_out": "打印机缺纸", "cover_open": "打印机上盖打开", "unreachable": "连不上打印机",
}
ALERT_EVERY = 1.0  # seconds between expiry checks (a drawer kick lives 10 s)
ALERT_LIMIT = 100  # unprinted orders listed (oldest first); a shop with more has a bigger problem to see
STOP_GRACE = 3.0   # at shutdown, how long a job being sent may take to finish (systemd allows 20 s)


def now_iso() -> str:
    return iso(utcnow())


def routes_from_config(config: Config) -> dict[str, tuple[str, int]]:
    """kind → (printer, ttl): the first enabled printer that lists the kind prints it."""
    routes = {}
    for kind in DOCUMENT_KINDS:
        for printer in config.raw.printers:
            if printer.enabled and kind in printer.documents:
                routes[kind] = (printer.name, getattr(config.printing.ttl_seconds, kind))
                break
    return routes


def store_info(config: Config) -> dict:
    # the cut-off rides along for the documents of a business day (日结 counts hand-overs by time)
    return {"id": config.store.id, "name": config.store.name, "timezone": config.store.timezone,
            "day_cutoff": config.day_cutoff.strftime("%H:%M")}


def document_data(conn, job: dict, store: dict) -> dict:
    """What a document shows, read when it is printed (a reprint shows the same facts again)."""
    kind, payload = job["kind"], job["payload"]
    data = {"store": store, **payload}
    if kind == "receipt" and "return_id" in payload:   # a member return's 退货单
        back = sales.get_return(conn, payload["return_id"])
        data.update({"return": back, "sale": sales.get_sale(conn, back["sale_id"])})
    elif kind == "receipt":
        sale = sales.get_sale(conn, payload["sale_id"])
        data.update(sale=sale, coupons=sale["coupons"], qr=f"sale:{payload['sale_id']}")
    elif kind in ("order_ticket", "pickup_slip"):
        data["order"] = orders.get_order(conn, payload["order_id"])
    elif kind == "daily_summary":
        cutoff = time.fromisoformat(store.get("day_cutoff", "00:00"))
        summary = day_close(conn, payload["date"], day_bounds(payload["date"], ZoneInfo(store["timezone"]), cutoff))
        data.update(summary=summary, shifts=summary["shifts"], printed_at=job["created_at"])
    elif kind == "shift_report":
        data.update(shift=shifts.get_shift(conn, payload["shift_id"]), printed_at=job["created_at"])
    elif kind == "test_page":
        data["printed_at"] = job["created_at"]
    elif kind == "count_sheet":
        data["sheet"] = count_sheets.get_sheet(conn, payload["number"])
    return data


class PrinterWorker:
    def __init__(self, service: PrintService, cfg):
        self.service = service
        self.cfg = cfg
        self.name = cfg.name
        self.device = PrinterDevice(cfg)
        self.options = PrintOptions(paper_mm=cfg.paper_mm, encoding=cfg.encoding, chinese_font=cfg.chinese_font,
                                    native_qr=cfg.native_qr, cut=cfg.cut, drawer_pin=cfg.drawer_pin,
                                    language=service.config.printing.language)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"printer-{cfg.name}")
        self.state = "unknown"       # ready, paper_near_end, paper_out, cover_open, offline, unreachable, no_status
        self.status: Status | None = None
        self.error: str | None = None
        self.since = now_iso()
        self.checked_at: str | None = None
        self.results: dict[str, int] = {}  # jobs finished by this worker, by state (for /metrics)
        self.wake = asyncio.Event()
        self.checked = asyncio.Event()     # set after the first status check
        self._stopping = False
        self._stop_event = asyncio.Event()
        self._checked_at = float("-inf")  # loop time of the last status check
        self._task: asyncio.Task | None = None

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"printer-{self.name}")

    async def stop(self) -> None:
        """Let a job being sent finish (briefly), so a clean stop does not leave it uncertain."""
        self._stopping = True
        self.wake.set()
        self._stop_event.set()
        if self._task:
            done, _ = await asyncio.wait([self._task], timeout=STOP_GRACE)
            if not done:
                self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        # a device call in progress finishes on its own thread (its timeouts bound it); then the port closes
        await asyncio.get_running_loop().run_in_executor(self._thread, self.device.close)
        self._thread.shutdown(wait=False)

    def as_dict(self) -> dict:
        return {"name": self.name, "type": self.cfg.type, "paper_mm": self.cfg.paper_mm, "state": self.state,
                "since": self.since, "error": self.error, "checked_at": self.checked_at,
                "status": self.status.as_dict() if self.status else None,
                "documents": [k for k, (p, _) in self.service.routes.items() if p == self.name]}

    # -- the loop ---------------------------------------------------------------------------------
    async def _io(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def _run(self) -> None:
        store, poll = self.service.store, self.service.config.printing.status_poll_seconds
        while not self._stopping:
            try:
                self.wake.clear()  # before the read: a job queued after it wakes us again
                job = await store.read(spool.next_job, self.name, now_iso())
                if job is None:
                    # idle: the status is asked once a poll interval, not after every job (a job
                    # arriving during a needless check would wait for it)
                    due = self._checked_at + poll - asyncio.get_running_loop().time()
                    if due <= 0:
                        await self.check()
                    else:
                        await wait_event(self.wake, due)
                elif not await self._print(job):
                    await self._pause(poll)  # the printer is not ready: ask again after a poll interval
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 (a bug must not stop this printer for good)
                log.exception("printer worker error", extra={"kv": {"printer": self.name}})
                await self._pause(poll)

    async def _pause(self, seconds: float) -> None:
        """Sleep, unless stopping (new jobs do not end it: the printer is what we wait for)."""
        self._stop_event.clear()
        if not self._stopping:
            await wait_event(self._stop_event, seconds)

    async def check(self, after_bytes: int = 0) -> Status | None:
        """Ask the printer's status and publish it. Raises nothing: an unreachable printer is a state."""
        try:
            status = await self._io(self.device.status, after_bytes)
        except PrinterError as exc:
            self._set_state("unreachable", str(exc), None)
            return None
        if status is None:
            self._set_state("no_status", "打印机不回答状态查询", None)
        else:
            self._set_state(status.state, None, status)
        return status

    def _set_state(self, state: str, error: str | None, status: Status | None) -> None:
        self._checked_at = asyncio.get_running_loop().time()
        self.checked_at = now_iso()
        self.status, self.error = status, error
        self.checked.set()
        if state == self.state:
            return
        was, self.state, self.since = self.state, state, self.checked_at
        bad = state in ("offline", "unreachable", "paper_out", "cover_open")
        (log.warning if bad else log.info)("printer " + state.replace("_", " "),
                                           extra={"kv": {"printer": self.name, "was": was, "error": error}})
        self.service.notify()

    async def _print(self, job: dict) -> bool:
        """Print one job. False when the printer is not ready (the job waits, untouched)."""
        store = self.service.store
        try:
            data = await store.read(document_data, job, self.service.store_info)
            payload = await self._io(lambda: render(job["kind"], data, self.options, reprint=job["reprint"]))
        except (DocumentError, NotFound, KeyError) as exc:
            await self._finish(job, "failed", error=f"无法生成单据：{exc}")
            return True

        status = await self.check()
        if self.state in ("unreachable", "offline", "paper_out", "cover_open"):
            reason = WAIT_REASONS[self.state] + (f"（{self.error}）" if self.error else "")
            await store.write(spool.record_wait, self.name, reason, self._ctx())
            return False
        note = None if status is not None else "打印机未回答状态查询：已直接发送，未能确认"

        if not await store.write(spool.mark_printing, job["id"], self._ctx()):
            return True  # someone moved the job meanwhile (expired): nothing to do
        try:
            await self._io(self.device.write, payload)
        except PrinterError as exc:
            self._set_state("unreachable", str(exc), None)
            if exc.sent:
                await self._finish(job, "uncertain", error=f"发送中断：{exc}")
            else:
                await store.write(spool.requeue, job["id"], f"连不上打印机：{exc}", self._ctx())
            return True

        after = await self.check(len(payload)) if status is not None else None
        if status is not None and after is None:
            await self._finish(job, "uncertain", error=f"发送后打印机没有回应：{self.error}")
        elif after is not None and not after.ready:
            await self._finish(job, "uncertain", error=f"打印时{WAIT_REASONS.get(after.state, after.state)}")
        else:
            await self._finish(job, "printed", note=note)
        return True

    async def _finish(self, job: dict, state: str, *, error: str | None = None, note: str | None = None) -> None:
        ctx = self._ctx()
        await self.service.store.write(lambda conn: spool.finish(conn, job["id"], state, ctx, error=error, note=note))
        self.results[state] = self.results.get(state, 0) + 1
        (log.info if state == "printed" else log.warning)(
            "print job " + state, extra={"kv": {"printer": self.name, "job": job["id"], "kind": job["kind"],
                                                "key": job["key"], "error": error, "note": note}})
        self.service.notify()

    def _ctx(self):
        return context.make(spool.SYSTEM, self.service.config.tz, self.service.config.day_cutoff)


class PrintService:
    """All printers of the store, the routes, expiry and the unprinted-order alert."""

    def __init__(self, store: Store, config: Config, *, link=None, scanner_states=lambda: []):
        self.store = store
        self.config = config
        self.link = link  # the sync engine's Link (cloud state for the status ticket), or None
        self.scanner_states = scanner_states  # scanners and cameras, for the status ticket
        self.store_info = store_info(config)
        self.routes = routes_from_config(config)
        self.workers = {p.name: PrinterWorker(self, p) for p in config.raw.printers if p.enabled}
        self.alerts: list[dict] = []  # unprinted online orders, newest check
        self.on_change: list = []  # called on every printer state or job change (the dashboard's live view)
        self._alerted: set[str] = set()
        self._task: asyncio.Task | None = None
        self._changed = asyncio.Event()  # set whenever a printer state or a job changes (live pages, tests)

    async def reconfigure(self) -> None:
        """After a reload: the printers, routes and times from the (swapped) config. A job being sent
        finishes first; the new workers pick up the queue."""
        await self.stop()
        self.store_info = store_info(self.config)
        self.routes = routes_from_config(self.config)
        self.workers = {p.name: PrinterWorker(self, p) for p in self.config.raw.printers if p.enabled}
        await self.start(announce=False)

    async def start(self, announce: bool = True) -> None:
        ctx = context.make(spool.SYSTEM, self.config.tz, self.config.day_cutoff)

        def prepare(conn):
            spool.set_routes(conn, self.routes, list(self.workers))
            return spool.recover(conn, ctx)

        for job in await self.store.write(prepare):
            log.warning("print job uncertain after restart", extra={"kv": {"job": job["id"], "key": job["key"]}})
        self.store.listeners.append(self.wake)
        for worker in self.workers.values():
            worker.start()
        self._task = asyncio.create_task(self._watch(), name="print-alerts")
        if announce and self.config.printing.status_ticket_at_start and "status_ticket" in self.routes:
            asyncio.get_running_loop().create_task(self._startup_ticket())

    async def stop(self) -> None:
        if self.wake in self.store.listeners:
            self.store.listeners.remove(self.wake)
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.gather(*(w.stop() for w in self.workers.values()))

    def wake(self) -> None:
        """After every committed write: a job may have been queued."""
        for worker in self.workers.values():
            worker.wake.set()
        self.notify()

    def notify(self) -> None:
        self._changed.set()
        for callback in self.on_change:
            callback()

    async def wait_for(self, predicate, timeout: float = 10.0):
        """Await `predicate()` (async) becoming truthy, checked after each printer or job change."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._changed.clear()  # before the check: a change during it is not missed
            result = await predicate()
            if result:
                return result
            if loop.time() >= deadline:
                raise TimeoutError("condition not met in time")
            await wait_event(self._changed, deadline - loop.time())

    def printers(self) -> list[dict]:
        listed = [w.as_dict() for w in self.workers.values()]
        listed += [{"name": p.name, "type": p.type, "paper_mm": p.paper_mm, "state": "disabled", "documents": []}
                   for p in self.config.raw.printers if not p.enabled]
        return listed

    # -- expiry and alerts ------------------------------------------------------------------------
    async def _watch(self) -> None:
        minutes = self.config.printing.unprinted_alert_minutes
        loop = asyncio.get_running_loop()
        next_alert_check = loop.time()
        while True:
            try:
                now = now_iso()
                if await self.store.read(spool.overdue, now):
                    for job in await self.store.write(spool.expire_overdue, context.make(
                            spool.SYSTEM, self.config.tz, self.config.day_cutoff)):
                        log.warning("print job expired", extra={"kv": {"job": job["id"], "key": job["key"],
                                                                       "printer": job["printer"]}})
                # no printer prints order tickets: nothing can be unprinted (and nothing to check)
                if "order_ticket" in self.routes and loop.time() >= next_alert_check:
                    # the alert counts minutes: checking once a status poll is plenty
                    next_alert_check = loop.time() + self.config.printing.status_poll_seconds
                    cutoff = iso(utcnow() - timedelta(minutes=minutes))
                    self._set_alerts(await self.store.read(spool.unprinted_orders, cutoff, ALERT_LIMIT))
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001
                log.exception("print alert check failed")
            await asyncio.sleep(ALERT_EVERY)

    def _set_alerts(self, alerts: list[dict]) -> None:
        ids = {a["order_id"] for a in alerts}
        for alert in alerts:
            if alert["order_id"] not in self._alerted:
                log.warning("online order not printed", extra={"kv": {"order": alert["number"],
                                                                      "job_state": alert["job_state"],
                                                                      "error": alert["last_error"]}})
        for done in self._alerted - ids:
            log.info("online order alert cleared", extra={"kv": {"order_id": done}})
        if ids != self._alerted:
            self.notify()
        self._alerted, self.alerts = ids, alerts

    # -- documents the daemon prints by itself ----------------------------------------------------
    async def _startup_ticket(self) -> None:
        """The status ticket at start: after every printer's first status check, so it shows them."""
        await asyncio.wait([asyncio.ensure_future(w.checked.wait()) for w in self.workers.values()], timeout=5)
        await self.print_status_ticket(spool.SYSTEM, key=f"status_ticket:start:{now_iso()}")

    async def print_status_ticket(self, operator: str, *, key: str | None = None,
                                  printer: str | None = None) -> dict | None:
        payload = await self.status_ticket_data()
        ctx = context.make(operator, self.config.tz, self.config.day_cutoff)
        return await self.store.write(lambda conn: spool.enqueue(
            conn, "status_ticket", key or f"status_ticket:{ctx.now}", payload, ctx, printer=printer))

    async def status_ticket_data(self) -> dict:
        queue = await self.store.read(outbox.queue_status)
        link = self.link.as_dict() if self.link is not None else {"state": "none", "since": None}
        return {
            "printed_at": now_iso(), "dashboard_url": dashboard_url(self.config), "version": _version(),
            "cloud": {"state": link["state"], "since": link.get("since"), "queue": queue["depth"]},
            "printers": [{"name": p["name"], "state": p["state"]} for p in self.printers()],
            "scanners": [{"name": d["device"], "state": d["state"]} for d in self.scanner_states()],
        }


def dashboard_url(config: Config) -> str:
    """The address a phone or tablet on the shop's LAN can open (not 0.0.0.0)."""
    host = config.api.host
    if host in ("0.0.0.0", "::"):
        host = lan_address()
    return f"http://{host}:{config.api.port}/"


def lan_address() -> str:
    """This PC's address on its default route (no packet is sent: UDP connect only picks the route)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere real
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("store-edge")
    except PackageNotFoundError:
        return "dev"

