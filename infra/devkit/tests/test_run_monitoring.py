"""Run monitoring on the local platform fails a run whose worker is gone and frees the pool slot
it held, so the next run of the pool proceeds.

Everything is what `make dev` runs: the instance as the devkit writes it (PostgreSQL storage,
queued runs, pools of one, LocalRunLauncher), a code server started as the daemon starts one,
run workers it spawns, and the daemon's own queue, monitoring and slot-freeing iterations,
called once each instead of waiting for the daemon's loops.

A code server notices a dead worker of its own within half a second and fails the run itself,
unless it cannot: it is gone, or its check died on the database being down (Dagster 1.13 ends
that thread on the first error). The tests stop the code server while the worker dies, so that
only run monitoring can notice, as after either of those.
"""

import importlib.util
import logging
import os
import signal
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import dagster as dg
import psutil
import pytest
from dagster._core.test_utils import create_test_daemon_workspace_context, freeze_time
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import PythonFileTarget
from dagster._daemon.monitoring import (
    execute_concurrency_slots_iteration,
    execute_run_monitoring_iteration,
)
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
    QueuedRunCoordinatorDaemon,
)

from platform_devkit.bootstrap import bootstrap
from platform_devkit.instance import process_is_alive, run_worker, write_instance
from platform_devkit.local import LocalPlatform
from platform_devkit.pytest_plugin import server_folder
from platform_devkit.testing import wait_until

pytestmark = pytest.mark.integration

LOCATION_FILE = Path(__file__).with_name("pooled_runs.py")
LOCATION = "pooled_runs"
LOGGER = logging.getLogger("run_monitoring_test")


def _location_module():
    spec = importlib.util.spec_from_file_location(LOCATION, LOCATION_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


POOLED_RUNS = _location_module()


@pytest.fixture(scope="module")
def platform() -> Iterator[LocalPlatform]:
    """A platform of this module's own: a test stops its server."""
    with server_folder() as state:
        platform = LocalPlatform(state=state, environ={}, progress=lambda _: None)
        platform.start_postgres()
        try:
            env = platform.env()
            bootstrap(env)
            write_instance(Path(env["DAGSTER_HOME"]))
            yield platform
        finally:
            platform.stop_postgres()


@pytest.fixture
def workspace(
    platform: LocalPlatform, monkeypatch: pytest.MonkeyPatch
) -> Iterator[WorkspaceProcessContext]:
    """The instance from the platform's dagster.yaml and the location's code server, started
    the way the daemon starts code servers."""
    for key, value in platform.env().items():
        monkeypatch.setenv(key, value)
    target = PythonFileTarget(
        python_file=str(LOCATION_FILE),
        attribute="defs",
        working_directory=str(LOCATION_FILE.parent),
        location_name=LOCATION,
    )
    try:
        with (
            dg.DagsterInstance.get() as instance,
            create_test_daemon_workspace_context(target, instance) as context,
        ):
            yield context
    finally:
        # A code server waits for its runs before it shuts down; a failed test may leave one.
        for server in psutil.Process().children():
            try:
                if LOCATION in " ".join(server.cmdline()):
                    for process in [*server.children(recursive=True), server]:
                        process.kill()
                    server.wait(10)
            except psutil.NoSuchProcess:
                continue


# A run worker starts, loads its definitions and queues for a slot on two busy cores.
_wait_for = partial(wait_until, timeout=90)


def _submit(context: WorkspaceProcessContext, job_name: str) -> str:
    """Queue a run of the job as the webserver does, then let the daemon's queue launch what the
    pool admits."""
    request = context.create_request_context()
    remote_job = (
        request.get_code_location(LOCATION).get_repository("__repository__").get_full_job(job_name)
    )
    run = context.instance.create_run_for_job(
        job_def=POOLED_RUNS.defs.get_job_def(job_name),
        remote_job_origin=remote_job.get_remote_origin(),
        job_code_origin=remote_job.get_python_origin(),
    )
    context.instance.submit_run(run.run_id, request)
    _dequeue(context)
    return run.run_id


def _dequeue(context: WorkspaceProcessContext) -> None:
    list(QueuedRunCoordinatorDaemon(interval_seconds=1).run_iteration(context))


def _status(context: WorkspaceProcessContext, run_id: str) -> dg.DagsterRunStatus:
    return context.instance.get_run_by_id(run_id).status


def _slot_holders(context: WorkspaceProcessContext) -> list[str]:
    info = context.instance.event_log_storage.get_concurrency_info(POOLED_RUNS.POOL)
    return [slot.run_id for slot in info.claimed_slots]


def _run_holding_the_slot(context: WorkspaceProcessContext) -> tuple[str, int]:
    """A `held` run that took the pool's slot, and its worker's pid."""
    run_id = _submit(context, "held")
    _wait_for(lambda: _slot_holders(context) == [run_id], "the held run takes the pool's slot")
    pid, _ = run_worker(context.instance, run_id)
    assert _status(context, run_id) == dg.DagsterRunStatus.STARTED
    return run_id, pid


def _failure_message(context: WorkspaceProcessContext, run_id: str) -> str:
    (failure,) = context.instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    return failure.message


def _slots_freed_after_the_configured_delay(context: WorkspaceProcessContext) -> None:
    """The daemon's slot iteration, once right away and once as late as the instance says."""
    list(execute_concurrency_slots_iteration(context, LOGGER))
    delay = context.instance.run_monitoring_settings["free_slots_after_run_end_seconds"]
    with freeze_time(time.time() + delay + 1):
        list(execute_concurrency_slots_iteration(context, LOGGER))


def _the_next_run_of_the_pool_succeeds(context: WorkspaceProcessContext, queued: str) -> None:
    _dequeue(context)
    _wait_for(
        lambda: (
            _status(context, queued) in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE)
        ),
        "the queued run finishes",
    )
    assert _status(context, queued) == dg.DagsterRunStatus.SUCCESS
    assert _slot_holders(context) == []


