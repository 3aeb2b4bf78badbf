"""The transformation location: its load time with the prepared manifest, under the dev flag,
and against preparing the manifest first; and a full dbt build through Dagster.

Loading only reads the defs state (the dbt manifest), in dev too: the location's
DbtProjectComponent has `prepare_if_dev: false`, so DAGSTER_IS_DEV_CLI (set by `dg dev` and
`dagster dev` for their code servers) no longer runs `dbt parse` at load. What a start would pay
without prepared state is the preparation itself (`dg utils refresh-defs-state` in the image
build, the devkit beside running servers), measured here in the location's own environment
before a load. Every run happens in a fresh interpreter, like a code server starting.
"""

import json
import subprocess
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import dagster as dg

from platform_bench.locations import Location, manifest_of
from platform_bench.platform import BenchPlatform

# Loads the definitions and resolves the asset graph, as a code server does before serving.
LOAD = """
import json, time
started = time.perf_counter()
import transformation
from transformation.definitions import defs
graph = defs().resolve_asset_graph()
print(json.dumps({
    "seconds": time.perf_counter() - started,
    "assets": len(graph.materializable_asset_keys),
    "module": transformation.__file__,
}))
"""
# Refreshes every state-backed component's defs state in place, the step `dg utils
# refresh-defs-state` runs for each (dagster_dg_cli.cli.defs_state): dg itself is not in the
# location's environment, which is the image's.
PREPARE = """
import asyncio, json, sys, time
from pathlib import Path
started = time.perf_counter()
import dagster as dg
from dagster.components.core.component_tree import ComponentTree
tree = ComponentTree.for_project(Path(sys.argv[1]))
components = tree.get_all_components(dg.StateBackedComponent)
for component in components:
    asyncio.run(component.refresh_state(tree.project_root))
print(json.dumps({"seconds": time.perf_counter() - started, "components": len(components)}))
"""
# What `dg dev` and `dagster dev` set for their code servers; loads must ignore it.
DEV_FLAG = {"DAGSTER_IS_DEV_CLI": "1"}
# The credential-free dbt target (profiles.yml), in every mode: parsing never connects.
PARSE_TARGET = {"DBT_TARGET": "parse"}
DBT_SCHEMAS = ("staging", "marts")


@dataclass
class Load:
    seconds: float
    in_process: float
    assets: int


def _without_dev_flag(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in DEV_FLAG}


def load_once(location: Location, env: dict[str, str], copy: Path, dev: bool) -> Load:
    """Load the location's definitions in a new interpreter (with the dev flag if `dev`); time
    it from spawn to exit. Fails if the load rewrote the prepared manifest."""
    manifest = manifest_of(copy)
    before = manifest.stat().st_mtime_ns
    extra = {**PARSE_TARGET, **(DEV_FLAG if dev else {})}
    started = time.perf_counter()
    result = subprocess.run(
        [location.python, "-c", LOAD],
        env=location.environment({**_without_dev_flag(env), **extra}),
        capture_output=True,
        text=True,
        timeout=600,
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"loading transformation failed:\n{result.stderr[-3000:]}")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    if not report["module"].startswith(str(copy)):
        raise RuntimeError(f"transformation imported from {report['module']}, not from {copy}")
    if manifest_of(copy).stat().st_mtime_ns != before:
        raise RuntimeError(
            f"loading with dev={dev} rewrote {manifest}: loads must only read the defs state "
            "(prepare_if_dev: false in the location's defs.yaml)"
        )
    return Load(seconds, report["seconds"], report["assets"])


def prepare_once(location: Location, env: dict[str, str], copy: Path) -> float:
    """Refresh the copy's defs state (`dbt parse`) in a new interpreter; seconds from spawn to
    exit. Fails unless the manifest was written anew."""
    try:
        before = manifest_of(copy).stat().st_mtime_ns
    except FileNotFoundError:
        before = None
    started = time.perf_counter()
    result = subprocess.run(
        [location.python, "-c", PREPARE, str(copy)],
        cwd=copy,
        env=location.environment({**_without_dev_flag(env), **PARSE_TARGET}),
        capture_output=True,
        text=True,
        timeout=600,
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"preparing the transformation copy failed:\n{result.stderr[-3000:]}")
    if json.loads(result.stdout.strip().splitlines()[-1])["components"] == 0:
        raise RuntimeError(f"no state-backed component found under {copy}")
    if manifest_of(copy).stat().st_mtime_ns == before:
        raise RuntimeError(f"preparing {copy} left its manifest as it was")
    return seconds


