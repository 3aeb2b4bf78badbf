"""Snapshot files: a query result streamed from PostgreSQL into Parquet with types kept
(numeric stays decimal, timestamptz stays a UTC timestamp), in bounded memory, and written to
the export area so that readers never see a partial file.

Outside `defs/` and imported by the snapshot assets and checks when they run: the defs loader
imports every module under `defs/`, and pyarrow (with numpy) has no part in serving
definitions (docs/benchmarks.md, code-location start).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from exports.defs.snapshots.assets import Snapshot
    from exports.storage import ExportArea

BATCH_ROWS = 50_000

# type OIDs from pg_type
_ARROW_TYPES = {
    16: pa.bool_(),
    20: pa.int64(),
    21: pa.int16(),
    23: pa.int32(),
    25: pa.string(),
    700: pa.float32(),
    701: pa.float64(),
    1042: pa.string(),
    1043: pa.string(),
    1082: pa.date32(),
    1114: pa.timestamp("us"),
    1184: pa.timestamp("us", tz="UTC"),
}
NUMERIC = 1700
# numeric without a declared precision (e.g. a sum): wide enough for any mart figure.
UNCONSTRAINED_NUMERIC = pa.decimal128(38, 10)


def arrow_schema(description) -> pa.Schema:
    fields = []
    for column in description:
        if column.type_code == NUMERIC:
            precision, scale = column.precision, column.scale
            if precision and 0 < precision <= 38:
                kind = pa.decimal128(precision, scale or 0)
            else:
                kind = UNCONSTRAINED_NUMERIC
        else:
            kind = _ARROW_TYPES.get(column.type_code)
            if kind is None:
                raise TypeError(
                    f"column {column.name}: PostgreSQL type oid {column.type_code} has no Parquet "
                    "mapping here; cast it in the mart or add the mapping"
                )
        fields.append(pa.field(column.name, kind))
    return pa.schema(fields)


def query_batches(conn, query, params=None) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """A server-side cursor over the query: the schema, then record batches of BATCH_ROWS."""
    cur = conn.cursor(name="export_snapshot")
    cur.itersize = BATCH_ROWS
    cur.execute(query, params)
    first = cur.fetchmany(BATCH_ROWS)
    schema = arrow_schema(cur.description)

    def batches() -> Iterator[pa.RecordBatch]:
        rows = first
        while rows:
            columns = list(zip(*rows, strict=True))
            yield pa.RecordBatch.from_arrays(
                [pa.array(col, type=f.type) for col, f in zip(columns, schema, strict=True)],
                schema=schema,
            )
            rows = cur.fetchmany(BATCH_ROWS)
        cur.close()

    return schema, batches()


def write_parquet(out, schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> int:
    """Write batches to an open binary file; returns the number of rows."""
    rows = 0
    with pq.ParquetWriter(out, schema, compression="zstd") as writer:
        for batch in batches:
            writer.write_batch(batch)
            rows += batch.num_rows
    return rows


def write_whole(snapshot: Snapshot, conn, area: ExportArea) -> tuple[pa.Schema, int, list[str]]:
    """The mart in one file."""
    schema, batches = query_batches(conn, snapshot.query())
    with area.atomic_write(snapshot.file()) as out:
        rows = write_parquet(out, schema, batches)
    return schema, rows, [snapshot.file()]


def write_by_day(snapshot: Snapshot, conn, area: ExportArea) -> tuple[pa.Schema, int, list[str]]:
    """One file per day of the mart; days no longer in the mart are removed last."""
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


def rows_in_files(area: ExportArea, folder: str) -> tuple[int, int]:
    """Rows in the Parquet files under `folder` (read from their footers) and the file count."""
    files = [f for f in area.list(folder) if f.endswith(".parquet")]
    rows = 0
    for path in files:
        with area.open(path) as handle:
            rows += pq.read_metadata(handle).num_rows
    return rows, len(files)
