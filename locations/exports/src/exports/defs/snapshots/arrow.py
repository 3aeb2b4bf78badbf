"""Stream a query result from PostgreSQL into Parquet with types kept (numeric stays decimal,
timestamptz stays a UTC timestamp), in bounded memory."""

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

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
