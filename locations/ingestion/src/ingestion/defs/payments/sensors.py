"""Notices payment files in the landing area and requests exactly their days."""

import json

import dagster as dg

from ingestion.defs.payments.assets import PAYMENTS_PARTITIONS
from ingestion.defs.payments.files import list_landing
from ingestion.defs.resources import PaymentLanding

# The payment tables and their checks, by group: a new payment asset joins without an edit here.
payment_files_job = dg.define_asset_job(
    "payment_files_job",
    selection=dg.AssetSelection.groups("payments"),
    description="Loads one day of payment files into raw (started by the landing sensor).",
)


@dg.sensor(
    name="payment_files_landed",
    job=payment_files_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def payment_files_landed(
    context: dg.SensorEvaluationContext, payment_landing: PaymentLanding
) -> dg.SensorResult:
    """Requests one run per day that has new payment files.

    The cursor maps each file name to the version last requested (size and modification time
    or ETag), so an unchanged file is never requested twice, a late file for an old day is
    picked up whenever it lands, and a replaced file is loaded again. Files for days that have
    no partition yet wait, unrequested, until the day exists.
    """
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    first_day = PAYMENTS_PARTITIONS.start.date().isoformat()
    last_day = PAYMENTS_PARTITIONS.get_last_partition_key()
    landing = list_landing(payment_landing.url)
    for skipped in landing.skipped:
        # Reported once per version of the file, then left alone: one stray file must never
        # stop the other days from loading.
        if seen.get(skipped.name) != skipped.version:
            context.log.warning(f"{skipped.name}: skipped, {skipped.reason}")
            seen[skipped.name] = skipped.version
    new_by_day: dict[str, list[str]] = {}
    for file in landing.files:
        if seen.get(file.name) == file.version:
            continue
        day = file.day.isoformat()
        if day < first_day:
            context.log.warning(f"{file.name}: {day} is before the first partition, ignored")
            seen[file.name] = file.version
            continue
        if last_day is None or day > last_day:
            context.log.info(f"{file.name}: partition {day} does not exist yet; waiting")
            continue
        new_by_day.setdefault(day, []).append(f"{file.name}@{file.version}")
        seen[file.name] = file.version

    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(partition_key=day, run_key=f"{day}|{'|'.join(sorted(versions))}")
            for day, versions in sorted(new_by_day.items())
        ],
        cursor=json.dumps(seen, sort_keys=True),
    )
