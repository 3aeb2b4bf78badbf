"""Prepared defs state (the dbt manifest) for locations with state-backed components.

A LOCAL_FILESYSTEM component's state (DbtProjectComponent: a copy of the dbt project with its
manifest) lives in one fixed folder, `<defs>/.local_defs_state/<key>/`, and Dagster rewrites it
in place (`dg utils refresh-defs-state` empties it, runs `dbt parse`, copies the project back):
a run whose dbt starts meanwhile, in a code server that reads the same folder, finds no
`dbt_project.yml`. So the devkit never writes there. It prepares into a folder of its own,
`.local_defs_state/.versions/<id>/`, then points `<key>` (a symlink) at it with one rename:
every reader sees the previous complete state or the new one. A process that loads the
definitions resolves the link once and reads that version's folder for the rest of its life
(transformation.dbt_component.pin_state_version), holding a shared lock on its `state` file.
A version is deleted once no process holds that lock and none works in it (dagster-dbt runs
dbt with the project as its working directory): the devkit takes the exclusive lock and keeps
it while deleting, so a process that resolved the link meanwhile finds the version gone and
resolves it again, never a half-deleted one.

Loading definitions only reads the state: the location's component does not prepare in dev
(`prepare_if_dev: false`), so `dg check defs`, `dg list defs` and the `dg dev` code servers
leave it alone. Images prepare once, in place, in their build (nothing runs there yet).
"""

import fcntl
import inspect
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

STATE_DIR = ".local_defs_state"
VERSIONS = ".versions"
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


def prepare(location: Path, progress: Callable[[str], None], force: bool = False) -> bool:
    """Prepare a location's defs state if stale (or `force`), beside whatever reads the current
    one. Returns whether it ran."""
    if not has_state_backed_components(location) or not (force or is_stale(location)):
        return False
    progress(f"preparing defs state of {location.name} (dbt parse)")
    bin_dir = Path(sys.executable).parent
    # Without DAGSTER_IS_DEV_CLI (set by dg and `dagster dev` for their children), nothing
    # loaded here prepares in place on its own.
    environ = {k: v for k, v in os.environ.items() if k != "DAGSTER_IS_DEV_CLI"}
    result = subprocess.run(
        [sys.executable, "-m", __name__, str(location)],
        cwd=location,
        env={
            **environ,
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
    if result.returncode != 0:
        raise RuntimeError(
            f"preparing the defs state of {location} failed:\n{result.stdout}{result.stderr}"
        )
    return True


@contextmanager
def _locked(state_root: Path) -> Iterator[None]:
    """One preparation of a location at a time (`make dev` and `make test` may both start one):
    dbt parses in the project's own folder first."""
    with (state_root / ".prepare.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def switch(link: Path, version: Path) -> None:
    """Point `link` at `version` (a sibling folder's child) in one rename."""
    staged = link.with_name(f".{link.name}.{uuid.uuid4().hex}")
    staged.symlink_to(version.relative_to(link.parent))
    if link.is_dir() and not link.is_symlink():
        # State prepared in place before (an older devkit, a hand-run refresh): it becomes a
        # version like the others, so a dbt still working in it keeps it until it finishes.
        # Between the two renames the state is missing for an instant; this happens once.
        link.rename(version.parent / f"in-place-{uuid.uuid4().hex}")
    os.replace(staged, link)


def in_use(folder: Path) -> bool:
    """Whether any process on this machine works inside `folder`."""
    folder = folder.resolve()
    for process in psutil.process_iter():
        try:
            cwd = Path(process.cwd())
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
        if cwd == folder or folder in cwd.parents:
            return True
    return False


@contextmanager
def _unread(version: Path) -> Iterator[bool]:
    """Whether no process holds the version's state (its shared lock on `state`); while true,
    the exclusive lock keeps any process from starting to read it."""
    try:
        state = os.open(version / "state", os.O_RDONLY)
    except FileNotFoundError:
        yield True  # never completed (a preparation that failed): nobody can read it
        return
    try:
        try:
            fcntl.flock(state, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
        else:
            yield True
    finally:
        os.close(state)


def remove_unused_versions(state_root: Path) -> list[Path]:
    """Delete the versions no link points at, no process read its definitions from and no
    process works in; return them."""
    current = {link.resolve() for link in state_root.iterdir() if link.is_symlink()}
    removed = []
    for version in sorted((state_root / VERSIONS).iterdir()):
        if version.resolve() in current:
            continue
        with _unread(version) as unread:
            if unread and not in_use(version):
                shutil.rmtree(version, ignore_errors=True)
                removed.append(version)
    return removed


def _write_state(location: Path) -> None:
    """In the location's environment: write every state-backed component's state into a new
    version and switch to it."""
    import asyncio

    from dagster import StateBackedComponent
    from dagster.components.core.component_tree import ComponentTree
    from dagster.components.utils.project_paths import get_local_defs_state_dir
    from dagster_shared.serdes.objects.models.defs_state_info import DefsStateManagementType

    tree = ComponentTree.for_project(location)
    components = {c.defs_state_config.key: c for c in tree.get_all_components(StateBackedComponent)}
    state_root = get_local_defs_state_dir(tree.project_root)
    (state_root / VERSIONS).mkdir(exist_ok=True)
    with _locked(state_root):
        for key, component in components.items():
            kind = component.defs_state_config.management_type
            if kind != DefsStateManagementType.LOCAL_FILESYSTEM:
                raise RuntimeError(f"{key}: {kind.value} state is not prepared by the devkit")
            stamp = time.strftime("%Y%m%dT%H%M%S")
            version = state_root / VERSIONS / f"{stamp}-{uuid.uuid4().hex[:8]}"
            written = component.write_state_to_path(version / "state")
            if inspect.isawaitable(written):
                asyncio.run(written)
            # The folder Dagster reads the key's state from (project_paths.get_local_state_dir).
            switch(state_root / re.sub(r"[^A-Za-z0-9._-]", "__", key), version)
            print(f"{key}: {version.relative_to(location)}")
        remove_unused_versions(state_root)


if __name__ == "__main__":
    _write_state(Path(sys.argv[1]).resolve())
