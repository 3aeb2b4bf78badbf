"""The payment tables under Dagster's own daemons, driven with Dagster's test utilities
(internal API; dagster is pinned exactly):

- sensor and backfill daemons: the landing sensor's first tick submits one backfill, the
  backfill daemon turns it into ranged runs of consecutive days, and every delivered day lands
  in raw as the day-by-day runs would have loaded it;
- the freshness daemon: it judges the tables' FreshnessPolicy by their latest load."""

import logging
import os
import time
from collections.abc import Iterator

import dagster as dg
import pytest
from dagster._core.definitions.freshness import FreshnessState
from dagster._core.events import DagsterEventType
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.test_utils import (
    create_test_daemon_workspace_context,
    freeze_time,
    instance_for_test,
)
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.backfill import execute_backfill_iteration
from dagster._daemon.freshness import FreshnessDaemon
from dagster._daemon.sensor import execute_sensor_iteration

from ingestion.defs.payments.partitions import PAYMENTS_PARTITIONS
from ingestion.defs.payments.sensors import ATTEMPT_TAG
from platform_ops.recovery import RUN_RETRY_TAGS

LOG = logging.getLogger(__name__)
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


HEADER = "payment_id,order_id,amount,currency,method,paid_at\n"
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


# -- recovery: bad days wait for a new file, failed days are retried after a backoff -------------

MINUTE = 60


def _cycle(daemons: WorkspaceProcessContext, at: float) -> None:
    """One sensor tick at `at`, then the backfill daemon until its runs finished."""
    with freeze_time(at):
        list(execute_sensor_iteration(daemons, LOG, None, None))
        for _ in range(3):
            list(execute_backfill_iteration(daemons, LOG))


def _loaded(platform_env) -> dict[str, int]:
    return dict(platform_env.query("SELECT file_date::text, count(*) FROM raw.payments GROUP BY 1"))


def _requests(instance: dg.DagsterInstance) -> list[tuple[str, ...]]:
    """(attempt, first day, last day) of every run, oldest first."""
    runs = list(reversed(instance.get_runs()))  # newest first otherwise
    return [
        (
            r.tags[ATTEMPT_TAG],
            r.tags.get("dagster/partition") or r.tags[RANGE_START],
            r.tags.get("dagster/partition") or r.tags[RANGE_END],
        )
        for r in runs
    ]


@pytest.mark.integration
def test_a_bad_day_of_a_history_fails_alone_and_loads_when_its_file_is_redelivered(
    platform_env, daemons
):
    delivery = platform_env.seed()  # 2026-03-06 .. 03-10, 03-09 held back
    (platform_env.landing / "payments_2026-03-09.csv").write_text("amount;currency\n")
    instance = daemons.instance
    start = time.time()

    _cycle(daemons, start)
    # Past every backoff: a bad file is not retried, only a new one helps.
    _cycle(daemons, start + 60 * MINUTE)

    good = {f.day.isoformat(): f.good_rows for f in delivery.files}
    assert _loaded(platform_env) == good
    assert _requests(instance) == [("0", "2026-03-06", "2026-03-10")]
    status = instance.get_status_by_partition(
        dg.AssetKey(["raw", "payments"]), [*good, "2026-03-09"], PAYMENTS_PARTITIONS
    )
    assert {day: s.value for day, s in status.items()} == {
        **dict.fromkeys(good, "MATERIALIZED"), "2026-03-09": "FAILED",
    }  # fmt: skip
    [failure] = [
        r.event_log_entry.dagster_event
        for r in instance.get_records_for_run(
            instance.get_runs()[0].run_id, of_type=DagsterEventType.STEP_FAILURE
        ).records
    ]
    reason = failure.step_failure_data.user_failure_data.metadata["bad_days"].value["2026-03-09"]
    assert "header lacks payment_id" in reason

    order = platform_env.query("SELECT min(order_id) FROM orders", database="shop")[0][0]
    (platform_env.landing / "payments_2026-03-09_resend.csv").write_text(
        f"{HEADER}900001,{order},12.50,EUR,card,2026-03-09T10:00:00Z\n"
    )
    _cycle(daemons, start + 61 * MINUTE)

    assert _requests(instance)[1:] == [("0", "2026-03-09", "2026-03-09")]
    assert _loaded(platform_env) == {**good, "2026-03-09": 1}


