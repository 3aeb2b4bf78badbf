"""`make run`: materialise every asset of every location, headless, and print what happened.

Locations run in the order dg.toml lists them, which is their dependency order (a contract
test holds that). Within a location, unpartitioned assets run in one run; partitioned assets
run for the partitions their sensors request right now (for payments: the days that have
files), exactly the runs production would start. Runs are recorded in the local Dagster
instance, so the UI shows them afterwards.

The exit status says whether every run succeeded. A failed asset check does not fail `make run`:
it is news about the data (the demo shop's first day is an incident whose reject check fails on
purpose), shown in the table with the partition it failed on. A check that must stop the
pipeline is declared `blocking`; its failure then fails its run, and so `make run`.
"""

import importlib
import os
import signal
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import dagster as dg
from dagster._utils.interrupts import check_captured_interrupt

from platform_devkit.instance import fail_runs_of_dead_workers, locations
from platform_devkit.local import say

RUN_TAGS = {"dagster/from": "make run"}
# The table below is the output; the runs' own logs go to the instance (and the UI).
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass
class AssetLine:
    location: str
    key: str
    rows: int | None = None
    seconds: float = 0.0
    partitions: int = 0
    failed: bool = False
    # check name -> partition (None: unpartitioned) -> passed, as of its latest evaluation there
    checks: dict[str, dict[str | None, bool]] = field(default_factory=dict)

    def failed_checks(self) -> dict[str, list[str | None]]:
        """check name -> the partitions it failed on, for the checks that failed anywhere."""
        failed = {
            name: sorted((p for p, passed in partitions.items() if not passed), key=str)
            for name, partitions in sorted(self.checks.items())
        }
        return {name: partitions for name, partitions in failed.items() if partitions}

    def status(self) -> str:
        """The table's status: ok, FAILED (a run failed) or CHECK FAILED, then the number of
        partitions and each failed check with the partitions it failed on."""
        failed = self.failed_checks()
        status = "FAILED" if self.failed else "CHECK FAILED" if failed else "ok"
        if self.partitions:
            status += f" ({self.partitions} partitions)"
        if failed:
            names = [
                name if partitions == [None] else f"{name} ({', '.join(map(str, partitions))})"
                for name, partitions in failed.items()
            ]
            status += f"; failed checks: {', '.join(names)}"
        return status


def load_definitions(module: str) -> dg.Definitions:
    defs = importlib.import_module(module).defs
    return defs() if callable(defs) else defs


def _rows(metadata: Mapping[str, dg.MetadataValue]) -> int | None:
    for key in ("dagster/partition_row_count", "dagster/row_count"):
        if key in metadata:
            return int(metadata[key].value)
    return None


def _record(
    result: dg.ExecuteInProcessResult,
    instance: dg.DagsterInstance,
    location: str,
    lines: dict[str, AssetLine],
    selected: Iterable[dg.AssetKey],
) -> None:
    """Add a run's materialisations (rows, seconds since their step started) and check results
    to the table; a selected asset the failed run did not materialise is FAILED."""
    started: dict[str, float] = {}
    for entry in instance.all_logs(result.run_id):
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            started[event.step_key] = entry.timestamp
        elif event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.step_materialization_data.materialization
            key = materialization.asset_key.to_user_string()
            line = lines.setdefault(key, AssetLine(location, key))
            rows = _rows(materialization.metadata)
            if rows is not None:
                line.rows = rows if materialization.partition is None else (line.rows or 0) + rows
            # dbt reports each model's own duration; otherwise time since the step started.
            own = materialization.metadata.get("Execution Duration")
            since_start = entry.timestamp - started.get(event.step_key, entry.timestamp)
            line.seconds += float(own.value) if own is not None else since_start
            line.partitions += materialization.partition is not None
    tags = result.dagster_run.tags
    run_partition = tags.get("dagster/partition") or (
        f"{tags['dagster/asset_partition_range_start']}..{tags['dagster/asset_partition_range_end']}"
        if "dagster/asset_partition_range_start" in tags
        else None
    )
    for evaluation in result.get_asset_check_evaluations():
        key = evaluation.asset_key.to_user_string()
        line = lines.setdefault(key, AssetLine(location, key))
        partition = evaluation.partition or run_partition
        line.checks.setdefault(evaluation.check_name, {})[partition] = evaluation.passed
    if not result.success:
        materialized = {e.asset_key for e in result.get_asset_materialization_events()}
        for key in set(selected) - materialized:
            name = key.to_user_string()
            lines.setdefault(name, AssetLine(location, name)).failed = True


