"""Preparing or listing definitions beside a running deployment leaves its runs working.

A code server of the transformation location (with webserver and daemon, as `make dev` runs
them) builds dbt models while `dg check defs` runs beside it and while the devkit prepares the
dbt manifest again: every run succeeds, `dg check defs` leaves the state the server reads as it
was, and the devkit's preparation takes effect as a new folder switched to in one rename.
Loaded definitions name the version folder itself, and the devkit keeps a version while any
process that loaded its definitions lives.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from platform_devkit.defs_state import VERSIONS, prepare, remove_unused_versions, switch
from platform_devkit.e2e.base import location_environment
from platform_devkit.e2e.graphql import DagsterGraphQL
from platform_devkit.e2e.processes import BIN, clean_environ
from platform_devkit.paths import REPO_ROOT
from platform_devkit.postgres import free_port
from platform_devkit.runner import load_definitions
from platform_devkit.testing import materialize, wait_until
from transformation.dbt_component import pin_state_version

LOCATION = REPO_ROOT / "locations" / "transformation"
# A model over one ingestion table: a run is a real dbt build, short enough to run three.
MODEL = "staging/stg_customers"


def state_link() -> Path:
    """The folder name Dagster reads the dbt component's state from (a symlink to a version)."""
    (state,) = LOCATION.glob("src/*/defs/.local_defs_state/*/state")
    return state.parent


def spawn(argv: list, env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [str(a) for a in argv], env={**clean_environ(), **env}, stdout=log.open("ab"),
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


@pytest.fixture
def deployment(platform_env, tmp_path: Path) -> Iterator[DagsterGraphQL]:
    """The transformation location's code server, a webserver and a daemon on the test
    platform's instance; raw.customers loaded by the ingestion location."""
    platform_env.seed()
    # Recorded in an instance of its own: the daemon's automation sees no fresh upstream data
    # and starts no runs of its own beside the test's.
    assert materialize(load_definitions("ingestion.definitions"), ["raw/customers"]).success
    prepare(LOCATION, progress=lambda _: None)
    env = platform_env.env
    port, web_port = free_port(), free_port()
    server_env = {
        **location_environment("transformation", env),
        "DAGSTER_HOME": env["DAGSTER_HOME"],
        "DBT_TARGET": "dev",
    }
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        yaml.safe_dump({"load_from": [{"grpc_server": {
            "host": "127.0.0.1", "port": port, "location_name": "transformation",
        }}]})
    )  # fmt: skip
    system_env = {k: v for k, v in env.items() if k.startswith("DAGSTER_")}
    processes = [
        spawn(
            [BIN / "dagster", "api", "grpc", "-m", "transformation.definitions",
             "-h", "127.0.0.1", "-p", port],
            server_env, tmp_path / "server.log",
        ),
        spawn(
            [BIN / "dagster-webserver", "-w", workspace, "-h", "127.0.0.1", "-p", web_port],
            system_env, tmp_path / "webserver.log",
        ),
        spawn(
            [BIN / "dagster-daemon", "run", "-w", workspace], system_env, tmp_path / "daemon.log",
        ),
    ]  # fmt: skip
    try:
        graphql = DagsterGraphQL(f"http://127.0.0.1:{web_port}", progress=lambda _: None)
        graphql.wait_until_serving()
        graphql.wait_for_locations(["transformation"])
        yield graphql
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def started(graphql: DagsterGraphQL, run_id: str) -> bool:
    return graphql.run_status(run_id) not in ("QUEUED", "NOT_STARTED", "STARTING")


@pytest.mark.integration
@pytest.mark.slow
def test_dg_check_defs_and_prepare_beside_a_running_code_server_leave_its_runs_working(
    deployment: DagsterGraphQL, platform_env
):
    graphql = deployment
    link = state_link()
    in_use = link.resolve()
    manifest = in_use / "project" / "target" / "manifest.json"
    before = manifest.stat()

    first = graphql.launch_assets("transformation", [MODEL])
    wait_until(lambda: started(graphql, first), "the first run started", timeout=120)
    # The real CLI, as the README gives it, while the run builds.
    check = subprocess.run(
        [BIN / "dg", "check", "defs"], cwd=LOCATION,
        env={**clean_environ(), **platform_env.env, "DBT_TARGET": "parse"},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert check.returncode == 0, (check.stdout + check.stderr)[-3000:]
    after = manifest.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), (
        "dg check defs rewrote the dbt state the running server reads"
    )
    assert link.resolve() == in_use

    # A second run starts while the devkit prepares a new version and switches to it.
    second = graphql.launch_assets("transformation", [MODEL])
    assert prepare(LOCATION, progress=lambda _: None, force=True)
    assert link.is_symlink()
    assert link.resolve() != in_use
    assert (link / "project" / "target" / "manifest.json").is_file()

    statuses = {run: graphql.wait_for_run(run, timeout=300) for run in (first, second)}
    failed = {
        run: graphql.run_errors(run) for run, status in statuses.items() if status != "SUCCESS"
    }
    assert not failed, failed
    assert platform_env.query("select count(*) from staging.stg_customers")[0][0] > 0


