"""The local Dagster instance: run monitoring as the cluster's, a run launcher that tells a live
run worker from a dead one, and an instance that run workers load without the devkit (the
location images do not contain it)."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest
import yaml

from platform_devkit.instance import RUN_MONITORING, instance_config, process_is_alive
from platform_devkit.paths import REPO_ROOT

CLUSTER_VALUES = REPO_ROOT / "charts" / "dagster" / "values.yaml"
# The system chart's defaults for the settings charts/dagster/values.yaml leaves alone.
CHART_DEFAULTS = {"enabled": True, "startTimeoutSeconds": 300, "maxResumeRunAttempts": 0}


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def test_run_monitoring_is_the_clusters():
    values = yaml.safe_load(CLUSTER_VALUES.read_text())
    cluster = {**CHART_DEFAULTS, **values["dagsterDaemon"]["runMonitoring"]}

    assert {_snake(key): value for key, value in cluster.items()} == RUN_MONITORING
    assert instance_config()["run_monitoring"] == RUN_MONITORING
    assert RUN_MONITORING["free_slots_after_run_end_seconds"] > 0


def test_the_instance_uses_the_local_run_launcher():
    assert instance_config()["run_launcher"] == {
        "module": "platform_devkit.instance",
        "class": "LocalRunLauncher",
    }


def test_a_live_process_is_alive_and_a_later_one_with_its_pid_is_not():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = psutil.Process(process.pid).create_time()

        assert process_is_alive(process.pid, since=started + 1)
        # A worker that recorded this pid an hour before this process started was another one.
        assert not process_is_alive(process.pid, since=started - 3600)
    finally:
        process.kill()
        process.wait()


def test_a_killed_process_is_dead_before_and_after_its_parent_collects_it():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    recorded = time.time() + 1
    os.kill(process.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while psutil.Process(process.pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the killed process did not become a zombie"
        time.sleep(0.05)

    assert not process_is_alive(process.pid, since=recorded)  # a zombie: exited, not collected
    process.wait()
    assert not process_is_alive(process.pid, since=recorded)


@pytest.mark.integration
def test_a_run_worker_loads_the_instance_without_the_devkit(platform_env):
    """As in a location image: the instance loads, reads and writes runs and events, and only
    the run launcher, which the daemon alone uses, would need the devkit."""
    script = textwrap.dedent("""
        import sys

        class NoDevkit:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "platform_devkit":
                    raise ModuleNotFoundError(name)

        sys.meta_path.insert(0, NoDevkit())
        import dagster as dg

        with dg.DagsterInstance.get() as instance:
            run = instance.create_run_for_job(dg.GraphDefinition("g").to_job("run_worker_test"))
            instance.report_engine_event("loaded without the devkit", run)
            assert instance.run_monitoring_enabled
            logs = [e.message for e in instance.all_logs(run.run_id)]
            assert "loaded without the devkit" in logs, logs
            try:
                instance.run_launcher
            except Exception as error:
                print(error)
    """)

    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert "Couldn't import module platform_devkit.instance" in result.stdout


def test_dagster_storage_and_the_locations_bound_their_connections_alike():
    import exports.defs.resources
    import ingestion.defs.resources

    storage = instance_config()["storage"]["postgres"]["postgres_db"]["params"]

    assert storage == ingestion.defs.resources.CONNECTION_OPTIONS
    assert storage == exports.defs.resources.CONNECTION_OPTIONS
    assert storage["keepalives"] == 1


def test_the_cluster_bounds_dagster_storage_connections_as_the_local_instance_does():
    cluster = yaml.safe_load(CLUSTER_VALUES.read_text())["postgresql"]["postgresqlParams"]

    assert cluster == instance_config()["storage"]["postgres"]["postgres_db"]["params"]
