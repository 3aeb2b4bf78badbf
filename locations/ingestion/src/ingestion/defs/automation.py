"""Declarative automation for this location, running as soon as the location is deployed.

Dagster's implicit default automation sensor starts stopped; declaring it here, running, is
what makes a new deployment fill itself (raw tables are materialised on_missing, then on_cron).
Its runs carry the platform's run retries (docs/operations.md).
"""

from platform_ops.recovery import automation_sensor

ingestion_automation = automation_sensor("ingestion_automation")
