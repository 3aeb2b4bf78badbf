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
    BAD_DAYS,
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
    "(docs/payment-files.md). Nothing was loaded for {day}; deliver the day again."
)
EMPTYING = (
    "{name} would replace {day}, which holds {loaded:,} payments in raw.payments, with none "
    "({why}). Nothing was changed. If the day really has no payments, launch partition {day} "
    "again with run config {config}; otherwise deliver the day again as {resend} "
    "(docs/payment-files.md)."
)


def _emptying(
    files: list[LandingFile], rows: ValidatedRows, loaded: dict[date, int]
) -> dict[date, str]:
    """Why each delivery that would take a loaded day's payments to none is refused."""
    good_days = set(rows.good["file_date"].unique().to_pylist())
    refused: dict[date, str] = {}
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
        refused[file.day] = EMPTYING.format(
            name=file.name, day=file.day, loaded=loaded[file.day], why=why,
            config=ALLOW_EMPTY_CONFIG,
            resend=f"payments_{file.day}_resend-{max(2, file.delivery + 1)}.csv",
        )  # fmt: skip
    return refused


def _preview(rows: list[dict], limit: int = 10) -> str:
    lines = ["| file | line | reason | detail |", "|---|---|---|---|"]
    lines += [
        f"| {r['source_file']} | {r['source_line']} | {r['reason']} | {r['detail']} |"
        for r in rows[:limit]
    ]
    return "\n".join(lines)


def _validate_loadable(
    files: list[LandingFile],
    contents: dict[str, bytes],
    warehouse: PostgresResource,
    shop_db: PostgresResource,
    allow_empty_redelivery: bool,
    bad: dict[date, str],
) -> tuple[list[LandingFile], ValidatedRows]:
    """The files that can replace their days and their validated rows; `bad` gains the days
    whose delivery cannot (no header, or it would empty a loaded day). Validation runs again
    without those days, because a payment id raw holds for a day that is not replaced is a
    duplicate for the days that are."""
    while True:
        days = [file.day for file in files]
        rows = validate(
            ((file, contents[file.name]) for file in files),
            _known_orders(shop_db),
            _loaded_elsewhere(warehouse, days),
        )
        refused = {
            file.day: UNUSABLE_FILE.format(
                name=file.name, day=file.day, reason=rows.unusable[file.name]
            )
            for file in files
            if file.name in rows.unusable
        }
        if not allow_empty_redelivery and files:
            refused |= {
                day: why
                for day, why in _emptying(files, rows, _loaded_payments(warehouse, days)).items()
                if day not in refused
            }
        if not refused:
            return files, rows
        bad.update(refused)
        files = [file for file in files if file.day not in refused]


def load_payment_files(
    context: dg.AssetExecutionContext,
    landing: PaymentLanding,
    warehouse: PostgresResource,
    shop_db: PostgresResource,
    allow_empty_redelivery: bool = False,
) -> Iterator[dg.MaterializeResult | dg.AssetMaterialization | dg.AssetCheckResult]:
    """Validate each run day's latest delivery, replace those days in both tables, report
    the reject ratio.

    A day whose delivery is missing or unusable does not stop the others: the good days are
    loaded and materialised one by one, then the step fails naming each bad day and why
    (metadata `bad_days`), so Dagster shows those partitions failed and the rest loaded."""
    days = sorted(date.fromisoformat(key) for key in context.partition_keys)
    found = list_landing(landing.url)
    for skipped in found.skipped:
        context.log.warning(f"{skipped.name}: skipped, {skipped.reason}")
    latest = found.latest_by_day()
    bad: dict[date, str] = {
        day: f"no payment file in {landing.url} for {day}" for day in days if day not in latest
    }
    files = [latest[day] for day in days if day in latest]
    context.log.info(f"validating {len(files)} file(s): {', '.join(f.name for f in files)}")
    contents = {file.name: read_bytes(landing.url, file) for file in files}
    bad |= {
        file.day: EMPTY_FILE.format(name=file.name, day=file.day)
        for file in files
        if not contents[file.name]
    }
    files = [file for file in files if file.day not in bad]
    files, rows = _validate_loadable(
        files, contents, warehouse, shop_db, allow_empty_redelivery, bad
    )
    if not files:
        raise _bad_days_failure(bad, loaded=[])

    good_days = [file.day for file in files]
    superseded = [f.name for f in found.files if f.day in set(good_days) and f not in files]
    with raw_pipeline(PIPELINE_NAME, warehouse) as pipeline:
        results = list(
            DagsterDltResource().run(
                context=context,
                dlt_source=payment_files_source(rows, good_days),
                dlt_pipeline=pipeline,
                dagster_dlt_translator=PaymentsTranslator(),
                loader_file_format=SMALL_FILE_FORMAT,
            )
        )
    _index_days(warehouse)

    by_reason = rows.rejected_by_reason()
    if bad:
        # Only the loaded days are materialised; the run's other partitions stay failed.
        yield from _day_materializations(files, rows, superseded)
    else:
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
    if bad:
        raise _bad_days_failure(bad, loaded=good_days)


def _day_materializations(
    files: list[LandingFile], rows: ValidatedRows, superseded: list[str]
) -> Iterator[dg.AssetMaterialization]:
    good = {
        entry["values"]: entry["counts"]
        for entry in rows.good["file_date"].value_counts().to_pylist()
    }
    for file in files:
        rejected = [r for r in rows.rejected if r["file_date"] == file.day]
        yield dg.AssetMaterialization(
            PAYMENTS,
            partition=file.day.isoformat(),
            metadata={
                "good_rows": good.get(file.day, 0),
                "dagster/partition_row_count": good.get(file.day, 0),
                "files": [file.name],
                "superseded_files": [n for n in superseded if f"_{file.day}" in n],
            },
        )
        yield dg.AssetMaterialization(
            PAYMENTS_REJECTED,
            partition=file.day.isoformat(),
            metadata={
                "rejected_rows": len(rejected),
                "dagster/partition_row_count": len(rejected),
                "preview": dg.MetadataValue.md(_preview(rejected)),
            },
        )


def _bad_days_failure(bad: dict[date, str], loaded: list[date]) -> dg.Failure:
    listed = "\n".join(f"- {day}: {why}" for day, why in sorted(bad.items()))
    done = f"{len(loaded)} other day(s) of the run were loaded" if loaded else "nothing was loaded"
    return dg.Failure(
        description=f"{len(bad)} day(s) not loaded ({done}):\n{listed}",
        metadata={
            BAD_DAYS: dg.MetadataValue.json({d.isoformat(): why for d, why in sorted(bad.items())}),
            "loaded_days": [d.isoformat() for d in loaded],
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
