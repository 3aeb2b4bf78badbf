"""Freshness as Dagster 1.13 means it: FreshnessPolicy on the assets, judged by the daemon; no
superseded freshness checks or sensors, and no freshness failure inside a load's run."""

from datetime import timedelta

import dagster as dg

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
