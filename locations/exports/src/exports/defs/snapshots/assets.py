"""Parquet snapshots of the marts in the export area, replaced on every materialisation."""

from dataclasses import dataclass

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from psycopg2 import sql

from exports.defs.resources import ExportStore, Warehouse
from exports.defs.snapshots.arrow import query_batches, write_parquet
from exports.storage import ExportArea

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


def _write_whole(snapshot: Snapshot, conn, area: ExportArea) -> tuple[pa.Schema, int, list[str]]:
    schema, batches = query_batches(conn, snapshot.query())
    with area.atomic_write(snapshot.file()) as out:
        rows = write_parquet(out, schema, batches)
    return schema, rows, [snapshot.file()]


def _write_by_day(snapshot: Snapshot, conn, area: ExportArea) -> tuple[pa.Schema, int, list[str]]:
    schema, batches = query_batches(conn, snapshot.query())
    table = pa.Table.from_batches(list(batches), schema=schema)
    days = table.column(snapshot.by_day)
    written = []
    for day in days.unique().to_pylist():
        with area.atomic_write(snapshot.file(day)) as out:
            write_parquet(out, schema, iter(table.filter(pc.equal(days, day)).to_batches()))
        written.append(snapshot.file(day))
    # A day that left the mart leaves the export too, but only after every current day is in
    # place: a reader never finds fewer days than before in the middle of a refresh.
    for stale in set(area.list(snapshot.folder)) - set(written):
        area.remove(stale)
    return schema, table.num_rows, written


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
        automation_condition=dg.AutomationCondition.eager(),
    )
    def _snapshot(
        context: dg.AssetExecutionContext, warehouse: Warehouse, export_store: ExportStore
    ) -> dg.MaterializeResult:
        area = export_store.area()
        write = _write_by_day if snapshot.by_day else _write_whole
        with warehouse.connect() as conn:
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
        area = export_store.area()
        files = [f for f in area.list(snapshot.folder) if f.endswith(".parquet")]
        exported = 0
        for path in files:
            with area.open(path) as handle:
                exported += pq.read_metadata(handle).num_rows
        with warehouse.connect() as conn, conn.cursor() as cur:
            cur.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("marts", snapshot.mart))
            )
            (in_mart,) = cur.fetchone()
        return dg.AssetCheckResult(
            passed=exported == in_mart,
            metadata={"exported_rows": exported, "mart_rows": in_mart, "files": len(files)},
        )

    return _rows


snapshot_assets = [snapshot_asset(s) for s in SNAPSHOTS]
snapshot_checks = [snapshot_rows_check(s) for s in SNAPSHOTS]
