"""The location images, built and run as the chart runs them (needs a Docker engine:
`make test-docker` starts one and builds the images first).

Each image is built with infra/docker/build-image.sh (layers cached from `make images`), then
started as the non-root user, with a read-only root filesystem and only /tmp writable, with
the command its Helm values give and no credentials at all. The tests then talk to it over
gRPC like the webserver does, and read its whole filesystem for what must not be there.
"""

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.remote_origin import GrpcServerCodeLocationOrigin
from dagster._core.remote_representation.external_data import RepositorySnap


def _docker_engine_reachable() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode == 0


pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(
        not _docker_engine_reachable(),
        reason="no Docker engine reachable (`docker info` failed): `make test-docker` starts one",
    ),
]

IMAGE_USER = "10001:10001"
# The only writable place in a running container (a tmpfs here, an emptyDir in the chart).
TMP = "/tmp"  # noqa: S108 (inside the container)
RECORDED_DBT_CALLS = f"{TMP}/dbt-invocations"
START_TIMEOUT = 240
# A recorder placed first on PATH in front of the real dbt: every `dbt` a process in the
# container runs (dagster-dbt runs dbt as a subprocess) is logged to this file.
DBT_RECORDER = f"""#!/bin/sh
echo "$*" >> {RECORDED_DBT_CALLS}
exec /app/.venv/bin/dbt "$@"
"""
COMPILER = re.compile(
    r"^(usr/(local/)?)?s?bin/(x86_64-linux-gnu-)?"
    r"(gcc|g\+\+|cc|c\+\+|cpp|clang|ld|as|make|strip|uv)(-[\d.]+)?$"
)
SECRET_FILE = re.compile(r"(^|/)(\.env|[^/]*\.env|\.netrc|\.pypirc|\.git-credentials|id_rsa)$")


Docker = Callable[..., subprocess.CompletedProcess]


@dataclass
class Build:
    image: str
    returncode: int
    output: str


@dataclass
class Server:
    container: str
    port: int
    host_port: int


