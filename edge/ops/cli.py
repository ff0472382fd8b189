"""The `store-edge` command.

Building the parser imports argparse and nothing heavy: each command imports what it needs when it
runs (pydantic, aiohttp, the store), and the commands whose modules declare their own arguments (the
doctor, the hub, the virtual printer, the fault proxy) have them parsed only when they run, so
`store-edge --help` and a mistyped command answer at once.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from edge import __version__
from edge.ops import backup as backup_cmd
from edge.ops.config_file import default_config, load_config, open_db

# -- commands -------------------------------------------------------------------------------------

def cmd_run(args) -> int:
    from edge.core import log as log_mod  # noqa: PLC0415

    config = load_config(args.config)
    log_mod.setup(config.log.level, config.tz)
    return _serve(config)


def _serve(config) -> int:
    import asyncio  # noqa: PLC0415
    import logging  # noqa: PLC0415

    from edge import app  # noqa: PLC0415 (aiohttp is only needed by the daemon)
    from edge.store import db  # noqa: PLC0415

    try:
        asyncio.run(app.serve(config))
    except (OSError, db.SchemaTooNew) as exc:  # port taken, data folder not writable, newer database
        logging.getLogger("edge").error("cannot start", extra={"kv": {"error": str(exc)}})
        return 1
    return 0


def cmd_demo(args) -> int:
    from edge.ops.demo.command import run  # noqa: PLC0415 (the hub, the simulation and OpenCV only for the demo)

    return run(args.config, args.seconds)


def cmd_check_config(args) -> int:
    from edge.core import config as config_mod  # noqa: PLC0415

    try:
        config = config_mod.load(args.path)
    except config_mod.ConfigError as exc:
        print(f"{exc.path}: {len(exc.problems)} problem(s)")
        for problem in exc.problems:
            print(f"  {problem}")
        return 1
    devices = sum(1 for _ in config.devices())
    print(f"{config.path}: OK (store {config.store.id}, API on {config.api.host}:{config.api.port}, "
          f"{devices} device(s), database {config.db_path})")
    return 0


def cmd_catalog_import(args) -> int:
    from pathlib import Path  # noqa: PLC0415

    from edge.core.clock import iso, utcnow  # noqa: PLC0415
    from edge.core.errors import InputError  # noqa: PLC0415
    from edge.store import catalog  # noqa: PLC0415

    config = load_config(args.config)
    fmt = args.format or ("json" if args.file.lower().endswith(".json") else "csv")
    try:
        data = Path(args.file).read_bytes()
        rows = catalog.read_rows(data, fmt)
    except OSError as exc:
        print(f"错误 error: 无法读取 cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    except InputError as exc:
        print(f"错误 error: {args.file}: {exc.message}", file=sys.stderr)
        return 2
    conn = open_db(config)
    progress = Progress("导入 import")
    try:
        report = catalog.import_in_chunks(conn, rows, fmt, iso(utcnow()), progress)
    finally:
        conn.close()
    progress.done()
    print(f"导入 {report.imported} 个商品，共 {report.total} 行，{len(report.errors)} 行未导入 / "
          f"{report.imported} of {report.total} products imported, {len(report.errors)} rows refused")
    for error in report.errors:
        print(f"  {error}")
    return 1 if report.errors else 0


def cmd_catalog_export(args) -> int:
    from edge.store import catalog  # noqa: PLC0415

    config = load_config(args.config)
    fmt = args.format or ("json" if args.file.lower().endswith(".json") else "csv")
    conn = open_db(config)
    progress = Progress("导出 export")
    total = catalog.count_products(conn)
    try:
        if args.file == "-":
            count = catalog.export_products(catalog.iter_products(conn), fmt, sys.stdout,
                                            lambda done: progress(done, total))
        else:
            # utf-8-sig: Excel opens it with the Chinese names intact
            with open(args.file, "w", encoding="utf-8-sig" if fmt == "csv" else "utf-8", newline="") as out:
                count = catalog.export_products(catalog.iter_products(conn), fmt, out,
                                                lambda done: progress(done, total))
    finally:
        conn.close()
    progress.done()
    print(f"导出 {count} 个商品 / {count} products exported", file=sys.stderr)
    return 0


def cmd_ledger_verify(args) -> int:
    from edge.store import stock  # noqa: PLC0415

    config = load_config(args.config)
    if not config.db_path.exists():
        open_db(config).close()  # a new store: its empty ledger is checked like any other
    moves, mismatches = stock.verify_file(config.db_path)
    if mismatches:
        print(f"ledger verify FAILED: {len(mismatches)} SKU(s) whose balance is not the sum of their moves:")
        for mismatch in mismatches:
            print(f"  {mismatch}")
        return 1
    print(f"ledger verify OK: {moves} moves, every balance equals the sum of its moves")
    return 0


def _in_store(args, action) -> int:
    """action(conn, now) in one write transaction on the store; its exit code, or 2 for bad input."""
    from edge.core.clock import iso, utcnow  # noqa: PLC0415
    from edge.core.errors import InputError  # noqa: PLC0415
    from edge.store import db  # noqa: PLC0415

    config = load_config(args.config)
    conn = open_db(config)
    try:
        with db.transaction(conn):
            return action(conn, iso(utcnow())) or 0
    except InputError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    finally:
        conn.close()


def cmd_token(args) -> int:
    from edge.store import api_tokens  # noqa: PLC0415

    def action(conn, now):
        if args.action == "add":
            token = api_tokens.create(conn, args.device, now)
            print(f"token for {args.device} (shown once; put it in the till's settings):\n{token}")
        elif args.action == "revoke":
            if not api_tokens.revoke(conn, args.device, now):
                print(f"no active token for {args.device}", file=sys.stderr)
                return 1
            print(f"token of {args.device} revoked")
        else:
            for row in api_tokens.listing(conn):
                state = f"revoked {row['revoked_at']}" if row["revoked_at"] else "active"
                print(f"{row['device']}\tcreated {row['created_at']}\t{state}")
    return _in_store(args, action)


def cmd_user(args) -> int:
    from edge.core.errors import InputError  # noqa: PLC0415
    from edge.store import users  # noqa: PLC0415

    password = None
    if args.action == "add":
        # asked and hashed before the transaction: neither a person typing nor scrypt may hold the
        # store's write lock
        try:
            users.check_user(args.name, args.role)
            password = users.new_password(_read_password(args))
        except InputError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 2

    def action(conn, now):
        if args.action == "add":
            user = users.add_user(conn, args.name, args.display_name or args.name, args.role, password, now)
            print(f"user {user['name']} ({user['role']}) can log in at the dashboard")
        elif args.action == "disable":
            if not users.disable_user(conn, args.name, now):
                print(f"no user {args.name}", file=sys.stderr)
                return 1
            print(f"user {args.name} disabled and logged out")
        else:
            for row in users.list_users(conn):
                print(f"{row['name']}\t{row['role']}\t{row['display_name']}\t"
                      f"{'active' if row['active'] else 'disabled'}")
    return _in_store(args, action)


def _read_password(args) -> str:
    """From stdin (scripts: --password-stdin), else asked twice on the terminal."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    import getpass  # noqa: PLC0415

    from edge.core.errors import InputError  # noqa: PLC0415

    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise InputError("password_mismatch", "the two passwords differ")
    return first