def test_a_run_whose_worker_was_killed_is_failed_by_run_monitoring_and_frees_its_slot(workspace):
    held, pid = _run_holding_the_slot(workspace)
    queued = _submit(workspace, "quick")
    assert _status(workspace, queued) == dg.DagsterRunStatus.QUEUED  # the pool's slot is taken
    server = psutil.Process(pid).parent()

    server.suspend()
    try:
        os.kill(pid, signal.SIGKILL)
        _wait_for(lambda: not process_is_alive(*run_worker(workspace.instance, held)), "death")
        list(execute_run_monitoring_iteration(workspace, LOGGER))
        assert _status(workspace, held) == dg.DagsterRunStatus.FAILURE
    finally:
        server.resume()

    assert f"run worker process {pid} has exited" in _failure_message(workspace, held)
    assert _slot_holders(workspace) == [held]  # until free_slots_after_run_end_seconds pass
    _slots_freed_after_the_configured_delay(workspace)
    assert _slot_holders(workspace) == []
    _the_next_run_of_the_pool_succeeds(workspace, queued)


def test_a_run_that_lost_its_database_mid_load_is_failed_once_the_server_is_back(
    platform, workspace
):
    port = platform.settings.embedded_port
    held, pid = _run_holding_the_slot(workspace)
    queued = _submit(workspace, "quick")
    server = psutil.Process(pid).parent()
    threads = server.num_threads()
    try:
        platform.stop_postgres()
        _wait_for(lambda: not process_is_alive(pid, time.time()), "the worker ends")
        # The code server notices, cannot record it without its database, and its check (a
        # thread) ends for good: Dagster 1.13 does not catch that error.
        _wait_for(lambda: server.num_threads() < threads, "the code server's check ends")
        platform.start_postgres()

        assert platform.settings.embedded_port == port
        time.sleep(2)
        assert _status(workspace, held) == dg.DagsterRunStatus.STARTED
        list(execute_run_monitoring_iteration(workspace, LOGGER))

        assert _status(workspace, held) == dg.DagsterRunStatus.FAILURE
        assert f"run worker process {pid} has exited" in _failure_message(workspace, held)
        _slots_freed_after_the_configured_delay(workspace)
        _the_next_run_of_the_pool_succeeds(workspace, queued)
    finally:
        # It would wait forever for the dead worker it no longer checks on before shutting down.
        server.kill()
        server.wait(10)


def test_a_run_whose_worker_lives_is_left_alone(workspace):
    held, _ = _run_holding_the_slot(workspace)

    list(execute_run_monitoring_iteration(workspace, LOGGER))
    _slots_freed_after_the_configured_delay(workspace)

    assert _status(workspace, held) == dg.DagsterRunStatus.STARTED
    assert _slot_holders(workspace) == [held]
    workspace.instance.run_launcher.terminate(held)
    _wait_for(lambda: _status(workspace, held) == dg.DagsterRunStatus.CANCELED, "cancellation")
