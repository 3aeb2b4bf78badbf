"""Declarative automation across code locations, evaluated directly (the daemon's logic).

The daemon evaluates each location's automation sensor over the workspace graph, where an
asset of another location can never be requested in the same run (its condition cannot count
on it being "requested this tick"): a downstream location starts after the upstream run has
materialised. Evaluating everything as one Definitions would hide exactly that, so each
location is evaluated on its own, with the other locations' assets as external specs: the
pattern `dg.evaluate_automation_conditions` documents for cross-location conditions.
"""

import warnings

import dagster as dg
import pytest

DBT_MODELS = {
    "staging/stg_customers", "staging/stg_products", "staging/stg_orders",
    "staging/stg_order_items", "staging/stg_payments", "marts/fct_orders",
    "marts/dim_customers", "marts/customer_lifetime_value", "marts/daily_revenue",
}  # fmt: skip
SHOP = {"raw/customers", "raw/products", "raw/orders", "raw/order_items"}
EXPORTS = {
    "snapshots/fct_orders", "snapshots/dim_customers", "snapshots/customer_lifetime_value",
    "snapshots/daily_revenue", "bi/daily_revenue", "bi/customer_value", "reports/daily_revenue",
}  # fmt: skip


class Daemon:
    """Ticks of every location's automation against one instance."""

    def __init__(self, location_defs: dict[str, dg.Definitions]) -> None:
        self.instance = dg.DagsterInstance.ephemeral()
        graphs = {name: defs.resolve_asset_graph() for name, defs in location_defs.items()}
        self.own = {name: set(g.materializable_asset_keys) for name, g in graphs.items()}
        self.views = {
            name: dg.Definitions(
                assets=[
                    *defs.assets,
                    *(
                        dg.AssetSpec(key, partitions_def=graphs[other].get(key).partitions_def)
                        for other in location_defs
                        if other != name
                        for key in self.own[other]
                    ),
                ],
                resources=defs.resources,
            )
            for name, defs in location_defs.items()
        }
        self.cursors: dict[str, object] = dict.fromkeys(self.views)
        # The asset checks the latest tick requested (tick() returns the assets).
        self.checks: set[dg.AssetCheckKey] = set()

    def tick(self) -> set[str]:
        requested = set()
        self.checks = set()
        for name, defs in self.views.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", dg.BetaWarning)
                result = dg.evaluate_automation_conditions(
                    defs=defs, instance=self.instance, cursor=self.cursors[name]
                )
            self.cursors[name] = result.cursor
            requested |= {
                r.key.to_user_string()
                for r in result.results
                if r.true_subset.size and r.key in self.own[name]
            }
            self.checks |= {
                r.key
                for r in result.results
                if r.true_subset.size and isinstance(r.key, dg.AssetCheckKey)
            }
        return requested

    def materialized(self, keys: set[str], partition: str | None = None) -> None:
        for key in keys:
            self.instance.report_runless_asset_event(
                dg.AssetMaterialization(dg.AssetKey.from_user_string(key), partition=partition)
            )

    def checked(self, key: dg.AssetCheckKey) -> None:
        self.instance.report_runless_asset_event(
            dg.AssetCheckEvaluation(asset_key=key.asset_key, check_name=key.name, passed=True)
        )


# The business rule: a dbt test of fct_orders that also reads stg_payments.
CROSS_MODEL_TEST = dg.AssetCheckKey(
    dg.AssetKey(["marts", "fct_orders"]), "assert_no_order_is_paid_more_than_its_total"
)

# The product's own flow; a team's locations (make new-location) have their own tests.
PRODUCT = ("ingestion", "transformation", "exports")


@pytest.fixture
def daemon(location_defs) -> Daemon:
    return Daemon({name: location_defs[name] for name in PRODUCT})


def test_dbt_waits_for_ingestion_then_runs_without_a_manual_launch(daemon):
    assert daemon.tick() == SHOP  # raw is missing: nothing downstream can run yet
    assert daemon.tick() == set()  # requested once, not on every tick

    daemon.materialized(SHOP)
    # Payments arrive as daily partitions; most days have none, which must not block dbt.
    daemon.materialized({"raw/payments"}, partition="2026-03-08")

    assert daemon.tick() == DBT_MODELS
    assert daemon.tick() == set()


def test_a_new_payment_partition_rebuilds_only_what_depends_on_payments(daemon):
    daemon.tick()
    daemon.materialized(SHOP | DBT_MODELS | EXPORTS)
    daemon.materialized({"raw/payments"}, partition="2026-03-08")
    daemon.tick()
    daemon.materialized(DBT_MODELS | EXPORTS)
    daemon.tick()

    daemon.materialized({"raw/payments"}, partition="2026-03-09")

    assert daemon.tick() == {"staging/stg_payments", "marts/daily_revenue"}


def test_exports_follow_the_marts_once_they_have_materialised(daemon):
    daemon.tick()
    daemon.materialized(SHOP)
    daemon.materialized({"raw/payments"}, partition="2026-03-08")
    assert daemon.tick() == DBT_MODELS  # exports wait: the marts are not materialised yet

    daemon.materialized(DBT_MODELS)

    assert daemon.tick() == EXPORTS
    assert daemon.tick() == set()


def test_a_cross_model_test_runs_once_after_a_partial_build_and_is_not_requested_again(daemon):
    daemon.tick()
    daemon.materialized(SHOP)
    daemon.materialized({"raw/payments"}, partition="2026-03-08")
    assert daemon.tick() == DBT_MODELS
    # Requested with both its models: the full build runs it.
    assert CROSS_MODEL_TEST in daemon.checks
    daemon.materialized(DBT_MODELS)
    daemon.checked(CROSS_MODEL_TEST)
    daemon.tick()
    assert CROSS_MODEL_TEST not in daemon.checks

    # A build of fct_orders alone (a manual launch, a retry): dbt skipped the rule in it.
    daemon.materialized({"marts/fct_orders"})
    downstream = daemon.tick()
    assert CROSS_MODEL_TEST in daemon.checks
    requested = daemon.checks
    daemon.materialized(downstream)
    for check in requested:
        daemon.checked(check)

    # The first tick after the rule ran, and the next: no re-request loop.
    daemon.tick()
    assert CROSS_MODEL_TEST not in daemon.checks
    assert daemon.checks == set()
    daemon.tick()
    assert daemon.checks == set()