def _sensor_partitions(
    defs: dg.Definitions, instance: dg.DagsterInstance
) -> list[tuple[dg.AssetSelection, dg.PartitionKeyRange]]:
    """(selection, partition key range) of every run the location's sensors for partitioned
    assets request now; a backfill (several days at once) as the ranged runs its backfill
    policy makes (automation and freshness sensors start no such runs and are left alone)."""
    graph = defs.resolve_asset_graph()
    requests = []
    for sensor in defs.sensors or []:
        if isinstance(sensor, dg.AutomationConditionSensorDefinition):
            continue
        selection = sensor.asset_selection or (
            getattr(sensor.job, "selection", None) if sensor.has_jobs else None
        )
        targets = selection.resolve(graph) if selection is not None else set()
        if not any(graph.get(key).partitions_def for key in targets):
            continue
        context = dg.build_sensor_context(
            instance=instance, resources=defs.resources, definitions=defs
        )
        result = sensor(context)
        run_requests = result.run_requests if isinstance(result, dg.SensorResult) else result
        for request in run_requests or []:
            if request.asset_graph_subset is not None:
                requests += [(selection, r) for r in _backfill_ranges(graph, request)]
            elif request.partition_key:
                key = request.partition_key
                requests.append((selection, dg.PartitionKeyRange(key, key)))
    return requests


def _backfill_ranges(graph, request: dg.RunRequest) -> list[dg.PartitionKeyRange]:
    """The ranged runs the backfill daemon makes of a backfill request: consecutive
    partitions, at most the backfill policy's max_partitions_per_run each."""
    key, subset = next(iter(request.asset_graph_subset.partitions_subsets_by_asset_key.items()))
    node = graph.get(key)
    policy = node.backfill_policy
    size = (policy.max_partitions_per_run if policy else 1) or len(subset)
    ranges = []
    for whole in subset.get_partition_key_ranges(node.partitions_def):
        keys = node.partitions_def.get_partition_keys_in_range(whole)
        ranges += [
            dg.PartitionKeyRange(keys[i], keys[min(i + size, len(keys)) - 1])
            for i in range(0, len(keys), size)
        ]
    return ranges


@contextmanager
def stoppable() -> Iterator[threading.Event]:
    """Let SIGTERM and Ctrl-C stop a run that waits for a pool slot; the event tells whether
    they did.

    Dagster's in-process executor holds an interrupt until its next step starts (1.13), and a
    step waiting for a slot (its pool busy with another run's load) polls without looking, so
    `make run` behind a busy pool could not be stopped. A watcher raises an interrupt Dagster
    has held for a second in the main thread, where the run fails as interrupted and leaves the
    pool's queue.
    """
    interrupted = threading.Event()
    done = threading.Event()
    main = threading.main_thread().ident

    # SIGUSR1, which Dagster leaves alone, makes the main thread raise where it is.
    def raise_interrupt(_signum: int, _frame: object) -> None:
        raise dg.DagsterExecutionInterruptedError("interrupted while waiting")

    def watch() -> None:
        held = 0
        while not done.wait(0.25):
            held = held + 1 if check_captured_interrupt() else 0
            if held >= 4:
                interrupted.set()
                signal.pthread_kill(main, signal.SIGUSR1)
                return

    previous = signal.signal(signal.SIGUSR1, raise_interrupt)
    watcher = threading.Thread(target=watch, name="interrupt-watcher", daemon=True)
    watcher.start()
    try:
        yield interrupted
    finally:
        done.set()
        watcher.join()
        signal.signal(signal.SIGUSR1, previous)


