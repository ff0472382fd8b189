"""The hub's unit, systemd/store-edge-hub.service: its command, credentials and sandbox, checked
statically (tests/test_systemd.py's parser) and by systemd-analyze where it is installed."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from hub.app import add_arguments
from tests.postgres import free_port
from tests.test_systemd import one, parse_unit, words

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "store-edge-hub.service"
needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze is not installed (usual in containers)")


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT.read_text(encoding="utf-8"))


def exec_start(unit) -> list[str]:
    return one(unit, "Service", "ExecStart").split()


def option(args: list[str], name: str) -> str:
    assert args.count(name) == 1, f"{name} should be given once: {args}"
    return args[args.index(name) + 1]


def test_the_hub_unit_reads_its_database_url_and_admin_token_from_credentials(unit):
    args = exec_start(unit)
    assert args[:2] == ["/opt/store-edge/venv/bin/store-edge", "hub"]
    assert option(args, "--db-url-file") == "${CREDENTIALS_DIRECTORY}/db-url"
    assert option(args, "--admin-token-file") == "${CREDENTIALS_DIRECTORY}/admin-token"
    assert "--db-url" not in args, "a URL on the command line shows its password in ps and the journal"
    assert option(args, "--data") == "${STATE_DIRECTORY}"   # /var/lib/store-edge-hub, below
    assert option(args, "--host") == "127.0.0.1"   # behind the load balancer; another address in a drop-in
    assert option(args, "--port") == "${HUB_PORT}" and "HUB_PORT=8480" in words(unit, "Service", "Environment")
    loads = dict(value.split(":", 1) for value in unit["Service"]["LoadCredential"])
    assert loads == {"db-url": "/etc/store-edge-hub/db-url", "admin-token": "/etc/store-edge-hub/admin-token"}
    # both are required: no SetCredential= fallback (a hub without its database must not start)
    assert "SetCredential" not in unit["Service"]


def test_the_hub_unit_lifecycle_and_state(unit):
    assert one(unit, "Service", "Type") == "exec"
    assert one(unit, "Service", "Restart") == "on-failure"
    assert one(unit, "Service", "RestartSec") == "5" and one(unit, "Unit", "StartLimitIntervalSec") == "0"
    assert one(unit, "Service", "RestartPreventExitStatus") == "2"
    assert one(unit, "Service", "TimeoutStopSec") == "20"
    assert int(one(unit, "Service", "LimitNOFILE")) >= 16384   # a hint socket per store
    assert one(unit, "Service", "DynamicUser") == "yes" and one(unit, "Service", "User") == "store-edge-hub"
    assert one(unit, "Service", "StateDirectory") == "store-edge-hub"
    assert one(unit, "Service", "StateDirectoryMode") == "0700"
    assert one(unit, "Service", "UMask") == "0077"
    assert "PYTHONUNBUFFERED=1" in words(unit, "Service", "Environment")
    assert {"network-online.target", "postgresql.service"} <= words(unit, "Unit", "After")
    assert one(unit, "Install", "WantedBy") == "multi-user.target"


def test_the_hub_unit_is_sandboxed(unit):
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices", "ProtectKernelTunables",
                "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "ProtectClock",
                "ProtectHostname", "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID", "LockPersonality",
                "MemoryDenyWriteExecute", "PrivateMounts"):
        assert one(unit, "Service", key) == "yes", key
    assert one(unit, "Service", "ProtectSystem") == "strict"
    assert one(unit, "Service", "CapabilityBoundingSet") == ""
    assert words(unit, "Service", "RestrictAddressFamilies") == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert unit["Service"]["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]


def runnable(text: str) -> str:
    """systemd-analyze insists the ExecStart= program exists: point it at one that does."""
    return re.sub(r"(?ms)^ExecStart=.*?[^\\]$", f"ExecStart={shutil.which('true') or '/bin/true'}", text)


@needs_analyze
def test_the_hub_unit_passes_systemd_analyze_verify(tmp_path):
    copy = tmp_path / UNIT.name
    copy.write_text(runnable(UNIT.read_text(encoding="utf-8")), encoding="utf-8")
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(copy)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    ours = [line for line in (result.stdout + result.stderr).splitlines() if UNIT.name in line]
    assert result.returncode == 0 and not ours, result.stdout + result.stderr


@needs_analyze
def test_the_hub_units_exposure_stays_low(tmp_path):
    """systemd's own score of the sandbox (0 best, 10 worst); the store's unit, which must reach
    devices, scores 2.1. A directive dropped from the hub's raises it past the bound."""
    copy = tmp_path / UNIT.name
    copy.write_text(runnable(UNIT.read_text(encoding="utf-8")), encoding="utf-8")
    result = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(copy)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    level = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert level, result.stdout + result.stderr
    assert float(level.group(1)) <= 1.3, result.stdout


