"""`store-edge doctor`: check this machine and say what to fix, one line per check.

    ✓ fine    ! works, but look at it (a device unplugged, disk getting full)    ✗ broken: fix it
Exit status 0 when no check is ✗, 1 otherwise. `--json` prints the same for scripts.

Nothing here changes the machine: the database is opened read-only and is not created, devices are
only opened to ask their status. Device permissions are judged for the service's user (store-edge,
with the unit's SupplementaryGroups=) when that user exists, else for the user running the doctor
(doctor_access.py); the printers, scanners and cameras are checked in doctor_devices.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import email.utils
import errno
import grp
import json
import os
import pwd
import re
import shutil
import socket
import sqlite3
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from edge.ops.doctor_access import SERVICE_USER, UNIT_GROUPS, UNIT_PATHS, Check, Who, can, who_is
from edge.ops.doctor_devices import check_camera, check_printer, check_scanner

WARN_FREE = 1 << 30        # 1 GiB
FAIL_FREE = 200 << 20      # 200 MiB
CLOCK_SKEW = 60.0          # seconds
MIN_YEAR = 2025
SYMBOLS = {"ok": "✓", "warn": "!", "fail": "✗"}
ASCII_SYMBOLS = {"ok": "OK", "warn": "!!", "fail": "XX"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from edge.ops.config_file import default_config

    parser.add_argument("--config", default=default_config(),
                        help="config file (default: $STORE_EDGE_CONFIG, ./config.toml, /etc/store-edge/config.toml)")
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")
    parser.add_argument("--timeout", type=float, default=3.0,
                        help="seconds to wait for each device, the cloud and the API (default 3)")
    parser.add_argument("--user", help=f"judge device permissions for this user "
                                       f"(default: {SERVICE_USER} if it exists, else you)")


def run(args) -> int:
    checks = diagnose(args.config, timeout=args.timeout, user=args.user)
    failed = any(c.status == "fail" for c in checks)
    if args.json:
        print(json.dumps({"ok": not failed, "config": str(args.config),
                          "checks": [dataclasses.asdict(c) for c in checks]}, ensure_ascii=False, indent=2))
    else:
        print_report(checks)
    return 1 if failed else 0


def print_report(checks: list[Check], out=None) -> None:
    out = out or sys.stdout
    symbols = SYMBOLS
    try:
        "✓✗".encode(out.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        symbols = ASCII_SYMBOLS
    for c in checks:
        line = f"{symbols[c.status]} {c.name}: {c.message}"
        if c.fix and c.status != "ok":
            line += f"  -> fix: {c.fix}"
        print(line, file=out)
    fails = sum(c.status == "fail" for c in checks)
    warns = sum(c.status == "warn" for c in checks)
    print(f"\n{len(checks)} checks: {fails} to fix (✗), {warns} to look at (!)"
          if symbols is SYMBOLS else f"\n{len(checks)} checks: {fails} to fix, {warns} to look at", file=out)


# -- the checks ------------------------------------------------------------------------------------


def diagnose(config_path: str, *, timeout: float = 3.0, user: str | None = None) -> list[Check]:
    from edge.core import config as config_mod  # noqa: PLC0415

    checks: list[Check] = []
    who = who_is(user)
    with _unit_credentials() as note:
        try:
            config = config_mod.load(config_path)
        except config_mod.ConfigError as exc:
            checks.append(Check("config", "fail", "; ".join(exc.problems),
                                f"edit the file, then: store-edge check-config {exc.path}"))
            config = None
    if config is not None:
        devices = sum(1 for _ in config.devices())
        checks.append(Check("config", "ok", f"{config.path} valid (store {config.store.id}, {devices} device(s))"
                            + (f"; {note}" if note else "")))
    checks.append(_check_user(who))
    checks.append(_check_clock_year())
    if config is None:
        return checks
    checks += _check_data_dir(config, who)
    checks.append(_check_database(config))
    checks += _check_jobs(config)
    api = _check_api(config, timeout)
    daemon_running = api.status == "ok" and "answers" in api.message
    for section, device in config.devices():
        if not device.enabled:
            checks.append(Check(f"{section[:-1]} {device.name}", "ok", "disabled in the config (enabled = false)"))
            continue
        check = {"printers": check_printer, "scanners": check_scanner, "cameras": check_camera}[section]
        checks.append(check(device, who=who, timeout=timeout, daemon_running=daemon_running))
    checks += _check_cloud(config, timeout)
    checks.append(api)
    service = _check_service()
    if service:
        checks.append(service)
    return checks


class _unit_credentials:
    """Outside systemd $CREDENTIALS_DIRECTORY is unset and `token = { credential = ... }` cannot load:
    read the files the installed unit's LoadCredential= names instead (needs root, as systemd does)."""

    def __enter__(self) -> str:
        self._tmp = None
        if os.environ.get("CREDENTIALS_DIRECTORY"):
            return ""
        pairs = []
        for unit in UNIT_PATHS:
            try:
                text = Path(unit).read_text(encoding="utf-8")
            except OSError:
                continue
            pairs += re.findall(r"(?m)^LoadCredential=([^:\s]+):(\S+)\s*$", text)
        if not pairs:
            return ""
        self._tmp = tempfile.TemporaryDirectory(prefix="store-edge-doctor-")
        for name, source in pairs:
            os.symlink(source, os.path.join(self._tmp.name, name))
        os.environ["CREDENTIALS_DIRECTORY"] = self._tmp.name
        return "credentials read as the unit's LoadCredential= names them"

    def __exit__(self, *exc) -> None:
        if self._tmp is not None:
            os.environ.pop("CREDENTIALS_DIRECTORY", None)
            self._tmp.cleanup()


