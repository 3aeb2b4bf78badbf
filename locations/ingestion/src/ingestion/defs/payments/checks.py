"""Freshness of the payment partitions (the reject-ratio check runs inside the load itself)."""

import dagster as dg

from ingestion.defs.payments.assets import payment_files

# The provider delivers a day's file overnight: by 09:00 UTC the previous day must be loaded.
payments_freshness_checks = dg.build_time_partition_freshness_checks(
    assets=[payment_files], deadline_cron="0 9 * * *", timezone="UTC"
)

payments_freshness_sensor = dg.build_sensor_for_freshness_checks(
    freshness_checks=payments_freshness_checks,
    name="payment_files_freshness",
    default_status=dg.DefaultSensorStatus.RUNNING,
)