def test_the_template_drop_in_gives_each_instance_its_port_and_state_folder():
    drop_in = parse_unit((ROOT / "systemd" / "store-edge-hub@.service.d" / "instance.conf").read_text())
    assert drop_in["Service"]["Environment"] == ["HUB_PORT=%i"]
    # an empty assignment first: StateDirectory= is a list, and the unit's own folder must not stay in it
    assert drop_in["Service"]["StateDirectory"] == ["", "store-edge-hub/%i"]


@needs_analyze
def test_an_instance_of_the_template_passes_systemd_analyze_verify(tmp_path):
    template = tmp_path / "store-edge-hub@.service"
    template.write_text(runnable(UNIT.read_text(encoding="utf-8")), encoding="utf-8")
    shutil.copytree(ROOT / "systemd" / "store-edge-hub@.service.d", tmp_path / "store-edge-hub@.service.d")
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(tmp_path / "store-edge-hub@8481.service")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    ours = [line for line in (result.stdout + result.stderr).splitlines() if "store-edge-hub@" in line]
    assert result.returncode == 0 and not ours, result.stdout + result.stderr


def hub_options() -> set[str]:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return {name for action in parser._actions for name in action.option_strings}


@pytest.mark.skipif("--db-url-file" not in hub_options(),
                    reason="the hub reads no --db-url-file before the PostgreSQL port (issue 13 part 1) is merged")
def test_the_units_command_line_runs_a_hub_on_postgresql_from_its_credentials(unit, postgres_url, tmp_path):
    """ExecStart= as systemd runs it: the variables systemd sets, the credentials as files in a folder
    of their own, the database the tests' PostgreSQL."""
    creds, state = tmp_path / "credentials", tmp_path / "state"
    creds.mkdir(mode=0o700)
    state.mkdir()
    (creds / "db-url").write_text(postgres_url + "\n")
    (creds / "admin-token").write_text("hub_unit-test-token\n")
    for secret in creds.iterdir():
        secret.chmod(0o400)
    port = free_port()
    variables = {"CREDENTIALS_DIRECTORY": str(creds), "STATE_DIRECTORY": str(state), "HUB_PORT": str(port)}
    args = [re.sub(r"\$\{(\w+)\}", lambda m: variables[m.group(1)], arg) for arg in exec_start(unit)]
    args[0] = str(Path(sys.executable).with_name("store-edge"))
    env = {**{k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")},
           "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if "msg=listening" in line:
                break
        else:
            pytest.fail(f"the hub exited {proc.wait()} before listening")

        def get(path: str, token: str | None = None) -> tuple[int, str]:
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                             headers={"Authorization": f"Bearer {token}"} if token else {})
            try:
                with urllib.request.urlopen(request, timeout=10) as resp:
                    return resp.status, resp.read().decode()
            except urllib.error.HTTPError as err:
                return err.code, err.read().decode()

        assert get("/health") == (200, '{"status":"ok"}')
        assert get("/admin/v1/stores")[0] == 401
        status, text = get("/metrics", "hub_unit-test-token")
        assert status == 200 and "hub_database_up 1.0" in text
        # the password never shows on the command line
        assert postgres_url not in " ".join(args)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stderr.close()
