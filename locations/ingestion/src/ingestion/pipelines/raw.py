"""The dlt pipelines that write into the warehouse schema `raw`."""

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import dlt

from ingestion.defs.resources import PostgresResource

RAW_DATASET = "raw"

# dlt's Postgres destination has two COPY-based loaders: "csv" (COPY ... FROM STDIN through
# psycopg2) and "parquet" (binary COPY through ADBC). Arrow batches are written to either
# without a Python loop over rows. CSV needs no extra driver; docs/benchmarks.md compares the
# loaders against a plain COPY between the databases.
LOADER_FILE_FORMAT = "csv"
# The load files live in the run's own temporary folder and are read once, by the same process,
# so gzip buys nothing: it saves temporary disk only. Compressing and decompressing them was the
# largest part of a full load (docs/benchmarks.md: 1M orders took twice as long with it).
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