def prepare_copy(location: Location, env: dict[str, str], copy: Path) -> None:
    """Prepare the copy's defs state, unless prepared."""
    try:
        manifest_of(copy)
    except FileNotFoundError:
        prepare_once(location, env, copy)


# -- the full build -------------------------------------------------------------------------------
SHOP_KEYS = ["raw/customers", "raw/products", "raw/orders", "raw/order_items"]
PAYMENT_KEYS = ["raw/payments", "raw/payments_rejected"]
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def ingest_everything(platform: BenchPlatform) -> dict[str, int]:
    """Every raw table the dbt project reads: the shop tables, then all payment days in one
    run (a partition range). Returns rows per raw table."""
    from platform_devkit.runner import load_definitions

    with platform.environment():
        defs = load_definitions("ingestion.definitions")
        assets = [*defs.assets, *defs.asset_checks]

        def keys(names: list[str]) -> dg.AssetSelection:
            return dg.AssetSelection.assets(*map(dg.AssetKey.from_user_string, names))

        shop = dg.materialize(
            assets=assets, selection=keys(SHOP_KEYS).without_checks(),
            resources=defs.resources, instance=dg.DagsterInstance.ephemeral(), run_config=QUIET,
        )  # fmt: skip
        days = sorted(
            date.fromisoformat(p.stem.removeprefix("payments_"))
            for p in platform.landing.glob("payments/*.csv")
        )
        runs = [shop]
        # One run per contiguous range of days with files (a file held back leaves a gap).
        for first, last in _contiguous(days):
            runs.append(
                dg.materialize(
                    assets=assets,
                    # With its reject-ratio check: the payments asset cannot run without it.
                    selection=keys(PAYMENT_KEYS),
                    resources=defs.resources,
                    instance=dg.DagsterInstance.ephemeral(),
                    run_config=QUIET,
                    tags={
                        "dagster/asset_partition_range_start": first.isoformat(),
                        "dagster/asset_partition_range_end": last.isoformat(),
                    },
                )
            )
    if not all(run.success for run in runs):
        raise RuntimeError("loading the raw tables for the dbt build failed")
    tables = [k.split("/")[1] for k in SHOP_KEYS + PAYMENT_KEYS]
    return {t: platform.query(f"SELECT count(*) FROM raw.{t}")[0][0] for t in tables}


def _contiguous(days: list[date]) -> list[tuple[date, date]]:
    ranges: list[tuple[date, date]] = []
    for day in days:
        if ranges and day - ranges[-1][1] == timedelta(days=1):
            ranges[-1] = (ranges[-1][0], day)
        else:
            ranges.append((day, day))
    return ranges


BUILD = """
import json, time
import dagster as dg
from transformation.definitions import defs as load
defs = load()
keys = list(defs.resolve_asset_graph().materializable_asset_keys)
started = time.perf_counter()
result = dg.materialize(
    assets=[*defs.assets, *defs.asset_checks], selection=dg.AssetSelection.assets(*keys),
    resources=defs.resources, instance=dg.DagsterInstance.ephemeral(),
    run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    raise_on_error=False,
)
checks = result.get_asset_check_evaluations()
print(json.dumps({
    "seconds": time.perf_counter() - started, "success": result.success,
    "models": len(result.get_asset_materialization_events()),
    "checks": len(checks), "failed_checks": sorted(c.check_name for c in checks if not c.passed),
}))
"""


@dataclass
class Build:
    seconds: float
    models: int
    checks: int


def build_once(location: Location, platform: BenchPlatform) -> Build:
    """`dbt build` of every model, through Dagster (the location's own definitions and
    resources), from empty dbt schemas; timed around the run only, not the location's load."""
    platform.drop_tables("transformation", DBT_SCHEMAS)
    platform.checkpoint()
    result = subprocess.run(
        [location.python, "-c", BUILD],
        env=location.environment({**platform.process_env(), "DBT_TARGET": "dev"}),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if result.returncode != 0:
        raise RuntimeError(f"the dbt build failed to run:\n{result.stderr[-3000:]}")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    if not report["success"] or report["failed_checks"]:
        raise RuntimeError(f"the dbt build did not succeed: {report}\n{result.stderr[-4000:]}")
    return Build(report["seconds"], report["models"], report["checks"])
