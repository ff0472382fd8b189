"""Which config file a command uses, and opening it (or the store) with errors a person can act on.

Imported when `store-edge` builds its parser (default_config): the config's and the store's modules
(pydantic) are imported by the functions that use them, so that --help stays fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

TYPE_CHECKING = False  # typing itself is a few ms of --help; type checkers take this name as true
if TYPE_CHECKING:
    from edge.core import config as config_mod

DEFAULT_CONFIGS = ("config.toml", "/etc/store-edge/config.toml")


def default_config() -> str:
    if os.environ.get("STORE_EDGE_CONFIG"):
        return os.environ["STORE_EDGE_CONFIG"]
    return next((p for p in DEFAULT_CONFIGS if Path(p).exists()), DEFAULT_CONFIGS[-1])


def load_config(path: str) -> config_mod.Config:
    from edge.core import config as config_mod  # noqa: PLC0415

    try:
        return config_mod.load(path)
    except config_mod.ConfigError as exc:
        print(f"配置错误 / config error in {exc.path}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        raise SystemExit(2)


def open_db(config: config_mod.Config):
    from edge.core.sqlite import SchemaTooNew  # noqa: PLC0415
    from edge.store import db  # noqa: PLC0415

    try:
        return db.open_store_db(config.db_path)
    except SchemaTooNew as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2)
