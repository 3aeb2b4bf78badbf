"""Checks on the shop tables in raw: reconciliation with the source, and freshness."""

from collections.abc import Iterable
from datetime import timedelta

import dagster as dg
from psycopg2 import sql

from ingestion.defs.resources import PostgresResource
from ingestion.defs.shop.assets import CURSOR_COLUMN, SHOP_TABLES, shop_tables

RECONCILIATION_CHECK = "matches_source_up_to_cursor"


def _count_up_to(cur, schema: str | None, table: str, cursor_value) -> int:
    name = sql.Identifier(schema, table) if schema else sql.Identifier(table)
    cur.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE {} <= %s").format(
            name, sql.Identifier(CURSOR_COLUMN)
        ),
        (cursor_value,),
    )
    return cur.fetchone()[0]


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            RECONCILIATION_CHECK,
            asset=dg.AssetKey(["raw", table]),
            description=(
                "Every source row up to the newest loaded updated_at is in raw, exactly once."
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
    with warehouse.connect() as raw_conn, shop_db.connect() as source_conn:
        raw, source = raw_conn.cursor(), source_conn.cursor()
        for check_key in context.selected_asset_check_keys:
            table = check_key.asset_key.path[-1]
            raw.execute(
                sql.SQL("SELECT max({}) FROM {}").format(
                    sql.Identifier(CURSOR_COLUMN), sql.Identifier("raw", table)
                )
            )
            (cursor_value,) = raw.fetchone()
            raw_rows = _count_up_to(raw, "raw", table, cursor_value) if cursor_value else 0
            source_rows = _count_up_to(source, None, table, cursor_value) if cursor_value else 0
            yield dg.AssetCheckResult(
                asset_key=check_key.asset_key,
                check_name=check_key.name,
                passed=cursor_value is not None and raw_rows == source_rows,
                metadata={
                    "raw_rows": raw_rows,
                    "source_rows_up_to_cursor": source_rows,
                    "cursor": str(cursor_value),
                },
            )


# Loaded hourly: two hours without a load means something is wrong.
shop_freshness_checks = dg.build_last_update_freshness_checks(
    assets=[shop_tables], lower_bound_delta=timedelta(hours=2)
)

shop_freshness_sensor = dg.build_sensor_for_freshness_checks(
    freshness_checks=shop_freshness_checks,
    name="shop_tables_freshness",
    default_status=dg.DefaultSensorStatus.RUNNING,
)
