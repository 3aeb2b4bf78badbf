"""Template variables for defs.yaml: when dbt models materialise by themselves."""

import dagster as dg

# Upstream assets partitioned by day (the ingestion team's payment files). An unpartitioned
# model depends on all of their partitions, and most days are legitimately absent, so their
# missing partitions must not hold the model back; their new partitions still trigger it.
DAILY_PARTITIONED_SOURCES = [dg.AssetKey(["raw", "payments"])]


@dg.template_var
def dbt_automation() -> dg.AutomationCondition:
    """Eager: a model runs when any upstream asset (in any code location) was updated, once
    nothing upstream is in progress; models whose parents run in the same tick join that run."""
    return dg.AutomationCondition.eager().replace(
        "any_deps_missing",
        dg.AutomationCondition.any_deps_missing().ignore(
            dg.AssetSelection.assets(*DAILY_PARTITIONED_SOURCES)
        ),
    )
