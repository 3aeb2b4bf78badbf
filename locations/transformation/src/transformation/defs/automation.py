"""Automation of the transformation location: declarative conditions, plus a nightly safety net.
Both launch their runs with the platform's run retries (docs/operations.md)."""

import dagster as dg

from platform_ops.recovery import RUN_RETRY_TAGS, automation_sensor

transformation_automation = automation_sensor("transformation_automation")

# Everything this location builds with dbt, selected by kind: a model added to the project is
# in the nightly build without an edit here. It rebuilds what automation may have missed
# (e.g. a tick skipped during a deploy).
nightly_dbt_build = dg.ScheduleDefinition(
    name="nightly_dbt_build",
    target=dg.AssetSelection.kind("dbt"),
    cron_schedule="30 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    tags=RUN_RETRY_TAGS,
)
