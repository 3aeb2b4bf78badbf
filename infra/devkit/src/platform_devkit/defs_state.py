"""Prepared defs state (the dbt manifest) for locations with state-backed components.

`dagster dev` re-prepares on every load; everything else (make run, tests, code servers in
images) reads the prepared state and never parses at load. This prepares it when a location's
files changed since the last preparation.
"""

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

STATE_DIR = ".local_defs_state"
IGNORED = {STATE_DIR, "target", "logs", "__pycache__", ".venv", "tests"}


def _files(folder: Path):
    for entry in folder.iterdir():
        if entry.name in IGNORED:
            continue
        if entry.is_dir():
            yield from _files(entry)
        else:
            yield entry


def has_state_backed_components(location: Path) -> bool:
    return any(location.glob("src/*/defs/**/defs.yaml"))


def is_stale(location: Path) -> bool:
    """True when never prepared, when a failed refresh left a dbt project copy without its
    manifest, or when any file of the location is newer than the preparation."""
    states = list(location.glob(f"src/*/defs/{STATE_DIR}/*/state"))
    if not states:
        return True
    for state in states:
        copy = state.parent / "project"
        if copy.exists() and not (copy / "target" / "manifest.json").exists():
            return True
    prepared = min(state.stat().st_mtime for state in states)
    return any(f.stat().st_mtime > prepared for f in _files(location))


def prepare(location: Path, progress: Callable[[str], None]) -> bool:
    """Refresh a location's defs state if stale. Returns whether it ran."""
    if not has_state_backed_components(location) or not is_stale(location):
        return False
    progress(f"preparing defs state of {location.name} (dbt parse)")
    bin_dir = Path(sys.executable).parent
    result = subprocess.run(
        [str(bin_dir / "dg"), "utils", "refresh-defs-state"],
        cwd=location,
        env={
            **os.environ,
            # The credential-free dbt target: preparing never connects to the warehouse.
            "DBT_TARGET": "parse",
            "DAGSTER_DISABLE_TELEMETRY": "1",
            # dagster-dbt runs `dbt` from PATH: the workspace's, also when not under `uv run`.
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        },
        capture_output=True,
        text=True,
        timeout=900,
    )
    if result.returncode != 0 or "refreshed successfully" not in result.stdout + result.stderr:
        raise RuntimeError(
            f"dg utils refresh-defs-state failed in {location}:\n{result.stdout}{result.stderr}"
        )
    return True
