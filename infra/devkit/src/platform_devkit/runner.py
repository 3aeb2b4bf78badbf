"""`make run`: materialise every asset of every location, headless, and print what happened.

Locations run in the order dg.toml lists them, which is their dependency order (a contract
test holds that). Within a location, unpartitioned assets run in one run; partitioned assets
run for the partitions their sensors request right now (for payments: the days that have
files), exactly the runs production would start. Runs are recorded in the local Dagster
instance, so the UI shows them afterwards.
"""

import importlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import dagster as dg

from platform_devkit.instance import locations
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
    # check name -> passed, as of its latest evaluation
    checks: dict[str, bool] = field(default_factory=dict)


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
) -> None:
    """Add a run's materialisations (rows, seconds since their step started) to the table."""
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
    for evaluation in result.get_asset_check_evaluations():
        key = evaluation.asset_key.to_user_string()
        line = lines.setdefault(key, AssetLine(location, key))
        line.checks[evaluation.check_name] = evaluation.passed
    if not result.success:
        for key in result.dagster_run.asset_selection or []:
            name = key.to_user_string()
            lines.setdefault(name, AssetLine(location, name)).failed = True


def _sensor_partitions(
    defs: dg.Definitions, instance: dg.DagsterInstance
) -> list[tuple[dg.AssetSelection, str]]:
    """(selection, partition key) of every run the location's sensors for partitioned assets
    request now (automation and freshness sensors start no such runs and are left alone)."""
    graph = defs.resolve_asset_graph()
    requests = []
    for sensor in defs.sensors or []:
        if isinstance(sensor, dg.AutomationConditionSensorDefinition) or not sensor.has_jobs:
            continue
        selection = getattr(sensor.job, "selection", None)
        targets = selection.resolve(graph) if selection is not None else set()
        if not any(graph.get(key).partitions_def for key in targets):
            continue
        context = dg.build_sensor_context(
            instance=instance, resources=defs.resources, definitions=defs
        )
        result = sensor(context)
        run_requests = result.run_requests if isinstance(result, dg.SensorResult) else result
        requests += [(selection, r.partition_key) for r in run_requests or [] if r.partition_key]
    return requests


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
        result = dg.materialize(
            assets=everything,
            selection=dg.AssetSelection.assets(*unpartitioned),
            resources=defs.resources,
            instance=instance,
            tags=RUN_TAGS,
            run_config=QUIET,
            raise_on_error=False,
        )
        _record(result, instance, name, lines)
        ok &= result.success
    for selection, partition in _sensor_partitions(defs, instance):
        say(f"{name}: materialising partition {partition}")
        result = dg.materialize(
            assets=everything,
            selection=selection,
            partition_key=partition,
            resources=defs.resources,
            instance=instance,
            tags=RUN_TAGS,
            run_config=QUIET,
            raise_on_error=False,
        )
        _record(result, instance, name, lines)
        ok &= result.success
    return ok


def print_table(lines: dict[str, AssetLine]) -> None:
    header = f"{'location':<16}{'asset':<36}{'rows':>12}{'seconds':>10}  status"
    print(header)
    print("-" * len(header))
    for line in lines.values():
        rows = "-" if line.rows is None else f"{line.rows:,}"
        status = "FAILED" if line.failed else "ok"
        if line.partitions:
            status += f" ({line.partitions} partitions)"
        failed = sorted(name for name, passed in line.checks.items() if not passed)
        if failed:
            status += f"; failed checks: {', '.join(failed)}"
        print(f"{line.location:<16}{line.key:<36}{rows:>12}{line.seconds:>10.1f}  {status}")


def run_everything(env: Mapping[str, str]) -> int:
    """Materialise all locations in order; print the table; return a process exit code."""
    os.environ.update(env)
    instance = dg.DagsterInstance.get()
    lines: dict[str, AssetLine] = {}
    ok = True
    started = time.monotonic()
    for location in locations():
        ok &= run_location(location["name"], location["module"], instance, lines)
    say(f"done in {time.monotonic() - started:.0f}s")
    print_table(lines)
    return 0 if ok else 1
