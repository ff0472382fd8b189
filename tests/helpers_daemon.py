"""Run the real daemon (`store-edge run`) as a separate process, for tests that kill it.

Nothing here imports the daemon's code: the process is started the way systemd starts it, from its
console script, with a config file written for the test. Every wait polls with a deadline, so a
slow CI machine only makes the test slower, never wrong.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def store_edge_command() -> list[str]:
    """The installed console script next to this interpreter (.venv/bin/store-edge)."""
    for candidate in (Path(sys.executable).with_name("store-edge"), REPO / ".venv" / "bin" / "store-edge"):
        if candidate.exists():
            return [str(candidate)]
    return [sys.executable, "-m", "edge"]


def child_env() -> dict[str, str]:
    """The environment for a child store-edge: never talk to a systemd that runs the tests."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "STORE_EDGE_CONFIG", "JOURNAL_STREAM")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(path: Path, data_dir: Path, port: int, *, store_id: str = "crash-test",
                 store_name: str = "崩溃测试门店", level: str = "warning", extra: str = "", store: str = "") -> Path:
    """`extra`: more TOML tables appended as they are, e.g. a [cloud] section; `store`: more keys of [store]
    (a table cannot be opened twice), e.g. its time zone and day_cutoff."""
    path.write_text(
        f'[store]\nid = "{store_id}"\nname = "{store_name}"\ndata_dir = "{data_dir.as_posix()}"\n{store}\n'
        f'[api]\nhost = "127.0.0.1"\nport = {port}\n\n'
        f'[log]\nlevel = "{level}"\n' + (f"\n{extra}" if extra else ""), encoding="utf-8")
    return path


