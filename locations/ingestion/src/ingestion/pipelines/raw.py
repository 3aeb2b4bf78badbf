"""The dlt pipelines that write into the warehouse schema `raw`."""

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import dlt

from ingestion.defs.resources import PostgresResource

RAW_DATASET = "raw"

# dlt's Postgres destination has two COPY-based loaders: "csv" (text COPY through psycopg2) and
# "parquet" (binary COPY through ADBC, adbc-driver-postgresql). Neither loops over rows in Python.
#
# Bulk tables (the shop) load as Parquet: the Arrow tables ConnectorX reads are written once at
# extract and loaded as they are, with no CSV rewrite in normalize and no text parsing on the
# server; at 1M orders that halved the full load (docs/benchmarks.md).
BULK_FILE_FORMAT = "parquet"
# Payment files load as CSV: a day's load is thousands of rows, and it is often empty for one of
# its tables (a clean day has no rejects). dlt 1.31's ADBC job fails on a Parquet file without
# rows ("Must pass schema, or at least one RecordBatch"); the CSV loader takes an empty file.
# Revisit when dlt loads empty Parquet files.
SMALL_FILE_FORMAT = "csv"
# The load files live in the run's own temporary folder and are read once, by the same process,
# so gzip buys nothing: it saves temporary disk only. Compressing and decompressing them was the
# largest part of a full load with the CSV loader (docs/benchmarks.md). Parquet files are
# unaffected (they carry their own column compression).
UNCOMPRESSED_FILES = {"normalize.data_writer.disable_compression": True}


@contextmanager
def raw_pipeline(name: str, warehouse: PostgresResource) -> Iterator[dlt.Pipeline]:
    """A pipeline into `raw`, in a working folder of its own for this run.

    dlt keeps incremental cursors in the destination (`raw._dlt_pipeline_state`) and restores
    them from there, so nothing local must survive a run, and pods with a read-only root
    filesystem only need a writable /tmp. Merges go through the staging dataset `raw_staging`,
    which the bootstrap creates for the ingestion role.
    """
    with (
        tempfile.TemporaryDirectory(prefix="dlt-") as folder,
        dlt.config.values(UNCOMPRESSED_FILES),
    ):
        yield dlt.pipeline(
            pipeline_name=name,
            destination=dlt.destinations.postgres(credentials=warehouse.dlt_fields()),
            dataset_name=RAW_DATASET,
            pipelines_dir=folder,
            # Progress through dlt's logger twice a minute: long loads show they are alive
            # without flooding the run's stdout.
            progress=dlt.progress.log(log_period=30, logger="dlt_logger", dump_system_stats=False),
        )
