"""The code servers' probe command, run as the kubelet would run it, against a real
`dagster api grpc` server of a location (started with the arguments its values give the chart)."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import chartkit
import pytest

LOCATIONS = chartkit.locations()
VENV_BIN = str(Path(sys.executable).parent)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_probe(command: list[str], port: int) -> subprocess.CompletedProcess[str]:
    """The probe with its port argument pointed at `port`; `python` found on PATH, as in the
    image (its PATH starts with the venv's bin)."""
    return subprocess.run(
        [*command[:-1], str(port)],
        env={**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def probe_command(location: chartkit.Location, probe: str = "readinessProbe") -> list[str]:
    return location.deployment[probe]["exec"]["command"]


def test_every_location_uses_the_same_probe_for_startup_readiness_and_liveness():
    commands = {
        (loc.name, probe): tuple(probe_command(loc, probe))
        for loc in LOCATIONS
        for probe in ("startupProbe", "readinessProbe", "livenessProbe")
    }

    assert len(set(commands.values())) == 1
    assert next(iter(commands.values()))[0] == "python"


@pytest.fixture(scope="module")
def code_server():
    """The first location's gRPC server on a free port, as its Helm values start it."""
    location = LOCATIONS[0]
    port = free_port()
    args = location.deployment["dagsterApiGrpcArgs"]
    server = subprocess.Popen(
        [f"{VENV_BIN}/dagster", "api", "grpc", "-h", "127.0.0.1", "-p", str(port), *args],
        cwd=location.path,
        env={**os.environ, "DAGSTER_DISABLE_TELEMETRY": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if server.poll() is not None:
                pytest.fail(f"the code server exited: {server.stderr.read()}")
            if run_probe(probe_command(location), port).returncode == 0:
                break
            time.sleep(2)
        else:
            pytest.fail("the code server did not become healthy within 4 minutes")
        yield location, port
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_probe_passes_against_a_serving_code_server(code_server):
    location, port = code_server

    started = time.monotonic()
    result = run_probe(probe_command(location), port)

    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 10


def test_probe_fails_where_no_code_server_listens():
    result = run_probe(probe_command(LOCATIONS[0]), free_port())

    assert result.returncode != 0
