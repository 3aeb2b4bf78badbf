"""Declarative automation for this location, running as soon as the location is deployed.

Dagster's implicit default automation sensor starts stopped; declaring it here, running, is
what makes a new deployment fill itself (raw tables are materialised on_missing, then on_cron).
"""

import dagster as dg

ingestion_automation = dg.AutomationConditionSensorDefinition(
    "ingestion_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)
