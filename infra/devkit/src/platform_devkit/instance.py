"""The local Dagster instance (dagster.yaml) and workspace (workspace.yaml).

The instance mirrors what the Helm values give the cluster: PostgreSQL storage, a queued run
coordinator with limits, run monitoring and retries. Connection values are `env:` references,
so no password is ever written into the file.
"""

import tomllib
from pathlib import Path

import yaml

from platform_devkit.paths import DG_TOML, REPO_ROOT

MAX_CONCURRENT_RUNS = 4


def instance_config() -> dict:
    return {
        "storage": {
            "postgres": {
                "postgres_db": {
                    "hostname": {"env": "DAGSTER_PG_HOST"},
                    "port": {"env": "DAGSTER_PG_PORT"},
                    "username": {"env": "DAGSTER_PG_USER"},
                    "password": {"env": "DAGSTER_PG_PASSWORD"},
                    "db_name": {"env": "DAGSTER_PG_DB"},
                }
            }
        },
        "run_coordinator": {
            "module": "dagster.core.run_coordinator",
            "class": "QueuedRunCoordinator",
        },
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
        "run_monitoring": {
            "enabled": True,
            "start_timeout_seconds": 300,
            "poll_interval_seconds": 30,
        },
        "run_retries": {"enabled": True, "max_retries": 1},
        "code_servers": {"local_startup_timeout": 300},
        "telemetry": {"enabled": False},
    }


def write_instance(dagster_home: Path) -> Path:
    dagster_home.mkdir(parents=True, exist_ok=True)
    path = dagster_home / "dagster.yaml"
    path.write_text(yaml.safe_dump(instance_config(), sort_keys=False))
    return path


def locations() -> list[dict[str, str]]:
    """Every code location listed in dg.toml: name, module and folder."""
    projects = tomllib.loads(DG_TOML.read_text())["workspace"]["projects"]
    found = []
    for project in projects:
        folder = REPO_ROOT / project["path"]
        pyproject = tomllib.loads((folder / "pyproject.toml").read_text())
        root_module = pyproject["tool"]["dg"]["project"]["root_module"]
        found.append({
            "name": pyproject["project"]["name"],
            "module": f"{root_module}.definitions",
            "path": str(folder),
        })  # fmt: skip
    return found


def write_workspace(path: Path) -> Path:
    """workspace.yaml for `dagster dev`: one code server process per location."""
    entries = [
        {
            "python_module": {
                "module_name": loc["module"],
                "location_name": loc["name"],
                "working_directory": loc["path"],
            }
        }
        for loc in locations()
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"load_from": entries}, sort_keys=False))
    return path
