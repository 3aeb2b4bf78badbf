"""Fixtures for cross-location tests: every location's definitions, loaded by module name
(locations never import each other; only tests and the platform see them all). And the list
of slow tests, which `make test` leaves to `make test-slow`."""

from pathlib import Path

import dagster as dg
import pytest

from platform_devkit.defs_state import prepare
from platform_devkit.instance import locations
from platform_devkit.runner import load_definitions

# The slow layer: `make test` leaves these out (-m "not slow"), `make test-slow` runs them, and
# `make ci` runs both. Kept here rather than as marks in the test files, so one list says what
# is slow and why; the rest of `make test` still covers every area (each location's own tests,
# the bootstrap, the contracts, the chart renders, one mart and one export read back). Tests
# that mark themselves `slow` (tests/platform/test_new_location.py, tests/test_dg_workspace.py,
# ...) are not repeated here. Module (relative to the repository root) -> test -> seconds, one
# run on the 2-core CI machine shape with other work beside it: what the entry saves.
SLOW: dict[str, dict[str, int]] = {
    # dbt builds of the whole project, several times over (a partial build, then a change).
    "tests/pipeline/test_marts.py": {
        "test_a_cross_model_test_a_partial_build_skipped_runs_when_its_models_are_fresh": 63,
        "test_fct_orders_picks_up_changed_orders_incrementally": 38,
        "test_a_failing_dbt_test_fails_its_check_while_unrelated_models_stand": 21,
        "test_models_that_do_not_need_payments_build_before_the_first_payment_file": 17,
    },
    # Every export written again, and a write killed half-way through in a subprocess.
    "tests/pipeline/test_exports.py": {
        "test_a_failure_in_the_middle_of_a_write_leaves_the_previous_snapshot": 101,
        "test_rerunning_the_exports_replaces_and_never_duplicates": 34,
    },
    # Waits out the retry back-off against a warehouse that refuses connections.
    "tests/pipeline/test_recovery.py": {
        "test_a_dbt_build_that_cannot_reach_the_warehouse_is_retried": 31,
    },
    # The daemon's run monitoring: a killed worker, a database back after a restart.
    "infra/devkit/tests/test_run_monitoring.py": {
        "test_a_run_whose_worker_was_killed_is_failed_by_run_monitoring_and_frees_its_slot": 46,
        "test_a_run_that_lost_its_database_mid_load_is_failed_once_the_server_is_back": 42,
    },
    # Two forced preparations (dbt parse) beside a process that loaded the definitions, and a
    # pinning subprocess the devkit must wait for (CI: 44 s and 10 s alone).
    "tests/platform/test_defs_state_isolation.py": {
        "test_loaded_definitions_name_the_version_folder_which_outlives_a_re_prepare": 44,
        "test_the_devkit_keeps_a_version_while_a_process_that_pinned_it_lives": 10,
    },
    # A run held behind a busy pool, then signalled.
    "infra/devkit/tests/test_runner.py": {
        "test_sigterm_stops_a_run_that_waits_for_a_busy_pool": 25,
    },
}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests SLOW lists `slow` (before -m selects). A listed test missing from a module
    that was collected is an error: a renamed test would otherwise leave the list unnoticed."""
    # By module: a run that selects one test by id collects only that one.
    modules: dict[str, object] = {}
    for item in items:
        module, _, name = item.nodeid.partition("::")
        name = name.split("[", 1)[0]
        if module in SLOW and isinstance(item, pytest.Function):
            modules[module] = item.module
        if name in SLOW.get(module, {}):
            item.add_marker(pytest.mark.slow)
    stale = [
        f"{module}::{name}"
        for module, loaded in modules.items()
        for name in SLOW[module]
        if not hasattr(loaded, name)
    ]
    if stale:
        raise pytest.UsageError(
            f"tests/conftest.py SLOW names tests that do not exist: {', '.join(stale)}"
        )


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
