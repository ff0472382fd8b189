"""The printer on the network: the ESC/POS job stream on TCP (9100), answered status queries, held
jobs, and the HTTP JSON control API; run(args) serves until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import socket
from dataclasses import asdict, fields
from pathlib import Path

from aiohttp import web

from drivers.virtual_printer.decoder import DLE, EOT, GS, Decoder, Receipt
from drivers.virtual_printer.picture import PAPER_DOTS, render_png
from drivers.virtual_printer.status import PrinterState, gs_r_byte, status_byte

log = logging.getLogger("drivers.virtual_printer")

MAX_HELD = 4 * 1024 * 1024  # a held job beyond this is dropped (real printers stop reading instead)
# a real printer's input buffer is a few KB to a few dozen: with the kernel's default (megabytes on
# loopback) a slow printer would seem to take a whole long job at once, and a sender that does not
# wait for it as it reads would never be caught
RECEIVE_BUFFER = 32 * 1024


class VirtualPrinter:
    """The printer: TCP server for the job stream, optional HTTP control server, receipts in memory."""

    def __init__(self, host: str = "127.0.0.1", port: int = 9100, paper_mm: int = 80, out_dir: str | Path | None = None,
                 control_port: int | None = None, chinese_default: bool = False):
        if paper_mm not in PAPER_DOTS:
            raise ValueError("paper_mm must be 58 or 80")
        self.host, self.port, self.paper_mm = host, port, paper_mm
        self.control_port = control_port
        self.out_dir = Path(out_dir) if out_dir else None
        self.state = PrinterState()
        self.decoder = Decoder(self._on_cut, chinese_default=chinese_default)
        self._receipts: list[Receipt] = []
        self.held = bytearray()
        self.status_requests: list[tuple[str, int, int]] = []  # (command, n, byte answered)
        self.connections = 0
        self.bytes_received = 0
        self._server: asyncio.base_events.Server | None = None
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Event()
        # like a real raw-port printer, one connection at a time: the next waits (unread) until it closes
        self._one_at_a_time = asyncio.Lock()
        self._png_cache: dict[int, bytes] = {}

    # -- lifecycle
    async def start(self) -> "VirtualPrinter":
        self._server = await asyncio.start_server(self._client, self.host, self.port, reuse_address=True)
        for sock in self._server.sockets:  # set before any connection: accepted ones inherit it
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        self.port = self._server.sockets[0].getsockname()[1]
        if self.control_port is not None:
            self._runner = web.AppRunner(self.control_app(), access_log=None, handle_signals=False)
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.host, self.control_port, reuse_address=True)
            await site.start()
            self.control_port = self._runner.addresses[0][1]
        if self.out_dir:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        log.info("listening", extra={"kv": {"port": self.port, "control_port": self.control_port,
                                           "paper_mm": self.paper_mm, "out": self.out_dir or "-"}})
        return self

    async def stop(self) -> None:
        if self._server:
            self._server.close()
            for w in list(getattr(self, "_writers", ())):
                w.transport.abort()
            await self._server.wait_closed()
            self._server = None
        if self._runner:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self):
        return await self.start()

    async def __aexit__(self, *exc):
        await self.stop()

    # -- control
    def set_state(self, **changes) -> PrinterState:
        names = {f.name for f in fields(PrinterState)}
        bad = set(changes) - names
        if bad:
            raise ValueError(f"unknown state keys: {sorted(bad)}")
        if changes.get("answers", "all") not in ("all", "dle_eot", "gs_r", "none"):
            raise ValueError("answers must be all, dle_eot, gs_r or none")
        for k, v in changes.items():
            setattr(self.state, k, v)
        log.info("state", extra={"kv": changes})
        self._release()
        return self.state

    def receipts(self) -> list[Receipt]:
        return list(self._receipts)

    def receipt(self, n: int) -> Receipt:
        return self._receipts[n]

    def pending(self) -> Receipt:
        """What has printed since the last cut (a job cut off mid-way stays here)."""
        return self.decoder.receipt

    def clear(self) -> None:
        self._receipts.clear()
        self._png_cache.clear()
        self.decoder.receipt.lines.clear()

    def render_png(self, n: int) -> bytes:
        if n not in self._png_cache:
            self._png_cache[n] = render_png(self._receipts[n], self.paper_mm)
        return self._png_cache[n]

    async def wait_receipts(self, count: int, timeout: float = 2.0) -> list[Receipt]:
        async def wait():
            while len(self._receipts) < count:
                self._changed.clear()
                await self._changed.wait()
        await asyncio.wait_for(wait(), timeout)
        return self.receipts()

    # -- internals
    def _on_cut(self, r: Receipt) -> None:
        r.index = len(self._receipts)
        self._receipts.append(r)
        self._changed.set()
        log.info("receipt", extra={"kv": {"n": r.index, "lines": len(r.lines), "qr": len(r.qr),
                                         "drawer": len(r.drawer)}})
        if self.out_dir:
            stem = self.out_dir / f"receipt-{r.index + 1:04d}"
            stem.with_suffix(".txt").write_text(r.text + "\n", encoding="utf-8")
            stem.with_suffix(".json").write_text(json.dumps(r.to_dict(), ensure_ascii=False, indent=1), encoding="utf-8")
            try:
                stem.with_suffix(".png").write_bytes(self.render_png(r.index))
            except Exception as exc:  # a missing Pillow must not stop the printer
                log.warning("png failed", extra={"kv": {"n": r.index, "error": repr(exc)}})

    def _release(self) -> None:
        if self.state.ready and self.held:
            data = bytes(self.held)
            self.held.clear()
            log.info("printing held job", extra={"kv": {"bytes": len(data)}})
            self.decoder.feed(data)
            self._changed.set()

    def _accept(self, data: bytes) -> None:
        if self.state.ready:
            self.decoder.feed(data)
        elif len(self.held) + len(data) <= MAX_HELD:
            self.held += data
        else:
            log.warning("buffer full, bytes dropped", extra={"kv": {"bytes": len(data)}})
        self._changed.set()

    def _realtime(self, buf: bytes, writer: asyncio.StreamWriter) -> bytes:
        """Answer DLE EOT n and GS r n found in buf at once; return an incomplete tail to keep."""
        i = 0
        n = len(buf)
        while i < n:
            c = buf[i]
            if c in (DLE, GS):
                if i + 1 >= n:
                    return buf[i:]
                second = buf[i + 1]
                if (c, second) in ((DLE, EOT), (GS, 0x72)):
                    if i + 2 >= n:
                        return buf[i:]
                    arg = buf[i + 2]
                    answers = self.state.answers
                    if c == DLE and 1 <= arg <= 4 and answers in ("all", "dle_eot"):
                        self._answer(writer, "DLE EOT", arg, status_byte(arg, self.state))
                    elif c == GS and arg in (1, 2, 49, 50) and answers in ("all", "gs_r"):
                        self._answer(writer, "GS r", arg, gs_r_byte(arg, self.state))
                    i += 3
                    continue
            i += 1
        return b""

    def _answer(self, writer: asyncio.StreamWriter, cmd: str, n: int, value: int) -> None:
        self.status_requests.append((cmd, n, value))
        if not writer.is_closing():
            writer.write(bytes([value]))

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers = self.__dict__.setdefault("_writers", set())
        writers.add(writer)
        try:
            async with self._one_at_a_time:
                await self._serve(reader, writer)
        finally:
            writers.discard(writer)
            if not writer.is_closing():
                writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        peer = writer.get_extra_info("peername")
        received = 0
        tail = b""
        log.info("connection", extra={"kv": {"peer": peer}})
        try:
            while True:
                st = self.state
                size = max(1, st.slow_every) if st.slow_delay > 0 else 65536
                data = await reader.read(size)
                if not data:
                    break
                drop = st.drop_after is not None and received + len(data) >= st.drop_after
                if drop:
                    data = data[:max(0, st.drop_after - received)]
                received += len(data)
                self.bytes_received += len(data)
                tail = self._realtime(tail + data, writer)
                self._accept(data)
                if drop:
                    log.info("dropping connection", extra={"kv": {"peer": peer, "after": received}})
                    writer.transport.abort()
                    return
                await writer.drain()
                if st.slow_delay > 0:
                    await asyncio.sleep(st.slow_delay)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass

    # -- HTTP control API
    def control_app(self) -> web.Application:
        app = web.Application()
        vp = self

        def summary(r: Receipt) -> dict:
            d = r.to_dict()
            d["png"] = f"/receipts/{r.index}.png"
            d["txt"] = f"/receipts/{r.index}.txt"
            return d

        def pick(request) -> Receipt:
            n = int(request.match_info["n"])
            if not 0 <= n < len(vp._receipts):
                raise web.HTTPNotFound(text=json.dumps({"error": f"no receipt {n}"}), content_type="application/json")
            return vp._receipts[n]

        async def get_state(request):
            return web.json_response({**asdict(vp.state), "ready": vp.state.ready, "held_bytes": len(vp.held),
                                      "receipts": len(vp._receipts), "port": vp.port, "paper_mm": vp.paper_mm})

        async def put_state(request):
            try:
                body = await request.json()
                if not isinstance(body, dict):
                    raise ValueError("body must be a JSON object")
                vp.set_state(**body)
            except (ValueError, TypeError, json.JSONDecodeError) as exc:
                return web.json_response({"error": str(exc)}, status=400)
            return await get_state(request)

        async def list_receipts(request):
            return web.json_response([summary(r) for r in vp._receipts])

        async def one(request):
            return web.json_response(summary(pick(request)))

        async def txt(request):
            return web.Response(text=pick(request).text + "\n", content_type="text/plain", charset="utf-8")

        async def png(request):
            r = pick(request)
            return web.Response(body=vp.render_png(r.index), content_type="image/png")

        async def pending(request):
            return web.json_response({**vp.pending().to_dict(), "held_bytes": len(vp.held)})

        async def delete(request):
            vp.clear()
            return web.json_response({"receipts": 0})

        app.router.add_get("/state", get_state)
        app.router.add_put("/state", put_state)
        app.router.add_get("/receipts", list_receipts)
        app.router.add_delete("/receipts", delete)
        app.router.add_get(r"/receipts/{n:\d+}.txt", txt)
        app.router.add_get(r"/receipts/{n:\d+}.png", png)
        app.router.add_get(r"/receipts/{n:\d+}", one)
        app.router.add_get("/pending", pending)
        return app


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9100, help="ESC/POS port (default 9100; 0: any free port)")
    parser.add_argument("--control-port", type=int, default=9101, help="HTTP JSON control port (default 9101)")
    parser.add_argument("--paper", type=int, choices=(58, 80), default=80, help="paper width in mm (default 80)")
    parser.add_argument("--out", metavar="DIR", help="also write each receipt as .txt, .json and .png here")
    parser.add_argument("--chinese-default", action="store_true",
                        help="start in Chinese mode, as many Chinese printers do (default: FS & needed)")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))


async def serve(args, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    vp = VirtualPrinter(args.host, args.port, args.paper, args.out, args.control_port,
                        chinese_default=getattr(args, "chinese_default", False))
    await vp.start()
    try:
        await stop.wait()
    finally:
        await vp.stop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    log.info("stopped", extra={"kv": {"receipts": len(vp._receipts)}})


def run(args) -> int:
    """Serve until SIGINT or SIGTERM; 1 if the ports cannot be taken. The caller sets up logging."""
    try:
        asyncio.run(serve(args))
    except OSError as exc:
        log.error("cannot start", extra={"kv": {"port": args.port, "error": str(exc)}})
        return 1
    return 0
