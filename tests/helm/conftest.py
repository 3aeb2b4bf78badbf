"""Fixtures for the Helm tests: helm itself, renders of the platform chart, and the official
charts' schemas (pulled from the Dagster chart repository when it answers, else the offline
copy in ../shared/dagster-chart-schemas)."""

import os
import sys
from pathlib import Path

import pytest

# The tests import their shared helpers (chartkit.py) from this folder.
sys.path.insert(0, str(Path(__file__).parent))

import chartkit

_official: list[chartkit.OfficialCharts] = []


@pytest.fixture(scope="session")
def helm_available() -> str:
    binary = chartkit.helm_binary()
    if binary is None:
        pytest.skip("helm is not on PATH nor in .tools/bin: run `make tools`")
    return binary


@pytest.fixture(scope="session")
def official_charts(helm_available: str, tmp_path_factory) -> chartkit.OfficialCharts:
    """Schemas and defaults of the official charts at the pinned version: pulled, else offline."""
    charts = chartkit.pull_official_charts(
        chartkit.make_variable("DAGSTER_CHART_VERSION"), tmp_path_factory.mktemp("charts")
    )
    _official.append(charts)
    return charts


@pytest.fixture(scope="session")
def pulled_charts(official_charts: chartkit.OfficialCharts) -> chartkit.OfficialCharts:
    """The official charts themselves, for rendering; skips where the repository is offline."""
    if official_charts.source != "pulled":
        if os.environ.get("REQUIRE_OFFICIAL_CHARTS") == "1":
            # GitHub Actions: the repository is reachable, so a skip would hide a failure.
            pytest.fail(f"the official charts could not be pulled: {official_charts.reason}")
        pytest.skip(
            "the Dagster chart repository is unreachable here, so the official charts cannot be "
            f"rendered ({official_charts.reason}); GitHub Actions renders them"
        )
    return official_charts


@pytest.fixture(scope="session")
def platform_renders(helm_available: str) -> dict[str, list[dict]]:
    """The platform chart rendered in every scenario the repository ships or documents."""
    return {
        name: chartkit.render(
            chartkit.PLATFORM_CHART,
            chartkit.PLATFORM_RELEASE,
            [chartkit.PLATFORM_CHART / "values.yaml"]
            + [chartkit.PLATFORM_CHART / f for f in files],
            sets,
        )
        for name, (files, sets) in chartkit.PLATFORM_SCENARIOS.items()
    }


@pytest.fixture(scope="session")
def official_renders(pulled_charts: chartkit.OfficialCharts) -> dict[str, list[dict]]:
    """The official charts rendered with our values, as `make deploy` installs them: the system
    release and one release per location (keyed "system" and by location name)."""
    renders = {
        "system": chartkit.render(
            pulled_charts.system_chart,
            chartkit.SYSTEM_RELEASE,
            [chartkit.SYSTEM_VALUES_DIR / "values.yaml"],
        )
    }
    for location in chartkit.locations():
        renders[location.name] = chartkit.render(
            pulled_charts.user_chart,
            location.name,
            [location.values_file],
            {"deployments[0].image.tag": "test"},
        )
    return renders


def pytest_terminal_summary(terminalreporter):
    for charts in _official:
        note = f" ({charts.reason})" if charts.reason else ""
        terminalreporter.write_line(
            f"helm tests: official chart schemas from the {charts.source} copy{note}"
        )
