"""`store-edge doctor` against real (virtual) devices: a virtual printer, a closed port, a missing port."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from drivers.virtual_printer import VirtualPrinter
from edge.ops import doctor

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def virtual_printer():
    """A VirtualPrinter on its own event loop thread (the doctor is blocking code)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    vp = asyncio.run_coroutine_threadsafe(VirtualPrinter(port=0).start(), loop).result(10)
    yield vp
    asyncio.run_coroutine_threadsafe(vp.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(tmp_path: Path, devices: str = "") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f"""
[store]
id = "doctor-test"
name = "测试门店"
data_dir = "data"

[api]
host = "127.0.0.1"
port = {free_port()}
{devices}
""", encoding="utf-8")
    return path


def diagnose(path: Path) -> dict[str, doctor.Check]:
    return {check.name: check for check in doctor.diagnose(str(path), timeout=2.0)}


def test_virtual_printer_is_ready(tmp_path, virtual_printer):
    path = write_config(tmp_path, f"""
[[printers]]
name = "counter"
type = "network"
host = "127.0.0.1"
port = {virtual_printer.port}
""")
    checks = diagnose(path)
    assert checks["config"].status == "ok"
    assert checks["printer counter"].status == "ok", checks["printer counter"]
    assert "ready" in checks["printer counter"].message
    assert checks["data dir"].status == "ok"
    assert checks["api"].status == "ok" and "free" in checks["api"].message
    assert checks["cloud"].status == "ok"
    assert not (tmp_path / "data" / "store.db").exists(), "the doctor must not create the database"
    assert not any(c.status == "fail" for c in checks.values()), checks


def test_printer_on_a_closed_port_fails_with_a_fix(tmp_path, capsys):
    port = free_port()
    path = write_config(tmp_path, f"""
[[printers]]
name = "counter"
type = "network"
host = "127.0.0.1"
port = {port}
""")
    assert doctor.main(["--config", str(path), "--timeout", "2"]) == 1
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if "printer counter" in line)
    assert line.startswith("✗"), out
    assert f"127.0.0.1:{port}" in line and "fix:" in line and "self-test" in line


def test_missing_serial_scanner_is_a_warning_not_a_failure(tmp_path, capsys):
    path = write_config(tmp_path, f"""
[[scanners]]
name = "handheld"
type = "serial"
path = "{tmp_path}/no-such-tty"
""")
    assert doctor.main(["--config", str(path)]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if "scanner handheld" in line)
    assert line.startswith("!") and "not found" in line and "fix:" in line


def test_present_serial_scanner_is_ok(tmp_path):
    tty = tmp_path / "tty"
    tty.write_bytes(b"")
    path = write_config(tmp_path, f"""
[[scanners]]
name = "handheld"
type = "serial"
path = "{tty}"
""")
    assert diagnose(path)["scanner handheld"].status == "ok"


def test_missing_camera_is_a_warning(tmp_path):
    path = write_config(tmp_path, """
[[cameras]]
name = "cam"
type = "camera"
source = "/dev/video-does-not-exist"
""")
    check = diagnose(path)["camera cam"]
    assert check.status == "warn" and "not found" in check.message


def test_bad_config_fails_the_config_check(tmp_path, capsys):
    path = tmp_path / "config.toml"
    path.write_text('[store]\nid = "x"\nname = "n"\nbogus = 1\n', encoding="utf-8")
    assert doctor.main(["--config", str(path)]) == 1
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.split(" ", 1)[1].startswith("config:"))
    assert line.startswith("✗") and "bogus" in line and "check-config" in line


def test_cloud_token_refused_and_clock_skew(tmp_path):
    """A cloud that answers 401 with a Date 10 minutes off: token wrong (✗), clock warning (!)."""
    import email.utils
    import time
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def date_time_string(self, timestamp=None):  # the Date header above is the only one
            return email.utils.formatdate(time.time() - 600, usegmt=True)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (tmp_path / "token").write_text("wrong\n")
        path = write_config(tmp_path, f"""
[cloud]
url = "http://127.0.0.1:{server.server_address[1]}"
token = {{ file = "token" }}
""")
        checks = diagnose(path)
    finally:
        server.shutdown()
        server.server_close()
    assert checks["cloud"].status == "fail" and "401" in checks["cloud"].message and "token" in checks["cloud"].fix
    assert checks["clock vs cloud"].status == "warn", checks["clock vs cloud"]


def test_json_output_parses(tmp_path):
    path = write_config(tmp_path, f"""
[[scanners]]
name = "handheld"
type = "serial"
path = "{tmp_path}/no-such-tty"
""")
    result = subprocess.run([sys.executable, "-m", "edge.ops.doctor", "--config", str(path), "--json"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["scanner handheld"]["status"] == "warn"
    assert {"name", "status", "message", "fix"} <= set(by_name["config"])
