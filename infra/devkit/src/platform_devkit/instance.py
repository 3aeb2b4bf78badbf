"""The local Dagster instance (dagster.yaml) and its run launcher; `make dev` runs `dg dev`,
which reads the workspace from dg.toml.

The instance mirrors what the Helm values give the cluster: PostgreSQL storage, a queued run
coordinator with limits, run monitoring (with the same timeouts), run retries (enabled, none by
default: each location sets its own with the `dagster/max_retries` run tag) and a compute log
manager every process of the platform shares. Connection values are `env:` references, so no
password is ever written into the file.

Run monitoring fails a run whose worker died only if the run launcher can tell: in the cluster
the K8sRunLauncher asks Kubernetes about the run's Job; Dagster's DefaultRunLauncher, which
starts each run as a subprocess of its code server, cannot tell at all (1.13), so a run whose
process was killed, or died with its database, stayed STARTED and kept its pool slots.
`LocalRunLauncher` is the DefaultRunLauncher plus that check, asked of this machine's processes.
"""

import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psutil
import yaml
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus

from platform_devkit import locations as declared_locations
from platform_devkit.paths import REPO_ROOT

MAX_CONCURRENT_RUNS = 4

# Run monitoring as charts/dagster/values.yaml sets it for the cluster (a test holds them equal);
# start_timeout_seconds and max_resume_run_attempts are the system chart's defaults, pinned.
RUN_MONITORING = {
    "enabled": True,
    # A run whose worker never reported in is failed after five minutes.
    "start_timeout_seconds": 300,
    "cancel_timeout_seconds": 300,
    "max_runtime_seconds": 10800,
    # A dead worker fails its run; nothing resumes it (the launcher cannot, and must not be
    # imported in the location images: with resumes off, run workers never load it).
    "max_resume_run_attempts": 0,
    "poll_interval_seconds": 30,
    # Pool slots still held by a run that ended (its worker died holding them) are freed a
    # minute later; without this they are held until someone frees them by hand.
    "free_slots_after_run_end_seconds": 60,
}

# libpq options for Dagster's own storage connections (daemon, webserver, run workers): a
# server that stops answering fails a connection attempt after 10 s and an open connection
# within about a minute, instead of leaving the process waiting forever.
STORAGE_CONNECTION_PARAMS = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "tcp_user_timeout": 60_000,
}

# Steps' stdout and stderr, below DAGSTER_HOME: every process that runs a step (a run worker,
# a subprocess of its code server or in its container) and the webserver that shows them see
# the same folder (the containers driver mounts DAGSTER_HOME at the same path). The cluster's
# equivalent is the compute-logs volume (charts/dagster/values.yaml computeLogManager).
COMPUTE_LOGS_FOLDER = "compute_logs"

# psutil derives a process's start time from the boot time in whole seconds.
START_TIME_SLACK_SECONDS = 2


def instance_config(dagster_home: Path | None = None) -> dict:
    """dagster.yaml; with `dagster_home`, the compute logs go to its COMPUTE_LOGS_FOLDER."""
    config = {
        "storage": {
            "postgres": {
                "postgres_db": {
                    "hostname": {"env": "DAGSTER_PG_HOST"},
                    "port": {"env": "DAGSTER_PG_PORT"},
                    "username": {"env": "DAGSTER_PG_USER"},
                    "password": {"env": "DAGSTER_PG_PASSWORD"},
                    "db_name": {"env": "DAGSTER_PG_DB"},
                    "params": dict(STORAGE_CONNECTION_PARAMS),
                }
            }
        },
        "run_coordinator": {
            "module": "dagster.core.run_coordinator",
            "class": "QueuedRunCoordinator",
        },
        "run_launcher": {"module": __name__, "class": LocalRunLauncher.__name__},
        "concurrency": {
            # Two cores locally: a handful of runs at once; backfills never crowd out the rest.
            "runs": {
                "max_concurrent_runs": MAX_CONCURRENT_RUNS,
                "tag_concurrency_limits": [{"key": "dagster/backfill", "limit": 2}],
            },
            # Ops that must not overlap (one dlt pipeline state per source) declare a pool;
            # each pool admits one op at a time unless configured otherwise.
            "pools": {"default_limit": 1},
        },
        "run_monitoring": dict(RUN_MONITORING),
        # Enabled with no retry by default: a location opts in per run with the tag
        # dagster/max_retries (its automation and jobs set it), as in the cluster's values.
        "run_retries": {"enabled": True, "max_retries": 0},
        "code_servers": {"local_startup_timeout": 300},
        "telemetry": {"enabled": False},
    }
    if dagster_home is not None:
        config["compute_logs"] = {
            "module": "dagster.core.storage.local_compute_log_manager",
            "class": "LocalComputeLogManager",
            "config": {"base_dir": str(dagster_home / COMPUTE_LOGS_FOLDER)},
        }
    return config


