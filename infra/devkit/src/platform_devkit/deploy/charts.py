"""The official Dagster charts: where they come from and the one copy every command uses.

The chart repository is a setting (`DAGSTER_CHART_REPO`): the official repository by default,
a company's mirror (HTTP chart repository or `oci://` registry) where the official one is out of
reach. Both charts are pulled once per version into `.local/charts/<version>/` and every
render, diff and install reads that copy, so what the tests render is what helm installs.
"""

import os
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from platform_devkit.paths import REPO_ROOT, state_dir

OFFICIAL_REPOSITORY = "https://dagster-io.github.io/helm"
SYSTEM_CHART = "dagster"
USER_CHART = "dagster-user-deployments"
PULL_TIMEOUT_SECONDS = 120


class ChartsUnavailableError(RuntimeError):
    """The configured chart repository did not provide the charts."""


def chart_repository(environ: Mapping[str, str] = os.environ) -> str:
    """The configured chart repository (DAGSTER_CHART_REPO; empty means the official one)."""
    return environ.get("DAGSTER_CHART_REPO") or OFFICIAL_REPOSITORY


def chart_version(lock: Path = REPO_ROOT / "uv.lock") -> str:
    """The official charts are released with Dagster: their version is `dagster`'s in the lock."""
    packages = tomllib.loads(lock.read_text())["package"]
    (version,) = {p["version"] for p in packages if p["name"] == "dagster"}
    return version


def cache_dir(version: str) -> Path:
    return state_dir() / "charts" / version


@dataclass(frozen=True)
class OfficialCharts:
    version: str
    repository: str
    folder: Path

    @property
    def system(self) -> Path:
        return self.folder / SYSTEM_CHART

    @property
    def user(self) -> Path:
        return self.folder / USER_CHART

    @property
    def present(self) -> bool:
        marker = self.folder / ".repository"
        return (
            marker.exists()
            and marker.read_text().strip() == self.repository
            and all(_chart_version(c) == self.version for c in (self.system, self.user))
        )


def official_charts(repository: str | None = None, version: str | None = None) -> OfficialCharts:
    """Where the charts of this version from this repository are (pulled or not)."""
    version = version or chart_version()
    return OfficialCharts(version, repository or chart_repository(), cache_dir(version))


def ensure_pulled(charts: OfficialCharts, helm: str = "helm") -> OfficialCharts:
    """Pull both charts into the cache unless this version from this repository is there."""
    if charts.present:
        return charts
    charts.folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".pull-", dir=charts.folder.parent))
    try:
        for chart in (SYSTEM_CHART, USER_CHART):
            _pull(helm, charts.repository, chart, charts.version, staging)
        (staging / ".repository").write_text(charts.repository + "\n")
        # Replaced whole, so a reader never sees one chart of one pull and one of another.
        shutil.rmtree(charts.folder, ignore_errors=True)
        staging.rename(charts.folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return charts


def _pull(helm: str, repository: str, chart: str, version: str, target: Path) -> None:
    if repository.startswith("oci://"):
        source = [f"{repository.rstrip('/')}/{chart}"]
    else:
        source = [chart, "--repo", repository]
    argv = [helm, "pull", *source, "--version", version, "--untar", "--untardir", str(target)]
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=PULL_TIMEOUT_SECONDS, check=False
        )
    except FileNotFoundError as error:
        raise ChartsUnavailableError(f"{helm} not found: run `make tools`") from error
    except subprocess.TimeoutExpired as error:
        raise ChartsUnavailableError(
            f"helm pull {chart} {version} from {repository}: no answer in "
            f"{PULL_TIMEOUT_SECONDS}s (set DAGSTER_CHART_REPO to a reachable mirror)"
        ) from error
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        detail = lines[-1] if lines else f"exit status {result.returncode}"
        raise ChartsUnavailableError(
            f"helm pull {chart} {version} from {repository} failed: {detail} "
            "(set DAGSTER_CHART_REPO to a reachable mirror)"
        )


def _chart_version(folder: Path) -> str | None:
    chart_yaml = folder / "Chart.yaml"
    if not chart_yaml.exists():
        return None
    for line in chart_yaml.read_text().splitlines():
        key, _, value = line.partition(":")
        if key == "version":
            return value.strip().strip("\"'")
    return None
