"""The scan router: every scan is classified and kept in order, and whoever waits is woken.

Scanners (serial, HID, camera) hand their scans over from their threads; the router classifies each
(edge/core/classify.py) and writes it to the scan journal (edge/store/scans.py), in arrival order.
A payment code is stored masked; the whole code goes to the till that asked, if one did
(edge/services/payment_codes.py), and is otherwise forgotten at once. A member code is checked as it is
recorded, in the same transaction (edge/store/members.py: its (member, step) taken once), and stored
masked with what the check found: the whole code is kept nowhere, and no reader needs it again.
"""

from __future__ import annotations

import asyncio
import logging

from drivers.scan import Scan
from edge.core import member_code
from edge.core.classify import Classified, classify, mask_payment_code
from edge.services.payment_codes import PaymentCodes
from edge.store import members, scans

log = logging.getLogger("edge.services.scan_router")


class ScanRouter:
    """Takes scans from any thread, classifies and stores them in arrival order, wakes the readers."""

    def __init__(self, store, formats, config=None):
        self.store = store
        self.formats = formats
        self.config = config          # the store's id and chain, for member codes (read at each scan: reloads)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[Scan, bool]] = asyncio.Queue()
        self._new = asyncio.Condition()
        self._task: asyncio.Task | None = None
        self.newest = 0
        self.payments = PaymentCodes()

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.newest = await self.store.read(scans.newest_seq)
        self._task = asyncio.create_task(self._run(), name="scan-router")

    async def stop(self) -> None:
        if self._task:
            await self._queue.join()  # scans already handed over are stored before the store closes
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def submit_threadsafe(self, scan: Scan) -> None:
        """For scanner threads (their on_scan callback)."""
        self.loop.call_soon_threadsafe(self._queue.put_nowait, (scan, False))

    async def submit(self, scan: Scan, typed: bool = False) -> dict:
        """A scan from the API or the cashier screen; returns it as stored."""
        classified = classify(scan.text, self.formats, typed=typed)
        item = await self.store.write(self.record, scan, classified)
        await self.announce(item["seq"])
        return item

    def record(self, conn, scan: Scan, classified: Classified) -> dict:
        """scans.record, and a payment code claimed for its till: inside the write's transaction, so no
        reader sees the scan before the claim (a WebSocket would send it once, without the code)."""
        outcome = self.check_member(conn, scan, classified) if scans.is_member_code(classified) else None
        item = scans.record(conn, scan, classified, outcome)
        if classified.kind == "payment_code":
            consumer = self.payments.claim(item["seq"], scan.device, classified.text)
            # the masked code only: the log is no place for a credential
            log.info("payment code for a till" if consumer else "payment code nobody asked for: not kept",
                     extra={"kv": {"seq": item["seq"], "device": scan.device, "consumer": consumer,
                                   "code": mask_payment_code(classified.text)}})
        return item

    def check_member(self, conn, scan: Scan, classified: Classified) -> dict:
        """{"member": ...} or {"refused": reason}; as of when the code was read."""
        store = self.config.store if self.config is not None else None
        try:
            if classified.kind != "member_code":
                raise members.TokenRefused("malformed", classified.reason or "not a member code")
            member = members.verify_member_code(conn, classified.text, chain=store.chain if store else None,
                                                store_id=store.id if store else "", now=scan.at)
        except members.TokenRefused as exc:
            log.info("member code refused", extra={"kv": {"device": scan.device, "reason": exc.reason,
                                                          "code": member_code.mask(classified.text)}})
            return {"refused": exc.reason}
        log.info("member code", extra={"kv": {"device": scan.device, "member": member.member_id,
                                              "step": member.step}})
        return {"member": member.as_dict()}

    async def _run(self) -> None:
        while True:
            scan, typed = await self._queue.get()
            try:
                await self.submit(scan, typed)
            except Exception:  # noqa: BLE001 (one bad scan must not stop the router)
                log.exception("scan not stored", extra={"kv": {"device": scan.device}})
            finally:
                self._queue.task_done()

    async def announce(self, seq: int) -> None:
        async with self._new:
            self.newest = max(self.newest, seq)
            self._new.notify_all()

    async def wait_after(self, seq: int, timeout: float) -> bool:
        """Wait until a scan newer than `seq` exists (True) or the timeout passes (False)."""
        async with self._new:
            try:
                async with asyncio.timeout(timeout):  # not wait_for: edge/core/waits.py says why
                    await self._new.wait_for(lambda: self.newest > seq)
            except TimeoutError:
                return False
        return True
