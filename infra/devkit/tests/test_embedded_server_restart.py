"""The embedded server comes back on the port it had, however it went down, so every process
that holds that port (a running `make dev`, its code servers and runs) reconnects to it.

Each case keeps a client connection open while the server goes down: the server's side of it
then lingers on the port (FIN_WAIT_2, TIME_WAIT once the client lets go), which failed the old
free-port check for a minute or more and moved the server to another port."""

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg2
import pytest

from platform_devkit.local import LocalPlatform

pytestmark = pytest.mark.integration


@pytest.fixture
def platform(server_tmp_path: Path) -> Iterator[LocalPlatform]:
    platform = LocalPlatform(state=server_tmp_path, environ={}, progress=lambda _: None)
    platform.start_postgres()
    try:
        yield platform
    finally:
        platform.stop_postgres()


def _connect(platform: LocalPlatform) -> psycopg2.extensions.connection:
    admin = platform.settings.admin()
    return psycopg2.connect(
        host=admin["PGHOST"],
        port=admin["PGPORT"],
        user=admin["PGUSER"],
        password=admin["PGPASSWORD"],
        dbname="postgres",
        connect_timeout=5,
    )


def _server_pid(platform: LocalPlatform) -> int:
    return int(platform.postgres.pid_file.read_text().splitlines()[0])


def _wait_until_dead(pid: int, timeout: float = 30) -> None:
    """Until the killed process is gone or a zombie (init collects it when it gets to it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.05)
    raise TimeoutError(f"process {pid} still runs {timeout}s after SIGKILL")


def _plain_bind_fails(port: int) -> bool:
    """What the free-port check did before: bind without SO_REUSEADDR."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def _restarted(platform: LocalPlatform) -> LocalPlatform:
    """The platform as the next `make dev` or `make run` sees it: settings read afresh."""
    again = LocalPlatform(state=platform.state, environ={}, progress=lambda _: None)
    again.start_postgres()
    return again


def _answers(platform: LocalPlatform) -> int:
    conn = _connect(platform)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_setting('port')::int")
            return cur.fetchone()[0]
    finally:
        conn.close()


def test_a_stopped_server_comes_back_on_its_port_while_its_old_connections_linger(platform):
    port = platform.settings.embedded_port
    client = _connect(platform)
    try:
        platform.stop_postgres()
        assert _plain_bind_fails(port), "the old server's connections should linger on its port"

        again = _restarted(platform)
    finally:
        client.close()

    assert again.settings.embedded_port == port
    assert again.postgres.running_port() == port
    assert _answers(again) == port


def test_a_killed_server_comes_back_on_its_port_despite_its_stale_pid_file(platform):
    port = platform.settings.embedded_port
    client = _connect(platform)
    try:
        killed = _server_pid(platform)
        os.kill(killed, signal.SIGKILL)
        _wait_until_dead(killed)
        assert platform.postgres.pid_file.exists()
        assert platform.postgres.running_port() is None

        again = _restarted(platform)

        with pytest.raises(psycopg2.OperationalError), client.cursor() as cur:
            cur.execute("SELECT 1")
    finally:
        client.close()

    assert again.settings.embedded_port == port
    assert _server_pid(again) != killed
    assert _answers(again) == port


def test_a_stale_pid_file_naming_a_live_unrelated_process_does_not_block_the_restart(platform):
    port = platform.settings.embedded_port
    pid_file = platform.postgres.pid_file
    recorded = pid_file.read_text().splitlines()
    platform.stop_postgres()
    # After a kill -9 and a reboot the pid in postmaster.pid may belong to anything: here, to
    # the machine's first process, alive since boot.
    pid_file.write_text("\n".join(["1", *recorded[1:]]) + "\n")
    assert platform.postgres.running_port() is None

    again = _restarted(platform)

    assert _server_pid(again) != 1
    assert _answers(again) == port


def test_a_port_another_program_took_moves_the_server_and_says_so(platform):
    port = platform.settings.embedded_port
    platform.stop_postgres()
    messages: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        again = LocalPlatform(state=platform.state, environ={}, progress=messages.append)
        again.start_postgres()

    assert again.settings.embedded_port != port
    assert _answers(again) == again.settings.embedded_port
    assert any(f"127.0.0.1:{port} is taken" in m for m in messages), messages
