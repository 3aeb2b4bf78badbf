"""The shop's operational database as a dlt source: incremental on updated_at, merged on keys."""

from collections.abc import Iterator

import dagster as dg
import dlt
from dagster_dlt import DagsterDltResource, DagsterDltTranslator
from dagster_dlt.translator import DltResourceTranslatorData
from dlt.extract.source import DltSource
from dlt.sources.credentials import ConnectionStringCredentials
from dlt.sources.sql_database import sql_database
from psycopg2 import sql

from ingestion.defs.resources import PostgresResource
from ingestion.defs.shop.assets import CURSOR_COLUMN, SHOP_SPECS, SHOP_TABLES
from ingestion.pipelines.raw import BULK_FILE_FORMAT, raw_pipeline

PIPELINE_NAME = "shop_to_raw"


class ShopTranslator(DagsterDltTranslator):
    """Each dlt resource is the asset declared for its table in defs/shop/assets.py."""

    def get_asset_spec(self, data: DltResourceTranslatorData) -> dg.AssetSpec:
        return SHOP_SPECS[data.resource.name]


def shop_source(shop_db: PostgresResource) -> DltSource:
    """The four shop tables, extracted with ConnectorX into Arrow (no Python row loop).

    Each table loads incrementally: only rows whose updated_at is at or after the last loaded
    value are read, and dlt merges them on the primary key (delete-insert through staging), so
    re-running never duplicates a row and an updated source row replaces its earlier version.
    """
    # SQLAlchemy needs the psycopg2 driver named (2.x picks another default); dlt hands
    # ConnectorX the same connection without the driver suffix.
    credentials = ConnectionStringCredentials(
        {**shop_db.dlt_fields(), "drivername": "postgresql+psycopg2"}
    )
    source = sql_database(
        credentials=credentials,
        table_names=list(SHOP_TABLES),
        backend="connectorx",
        defer_table_reflect=True,
    )
    for table, (key, _) in SHOP_TABLES.items():
        source.resources[table].apply_hints(
            primary_key=key,
            # One read of a table with this primary key yields each key once (dlt's incremental
            # drops the rows it already loaded at the cursor value), so the merge can skip
            # deduplicating the staging rows: a sort of every loaded row, a large share of the
            # merge on a full load (docs/benchmarks.md).
            write_disposition={
                "disposition": "merge",
                "strategy": "delete-insert",
                "deduplicated": True,
            },
            incremental=dlt.sources.incremental(CURSOR_COLUMN),
        )
    return source


def load_shop_tables(
    context: dg.AssetExecutionContext, shop_db: PostgresResource, warehouse: PostgresResource
) -> Iterator[dg.MaterializeResult]:
    """Run the pipeline for the selected tables; one materialisation per table, with dlt's
    load metadata and the table's row count after the load."""
    with raw_pipeline(PIPELINE_NAME, warehouse) as pipeline:
        results = list(
            DagsterDltResource().run(
                context=context,
                dlt_source=shop_source(shop_db),
                dlt_pipeline=pipeline,
                dagster_dlt_translator=ShopTranslator(),
                loader_file_format=BULK_FILE_FORMAT,
            )
        )
    # Counted here rather than with dagster-dlt's fetch_row_count(), which fails on a run that
    # loaded nothing new: the normal case for an incremental load.
    with warehouse.connect() as conn, conn.cursor() as cur:
        for result in results:
            cur.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*result.asset_key.path))
            )
            yield dg.MaterializeResult(
                asset_key=result.asset_key,
                metadata={**(result.metadata or {}), "dagster/row_count": cur.fetchone()[0]},
            )