@pytest.fixture(scope="session")
def canaries(repo_root: Path, location: str) -> Iterator[dict[str, str]]:
    """Fake secrets in the location's folder, where only .dockerignore keeps them out of the
    build context: a build that copied them changes the code layer and the scan finds them."""
    folder = repo_root / "locations" / location
    planted = {
        folder / "image-test-canary.env": f"IMAGE_TEST_CANARY_{secrets.token_hex(16)}",
        folder / "src" / ".env": f"IMAGE_TEST_CANARY_{secrets.token_hex(16)}",
    }
    planted = {path: value for path, value in planted.items() if not path.exists()}
    for path, value in planted.items():
        path.write_text(f"CANARY_PASSWORD={value}\n")
    yield {str(path.relative_to(repo_root)): value for path, value in planted.items()}
    for path in planted:
        path.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def build(
    repo_root: Path,
    location: str,
    registry: str,
    image_tag: str,
    revision: str,
    canaries: dict[str, str],
) -> Build:
    result = subprocess.run(
        [str(repo_root / "infra" / "docker" / "build-image.sh"), location],
        env={**os.environ, "REGISTRY": registry, "IMAGE_TAG": image_tag, "VCS_REF": revision},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    return Build(
        f"{registry}/{location}:{image_tag}", result.returncode, result.stdout + result.stderr
    )


# The extras production images are built with (docs/deploy.md "Compute logs") and the module
# charts/dagster/values-prod.yaml's compute log manager loads in every run pod and code server
# (tests/helm/test_operations.py holds the rendered instance to it).
PRODUCTION_EXTRAS = "aws"
PROD_COMPUTE_LOG_MANAGER = ("dagster_aws.s3.compute_log_manager", "S3ComputeLogManager")
IMPORT_COMPUTE_LOG_MANAGER = (
    "import importlib, sys; "
    "print(getattr(importlib.import_module(sys.argv[1]), sys.argv[2]).__name__)"
)


@pytest.fixture(scope="session")
def production_image(repo_root: Path, location: str, registry: str, image_tag: str) -> str:
    """The location's image built as production builds it (EXTRAS=aws), tagged apart."""
    tag = f"{image_tag}-{PRODUCTION_EXTRAS}"
    result = subprocess.run(
        [str(repo_root / "infra" / "docker" / "build-image.sh"), location],
        env={**os.environ, "REGISTRY": registry, "IMAGE_TAG": tag, "EXTRAS": PRODUCTION_EXTRAS},
        capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        pytest.fail(f"{location} did not build with EXTRAS={PRODUCTION_EXTRAS}:\n"
                    f"{(result.stdout + result.stderr)[-3000:]}")  # fmt: skip
    return f"{registry}/{location}:{tag}"


def _import_in(docker: Docker, image: str) -> subprocess.CompletedProcess:
    """Load the production compute log manager in the image as the chart runs it: non-root,
    read-only root, no network."""
    return docker(
        "run", "--rm", "--user", IMAGE_USER, "--read-only", "--tmpfs", TMP, "--network", "none",
        image, "python", "-c", IMPORT_COMPUTE_LOG_MANAGER, *PROD_COMPUTE_LOG_MANAGER,
        check=False, timeout=180,
    )  # fmt: skip


def test_an_image_built_with_the_production_extras_loads_the_prod_compute_log_manager(
    production_image: str, docker: Docker
):
    result = _import_in(docker, production_image)
    labels = json.loads(docker("image", "inspect", production_image).stdout)[0]["Config"]
    labels = labels["Labels"]

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == PROD_COMPUTE_LOG_MANAGER[1]
    assert labels["io.dagster.extras"] == PRODUCTION_EXTRAS


def test_the_default_image_leaves_the_aws_libraries_out(image: str, docker: Docker):
    """The extra is opt-in: kind and the local platform never load it."""
    if PRODUCTION_EXTRAS in os.environ.get("EXTRAS", "").replace(",", " ").split():
        pytest.skip(f"this session's images are built with EXTRAS={os.environ['EXTRAS']}")
    result = _import_in(docker, image)

    assert result.returncode != 0
    assert "No module named 'dagster_aws'" in result.stderr


@pytest.fixture(scope="session")
def image(build: Build) -> str:
    if build.returncode != 0:
        pytest.fail(f"{build.image} did not build:\n{build.output[-3000:]}")
    return build.image


@pytest.fixture(scope="session")
def config(image: str, docker: Docker) -> dict:
    return json.loads(docker("image", "inspect", image).stdout)[0]["Config"]


@pytest.fixture(scope="session")
def filesystem(
    image: str, docker: Docker, repo_root: Path, location: str, canaries: dict[str, str]
):
    """Every path in the image, and which of the needles (secrets that must be absent, plus one
    file that must be present) occur in which files."""
    needles = {f"canary {path}": value.encode() for path, value in canaries.items()}
    platform_env = repo_root / ".local" / "platform.env"
    if platform_env.exists():
        for line in platform_env.read_text().splitlines():
            key, _, value = line.partition("=")
            if "PASSWORD" in key and len(value) >= 8:
                needles[f"password {key}"] = value.encode()
    for i, ca in enumerate(_extra_ca_files()):
        body = [line for line in ca.read_text().splitlines() if line and "-----" not in line]
        if len(body) > 2:
            needles[f"extra CA {i} ({ca.name})"] = body[1].encode()
    definitions = repo_root / "locations" / location / "src" / location / "definitions.py"
    needles["control: definitions.py"] = definitions.read_bytes()

    container = docker("create", image).stdout.strip()
    names: list[str] = []
    found: dict[str, list[str]] = {label: [] for label in needles}
    try:
        with (
            subprocess.Popen(["docker", "export", container], stdout=subprocess.PIPE) as export,
            tarfile.open(fileobj=export.stdout, mode="r|") as tar,
        ):
            for member in tar:
                names.append(member.name.rstrip("/"))
                if not member.isfile() or member.size == 0:
                    continue
                data = tar.extractfile(member).read()
                for label, needle in needles.items():
                    if needle in data:
                        found[label].append(member.name)
    finally:
        docker("rm", "-f", container, check=False)
    return names, found


def _extra_ca_files() -> list[Path]:
    """The CA files a build trusts on top of the base image's (infra/docker/build-image.sh)."""
    if "EXTRA_CA_BUNDLE" in os.environ:
        return [Path(p) for p in os.environ["EXTRA_CA_BUNDLE"].split()]
    return sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))


