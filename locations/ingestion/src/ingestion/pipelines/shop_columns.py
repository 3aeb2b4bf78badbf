"""Shop tables' columns in the source and in raw: which types take one another's values, what
dlt names a column in raw, and the failure of a load whose source changed a type raw cannot take.

docs/shop-reconciliation.md explains the design.
"""

from dataclasses import dataclass

import dagster as dg
import pyarrow as pa
from dlt.common.normalizers.naming.snake_case import NamingConvention

from ingestion.defs.shop.assets import SHOP_TABLES
from ingestion.pipelines.raw import RAW_DATASET

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


def resync_hint(table: str) -> str:
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
            + f"\n{resync_hint(table)}"
        ),
        metadata={
            "table": table,
            "columns": {s.name: {"source_type": str(s), "raw_type": str(r)} for s, r in pairs},
        },
    )
