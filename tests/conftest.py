"""Fixtures for cross-location tests: every location's definitions, loaded by module name
(locations never import each other; only tests and the platform see them all)."""

from pathlib import Path

import dagster as dg
import pytest

from platform_devkit.defs_state import prepare
from platform_devkit.instance import locations
from platform_devkit.runner import load_definitions


@pytest.fixture(scope="session")
def location_defs() -> dict[str, dg.Definitions]:
    """Definitions of every location in dg.toml order, defs state prepared first."""
    loaded = {}
    for location in locations():
        prepare(Path(location["path"]), progress=lambda _: None)
        loaded[location["name"]] = load_definitions(location["module"])
    return loaded


@pytest.fixture(scope="session")
def workspace_defs(location_defs: dict[str, dg.Definitions]) -> dg.Definitions:
    """Every location's assets in one graph, as the webserver and daemon see the workspace."""
    return dg.Definitions(
        assets=[a for defs in location_defs.values() for a in defs.assets or []],
        resources={
            k: v for defs in location_defs.values() for k, v in (defs.resources or {}).items()
        },
    )