def _check_user(who: Who) -> Check:
    try:
        entry = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        return Check("user", "warn", f"no system user {SERVICE_USER} (device permissions judged for {who.name})",
                     "sudo ./install.sh (or: sudo useradd --system --user-group --home-dir /var/lib/store-edge "
                     "--no-create-home --shell /usr/sbin/nologin store-edge)")
    member = {g.gr_name for g in grp.getgrall() if SERVICE_USER in g.gr_mem}
    member |= {g.gr_name for g in grp.getgrall() if g.gr_gid == entry.pw_gid}
    existing = [g for g in UNIT_GROUPS if _group_exists(g)]
    missing = [g for g in existing if g not in member]
    absent = [g for g in UNIT_GROUPS if g not in existing]
    if absent:
        return Check("user", "fail", f"group(s) {' '.join(absent)} do not exist here: the unit's "
                     "SupplementaryGroups= fails the start (216/GROUP)",
                     "sudo systemctl edit store-edge: add 'SupplementaryGroups=' and 'SupplementaryGroups="
                     + " ".join(existing) + "'")
    if missing:
        return Check("user", "warn", f"{SERVICE_USER} is not in group(s) {' '.join(missing)} (the unit adds them "
                     "for the service; commands run with sudo -u store-edge lack them)",
                     f"sudo usermod -aG {','.join(missing)} {SERVICE_USER}")
    return Check("user", "ok", f"{SERVICE_USER} exists, in groups {' '.join(existing)}")


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def _check_clock_year() -> Check:
    now = dt.datetime.now(dt.timezone.utc)
    if now.year < MIN_YEAR:
        return Check("clock", "fail", f"the clock says {now:%Y-%m-%d %H:%M} UTC: receipts, tokens and sync need the "
                     "real time", "sudo timedatectl set-ntp true (or: sudo date -s 'YYYY-MM-DD HH:MM:SS'); "
                     "a PC that forgets the time at power-off needs a new CMOS battery")
    return Check("clock", "ok", f"{now:%Y-%m-%d %H:%M:%S} UTC")


