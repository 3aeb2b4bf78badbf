"""Declarative automation across code locations, evaluated directly (the daemon's logic)."""

import warnings

import dagster as dg

DBT_MODELS = {
    "staging/stg_customers", "staging/stg_products", "staging/stg_orders",
    "staging/stg_order_items", "staging/stg_payments", "marts/fct_orders",
    "marts/dim_customers", "marts/customer_lifetime_value", "marts/daily_revenue",
}  # fmt: skip
SHOP = {"raw/customers", "raw/products", "raw/orders", "raw/order_items"}


def requested(result: dg.EvaluateAutomationConditionsResult) -> set[str]:
    return {r.key.to_user_string() for r in result.results if r.true_subset.size}


def evaluate(defs, instance, cursor=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)


def test_dbt_waits_for_ingestion_then_runs_without_a_manual_launch(workspace_defs):
    instance = dg.DagsterInstance.ephemeral()

    first = evaluate(workspace_defs, instance)
    assert requested(first) == SHOP  # raw is missing: nothing downstream can run yet

    for key in SHOP:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(dg.AssetKey.from_user_string(key))
        )
    # Payments arrive as daily partitions; most days have none, which must not block dbt.
    instance.report_runless_asset_event(
        dg.AssetMaterialization(dg.AssetKey(["raw", "payments"]), partition="2026-03-08")
    )
    second = evaluate(workspace_defs, instance, first.cursor)

    assert requested(second) == DBT_MODELS
    third = evaluate(workspace_defs, instance, second.cursor)
    assert requested(third) == set()  # requested once, not on every tick


def test_a_new_payment_partition_rebuilds_only_what_depends_on_payments(workspace_defs):
    instance = dg.DagsterInstance.ephemeral()
    cursor = evaluate(workspace_defs, instance).cursor
    for key in [*SHOP, *DBT_MODELS]:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(dg.AssetKey.from_user_string(key))
        )
    cursor = evaluate(workspace_defs, instance, cursor).cursor

    instance.report_runless_asset_event(
        dg.AssetMaterialization(dg.AssetKey(["raw", "payments"]), partition="2026-03-09")
    )
    result = evaluate(workspace_defs, instance, cursor)

    assert requested(result) == {"staging/stg_payments", "marts/daily_revenue"}
