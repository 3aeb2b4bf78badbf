"""Freshness of everything this location publishes."""

from datetime import timedelta

import dagster as dg

from exports.defs.bi.assets import bi_assets
from exports.defs.report.assets import daily_revenue_report
from exports.defs.snapshots.assets import snapshot_assets

# Exports follow the marts, which follow hourly loads; a day without a refresh means the chain
# is stuck somewhere upstream or here.
exports_freshness_checks = dg.build_last_update_freshness_checks(
    assets=[*snapshot_assets, *bi_assets, daily_revenue_report],
    lower_bound_delta=timedelta(hours=26),
)

exports_freshness_sensor = dg.build_sensor_for_freshness_checks(
    freshness_checks=exports_freshness_checks,
    name="exports_freshness",
    default_status=dg.DefaultSensorStatus.RUNNING,
)