def _check_data_dir(config, who: Who) -> list[Check]:
    data_dir = config.data_dir
    existing = data_dir
    while not existing.exists():
        existing = existing.parent
    fix_own = f"sudo install -d -o {SERVICE_USER} -g {SERVICE_USER} -m 0750 {data_dir}"
    out = []
    if existing != data_dir:
        if can(who, existing, "w"):
            out.append(Check("data dir", "ok", f"{data_dir} does not exist yet; {who.name} can create it"))
        else:
            out.append(Check("data dir", "fail", f"{data_dir} does not exist and {who.name} cannot create it",
                             fix_own))
    elif not can(who, data_dir, "rw"):
        out.append(Check("data dir", "fail", f"{data_dir} is not writable by {who.name}",
                         f"sudo chown -R {SERVICE_USER}:{SERVICE_USER} {data_dir}" if who.service else fix_own))
    else:
        out.append(Check("data dir", "ok", f"{data_dir} writable by {who.name}"))
    if str(data_dir).startswith("/etc/"):
        out[-1] = Check("data dir", "fail", f"{data_dir} is under /etc: read-only for the service "
                        "(ProtectSystem=strict)", 'set [store] data_dir = "/var/lib/store-edge" in the config')
    free = shutil.disk_usage(existing).free
    text = f"{free / (1 << 30):.1f} GiB free on {existing}"
    if free < FAIL_FREE:
        out.append(Check("disk", "fail", text + " (under 200 MiB: writes will fail)",
                         "free space: sudo journalctl --vacuum-size=100M; sudo apt-get clean; remove old backups"))
    elif free < WARN_FREE:
        out.append(Check("disk", "warn", text + " (under 1 GiB)",
                         "free space: sudo journalctl --vacuum-size=100M; sudo apt-get clean"))
    else:
        out.append(Check("disk", "ok", text))
    return out


def _check_database(config) -> Check:
    from edge.store import db  # noqa: PLC0415
    from edge.store.migrations import MIGRATIONS  # noqa: PLC0415

    path = config.db_path
    latest = len(MIGRATIONS)
    if not path.exists():
        return Check("database", "warn", f"{path} does not exist yet (the daemon creates it at its first start)",
                     "sudo systemctl start store-edge")
    try:
        version = db.inspect(path, timeout=2)
    except sqlite3.Error as exc:
        return Check("database", "fail", f"{path} cannot be read: {exc}",
                     f"run as root or {SERVICE_USER}; if it is damaged, stop the service and restore a backup")
    if version > latest:
        return Check("database", "fail", f"{path} is at schema {version}; this store-edge knows {latest}",
                     "install the newer store-edge (git pull && sudo ./install.sh) or restore a backup")
    if version < latest:
        return Check("database", "warn", f"{path} is at schema {version} of {latest}: migrated at the next start",
                     "sudo systemctl restart store-edge")
    return Check("database", "ok", f"{path} opens, schema {version} is current")


JOB_CHECKS = {  # job: (check name, what to do when its last run failed)
    "backup": ("backup", "free space or permissions of the backup folder (df -h; ls -ld); then: sudo store-edge "
                         "backup, and journalctl -u store-edge | grep 'backup failed'"),
    "ledger_check": ("ledger check", "journalctl -u store-edge | grep 'ledger check' shows the first mismatch; "
                                     "see docs/ledger.md"),
}


def _check_jobs(config) -> list[Check]:
    """The scheduled jobs' last runs, as the daemon recorded them in the store."""
    from edge.store import db, job_runs  # noqa: PLC0415

    if not config.db_path.exists():
        return []
    try:
        runs = db.read_only(config.db_path, job_runs.last_runs)
    except sqlite3.Error:
        return []  # the database check says why
    checks = []
    for job, (name, fix) in JOB_CHECKS.items():
        run = runs.get(job)
        if run is None:
            continue
        if run["ok"]:
            checks.append(Check(name, "ok", f"the last scheduled run ({run['last_run_at']}) succeeded"))
        else:
            last_ok = f"last success {run['last_ok_at']}" if run["last_ok_at"] else "never succeeded"
            checks.append(Check(name, "fail", f"the scheduled run failed {run['failures']} time(s) in a row, the "
                                f"last at {run['last_run_at']} ({last_ok}): {run['error']}", fix))
    return checks