@pytest.fixture(scope="session")
def dbt_recorder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dbt-recorder")
    (folder / "dbt").write_text(DBT_RECORDER)
    (folder / "dbt").chmod(0o755)
    folder.chmod(0o755)  # readable by the image's user
    return folder


@pytest.fixture(scope="session")
def server(
    image: str, config: dict, helm_command: list[str], dbt_recorder: Path, docker: Docker
) -> Iterator[Server]:
    """The image's code server, started as the chart starts it: non-root, read-only root
    filesystem with /tmp as the only writable place, no capabilities, the Helm arguments, and
    no credentials or warehouse settings in its environment."""
    port = int(helm_command[helm_command.index("-p") + 1])
    image_path = next(e for e in config["Env"] if e.startswith("PATH=")).removeprefix("PATH=")
    name = f"image-test-{uuid.uuid4().hex[:8]}"
    docker(
        "run", "--detach", "--name", name,
        "--user", IMAGE_USER,
        "--read-only", "--tmpfs", f"{TMP}:rw,size=512m",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--publish", f"127.0.0.1::{port}",
        "--volume", f"{dbt_recorder}:/opt/dbt-recorder:ro",
        "--env", f"PATH=/opt/dbt-recorder:{image_path}",
        image, *helm_command,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            check = docker(
                "exec", name, "dagster", "api", "grpc-health-check", "-p", str(port), check=False
            )
            if check.returncode == 0:
                break
            state = json.loads(docker("inspect", name).stdout)[0]["State"]
            if not state["Running"] or time.monotonic() > deadline:
                logs = docker("logs", name, check=False)
                pytest.fail(
                    f"{image} did not serve gRPC (running={state['Running']}):\n"
                    f"{check.stdout}{check.stderr}\n--- logs ---\n{logs.stdout}{logs.stderr}"
                )
            time.sleep(1)
        host_port = int(docker("port", name, str(port)).stdout.split(":")[-1])
        yield Server(container=name, port=port, host_port=host_port)
    finally:
        docker("rm", "-f", name, check=False)


@pytest.fixture(scope="session")
def served_asset_keys(server: Server, location: str) -> set[str]:
    """The asset keys the server sends over gRPC, fetched as the webserver fetches them."""
    origin = GrpcServerCodeLocationOrigin(
        host="127.0.0.1", port=server.host_port, location_name=location
    )
    with (
        dg.DagsterInstance.ephemeral() as instance,
        origin.create_location(instance) as code_location,
    ):
        return {
            node.asset_key.to_user_string()
            for repository in code_location.get_repositories().values()
            for node in repository.get_asset_node_snaps()
        }


# --- build -------------------------------------------------------------------------------


def test_image_builds_tagged_with_the_commit_and_latest(
    image: str, registry: str, location: str, revision: str, docker: Docker, repo_root: Path
):
    ids = {
        ref: json.loads(docker("image", "inspect", ref).stdout)[0]["Id"]
        for ref in (image, f"{registry}/{location}:latest")
    }
    assert len(set(ids.values())) == 1, ids
    labels = json.loads(docker("image", "inspect", image).stdout)[0]["Config"]["Labels"]
    assert labels["org.opencontainers.image.revision"] == revision
    assert labels["org.opencontainers.image.title"] == location
    assert labels["io.dagster.code-location"] == location
    with (repo_root / "locations" / location / "pyproject.toml").open("rb") as f:
        pyproject = tomllib.load(f)
    module = pyproject["tool"]["dg"]["project"]["root_module"]
    assert labels["io.dagster.module"] == f"{module}.definitions"
    assert labels["org.opencontainers.image.description"] == pyproject["project"]["description"]


def test_default_command_is_the_helm_command_as_a_non_root_user(
    config: dict, helm_command: list[str]
):
    assert config["Cmd"] == helm_command
    # No entrypoint: the chart's `args` replace the command as a whole.
    assert not config["Entrypoint"]
    uid = config["User"].split(":")[0]
    assert uid.isdigit()
    assert int(uid) > 0
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["PATH"].startswith("/app/.venv/bin:")
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["HOME"].startswith(TMP)
    # Everything the tools write goes to the only writable place (the same in every image).
    for variable in ("TMPDIR", "MPLCONFIGDIR", "DBT_TARGET_PATH", "DBT_LOG_PATH"):
        assert env[variable].startswith(TMP), variable
    assert env["DBT_SEND_ANONYMOUS_USAGE_STATS"] == "false"
    # The platform's dbt profile target for deployments, unless the deployment sets another.
    assert env["DBT_TARGET"] == "prod"
    assert f"{helm_command[helm_command.index('-p') + 1]}/tcp" in config["ExposedPorts"]


# --- contents ----------------------------------------------------------------------------


def test_filesystem_scan_sees_the_image(filesystem, location: str):
    """The scan below is only worth its negatives if it reads the image: it must find the
    location's own files, byte for byte."""
    names, found = filesystem
    assert "app/.venv/bin/dagster" in names
    assert f"app/locations/{location}/src/{location}/definitions.py" in names
    assert found["control: definitions.py"] == [
        f"app/locations/{location}/src/{location}/definitions.py"
    ]


def test_image_has_no_compiler_build_tool_or_uv(filesystem):
    names, _ = filesystem
    assert [n for n in names if COMPILER.match(n)] == []
    assert [n for n in names if n.startswith(("opt/uv", "tmp/"))] == []


def test_image_has_no_git_history_tests_or_host_state(filesystem, location: str):
    names, _ = filesystem
    assert [n for n in names if ".git" in n.split("/")] == []
    ours = [n for n in names if n.startswith("app/locations/")]
    assert [n for n in ours if n.startswith(f"app/locations/{location}/tests")] == []
    assert [n for n in ours if re.search(r"(^|/)(test_[^/]*\.py|conftest\.py)$", n)] == []
    top_level = {n.split("/")[3] for n in ours if n.count("/") >= 3}
    assert top_level & {".venv", "target", "logs", ".pytest_cache", ".local"} == set()


def test_image_holds_no_secrets(filesystem, canaries: dict[str, str]):
    names, found = filesystem
    assert canaries, "canaries were planted in the build context"
    assert [n for n in names if SECRET_FILE.search(n) or ".local" in n.split("/")] == []
    leaks = {
        label: paths for label, paths in found.items() if paths and not label.startswith("control")
    }
    assert leaks == {}


# --- running -----------------------------------------------------------------------------


def test_serves_grpc_and_passes_the_health_check_as_non_root_on_a_read_only_root(
    server: Server, docker: Docker
):
    inside = docker(
        "exec", server.container, "dagster", "api", "grpc-health-check", "-p", str(server.port)
    )
    assert "successful" in inside.stdout + inside.stderr
    # From the host too, through the published port, as the webserver would connect.
    outside = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "api", "grpc-health-check",
         "-h", "127.0.0.1", "-p", str(server.host_port)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert outside.returncode == 0, outside.stdout + outside.stderr
    status = docker("exec", server.container, "cat", "/proc/1/status").stdout
    uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)", status, re.MULTILINE)
    assert uids.groups() == ("10001", "10001")
    write = docker("exec", server.container, "touch", "/app/written", check=False)
    assert write.returncode != 0
    assert "Read-only file system" in write.stderr