def _materialize(
    instance: dg.DagsterInstance, tags: Mapping[str, str] | None = None, **kwargs
) -> dg.ExecuteInProcessResult:
    """One run, stopped (KeyboardInterrupt once recorded) by SIGTERM or Ctrl-C."""
    with stoppable() as interrupted:
        result = dg.materialize(
            instance=instance,
            tags={**RUN_TAGS, **(tags or {})},
            run_config=QUIET,
            raise_on_error=False,
            **kwargs,
        )
    if interrupted.is_set():
        raise KeyboardInterrupt
    return result


def run_location(
    name: str, module: str, instance: dg.DagsterInstance, lines: dict[str, AssetLine]
) -> bool:
    defs = load_definitions(module)
    graph = defs.resolve_asset_graph()
    unpartitioned = [
        key for key in graph.materializable_asset_keys if graph.get(key).partitions_def is None
    ]
    everything = [*(defs.assets or []), *(defs.asset_checks or [])]
    ok = True
    if unpartitioned:
        say(f"{name}: materialising {len(unpartitioned)} unpartitioned asset(s)")
        result = _materialize(
            instance,
            assets=everything,
            selection=dg.AssetSelection.assets(*unpartitioned),
            resources=defs.resources,
        )
        _record(result, instance, name, lines, unpartitioned)
        ok &= result.success
    for selection, partitions in _sensor_partitions(defs, instance):
        one = partitions.start == partitions.end
        say(
            f"{name}: materialising partition {partitions.start}"
            if one
            else f"{name}: materialising partitions {partitions.start} to {partitions.end}"
        )
        result = _materialize(
            instance,
            assets=everything,
            selection=selection,
            resources=defs.resources,
            **(
                {"partition_key": partitions.start}
                if one
                else {
                    "tags": {
                        "dagster/asset_partition_range_start": partitions.start,
                        "dagster/asset_partition_range_end": partitions.end,
                    }
                }
            ),
        )
        _record(result, instance, name, lines, selection.resolve(graph))
        ok &= result.success
    return ok


def print_table(lines: dict[str, AssetLine]) -> None:
    header = f"{'location':<16}{'asset':<36}{'rows':>12}{'seconds':>10}  status"
    print(header)
    print("-" * len(header))
    for line in lines.values():
        rows = "-" if line.rows is None else f"{line.rows:,}"
        print(f"{line.location:<16}{line.key:<36}{rows:>12}{line.seconds:>10.1f}  {line.status()}")


def run_everything(env: Mapping[str, str]) -> int:
    """Materialise all locations in order; print the table; return a process exit code (0 when
    every run succeeded, failed checks or not)."""
    os.environ.update(env)
    instance = dg.DagsterInstance.get()
    # No daemon runs here: a run left behind by a killed process would hold its pool slot
    # forever and the next run of that pool would wait for it.
    for run_id in fail_runs_of_dead_workers(instance):
        say(f"run {run_id} had lost its worker: marked failed, its pool slots freed")
    lines: dict[str, AssetLine] = {}
    ok = True
    started = time.monotonic()
    for location in locations():
        ok &= run_location(location["name"], location["module"], instance, lines)
    say(f"done in {time.monotonic() - started:.0f}s")
    print_table(lines)
    failed_checks = sum(len(p) for line in lines.values() for p in line.failed_checks().values())
    if failed_checks:
        say(
            f"{failed_checks} check result(s) failed (CHECK FAILED above): news about the data, "
            "so make run still succeeds; a blocking check would have failed its run"
        )
    return 0 if ok else 1
