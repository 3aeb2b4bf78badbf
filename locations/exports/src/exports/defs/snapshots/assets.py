"""Parquet snapshots of the marts in the export area, replaced on every materialisation."""

from dataclasses import dataclass

import dagster as dg
from psycopg2 import sql

from exports.defs.automation import EXPORTS_AUTOMATION
from exports.defs.checks import EXPORTS_FRESHNESS
from exports.defs.resources import ExportStore, Warehouse
from platform_ops.recovery import retry_transient

ROWS_CHECK = "rows_equal_mart"


@dataclass(frozen=True)
class Snapshot:
    mart: str
    order_by: str
    # Marts with one row set per day are written one file per day (Hive layout, `day=...`), so
    # readers prune by day and a day's file is replaced on its own.
    by_day: str | None = None

    @property
    def key(self) -> dg.AssetKey:
        return dg.AssetKey(["snapshots", self.mart])

    @property
    def folder(self) -> str:
        return f"snapshots/{self.mart}"

    def file(self, day=None) -> str:
        if self.by_day:
            return f"{self.folder}/{self.by_day}={day.isoformat()}/{self.mart}.parquet"
        return f"{self.folder}/{self.mart}.parquet"

    def query(self) -> sql.Composed:
        return sql.SQL("SELECT * FROM {} ORDER BY {}").format(
            sql.Identifier("marts", self.mart), sql.Identifier(self.order_by)
        )


SNAPSHOTS = [
    Snapshot("fct_orders", order_by="order_id"),
    Snapshot("dim_customers", order_by="customer_id"),
    Snapshot("customer_lifetime_value", order_by="customer_id"),
    Snapshot("daily_revenue", order_by="day", by_day="day"),
]


def snapshot_asset(snapshot: Snapshot) -> dg.AssetsDefinition:
    layout = ", one file per day" if snapshot.by_day else ""

    @dg.asset(
        key=snapshot.key,
        deps=[dg.AssetKey(["marts", snapshot.mart])],
        description=f"Parquet snapshot of marts.{snapshot.mart}{layout}.",
        group_name="snapshots",
        kinds={"parquet"},
        owners=["team:bi"],
        tags={"layer": "exports"},
        automation_condition=EXPORTS_AUTOMATION,
        freshness_policy=EXPORTS_FRESHNESS,
    )
    def _snapshot(
        context: dg.AssetExecutionContext, warehouse: Warehouse, export_store: ExportStore
    ) -> dg.MaterializeResult:
        from exports.parquet import write_by_day, write_whole  # at run time: see exports/parquet.py

        area = export_store.area()
        write = write_by_day if snapshot.by_day else write_whole
        with retry_transient(context), warehouse.connect() as conn:
            schema, rows, files = write(snapshot, conn, area)
        context.log.info(f"marts.{snapshot.mart}: {rows} rows in {len(files)} file(s)")
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": rows,
                "dagster/column_schema": dg.TableSchema(
                    columns=[dg.TableColumn(f.name, str(f.type)) for f in schema]
                ),
                "uri": dg.MetadataValue.path(area.uri(snapshot.folder)),
                "files": len(files),
            }
        )

    return _snapshot


def snapshot_rows_check(snapshot: Snapshot) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=snapshot.key,
        name=ROWS_CHECK,
        description=f"The snapshot's files hold as many rows as marts.{snapshot.mart}.",
    )
    def _rows(warehouse: Warehouse, export_store: ExportStore) -> dg.AssetCheckResult:
        from exports.parquet import rows_in_files  # at run time: see exports/parquet.py

        exported, files = rows_in_files(export_store.area(), snapshot.folder)
        with warehouse.connect() as conn, conn.cursor() as cur:
            cur.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("marts", snapshot.mart))
            )
            (in_mart,) = cur.fetchone()
        return dg.AssetCheckResult(
            passed=exported == in_mart,
            metadata={"exported_rows": exported, "mart_rows": in_mart, "files": files},
        )

    return _rows


snapshot_assets = [snapshot_asset(s) for s in SNAPSHOTS]
snapshot_checks = [snapshot_rows_check(s) for s in SNAPSHOTS]
