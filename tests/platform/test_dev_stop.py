"""`make dev PORT=...` serves the UI on that port, and SIGTERM stops all of it within seconds.

Slow (Dagster with every location starts in a minute or more on two cores): marked `e2e`, so
`make test` leaves it to `make test-dev`, which CI runs after the tests.
"""

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from platform_devkit.cli import STOP_GRACE_SECONDS
from platform_devkit.e2e.processes import clean_environ
from platform_devkit.local import LocalPlatform
from platform_devkit.paths import REPO_ROOT
from platform_devkit.postgres import free_port, port_is_free

pytestmark = pytest.mark.e2e

# Dagster's own shutdown, then the kill of what is left, then the processes being reaped.
STOPPED_WITHIN_SECONDS = STOP_GRACE_SECONDS + 10


def command_line(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return f"(process {process.pid}, gone)"


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (http://127.0.0.1)
            return response.status == 200
    except OSError:
        return False


def test_sigterm_stops_make_dev_and_everything_it_started(server_tmp_path: Path):
    port = free_port()
    log = (server_tmp_path / "make-dev.log").open("wb")
    make = subprocess.Popen(
        ["make", "--no-print-directory", "dev", f"PORT={port}", "SIZE=tiny"], cwd=REPO_ROOT,
        env={**clean_environ(), "PLATFORM_STATE_DIR": str(server_tmp_path / "state")},
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    platform = LocalPlatform(state=server_tmp_path / "state", environ=clean_environ())
    try:
        deadline = time.monotonic() + 600
        while not answers(f"http://127.0.0.1:{port}/server_info"):
            assert make.poll() is None, (server_tmp_path / "make-dev.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the webserver did not answer within 10 minutes"
            time.sleep(2)
        # Every process make dev started (make itself is waited for by its Popen).
        tree = psutil.Process(make.pid).children(recursive=True)
        commands = " ".join(map(command_line, tree))
        for part in ("dg dev", "dagster_webserver", "dagster._daemon", "code-server start"):
            assert part in commands, f"{part} is not running under make dev: {commands}"

        started = time.monotonic()
        os.kill(make.pid, signal.SIGTERM)
        status = make.wait(STOPPED_WITHIN_SECONDS)
        left = STOPPED_WITHIN_SECONDS - (time.monotonic() - started)
        _, alive = psutil.wait_procs(tree, timeout=max(left, 0.1))

        assert not alive, [command_line(p) for p in alive]
        assert status != 0
        assert time.monotonic() - started < STOPPED_WITHIN_SECONDS
        assert port_is_free(port)
        # PostgreSQL is not make dev's child: it keeps running until make down (docs).
        assert platform.postgres.running_port() is not None
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
        platform.stop_postgres()
