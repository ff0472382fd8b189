"""`store-edge demo [--for SECONDS]` and `python -m edge.ops.demo`: prepare the store, run the stage."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sqlite3
import sys

from edge.core import log as log_mod
from edge.ops.demo.seed import seed_store
from edge.ops.demo.simulation import Out
from edge.ops.demo.stage import Demo
from edge.store import db


def run(config_path: str, seconds: float | None) -> int:
    """`store-edge demo [--for SECONDS]`: exit code 0 when every check passed (or stopped by Ctrl-C)."""
    from edge.ops.config_file import load_config

    if seconds is not None and not seconds > 0:
        print("--for must be a positive number of seconds", file=sys.stderr)
        return 2
    config = load_config(config_path)
    level = config.log.level if config.log.level in ("debug", "error") else "warning"
    log_mod.setup(level)  # the demo narrates on stdout; the daemon's info lines would drown it
    try:
        logins = seed_store(config)
    except (OSError, sqlite3.Error) as exc:
        print(f"error: cannot prepare the demo store in {config.data_dir}: {exc}", file=sys.stderr)
        return 1
    demo = Demo(config, seconds, Out())
    try:
        return asyncio.run(demo.main(logins))
    except (OSError, db.SchemaTooNew, RuntimeError) as exc:  # port taken, folder not writable ...
        logging.getLogger("edge").error("cannot start the demo", extra={"kv": {"error": str(exc)}})
        print(f"error: {exc}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    from edge.ops.config_file import default_config

    parser = argparse.ArgumentParser(prog="python -m edge.ops.demo",
                                     description="the demo store, with a simulated day in fast motion")
    parser.add_argument("--config", default=default_config())
    parser.add_argument("--for", dest="seconds", type=float, default=None, metavar="SECONDS",
                        help="run a timeline of this many seconds, print a summary and exit (1 if a check failed)")
    args = parser.parse_args(argv)
    return run(args.config, args.seconds)
