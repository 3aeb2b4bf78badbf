"""raw/payments and raw/payments_rejected: the provider's daily files, validated, one partition
per business day."""

from datetime import UTC, datetime, timedelta

import dagster as dg
from pydantic import Field

from ingestion.defs.payments.partitions import PAYMENTS_PARTITIONS
from ingestion.defs.resources import PaymentLanding, PostgresResource
from platform_ops.recovery import retry_transient

PAYMENTS = dg.AssetKey(["raw", "payments"])
PAYMENTS_REJECTED = dg.AssetKey(["raw", "payments_rejected"])
REJECT_CHECK = "reject_ratio_within_limit"
NEWEST_DAY_CHECK = "newest_day_loaded"
# The step failure's metadata entry naming each day a run could not load and why; the landing
# sensor reads it to tell a bad delivery (wait for a new file) from an outage (retry).
BAD_DAYS = "bad_days"

# The provider delivers a day's file overnight: each morning the tables are loaded between
# midnight and the 09:00 UTC deadline. Dagster judges the policy on the asset's latest load,
# whichever day it was (1.13 has no partition-aware policy), so the newest-day check below says
# which day is missing.
DEADLINE = timedelta(hours=9)
PAYMENTS_FRESHNESS = dg.FreshnessPolicy.cron(deadline_cron="0 9 * * *", lower_bound_delta=DEADLINE)


class PaymentFilesConfig(dg.Config):
    """Run configuration of a payment load; the defaults are what the sensor's runs use."""

    allow_empty_redelivery: bool = Field(
        default=False,
        description=(
            "Let a delivery with no valid rows replace a day that raw already holds payments "
            "for. Without it such a run fails and changes nothing (docs/payment-files.md)."
        ),
    )


# How an operator confirms that a loaded day really has no payments, quoted in the refusal.
ALLOW_EMPTY_CONFIG = "ops: {payment_files: {config: {allow_empty_redelivery: true}}}"


def _spec(key: dg.AssetKey, description: str, primary_key: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=key,
        description=description,
        group_name="payments",
        owners=["team:ingestion"],
        tags={"source": "payment_files", "load": "daily_partition"},
        kinds={"dlt", "postgres", "csv"},
        metadata={"primary_key": primary_key, "dagster/table_name": ".".join(key.path)},
        freshness_policy=PAYMENTS_FRESHNESS,
    )


PAYMENT_SPECS: dict[str, dg.AssetSpec] = {
    "payments": _spec(
        PAYMENTS, "Payments from the provider's daily files, one row per valid payment.",
        "file_date, payment_id",
    ),
    "payments_rejected": _spec(
        PAYMENTS_REJECTED,
        "Payment file lines that failed validation, with file, line and reason.",
        "source_file, source_line",
    ),
}  # fmt: skip


@dg.multi_asset(
    specs=list(PAYMENT_SPECS.values()),
    check_specs=[
        dg.AssetCheckSpec(
            REJECT_CHECK,
            asset=PAYMENTS,
            description="The share of rejected lines in the day's files is within the limit.",
            # Not partitioned: partitioned checks are a preview feature in Dagster 1.13. The
            # run's result names the days over the limit (days_over_limit), and `make run`
            # reports each partition's result.
        ),
        dg.AssetCheckSpec(
            NEWEST_DAY_CHECK,
            asset=PAYMENTS,
            description=(
                "The newest day due by the 09:00 UTC deadline is loaded, by this run or an "
                "earlier one. A warning, never an error: a run of historical days does not "
                "bring the newest day, and that is no failure of the run."
            ),
        ),
    ],
    partitions_def=PAYMENTS_PARTITIONS,
    # A history arrives as one backfill (the landing sensor) of runs of up to a month of
    # consecutive days each: one validation and one merge per run instead of one per day.
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=31),
    name="payment_files",
    # One load at a time: runs of one dlt pipeline share its staging tables in raw_staging,
    # which a merge truncates and refills.
    pool="ingestion_payment_files",
)
def payment_files(
    context: dg.AssetExecutionContext,
    config: PaymentFilesConfig,
    payment_landing: PaymentLanding,
    warehouse: PostgresResource,
    shop_db: PostgresResource,
):
    """Validates each day's latest payment file and loads good and rejected rows into raw."""
    from ingestion.pipelines.payments import load_payment_files

    # A connection lost or refused retries the load with backoff. Nothing is written before
    # dlt's load, which replaces the run's days in one transaction, so a retry starts clean.
    with retry_transient(context):
        yield from load_payment_files(
            context, payment_landing, warehouse, shop_db, config.allow_empty_redelivery
        )
    yield _newest_day_loaded(context)


def _newest_day_loaded(context: dg.AssetExecutionContext) -> dg.AssetCheckResult:
    # A day is due once its deadline, the morning after, has passed.
    day = (datetime.now(UTC) - DEADLINE).date() - timedelta(days=1)
    due = day.isoformat() if day >= PAYMENTS_PARTITIONS.start.date() else None
    loaded = due is None or due in context.partition_keys
    return dg.AssetCheckResult(
        asset_key=PAYMENTS,
        check_name=NEWEST_DAY_CHECK,
        passed=loaded or due in context.instance.get_materialized_partitions(PAYMENTS),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"newest_due_day": due or "none", "run_days": _span(context.partition_keys)},
    )


def _span(days: list[str]) -> str:
    return days[0] if len(days) == 1 else f"{days[0]}...{days[-1]} ({len(days)} days)"
