"""The shop's operational database in raw: a dlt source incremental on updated_at and merged on
primary keys, and the repair of what the comparison with the source finds
(ingestion.pipelines.shop_drift).

docs/shop-reconciliation.md explains the design and what it costs.
"""

from collections.abc import Iterator
from datetime import datetime, timedelta

import dagster as dg
import dlt
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from dagster_dlt import DagsterDltResource
from dlt.extract.source import DltSource
from dlt.sources.credentials import ConnectionStringCredentials
from dlt.sources.sql_database import sql_database
from psycopg2 import sql

from ingestion.defs.resources import PostgresResource
from ingestion.defs.shop.assets import CURSOR_COLUMN, SHOP_TABLES
from ingestion.pipelines.raw import BULK_FILE_FORMAT, RAW_DATASET, raw_pipeline
from ingestion.pipelines.shop_columns import (
    TableColumns,
    raw_name,
    read_columns,
    resync_hint,
    type_failure,
)
from ingestion.pipelines.shop_drift import (
    BUCKET_DIGITS,
    TableDrift,
    compare_with_source,
    comparison_connections,
)

PIPELINE_NAME = "shop_to_raw"
# Each incremental read starts this long before the newest updated_at already loaded, so a row
# committed late with a slightly older updated_at (a transaction that stamped it when it began)
# arrives with the next read. The price: every run re-reads the rows of this window. Rows
# further behind are found and repaired by the comparison below.
LOOKBACK = timedelta(minutes=15)


def _arrow_step(plan: TableColumns):
    """A dlt map over the extracted Arrow tables, as raw takes them: each column gets the type
    raw's column has (failing the run, before anything loads, on a value the cast would change),
    and every column but the key accepts NULL, as `_nullable_columns` declares them to dlt."""
    table, casts = plan.table, plan.casts()

    def to_raw(item):
        if not isinstance(item, pa.Table):
            return item
        if item.num_rows == 0:
            # A read can come back empty (the rows of the lookback window deleted); dlt 1.31's
            # ADBC job fails on a Parquet file without rows (pipelines/raw.py), so none is written.
            return None
        for name, (target, source, raw) in casts.items():
            index = item.schema.get_field_index(name)
            if index < 0 or item.column(index).type == target:
                continue
            try:
                values = pc.cast(item.column(index), target, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
                raise dg.Failure(
                    description=(
                        f"raw.{table}.{raw_name(name)} is {raw} and the shop database's "
                        f"{table}.{name} is {source}: a source value does not fit raw's column "
                        f"({error}), so nothing was loaded.\n{resync_hint(table)}"
                    ),
                    metadata={"table": table, "column": name},
                ) from error
            item = item.set_column(index, item.field(index).with_type(target), values)
        nullable = pa.schema(
            [f if f.name == plan.key else f.with_nullable(True) for f in item.schema],
            metadata=item.schema.metadata,
        )
        return item if nullable.equals(item.schema) else item.cast(nullable)

    return to_raw


# -- the dlt sources ---------------------------------------------------------------------------
def _nullable_columns(table: sa.Table) -> None:
    """Raw's columns other than the key accept NULL: a column the source adds as NOT NULL with a
    default is then added to a raw table whose rows do not have it yet (they get it from the
    repair), instead of failing the load."""
    for column in table.columns:
        if not column.primary_key:
            column.nullable = True


def _sql_tables(shop_db: PostgresResource, tables: list[str], query_adapter=None) -> DltSource:
    """Shop tables extracted with ConnectorX into Arrow (no Python row loop)."""
    # SQLAlchemy needs the psycopg2 driver named (2.x picks another default); dlt hands
    # ConnectorX the same connection without the driver suffix.
    credentials = ConnectionStringCredentials(
        {**shop_db.dlt_fields(), "drivername": "postgresql+psycopg2"}
    )
    return sql_database(
        credentials=credentials,
        table_names=tables,
        backend="connectorx",
        defer_table_reflect=True,
        table_adapter_callback=_nullable_columns,
        query_adapter_callback=query_adapter,
    )


def _merge_hints(source: DltSource, plans: dict[str, TableColumns], incremental: bool) -> None:
    for table, plan in plans.items():
        resource = source.resources[table]
        resource.apply_hints(
            primary_key=plan.key,
            # One read of a table yields each key once (the lookback re-reads rows, but in the
            # same single read), so the merge can skip deduplicating the staging rows: a sort of
            # every loaded row, a large share of the merge on a full load (docs/benchmarks.md).
            # dlt's own boundary deduplication is off with a lag; the merge replaces rows on
            # their key either way.
            write_disposition={
                "disposition": "merge",
                "strategy": "delete-insert",
                "deduplicated": True,
            },
            incremental=(
                dlt.sources.incremental[datetime](CURSOR_COLUMN, lag=LOOKBACK.total_seconds())
                if incremental
                else None
            ),
        )
        resource.add_map(_arrow_step(plan))


def shop_source(shop_db: PostgresResource, plans: dict[str, TableColumns]) -> DltSource:
    """The planned tables, each read from LOOKBACK before its last loaded updated_at on; dlt
    merges the rows on the primary key (delete-insert through staging), so re-running never
    duplicates a row and an updated source row replaces its earlier version."""
    source = _sql_tables(shop_db, list(plans))
    _merge_hints(source, plans, incremental=True)
    return source


def repair_source(
    shop_db: PostgresResource, plans: dict[str, TableColumns], drifts: dict[str, TableDrift]
) -> DltSource:
    """The rows of the buckets where raw lacks a source row or holds it otherwise, up to raw's
    cursor, whatever their updated_at: merged like any load, outside the incremental cursor."""

    def in_repair_buckets(query, table: sa.Table):
        drift = drifts[table.name]
        key = table.c[SHOP_TABLES[table.name][0]]
        bucket = sa.func.left(
            sa.func.md5(sa.func.convert_to(sa.cast(key, sa.Text), "UTF8")), BUCKET_DIGITS
        )
        return query.where(
            bucket.in_(sorted(drift.repair_buckets)), table.c[CURSOR_COLUMN] <= drift.cursor
        )

    source = _sql_tables(shop_db, list(plans), query_adapter=in_repair_buckets)
    _merge_hints(source, plans, incremental=False)
    return source


# -- the load ----------------------------------------------------------------------------------
def _run(
    context: dg.AssetExecutionContext,
    pipeline: dlt.Pipeline,
    source: DltSource,
    **kwargs,
) -> dict[str, dict]:
    """One dlt run; dagster-dlt's metadata (rows_loaded, jobs, columns) per table."""
    try:
        load_info = pipeline.run(source, loader_file_format=BULK_FILE_FORMAT, **kwargs)
    except Exception as error:
        # A failure raised inside an extract step (a value raw cannot take) says what to do;
        # dlt wraps it in its own exceptions.
        cause = error
        while cause is not None and not isinstance(cause, dg.Failure):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        raise cause from error
    load_info.raise_on_failed_jobs()
    metadata = DagsterDltResource()
    return {
        table: dict(metadata.extract_resource_metadata(context, resource, load_info, pipeline))
        for table, resource in source.selected_resources.items()
    }


def load_shop_tables(
    context: dg.AssetExecutionContext,
    shop_db: PostgresResource,
    warehouse: PostgresResource,
    resync: bool = False,
) -> Iterator[dg.MaterializeResult]:
    """Load the selected tables, in three steps: check that raw's columns can take the source's
    column types (a dg.Failure before anything loads if not); read each table incrementally, or
    in full into a re-created table when raw lacks it or `resync` asks for it; compare raw with
    the source and re-load the rows that differ. One materialisation per table, with dlt's
    metadata, the rows repaired and the row count."""
    tables = [t for t in SHOP_TABLES if dg.AssetKey(["raw", t]) in context.selected_asset_keys]
    with comparison_connections(shop_db, warehouse) as (source_conn, raw_conn):
        plans = {table: read_columns(source_conn, raw_conn, table) for table in tables}
    # A re-created table takes the source's types: nothing in raw to check them against.
    fresh = {t: TableColumns(t, p.source, {}) for t, p in plans.items() if resync or not p.raw}
    for plan in plans.values():
        if plan.table not in fresh and (failure := type_failure(plan)):
            raise failure
    incremental = {t: p for t, p in plans.items() if t not in fresh}

    metadata: dict[str, dict] = {}
    with raw_pipeline(PIPELINE_NAME, warehouse) as pipeline:
        if fresh:
            # drop_resources: dlt drops the tables (and their staging tables), forgets their
            # schema and cursor, and loads them in full.
            metadata |= _run(
                context, pipeline, shop_source(shop_db, fresh), refresh="drop_resources"
            )
        if incremental:
            metadata |= _run(context, pipeline, shop_source(shop_db, incremental))
        repaired = _repair(context, pipeline, shop_db, warehouse, tables)

    with warehouse.connect() as conn, conn.cursor() as cur:
        for table in tables:
            cur.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(RAW_DATASET, table))
            )
            yield dg.MaterializeResult(
                asset_key=dg.AssetKey(["raw", table]),
                metadata={
                    **metadata[table],
                    **repaired.get(table, {"rows_repaired": 0}),
                    "dagster/row_count": cur.fetchone()[0],
                },
            )


