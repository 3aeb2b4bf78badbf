"""Loading the location reads the prepared manifest: it never runs dbt."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from platform_devkit.defs_state import prepare

LOCATION = Path(__file__).resolve().parents[1]

# Any process started while loading (dbt parse runs as `dbt ...` in a subprocess) aborts it.
LOAD = """
import sys

def refuse_processes(event, args):
    if event in ("subprocess.Popen", "os.posix_spawn", "os.exec", "os.fork"):
        raise RuntimeError(f"a process was started while loading: {args[0]!r}")

sys.addaudithook(refuse_processes)
from transformation.definitions import defs
graph = defs().resolve_asset_graph()
print(sorted(k.to_user_string() for k in graph.materializable_asset_keys))
"""


@pytest.fixture(scope="module")
def manifest() -> Path:
    prepare(LOCATION, progress=lambda _: None)
    return next(LOCATION.glob("src/*/defs/.local_defs_state/*/project/target/manifest.json"))


def load(extra_env: dict[str, str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_IS_DEV_CLI"}
    return subprocess.run(
        [sys.executable, "-c", LOAD], env={**env, **extra_env}, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


def test_loading_runs_no_dbt_and_leaves_the_manifest_untouched(manifest):
    before = manifest.stat().st_mtime_ns

    result = load({})

    assert result.returncode == 0, result.stderr[-3000:]
    assert "marts/fct_orders" in result.stdout
    assert manifest.stat().st_mtime_ns == before


def test_under_the_dev_cli_loading_still_runs_no_dbt(manifest):
    """dg check/list defs and dg dev set DAGSTER_IS_DEV_CLI; with prepare_if_dev on they would
    rewrite the state under a running server (defs.yaml)."""
    before = manifest.stat().st_mtime_ns

    result = load({"DAGSTER_IS_DEV_CLI": "1", "DBT_TARGET": "parse"})

    assert result.returncode == 0, result.stderr[-3000:]
    assert manifest.stat().st_mtime_ns == before


def test_the_audit_hook_refuses_a_process_started_while_loading():
    """The control for the tests above: a load that starts a process fails, so a dbt parse at
    load would have been caught."""
    snippet = LOAD.replace(
        "from transformation.definitions import defs",
        "import subprocess\nsubprocess.run(['true'])\nfrom transformation.definitions import defs",
    )
    result = subprocess.run(
        [sys.executable, "-c", snippet], capture_output=True, text=True, timeout=120
    )

    assert result.returncode != 0
    assert "a process was started while loading" in result.stderr
