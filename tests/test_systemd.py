"""The systemd integration: the unit file, the udev rules, and the sd_notify protocol end to end.

The daemon tests start a real `store-edge run` and receive its notifications on a real AF_UNIX
datagram socket, the way systemd does; nothing is mocked there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from edge.core import config as config_mod
from edge.core import systemd

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "store-edge.service"
RULES = ROOT / "systemd" / "99-store-edge.rules"
STORE_EDGE = Path(sys.executable).parent / "store-edge"
TIMEOUT = 10.0  # an upper bound for waits that normally take a fraction of a second

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="AF_UNIX notify sockets: Linux only")


# -- the unit file ----------------------------------------------------------------------------------

def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """A systemd unit as {section: {key: [values, in order]}}; a key may repeat (DeviceAllow=, Wants=)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if not line or line[0] in "#;":
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"directive outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT.read_text(encoding="utf-8"))


def one(unit, section: str, key: str) -> str:
    values = unit[section].get(key)
    assert values, f"[{section}] {key}= is missing"
    return values[-1]  # the last assignment wins, as in systemd


def words(unit, section: str, key: str) -> set[str]:
    return {word for value in unit[section].get(key, []) for word in value.split()}


def test_unit_service_type_and_lifecycle(unit):
    assert one(unit, "Service", "Type") == "notify"
    assert one(unit, "Service", "NotifyAccess") == "main"
    assert one(unit, "Service", "WatchdogSec") == "30"
    assert one(unit, "Service", "Restart") == "on-failure"
    assert one(unit, "Service", "RestartSec") == "2"
    assert one(unit, "Service", "TimeoutStopSec") == "20"
    exec_start = one(unit, "Service", "ExecStart").split()
    assert exec_start[0] == "/opt/store-edge/venv/bin/store-edge"
    assert exec_start[1:] == ["run", "--config", "/etc/store-edge/config.toml"]
    assert "PYTHONUNBUFFERED=1" in words(unit, "Service", "Environment")


def test_unit_user_groups_and_directories(unit):
    assert one(unit, "Service", "User") == "store-edge"
    assert one(unit, "Service", "Group") == "store-edge"
    assert {"dialout", "lp", "plugdev", "video", "input"} <= words(unit, "Service", "SupplementaryGroups")
    assert one(unit, "Service", "StateDirectory") == "store-edge"
    assert one(unit, "Service", "ConfigurationDirectory") == "store-edge"
    assert "ReadWritePaths" not in unit["Service"]  # StateDirectory= already makes /var/lib/store-edge writable


def test_unit_ordering_and_install(unit):
    assert "network-online.target" in words(unit, "Unit", "Wants")
    assert "network-online.target" in words(unit, "Unit", "After")
    # the drivers that register the device groups DeviceAllow= names are loaded before the daemon starts
    assert {"modprobe@usbserial.service", "modprobe@cdc_acm.service"} <= words(unit, "Unit", "Wants")
    assert {"modprobe@usbserial.service", "modprobe@cdc_acm.service"} <= words(unit, "Unit", "After")
    assert one(unit, "Install", "WantedBy") == "multi-user.target"


