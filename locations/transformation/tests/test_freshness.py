"""The dbt models are judged fresh by Dagster's freshness daemon from their FreshnessPolicy
(defs/dbt/automation.py): fresh for three hours after a build, worth a look until a day and two
hours have passed, failing after that. The daemon's own iteration runs here against a real
instance, at clock times after real materialisations."""

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.freshness import FreshnessState

from platform_devkit.defs_state import prepare
from platform_ops.testing import FreshnessDaemon

LOCATION = Path(__file__).resolve().parents[1]
HOUR = timedelta(hours=1).total_seconds()
MINUTE = timedelta(minutes=1).total_seconds()


class Freshness:
    """The freshness daemon over the transformation location: its models, and the upstream
    tables it only reads."""

    def __init__(self, daemon: FreshnessDaemon) -> None:
        self.daemon = daemon
        graph = daemon.asset_graph
        self.models = sorted(
            k for k in graph.get_all_asset_keys() if graph.get(k).is_materializable
        )
        self.upstream = sorted(set(graph.get_all_asset_keys()) - set(self.models))

    def built(self, keys: list[dg.AssetKey]) -> float:
        """Record a materialisation of each of `keys`; the latest timestamp."""
        return self.daemon.materialized(keys)

    def states(self, at: float) -> dict[dg.AssetKey, FreshnessState]:
        """One daemon iteration at clock time `at`: each asset's freshness state."""
        return self.daemon.states([*self.models, *self.upstream], at)

    def of_models(self, at: float) -> set[FreshnessState]:
        states = self.states(at)
        return {states[key] for key in self.models}


@pytest.fixture
def freshness() -> Iterator[Freshness]:
    prepare(LOCATION, progress=lambda _: None)
    with FreshnessDaemon("transformation.definitions", "transformation") as daemon:
        yield Freshness(daemon)


def test_models_pass_for_three_hours_after_a_build_warn_until_26_and_then_fail(freshness):
    assert dg.AssetKey(["marts", "fct_orders"]) in freshness.models
    built = freshness.built(freshness.models)

    assert freshness.of_models(built + 2 * HOUR + 59 * MINUTE) == {FreshnessState.PASS}
    assert freshness.of_models(built + 3 * HOUR + MINUTE) == {FreshnessState.WARN}
    assert freshness.of_models(built + 25 * HOUR + 59 * MINUTE) == {FreshnessState.WARN}
    assert freshness.of_models(built + 26 * HOUR + MINUTE) == {FreshnessState.FAIL}


def test_a_model_rebuilt_while_the_others_went_stale_is_the_only_fresh_one(freshness):
    fct_orders = dg.AssetKey(["marts", "fct_orders"])
    built = freshness.built(freshness.models)
    freshness.daemon.materialized([fct_orders], at=built + 25 * HOUR)

    states = freshness.states(built + 27 * HOUR)

    assert states[fct_orders] == FreshnessState.PASS
    assert {states[k] for k in freshness.models if k != fct_orders} == {FreshnessState.FAIL}


def test_upstream_tables_are_judged_by_their_own_location_not_here(freshness):
    """The raw tables are the ingestion location's assets: their policies live there."""
    assert dg.AssetKey(["raw", "orders"]) in freshness.upstream

    states = freshness.states(freshness.built(freshness.models) + 30 * HOUR)

    assert {states[key] for key in freshness.upstream} == {FreshnessState.NOT_APPLICABLE}
    assert {states[key] for key in freshness.models} == {FreshnessState.FAIL}
