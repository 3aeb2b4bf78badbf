"""A partitioned asset whose check fails on one day, and the sensor that requests two days,
failing day first: `make run`'s summary must not let the passing day hide the failing one."""

import dagster as dg

DAYS = dg.DailyPartitionsDefinition(start_date="2026-03-01", end_date="2026-03-03")
INCIDENT_DAY = "2026-03-01"
CLEAN_DAY = "2026-03-02"
CHECK = "rejects_within_limit"


@dg.asset(
    partitions_def=DAYS,
    check_specs=[dg.AssetCheckSpec(CHECK, asset="daily_rows")],
)
def daily_rows(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """A day's rows; the incident day has too many rejects."""
    rejects = 12 if context.partition_key == INCIDENT_DAY else 1
    return dg.MaterializeResult(
        metadata={"dagster/row_count": 100},
        check_results=[dg.AssetCheckResult(check_name=CHECK, passed=rejects <= 5)],
    )


@dg.sensor(target=[daily_rows])
def delivered_days() -> list[dg.RunRequest]:
    return [dg.RunRequest(partition_key=day) for day in (INCIDENT_DAY, CLEAN_DAY)]


defs = dg.Definitions(assets=[daily_rows], sensors=[delivered_days])