def test_a_version_stays_while_a_process_works_in_it_and_in_place_state_becomes_one(
    tmp_path: Path,
):
    root = tmp_path / ".local_defs_state"
    versions = root / VERSIONS
    link = root / "Component__key__"
    # State written in place (an older devkit, a hand-run `dg utils refresh-defs-state`).
    (link / "project").mkdir(parents=True)
    (link / "state").touch()
    old, new = versions / "old", versions / "new"
    (old / "project").mkdir(parents=True)
    (new / "project").mkdir(parents=True)

    switch(link, old)
    assert link.is_symlink()
    assert link.resolve() == old
    (in_place,) = versions.glob("in-place-*")
    assert (in_place / "state").exists()
    switch(link, new)
    assert os.readlink(link) == f"{VERSIONS}/new"

    worker = subprocess.Popen(["sleep", "60"], cwd=old / "project")
    try:
        assert remove_unused_versions(root) == [in_place]
        assert old.exists()
    finally:
        worker.kill()
        worker.wait()
    assert remove_unused_versions(root) == [old]
    assert sorted(versions.iterdir()) == [new]
    assert set(root.iterdir()) == {versions, link}


# A process that loaded the location's definitions, as a code server or a run worker does: it
# prints the paths its dbt project uses, then, on each line it reads, what it finds at them.
READER = """
import hashlib, json, sys
from pathlib import Path
from transformation.definitions import defs

graph = defs().resolve_asset_graph()
project = graph.get(next(iter(graph.materializable_asset_keys))).metadata["dagster_dbt/project"]
names = ("project_dir", "manifest_path", "profiles_dir")
paths = {name: str(getattr(project, name)) for name in names}
print(json.dumps(paths), flush=True)
for _ in sys.stdin:
    print(json.dumps({
        "manifest": hashlib.sha256(project.manifest_path.read_bytes()).hexdigest(),
        "project_file": (project.project_dir / "dbt_project.yml").is_file(),
        "profiles": (project.profiles_dir / "profiles.yml").is_file(),
    }), flush=True)
"""


def test_loaded_definitions_name_the_version_folder_which_outlives_a_re_prepare():
    prepare(LOCATION, progress=lambda _: None)
    reader = subprocess.Popen(
        [sys.executable, "-c", READER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True, env={k: v for k, v in os.environ.items() if k != "DAGSTER_IS_DEV_CLI"},
    )  # fmt: skip
    try:
        paths = {name: Path(path) for name, path in json.loads(reader.stdout.readline()).items()}
        version = state_link().resolve()
        # Every path names the concrete version, none goes through the link.
        assert paths["project_dir"] == version / "project"
        assert paths["manifest_path"] == version / "project" / "target" / "manifest.json"
        assert paths["profiles_dir"] == version / "project"
        assert all(os.path.realpath(path) == str(path) for path in paths.values())
        assert VERSIONS in paths["project_dir"].parts
        manifest = hashlib.sha256(paths["manifest_path"].read_bytes()).hexdigest()

        # Two preparations: after the second the reader's version is neither current nor the
        # one just replaced, and no dbt works in it; only the reader's lock keeps it.
        assert prepare(LOCATION, progress=lambda _: None, force=True)
        assert prepare(LOCATION, progress=lambda _: None, force=True)
        assert state_link().resolve() != version

        reader.stdin.write("read\n")
        reader.stdin.flush()
        seen = json.loads(reader.stdout.readline())
        assert seen == {"manifest": manifest, "project_file": True, "profiles": True}
    finally:
        reader.stdin.close()
        reader.wait(60)
    assert reader.returncode == 0


PIN = (
    "import sys; from pathlib import Path; from transformation.dbt_component import "
    "pin_state_version; print(pin_state_version(Path(sys.argv[1])), flush=True); sys.stdin.read()"
)


def test_the_devkit_keeps_a_version_while_a_process_that_pinned_it_lives(tmp_path: Path):
    root = tmp_path / ".local_defs_state"
    link = root / "Component__key__"
    old, new = root / VERSIONS / "old", root / VERSIONS / "new"
    for version in (old, new):
        (version / "project").mkdir(parents=True)
        (version / "state").touch()
    switch(link, old)

    reader = subprocess.Popen(
        [sys.executable, "-c", PIN, link / "state"], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert reader.stdout.readline().strip() == str(old / "state")
        switch(link, new)
        assert remove_unused_versions(root) == []  # the reader's working directory is elsewhere
        assert old.exists()
    finally:
        reader.stdin.close()
        reader.wait(60)
    assert remove_unused_versions(root) == [old]
    # A process resolving the link now pins the current version.
    assert pin_state_version(link / "state") == new / "state"
    assert remove_unused_versions(root) == []


def test_a_link_to_a_removed_version_fails_to_load_naming_the_state(tmp_path: Path):
    root = tmp_path / ".local_defs_state"
    (root / VERSIONS).mkdir(parents=True)
    dangling = root / "Component__key__"
    dangling.symlink_to(Path(VERSIONS) / "removed")

    with pytest.raises(RuntimeError, match="Component__key__"):
        pin_state_version(dangling / "state", attempts=2)
