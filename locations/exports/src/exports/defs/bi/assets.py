"""The BI schema: stable tables for dashboards, refreshed from the marts in one transaction.

Tables, not views: dbt rebuilds a mart by swapping tables, which would drop dependent views,
and a dashboard must not break when the analytics team changes a model. The columns below are
the contract with BI users; changing one is a deliberate migration here. Refreshes delete and
insert in one transaction, so readers see the previous rows until the new ones commit (no lock
that blocks them, no moment with an empty table), and grants and table identity stay.
Customer names and e-mail addresses stay out: BI needs figures, not personal data.
"""

from dataclasses import dataclass

import dagster as dg
from psycopg2 import sql

from exports.defs.automation import EXPORTS_AUTOMATION
from exports.defs.checks import EXPORTS_FRESHNESS
from exports.defs.resources import Warehouse
from platform_ops.recovery import retry_transient

ROWS_CHECK = "rows_equal_mart"


@dataclass(frozen=True)
class BiTable:
    name: str
    description: str
    marts: tuple[str, ...]
    columns: str
    select: str

    @property
    def key(self) -> dg.AssetKey:
        return dg.AssetKey(["bi", self.name])


BI_TABLES = [
    BiTable(
        name="daily_revenue",
        description="Revenue, orders and payments per UTC day, for dashboards.",
        marts=("daily_revenue",),
        columns="""
            day date PRIMARY KEY,
            orders bigint NOT NULL,
            customers bigint NOT NULL,
            items bigint NOT NULL,
            revenue numeric(14, 2) NOT NULL,
            cancelled_orders bigint NOT NULL,
            payments bigint NOT NULL,
            payments_received numeric(14, 2) NOT NULL
        """,
        select="""
            SELECT day, orders, customers, items, revenue, cancelled_orders, payments,
                   payments_received
            FROM marts.daily_revenue
        """,
    ),
    BiTable(
        name="customer_value",
        description="Orders and lifetime value per customer and country, without personal data.",
        marts=("dim_customers", "customer_lifetime_value"),
        columns="""
            customer_id bigint PRIMARY KEY,
            country text,
            first_order_date date,
            last_order_date date,
            orders bigint NOT NULL,
            lifetime_value numeric(14, 2) NOT NULL,
            average_order_value numeric(14, 2)
        """,
        select="""
            SELECT d.customer_id, d.country, d.first_order_date, d.last_order_date, d.orders,
                   coalesce(v.lifetime_value, 0), v.average_order_value
            FROM marts.dim_customers d
            LEFT JOIN marts.customer_lifetime_value v USING (customer_id)
        """,
    ),
]


def _count(cur, query: sql.Composable) -> int:
    cur.execute(sql.SQL("SELECT count(*) FROM ({}) AS q").format(query))
    return cur.fetchone()[0]


def bi_table_asset(table: BiTable) -> dg.AssetsDefinition:
    target = sql.Identifier("bi", table.name)

    @dg.asset(
        key=table.key,
        deps=[dg.AssetKey(["marts", mart]) for mart in table.marts],
        description=table.description,
        group_name="bi",
        kinds={"postgres"},
        owners=["team:bi"],
        tags={"layer": "exports"},
        automation_condition=EXPORTS_AUTOMATION,
        freshness_policy=EXPORTS_FRESHNESS,
    )
    def _refresh(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
        with retry_transient(context), warehouse.connect() as conn, conn.cursor() as cur:
            cur.execute(
                sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(target, sql.SQL(table.columns))
            )
            cur.execute(sql.SQL("DELETE FROM {}").format(target))
            replaced = cur.rowcount
            cur.execute(sql.SQL("INSERT INTO {} {}").format(target, sql.SQL(table.select)))
            rows = cur.rowcount
            conn.commit()
        context.log.info(f"bi.{table.name}: {rows} rows (replaced {replaced})")
        return dg.MaterializeResult(
            metadata={"dagster/row_count": rows, "table": f"bi.{table.name}"}
        )

    return _refresh


def bi_rows_check(table: BiTable) -> dg.AssetChecksDefinition:
    target = sql.Identifier("bi", table.name)

    @dg.asset_check(
        asset=table.key,
        name=ROWS_CHECK,
        description=f"bi.{table.name} has exactly the rows its marts give.",
    )
    def _rows(warehouse: Warehouse) -> dg.AssetCheckResult:
        with warehouse.connect() as conn, conn.cursor() as cur:
            in_bi = _count(cur, sql.SQL("SELECT * FROM {}").format(target))
            from_marts = _count(cur, sql.SQL(table.select))
        return dg.AssetCheckResult(
            passed=in_bi == from_marts, metadata={"bi_rows": in_bi, "mart_rows": from_marts}
        )

    return _rows


bi_assets = [bi_table_asset(t) for t in BI_TABLES]
bi_checks = [bi_rows_check(t) for t in BI_TABLES]
