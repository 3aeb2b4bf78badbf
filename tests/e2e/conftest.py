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
    """Screenshots and diagnostics, kept after the run (CI uploads this folder)."""
    driver = request.config.getoption("--driver")
    folder = Path(os.environ.get("E2E_ARTIFACTS", REPO_ROOT / ".local" / "e2e")) / driver
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def deployment(request: pytest.FixtureRequest, artifacts: Path) -> Iterator[Deployment]:
    driver = request.config.getoption("--driver")
    # Inside the artifacts folder: the servers' logs stay for diagnosis (CI uploads them).
    workdir = artifacts / "work"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir()
    if driver == "processes":
        from platform_devkit.e2e.processes import ProcessesDeployment

        platform = ProcessesDeployment(workdir, progress)
    elif driver == "containers":
        from platform_devkit.e2e.containers import ContainersDeployment, docker_available

        if reason := docker_available():
            pytest.skip(f"containers driver: {reason}")
        platform = ContainersDeployment(workdir, progress, tag=os.environ.get("TAG", "latest"))
    else:
        from platform_devkit.e2e.kind import KindDeployment, kind_available

        if reason := kind_available():
            pytest.skip(f"kind driver: {reason}")
        platform = KindDeployment(workdir, progress, tag=os.environ.get("TAG", "latest"))

    # A session-scoped fixture: one deployment for the whole body, started once.
    failed_before = request.session.testsfailed
    with platform:
        try:
            yield platform
        finally:
            if request.session.testsfailed > failed_before:
                report = platform.diagnostics()
                (artifacts / "diagnostics.txt").write_text(report)
                progress(f"diagnostics written to {artifacts / 'diagnostics.txt'}")
                print(report[-20000:], file=sys.stderr)


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
