"""The exports code location: snapshots, the BI schema and the report, from the marts."""

from pathlib import Path

import dagster as dg

from platform_ops import alerts


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
        # A run-failure sensor posting to ALERT_WEBHOOK_URL, when it is set.
        alerts.definitions("exports"),
        # Seven small steps: one process per step would cost more than the steps themselves.
        dg.Definitions(executor=dg.in_process_executor),
    )
