"""Automation of the transformation location: declarative conditions, plus a nightly safety net."""

import dagster as dg

transformation_automation = dg.AutomationConditionSensorDefinition(
    "transformation_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)

# Everything this location builds with dbt, selected by kind: a model added to the project is
# in the nightly build without an edit here. It rebuilds what automation may have missed
# (e.g. a tick skipped during a deploy).
nightly_dbt_build = dg.ScheduleDefinition(
    name="nightly_dbt_build",
    target=dg.AssetSelection.kind("dbt"),
    cron_schedule="30 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