IMPORT_DIRECT_DEPENDENCIES = """
import importlib, importlib.metadata as md, re, tomllib
wanted = {
    re.split(r"[\\[<>=!~; ]", dep)[0].lower().replace("_", "-")
    for dep in tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
}
modules = sorted(
    module
    for module, dists in md.packages_distributions().items()
    if not module.startswith("_") and {d.lower().replace("_", "-") for d in dists} & wanted
)
for module in modules:
    importlib.import_module(module)
print(" ".join(modules))
"""


def test_every_direct_dependency_imports_in_the_running_container(
    server: Server, docker: Docker, repo_root: Path, location: str
):
    """Runs import more than a code server does (dlt, connectorx, pyarrow...): every top-level
    module of the location's direct dependencies must load from the image as it runs."""
    result = docker(
        "exec", server.container, "python", "-c", IMPORT_DIRECT_DEPENDENCIES, timeout=300
    )
    imported = set(result.stdout.split())
    assert {"dagster", "dagster_postgres", "dagster_k8s", "psycopg2", "sqlalchemy"} <= imported
    dependencies = (repo_root / "locations" / location / "pyproject.toml").read_text()
    for library, module in (
        ("pyarrow", "pyarrow"),
        ("connectorx", "connectorx"),
        ("dbt-core", "dbt"),
        ("matplotlib", "matplotlib"),
        ("dlt", "dlt"),
    ):
        if f'"{library}' in dependencies:
            assert module in imported


