"""The image layer of `make new-location`: a location scaffolded in a copy of the repository
builds from the shared template with no file of its own beyond what the command wrote, and
serves its definitions as the chart runs it (non-root, read-only root filesystem)."""

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.remote_origin import GrpcServerCodeLocationOrigin

from platform_devkit.testing import copy_repository

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
# The example name, or the next free one when a team has taken it.
NAME = next(
    name
    for name in ("marketing", *(f"marketing{i}" for i in range(2, 100)))
    if not (Path(__file__).resolve().parents[2] / "locations" / name).exists()
)
TEAM = "growth"
IMAGE = f"scaffold-test/{NAME}:{uuid.uuid4().hex[:8]}"
# The only writable place, as in the pod (an emptyDir there).
TMPFS = "/tmp:rw,size=256m"  # noqa: S108 (inside the container)


def uv() -> str:
    found = shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
    if not Path(found).exists():
        pytest.skip("uv is not installed (make setup installs it)")
    return found


def test_a_scaffolded_location_builds_from_the_template_and_serves_its_asset(tmp_path, docker):
    root = copy_repository(ROOT, tmp_path / "repo")
    env = {**os.environ, "PYTHONPATH": str(root / "infra" / "devkit" / "src")}
    for command in (
        [sys.executable, "-m", "platform_devkit.scaffold", NAME, TEAM],
        [uv(), "lock", "--quiet"],
    ):
        step = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True,
                              timeout=600, check=False)  # fmt: skip
        assert step.returncode == 0, step.stdout + step.stderr
    assert not (root / "locations" / NAME / "Dockerfile").exists()

    registry, tag = IMAGE.split("/")[0], IMAGE.split(":")[1]
    build = subprocess.run(
        ["bash", "infra/docker/build-image.sh", NAME], cwd=root, capture_output=True, text=True,
        env={**os.environ, "REGISTRY": registry, "IMAGE_TAG": tag}, timeout=1800, check=False,
    )  # fmt: skip
    try:
        assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
        container = f"scaffold-test-{uuid.uuid4().hex[:8]}"
        docker(
            "run", "--detach", "--name", container, "--user", "10001:10001",
            "--read-only", "--tmpfs", TMPFS, "--cap-drop", "ALL",
            "--publish", "127.0.0.1::3030", IMAGE,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 180
            while docker("exec", container, "dagster", "api", "grpc-health-check", "-p", "3030",
                         check=False).returncode != 0:  # fmt: skip
                assert time.monotonic() < deadline, docker("logs", container, check=False).stderr
                time.sleep(1)
            port = int(docker("port", container, "3030").stdout.split(":")[-1])
            origin = GrpcServerCodeLocationOrigin(host="127.0.0.1", port=port, location_name=NAME)
            with (
                dg.DagsterInstance.ephemeral() as instance,
                origin.create_location(instance) as location,
            ):
                keys = {
                    node.asset_key.to_user_string()
                    for repository in location.get_repositories().values()
                    for node in repository.get_asset_node_snaps()
                }
        finally:
            docker("rm", "-f", container, check=False)
    finally:
        docker("rmi", "-f", IMAGE, f"{registry}/{NAME}:latest", check=False)

    assert f"{NAME}/revenue_last_30_days" in keys
