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
    ALLOW_EMPTY_CONFIG,
    PAYMENT_SPECS,
    PAYMENTS,
    PAYMENTS_REJECTED,
    REJECT_CHECK,
)
from ingestion.defs.payments.files import (
    LandingFile,
    ValidatedRows,
    list_landing,
    read_bytes,
    validate,
)
from ingestion.defs.resources import PaymentLanding, PostgresResource
from ingestion.pipelines.raw import SMALL_FILE_FORMAT, raw_pipeline

PIPELINE_NAME = "payment_files_to_raw"

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


def _replace_days(days: list[date]) -> dict:
    """Merge that replaces exactly the run's days: dlt deletes the rows the scope selects and
    inserts the staged ones in one transaction, so a day is never half replaced, a day whose
    load has no rows is emptied, and rows of other days are never touched. The scope is one
    condition on `file_date`, so the delete is one scan (or an index range) instead of dlt's
    key join, which matched `payment_id = ... OR file_date = ...` row by row."""
    listed = ", ".join(f"'{day.isoformat()}'" for day in days)
    return {
        "disposition": "merge",
        "strategy": "delete-insert",
        "destination_scope": f"file_date IN ({listed})",
        # Validation keeps one row per key and day, so the merge need not sort to deduplicate.
        "deduplicated": True,
    }


@dlt.source(name="payment_files")
def payment_files_source(rows: ValidatedRows, days: list[date]) -> Iterator:
    """Good and rejected rows of the requested days; loading replaces those days."""
    yield dlt.resource(
        rows.good,
        name="payments",
        write_disposition=_replace_days(days),
        primary_key=("file_date", "payment_id"),
    )
    yield dlt.resource(
        pa.Table.from_pylist(rows.rejected, schema=REJECTED_SCHEMA),
        name="payments_rejected",
        write_disposition=_replace_days(days),
        primary_key=("source_file", "source_line"),
    )


def _bigint_array(ids: set[int]) -> str:
    """A bigint[] literal. Sent as one text parameter: psycopg2 renders a list as
    ARRAY[...], which the server parses element by element, twice as slow at 1M ids."""
    return "{" + ",".join(map(str, ids)) + "}"


def _known_orders(shop_db: PostgresResource):
    def lookup(order_ids: set[int]) -> set[int]:
        with shop_db.connect() as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT o.order_id FROM orders AS o "
                "JOIN unnest(%s::bigint[]) AS n(order_id) USING (order_id)",
                (_bigint_array(order_ids),),
            )
            return {row[0] for row in cur.fetchall()}

    return lookup


def _table_exists(cur, table: str) -> bool:
    cur.execute("SELECT to_regclass(%s)", (f"raw.{table}",))
    return cur.fetchone()[0] is not None


def _loaded_elsewhere(warehouse: PostgresResource, days: list[date]):
    """Payment ids raw holds for days other than `days`, with where they came from."""

    def lookup(payment_ids: set[int]) -> dict[int, str]:
        with warehouse.connect() as conn, conn.cursor() as cur:
            if not _table_exists(cur, "payments"):
                return {}
            cur.execute(
                """SELECT p.payment_id, p.source_file, p.source_line
                   FROM raw.payments AS p
                   JOIN unnest(%s::bigint[]) AS n(payment_id) USING (payment_id)
                   WHERE p.file_date <> ALL(%s)""",
                (_bigint_array(payment_ids), days),
            )
            return {pid: f"{name}:{line} (already loaded)" for pid, name, line in cur.fetchall()}

    return lookup


def _loaded_payments(warehouse: PostgresResource, days: list[date]) -> dict[date, int]:
    """Payments raw holds now for each of `days` that has any."""
    with warehouse.connect() as conn, conn.cursor() as cur:
        if not _table_exists(cur, "payments"):
            return {}
        cur.execute(
            "SELECT file_date, count(*) FROM raw.payments WHERE file_date = ANY(%s) "
            "GROUP BY file_date",
            (days,),
        )
        return dict(cur.fetchall())


def _index_days(warehouse: PostgresResource) -> None:
    """An index on `file_date` keeps each day's replacement a range scan as history grows
    (dlt creates no indexes). Created once; cheap to ask for again."""
    with warehouse.connect() as conn, conn, conn.cursor() as cur:
        for table in ("payments", "payments_rejected"):
            if _table_exists(cur, table):
                cur.execute(
                    sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (file_date)").format(
                        sql.Identifier(f"{table}_file_date"), sql.Identifier("raw", table)
                    )
                )


EMPTY_FILE = (
    "{name} is empty (0 bytes). A delivery always has its header line, so an empty file is an "
    "interrupted transfer: nothing was loaded for {day} and raw keeps what it had. Deliver the "
    "file again; a day without payments is a file with the header line only."
)
UNUSABLE_FILE = (
    "{name} is not a delivery: {reason}. A delivery's first line is its header "
    "(docs/payment-files.md). Nothing was loaded; deliver the day again."
)
EMPTYING = (
    "{name} would replace {day}, which holds {loaded:,} payments in raw.payments, with none "
    "({why}). Nothing was changed. If the day really has no payments, launch partition {day} "
    "again with run config {config}; otherwise deliver the day again as {resend} "
    "(docs/payment-files.md)."
)


