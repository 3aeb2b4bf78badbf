"""Comparing raw's copy of a shop table with the source by content: bucket digests on both
servers, then the rows of the differing buckets only. The check reports what it finds; the
load repairs it (ingestion.pipelines.shop).

docs/shop-reconciliation.md explains the design and what it costs.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

import dagster as dg
import psycopg2
from psycopg2 import sql

from ingestion.defs.resources import PostgresResource
from ingestion.defs.shop.assets import CURSOR_COLUMN
from ingestion.pipelines.raw import RAW_DATASET
from ingestion.pipelines.shop_columns import Column, raw_name, read_columns

# Rows are compared in 16**3 = 4096 buckets, a row's bucket being the first hex digits of its
# key's md5: the same on both servers, and even for any key distribution. Two digests per
# bucket travel, not rows; rows are fetched only for the buckets that differ.
BUCKET_DIGITS = 3
SAMPLE_SIZE = 10


# -- comparing content -------------------------------------------------------------------------
@contextmanager
def comparison_connections(
    shop_db: PostgresResource, warehouse: PostgresResource
) -> Iterator[tuple[psycopg2.extensions.connection, psycopg2.extensions.connection]]:
    """Read-only connections to the shop database and the warehouse, one snapshot each, with the
    same session settings on both so that equal values render alike."""
    with shop_db.connect() as source, warehouse.connect() as raw:
        for conn in (source, raw):
            conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
            with conn.cursor() as cur:
                cur.execute(
                    "SET TIME ZONE 'UTC'; SET DateStyle TO ISO, YMD; "
                    "SET IntervalStyle TO postgres; SET extra_float_digits TO 1"
                )
            # Committed so that the settings hold for the session, then a new snapshot starts.
            conn.commit()
        yield source, raw


def _canonical(column: Column | None, name: sql.Identifier) -> sql.Composable:
    """A column's value as text that is the same on both servers when the values are equal,
    whatever type of the column's family each side has (numeric(10,2) or numeric(38,10), text or
    varchar, jsonb or json) and whatever the session's settings; SQL NULL for NULL."""
    if column is None:
        return sql.SQL("NULL::text")
    family = column.family
    if family in ("integer", "numeric"):
        # Trailing zeros of the scale dropped (trim_scale() without requiring PostgreSQL 13).
        text = sql.SQL("{}::numeric::text").format(name)
        return sql.SQL(
            "CASE WHEN strpos({t}, '.') > 0 THEN rtrim(rtrim({t}, '0'), '.') ELSE {t} END"
        ).format(t=text)
    if family == "float":
        return sql.SQL("{}::float8::text").format(name)
    if family == "text":
        # concat() renders through the type's output function: char(n) keeps its padding, as
        # it has when it reaches raw; a cast to text would strip it on the source side only.
        return sql.SQL("concat({})").format(name)
    if family == "json":
        return sql.SQL("{}::jsonb::text").format(name)
    if family == "timestamp with time zone":
        return sql.SQL(
            "coalesce(to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
            "{c}::text)"
        ).format(c=name)
    if family == "timestamp without time zone":
        return sql.SQL(
            """coalesce(to_char({c}, 'YYYY-MM-DD"T"HH24:MI:SS.US'), {c}::text)"""
        ).format(c=name)
    if family == "date":
        return sql.SQL("coalesce(to_char({c}, 'YYYY-MM-DD'), {c}::text)").format(c=name)
    if family == "bytea":
        return sql.SQL("encode({}, 'hex')").format(name)
    return sql.SQL("{}::text").format(name)


def _row_text(columns: list[tuple[Column | None, sql.Identifier]]) -> sql.Composable:
    """One text per row: every column's canonical value quoted, so that neither a separator in
    a value nor NULL (unquoted) can make two different rows render alike."""
    return sql.SQL(" || ',' || ").join(
        sql.SQL("quote_nullable({})").format(_canonical(column, name)) for column, name in columns
    )


def _bucket(key: sql.Identifier) -> sql.Composable:
    return sql.SQL("left(md5(convert_to({}::text, 'UTF8')), {})").format(
        key, sql.Literal(BUCKET_DIGITS)
    )


