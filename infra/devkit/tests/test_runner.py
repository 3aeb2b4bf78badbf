"""`make run` (platform_devkit.runner): its summary keeps every partition's check result, a run
behind a busy pool stops on SIGTERM, and runs left behind by a killed process neither block
their pool nor stay STARTED."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest

from platform_devkit.instance import fail_runs_of_dead_workers
from platform_devkit.runner import AssetLine, print_table, run_location
from platform_devkit.testing import wait_until

HERE = Path(__file__).parent


def test_a_check_that_failed_on_one_partition_is_reported_with_that_partition(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(HERE))
    lines: dict[str, AssetLine] = {}

    ok = run_location("checks", "checked_days", dg.DagsterInstance.ephemeral(), lines)
    print_table(lines)

    assert ok  # both runs succeeded: a failed check is news about the data
    line = lines["daily_rows"]
    assert line.partitions == 2
    assert line.checks == {"rejects_within_limit": {"2026-03-01": False, "2026-03-02": True}}
    (row,) = [r for r in capsys.readouterr().out.splitlines() if r.startswith("checks")]
    assert row.endswith(
        "CHECK FAILED (2 partitions); failed checks: rejects_within_limit (2026-03-01)"
    )


def test_an_asset_whose_run_failed_is_failed_in_the_summary_and_the_others_keep_their_rows(
    monkeypatch,
):
    monkeypatch.syspath_prepend(str(HERE))
    lines: dict[str, AssetLine] = {}

    ok = run_location("failing", "failing_assets", dg.DagsterInstance.ephemeral(), lines)

    assert not ok
    assert lines["broken_table"].status() == "FAILED"
    assert lines["loaded_table"].status() == "ok"


def test_a_check_status_reads_failed_partitions_in_order_and_clears_on_a_passing_rerun():
    line = AssetLine("ingestion", "raw/payments", partitions=3)
    line.checks = {
        "reject_ratio_within_limit": {"2026-03-04": False, "2026-03-01": False, "2026-03-02": True},
        "row_count_positive": {"2026-03-01": True},
        "unpartitioned_check": {None: False},
    }

    assert line.status() == (
        "CHECK FAILED (3 partitions); failed checks: "
        "reject_ratio_within_limit (2026-03-01, 2026-03-04), unpartitioned_check"
    )

    line.checks["reject_ratio_within_limit"] = {"2026-03-01": True, "2026-03-04": True}
    line.checks["unpartitioned_check"] = {None: True}
    assert line.status() == "ok (3 partitions)"
    line.failed = True
    assert line.status() == "FAILED (3 partitions)"


def _script(body: str) -> list[str]:
    """A Python process in the platform's environment that can import the test assets."""
    prelude = f"import sys; sys.path.insert(0, {str(HERE)!r})\n"
    return [sys.executable, "-c", prelude + textwrap.dedent(body)]


def _pool(instance: dg.DagsterInstance):
    from pooled_assets import POOL

    return instance.event_log_storage.get_concurrency_info(POOL)


@pytest.fixture
def instance(platform_env, monkeypatch):
    """The platform's instance (dagster.yaml as the devkit writes it) and the test assets."""
    monkeypatch.syspath_prepend(str(HERE))
    with dg.DagsterInstance.get() as instance:
        yield instance


@pytest.mark.integration
def test_sigterm_stops_a_run_that_waits_for_a_busy_pool(instance):
    from pooled_assets import POOL

    instance.event_log_storage.initialize_concurrency_limit_to_default(POOL)
    instance.event_log_storage.claim_concurrency_slot(POOL, "another-run", "load")
    runner = subprocess.Popen(
        _script("""
            import dagster as dg
            from platform_devkit.runner import run_location
            try:
                run_location("pooled", "pooled_assets", dg.DagsterInstance.get(), {})
            except KeyboardInterrupt:
                sys.exit(130)
        """),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        waiting = wait_until(
            lambda: [s.run_id for s in _pool(instance).pending_steps if s.run_id != "another-run"],
            "the runner's run queues for the pool's slot",
        )
        time.sleep(1)  # well into the wait
        runner.send_signal(signal.SIGTERM)
        returncode = runner.wait(timeout=20)
    finally:
        runner.kill()
        instance.event_log_storage.free_concurrency_slots_for_run("another-run")

    assert returncode == 130, runner.stderr.read().decode()[-2000:]
    (run_id,) = waiting
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
    assert [s.run_id for s in _pool(instance).pending_steps] == []


@pytest.mark.integration
def test_a_run_left_by_a_killed_process_is_failed_and_its_slot_freed_before_the_next(instance):
    crashed = subprocess.Popen(
        _script("""
            import dagster as dg
            from pooled_assets import slot_holder
            dg.materialize([slot_holder], instance=dg.DagsterInstance.get())
        """),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        (holder,) = wait_until(
            lambda: [s.run_id for s in _pool(instance).claimed_slots], "the load takes the slot"
        )
    finally:
        os.kill(crashed.pid, signal.SIGKILL)
        crashed.wait()
    assert instance.get_run_by_id(holder).status == dg.DagsterRunStatus.STARTED

    failed = fail_runs_of_dead_workers(instance)
    lines: dict[str, AssetLine] = {}
    ok = run_location("pooled", "pooled_assets", instance, lines)

    assert failed == [holder]
    assert instance.get_run_by_id(holder).status == dg.DagsterRunStatus.FAILURE
    assert ok
    assert lines["pooled_table"].status() == "ok"
    assert _pool(instance).claimed_slots == []
