"""The official Dagster charts: where they come from and the one copy every command uses.

The chart repository is a setting (`DAGSTER_CHART_REPO`): the official repository by default,
a company's mirror where the official one is out of reach, given as an HTTP chart repository
URL, an `oci://` registry, or the name of a repository configured with `helm repo add` (the
way to give a mirror credentials or a CA: `helm repo add --username ... --ca-file ...`).
Both charts are pulled once per version and repository into `.local/charts/<version>/<repo>/`
and every render, diff and install reads that copy, so what the tests render is what helm
installs.

A chart's values schema may `$ref` Kubernetes schemas by URL, which helm fetches on every
render and install (`make charts` lists the hosts). `DAGSTER_CHART_SCHEMA_REWRITE=<from>=<to>`
rewrites those references when the charts are pulled, for networks that reach only a mirror.
"""

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from platform_devkit.paths import REPO_ROOT, state_dir

OFFICIAL_REPOSITORY = "https://dagster-io.github.io/helm"
SYSTEM_CHART = "dagster"
USER_CHART = "dagster-user-deployments"
PULL_TIMEOUT_SECONDS = 120
# Network-level failures: the repository did not answer at all. Anything else (a 404 index, a
# 401, a missing version) means it answered without the charts: an error to fix, not a reason
# to skip. ("cannot be reached" is not one: helm says it for a 404 index too.)
UNREACHABLE = re.compile(
    r"no such host|connection refused|i/o timeout|network is unreachable|"
    r"TLS handshake timeout|context deadline exceeded|dial tcp",
    re.IGNORECASE,
)


class ChartsError(RuntimeError):
    """The configured chart repository answered, but did not provide the charts."""


class ChartsUnreachableError(ChartsError):
    """The configured chart repository did not answer."""


def chart_repository(environ: Mapping[str, str] = os.environ) -> str:
    """The configured chart repository (DAGSTER_CHART_REPO; empty means the official one)."""
    return environ.get("DAGSTER_CHART_REPO") or OFFICIAL_REPOSITORY


def schema_rewrite(environ: Mapping[str, str] = os.environ) -> tuple[str, str] | None:
    """DAGSTER_CHART_SCHEMA_REWRITE as (from, to), or None when unset."""
    value = environ.get("DAGSTER_CHART_SCHEMA_REWRITE", "")
    if not value:
        return None
    source, sep, target = value.partition("=")
    if not sep or not source or not target:
        raise ChartsError(
            f"DAGSTER_CHART_SCHEMA_REWRITE={value!r}: expected <url prefix>=<mirror url prefix>"
        )
    return source, target


def chart_version(lock: Path = REPO_ROOT / "uv.lock") -> str:
    """The official charts are released with Dagster: their version is `dagster`'s in the lock."""
    packages = tomllib.loads(lock.read_text())["package"]
    (version,) = {p["version"] for p in packages if p["name"] == "dagster"}
    return version


def cache_dir(version: str, repository: str, rewrite: tuple[str, str] | None = None) -> Path:
    """One folder per version, repository and schema rewrite: a run with another mirror never
    replaces the copy a concurrent run renders from, and a changed rewrite pulls again."""
    slug = re.sub(r"[^a-z0-9]+", "-", repository.lower()).strip("-")[-40:]
    key = repository if rewrite is None else f"{repository} {rewrite[0]}={rewrite[1]}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    return state_dir() / "charts" / version / f"{slug}-{digest}"


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
        return all(_chart_version(c) == self.version for c in (self.system, self.user))

    def schema_hosts(self) -> set[str]:
        """Hosts the pulled charts' values schemas reference (helm fetches them on render)."""
        return {urlparse(ref).netloc for ref in _remote_refs(self.folder)}


def official_charts(repository: str | None = None, version: str | None = None) -> OfficialCharts:
    """Where the charts of this version from this repository are (pulled or not)."""
    version = version or chart_version()
    repository = repository or chart_repository()
    return OfficialCharts(version, repository, cache_dir(version, repository, schema_rewrite()))


def ensure_pulled(charts: OfficialCharts, helm: str = "helm") -> OfficialCharts:
    """Pull both charts into the cache unless they are there; one puller at a time."""
    if charts.present:
        return charts
    charts.folder.parent.mkdir(parents=True, exist_ok=True)
    with open(charts.folder.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if charts.present:  # pulled by another run while this one waited
            return charts
        rewrite = schema_rewrite()
        staging = Path(tempfile.mkdtemp(prefix=".pull-", dir=charts.folder.parent))
        try:
            for chart in (SYSTEM_CHART, USER_CHART):
                _pull(helm, charts.repository, chart, charts.version, staging)
            if rewrite:
                _rewrite_refs(staging, *rewrite)
            (staging / ".repository").write_text(charts.repository + "\n")
            shutil.rmtree(charts.folder, ignore_errors=True)
            staging.rename(charts.folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return charts


def _pull(helm: str, repository: str, chart: str, version: str, target: Path) -> None:
    if repository.startswith("oci://"):
        source = [f"{repository.rstrip('/')}/{chart}"]
    elif "://" in repository:
        source = [chart, "--repo", repository]
    else:
        source = [f"{repository}/{chart}"]  # a repository added with `helm repo add`
    argv = [helm, "pull", *source, "--version", version, "--untar", "--untardir", str(target)]
    advice = "set DAGSTER_CHART_REPO to a reachable mirror (docs/deploy.md)"
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=PULL_TIMEOUT_SECONDS, check=False
        )
    except FileNotFoundError as error:
        raise ChartsUnreachableError(f"{helm} not found: run `make tools`") from error
    except subprocess.TimeoutExpired as error:
        raise ChartsUnreachableError(
            f"helm pull {chart} {version} from {repository}: no answer in "
            f"{PULL_TIMEOUT_SECONDS}s; {advice}"
        ) from error
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        detail = lines[-1].removeprefix("Error: ") if lines else f"exit {result.returncode}"
        error_type = ChartsUnreachableError if UNREACHABLE.search(detail) else ChartsError
        raise error_type(f"helm pull {chart} {version} from {repository}: {detail}; {advice}")


def _schemas(folder: Path) -> Iterator[Path]:
    return folder.rglob("values.schema.json")


def _refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _remote_refs(folder: Path) -> set[str]:
    return {
        ref
        for path in _schemas(folder)
        for ref in _refs(json.loads(path.read_text()))
        if ref.startswith(("http://", "https://"))
    }


def _rewritten(node: object, source: str, target: str) -> object:
    if isinstance(node, dict):
        return {
            key: (
                target + value[len(source) :]
                if key == "$ref" and isinstance(value, str) and value.startswith(source)
                else _rewritten(value, source, target)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rewritten(value, source, target) for value in node]
    return node


def _rewrite_refs(folder: Path, source: str, target: str) -> None:
    for path in _schemas(folder):
        schema = json.loads(path.read_text())
        path.write_text(json.dumps(_rewritten(schema, source, target), indent=2) + "\n")


def _chart_version(folder: Path) -> str | None:
    chart_yaml = folder / "Chart.yaml"
    if not chart_yaml.exists():
        return None
    for line in chart_yaml.read_text().splitlines():
        key, _, value = line.partition(":")
        if key == "version":
            return value.strip().strip("\"'")
    return None
