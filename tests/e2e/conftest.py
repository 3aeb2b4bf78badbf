"""The deployment under test, from the driver chosen with --driver (or E2E_DRIVER):
`processes` (default), `containers` (needs Docker and `make images`), `kind` (a cluster)."""

import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from platform_devkit.e2e.base import Deployment, location_names
from platform_devkit.paths import REPO_ROOT

DRIVERS = ("processes", "containers", "kind")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--driver",
        choices=DRIVERS,
        default=os.environ.get("E2E_DRIVER", "processes"),
        help="which deployment the e2e body runs against",
    )


def progress(message: str) -> None:
    print(f"[e2e] {message}", file=sys.stderr, flush=True)


@pytest.fixture(scope="session")
def artifacts(request: pytest.FixtureRequest) -> Path:
    """Logs, screenshots and diagnostics, kept after the run (CI uploads this folder). Nothing
    else goes here: the deployment's state, credentials included, stays in its workdir."""
    driver = request.config.getoption("--driver")
    folder = Path(os.environ.get("E2E_ARTIFACTS", REPO_ROOT / ".local" / "e2e")) / driver
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def deployment(request: pytest.FixtureRequest, artifacts: Path) -> Iterator[Deployment]:
    driver = request.config.getoption("--driver")
    workdir = REPO_ROOT / ".local" / "e2e-work" / driver
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    tag = os.environ.get("TAG") or "latest"
    if driver == "processes":
        from platform_devkit.e2e.processes import ProcessesDeployment

        platform = ProcessesDeployment(workdir, progress)
    elif driver == "containers":
        from platform_devkit.e2e.containers import ContainersDeployment, docker_available

        if reason := docker_available():
            pytest.skip(f"containers driver: {reason}")
        platform = ContainersDeployment(workdir, progress, tag=tag)
    else:
        from platform_devkit.e2e.kind import KindDeployment, kind_available

        if reason := kind_available():
            pytest.skip(f"kind driver: {reason}")
        platform = KindDeployment(workdir, progress, tag=tag)
    platform.artifacts = artifacts
    progress(f"{driver} driver, image tag {tag}, artifacts in {artifacts}")

    def write_diagnostics() -> None:
        report = platform.diagnostics()
        (artifacts / "diagnostics.txt").write_text(report)
        progress(f"diagnostics written to {artifacts / 'diagnostics.txt'}")
        print(report[-20000:], file=sys.stderr)

    # A session-scoped fixture: one deployment for the whole body, started once. Diagnostics
    # when a test failed, and when the deployment itself did not come up.
    failed_before = request.session.testsfailed
    try:
        with platform:
            try:
                yield platform
            finally:
                if request.session.testsfailed > failed_before:
                    write_diagnostics()
    except Exception:
        write_diagnostics()
        raise
    finally:
        # The servers' logs (processes, containers) go with the artifacts; their state stays.
        logs = workdir / "logs"
        if logs.is_dir():
            shutil.copytree(logs, artifacts / "logs", dirs_exist_ok=True)


SHOP_KEYS = ["raw/customers", "raw/products", "raw/orders", "raw/order_items"]


@pytest.fixture(scope="session")
def settled(deployment) -> set[str]:
    """Every location loaded, ingestion launched, then everything downstream run by the
    daemon (sensors and automation) until nothing is left to do."""
    gql = deployment.graphql
    gql.wait_for_locations(location_names())
    run_id = gql.launch_assets("ingestion", SHOP_KEYS)
    assert gql.wait_for_run(run_id) == "SUCCESS"
    expected = {key for key, node in gql.asset_nodes().items() if node["isMaterializable"]}
    started = time.monotonic()
    gql.wait_until_settled(expected)
    deployment.progress(f"settled in {time.monotonic() - started:.0f}s after the ingestion run")
    return expected