@pytest.mark.integration
def test_days_that_failed_for_another_reason_are_retried_after_a_backoff_then_given_up(
    platform_env, daemons, monkeypatch
):
    platform_env.seed()
    instance = daemons.instance
    password = os.environ["INGESTION_WAREHOUSE_PASSWORD"]
    monkeypatch.setenv("INGESTION_WAREHOUSE_PASSWORD", "not-the-password")  # login refused
    start = time.time()
    # 03-09 is held back: each attempt is a backfill of two ranged runs.
    ranges = [("2026-03-06", "2026-03-08"), ("2026-03-10", "2026-03-10")]

    _cycle(daemons, start)  # the first request fails
    _cycle(daemons, start + 1 * MINUTE)  # seen failed: retry 1 due in 5 minutes
    _cycle(daemons, start + 4 * MINUTE)
    assert sorted(_requests(instance)) == [("0", *r) for r in ranges]

    _cycle(daemons, start + 7 * MINUTE)  # retry 1, fails
    _cycle(daemons, start + 8 * MINUTE)  # retry 2 due in 15 minutes
    _cycle(daemons, start + 24 * MINUTE)  # retry 2, fails
    _cycle(daemons, start + 25 * MINUTE)  # retry 3 due in 30 minutes
    _cycle(daemons, start + 56 * MINUTE)  # retry 3, fails
    _cycle(daemons, start + 57 * MINUTE)  # given up
    _cycle(daemons, start + 180 * MINUTE)

    assert sorted(_requests(instance)) == [(str(n), *r) for n in range(4) for r in ranges]
    assert all(r.status == dg.DagsterRunStatus.FAILURE for r in instance.get_runs())
    assert platform_env.query("SELECT to_regclass('raw.payments')") == [(None,)]

    # Once the cause is gone, a retry loads the days: here a new file version lands.
    monkeypatch.setenv("INGESTION_WAREHOUSE_PASSWORD", password)
    (platform_env.landing / "payments_2026-03-08.csv").touch()
    _cycle(daemons, start + 181 * MINUTE)
    assert _requests(instance)[8:] == [("0", "2026-03-08", "2026-03-08")]
    assert set(_loaded(platform_env)) == {"2026-03-08"}


@pytest.mark.integration
def test_a_retry_loads_the_days_once_the_outage_is_over(platform_env, daemons, monkeypatch):
    delivery = platform_env.seed()
    instance = daemons.instance
    password = os.environ["INGESTION_WAREHOUSE_PASSWORD"]
    monkeypatch.setenv("INGESTION_WAREHOUSE_PASSWORD", "not-the-password")
    start = time.time()

    _cycle(daemons, start)
    _cycle(daemons, start + 1 * MINUTE)
    monkeypatch.setenv("INGESTION_WAREHOUSE_PASSWORD", password)
    _cycle(daemons, start + 7 * MINUTE)  # retry 1
    _cycle(daemons, start + 60 * MINUTE)

    assert [r[0] for r in _requests(instance)] == ["0", "0", "1", "1"]  # two ranges each
    assert _loaded(platform_env) == {f.day.isoformat(): f.good_rows for f in delivery.files}


@pytest.mark.integration
def test_a_history_requested_again_after_a_lost_cursor_is_not_loaded_twice(platform_env, daemons):
    platform_env.seed()
    instance = daemons.instance
    start = time.time()
    _cycle(daemons, start)
    [backfill] = instance.get_backfills()
    runs = {r.run_id for r in instance.get_runs()}

    # A restore brings back a sensor with no cursor: it sees the same files as new.
    for state in instance.all_instigator_state():
        instance.update_instigator_state(
            state.with_data(state.instigator_data._replace(cursor=None))
        )
    _cycle(daemons, start + MINUTE)

    assert [b.backfill_id for b in instance.get_backfills()] == [backfill.backfill_id]
    assert {r.run_id for r in instance.get_runs()} == runs
