"""Everything the exports location publishes carries its FreshnessPolicy, judged by Dagster's
freshness daemon; the superseded freshness checks and their sensor are gone."""

from datetime import timedelta

import dagster as dg

from exports.definitions import defs


def test_every_published_asset_is_due_within_a_day_and_warns_after_three_hours():
    graph = defs().resolve_asset_graph()

    policies = {key: graph.get(key).freshness_policy for key in graph.materializable_asset_keys}

    assert policies
    for key, policy in policies.items():
        assert isinstance(policy, dg.FreshnessPolicy), key
        assert policy.fail_window.to_timedelta() == timedelta(hours=26)
        assert policy.warn_window.to_timedelta() == timedelta(hours=3)


def test_no_superseded_freshness_checks_or_sensors_remain():
    loaded = defs()

    assert "freshness_check" not in {k.name for k in loaded.resolve_asset_graph().asset_check_keys}
    assert not [s.name for s in loaded.sensors or [] if "freshness" in s.name]
