"""Everything the exports location publishes is judged fresh by Dagster's freshness daemon from
its FreshnessPolicy: fresh for three hours after a refresh, worth a look until a day and two
hours have passed, failing after that; the superseded freshness checks and their sensor are
gone. The daemon's own iteration runs here against a real instance, at clock times after
real materialisations."""

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from dagster._core.definitions.freshness import FreshnessState

from exports.definitions import defs
from platform_ops.testing import FreshnessDaemon

HOUR = timedelta(hours=1).total_seconds()
MINUTE = timedelta(minutes=1).total_seconds()


class Freshness:
    """The freshness daemon over the exports location, judging everything it publishes."""

    def __init__(self, daemon: FreshnessDaemon) -> None:
        self.daemon = daemon
        self.published = sorted(defs().resolve_asset_graph().materializable_asset_keys)

    def refreshed(self) -> float:
        """Record a materialisation of every published asset; the latest timestamp."""
        return self.daemon.materialized(self.published)

    def states(self, at: float) -> set[FreshnessState]:
        """One daemon iteration at clock time `at`: the states of the published assets."""
        records = self.daemon.states(self.published, at)
        assert set(records) == set(self.published)
        return set(records.values())


@pytest.fixture
def freshness() -> Iterator[Freshness]:
    with FreshnessDaemon("exports.definitions", "exports") as daemon:
        yield Freshness(daemon)


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