@dataclass(frozen=True)
class _Side:
    """How one server's copy of a table is read for the comparison."""

    table: sql.Identifier
    key: sql.Identifier
    row: sql.Composable
    # Which rows take part: the source's up to raw's cursor, all of raw's. Values are literals,
    # not parameters: a % in a column's name must not read as a placeholder.
    in_window: sql.Composable

    def digests(self, conn) -> dict[str, tuple[int, int]]:
        """Bucket -> (rows, sum of a 60-bit integer from each row's md5): order-independent,
        and any change to any row changes its bucket's sum."""
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL(
                    "SELECT {bucket}, count(*), "
                    "sum(('x' || left(md5(convert_to({row}, 'UTF8')), 15))::bit(60)::bigint) "
                    "FROM {table} WHERE {in_window} GROUP BY 1"
                ).format(
                    bucket=_bucket(self.key),
                    row=self.row,
                    table=self.table,
                    in_window=self.in_window,
                )
            )
            return {bucket: (rows, int(total)) for bucket, rows, total in cur.fetchall()}

    def rows(self, conn, buckets: list[str]) -> Iterator[tuple]:
        """(key, bucket, row md5, in window) of every row in `buckets`, streamed in key order
        (bytewise, which is Python's order of the same strings)."""
        with conn.cursor(name="shop_reconciliation") as cur:
            cur.itersize = 10_000
            cur.execute(
                sql.SQL(
                    "SELECT {key}::text, {bucket}, md5(convert_to({row}, 'UTF8')), {in_window} "
                    "FROM {table} WHERE {bucket} = ANY({buckets}) "
                    'ORDER BY {key}::text COLLATE "C"'
                ).format(
                    key=self.key,
                    bucket=_bucket(self.key),
                    row=self.row,
                    in_window=self.in_window,
                    table=self.table,
                    buckets=sql.Literal(buckets),
                )
            )
            yield from cur


@dataclass
class Keys:
    """How many keys are of one kind of difference, and the first few of them."""

    count: int = 0
    sample: list[str] = field(default_factory=list)

    def add(self, key: str) -> None:
        self.count += 1
        if len(self.sample) < SAMPLE_SIZE:
            self.sample.append(key)


@dataclass
class TableDrift:
    """How raw's copy of a table differs from the source's rows up to raw's cursor."""

    table: str
    cursor: datetime | None
    source_rows: int = 0
    raw_rows: int = 0
    columns_missing_in_raw: list[str] = field(default_factory=list)
    columns_of_another_type: list[str] = field(default_factory=list)
    # Columns the source dropped: reported, not a difference (raw keeps what it had).
    columns_only_in_raw: list[str] = field(default_factory=list)
    differing_buckets: int = 0
    rows_differing: Keys = field(default_factory=Keys)
    keys_missing_in_raw: Keys = field(default_factory=Keys)
    keys_missing_in_source: Keys = field(default_factory=Keys)
    # Buckets holding a row the source has and raw lacks or holds otherwise.
    repair_buckets: set[str] = field(default_factory=set)

    @property
    def matches(self) -> bool:
        return self.cursor is not None and not (
            self.rows_differing.count
            or self.keys_missing_in_raw.count
            or self.keys_missing_in_source.count
            or self.columns_missing_in_raw
            or self.columns_of_another_type
        )

    def summary(self) -> str:
        if self.cursor is None:
            return f"raw.{self.table} holds no rows yet."
        if self.matches:
            return (
                f"raw.{self.table} matches the source: {self.source_rows} rows up to "
                f"{self.cursor.isoformat()}, every column."
            )
        parts = [
            f"{label}: {kind.count} (keys {', '.join(kind.sample)}"
            f"{', ...' if kind.count > len(kind.sample) else ''})"
            for kind, label in (
                (self.rows_differing, "rows differing"),
                (self.keys_missing_in_raw, "keys missing in raw"),
                (self.keys_missing_in_source, "keys no longer in the source"),
            )
            if kind.count
        ]
        if self.columns_missing_in_raw:
            parts.append(f"columns missing in raw: {', '.join(self.columns_missing_in_raw)}")
        if self.columns_of_another_type:
            parts.append(f"columns of another type: {', '.join(self.columns_of_another_type)}")
        return f"raw.{self.table} differs from the source: {'; '.join(parts)}."

    def metadata(self) -> dict:
        return {
            "cursor": str(self.cursor),
            "source_rows_up_to_cursor": self.source_rows,
            "raw_rows": self.raw_rows,
            "rows_differing": self.rows_differing.count,
            "keys_missing_in_raw": self.keys_missing_in_raw.count,
            "keys_missing_in_source": self.keys_missing_in_source.count,
            "sample_rows_differing": dg.MetadataValue.json(self.rows_differing.sample),
            "sample_keys_missing_in_raw": dg.MetadataValue.json(self.keys_missing_in_raw.sample),
            "sample_keys_missing_in_source": dg.MetadataValue.json(
                self.keys_missing_in_source.sample
            ),
            "columns_missing_in_raw": dg.MetadataValue.json(self.columns_missing_in_raw),
            "columns_of_another_type": dg.MetadataValue.json(self.columns_of_another_type),
            "columns_only_in_raw": dg.MetadataValue.json(self.columns_only_in_raw),
            "differing_buckets": self.differing_buckets,
        }


