"""Which config file a command uses, and opening it (or the store) with errors a person can act on."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from edge.core import config as config_mod
from edge.core.sqlite import SchemaTooNew
from edge.store import db

DEFAULT_CONFIGS = ("config.toml", "/etc/store-edge/config.toml")


def default_config() -> str:
    if os.environ.get("STORE_EDGE_CONFIG"):
        return os.environ["STORE_EDGE_CONFIG"]
    return next((p for p in DEFAULT_CONFIGS if Path(p).exists()), DEFAULT_CONFIGS[-1])


def load_config(path: str) -> config_mod.Config:
    try:
        return config_mod.load(path)
    except config_mod.ConfigError as exc:
        print(f"配置错误 / config error in {exc.path}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        raise SystemExit(2)


def open_db(config: config_mod.Config):
    try:
        return db.open_store_db(config.db_path)
    except SchemaTooNew as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2)
