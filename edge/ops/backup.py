"""`store-edge backup [--to DIR]` and `store-edge restore FILE`: the commands over edge/store/backup.py
and edge/store/restore.py.

Exit codes: 0 done; 1 refused or failed (daemon running, backup failed, ledger mismatch in the copy);
2 unusable input (config error, the backup file is missing, corrupt or from a newer store-edge).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge.ops.config_file import default_config, load_config


def backup_arguments(parser) -> None:
    parser.add_argument("--to", metavar="DIR", help="the folder for the backup (default: [backup] folder "
                        "in config.toml, or <data_dir>/backups); retention applies only to that default folder")


def backup_run(args) -> int:
    from edge.store.backup import BackupError, Retention, backup, read_sidecar  # noqa: PLC0415 (--help stays light)

    config = load_config(args.config)
    dest = Path(args.to) if args.to else config.backup_dir
    keep = None if args.to else Retention.of(config.backup)
    try:
        path = backup(config.db_path, dest, keep=keep, tz=config.tz)
    except (BackupError, OSError) as exc:
        print(f"backup FAILED: {exc}", file=sys.stderr)
        return 1
    info = read_sidecar(path) or {}
    ledger = info.get("ledger", {})
    print(f"backup written: {path} ({info.get('size', 0) / 1024:.0f} KiB in {info.get('seconds')} s; "
          f"integrity {info.get('integrity')}; sales up to number {info.get('max_sale_number') or 0}; "
          f"outbox event {info.get('outbox_max_seq')})")
    if not ledger.get("ok"):
        print(f"WARNING: the ledger check fails in this copy ({ledger.get('mismatches')} SKU(s), first: "
              f"{ledger.get('first')}); the live store has the same problem: run `store-edge ledger verify`",
              file=sys.stderr)
        return 1
    return 0


def restore_arguments(parser) -> None:
    parser.add_argument("file", help="a backup made by `store-edge backup` (store-YYYYmmddTHHMMSS+0800.db: the store's time and offset; older ones end in Z)")


def restore_run(args) -> int:
    from edge.store.restore import RestoreRefused, next_steps, restore  # noqa: PLC0415 (--help stays light)

    config = load_config(args.config)
    try:
        restored = restore(args.file, config.db_path)
    except RestoreRefused as exc:
        print(f"restore refused: {exc}", file=sys.stderr)
        return exc.code
    b = restored.backup
    print(f"restored {args.file}" + (f" (taken {b['taken_at']})" if b.get("taken_at") else "")
          + f" into {restored.db_path}: integrity ok, ledger ok ({b['moves']} moves), schema {b['schema_version']}")
    if restored.aside:
        print(f"the previous database is kept as {restored.aside}")
    for line in next_steps(restored, config.cloud.url):
        print(line)
    print("Start store-edge again: sudo systemctl start store-edge")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m edge.ops.backup backup|restore ...` (the same as the store-edge subcommands)."""
    top = argparse.ArgumentParser(prog="store-edge")
    sub = top.add_subparsers(dest="command", required=True)
    for name, add, run in (("backup", backup_arguments, backup_run), ("restore", restore_arguments, restore_run)):
        p = sub.add_parser(name)
        p.add_argument("--config", default=default_config())
        add(p)
        p.set_defaults(func=run)
    args = top.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
