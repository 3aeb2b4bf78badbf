"""Declarative automation of the ingestion location, evaluated directly (no daemon)."""

import warnings
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

SHOP = {"raw/customers", "raw/products", "raw/orders", "raw/order_items"}


@pytest.fixture(autouse=True)
def _quiet_beta_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        yield


def requested(result: dg.EvaluateAutomationConditionsResult) -> set[str]:
    return {r.key.to_user_string() for r in result.results if r.true_subset.size}


def test_a_new_deployment_requests_each_shop_table_once_and_never_payments(ingestion_defs):
    instance = dg.DagsterInstance.ephemeral()

    first = dg.evaluate_automation_conditions(defs=ingestion_defs, instance=instance)
    second = dg.evaluate_automation_conditions(
        defs=ingestion_defs, instance=instance, cursor=first.cursor
    )

    assert requested(first) == SHOP
    assert first.total_requested == len(SHOP)
    assert second.total_requested == 0


def test_loaded_shop_tables_are_refreshed_at_the_top_of_each_hour(ingestion_defs):
    instance = dg.DagsterInstance.ephemeral()
    start = datetime(2026, 3, 10, 10, 20, tzinfo=UTC)
    first = dg.evaluate_automation_conditions(
        defs=ingestion_defs, instance=instance, evaluation_time=start
    )
    for key in SHOP:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(dg.AssetKey.from_user_string(key))
        )

    quiet = dg.evaluate_automation_conditions(
        defs=ingestion_defs, instance=instance, cursor=first.cursor,
        evaluation_time=start + timedelta(minutes=20),
    )  # fmt: skip
    on_the_hour = dg.evaluate_automation_conditions(
        defs=ingestion_defs, instance=instance, cursor=quiet.cursor,
        evaluation_time=start + timedelta(minutes=41),
    )  # fmt: skip

    assert quiet.total_requested == 0
    assert requested(on_the_hour) == SHOP