def run_cli(*args: str, config: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    """`store-edge <args> --config <config>` to completion, output captured as text."""
    return subprocess.run([*store_edge_command(), *args, "--config", str(config)], capture_output=True,
                          text=True, timeout=timeout, env=child_env(), cwd=config.parent)


class DaemonDied(RuntimeError):
    pass


class Daemon:
    """One `store-edge run` process. A new port is taken at every start, so a restart never races
    a port the previous process left behind."""

    def __init__(self, config_path: Path, data_dir: Path, log_path: Path, *, store_id: str = "crash-test",
                 store_name: str = "崩溃测试门店", level: str = "warning", extra_config: str = "",
                 store_config: str = ""):
        self.config_path = config_path
        self.data_dir = data_dir
        self.log_path = log_path
        self.store_id = store_id
        self.store_name = store_name
        self.level = level
        self.extra_config = extra_config  # appended to config.toml at every start (e.g. [cloud])
        self.store_config = store_config  # more keys of its [store] table
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.starts = 0

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, ready_timeout: float = 30.0, attempts: int = 3) -> None:
        """Start and wait until /api/v1/health answers 200; retry (new port) if the bind failed."""
        assert self.proc is None or self.proc.poll() is not None, "the previous daemon still runs"
        last = None
        for _ in range(attempts):
            self.port = free_port()
            write_config(self.config_path, self.data_dir, self.port, store_id=self.store_id,
                         store_name=self.store_name, level=self.level, extra=self.extra_config,
                         store=self.store_config)
            self.starts += 1
            with open(self.log_path, "a", encoding="utf-8") as log:
                log.write(f"--- start {self.starts} on port {self.port}\n")
                log.flush()
                self.proc = subprocess.Popen([*store_edge_command(), "run", "--config", str(self.config_path)],
                                             stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                             env=child_env(), cwd=self.config_path.parent)
            try:
                self.wait_ready(ready_timeout)
                return
            except DaemonDied as exc:  # e.g. the port was taken between free_port() and bind
                last = exc
        raise AssertionError(f"the daemon did not start after {attempts} attempts: {last}\n{self.log_tail()}")

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise DaemonDied(f"exited with {self.proc.returncode} before it was ready")
            try:
                status, body, _ = request(self.port, "GET", "/api/v1/health", timeout=2)
                if status == 200 and body == {"status": "ok"}:
                    return
            except (OSError, http.client.HTTPException):
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"the daemon was not ready within {timeout} s\n{self.log_tail()}")
            time.sleep(0.02)  # polling interval, not a wait for an event

    def freeze(self, timeout: float = 30.0) -> bool:
        """SIGSTOP, and wait until every thread has stopped (Linux /proc); False if that cannot be seen.

        A frozen process runs no more instructions, so what it holds (SQLite's locks) can be looked at
        and a SIGKILL that follows lands exactly at the moment of the freeze."""
        self.proc.send_signal(signal.SIGSTOP)
        tasks = Path(f"/proc/{self.proc.pid}/task")
        deadline = time.monotonic() + timeout
        while True:
            try:
                states = [(t / "stat").read_text().rpartition(")")[2].split()[0] for t in tasks.iterdir()]
            except OSError:  # no /proc, or a thread ended while listed
                states = None
            if states is not None and any(s in "ZX" for s in states):
                return False  # it is exiting on its own
            if states is not None and states and all(s in "Tt" for s in states):
                return True
            if states is None and not tasks.exists():
                return False
            if time.monotonic() > deadline:
                raise AssertionError(f"the daemon did not stop within {timeout} s of SIGSTOP")
            time.sleep(0.001)

    def thaw(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> int:
        """SIGKILL: no handler, no cleanup, no checkpoint; return the exit status."""
        return self._signal(signal.SIGKILL, 30)

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM: the graceful shutdown systemd asks for; return the exit status."""
        return self._signal(signal.SIGTERM, timeout)

    def _signal(self, signum: int, timeout: float) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)
            raise AssertionError(f"the daemon did not exit within {timeout} s of {signal.Signals(signum).name}"
                                 f"\n{self.log_tail()}")

    def stop_quietly(self) -> None:
        """For fixture teardown: make sure no process outlives the test."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no daemon log)"
        return "daemon log (tail):\n" + "\n".join(text.splitlines()[-lines:])


def request(port: int, method: str, path: str, body=None, headers: dict | None = None,
            timeout: float = 30.0) -> tuple[int, object, http.client.HTTPResponse]:
    """One request on a fresh connection; (status, decoded JSON body, response)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
        hdrs = {"Content-Type": "application/json", **(headers or {})} if data is not None else dict(headers or {})
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, (json.loads(raw) if raw else None), resp
    finally:
        conn.close()


def holds_write_lock(db_path: Path) -> bool | None:
    """Does some process hold SQLite's WAL write lock on db_path, i.e. is a write transaction open?

    In WAL mode the writer takes an exclusive POSIX lock on byte 120 of the -shm file from BEGIN
    IMMEDIATE until COMMIT or ROLLBACK (and through the commit's fsync). Linux lists it in
    /proc/locks; None when that cannot be read."""
    try:
        inode = os.stat(f"{db_path}-shm").st_ino
        table = Path("/proc/locks").read_text()
    except OSError:
        return None
    for line in table.splitlines():
        parts = line.split()
        # "7: POSIX  ADVISORY  WRITE 4242 fe:00:2165210 120 120"; waiters carry a "->" and are skipped
        if len(parts) == 8 and parts[1] == "POSIX" and parts[3] == "WRITE" \
                and parts[5].rsplit(":", 1)[-1] == str(inode) and parts[6] == "120":
            return True
    return False


# -- waiting --------------------------------------------------------------------------------------

def wait_for(check, timeout: float, what: str, details=lambda: ""):
    """Poll a predicate until it returns something true; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            result = check()
            if result:
                return result
        except (OSError, http.client.HTTPException) as exc:  # a process between two lives
            last_error = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}"
                                 f"{f' (last error: {last_error!r})' if last_error else ''}\n{details()}")
        time.sleep(0.05)  # polling interval, not a wait for an event


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no {path.name})"
    return f"{path.name} (tail):\n" + "\n".join(text.splitlines()[-lines:])