def _refuse_emptying(
    files: list[LandingFile], rows: ValidatedRows, loaded: dict[date, int]
) -> None:
    """Fail before loading when a delivery would take a loaded day's payments to none."""
    good_days = set(rows.good["file_date"].unique().to_pylist())
    for file in files:
        if file.day in good_days or not loaded.get(file.day):
            continue
        bad = [r for r in rows.rejected if r["source_file"] == file.name]
        why = (
            "the file has a header line and no rows"
            if not bad
            else f"all its {len(bad):,} lines were rejected, first: {bad[0]['reason']}: "
            f"{bad[0]['detail']}"
        )
        raise dg.Failure(
            description=EMPTYING.format(
                name=file.name, day=file.day, loaded=loaded[file.day], why=why,
                config=ALLOW_EMPTY_CONFIG,
                resend=f"payments_{file.day}_resend-{max(2, file.delivery + 1)}.csv",
            )
        )  # fmt: skip


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
    allow_empty_redelivery: bool = False,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Validate each run day's latest delivery, replace those days in both tables, report
    the reject ratio."""
    days = sorted(date.fromisoformat(key) for key in context.partition_keys)
    found = list_landing(landing.url)
    for skipped in found.skipped:
        context.log.warning(f"{skipped.name}: skipped, {skipped.reason}")
    latest = found.latest_by_day()
    missing = [day for day in days if day not in latest]
    if missing:
        raise dg.Failure(
            description=f"no payment file in {landing.url} for "
            + ", ".join(d.isoformat() for d in missing),
        )
    files = [latest[day] for day in days]
    superseded = [f.name for f in found.files if f.day in set(days) and f not in files]
    context.log.info(f"validating {len(files)} file(s): {', '.join(f.name for f in files)}")
    contents = {file.name: read_bytes(landing.url, file) for file in files}
    for file in files:
        if not contents[file.name]:
            raise dg.Failure(description=EMPTY_FILE.format(name=file.name, day=file.day))
    rows = validate(
        ((file, contents[file.name]) for file in files),
        _known_orders(shop_db),
        _loaded_elsewhere(warehouse, days),
    )
    for name, reason in rows.unusable.items():
        raise dg.Failure(description=UNUSABLE_FILE.format(name=name, reason=reason))
    if not allow_empty_redelivery:
        _refuse_emptying(files, rows, _loaded_payments(warehouse, days))

    with raw_pipeline(PIPELINE_NAME, warehouse) as pipeline:
        results = list(
            DagsterDltResource().run(
                context=context,
                dlt_source=payment_files_source(rows, days),
                dlt_pipeline=pipeline,
                dagster_dlt_translator=PaymentsTranslator(),
                loader_file_format=SMALL_FILE_FORMAT,
            )
        )
    _index_days(warehouse)

    by_reason = rows.rejected_by_reason()
    # Per-partition row counts only make sense when the run covers one day.
    one_day = len(days) == 1
    extra = {
        PAYMENTS: {
            "good_rows": rows.good.num_rows,
            "files": [f.name for f in files],
            "superseded_files": superseded,
            "skipped_files": [f"{s.name}: {s.reason}" for s in found.skipped],
            **({"dagster/partition_row_count": rows.good.num_rows} if one_day else {}),
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

    total = rows.good.num_rows + len(rows.rejected)
    ratio = len(rows.rejected) / total if total else 0.0
    # Judged day by day: in a run over several days, one bad day fails the check even when the
    # run's overall share is within the limit.
    over = [
        f"{day} ({share:.1%})"
        for day, share in _reject_ratio_by_day(rows).items()
        if share > landing.max_reject_ratio
    ]
    yield dg.AssetCheckResult(
        asset_key=PAYMENTS,
        check_name=REJECT_CHECK,
        passed=not over,
        metadata={
            "good_rows": rows.good.num_rows,
            "rejected_rows": len(rows.rejected),
            "reject_ratio": round(ratio, 4),
            "max_reject_ratio": landing.max_reject_ratio,
            "days_over_limit": over,
            "rejected_by_reason": by_reason,
        },
    )


def _reject_ratio_by_day(rows: ValidatedRows) -> dict[date, float]:
    good = {
        entry["values"]: entry["counts"]
        for entry in rows.good["file_date"].value_counts().to_pylist()
    }
    rejected: dict[date, int] = {}
    for row in rows.rejected:
        rejected[row["file_date"]] = rejected.get(row["file_date"], 0) + 1
    return {day: n / (n + good.get(day, 0)) for day, n in sorted(rejected.items())}
