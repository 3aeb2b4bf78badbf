"""The transformation code location: the dbt project under defs/dbt and its automation."""

from pathlib import Path

import dagster as dg

from platform_ops import alerts


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
        # A run-failure sensor posting to ALERT_WEBHOOK_URL, when it is set.
        alerts.definitions("transformation"),
        # A run is one `dbt build`: a process per step would only add start-up time.
        dg.Definitions(executor=dg.in_process_executor),
    )
