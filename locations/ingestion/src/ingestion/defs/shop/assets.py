"""raw/customers, raw/products, raw/orders, raw/order_items: the shop database in the warehouse."""

from datetime import timedelta

import dagster as dg
from pydantic import Field

from ingestion.defs.resources import PostgresResource
from platform_ops.recovery import recovering, retry_transient

# table -> (primary key, what a row is). The order is the load order within one run.
SHOP_TABLES: dict[str, tuple[str, str]] = {
    "customers": ("customer_id", "Shop customers as in the source database, one per row."),
    "products": ("product_id", "Shop product catalogue with current unit prices, one per row."),
    "orders": ("order_id", "Shop orders with their current status, one per row."),
    "order_items": (
        "order_item_id",
        "Order lines: product, quantity and unit price at order time.",
    ),
}
# Every shop table carries updated_at, set by the application on each change: the incremental
# cursor.
CURSOR_COLUMN = "updated_at"

# Hourly; and a new deployment fills itself: a table never loaded is requested on the
# condition's first evaluation (on_missing alone only covers tables added later). A failed load
# is requested again after a backoff (docs/operations.md), not only at the next hour.
SHOP_AUTOMATION = recovering(
    dg.AutomationCondition.on_cron("0 * * * *")
    | dg.AutomationCondition.on_missing()
    | (dg.AutomationCondition.missing() & dg.AutomationCondition.initial_evaluation())
)

# Loaded hourly: a load 90 minutes old means one hour was missed, two hours something is wrong.
SHOP_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(hours=2), warn_window=timedelta(minutes=90)
)

SHOP_SPECS: dict[str, dg.AssetSpec] = {
    table: dg.AssetSpec(
        key=dg.AssetKey(["raw", table]),
        description=description,
        group_name="shop",
        owners=["team:ingestion"],
        tags={"source": "shop", "load": "incremental"},
        kinds={"dlt", "postgres"},
        automation_condition=SHOP_AUTOMATION,
        freshness_policy=SHOP_FRESHNESS,
        metadata={"primary_key": key, "dagster/table_name": f"raw.{table}"},
    )
    for table, (key, description) in SHOP_TABLES.items()
}


class ShopLoadConfig(dg.Config):
    """Run configuration of a shop load; the defaults are what automation's runs use."""

    resync: bool = Field(
        default=False,
        description=(
            "Re-create the selected tables from the source: drop them in raw, with dlt's schema "
            "and cursor for them, and load every row with the source's current column types. "
            "For a source column whose new type raw cannot take; views on the tables must be "
            "dropped first (docs/shop-reconciliation.md)."
        ),
    )


@dg.multi_asset(
    specs=list(SHOP_SPECS.values()),
    can_subset=True,
    name="shop_tables",
    # One load at a time: runs of one dlt pipeline share its staging tables in raw_staging,
    # which a merge truncates and refills.
    pool="ingestion_shop_db",
)
def shop_tables(
    context: dg.AssetExecutionContext,
    config: ShopLoadConfig,
    shop_db: PostgresResource,
    warehouse: PostgresResource,
):
    """Loads the changed rows of the shop tables into raw, merges them on primary keys, and
    re-loads the rows that still differ from the source."""
    # dlt is imported by the runs that use it, not by the code server, whose start time it
    # would double.
    from ingestion.pipelines.shop import load_shop_tables

    # A connection lost or refused (the shop's or the warehouse's) retries the load with
    # backoff; dlt resumes from its cursor, so a retry loads only what is still missing.
    with retry_transient(context):
        yield from load_shop_tables(context, shop_db, warehouse, resync=config.resync)
