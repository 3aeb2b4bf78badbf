"""raw/payments and raw/payments_rejected: the provider's daily files, validated, one partition
per business day."""

import dagster as dg
from pydantic import Field

from ingestion.defs.resources import PaymentLanding, PostgresResource

PAYMENTS = dg.AssetKey(["raw", "payments"])
PAYMENTS_REJECTED = dg.AssetKey(["raw", "payments_rejected"])
REJECT_CHECK = "reject_ratio_within_limit"

# One partition per business day; a day's partition exists once the day is over, which is
# when the provider delivers its file.
PAYMENTS_PARTITIONS = dg.DailyPartitionsDefinition(start_date="2025-01-01")


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
        )
    ],
    partitions_def=PAYMENTS_PARTITIONS,
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

    yield from load_payment_files(
        context, payment_landing, warehouse, shop_db, config.allow_empty_redelivery
    )
