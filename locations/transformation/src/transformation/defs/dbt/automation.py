"""Template variables for defs.yaml: when dbt models and their tests run by themselves."""

from datetime import timedelta

import dagster as dg

from platform_ops.recovery import recovering

# Upstream assets partitioned by day (the ingestion team's payment files). An unpartitioned
# model depends on all of their partitions, and most days are legitimately absent, so their
# missing partitions must not hold the model back; their new partitions still trigger it.
DAILY_PARTITIONED_SOURCES = [dg.AssetKey(["raw", "payments"])]


def _ignoring_daily_sources(condition: dg.AutomationCondition) -> dg.AutomationCondition:
    return condition.replace(
        "any_deps_missing",
        dg.AutomationCondition.any_deps_missing().ignore(
            dg.AssetSelection.assets(*DAILY_PARTITIONED_SOURCES)
        ),
    )


@dg.template_var
def dbt_automation() -> dg.AutomationCondition:
    """Eager: a model runs when any upstream asset (in any code location) was updated, once
    nothing upstream is in progress; models whose parents run in the same tick join that run.
    A failed model is requested again after a backoff (docs/operations.md)."""
    return recovering(_ignoring_daily_sources(dg.AutomationCondition.eager()))


@dg.template_var
def dbt_cross_model_check_automation() -> dg.AutomationCondition:
    """A test that reads several models (relationships, the singular business rules) runs when
    any of them was updated and none is missing or in progress: after a partial build that
    could not run it, in a run of its own."""
    return _ignoring_daily_sources(dg.AutomationCondition.eager())


@dg.template_var
def dbt_freshness() -> dg.FreshnessPolicy:
    """Models follow the hourly loads: three hours without a build is worth a look, a day means
    the chain is stuck (a model failing, automation stopped)."""
    return dg.FreshnessPolicy.time_window(
        fail_window=timedelta(hours=26), warn_window=timedelta(hours=3)
    )
