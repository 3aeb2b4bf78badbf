"""Everything the exports location publishes is judged fresh by Dagster's freshness daemon from
its FreshnessPolicy: fresh for three hours after a refresh, worth a look until a day and two
hours have passed, failing after that; the superseded freshness checks and their sensor are
gone. The daemon's own iteration runs here against a real instance, at clock times after
real materialisations."""

import time
from collections.abc import Iterator
from datetime import timedelta

import dagster as dg
import pytest
from dagster._core.definitions.freshness import FreshnessState
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.test_utils import create_test_daemon_workspace_context, freeze_time
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.freshness import FreshnessDaemon

from exports.definitions import defs

HOUR = timedelta(hours=1).total_seconds()
MINUTE = timedelta(minutes=1).total_seconds()


class Freshness:
    """The freshness daemon over the exports location, as `dagster-daemon` runs it."""

    def __init__(self, instance: dg.DagsterInstance, context) -> None:
        self.instance = instance
        self.context = context
        self.daemon = FreshnessDaemon()
        self.published = sorted(defs().resolve_asset_graph().materializable_asset_keys)

    def refreshed(self) -> float:
        """Record a materialisation of every published asset; the latest timestamp."""
        for key in self.published:
            self.instance.report_runless_asset_event(dg.AssetMaterialization(key))
        events = [self.instance.get_latest_materialization_event(k) for k in self.published]
        return max(event.timestamp for event in events)

    def states(self, at: float) -> set[FreshnessState]:
        """One daemon iteration at clock time `at`: the states of the published assets."""
        with freeze_time(at):
            list(self.daemon.run_iteration(self.context))
        records = self.instance.get_freshness_state_records(self.published)
        assert set(records) == set(self.published)
        return {record.freshness_state for record in records.values()}


@pytest.fixture
def freshness() -> Iterator[Freshness]:
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name="exports.definitions", attribute="defs"),
        location_name="exports",
    )
    with (
        dg.instance_for_test() as instance,
        create_test_daemon_workspace_context(
            InProcessWorkspaceLoadTarget(origin), instance
        ) as context,
    ):
        yield Freshness(instance, context)


def test_published_assets_pass_for_three_hours_warn_until_26_and_then_fail(freshness):
    assert freshness.published
    built = freshness.refreshed()

    assert freshness.states(built + 5 * MINUTE) == {FreshnessState.PASS}
    assert freshness.states(built + 2 * HOUR + 59 * MINUTE) == {FreshnessState.PASS}
    assert freshness.states(built + 3 * HOUR + MINUTE) == {FreshnessState.WARN}
    assert freshness.states(built + 25 * HOUR + 59 * MINUTE) == {FreshnessState.WARN}
    assert freshness.states(built + 26 * HOUR + MINUTE) == {FreshnessState.FAIL}


def test_a_refresh_after_a_failure_makes_them_fresh_again(freshness):
    built = freshness.refreshed()
    assert freshness.states(built + 48 * HOUR) == {FreshnessState.FAIL}

    rebuilt = freshness.refreshed()

    assert freshness.states(rebuilt + MINUTE) == {FreshnessState.PASS}


def test_assets_never_built_are_unknown_not_failing(freshness):
    """A new deployment pages nobody: freshness is judged from the first materialisation on."""
    assert freshness.states(time.time() + 30 * 24 * HOUR) == {FreshnessState.UNKNOWN}


def test_no_superseded_freshness_checks_or_sensors_remain():
    loaded = defs()

    assert "freshness_check" not in {k.name for k in loaded.resolve_asset_graph().asset_check_keys}
    assert not [s.name for s in loaded.sensors or [] if "freshness" in s.name]
