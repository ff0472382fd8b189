"""`store-edge demo [--for SECONDS]` and `python -m edge.ops.demo`: prepare the store, run the stage."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sqlite3
import sys
import tempfile
from pathlib import Path

from edge.core import log as log_mod
from edge.ops.demo.seed import seed_store
from edge.ops.demo.simulation import Out
from edge.ops.demo.stage import Demo
from edge.store import db

# Written in a demo's data folder on its first run: the demo seeds logins with published passwords
# and simulated sales, so it runs only on a folder it made, never on a real store's.
MARKER = ".store-edge-demo"
SCRATCH_CONFIG = """\
# written by `store-edge demo`: a demo store on scratch data, apart from any real store
[store]
id = "demo-store-001"
name = "演示门店"
timezone = "Asia/Shanghai"
data_dir = "var"
"""


def scratch_config() -> Path:
    """Without --config the demo never reads the installed config (/etc/store-edge/config.toml):
    a config of its own in a new temporary folder."""
    folder = Path(tempfile.mkdtemp(prefix="store-edge-demo-"))
    path = folder / "config.toml"
    path.write_text(SCRATCH_CONFIG, encoding="utf-8")
    return path


def claim_data_dir(data_dir: Path, db_path: Path) -> str | None:
    """Mark the data folder as the demo's; the reason it is refused when it holds a real store."""
    if (data_dir / MARKER).is_file():
        return None
    if db_path.exists():
        return (f"{data_dir} holds a store that the demo did not make ({db_path.name}): the demo writes "
                "demo logins and simulated sales, so it runs only on its own data. Run it without --config "
                "(scratch data), or give a config whose data_dir is a new folder")
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / MARKER).write_text("a store-edge demo's data: not a real store\n", encoding="utf-8")
    return None


CONFIG_HELP = ("a config whose data_dir is the demo's own (a new folder, or one an earlier demo made); "
               "default: scratch data in a new temporary folder, never the installed config")


def run(config_path: str | None, seconds: float | None) -> int:
    """`store-edge demo [--for SECONDS]`: exit code 0 when every check passed (or stopped by Ctrl-C)."""
    from edge.ops.config_file import load_config

    if seconds is not None and not seconds > 0:
        print("--for must be a positive number of seconds", file=sys.stderr)
        return 2
    config = load_config(str(scratch_config()) if config_path is None else config_path)
    try:
        refused = claim_data_dir(config.data_dir, config.db_path)
    except OSError as exc:
        print(f"error: cannot prepare the demo's data folder {config.data_dir}: {exc}", file=sys.stderr)
        return 1
    if refused is not None:
        print(f"error: {refused}", file=sys.stderr)
        return 2
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
    parser = argparse.ArgumentParser(prog="python -m edge.ops.demo",
                                     description="the demo store, with a simulated day in fast motion")
    parser.add_argument("--config", help=CONFIG_HELP)
    parser.add_argument("--for", dest="seconds", type=float, default=None, metavar="SECONDS",
                        help="run a timeline of this many seconds, print a summary and exit (1 if a check failed)")
    args = parser.parse_args(argv)
    return run(args.config, args.seconds)
