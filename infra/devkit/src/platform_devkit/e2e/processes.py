"""The `processes` driver: PostgreSQL, one `dagster api grpc` server per location, webserver
and daemon as local processes, the same topology as the cluster."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from platform_devkit.e2e.base import Deployment, location_environment, location_names
from platform_devkit.e2e.graphql import DagsterGraphQL
from platform_devkit.instance import locations
from platform_devkit.local import LocalPlatform
from platform_devkit.postgres import free_port

BIN = Path(sys.executable).parent
# Variables of the platform that must not leak in from the shell running the tests.
_PLATFORM_PREFIXES = (
    "PG", "DAGSTER_", "WAREHOUSE_", "SHOP_DB_", "PAYMENTS_", "EXPORTS_", "DBT_", "ALERT_",
)  # fmt: skip


def clean_environ() -> dict[str, str]:
    """The test process's environment without platform settings, with the workspace's
    executables (dagster, dbt) first on PATH, as they are in the images."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_PLATFORM_PREFIXES) and not k.endswith(("_USER", "_PASSWORD"))
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


class ProcessesDeployment(Deployment):
    name = "processes"

    def __init__(self, workdir: Path, progress: Callable[[str], None], size: str = "tiny") -> None:
        super().__init__(workdir, progress)
        self.size = size
        self.platform = LocalPlatform(
            state=workdir / "platform", environ=clean_environ(), progress=progress
        )
        self.logs = workdir / "logs"
        self.servers: dict[str, subprocess.Popen] = {}
        self.ports: dict[str, int] = {}
        self.system: list[subprocess.Popen] = []
        self.env: dict[str, str] = {}

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> "ProcessesDeployment":
        self.logs.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self.webserver_url = self.linked_webserver_url = f"http://127.0.0.1:{port}"
        # The code servers need both at start: their alert sensors post to the receiver, with
        # links to the webserver.
        self.env = {
            **self.platform.up(size=self.size),
            "ALERT_WEBHOOK_URL": self.start_alerts(),
            "DAGSTER_WEBSERVER_URL": self.webserver_url,
        }
        for name in location_names():
            self.ports[name] = free_port()
            self.start_location(name)
        workspace = self.workdir / "workspace.yaml"
        workspace.write_text(
            yaml.safe_dump({
                "load_from": [
                    {"grpc_server": {"host": "127.0.0.1", "port": port, "location_name": name}}
                    for name, port in self.ports.items()
                ]
            })
        )  # fmt: skip
        system_env = {**clean_environ(), **self.system_environment()}
        self.progress(f"starting webserver ({self.webserver_url}) and daemon")
        self.system = [
            self._spawn(
                "webserver",
                [BIN / "dagster-webserver", "-w", workspace, "-h", "127.0.0.1", "-p", str(port)],
                system_env,
            ),
            self._spawn("daemon", [BIN / "dagster-daemon", "run", "-w", workspace], system_env),
        ]
        self.graphql = DagsterGraphQL(self.webserver_url, self.progress)
        self.graphql.wait_until_serving()
        return self

    def __exit__(self, *exc) -> None:
        for process in [*self.system, *self.servers.values()]:
            _stop(process)
        self.platform.stop_postgres()
        super().__exit__(*exc)

    def system_environment(self) -> dict[str, str]:
        """Webserver and daemon: Dagster's storage only, no team credentials."""
        keys = [k for k in self.env if k.startswith("DAGSTER_")]
        return {k: self.env[k] for k in keys}

    def _spawn(self, name: str, argv: list, env: dict[str, str]) -> subprocess.Popen:
        log = (self.logs / f"{name}.log").open("ab")
        return subprocess.Popen(
            [str(a) for a in argv], env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    # -- code servers ------------------------------------------------------------------------
    def server_environment(self, name: str) -> dict[str, str]:
        return {
            **location_environment(name, self.env),
            "DAGSTER_HOME": self.env["DAGSTER_HOME"],
            "DBT_TARGET": "dev",
        }

    def start_location(self, name: str) -> None:
        module = next(loc["module"] for loc in locations() if loc["name"] == name)
        self.progress(f"starting code server {name} ({module}) on port {self.ports[name]}")
        self.servers[name] = self._spawn(
            name,
            [BIN / "dagster", "api", "grpc", "-m", module, "-h", "127.0.0.1",
             "-p", str(self.ports[name])],
            {**clean_environ(), **self.server_environment(name)},
        )  # fmt: skip
        self._wait_for_health(name)

    def _wait_for_health(self, name: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while True:
            check = subprocess.run(
                [str(BIN / "dagster"), "api", "grpc-health-check", "-p", str(self.ports[name])],
                capture_output=True,
                text=True,
            )
            if check.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"code server {name} not healthy: {self.tail(name)}")
            time.sleep(1)

    def stop_location(self, name: str) -> None:
        self.progress(f"stopping code server {name}")
        _stop(self.servers.pop(name))

    def upgrade_location(self, name: str) -> None:
        self.stop_location(name)
        self.start_location(name)

    # -- data --------------------------------------------------------------------------------
    def admin_settings(self) -> dict[str, str]:
        return self.platform.settings.admin()

    def export_files(self, folder: str) -> dict[str, bytes]:
        root = Path(self.env["EXPORTS_URL"])
        return {
            str(p.relative_to(root)): p.read_bytes()
            for p in sorted((root / folder).rglob("*"))
            if p.is_file()
        }

    def delivered_payment_days(self) -> list[str]:
        landing = Path(self.env["PAYMENTS_LANDING_URL"])
        return sorted(p.stem.removeprefix("payments_") for p in landing.glob("payments_*.csv"))

    def tail(self, name: str, lines: int = 60) -> str:
        path = self.logs / f"{name}.log"
        if not path.exists():
            return f"(no log for {name})"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def diagnostics(self) -> str:
        names = [*self.servers, "webserver", "daemon"]
        return "\n\n".join(f"--- {name} (last lines) ---\n{self.tail(name)}" for name in names)


def _stop(process: subprocess.Popen, timeout: float = 20) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