def _check_cloud(config, timeout: float) -> list[Check]:
    if not config.cloud.url:
        return [Check("cloud", "ok", "not configured (the store runs alone)")]
    url = f"{config.cloud.url}/sync/v1/stores/{config.store.id}/state"
    from edge import __version__  # noqa: PLC0415

    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {config.cloud_token.reveal()}",
                                                   "User-Agent": f"store-edge-doctor/{__version__}"})
    status, headers, reason = None, None, ""
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (an http(s) URL)
            status, headers = response.status, response.headers
            response.read(65536)
    except urllib.error.HTTPError as exc:
        status, headers = exc.code, exc.headers
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = str(getattr(exc, "reason", exc))
    checks = []
    if status is None:
        checks.append(Check("cloud", "fail", f"{config.cloud.url} unreachable ({reason})",
                            "check the network and DNS (curl -I " + config.cloud.url + "), a proxy or firewall; "
                            "the store keeps selling offline meanwhile"))
        return checks
    if status in (401, 403):
        checks.append(Check("cloud", "fail", f"{config.cloud.url} refused the store's token ({status})",
                            "put the token from the cloud for store " + config.store.id
                            + f" into {config.cloud.token.file or '/etc/store-edge/cloud-token'}, then "
                            "sudo systemctl restart store-edge"))
    elif status == 404:
        checks.append(Check("cloud", "fail", f"{url}: 404 (wrong URL, or the cloud does not know store "
                            f"{config.store.id})", "check [cloud] url and [store] id against the cloud's records"))
    elif status >= 500 or status in (429, 503):
        checks.append(Check("cloud", "warn", f"{config.cloud.url} answers {status} (the cloud has trouble)",
                            "nothing to fix here: the store syncs when the cloud is back"))
    elif status == 200:
        checks.append(Check("cloud", "ok", f"{config.cloud.url} reachable, token accepted"))
    else:
        checks.append(Check("cloud", "warn", f"{url}: unexpected answer {status} (a proxy or captive portal?)",
                            "check [cloud] url; curl -v the URL from this PC"))
    date = headers.get("Date") if headers is not None else None
    if date:
        try:
            theirs = email.utils.parsedate_to_datetime(date)
            skew = (dt.datetime.now(dt.timezone.utc) - theirs).total_seconds()
        except (TypeError, ValueError):
            skew = None
        if skew is not None and abs(skew) > CLOCK_SKEW:
            checks.append(Check("clock vs cloud", "warn", f"this PC's clock is {abs(skew):.0f} s "
                                f"{'ahead of' if skew > 0 else 'behind'} the cloud's",
                                "sudo timedatectl set-ntp true; timedatectl status shows whether NTP syncs"))
        elif skew is not None:
            checks.append(Check("clock vs cloud", "ok", f"within {abs(skew):.0f} s of the cloud's"))
    return checks


def _check_api(config, timeout: float) -> Check:
    host, port = config.api.host, config.api.port
    ask = "127.0.0.1" if host in ("0.0.0.0", "localhost") else ("::1" if host == "::" else host)
    shown = f"[{ask}]" if ":" in ask else ask
    url = f"http://{shown}:{port}/api/v1/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            body = response.read(4096)
            status = response.status
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read(4096)
    except (urllib.error.URLError, OSError):
        status, body = None, b""
    if status == 200 and b'"ok"' in body:
        return Check("api", "ok", f"the daemon answers on {host}:{port}")
    if status == 503:
        return Check("api", "fail", f"the daemon on {host}:{port} says its store is unavailable",
                     "journalctl -u store-edge -b; sudo systemctl restart store-edge")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host if host != "localhost" else "127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return Check("api", "fail", f"port {port} on {host} is taken by another program "
                             + ("(not store-edge: /api/v1/health does not answer)" if status is None else
                                f"(/api/v1/health answered {status})"),
                             f"sudo ss -ltnp 'sport = :{port}' shows which; stop it or change [api] port")
            return Check("api", "fail", f"cannot listen on {host}:{port}: {exc.strerror}",
                         "set [api] host to 127.0.0.1, 0.0.0.0 or an address of this PC")
    return Check("api", "ok", f"port {host}:{port} is free (the daemon is not running)")


def _check_service() -> Check | None:
    if not os.path.isdir("/run/systemd/system") or not shutil.which("systemctl"):
        return None
    if not any(os.path.exists(p) for p in UNIT_PATHS):
        return Check("service", "warn", "store-edge.service is not installed", "sudo ./install.sh")
    import subprocess  # noqa: PLC0415

    try:
        state = subprocess.run(["systemctl", "is-active", "store-edge"], capture_output=True, text=True,
                               timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    if state == "active":
        return Check("service", "ok", "store-edge.service is active")
    if state == "failed":
        return Check("service", "fail", "store-edge.service has failed",
                     "systemctl status store-edge; journalctl -u store-edge -b; fix, then sudo systemctl restart "
                     "store-edge")
    return Check("service", "warn", f"store-edge.service is {state or 'unknown'}",
                 "sudo systemctl enable --now store-edge")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="store-edge doctor", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
