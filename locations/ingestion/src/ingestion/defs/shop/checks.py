"""Checks on the shop tables in raw: reconciliation of content with the source. Their freshness
is a FreshnessPolicy on the assets (defs/shop/assets.py)."""

from collections.abc import Iterable

import dagster as dg

from ingestion.defs.resources import PostgresResource
from ingestion.defs.shop.assets import SHOP_TABLES

RECONCILIATION_CHECK = "matches_source_up_to_cursor"


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            RECONCILIATION_CHECK,
            asset=dg.AssetKey(["raw", table]),
            description=(
                "Compares content, not counts: every source row with updated_at up to the "
                "newest one loaded has a row in raw with the same key and the same value in "
                "every column, raw has no row the source no longer has, and raw has every "
                "source column. Metadata names the differing keys (a sample) and columns."
            ),
        )
        for table in SHOP_TABLES
    ],
    can_subset=True,
)
def shop_tables_match_source(
    context: dg.AssetCheckExecutionContext,
    warehouse: PostgresResource,
    shop_db: PostgresResource,
) -> Iterable[dg.AssetCheckResult]:
    # The comparison lives with the load, which repairs what it finds; imported by the runs
    # that use it, as dlt (which that module imports) would double the code server's start.
    from ingestion.pipelines.shop_drift import compare_with_source, comparison_connections

    with comparison_connections(shop_db, warehouse) as (source_conn, raw_conn):
        for check_key in context.selected_asset_check_keys:
            drift = compare_with_source(source_conn, raw_conn, check_key.asset_key.path[-1])
            yield dg.AssetCheckResult(
                asset_key=check_key.asset_key,
                check_name=check_key.name,
                passed=drift.matches,
                description=drift.summary(),
                metadata=drift.metadata(),
            )
