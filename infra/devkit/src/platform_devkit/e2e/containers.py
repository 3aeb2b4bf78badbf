"""The `containers` driver: the `processes` topology with each location's gRPC server running
from its image, started with the exact `dagsterApiGrpcArgs` of its deploy values, so runs (which
the server starts as its own subprocesses) execute inside the images.

Containers use the host network: the embedded PostgreSQL, the webserver and the e2e body's alert
receiver listen on 127.0.0.1 only, and the servers reach them there as local ones do. They run
as the images' non-root user with a read-only root filesystem and a tmpfs /tmp, as in the
cluster; the landing area, export area and Dagster home are bind-mounted at the same paths.
"""

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from platform_devkit.e2e.processes import BIN, ProcessesDeployment
from platform_devkit.instance import COMPUTE_LOGS_FOLDER
from platform_devkit.paths import REPO_ROOT

REGISTRY = os.environ.get("REGISTRY", "data-platform")


def deploy_values(name: str) -> dict:
    """The location's single deployment in locations/<name>/deploy/values.yaml."""
    values = yaml.safe_load((REPO_ROOT / "locations" / name / "deploy" / "values.yaml").read_text())
    (deployment,) = values["deployments"]
    return deployment


def docker_available() -> str | None:
    """None when a Docker engine answers, else why not."""
    if shutil.which("docker") is None:
        return "no docker CLI on PATH (make docker-engine installs Debian's engine)"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True)
    if info.returncode != 0:
        return f"no Docker engine reachable: {info.stderr.strip()[:200]}"
    return None


class ContainersDeployment(ProcessesDeployment):
    name = "containers"

    def __init__(self, workdir: Path, progress: Callable[[str], None], tag: str = "latest") -> None:
        super().__init__(workdir, progress)
        self.tag = tag
        self.containers: dict[str, str] = {}
        self.generation = 0

    def __enter__(self) -> "ContainersDeployment":
        super().__enter__()
        return self

    def __exit__(self, *exc) -> None:
        for name in list(self.containers):
            self._remove(name)
        super().__exit__(*exc)

    def image(self, name: str) -> str:
        return f"{REGISTRY}/{name}:{self.tag}"

    def _shared_folders(self) -> list[Path]:
        folders = [
            Path(self.env["PAYMENTS_LANDING_URL"]),
            Path(self.env["EXPORTS_URL"]),
            Path(self.env["DAGSTER_HOME"]),
        ]
        # Inside DAGSTER_HOME (mounted already), made here before a local process (the
        # webserver, as this machine's user) could create it without write access for others.
        compute_logs = Path(self.env["DAGSTER_HOME"]) / COMPUTE_LOGS_FOLDER
        for folder in [*folders, compute_logs]:
            folder.mkdir(parents=True, exist_ok=True)
            # The image's user (uid 10001) writes exports, compute logs and dlt state here.
            folder.chmod(0o777)
        return folders

    def start_location(self, name: str) -> None:
        values = deploy_values(name)
        self.generation += 1
        container = f"e2e-{name}-{os.getpid()}-{self.generation}"
        env = self.server_environment(name)
        argv = [
            "docker", "run", "--detach", "--name", container, "--network", "host",
            "--read-only", "--tmpfs", "/tmp:rw,mode=1777", "--user", "10001:10001",  # noqa: S108
            "--label", "e2e=data-platform",
        ]  # fmt: skip
        for folder in self._shared_folders():
            argv += ["--volume", f"{folder}:{folder}"]
        for key in env:
            argv += ["--env", key]  # values come from this process's environment, not argv
        argv += [
            self.image(name), "dagster", "api", "grpc", "-h", "127.0.0.1",
            "-p", str(self.ports[name]), *values["dagsterApiGrpcArgs"],
        ]  # fmt: skip
        self.progress(f"starting code server {name} from {self.image(name)}")
        subprocess.run(argv, env={**os.environ, **env}, check=True, capture_output=True)
        self.containers[name] = container
        self._wait_for_health(name)

    def _wait_for_health(self, name: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while True:
            check = subprocess.run(
                [str(BIN / "dagster"), "api", "grpc-health-check", "-p", str(self.ports[name])],
                capture_output=True,
            )
            if check.returncode == 0:
                return
            state = subprocess.run(
                ["docker", "inspect", "-f", "{{.State.Running}}", self.containers[name]],
                capture_output=True, text=True,
            ).stdout.strip()  # fmt: skip
            if state != "true" or time.monotonic() > deadline:
                raise RuntimeError(f"code server {name} not healthy:\n{self.tail(name)}")
            time.sleep(1)

    def _remove(self, name: str) -> None:
        container = self.containers.pop(name)
        logs = subprocess.run(["docker", "logs", container], capture_output=True)
        (self.logs / f"{name}.log").write_bytes(logs.stdout + logs.stderr)
        subprocess.run(["docker", "rm", "--force", container], capture_output=True)

    def stop_location(self, name: str) -> None:
        self.progress(f"stopping code server container {name}")
        self._remove(name)

    def tail(self, name: str, lines: int = 60) -> str:
        if name in self.containers:
            logs = subprocess.run(
                ["docker", "logs", "--tail", str(lines), self.containers[name]],
                capture_output=True, text=True,
            )  # fmt: skip
            return logs.stdout + logs.stderr
        return super().tail(name, lines)

    def diagnostics(self) -> str:
        names = [*self.containers, "webserver", "daemon"]
        return "\n\n".join(f"--- {name} (last lines) ---\n{self.tail(name)}" for name in names)

    def verify_runtime_isolation(self) -> None:
        """Runs executed inside the images, as the image's user: every exported file (written
        by an exports run) belongs to uid 10001, which no local process here runs as."""
        root = Path(self.env["EXPORTS_URL"])
        owners = {p.stat().st_uid for p in root.rglob("*") if p.is_file()}
        assert owners == {10001}, f"export files owned by uids {owners}, expected only 10001"
