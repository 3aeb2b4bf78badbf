"""Fixtures for the image tests: the code locations (dg.toml), the Dockerfile each builds from
(the shared template or its own, as infra/docker/build-image.sh chooses and fills it in) as
instructions, the server arguments their Helm values pass, and a `docker` CLI wrapper.

Tests that take a `location` argument run once per code location (test_dbt_location_*: once
per location with a dbt project).
"""

import os
import subprocess
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
# The user-deployments chart runs `dagster api grpc -h 0.0.0.0 -p <port> <dagsterApiGrpcArgs>`.
CHART_COMMAND = ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p"]  # noqa: S104 (in the pod)


def _locations() -> list[str]:
    with (ROOT / "dg.toml").open("rb") as f:
        return [Path(p["path"]).name for p in tomllib.load(f)["workspace"]["projects"]]


def _has_dbt_project(location: str) -> bool:
    return (ROOT / "locations" / location / "dbt_project" / "dbt_project.yml").exists()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Session scope: one image and one running server per location, shared by its tests.
    # Tests named test_dbt_location_* run for the locations with a dbt project only.
    if "location" in metafunc.fixturenames:
        locations = _locations()
        if metafunc.function.__name__.startswith("test_dbt_location_"):
            locations = [name for name in locations if _has_dbt_project(name)]
        metafunc.parametrize("location", locations, scope="session")


def run_docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result


@pytest.fixture(scope="session")
def docker() -> Callable[..., subprocess.CompletedProcess]:
    """docker("image", "inspect", ...) -> CompletedProcess; fails the test on a non-zero exit
    unless check=False."""
    return run_docker


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def registry() -> str:
    return os.environ.get("REGISTRY", "data-platform")


@pytest.fixture(scope="session")
def revision() -> str:
    """The commit the session's images are built from and labelled with, read once: HEAD
    may move while the tests run."""
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture(scope="session")
def image_tag(revision: str) -> str:
    if tag := os.environ.get("IMAGE_TAG"):
        return tag
    return subprocess.run(
        ["git", "rev-parse", "--short", revision], cwd=ROOT, capture_output=True, text=True,
        check=True,
    ).stdout.strip()  # fmt: skip


@pytest.fixture(scope="session")
def helm_values(location: str) -> dict | None:
    """The location's deployment entry in locations/<name>/deploy/values.yaml, if it has one."""
    values_file = ROOT / "locations" / location / "deploy" / "values.yaml"
    if not values_file.exists():
        return None
    return yaml.safe_load(values_file.read_text())["deployments"][0]


@pytest.fixture(scope="session")
def helm_command(location: str, helm_values: dict | None) -> list[str]:
    """The code server command the chart runs for this location: from its Helm values, or the
    convention (port 3030, -m <location>.definitions) while it has none."""
    if helm_values is None:
        return [*CHART_COMMAND, "3030", "-m", f"{location}.definitions"]
    return [*CHART_COMMAND, str(helm_values["port"]), *helm_values["dagsterApiGrpcArgs"]]


@dataclass(frozen=True)
class DryRun:
    """What `build-image.sh --dry-run <location>` prints: the Dockerfile it builds with
    (relative to the repository root), the location's build arguments, and that Dockerfile's
    text as it is built (CMD filled in)."""

    dockerfile: str
    build_args: dict[str, str]
    text: str


def dry_run(location: str, root: Path = ROOT) -> DryRun:
    """`build-image.sh --dry-run <location>` of the build script under `root`."""
    result = subprocess.run(
        [str(root / "infra" / "docker" / "build-image.sh"), "--dry-run", location],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise AssertionError(f"build-image.sh --dry-run {location} failed:\n{result.stderr}")
    lines = result.stdout.splitlines()
    dockerfile = lines[0].removeprefix("# dockerfile: ")
    build_args = dict(
        line.removeprefix("# build-arg: ").split("=", 1)
        for line in lines[1:]
        if line.startswith("# build-arg: ")
    )
    text = "\n".join(line for line in lines[1:] if not line.startswith("# build-arg: "))
    return DryRun(dockerfile, build_args, text + "\n")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined and comments
    dropped."""
    parsed: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        parsed.append((keyword.upper(), " ".join(rest.split())))
        pending = ""
    return parsed


@pytest.fixture(scope="session")
def build_plan(location: str) -> DryRun:
    """The Dockerfile and build arguments build-image.sh builds this location with."""
    return dry_run(location)


@pytest.fixture(scope="session")
def dockerfile(build_plan: DryRun) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile this location builds from, as built: the
    location's build arguments (${LOCATION}, ${MODULE}, ...) substituted."""
    parsed = []
    for keyword, args in instructions(build_plan.text):
        for name, value in build_plan.build_args.items():
            args = args.replace(f"${{{name}}}", value)
        parsed.append((keyword, args))
    return parsed


@pytest.fixture(scope="session")
def build_dry_run() -> Callable[..., DryRun]:
    """dry_run(location, root=ROOT): `build-image.sh --dry-run` of the script under root."""
    return dry_run


@pytest.fixture(scope="session")
def parse_dockerfile() -> Callable[[str], list[tuple[str, str]]]:
    return instructions
