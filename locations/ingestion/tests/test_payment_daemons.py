"""The payment tables under Dagster's own daemons, driven with Dagster's test utilities
(internal API; dagster is pinned exactly):

- sensor and backfill daemons: the landing sensor's first tick submits one backfill, the
  backfill daemon turns it into ranged runs of consecutive days, and every delivered day lands
  in raw as the day-by-day runs would have loaded it;
- the freshness daemon: it judges the tables' FreshnessPolicy by their latest load."""

import logging
from collections.abc import Iterator

import dagster as dg
import pytest
from dagster._core.definitions.freshness import FreshnessState
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.test_utils import create_test_daemon_workspace_context, instance_for_test
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.backfill import execute_backfill_iteration
from dagster._daemon.freshness import FreshnessDaemon
from dagster._daemon.sensor import execute_sensor_iteration

from platform_ops.recovery import RUN_RETRY_TAGS

LOG = logging.getLogger(__name__)
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


PAYMENTS = [dg.AssetKey(["raw", "payments"]), dg.AssetKey(["raw", "payments_rejected"])]


@pytest.fixture
def daemons() -> Iterator[WorkspaceProcessContext]:
    """The daemons' workspace over the ingestion location, in process, with runs launched and
    executed as they are submitted."""
    origin = InProcessCodeLocationOrigin(
        loadable_target_origin=LoadableTargetOrigin(
            module_name="ingestion.definitions", attribute="defs"
        ),
        location_name="ingestion",
    )
    with (
        instance_for_test(synchronous_run_launcher=True, synchronous_run_coordinator=True) as inst,
        create_test_daemon_workspace_context(InProcessWorkspaceLoadTarget(origin), inst) as ctx,
    ):
        yield ctx


@pytest.mark.integration
def test_the_first_history_is_one_backfill_of_ranged_runs(platform_env, daemons):
    delivery = platform_env.seed()  # 2026-03-06 .. 03-10, the 03-09 file held back (late)
    instance = daemons.instance

    list(execute_sensor_iteration(daemons, LOG, None, None))
    [backfill] = instance.get_backfills()
    for _ in range(3):  # request the runs, then see them finished
        list(execute_backfill_iteration(daemons, LOG))

    assert instance.get_backfill(backfill.backfill_id).status == BulkActionStatus.COMPLETED_SUCCESS
    runs = sorted(instance.get_runs(), key=lambda r: r.tags[RANGE_START])
    assert [(r.tags[RANGE_START], r.tags[RANGE_END]) for r in runs] == [
        ("2026-03-06", "2026-03-08"), ("2026-03-10", "2026-03-10"),
    ]  # fmt: skip
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    assert all(r.tags["dagster/backfill"] == backfill.backfill_id for r in runs)
    assert all(RUN_RETRY_TAGS.items() <= r.tags.items() for r in runs)
    loaded = dict(
        platform_env.query("SELECT file_date::text, count(*) FROM raw.payments GROUP BY 1")
    )
    assert loaded == {f.day.isoformat(): f.good_rows for f in delivery.files}
    assert instance.get_materialized_partitions(dg.AssetKey(["raw", "payments_rejected"])) == {
        f.day.isoformat() for f in delivery.files
    }


def test_the_freshness_daemon_judges_the_payment_tables_by_their_latest_load(daemons):
    instance = daemons.instance
    assert FreshnessDaemon.daemon_type() in instance.get_required_daemon_types()

    def states() -> dict[str, FreshnessState]:
        list(FreshnessDaemon().run_iteration(daemons))
        records = instance.get_freshness_state_records(PAYMENTS)
        return {key.to_user_string(): records[key].freshness_state for key in PAYMENTS}

    assert set(states().values()) == {FreshnessState.UNKNOWN}  # never loaded
    # Any day's load counts, a historical one too (the newest-day check tells them apart).
    instance.report_runless_asset_event(
        dg.AssetMaterialization(PAYMENTS[0], partition="2026-03-08")
    )
    assert states() == {
        "raw/payments": FreshnessState.PASS,
        "raw/payments_rejected": FreshnessState.UNKNOWN,
    }