class LocalRunLauncher(dg.DefaultRunLauncher):
    """Dagster's default run launcher, able to tell run monitoring whether a run's worker lives.

    A run's worker is the process that recorded its pid in the run's first engine event that
    carries one: "Started process for run" for a run a code server started, "Executing steps in
    process" for one executed in process (`make run`). It lives while a process with that pid
    runs, is no zombie, and started before it recorded the event (a later one reuses the pid).
    The daemon, `make run` and every run worker share one machine here; a worker in a container
    (the `containers` e2e driver) is found under its pid in the container's namespace.
    """

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        worker = run_worker(self._instance, run.run_id)
        if worker is None:
            # Recorded right after the run starts; max_runtime_seconds bounds a run that never
            # gets that far.
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no worker has reported its pid yet")
        pid, reported_at = worker
        if process_is_alive(pid, reported_at):
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=str(pid))
        return CheckRunHealthResult(
            WorkerStatus.FAILED, f"run worker process {pid} has exited", run_worker_id=str(pid)
        )

    def get_run_worker_debug_info(
        self, run: dg.DagsterRun, include_container_logs: bool | None = True
    ) -> str | None:
        worker = run_worker(self._instance, run.run_id)
        if worker is None:
            return None
        pid, reported_at = worker
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(reported_at))
        return f"The run worker was process {pid} on this machine (reported at {started})."


def run_worker(instance: dg.DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """(pid, when it was recorded) of the process that executes the run, if it has said so."""
    for record in instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ENGINE_EVENT
    ).records:
        event = record.event_log_entry.dagster_event
        pid = event.engine_event_data.metadata.get("pid") if event else None
        if pid is not None:
            return int(pid.value), record.event_log_entry.timestamp
    return None


def process_is_alive(pid: int, since: float) -> bool:
    """Whether a process that is `pid` in its own pid namespace, started no later than `since`,
    still runs (a zombie has exited; only its parent has not collected it yet)."""
    return any(_runs_since(candidate, since) for candidate in _pids_known_as(pid))


def _runs_since(pid: int, since: float) -> bool:
    try:
        process = psutil.Process(pid)
        return (
            process.status() != psutil.STATUS_ZOMBIE
            and process.create_time() <= since + START_TIME_SLACK_SECONDS
        )
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # it exists; whose it is cannot be told


def _pids_known_as(pid: int) -> Iterator[int]:
    """This machine's pids of the processes that are `pid` in their own pid namespace: `pid`
    itself, then any in a container (Linux lists a process's pid in each namespace it is in,
    its own last, as NSpid in /proc/<pid>/status)."""
    yield pid
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            lines = status.read_text().splitlines()
        except OSError:
            continue  # exited while we looked
        nspid = next((line.split()[1:] for line in lines if line.startswith("NSpid:")), [])
        if len(nspid) > 1 and int(nspid[-1]) == pid:
            yield int(nspid[0])


def fail_runs_of_dead_workers(instance: dg.DagsterInstance) -> list[str]:
    """One pass of what run monitoring does in the daemon, for `make run`, which has no daemon:
    fail every STARTED run whose worker is gone, and free the pool slots held by runs that
    ended and have no worker left (the daemon waits free_slots_after_run_end_seconds first; no
    process remains here that could still use them). Returns the ids of the runs it failed."""
    launcher = instance.run_launcher
    if not launcher.supports_check_run_worker_health:
        return []
    failed = []
    started = instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
    for record in started:
        health = launcher.check_run_worker_health(record.dagster_run)
        if health.status not in (WorkerStatus.RUNNING, WorkerStatus.SUCCESS):
            instance.report_run_failed(record.dagster_run, f"Detected run worker status {health}.")
            failed.append(record.dagster_run.run_id)
    for run_id in instance.event_log_storage.get_concurrency_run_ids():
        run = instance.get_run_by_id(run_id)
        worker = run_worker(instance, run_id) if run is not None else None
        if run is None or (run.is_finished and (worker is None or not process_is_alive(*worker))):
            instance.event_log_storage.free_concurrency_slots_for_run(run_id)
    return failed


def write_instance(dagster_home: Path) -> Path:
    dagster_home.mkdir(parents=True, exist_ok=True)
    path = dagster_home / "dagster.yaml"
    path.write_text(yaml.safe_dump(instance_config(dagster_home), sort_keys=False))
    return path


def locations() -> list[dict[str, str]]:
    """Every code location listed in dg.toml, declarations checked: name, module and folder."""
    return [loc.as_dict() for loc in declared_locations.load(REPO_ROOT)]
