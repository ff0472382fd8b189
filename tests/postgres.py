"""A real PostgreSQL server for the tests: Debian's `postgresql` package, started in a temporary folder.

One server per test session (`PostgresServer`), each test its own empty database in it
(`create_database`). The server is a private one: `initdb` in a folder of its own, listening on
127.0.0.1 only on a free port, its unix socket in that folder, trust authentication (nothing outside
this machine can reach it, and the folder is readable by its owner only). A cluster Debian's package
may have started on 5432 is neither used nor touched.

PostgreSQL refuses to run as root, and CI runs as root: the server's commands then run as `nobody`
(setpriv, no PAM session), and the folder is given to that user. Nothing here needs pytest, so a
benchmark can start the same server.
"""

from __future__ import annotations

import itertools
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

SUPERUSER = "postgres"
UNPRIVILEGED = "nobody"
START_TIMEOUT = 60      # seconds pg_ctl waits for the server to accept connections (a loaded CI machine)
PORT_TRIES = 5          # a free port can be taken by another process between the probe and the server's bind

# Tests need no durability: a crash of the test machine loses only test databases.
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",     # several hub processes with their pools, per test
    "shared_buffers": "'32MB'",   # the machine runs other helpers' servers and browsers too
    "log_min_messages": "warning",
    "log_line_prefix": "'%m [%p] '",
    "timezone": "'UTC'",
}


class PostgresMissing(RuntimeError):
    pass


def bin_dir(base: Path = Path("/usr/lib/postgresql")) -> Path:
    """The newest installed version's programs (Debian: /usr/lib/postgresql/<version>/bin)."""
    found = []
    for initdb in base.glob("*/bin/initdb"):
        version = initdb.parent.parent.name
        if version.isdigit() and (initdb.parent / "pg_ctl").exists():
            found.append((int(version), initdb.parent))
    if not found:
        raise PostgresMissing(f"PostgreSQL is not installed (no {base}/<version>/bin/initdb): "
                              "`make test` installs Debian's postgresql package before it runs the tests")
    return max(found)[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_orphans(base: Path = Path("/tmp")) -> list[Path]:
    """Stop and remove the servers of test runs that died without stopping theirs (killed, CI's
    timeout): each folder names the process that owns it, and a folder whose owner is gone is an orphan.
    Servers of test runs still going (other checkouts on this machine) are left alone."""
    swept = []
    for owner in base.glob("store-edge-pg-*/owner"):
        try:
            pid = int(owner.read_text(encoding="ascii"))
        except (OSError, ValueError):
            continue
        if _alive(pid):
            continue
        root = owner.parent
        if (root / "data" / "postmaster.pid").exists():
            stat = root.stat()
            command = [str(bin_dir() / "pg_ctl"), "stop", "-D", str(root / "data"), "-m", "immediate", "-w"]
            if os.geteuid() == 0 and stat.st_uid != 0:
                command = ["setpriv", f"--reuid={stat.st_uid}", f"--regid={stat.st_gid}", "--clear-groups", "--",
                           *command]
            subprocess.run(command, capture_output=True, timeout=60, cwd="/")
        shutil.rmtree(root, ignore_errors=True)
        swept.append(root)
    return swept


class PostgresServer:
    """initdb + pg_ctl in a temporary folder; `start()`, then `create_database()` per test, `stop()`."""

    def __init__(self):
        self.bin = bin_dir()
        self.as_root = os.geteuid() == 0
        self.user = pwd.getpwnam(UNPRIVILEGED) if self.as_root else None
        # the unprivileged user must reach the folder: /tmp, not a root-only TMPDIR
        self.root = Path(tempfile.mkdtemp(prefix="store-edge-pg-", dir="/tmp" if self.as_root else None))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self.running = False
        self._names = itertools.count(1)
        (self.root / "owner").write_text(str(os.getpid()), encoding="ascii")  # for sweep_orphans
        if self.user is not None:
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        os.chmod(self.root, 0o700)

    # -- running the server's programs ------------------------------------------------------------
    def _command(self, program: str, *args: str) -> list[str]:
        command = [str(self.bin / program), *args]
        if self.user is None:
            return command
        return ["setpriv", f"--reuid={self.user.pw_uid}", f"--regid={self.user.pw_gid}", "--clear-groups",
                "--", *command]

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(HOME=str(self.root), LC_ALL="C.UTF-8", LANG="C.UTF-8", TZ="UTC")
        return env

    def _run(self, program: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run(self._command(program, *args), capture_output=True, text=True, env=self._env(),
                                timeout=timeout, cwd=self.root)
        if result.returncode != 0:
            raise RuntimeError(f"{program} {' '.join(args)} failed ({result.returncode}):\n{result.stdout}"
                               f"{result.stderr}{self._log_tail()}")
        return result

    def _log_tail(self) -> str:
        try:
            lines = self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-20:]
        except OSError:
            return ""
        return "\nserver log:\n" + "\n".join(lines) if lines else ""

    # -- the server ---------------------------------------------------------------------------------
    def start(self) -> PostgresServer:
        self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "--encoding=UTF8", "--locale=C.UTF-8",
                  "--auth=trust", "--no-sync", "--no-instructions")
        # replace initdb's rules: the socket in our folder and 127.0.0.1, nothing else
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\nhost all all 127.0.0.1/32 trust\n", encoding="utf-8")
        settings = {**SETTINGS, "unix_socket_directories": f"'{self.root}'"}
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n# tests/postgres.py\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))
        for attempt in range(PORT_TRIES):
            self.port = free_port()
            try:
                self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w",
                          "-t", str(START_TIMEOUT), "-o", f"-p {self.port}", timeout=START_TIMEOUT + 30)
            except RuntimeError:
                if attempt + 1 == PORT_TRIES or "Address already in use" not in self._log_tail():
                    raise
                continue
            self.running = True
            return self
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """Stop the server (fast: open sessions are ended) and remove its folder."""
        try:
            if self.running:
                self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w", "-t", str(START_TIMEOUT),
                          timeout=START_TIMEOUT + 30)
                self.running = False
        finally:
            if not self.running:
                shutil.rmtree(self.root, ignore_errors=True)

    # -- databases ----------------------------------------------------------------------------------
    def url(self, database: str = SUPERUSER) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database: str = SUPERUSER) -> str:
        """One statement through psql over the server's unix socket; its output, unaligned."""
        result = subprocess.run(
            [str(self.bin / "psql"), "-h", str(self.root), "-p", str(self.port), "-U", SUPERUSER, "-d", database,
             "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", statement],
            capture_output=True, text=True, env=self._env(), timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"psql {statement!r}: {result.stderr.strip()}")
        return result.stdout

    def create_database(self, prefix: str = "test") -> str:
        """A fresh empty database (from template0: nothing another test put in template1); its name."""
        name = f"{re.sub(r'[^a-z0-9_]', '_', prefix.lower())[:40]}_{next(self._names)}"
        self.sql(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return name

    def drop_database(self, name: str) -> None:
        # FORCE: a hub process a failed test left running must not keep the database alive
        self.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
