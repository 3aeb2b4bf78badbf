"""Declarative automation for this location, running as soon as the location is deployed.

The exports are `eager`: they run when any of their marts (in the transformation location)
was updated and none is missing. Dagster's implicit default automation sensor starts stopped;
declaring it here, running, is what makes exports follow the marts without a manual launch.
"""

import dagster as dg

exports_automation = dg.AutomationConditionSensorDefinition(
    "exports_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)