# -- other store-edge processes (the hub, the virtual printer, the fault proxy) ----------------

class Service:
    """A store-edge subcommand run as its own process, its output appended to a log file."""

    name = "service"

    def __init__(self, root: Path, port: int | None = None):
        self.root = root
        self.port = port or free_port()
        self.log_path = root / f"{self.name}.log"
        self.proc: subprocess.Popen | None = None

    def spawn(self, args: list[str]) -> None:
        assert self.proc is None or self.proc.poll() is not None, f"the {self.name} still runs"
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(f"--- start: {' '.join(args)}\n")
            log.flush()
            self.proc = subprocess.Popen([*store_edge_command(), *args], stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=child_env(), cwd=self.root)

    def wait_ready(self, probe, timeout: float = 30.0) -> None:
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"the {self.name} exited with {self.proc.returncode}\n{self.tail()}")
            return probe()
        wait_for(ready, timeout, f"the {self.name} to answer", details=self.tail)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, the graceful stop; it must exit 0."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)
            raise AssertionError(f"the {self.name} did not stop within {timeout} s of SIGTERM\n{self.tail()}")
        assert code == 0, f"the {self.name} exited with {code}\n{self.tail()}"

    def stop_quietly(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def tail(self) -> str:
        return log_tail(self.log_path)


class Hub(Service):
    """`store-edge hub` with its admin API; the same port at every start (a proxy's upstream does not move)."""

    name = "hub"

    def __init__(self, root: Path, admin_token: str):
        super().__init__(root)
        self.admin_token = admin_token
        self.url = f"http://127.0.0.1:{self.port}"
        self.data = root / "hub"
        self.token_file = root / "hub-admin-token"
        self.token_file.write_text(admin_token + "\n", encoding="utf-8")
        self.token_file.chmod(0o600)

    def start(self, *extra: str) -> None:
        self.spawn(["hub", "--data", str(self.data), "--port", str(self.port),
                    "--admin-token-file", str(self.token_file), *extra])
        self.wait_ready(lambda: self.admin("GET", "/stores")[0] == 200)

    def admin(self, method: str, path: str, body=None) -> tuple[int, dict]:
        status, data, _ = request(self.port, method, "/admin/v1" + path, body,
                                  headers={"Authorization": f"Bearer {self.admin_token}"}, timeout=15)
        return status, data

    def admin_ok(self, method: str, path: str, body=None) -> dict:
        status, data = self.admin(method, path, body)
        assert status in (200, 201), (method, path, status, data)
        return data


class VirtualPrinter(Service):
    """`store-edge virtual-printer` with its HTTP control API."""

    name = "printer"

    def __init__(self, root: Path):
        super().__init__(root)
        self.control = free_port()

    def start(self, *extra: str) -> None:
        self.spawn(["virtual-printer", "--port", str(self.port), "--control-port", str(self.control), *extra])
        self.wait_ready(lambda: self.get("/state") is not None)

    def get(self, path: str):
        status, data, _ = request(self.control, "GET", path, timeout=5)
        assert status == 200, (path, status, data)
        return data

    def put_state(self, **state) -> dict:
        status, data, _ = request(self.control, "PUT", "/state", state, timeout=5)
        assert status == 200, (state, status, data)
        return data

    def receipts(self) -> list[dict]:
        return self.get("/receipts")


async def drop_mid_body(port: int, head: str, body: bytes) -> None:
    """A client that goes away mid-request: the request line and headers (`head`, without the body's
    length and the blank line), then all but the last bytes of the body once the server has taken the
    request (it answered 100 Continue), then the connection is cut."""
    import asyncio  # noqa: PLC0415

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{head}Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n".encode())
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 100")  # the handler has the request
    writer.write(body[:-5])
    await writer.drain()
    writer.transport.abort()