class Progress:
    """A progress bar on stderr when it is a terminal; a final count otherwise."""

    def __init__(self, label: str):
        self.label = label
        self.tty = sys.stderr.isatty()
        self.shown = -1

    def __call__(self, done: int, total: int) -> None:
        percent = done * 100 // max(total, 1)
        if self.tty and percent != self.shown:
            self.shown = percent
            bar = "#" * (percent // 4)
            sys.stderr.write(f"\r{self.label} [{bar:<25}] {done}/{total}")
            sys.stderr.flush()

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


# -- parser ---------------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="store-edge", description="In-store edge service")
    top.add_argument("--version", action="version", version=f"store-edge {__version__}")
    sub = top.add_subparsers(dest="command", required=True)

    def with_config(p):
        p.add_argument("--config", default=default_config(),
                       help="config file (default: $STORE_EDGE_CONFIG, ./config.toml, /etc/store-edge/config.toml)")
        return p

    with_config(sub.add_parser("run", help="run the daemon")).set_defaults(func=cmd_run)
    demo = sub.add_parser("demo", help="the demo store on its own scratch data: cloud hub, printer, scanners, "
                                       "simulated customers and an outage")
    demo.add_argument("--config", help="the demo's own config (its data_dir a new folder or an earlier demo's); "
                                       "default: scratch data in a temporary folder")
    demo.add_argument("--for", dest="seconds", type=float, metavar="SECONDS",
                      help="stop after SECONDS and print a summary (last line JSON); exit 1 if a check failed")
    demo.set_defaults(func=cmd_demo)
    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("path", nargs="?", default=default_config())
    check.set_defaults(func=cmd_check_config)

    cat = sub.add_parser("catalog", help="import or export the product catalog").add_subparsers(
        dest="action", required=True)
    imp = with_config(cat.add_parser("import", help="import products from CSV or JSON"))
    imp.add_argument("file")
    imp.add_argument("--format", choices=("csv", "json"))
    imp.set_defaults(func=cmd_catalog_import)
    exp = with_config(cat.add_parser("export", help="export products to CSV or JSON ('-' for stdout)"))
    exp.add_argument("file")
    exp.add_argument("--format", choices=("csv", "json"))
    exp.set_defaults(func=cmd_catalog_export)

    ledger = sub.add_parser("ledger", help="stock ledger tools").add_subparsers(dest="action", required=True)
    with_config(ledger.add_parser("verify", help="check every balance equals the sum of its moves")) \
        .set_defaults(func=cmd_ledger_verify)

    bkp = with_config(sub.add_parser("backup", help="back up the store database now (safe while the daemon runs)"))
    backup_cmd.backup_arguments(bkp)
    bkp.set_defaults(func=backup_cmd.backup_run)
    rst = with_config(sub.add_parser("restore", help="replace the store database by a backup (stop store-edge first)"))
    backup_cmd.restore_arguments(rst)
    rst.set_defaults(func=backup_cmd.restore_run)

    tok = sub.add_parser("token", help="API tokens of tills").add_subparsers(dest="action", required=True)
    for action, text in (("add", "create (or replace) a till's token"), ("revoke", "revoke a till's token")):
        p = with_config(tok.add_parser(action, help=text))
        p.add_argument("device", help="the till's name, e.g. till-1")
        p.set_defaults(func=cmd_token)
    with_config(tok.add_parser("list", help="list tills and their token state")).set_defaults(func=cmd_token)
    usr = sub.add_parser("user", help="dashboard accounts (cashier, manager)").add_subparsers(dest="action",
                                                                                          required=True)
    add = with_config(usr.add_parser("add", help="create a user, or set a user's role and password"))
    add.add_argument("name", help="the login name, e.g. wang")
    add.add_argument("--role", choices=("cashier", "manager"), required=True)
    add.add_argument("--display-name", help="the name shown on screens and in the audit log, e.g. 王芳")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin (scripts)")
    add.set_defaults(func=cmd_user)
    off = with_config(usr.add_parser("disable", help="stop a user from logging in (and end their sessions)"))
    off.add_argument("name")
    off.set_defaults(func=cmd_user)
    with_config(usr.add_parser("list", help="list users")).set_defaults(func=cmd_user)
    for name, (text, _) in OWN_ARGUMENTS.items():
        # no -h of its own: --help goes with the rest to the command's own parser
        sub.add_parser(name, help=text, add_help=False).set_defaults(own_arguments=name)
    return top


# name: (help, module with add_arguments(parser) and run(args)); the module is imported when it runs
OWN_ARGUMENTS = {
    "doctor": ("check this PC: config, disk, database, clock, devices, cloud, API port", "edge.ops.doctor"),
    "hub": ("run the reference cloud hub (docs/sync-protocol.md)", "hub.app"),
    "virtual-printer": ("a virtual ESC/POS receipt printer on TCP (port 9100)", "drivers.virtual_printer.server"),
    "fault-proxy": ("fault-injecting HTTP proxy between the edge and the cloud", "hub.faultproxy"),
}


def _run_own_arguments(name: str, argv: list[str]) -> int:
    text, module_name = OWN_ARGUMENTS[name]
    module = importlib.import_module(module_name)
    own = argparse.ArgumentParser(prog=f"store-edge {name}", description=text)
    module.add_arguments(own)
    args = own.parse_args(argv)
    if name == "virtual-printer":  # drivers/ import nothing of edge/: the command gives it the daemon's log format
        from edge.core import log as log_mod  # noqa: PLC0415

        log_mod.setup(args.log_level)
    return module.run(args)


def main(argv: list[str] | None = None) -> int:
    top = parser()
    args, rest = top.parse_known_args(argv)
    if getattr(args, "own_arguments", None):
        return _run_own_arguments(args.own_arguments, rest)
    if rest:
        top.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        code = args.func(args)
        sys.stdout.flush()  # here, not at exit, where a closed pipe is only reported
    except BrokenPipeError:
        # `store-edge catalog export - | head`: the reader has what it wanted. Not an error, and
        # stdout goes to /dev/null so that the interpreter's last flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return code


if __name__ == "__main__":
    raise SystemExit(main())
