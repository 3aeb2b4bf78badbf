"""Loading validated payment files into raw with dlt, one business day at a time."""

from collections.abc import Iterator
from datetime import date

import dagster as dg
import dlt
import pyarrow as pa
from dagster_dlt import DagsterDltResource, DagsterDltTranslator
from dagster_dlt.translator import DltResourceTranslatorData
from psycopg2 import sql

from ingestion.defs.payments.assets import (
    PAYMENT_SPECS,
    PAYMENTS,
    PAYMENTS_REJECTED,
    REJECT_CHECK,
)
from ingestion.defs.payments.files import ValidatedRows, list_landing, read_text, validate
from ingestion.defs.resources import PaymentLanding, PostgresResource
from ingestion.pipelines.raw import SMALL_FILE_FORMAT, raw_pipeline

PIPELINE_NAME = "payment_files_to_raw"

GOOD_SCHEMA = pa.schema([
    ("payment_id", pa.int64()),
    ("order_id", pa.int64()),
    ("amount", pa.decimal128(12, 2)),
    ("currency", pa.string()),
    ("method", pa.string()),
    ("paid_at", pa.timestamp("us", tz="UTC")),
    ("file_date", pa.date32()),
    ("source_file", pa.string()),
    ("source_line", pa.int64()),
])  # fmt: skip
REJECTED_SCHEMA = pa.schema([
    ("file_date", pa.date32()),
    ("source_file", pa.string()),
    ("source_line", pa.int64()),
    ("reason", pa.string()),
    ("detail", pa.string()),
    ("raw_line", pa.string()),
])  # fmt: skip


class PaymentsTranslator(DagsterDltTranslator):
    """Each dlt resource is the asset declared for its table in defs/payments/assets.py."""

    def get_asset_spec(self, data: DltResourceTranslatorData) -> dg.AssetSpec:
        return PAYMENT_SPECS[data.resource.name]


def good_table(rows: ValidatedRows) -> pa.Table:
    """Valid payments; columns the provider added beyond the required ones travel as text."""
    schema = GOOD_SCHEMA
    for name in sorted(rows.extra_columns):
        schema = schema.append(pa.field(name, pa.string()))
    return pa.Table.from_pylist(rows.good, schema=schema)


@dlt.source(name="payment_files")
def payment_files_source(rows: ValidatedRows) -> Iterator:
    """Good and rejected rows of the requested days. Both tables merge on their key with
    `file_date` as merge key, so loading a day again replaces that day's rows."""
    yield dlt.resource(
        good_table(rows),
        name="payments",
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
        primary_key="payment_id",
        merge_key="file_date",
    )
    yield dlt.resource(
        pa.Table.from_pylist(rows.rejected, schema=REJECTED_SCHEMA),
        name="payments_rejected",
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
        primary_key=("source_file", "source_line"),
        merge_key="file_date",
    )


def _known_orders(shop_db: PostgresResource):
    def lookup(order_ids: set[int]) -> set[int]:
        with shop_db.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT order_id FROM orders WHERE order_id = ANY(%s)", (list(order_ids),))
            return {row[0] for row in cur.fetchall()}

    return lookup


def _clear_days(warehouse: PostgresResource, table: str, days: list[date]) -> None:
    """Remove a table's rows for days whose new load has none (dlt's delete-insert only
    replaces days present in the load). Runs after a successful load, so rows only disappear
    once their replacement is in."""
    if not days:
        return
    with warehouse.connect() as conn, conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (f"raw.{table}",))
        if cur.fetchone()[0] is not None:
            cur.execute(
                sql.SQL("DELETE FROM {} WHERE file_date = ANY(%s)").format(
                    sql.Identifier("raw", table)
                ),
                (days,),
            )


def _preview(rows: list[dict], limit: int = 10) -> str:
    lines = ["| file | line | reason | detail |", "|---|---|---|---|"]
    lines += [
        f"| {r['source_file']} | {r['source_line']} | {r['reason']} | {r['detail']} |"
        for r in rows[:limit]
    ]
    return "\n".join(lines)


def load_payment_files(
    context: dg.AssetExecutionContext,
    landing: PaymentLanding,
    warehouse: PostgresResource,
    shop_db: PostgresResource,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Validate the files of the run's days, load both tables, report the reject ratio."""
    days = sorted(date.fromisoformat(key) for key in context.partition_keys)
    files = [f for f in list_landing(landing.url) if f.day in set(days)]
    missing = sorted(set(days) - {f.day for f in files})
    if missing:
        raise dg.Failure(
            description=f"no payment file in {landing.url} for "
            + ", ".join(d.isoformat() for d in missing),
        )
    context.log.info(f"validating {len(files)} file(s): {', '.join(f.name for f in files)}")
    rows = validate(((f, read_text(landing.url, f)) for f in files), _known_orders(shop_db))

    with raw_pipeline(PIPELINE_NAME, warehouse) as pipeline:
        results = list(
            DagsterDltResource().run(
                context=context,
                dlt_source=payment_files_source(rows),
                dlt_pipeline=pipeline,
                dagster_dlt_translator=PaymentsTranslator(),
                loader_file_format=SMALL_FILE_FORMAT,
            )
        )
    good_days = {r["file_date"] for r in rows.good}
    rejected_days = {r["file_date"] for r in rows.rejected}
    _clear_days(warehouse, "payments", [d for d in days if d not in good_days])
    _clear_days(warehouse, "payments_rejected", [d for d in days if d not in rejected_days])

    by_reason = rows.rejected_by_reason()
    # Per-partition row counts only make sense when the run covers one day.
    one_day = len(days) == 1
    extra = {
        PAYMENTS: {
            "good_rows": len(rows.good),
            "files": [f.name for f in files],
            **({"dagster/partition_row_count": len(rows.good)} if one_day else {}),
        },
        PAYMENTS_REJECTED: {
            "rejected_rows": len(rows.rejected),
            **({"dagster/partition_row_count": len(rows.rejected)} if one_day else {}),
            "rejected_by_reason": by_reason,
            "preview": dg.MetadataValue.md(_preview(rows.rejected)),
        },
    }
    for result in results:
        yield dg.MaterializeResult(
            asset_key=result.asset_key,
            metadata={**(result.metadata or {}), **extra[result.asset_key]},
        )

    total = len(rows.good) + len(rows.rejected)
    ratio = len(rows.rejected) / total if total else 0.0
    yield dg.AssetCheckResult(
        asset_key=PAYMENTS,
        check_name=REJECT_CHECK,
        passed=ratio <= landing.max_reject_ratio,
        metadata={
            "good_rows": len(rows.good),
            "rejected_rows": len(rows.rejected),
            "reject_ratio": round(ratio, 4),
            "max_reject_ratio": landing.max_reject_ratio,
            "rejected_by_reason": by_reason,
        },
    )
