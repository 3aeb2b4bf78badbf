"""Declarative automation for this location, running as soon as the location is deployed.

The exports are `eager`: they run when any of their marts (in the transformation location)
was updated and none is missing, and a failed one is requested again after a backoff
(`recovering`, docs/operations.md). Dagster's implicit default automation sensor starts stopped;
declaring it here, running, is what makes exports follow the marts without a manual launch.
"""

import dagster as dg

from platform_ops.recovery import automation_sensor, recovering

EXPORTS_AUTOMATION = recovering(dg.AutomationCondition.eager())

exports_automation = automation_sensor("exports_automation")
