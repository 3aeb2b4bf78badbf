"""The ingestion code location: everything under defs/ (assets, checks, sensors, resources)."""

from pathlib import Path

import dagster as dg

from platform_ops import alerts


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
        # A run-failure sensor posting to ALERT_WEBHOOK_URL, when it is set.
        alerts.definitions("ingestion"),
        # A run is one dlt load plus its checks: a process per step would only add start-up
        # time. In Kubernetes each run already gets a pod of its own.
        dg.Definitions(executor=dg.in_process_executor),
    )