def test_serves_the_asset_graph_of_the_source(
    served_asset_keys: set[str], location: str, location_defs: dict[str, dg.Definitions]
):
    snapshot = RepositorySnap.from_def(location_defs[location].get_repository_def())
    expected = {node.asset_key.to_user_string() for node in snapshot.asset_nodes}
    assert expected, f"{location} defines assets"
    assert served_asset_keys == expected


def test_dbt_location_starts_from_the_prebuilt_manifest_without_running_dbt(
    server: Server, served_asset_keys: set[str], location: str, docker: Docker
):
    manifest_paths = docker(
        "exec",
        server.container,
        "find",
        f"/app/locations/{location}/src",
        "-path",
        "*/.local_defs_state/*/target/manifest.json",
    ).stdout.split()
    assert len(manifest_paths) == 1
    manifest = json.loads(docker("exec", server.container, "cat", manifest_paths[0]).stdout)
    models = {
        f"{n['schema']}/{n['name']}"
        for n in manifest["nodes"].values()
        if n["resource_type"] == "model"
    }
    assert models, "the prebuilt manifest has the dbt models"
    assert models <= served_asset_keys

    # Loading and serving ran no dbt at all: nothing on PATH was called, and dbt's target and
    # log paths (DBT_TARGET_PATH, DBT_LOG_PATH under /tmp) were never created.
    assert (
        docker("exec", server.container, "test", "-e", RECORDED_DBT_CALLS, check=False).returncode
        == 1
    )
    assert docker("exec", server.container, "test", "-e", f"{TMP}/dbt", check=False).returncode == 1
    # The recorder does record: a dbt call made now shows up.
    docker("exec", server.container, "dbt", "--version")
    recorded = docker("exec", server.container, "cat", RECORDED_DBT_CALLS).stdout
    assert recorded.splitlines() == ["--version"]


def test_dbt_location_runs_no_dbt_at_start_up_under_the_dev_flag_either(
    image: str, config: dict, helm_command: list[str], dbt_recorder: Path, docker: Docker
):
    """dg dev, dg check defs and dagster dev set DAGSTER_IS_DEV_CLI, under which dagster-dbt
    would parse the project at load and rewrite the state a running server reads; the component
    turns that off (prepare_if_dev: false in defs/dbt/defs.yaml). Started with the flag and a
    root filesystem it may write, the image serves without a single dbt call (the test above
    shows the recorder records one)."""
    port = int(helm_command[helm_command.index("-p") + 1])
    image_path = next(e for e in config["Env"] if e.startswith("PATH=")).removeprefix("PATH=")
    name = f"image-test-dev-{uuid.uuid4().hex[:8]}"
    docker(
        "run", "--detach", "--name", name, "--user", "0",
        "--tmpfs", f"{TMP}:rw,size=512m",
        "--volume", f"{dbt_recorder}:/opt/dbt-recorder:ro",
        "--env", f"PATH=/opt/dbt-recorder:{image_path}",
        "--env", "DAGSTER_IS_DEV_CLI=1", "--env", "DBT_TARGET=parse",
        image, *helm_command,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT
        health = ["exec", name, "dagster", "api", "grpc-health-check", "-p", str(port)]
        while docker(*health, check=False).returncode != 0:
            assert time.monotonic() < deadline, docker("logs", name, check=False).stderr[-3000:]
            time.sleep(1)
        recorded = docker("exec", name, "cat", RECORDED_DBT_CALLS, check=False)
        assert recorded.returncode == 1, recorded.stdout  # no file: dbt never ran
    finally:
        docker("rm", "-f", name, check=False)
