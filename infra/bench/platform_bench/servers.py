"""Code-location start: process start to a healthy gRPC server, and the server's memory.

The clock starts just before `dagster api grpc` is spawned and stops at the first health check
that answers SERVING. The check is the one `dagster api grpc-health-check` makes (DagsterGrpcClient
.health_check_query), called in this process every 50 ms: spawning the CLI for each poll would
cost about as much CPU as the start being measured, on the same two cores.
"""

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from platform_bench.locations import Location
from platform_bench.progress import say
from platform_devkit.postgres import free_port

POLL_SECONDS = 0.05
START_TIMEOUT = 300


@dataclass
class Start:
    seconds: float
    rss_bytes: int


def _healthy(port: int) -> bool:
    from dagster._grpc.client import DagsterGrpcClient

    # The client prints every failed attempt; the polling loop expects many.
    with contextlib.redirect_stdout(io.StringIO()):
        return DagsterGrpcClient(port=port, host="127.0.0.1").health_check_query() == "SERVING"


def rss_of_tree(pid: int) -> int:
    """Resident memory of a process and all its children, in bytes."""
    process = psutil.Process(pid)
    total = 0
    for member in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += member.memory_info().rss
    return total


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _spawn(location: Location, env: dict[str, str], logs: Path, port: int) -> subprocess.Popen:
    """The location's `dagster api grpc` on `port`, in its own process group, output appended to
    logs/<location>.log."""
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / f"{location.name}.log").open("ab") as log:
        return subprocess.Popen(
            location.grpc_command(port),
            env=location.environment(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def start_once(location: Location, env: dict[str, str], logs: Path) -> Start:
    """Start the location's server, wait until it is healthy, measure, stop it."""
    port = free_port()
    started = time.perf_counter()
    process = _spawn(location, env, logs, port)
    try:
        while not _healthy(port):
            if process.poll() is not None:
                raise RuntimeError(
                    f"code server {location.name} exited ({process.returncode}); "
                    f"see {logs / f'{location.name}.log'}"
                )
            if time.perf_counter() - started > START_TIMEOUT:
                raise TimeoutError(f"code server {location.name} not healthy in time")
            time.sleep(POLL_SECONDS)
        seconds = time.perf_counter() - started
        rss = rss_of_tree(process.pid)
    finally:
        _stop(process)
    return Start(seconds, rss)


def cli_health_check(location: Location, env: dict[str, str], logs: Path) -> str:
    """Start the server once and confirm it with the CLI itself: `dagster api grpc-health-check`
    (the check the Helm probes and the e2e drivers use) agrees with the in-process poll."""
    port = free_port()
    process = _spawn(location, env, logs, port)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _healthy(port) and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
        check = subprocess.run(
            [str(Path(sys.executable).parent / "dagster"), "api", "grpc-health-check",
             "-p", str(port), "--host", "127.0.0.1"],
            env=location.environment(env), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        _stop(process)
    if check.returncode != 0:
        raise RuntimeError(f"grpc-health-check failed for {location.name}: {check.stdout}")
    say(f"  {location.name}: {check.stdout.strip()}")
    return check.stdout.strip()


# Loads the location as the server does (import, definitions, asset graph), under -X importtime.
_PROFILE = """
import importlib
module = importlib.import_module({module!r})
defs = module.defs() if callable(module.defs) else module.defs
defs.resolve_asset_graph()
"""


def import_profile(location: Location, env: dict[str, str], top: int = 6) -> dict[str, float]:
    """Where a location's load spends its import time: seconds per top-level package (the sum
    of its modules' own import times, from `python -X importtime`), the largest first, and the
    total of all imports. One run, after the measured ones; a profile, not a figure."""
    result = subprocess.run(
        [location.python, "-X", "importtime", "-c", _PROFILE.format(module=location.module)],
        env=location.environment(env),
        cwd=location.args[1] if location.args[:1] == ("-d",) else None,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"profiling {location.name} failed:\n{result.stderr[-2000:]}")
    by_package: dict[str, float] = {}
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _, name = (part.strip() for part in line.removeprefix("import time:").split("|"))
        package = name.split(".")[0]
        by_package[package] = by_package.get(package, 0.0) + int(self_us) / 1e6
    largest = sorted(by_package.items(), key=lambda item: item[1], reverse=True)[:top]
    return {"all imports": round(sum(by_package.values()), 2)} | {
        name: round(seconds, 2) for name, seconds in largest
    }