def _repair(
    context: dg.AssetExecutionContext,
    pipeline: dlt.Pipeline,
    shop_db: PostgresResource,
    warehouse: PostgresResource,
    tables: list[str],
) -> dict[str, dict]:
    """Compare the loaded tables with the source and re-load the buckets whose rows differ or
    are missing in raw: a column added with a default, a row updated with an older updated_at,
    a row lost in raw. Every load pays for the comparison (a scan of each table on both
    servers); the re-load reads only the differing buckets' rows."""
    with comparison_connections(shop_db, warehouse) as (source_conn, raw_conn):
        drifts = {table: compare_with_source(source_conn, raw_conn, table) for table in tables}
        plans = {
            table: read_columns(source_conn, raw_conn, table)
            for table, drift in drifts.items()
            if drift.repair_buckets
        }
    for drift in drifts.values():
        if drift.keys_missing_in_source.count:
            context.log.warning(
                f"raw.{drift.table} keeps {drift.keys_missing_in_source.count} rows the source "
                f"no longer has (e.g. keys {', '.join(drift.keys_missing_in_source.sample)}); "
                "deletions are not repaired (docs/shop-reconciliation.md)."
            )
    if not plans:
        return {}
    for table in plans:
        context.log.info(f"Repairing: {drifts[table].summary()}")
    loaded = _run(context, pipeline, repair_source(shop_db, plans, drifts))
    return {
        table: {
            "rows_repaired": loaded[table].get("rows_loaded", 0),
            "sample_repaired_keys": dg.MetadataValue.json(
                drifts[table].rows_differing.sample + drifts[table].keys_missing_in_raw.sample
            ),
        }
        for table in plans
    }
