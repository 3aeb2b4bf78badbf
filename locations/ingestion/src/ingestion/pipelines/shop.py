"""The shop's operational database in raw: a dlt source incremental on updated_at and merged on
primary keys, a comparison of raw's content with the source's, and the repair built on it.

docs/shop-reconciliation.md explains the design and what it costs.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import dagster as dg
import dlt
import psycopg2
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from dagster_dlt import DagsterDltResource
from dlt.common.normalizers.naming.snake_case import NamingConvention
from dlt.extract.source import DltSource
from dlt.sources.credentials import ConnectionStringCredentials
from dlt.sources.sql_database import sql_database
from psycopg2 import sql

from ingestion.defs.resources import PostgresResource
from ingestion.defs.shop.assets import CURSOR_COLUMN, SHOP_TABLES
from ingestion.pipelines.raw import BULK_FILE_FORMAT, RAW_DATASET, raw_pipeline

PIPELINE_NAME = "shop_to_raw"

# Each incremental read starts this long before the newest updated_at already loaded, so a row
# committed late with a slightly older updated_at (a transaction that stamped it when it began)
# arrives with the next read. The price: every run re-reads the rows of this window. Rows
# further behind are found and repaired by the comparison below.
LOOKBACK = timedelta(minutes=15)

# Rows are compared in 16**3 = 4096 buckets, a row's bucket being the first hex digits of its
# key's md5: the same on both servers, and even for any key distribution. Two digests per
# bucket travel, not rows; rows are fetched only for the buckets that differ.
BUCKET_DIGITS = 3
SAMPLE_SIZE = 10
# Columns dlt adds to raw tables; they have no counterpart in the source.
DLT_COLUMNS = frozenset({"_dlt_load_id", "_dlt_id"})
# Run config that re-creates tables from the source; named in the failures that need it.
RESYNC_CONFIG = "ops: {shop_tables: {config: {resync: true}}}"

# Families of column types that take one another's values: within a family the source may
# change a column's type (integer -> bigint, varchar(20) -> text) and raw keeps its column, and
# dlt itself creates raw columns of another type of the family (uuid -> varchar,
# real -> double precision, jsonb -> json, numeric -> numeric(38,10)). Any other type is a
# family of its own.
TYPE_FAMILIES = {
    "smallint": "integer",
    "integer": "integer",
    "bigint": "integer",
    "numeric": "numeric",
    "real": "float",
    "double precision": "float",
    "text": "text",
    "character varying": "text",
    "character": "text",
    "uuid": "text",
    "json": "json",
    "jsonb": "json",
}
# The Arrow type a raw column takes in a binary COPY, which converts nothing: an int32 column
# does not load into bigint, nor a float32 one into double precision.
ARROW_TYPES = {
    "smallint": pa.int16(),
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "real": pa.float32(),
    "double precision": pa.float64(),
}

_naming = NamingConvention()


def raw_name(column: str) -> str:
    """The name dlt gives a source column in raw."""
    return _naming.normalize_identifier(column)


# -- columns on both sides ---------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    """A column as information_schema describes it."""

    name: str
    data_type: str
    length: int | None = None
    precision: int | None = None
    scale: int | None = None

    @property
    def family(self) -> str:
        return TYPE_FAMILIES.get(self.data_type, self.data_type)

    def holds(self, other: "Column") -> bool:
        """Whether this numeric column holds every value of `other` unchanged."""
        if self.precision is None:
            return True
        if other.family == "integer":
            digits = {"smallint": 5, "integer": 10}.get(other.data_type, 19)
            return self.precision - self.scale >= digits
        return (
            other.precision is not None
            and other.scale <= self.scale
            and other.precision - other.scale <= self.precision - self.scale
        )

    def arrow_type(self) -> pa.DataType | None:
        if self.data_type == "numeric" and self.precision is not None:
            decimal = pa.decimal128 if self.precision <= 38 else pa.decimal256
            return decimal(self.precision, self.scale)
        return ARROW_TYPES.get(self.data_type)

    def __str__(self) -> str:
        if self.data_type == "numeric" and self.precision is not None:
            return f"numeric({self.precision},{self.scale})"
        if self.length is not None:
            return f"{self.data_type}({self.length})"
        return self.data_type


@dataclass(frozen=True)
class TableColumns:
    """A shop table's columns in the source and in raw (none there when raw lacks the table)."""

    table: str
    source: dict[str, Column]
    raw: dict[str, Column]

    @property
    def key(self) -> str:
        return SHOP_TABLES[self.table][0]

    def in_raw(self, column: Column) -> Column | None:
        return self.raw.get(raw_name(column.name))

    def missing_in_raw(self) -> list[str]:
        return [name for name, column in self.source.items() if self.in_raw(column) is None]

    def only_in_raw(self) -> list[str]:
        names = {raw_name(name) for name in self.source}
        return [name for name in self.raw if name not in names]

    def of_another_type(self) -> list[tuple[Column, Column]]:
        """(source, raw) pairs whose values raw's column cannot take."""
        pairs = [(column, self.in_raw(column)) for column in self.source.values()]
        return [
            (source, raw)
            for source, raw in pairs
            if raw is not None
            and source.family != raw.family
            and not (source.family == "integer" and raw.family == "numeric" and raw.holds(source))
        ]

    def casts(self) -> dict[str, tuple[pa.DataType, Column, Column | None]]:
        """Source column -> the Arrow type its values must take to load into raw."""
        casts = {}
        for column in self.source.values():
            raw = self.in_raw(column)
            if raw is None:
                # dlt creates double precision for a new real column but writes its float32
                # values as they are, which the binary COPY cannot load.
                target = pa.float64() if column.data_type == "real" else None
            elif raw.family == "numeric" and column.family == "numeric" and raw.holds(column):
                target = None
            else:
                # Narrower numerics too: the cast fails on a value raw would round or overflow.
                target = raw.arrow_type()
            if target is not None:
                casts[column.name] = (target, column, raw)
        return casts