def compare_with_source(source_conn, raw_conn, table: str) -> TableDrift:
    """Compare every column of every source row up to raw's newest updated_at with raw's row of
    the same key: bucket digests on both servers, then the rows of the differing buckets only."""
    columns = read_columns(source_conn, raw_conn, table)
    if not columns.raw:
        return TableDrift(table, cursor=None)
    with raw_conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT max({}) FROM {}").format(
                sql.Identifier(raw_name(CURSOR_COLUMN)), sql.Identifier(RAW_DATASET, table)
            )
        )
        (cursor,) = cur.fetchone()
    drift = TableDrift(
        table,
        cursor,
        columns_missing_in_raw=columns.missing_in_raw(),
        columns_of_another_type=[
            f"{source.name}: {source} in the source, {raw} in raw"
            for source, raw in columns.of_another_type()
        ],
        columns_only_in_raw=columns.only_in_raw(),
    )
    if cursor is None:
        return drift
    # One column order on both sides, whatever order the columns were added in on each.
    ordered = sorted(columns.source.values(), key=lambda column: raw_name(column.name))
    source = _Side(
        table=sql.Identifier(table),
        key=sql.Identifier(columns.key),
        row=_row_text([(column, sql.Identifier(column.name)) for column in ordered]),
        in_window=sql.SQL("{} <= {}").format(sql.Identifier(CURSOR_COLUMN), sql.Literal(cursor)),
    )
    raw = _Side(
        table=sql.Identifier(RAW_DATASET, table),
        key=sql.Identifier(raw_name(columns.key)),
        row=_row_text(
            [(columns.in_raw(column), sql.Identifier(raw_name(column.name))) for column in ordered]
        ),
        in_window=sql.SQL("true"),
    )
    source_digests = source.digests(source_conn)
    raw_digests = raw.digests(raw_conn)
    drift.source_rows = sum(rows for rows, _ in source_digests.values())
    drift.raw_rows = sum(rows for rows, _ in raw_digests.values())
    differing = sorted(
        bucket
        for bucket in source_digests.keys() | raw_digests.keys()
        if source_digests.get(bucket) != raw_digests.get(bucket)
    )
    drift.differing_buckets = len(differing)
    if differing:
        _classify(
            drift,
            source.rows(source_conn, differing),
            raw.rows(raw_conn, differing),
        )
    return drift


def _classify(drift: TableDrift, source_rows: Iterator[tuple], raw_rows: Iterator[tuple]) -> None:
    """Walk both key-ordered streams together. A source row outside the window (changed after
    raw's cursor) is a change the next load brings, not a difference."""
    source, raw = next(source_rows, None), next(raw_rows, None)
    while source is not None or raw is not None:
        if raw is None or (source is not None and source[0] < raw[0]):
            key, bucket, _, in_window = source
            if in_window:
                drift.keys_missing_in_raw.add(key)
                drift.repair_buckets.add(bucket)
            source = next(source_rows, None)
        elif source is None or raw[0] < source[0]:
            drift.keys_missing_in_source.add(raw[0])
            raw = next(raw_rows, None)
        else:
            key, bucket, digest, in_window = source
            if in_window and digest != raw[2]:
                drift.rows_differing.add(key)
                drift.repair_buckets.add(bucket)
            source, raw = next(source_rows, None), next(raw_rows, None)