def test_unit_hardening_keeps_devices_reachable(unit):
    service = unit["Service"]
    assert "PrivateDevices" not in service, "PrivateDevices= hides /dev/ttyS*, /dev/ttyUSB* and /dev/ttyACM*"
    assert one(unit, "Service", "NoNewPrivileges") == "yes"
    assert one(unit, "Service", "ProtectSystem") == "strict"
    assert one(unit, "Service", "ProtectHome") == "yes"
    assert one(unit, "Service", "PrivateTmp") == "yes"
    for key in ("ProtectKernelTunables", "ProtectKernelModules", "ProtectControlGroups", "LockPersonality"):
        assert one(unit, "Service", key) == "yes", key
    assert words(unit, "Service", "RestrictAddressFamilies") == {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
    assert one(unit, "Service", "DevicePolicy") == "closed"

    allowed = {}
    for value in service.get("DeviceAllow", []):
        spec, _, perms = value.partition(" ")
        allowed[spec] = perms.strip()
    for spec in ("char-ttyS", "char-ttyUSB", "char-ttyACM", "char-usb_device", "char-usb", "char-video4linux"):
        assert set(allowed.get(spec, "")) >= {"r", "w"}, f"DeviceAllow={spec} rw is missing"
    assert "r" in allowed.get("char-input", ""), "DeviceAllow=char-input r is missing"
    assert not any("m" in perms for perms in allowed.values()), "the daemon never creates device nodes"


def test_unit_cloud_token_credential_is_optional(unit):
    load = one(unit, "Service", "LoadCredential")
    assert load == "cloud-token:/etc/store-edge/cloud-token"
    # a SetCredential= of the same id is systemd's fallback: a missing token file must not fail the unit
    fallback = [v for v in unit["Service"].get("SetCredential", []) if v.split(":", 1)[0] == "cloud-token"]
    assert fallback, "SetCredential=cloud-token:... (the fallback that makes the token file optional) is missing"


def test_empty_credential_fallback_is_a_clear_config_error(tmp_path, monkeypatch):
    """The unit's fallback credential is a lone newline: asking for it must fail loudly, not send '\\n'."""
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "cloud-token").write_text("\n")
    config = tmp_path / "config.toml"
    config.write_text('[store]\nid = "s1"\nname = "t"\n[cloud]\nurl = "https://cloud.example.com"\n'
                      'token = { credential = "cloud-token" }\n', encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    with pytest.raises(config_mod.ConfigError) as err:
        config_mod.load(config)
    assert "cloud-token" in str(err.value) and "empty" in str(err.value)

    (creds / "cloud-token").write_text("s3cret\n")
    loaded = config_mod.load(config)
    assert loaded.cloud_token.reveal() == "s3cret"
    assert "s3cret" not in repr(loaded.cloud_token)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed (usual in containers); the static checks above still run")
def test_unit_passes_systemd_analyze_verify(tmp_path):
    # verify insists the ExecStart= binary exists: point it at one that does, keep everything else
    true = shutil.which("true") or "/bin/true"
    text = re.sub(r"(?m)^ExecStart=.*$", f"ExecStart={true}", UNIT.read_text(encoding="utf-8"))
    copy = tmp_path / "store-edge.service"
    copy.write_text(text, encoding="utf-8")
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(copy)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    ours = [line for line in (result.stdout + result.stderr).splitlines() if "store-edge.service" in line]
    assert result.returncode == 0 and not ours, result.stdout + result.stderr


# -- the udev rules -----------------------------------------------------------------------------------

RULE_PAIR = re.compile(r'\s*([A-Z_]+(?:\{[^}]+\})?)\s*(==|!=|\+=|-=|:=|=)\s*"([^"]*)"\s*(?:,|$)')


def parse_rules(text: str) -> list[list[tuple[str, str, str]]]:
    rules = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        pairs, pos = [], 0
        while pos < len(line):
            match = RULE_PAIR.match(line, pos)
            assert match, f"99-store-edge.rules:{number}: cannot parse {line[pos:]!r}"
            pairs.append(match.groups())
            pos = match.end()
        rules.append(pairs)
    return rules


def test_udev_rules_parse_and_name_pos_devices():
    rules = parse_rules(RULES.read_text(encoding="utf-8"))
    gotos = {value for rule in rules for key, op, value in rule if key == "GOTO"}
    labels = {value for rule in rules for key, op, value in rule if key == "LABEL"}
    assert gotos <= labels, f"GOTO without LABEL: {gotos - labels}"

    assignments = [(key, value) for rule in rules for key, op, value in rule if op in ("=", "+=", ":=")]
    assert all(value == "store-edge" for key, value in assignments if key == "GROUP")
    assert ("MODE", "0660") in assignments
    links = [value for key, value in assignments if key == "SYMLINK"]
    assert links and all(link.startswith("pos/") for link in links)
    kinds = {value for key, value in assignments if key == "ENV{STORE_EDGE_KIND}"}
    assert kinds == {"scanner", "printer"}

    vendors = " ".join(value for rule in rules for key, op, value in rule if key in ("ATTRS{idVendor}", "ATTR{idVendor}"))
    for vendor in ("0c2e", "05e0", "1eab", "05f9", "04b8", "0483", "1fc9", "0fe6"):
        assert vendor in vendors, f"vendor {vendor} is not matched"


# -- the notify protocol, unit level --------------------------------------------------------------

@pytest.mark.parametrize(("usec", "pid", "expected"), [
    (None, None, None),             # no watchdog configured
    ("30000000", None, 15.0),       # WatchdogSec=30 -> ping every 15 s
    ("30000000", "self", 15.0),     # WATCHDOG_PID names this process
    ("30000000", "1", None),        # the watchdog is meant for another process
    ("200000", None, 0.1),
    ("0", None, None),
    ("", None, None),
    ("soon", None, None),
    ("-5", None, None),
])
def test_watchdog_interval(monkeypatch, usec, pid, expected):
    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", str(os.getpid()) if pid == "self" else pid)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert systemd.watchdog_interval() == expected


@linux_only
def test_notify_abstract_namespace_socket(monkeypatch):
    name = f"store-edge-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(TIMEOUT)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.notify("READY=1\nSTATUS=test")
        assert sock.recv(4096) == b"READY=1\nSTATUS=test"


def test_notify_is_a_noop_outside_systemd(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.notify("READY=1") is False


def test_notify_to_a_missing_socket_fails_softly(monkeypatch, tmp_path):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert systemd.notify("WATCHDOG=1") is False


# -- the notify protocol, end to end with the real daemon ---------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Daemon:
    """A real `store-edge run` with NOTIFY_SOCKET pointing at our datagram socket."""

    def __init__(self, tmp_path: Path, watchdog_usec: int = 200_000):
        self.port = free_port()
        config = tmp_path / "config.toml"
        config.write_text(f'[store]\nid = "test-store"\nname = "测试门店"\ndata_dir = "{tmp_path / "data"}"\n'
                          f'[api]\nhost = "127.0.0.1"\nport = {self.port}\n', encoding="utf-8")
        # sun_path holds 107 bytes: pytest's tmp_path can be longer than that
        sock_dir = tmp_path if len(str(tmp_path)) < 80 else Path(tempfile.mkdtemp(prefix="se-"))
        self.socket_path = sock_dir / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.socket_path))
        self.sock.settimeout(TIMEOUT)
        self.log_path = tmp_path / "stderr.log"
        env = {k: v for k, v in os.environ.items()
               if k not in ("WATCHDOG_PID", "JOURNAL_STREAM", "CREDENTIALS_DIRECTORY", "LISTEN_FDS", "LISTEN_PID")}
        env.update(NOTIFY_SOCKET=str(self.socket_path), WATCHDOG_USEC=str(watchdog_usec))
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([str(STORE_EDGE), "run", "--config", str(config)], env=env,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self.received: list[str] = []

    def expect(self, message: str) -> None:
        """Receive datagrams until one carries `message` as one of its lines."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(4096).decode()
            except socket.timeout:
                break
            self.received.append(data)
            if message in data.split("\n"):
                return
        raise AssertionError(f"no {message} from the daemon; got {self.received}; log:\n{self.log()}")

    def wait(self) -> int:
        try:
            return self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the daemon did not exit within {TIMEOUT} s; log:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=TIMEOUT)
        self.sock.close()
        self.socket_path.unlink(missing_ok=True)
        if self.socket_path.parent != self.log_path.parent:  # the short fallback folder
            self.socket_path.parent.rmdir()


@pytest.fixture
def daemon(tmp_path):
    started = Daemon(tmp_path)
    yield started
    started.close()


def log_position(log: str, message: str) -> int:
    match = re.search(rf'msg="?{re.escape(message)}"?(\s|$)', log)
    assert match, f"no {message!r} line in the log:\n{log}"
    return match.start()


@linux_only
def test_daemon_notify_lifecycle(daemon):
    daemon.expect("READY=1")
    assert any(f"STATUS=serving on 127.0.0.1:{daemon.port}" in d for d in daemon.received)

    # READY=1 means the API answers now, not "soon"
    with urllib.request.urlopen(f"http://127.0.0.1:{daemon.port}/api/v1/health", timeout=TIMEOUT) as resp:
        assert resp.status == 200
        assert json.loads(resp.read()) == {"status": "ok"}

    for _ in range(3):  # WATCHDOG_USEC=0.2 s: a ping every 0.1 s while the store answers
        daemon.expect("WATCHDOG=1")

    daemon.proc.send_signal(signal.SIGTERM)
    daemon.expect("STOPPING=1")
    assert daemon.wait() == 0

    log = daemon.log()
    # started in order, stopped in reverse
    assert log_position(log, "store open") < log_position(log, "scheduler started") < log_position(log, "listening")
    assert log_position(log, "stopping") < log_position(log, "scheduler stopped") < log_position(log, "store closed")
    assert log_position(log, "store closed") < log_position(log, "stopped")
    # "health lost" may show on a loaded machine: the test's 0.1 s interval is also the read timeout
    errors = [line for line in log.splitlines() if "level=error" in line and "health lost" not in line]
    assert not errors and "Traceback" not in log, log


@linux_only
def test_daemon_second_signal_exits_at_once(daemon):
    daemon.expect("READY=1")
    # Stop the process so both signals are pending together when it continues: the second one then
    # always lands while the first shutdown is under way, with no timing window to hit.
    os.kill(daemon.proc.pid, signal.SIGSTOP)
    try:
        os.kill(daemon.proc.pid, signal.SIGINT)
        os.kill(daemon.proc.pid, signal.SIGTERM)
    finally:
        os.kill(daemon.proc.pid, signal.SIGCONT)
    assert daemon.wait() == 1
    assert "second signal: exiting now" in daemon.log()
