"""Fixtures for the Helm tests: helm itself, renders of the platform chart, and the official
charts from the configured chart repository (DAGSTER_CHART_REPO, default Dagster's), pulled
into the same cache `make deploy` installs from and rendered with the deployment plan's own
arguments in every overlay the repository ships.

Where the repository does not answer, tests that need the official charts skip with one line,
unless REQUIRE_OFFICIAL_CHARTS=1 (CI), where they fail."""

import os
import sys
from functools import cache
from pathlib import Path

import pytest

# The tests import their shared helpers (chartkit.py) from this folder.
sys.path.insert(0, str(Path(__file__).parent))

import chartkit

from platform_devkit.deploy import charts, plan

_summary: list[str] = []


@pytest.fixture(scope="session")
def helm_available() -> str:
    binary = chartkit.helm_binary()
    if binary is None:
        reason = "helm is not on PATH nor in .tools/bin: run `make tools` (make test does)"
        if os.environ.get("REQUIRE_OFFICIAL_CHARTS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return binary


@cache
def _pull() -> tuple[charts.OfficialCharts | None, str, bool]:
    """(the pulled charts or None, why not, whether the repository answered at all)."""
    try:
        wanted = charts.official_charts()
        return charts.ensure_pulled(wanted, chartkit.helm_binary() or "helm"), "", True
    except charts.ChartsUnreachableError as error:
        return None, str(error), False
    except charts.ChartsError as error:
        return None, str(error), True


def official_charts_or_none() -> charts.OfficialCharts | None:
    """The pulled charts, or None where the repository does not answer. Fails when it answers
    without the charts (a mirror lacking the version in uv.lock is a broken deployment, not a
    reason to skip) and under REQUIRE_OFFICIAL_CHARTS=1, where a skip would hide one."""
    pulled, reason, answered = _pull()
    if pulled is None and (answered or os.environ.get("REQUIRE_OFFICIAL_CHARTS") == "1"):
        pytest.fail(f"the official charts could not be pulled: {reason}")
    return pulled


@pytest.fixture(scope="session")
def official_charts(helm_available: str) -> charts.OfficialCharts:
    pulled = official_charts_or_none()
    if pulled is None:
        pytest.skip(f"official charts unavailable: {_pull()[1]}")
    hosts = ", ".join(sorted(pulled.schema_hosts())) or "none"
    _summary.append(
        f"official charts {pulled.version} from {pulled.repository} "
        f"(hosts their values schemas reference, fetched by helm on render: {hosts})"
    )
    return pulled


@pytest.fixture(scope="session")
def platform_renders(helm_available: str) -> dict[str, list[dict]]:
    """The platform chart rendered in every scenario the repository ships or documents."""
    return {
        name: chartkit.render(
            chartkit.PLATFORM_CHART,
            chartkit.PLATFORM_RELEASE,
            [chartkit.PLATFORM_CHART / "values.yaml", chartkit.platform_generated()]
            + [chartkit.PLATFORM_CHART / f for f in files],
            sets,
        )
        for name, (files, sets) in chartkit.PLATFORM_SCENARIOS.items()
    }


def plan_settings(pulled: charts.OfficialCharts, overlay: str = "") -> plan.Settings:
    return plan.Settings(tag="test", overlay=overlay, charts=pulled)


@pytest.fixture(scope="session")
def deployment_renders(official_charts: charts.OfficialCharts) -> dict[str, dict[str, list]]:
    """Every release of `make deploy`, rendered with the plan's arguments, for every overlay
    the repository ships: {overlay ("" = none): {release name: documents}}. helm validates
    the values against each chart's own values schema on every render."""
    return {
        overlay: {
            release.name: chartkit.render_release(release, settings)
            for release in plan.releases(settings)
        }
        for overlay in chartkit.shipped_overlays()
        for settings in [plan_settings(official_charts, overlay)]
    }


@pytest.fixture(scope="session")
def official_renders(deployment_renders: dict[str, dict[str, list]]) -> dict[str, list[dict]]:
    """The official charts as `make deploy` installs them without an overlay: the system
    release ("system") and one release per location (by location name)."""
    renders = deployment_renders[""]
    return {
        "system": renders[chartkit.SYSTEM_RELEASE],
        **{loc.name: renders[loc.name] for loc in chartkit.locations()},
    }


def pytest_terminal_summary(terminalreporter):
    for line in dict.fromkeys(_summary):
        terminalreporter.write_line(f"helm tests: {line}")