def _columns(cur, schema: str | None, table: str) -> dict[str, Column]:
    cur.execute(
        """SELECT column_name, data_type, character_maximum_length, numeric_precision,
                  numeric_scale
           FROM information_schema.columns
           WHERE table_schema = coalesce(%s, current_schema()) AND table_name = %s
           ORDER BY ordinal_position""",
        (schema, table),
    )
    columns = {}
    for name, data_type, length, precision, scale in cur.fetchall():
        if name in DLT_COLUMNS:
            continue
        numeric = data_type == "numeric"
        columns[name] = Column(
            name, data_type, length, precision if numeric else None, scale if numeric else None
        )
    return columns


def read_columns(source_conn, raw_conn, table: str) -> TableColumns:
    with source_conn.cursor() as source, raw_conn.cursor() as raw:
        return TableColumns(table, _columns(source, None, table), _columns(raw, RAW_DATASET, table))


def _resync_hint(table: str) -> str:
    return (
        f"Change the column back in the source, or re-create raw.{table} from the source with "
        f"its current types: materialize raw/{table} with the run config `{RESYNC_CONFIG}`, "
        f"which drops raw.{table} and loads every row again (drop the views on raw.{table} "
        "first, e.g. dbt's staging models; dbt re-creates them on its next run). "
        "See docs/shop-reconciliation.md."
    )


def type_failure(columns: TableColumns) -> dg.Failure | None:
    """The failure of a load whose source columns changed to types raw's columns cannot take."""
    pairs = columns.of_another_type()
    if not pairs:
        return None
    table = columns.table
    lines = [
        f"- {source.name}: {source} in the shop database's {table}, {raw} in raw.{table}"
        for source, raw in pairs
    ]
    return dg.Failure(
        description=(
            f"raw.{table} cannot take the source's values, so nothing was loaded:\n"
            + "\n".join(lines)
            + f"\n{_resync_hint(table)}"
        ),
        metadata={
            "table": table,
            "columns": {s.name: {"source_type": str(s), "raw_type": str(r)} for s, r in pairs},
        },
    )


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
                        f"({error}), so nothing was loaded.\n{_resync_hint(table)}"
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
