"""Helpers for tests of any code location: run its assets in process, read what a run recorded,
and put stand-ins for outside tools (a cluster's kubectl, kind) on a PATH."""

import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg


def copy_repository(source: Path, target: Path) -> Path:
    """A copy of `source`'s files that git tracks or would (symlinks as links, working-tree
    contents; git-ignored files left out), the
    workspace venv linked and the prepared defs states copied (so nothing re-parses dbt),
    committed as one commit of its own, so a test can measure what a command changes."""

    def git(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", "-c", "user.email=test@example.invalid", "-c", "user.name=test", *args],
            cwd=cwd, capture_output=True, text=True, check=True,
        )  # fmt: skip

    listed = git("ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=source)
    for name in filter(None, listed.stdout.split("\0")):
        original, copy = source / name, target / name
        if not original.exists() and not original.is_symlink():
            continue  # deleted in the working tree, not yet committed
        copy.parent.mkdir(parents=True, exist_ok=True)
        if original.is_symlink():
            copy.symlink_to(os.readlink(original))
        else:
            shutil.copy2(original, copy)
    (target / ".venv").symlink_to(source / ".venv")
    for state in source.glob("locations/*/src/*/defs/.local_defs_state"):
        shutil.copytree(state, target / state.relative_to(source), symlinks=True)
    git("init", "-q", cwd=target)
    git("add", "-A", cwd=target)
    git("commit", "-q", "-m", "copy", cwd=target)
    return target


def stand_in(bin_dir: Path, name: str, source: str) -> Path:
    """An executable `name` in `bin_dir` that runs the Python `source` with this interpreter:
    a stand-in for a tool whose other end is outside the product (a Kubernetes API, a node)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text(f"#!{sys.executable}\n{source}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def materialize(
    defs: dg.Definitions,
    keys: list[str],
    partition_key: str | None = None,
    instance: dg.DagsterInstance | None = None,
    **kwargs,
) -> dg.ExecuteInProcessResult:
    """Materialise asset keys ("raw/orders") and their checks with the location's resources."""
    selection = dg.AssetSelection.assets(*[dg.AssetKey.from_user_string(k) for k in keys])
    # dbt, run in process, moves into its project folder; stay where the caller was.
    working_directory = os.getcwd()
    try:
        return dg.materialize(
            assets=[*defs.assets, *defs.asset_checks],
            selection=selection,
            resources=defs.resources,
            partition_key=partition_key,
            instance=instance or dg.DagsterInstance.ephemeral(),
            **kwargs,
        )
    finally:
        os.chdir(working_directory)


def metadata_of(result: dg.ExecuteInProcessResult, key: str) -> dict:
    """The materialisation metadata of one asset in a run, as plain values."""
    asset_key = dg.AssetKey.from_user_string(key)
    for event in result.get_asset_materialization_events():
        if event.asset_key == asset_key:
            return {k: v.value for k, v in event.materialization.metadata.items()}
    raise AssertionError(f"{key} was not materialised")


def check_of(result: dg.ExecuteInProcessResult, key: str, name: str) -> dg.AssetCheckEvaluation:
    """The evaluation of one asset check in a run."""
    asset_key = dg.AssetKey.from_user_string(key)
    for evaluation in result.get_asset_check_evaluations():
        if evaluation.asset_key == asset_key and evaluation.check_name == name:
            return evaluation
    raise AssertionError(f"check {key}:{name} did not run")


def wait_until(condition: Callable[[], object], what: str, timeout: float = 60) -> object:
    """The first truthy value of `condition()`, polled every 0.2 s; TimeoutError naming `what`
    after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"{what}: not within {timeout}s")
