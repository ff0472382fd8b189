"""The scan benchmark: how well and how fast codes are read from photographs and camera frames.

  1. corpus: every photograph of tests/corpus/barcodes (NAME.png|jpg|webp with NAME.txt, the
     expected text; falsepositives-1 has no code at all), read as 8-bit grey by three decoders in
     this process: ours (drivers.decoder.decode: zxing-cpp, pyzbar fallback, variants), plain
     zxing-cpp (read_barcodes, default settings) and plain pyzbar (decode, default settings).
     Per set: found/expected, false hits (a text that is neither the expected one nor a code
     really in the picture, see IN_PICTURE), ms per image p50/p99. Target: ours finds at least
     as many as the better of the two on every set, and no false hit.
  2. camera: a generated video (MJPG .avi) at 1280x720 and 1920x1080, a QR code moving across
     it, then frames without a code. Its frames decoded one after the other on one thread, as
     fast as possible (the process pinned to one CPU while timed), with the camera driver's
     settings (QR codes only, prescale 960: a downscaled first pass, zbar fallback, no variants):
     frames per second over the frames with the code and over the frames without one (every pass
     runs there); for comparison the same at full size only, and with every format. Also the
     end-to-end figure: drivers.camera.CameraScanner reading the file (realtime=False,
     drop_stale=False: every frame read and decoded). Target: >= 30 fps at 1080p, with the code
     and without (the lower of the two).
  3. verify_ms: scan -> verification answer with 100,000 open online orders in the store. The store
     (bench/verify_seed.py: a published Ed25519 key and the orders, all through sync.changes.apply_page,
     cached in bench/.cache/) is copied, and a real daemon (`store-edge run`) runs on the copy with one
     serial scanner on a pty whose master side this process holds. Per scan, a random order: its
     pickup token (signed here, as the cloud does) and CR are written to the pty (the cashier scans the
     customer's QR); a consumer (the cashier screen) gets it over GET /api/v1/scans/ws and at once POSTs
     /api/v1/pickups/lookup with it. Timed from the write to the lookup's answer (and the part up to the
     WebSocket message). Also the lookup alone (request -> answer) by token and by typed code, and the
     hand-over (POST /api/v1/pickups, a write) on other orders. Target: scan -> answer p99 <= 20 ms.
     The scans are spaced (SCAN_GAP) as a cashier's are; the screen acknowledges each one after its
     answer, outside the timing.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import tty
import uuid
from pathlib import Path

import cv2
import numpy as np

from bench.corpus import IN_PICTURE, ROOT, SETS, samples
from bench.ledger import percentile
from drivers import decoder

COUNTS = {False: {"corpus_runs": 5, "frames_code": 90, "frames_blank": 60, "scans": 1000, "lookups": 1000,
                  "hand_overs": 200},
          True: {"corpus_runs": 1, "frames_code": 40, "frames_blank": 20, "scans": 200, "lookups": 200,
                 "hand_overs": 50}}
RESOLUTIONS = {"720p": (1280, 720), "1080p": (1920, 1080)}
TARGETS = {"corpus": "ours >= max(zxing-cpp, pyzbar) found, 0 false hits, every set", "fps_1080p": 30,
           "verify_p99_ms": 20}
CAMERA_FORMATS = ("QRCode",)  # drivers/camera.py's defaults
CAMERA_PRESCALE = 960


def progress(message: str) -> None:
    print(f"[scan {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- 1. corpus ------------------------------------------------------------------------------------

def plain_zxing(grey: np.ndarray) -> list[str]:
    import zxingcpp  # noqa: PLC0415
    return [b.text for b in zxingcpp.read_barcodes(grey)]


def plain_zbar(grey: np.ndarray) -> list[str]:
    from pyzbar import pyzbar  # noqa: PLC0415
    return [r.data.decode("utf-8", "replace") for r in pyzbar.decode(grey)]


def ours(grey: np.ndarray) -> list[str]:
    return [d.text for d in decoder.decode(grey)]


DECODERS = {"ours": ours, "zxing-cpp": plain_zxing, "pyzbar": plain_zbar}


def corpus(runs: int) -> dict:
    results = {}
    for name in SETS:
        items = samples(name)
        expected = sum(e is not None for _, _, e in items)
        results[name] = {"images": len(items), "expected": expected}
        for label, read in DECODERS.items():
            times, found, false_hits, missed = [], 0, [], []
            for run in range(runs):
                for file, grey, exp in items:
                    started = time.perf_counter()
                    texts = read(grey)
                    times.append((time.perf_counter() - started) * 1000)
                    if run:
                        continue
                    if exp is not None and exp in texts:
                        found += 1
                    elif exp is not None:
                        missed.append(file)
                    false_hits += [f"{file}: {t[:40]!r}" for t in texts
                                   if t != exp and t not in IN_PICTURE.get((name, file), ())]
            results[name][label] = {"found": found, "false_hits": len(false_hits), "false_hit_list": false_hits,
                                    "missed": missed, "ms_p50": round(statistics.median(times), 2),
                                    "ms_p99": round(percentile(times, 99), 2)}
    return results


# -- 2. camera frames -----------------------------------------------------------------------------

def make_video(folder: Path, size: tuple[int, int], counts: dict) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import videos  # noqa: PLC0415 (the tests' video maker)
    width, height = size
    box = max(4, height // 135)  # the code about a third of the frame's height, as held up to a camera
    frames = list(videos.moving(size, counts["frames_code"], videos.TOKEN[:120], box=box))
    bg = videos.background(size, 9)
    frames += [np.roll(bg, i * 7, axis=1) for i in range(counts["frames_blank"])]
    return videos.write_video(folder / f"bench-{width}x{height}.avi", frames, fps=30)


def read_all(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def decode_fps(frames: list[np.ndarray], **options) -> dict:
    decoder.decode(frames[0], **options)  # warm-up
    started, hits = time.perf_counter(), 0
    times = []
    for frame in frames:
        t0 = time.perf_counter()
        hits += bool(decoder.decode(frame, **options))
        times.append((time.perf_counter() - t0) * 1000)
    elapsed = time.perf_counter() - started
    return {"frames": len(frames), "with_code_found": hits, "fps": round(len(frames) / elapsed, 1),
            "ms_p50": round(statistics.median(times), 2), "ms_p99": round(percentile(times, 99), 2)}


def scanner_fps(path: Path) -> dict:
    from drivers.camera import CameraScanner  # noqa: PLC0415
    from drivers.models import Camera  # noqa: PLC0415
    scans = []
    scanner = CameraScanner(Camera(name="bench", type="camera", source=str(path)), scans.append,
                            realtime=False, drop_stale=False)
    started = time.perf_counter()
    scanner.start()
    try:
        if not scanner.wait_idle(120):
            raise RuntimeError("the camera scanner did not finish the video in 120 s")
    finally:
        scanner.stop()
    elapsed = time.perf_counter() - started
    frames = scanner.status()["frames"]
    return {"frames": frames["decoded"], "fps": round(frames["decoded"] / elapsed, 1), "scans": len(scans)}


def camera(counts: dict) -> dict:
    results = {}
    cpus = os.sched_getaffinity(0)
    folder = Path(tempfile.mkdtemp(prefix="store-edge-bench-scan-"))
    try:
        for label, size in RESOLUTIONS.items():
            path = make_video(folder, size, counts)
            frames = read_all(path)
            code, blank = frames[:counts["frames_code"]], frames[counts["frames_code"]:]
            os.sched_setaffinity(0, {min(cpus)})  # one core, whatever OpenCV's or zxing's threads would do
            try:
                options = {"formats": CAMERA_FORMATS, "variants": False, "prescale": CAMERA_PRESCALE}
                full = {"formats": CAMERA_FORMATS, "variants": False}
                results[label] = {
                    "size": list(size),
                    "code_frames": decode_fps(code, **options),
                    "blank_frames": decode_fps(blank, **options),
                    "code_frames_full_size": decode_fps(code, **full),
                    "blank_frames_full_size": decode_fps(blank, **full),
                    "code_frames_all_formats": decode_fps(code, variants=False, prescale=CAMERA_PRESCALE),
                    "scanner_end_to_end": scanner_fps(path),
                }
            finally:
                os.sched_setaffinity(0, cpus)
            progress(f"camera {label}: {results[label]['code_frames']['fps']} fps with a code, "
                     f"{results[label]['blank_frames']['fps']} without")
    finally:
        for p in folder.iterdir():
            p.unlink()
        folder.rmdir()
    return results


# -- 3. scan -> verification answer ---------------------------------------------------------------

SCAN_GAP = 0.02          # s between two scans: a cashier's are seconds apart; lets the screen's ack settle
WARMUP_SCANS = 20        # scans and lookups before the timed ones (connections, caches)
SCREEN = "cashier-screen"  # the consumer's name
TOKEN_TTL = 3600
VERIFY_SEED = 20261123


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Signer:
    """The cloud's side: pickup tokens as docs/tokens.md says, with the seeded store's private key."""

    def __init__(self, secrets: dict):
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: PLC0415
        self.key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(secrets["private_key"]))
        self.head = _b64url(json.dumps({"alg": "EdDSA", "kid": secrets["kid"], "typ": "se-pickup+jwt"}).encode())
        self.store = secrets["store_id"]

    def token(self, order_id: str) -> str:
        now = int(time.time())
        claims = {"sub": order_id, "sid": self.store, "iat": now, "exp": now + TOKEN_TTL,
                  "jti": f"p-{uuid.uuid4().hex[:20]}"}
        signing = f"{self.head}.{_b64url(json.dumps(claims).encode())}"
        return f"{signing}.{_b64url(self.key.sign(signing.encode('ascii')))}"


def _stats(values: list[float]) -> dict:
    return {"p50": round(statistics.median(values), 2), "p99": round(percentile(values, 99), 2),
            "max": round(max(values), 2), "n": len(values)}


async def _verify_drive(base: str, proc, master: int, signer: Signer, picks: dict, counts: dict) -> dict:
    import gc  # noqa: PLC0415

    import aiohttp  # noqa: PLC0415

    from bench.ledger import BenchError, wait_ready  # noqa: PLC0415

    async with aiohttp.ClientSession() as http:
        ready = await wait_ready(http, base, proc.popen, proc.log)
        for _ in range(500):  # the reader thread opens the pty on its own
            async with http.get(f"{base}/api/v1/scanners") as resp:
                scanners = (await resp.json())["items"]
            if scanners and scanners[0]["state"] == "connected":
                break
            await asyncio.sleep(0.01)
        else:
            raise BenchError(f"the serial scanner did not connect: {scanners}")

        async def post(path: str, body: dict, expect: int, key: bool = False) -> tuple[float, dict]:
            headers = {"Idempotency-Key": str(uuid.uuid4())} if key else None
            started = time.perf_counter()
            async with http.post(f"{base}/api/v1{path}", json=body, headers=headers) as resp:
                raw = await resp.read()
            elapsed = (time.perf_counter() - started) * 1000
            if resp.status != expect:
                raise BenchError(f"POST {path} {body} answered {resp.status}: {raw[:500]!r}")
            return elapsed, json.loads(raw)

        def found(answer: dict, order_id: str) -> None:
            if answer["order"]["id"] != order_id or answer["order"]["state"] not in ("received", "accepted", "ready"):
                raise BenchError(f"looked up {order_id}, got {answer['order']['id']} ({answer['order']['state']})")

        ws = await http.ws_connect(f"{base}/api/v1/scans/ws?consumer={SCREEN}")
        try:
            async def scan(order_id: str) -> tuple[float, float]:
                token = signer.token(order_id)
                started = time.perf_counter()
                os.write(master, token.encode("ascii") + b"\r")  # the scanner sends the QR's text and CR
                msg = await asyncio.wait_for(ws.receive(), 10)
                pushed = time.perf_counter()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise BenchError(f"the scans WebSocket sent {msg.type}: {msg.data!r}")
                item = json.loads(msg.data)
                if item["text"] != token or item["kind"] != "pickup_token" or item["source"] != "serial":
                    raise BenchError(f"scanned a token, the screen got {str(item)[:300]}")
                _, answer = await post("/pickups/lookup", {"token": item["text"]}, 200)
                answered = time.perf_counter()
                found(answer, order_id)
                await ws.send_json({"ack": item["seq"]})  # the screen is done with it
                return (pushed - started) * 1000, (answered - started) * 1000

            gc.collect()
            gc.disable()  # this process's collector is not the daemon's latency
            try:
                for order_id, _ in picks["warmup"]:
                    await scan(order_id)
                    await asyncio.sleep(SCAN_GAP)
                to_ws, to_answer, at = [], [], []
                first = time.perf_counter()
                for order_id, _ in picks["scans"]:
                    at.append(time.perf_counter() - first)
                    a, b = await scan(order_id)
                    to_ws.append(a)
                    to_answer.append(b)
                    await asyncio.sleep(SCAN_GAP)
                progress(f"verify: {len(to_answer)} scans, scan -> answer p50 {statistics.median(to_answer):.2f} ms "
                         f"p99 {percentile(to_answer, 99):.2f} ms")

                token_ms, code_ms = [], []
                for order_id, _ in picks["lookups"]:
                    elapsed, answer = await post("/pickups/lookup", {"token": signer.token(order_id)}, 200)
                    found(answer, order_id)
                    token_ms.append(elapsed)
                for order_id, code in picks["codes"]:
                    elapsed, answer = await post("/pickups/lookup", {"code": code}, 200)
                    found(answer, order_id)
                    code_ms.append(elapsed)
                hand_ms = []
                for n, (order_id, code) in enumerate(picks["hand_overs"]):
                    body = {"token": signer.token(order_id)} if n % 2 == 0 else {"code": code}
                    elapsed, done = await post("/pickups", {**body, "operator": "基准店员"}, 201, key=True)
                    if done["order"]["id"] != order_id or done["order"]["state"] != "picked_up":
                        raise BenchError(f"handed over {order_id}, got {str(done)[:300]}")
                    hand_ms.append(elapsed)
            finally:
                gc.enable()
            # a code works once: the first handed-over order's code is refused now, saying by whom
            order_id, code = picks["hand_overs"][0]
            _, again = await post("/pickups/lookup", {"code": code}, 409)
            if again["error"]["code"] != "already_used" or again["error"]["detail"]["used_by"] != "基准店员":
                raise BenchError(f"a second use of a code: {again}")
        finally:
            await ws.close()
    return {"ready_s": ready, "to_ws": to_ws, "to_answer": to_answer, "at": at, "token_ms": token_ms,
            "code_ms": code_ms, "hand_ms": hand_ms}


def verification_p99(counts: dict) -> dict:
    """Scan -> verification answer against a real daemon on a store with 100,000 open orders."""
    from bench import verify_seed  # noqa: PLC0415
    from bench.ledger import free_port, load_at_start, write_config  # noqa: PLC0415
    from bench.sync import start_edge  # noqa: PLC0415

    load = load_at_start(progress)
    cached, secrets, seed_s = verify_seed.seeded()
    orders = secrets["orders"]
    rng = random.Random(VERIFY_SEED)
    sizes = {"warmup": WARMUP_SCANS, "scans": counts["scans"], "lookups": counts["lookups"],
             "codes": counts["lookups"], "hand_overs": counts["hand_overs"]}
    chosen = iter(rng.sample(range(len(orders)), sum(sizes.values())))  # every order used once
    picks = {name: [tuple(orders[next(chosen)]) for _ in range(size)] for name, size in sizes.items()}
    signer = Signer(secrets)

    folder = Path(tempfile.mkdtemp(prefix="store-edge-bench-verify-"))
    master, slave = os.openpty()
    ok, proc = False, None
    try:
        tty.setraw(slave)
        device = folder / "scanner0"
        device.symlink_to(os.ttyname(slave))
        (folder / "data").mkdir()
        started = time.perf_counter()
        shutil.copyfile(cached, folder / "data" / "store.db")  # hand-overs write: the cache stays clean
        copy_s = time.perf_counter() - started
        port = free_port()
        config = write_config(folder, port, f'\n[[scanners]]\nname = "counter-scanner"\ntype = "serial"\n'
                                            f'path = {json.dumps(str(device))}\nterminator = "CR"\n')
        proc = start_edge(folder, config)
        progress(f"verify: {len(orders):,} orders copied in {copy_s:.2f} s; daemon started (pid {proc.popen.pid})")
        timings = asyncio.run(_verify_drive(f"http://127.0.0.1:{port}", proc, master, signer, picks, counts))
        proc.stop()
        said = proc.log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        if said:  # by message: the unprinted-order alert says one line per order
            kinds: dict[str, int] = {}
            for line in said:
                head = line.split(" msg=", 1)[-1].split('" ', 1)[0] + '"' if " msg=" in line else line[:80]
                kinds[head] = kinds.get(head, 0) + 1
            progress(f"verify: the daemon logged {len(said)} line(s) at warning or above: "
                     + "; ".join(f"{n} x {head}" for head, n in kinds.items()))
        ok = True
    finally:
        if proc is not None:
            proc.kill()
        os.close(master)
        os.close(slave)
        if ok:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            progress(f"verify: kept {folder} for a look")
    return {
        "orders": len(orders),
        "scan_to_answer": _stats(timings["to_answer"]),
        "scan_to_screen": _stats(timings["to_ws"]),  # the part up to the WebSocket message
        "lookup_token": _stats(timings["token_ms"]),
        "lookup_code": _stats(timings["code_ms"]),
        "hand_over": _stats(timings["hand_ms"]),
        "target_p99": TARGETS["verify_p99_ms"],
        # the scans over the target: when (s after the first timed scan) and how long, in total and up to the
        # WebSocket message (periodic slow ones point at a periodic task in the daemon)
        "slow_scans": [{"at_s": round(t, 3), "ms": round(b, 1), "to_screen_ms": round(a, 1)}
                       for t, a, b in zip(timings["at"], timings["to_ws"], timings["to_answer"])
                       if b > TARGETS["verify_p99_ms"]][:50],
        "scan_gap_s": SCAN_GAP, "warmup": WARMUP_SCANS,
        "seed_s": None if seed_s is None else round(seed_s, 1), "copy_s": round(copy_s, 2),
        "daemon_ready_s": round(timings["ready_s"], 2), "load_start": round(load, 2),
    }


def print_verification(v: dict) -> None:
    print(f"  scan -> verification answer, {v['orders']:,} open orders, a real daemon, serial scanner on a pty "
          f"(ms; target scan -> answer p99 <= {v['target_p99']})")
    print(f"    {'':<34} {'p50':>7} {'p99':>7} {'max':>7} {'n':>6}")
    for key, label in (("scan_to_answer", "scan -> lookup answer"), ("scan_to_screen", "  of which scan -> WebSocket"),
                       ("lookup_token", "lookup by token (request -> answer)"),
                       ("lookup_code", "lookup by typed code"), ("hand_over", "hand-over (POST /pickups)")):
        r = v[key]
        print(f"    {label:<34} {r['p50']:7.2f} {r['p99']:7.2f} {r['max']:7.2f} {r['n']:6}")
    print(f"    (seeding {v['seed_s']} s this run)" if v["seed_s"] is not None else
          "    (store from bench/.cache/; the daemon ran on a copy)")



# -- the run --------------------------------------------------------------------------------------

def run(quick: bool = False) -> dict:
    wall = time.perf_counter()
    counts = COUNTS[quick]
    cv2.setNumThreads(1)
    rates = corpus(counts["corpus_runs"])
    progress(f"corpus read ({counts['corpus_runs']} run(s)) in {time.perf_counter() - wall:.1f} s")
    frames = camera(counts)
    verify = verification_p99(counts)

    corpus_met = all(r["ours"]["found"] >= max(r["zxing-cpp"]["found"], r["pyzbar"]["found"])
                     and r["ours"]["false_hits"] == 0 for r in rates.values())
    fps_1080 = min(frames["1080p"]["code_frames"]["fps"], frames["1080p"]["blank_frames"]["fps"])
    result = {
        "benchmark": "scan", "quick": quick,
        "corpus": rates,
        "camera_fps": frames,
        "verify_ms": verify,
        "run_s": round(time.perf_counter() - wall, 1), "cpus": os.cpu_count(),
        "targets": TARGETS,
    }
    result["met"] = {"corpus": corpus_met, "fps_1080p": fps_1080 >= TARGETS["fps_1080p"]}
    result["met"]["verify_p99_ms"] = verify["scan_to_answer"]["p99"] <= TARGETS["verify_p99_ms"]

    print(f"scan benchmark ({'quick' if quick else 'full'})")
    print(f"  corpus {ROOT} (found/expected, false hits, ms per image p50/p99; timing over "
          f"{counts['corpus_runs']} run(s))")
    print(f"    {'set':<17}" + "".join(f" {label:>27}" for label in DECODERS))
    for name, r in rates.items():
        cells = "".join(f" {r[label]['found']:>3}/{r['expected']:<3} fh {r[label]['false_hits']:<2} "
                        f"{r[label]['ms_p50']:6.2f}/{r[label]['ms_p99']:<7.2f}" for label in DECODERS)
        print(f"    {name:<17}{cells}")
    for name, r in rates.items():
        for label in DECODERS:
            if r[label]["false_hit_list"]:
                print(f"    false hits, {label} on {name}: {'; '.join(r[label]['false_hit_list'])}")
    print(f"  camera frames, one core (the camera's settings: QR codes only, prescale {CAMERA_PRESCALE}, zbar "
          "fallback, no variants), frames per second:")
    print(f"    {'size':<7} {'with code':>10} {'ms p50/p99':>13} {'no code':>9} {'ms p50/p99':>13} "
          f"{'full-size code/none':>20} {'all formats':>12} {'CameraScanner':>14}")
    for label, r in frames.items():
        c, b, a, s = r["code_frames"], r["blank_frames"], r["code_frames_all_formats"], r["scanner_end_to_end"]
        fc, fb = r["code_frames_full_size"], r["blank_frames_full_size"]
        print(f"    {label:<7} {c['fps']:10.1f} {c['ms_p50']:6.2f}/{c['ms_p99']:<6.2f} {b['fps']:9.1f} "
              f"{b['ms_p50']:6.2f}/{b['ms_p99']:<6.2f} {fc['fps']:9.1f}/{fb['fps']:<10.1f} {a['fps']:12.1f} "
              f"{s['fps']:14.1f}")
        if c["with_code_found"] < c["frames"]:
            print(f"      (code found in {c['with_code_found']} of {c['frames']} frames with it)")
    print_verification(verify)
    print(f"  targets: {TARGETS}; met: {result['met']}")
    return result
