"""The command-line benchmark: how long `store-edge --help` takes, from exec to exit.

The installed console script is run N times (after 3 warm-up runs, so the bytecode is cached and
the files are in the page cache); the figure is the median wall time. For scale, in turn with it, a
Python that does nothing (`python -c pass`: the interpreter's own start-up, which no change to
store-edge can remove). Target: median <= 100 ms. A command that imports the hub,
aiohttp or pydantic while building its parser takes several times that.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

from bench.ledger import load_at_start, stats, store_edge

TARGETS = {"help_median_ms": 100}
COUNTS = {False: 40, True: 10}
WARMUP = 3


def progress(message: str) -> None:
    print(f"[cli {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def once(command: list[str]) -> float:
    """Wall time (ms) of one run of command, which must exit 0."""
    started = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
    elapsed = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr.decode()[-1000:]}")
    return elapsed


def timings(commands: list[list[str]], runs: int) -> list[list[float]]:
    """Wall times (ms) of each command, run in turn (so a change of load falls on all of them alike),
    `runs` times after WARMUP unmeasured rounds."""
    out: list[list[float]] = [[] for _ in commands]
    for i in range(WARMUP + runs):
        for command, times in zip(commands, out):
            elapsed = once(command)
            if i >= WARMUP:
                times.append(elapsed)
    return out


def run(quick: bool = False) -> dict:
    runs = COUNTS[quick]
    load_start = load_at_start(progress)
    help_ms, python_ms = timings([[store_edge(), "--help"], [sys.executable, "-c", "pass"]], runs)
    median = statistics.median(help_ms)
    result = {
        "benchmark": "cli", "quick": quick, "runs": runs,
        "help_median_ms": round(median, 1), "help_ms": stats(help_ms),
        "python_median_ms": round(statistics.median(python_ms), 1), "python_ms": stats(python_ms),
        "load_start": round(load_start, 2), "load_end": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
        "targets": TARGETS,
        "met": {"help_median_ms": median <= TARGETS["help_median_ms"]},
    }
    print(f"cli benchmark ({'quick' if quick else 'full'}): {runs} runs each after {WARMUP} warm-up runs")
    print(f"  store-edge --help   median {median:6.1f} ms  (p95 {result['help_ms']['p95']:.1f}, max "
          f"{result['help_ms']['max']:.1f}; target median <= {TARGETS['help_median_ms']} ms)")
    print(f"  python -c pass      median {result['python_median_ms']:6.1f} ms  (the interpreter's start-up)")
    print(f"  targets: {'all met' if result['met']['help_median_ms'] else 'MISSED help_median_ms'}; load average "
          f"{result['load_start']} at the start, {result['load_end']} at the end ({result['cpus']} CPUs)")
    return result
