"""Freshness as Dagster 1.13 means it: FreshnessPolicy on the assets, judged by the daemon; no
superseded freshness checks or sensors, and no freshness failure inside a load's run."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from dagster._core.definitions.freshness import FreshnessState

from platform_ops.testing import FreshnessDaemon

PAYMENTS = [dg.AssetKey(["raw", "payments"]), dg.AssetKey(["raw", "payments_rejected"])]


def test_payment_tables_are_due_each_morning_by_nine_utc(ingestion_defs):
    graph = ingestion_defs.resolve_asset_graph()

    for key in PAYMENTS:
        policy = graph.get(key).freshness_policy
        assert isinstance(policy, dg.FreshnessPolicy)
        assert (policy.deadline_cron, policy.timezone) == ("0 9 * * *", "UTC")
        # Loaded since midnight: the night's delivery, not yesterday morning's.
        assert policy.lower_bound_delta == timedelta(hours=9)


def test_no_superseded_freshness_checks_or_sensors_remain(ingestion_defs):
    checks = {key.name for key in ingestion_defs.resolve_asset_graph().asset_check_keys}
    sensors = {sensor.name for sensor in ingestion_defs.sensors}

    assert "freshness_check" not in checks  # the name the superseded factories give
    assert not {name for name in sensors if "freshness" in name}


def test_shop_tables_warn_after_a_missed_hour_and_fail_after_two(ingestion_defs):
    graph = ingestion_defs.resolve_asset_graph()

    for table in ("customers", "products", "orders", "order_items"):
        policy = graph.get(dg.AssetKey(["raw", table])).freshness_policy
        assert isinstance(policy, dg.FreshnessPolicy), table
        assert policy.warn_window.to_timedelta() == timedelta(minutes=90)
        assert policy.fail_window.to_timedelta() == timedelta(hours=2)


@pytest.fixture
def daemon() -> Iterator[FreshnessDaemon]:
    with FreshnessDaemon("ingestion.definitions", "ingestion") as daemon:
        yield daemon


@pytest.mark.parametrize(
    ("loaded_at", "judged_at", "state"),
    [
        # The night's load, judged that morning after the deadline: fresh.
        (datetime(2026, 3, 10, 2, tzinfo=UTC), datetime(2026, 3, 10, 9, 30, tzinfo=UTC), "PASS"),
        # Yesterday's load is still fresh before this morning's deadline ...
        (datetime(2026, 3, 9, 2, tzinfo=UTC), datetime(2026, 3, 10, 8, 59, tzinfo=UTC), "PASS"),
        # ... and stale once the deadline passed without the night's load.
        (datetime(2026, 3, 9, 2, tzinfo=UTC), datetime(2026, 3, 10, 9, 1, tzinfo=UTC), "FAIL"),
        # A late load, after the deadline, makes the tables fresh again once it lands.
        (datetime(2026, 3, 10, 9, 30, tzinfo=UTC), datetime(2026, 3, 10, 10, tzinfo=UTC), "PASS"),
    ],
    ids=["night-load", "before-deadline", "missed-deadline", "late-load"],
)
def test_the_freshness_daemon_judges_the_payment_policy_by_the_deadline(
    daemon, loaded_at, judged_at, state
):
    daemon.materialized([PAYMENTS[0]], at=loaded_at.timestamp(), partition="2026-03-08")

    assert daemon.states([PAYMENTS[0]], judged_at.timestamp())[PAYMENTS[0]] == FreshnessState(state)
