"""The Dockerfiles as text: what can be held without a Docker engine (runs in `make test`).

Every location builds from the shared template infra/docker/location.Dockerfile, or from its
own locations/<name>/Dockerfile when it has one; the per-location tests below check whichever
infra/docker/build-image.sh picks, as it builds it (`build-image.sh --dry-run`). The images
themselves are tested in test_images.py (marker docker).
"""

import importlib
import json
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from dagster.components.component.state_backed_component import StateBackedComponent

TEMPLATE = "infra/docker/location.Dockerfile"

# Syntax the legacy builder (Debian's docker.io, no buildx) rejects or misreads.
BUILDKIT_ONLY = [
    (re.compile(r"--mount\b"), "RUN --mount"),
    (re.compile(r"<<-?\s*['\"]?[A-Z_a-z]"), "heredoc"),
    (re.compile(r"--chmod\b"), "COPY --chmod"),
    (re.compile(r"--link\b"), "COPY --link"),
    (re.compile(r"--parents\b"), "COPY --parents"),
    (re.compile(r"--exclude\b"), "COPY --exclude"),
]


def _stages(dockerfile: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in dockerfile:
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _pyproject(repo_root: Path, location: str) -> dict:
    with (repo_root / "locations" / location / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


# --- which Dockerfile, which build arguments ----------------------------------------------


def test_location_builds_from_its_own_dockerfile_if_it_has_one_else_the_template(
    repo_root: Path, location: str, build_plan
):
    own = repo_root / "locations" / location / "Dockerfile"
    expected = f"locations/{location}/Dockerfile" if own.is_file() else TEMPLATE
    assert build_plan.dockerfile == expected
    source = (repo_root / expected).read_text()
    assert build_plan.text == source.replace("@MODULE@", build_plan.build_args["MODULE"])


def test_build_arguments_come_from_the_locations_pyproject(
    repo_root: Path, location: str, build_plan
):
    pyproject = _pyproject(repo_root, location)
    image = pyproject.get("tool", {}).get("platform", {}).get("image", {})
    assert build_plan.build_args == {
        "LOCATION": location,
        "PACKAGE": pyproject["project"]["name"],
        "MODULE": pyproject["tool"]["dg"]["project"]["root_module"],
        "DESCRIPTION": pyproject["project"]["description"],
        "PREPARE_DEFS_STATE": "true" if image.get("prepare_defs_state", False) else "false",
        # None unless the build asks (EXTRAS of build-image.sh / make images).
        "EXTRAS": " ".join(os.environ.get("EXTRAS", "").replace(",", " ").split()),
    }


def _component_types(defs: Path, module: str):
    """(defs.yaml, component class) of every component a location's defs folder declares."""
    for path in sorted(defs.rglob("defs.yaml")):
        if ".local_defs_state" in path.parts:
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if not document or "type" not in document:
                continue
            name = document["type"]
            if name.startswith("."):  # relative to the folder's package
                package = ".".join([module, *path.parent.relative_to(defs.parent).parts])
                name = package + name
            module_name, _, attribute = name.rpartition(".")
            yield path, getattr(importlib.import_module(module_name), attribute)


def test_defs_state_is_prepared_in_the_build_exactly_for_state_backed_components(
    repo_root: Path, location: str, build_plan
):
    """A state-backed component (dagster-dbt's DbtProjectComponent, ...) whose state is not
    in the image would make the code server prepare it at start-up, which a read-only root
    cannot even write: such a location must set [tool.platform.image] prepare_defs_state."""
    module = build_plan.build_args["MODULE"]
    defs = repo_root / "locations" / location / "src" / module / "defs"
    state_backed = sorted(
        str(path.relative_to(repo_root))
        for path, component in _component_types(defs, module)
        if issubclass(component, StateBackedComponent)
    )
    assert (build_plan.build_args["PREPARE_DEFS_STATE"] == "true") == bool(state_backed), (
        state_backed or "no state-backed component"
    )


# --- the template and the override rule ---------------------------------------------------


def _copy_build_script(repo_root: Path, target: Path) -> None:
    (target / "infra" / "docker").mkdir(parents=True)
    for name in ("build-image.sh", "location.Dockerfile"):
        shutil.copy2(repo_root / "infra" / "docker" / name, target / "infra" / "docker" / name)


def _new_location(target: Path, name: str, module: str, extra: str = "") -> Path:
    folder = target / "locations" / name
    (folder / "src" / module).mkdir(parents=True)
    (folder / "pyproject.toml").write_text(
        f'[project]\nname = "{name}"\ndescription = "The {name} location (team {name})."\n'
        f'[tool.dg]\ndirectory_type = "project"\n'
        f'[tool.dg.project]\nroot_module = "{module}"\n{extra}'
    )
    return folder


def test_a_new_location_without_a_dockerfile_builds_from_the_template(
    repo_root: Path, tmp_path: Path, build_dry_run: Callable, parse_dockerfile: Callable
):
    """What `make new-location` writes (locations/<name>/ only) needs no Dockerfile and no edit
    elsewhere: build-image.sh picks the template and fills in the new location."""
    _copy_build_script(repo_root, tmp_path)
    _new_location(tmp_path, "new-team", "new_team")

    plan = build_dry_run("new-team", tmp_path)

    assert plan.dockerfile == TEMPLATE
    assert plan.build_args == {
        "LOCATION": "new-team",
        "PACKAGE": "new-team",
        "MODULE": "new_team",
        "DESCRIPTION": "The new-team location (team new-team).",
        "PREPARE_DEFS_STATE": "false",
        "EXTRAS": "",
    }
    (cmd,) = [args for keyword, args in parse_dockerfile(plan.text) if keyword == "CMD"]
    assert json.loads(cmd)[-2:] == ["-m", "new_team.definitions"]
    assert plan.text == (repo_root / TEMPLATE).read_text().replace("@MODULE@", "new_team")


def test_a_location_with_its_own_dockerfile_builds_from_it(
    repo_root: Path, tmp_path: Path, build_dry_run: Callable
):
    _copy_build_script(repo_root, tmp_path)
    folder = _new_location(
        tmp_path, "geo", "geo", "[tool.platform.image]\nprepare_defs_state = true\n"
    )
    template = (repo_root / TEMPLATE).read_text()
    system_package = "FROM ${BASE_IMAGE}\nRUN apt-get install -y libgdal32\n"
    own = template.replace("FROM ${BASE_IMAGE}\n", system_package)
    (folder / "Dockerfile").write_text(own)
    _new_location(tmp_path, "other", "other")

    plan = build_dry_run("geo", tmp_path)

    assert plan.dockerfile == "locations/geo/Dockerfile"
    assert plan.build_args["PREPARE_DEFS_STATE"] == "true"
    assert plan.text == own.replace("@MODULE@", "geo")
    # Only that location: the others still build from the template.
    assert build_dry_run("other", tmp_path).dockerfile == TEMPLATE


def test_build_script_refuses_a_pyproject_without_a_root_module(
    repo_root: Path, tmp_path: Path, build_dry_run: Callable
):
    _copy_build_script(repo_root, tmp_path)
    folder = tmp_path / "locations" / "broken"
    folder.mkdir(parents=True)
    (folder / "pyproject.toml").write_text('[project]\nname = "broken"\n')
    with pytest.raises(AssertionError, match="root_module is missing"):
        build_dry_run("broken", tmp_path)


def test_template_names_no_location_and_documents_the_override(repo_root: Path):
    text = (repo_root / TEMPLATE).read_text()
    header = text[: text.index("\nARG BASE_IMAGE")]
    assert "locations/<name>/Dockerfile" in header
    assert "build-image.sh" in header
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    for name in ("ingestion", "transformation", "exports", "dbt_project", "manifest"):
        assert name not in code
    for argument in ("LOCATION", "PACKAGE", "MODULE", "DESCRIPTION", "PREPARE_DEFS_STATE"):
        assert f"ARG {argument}" in code
    assert "@MODULE@" in code


def test_template_prepares_defs_state_only_when_asked_and_checks_it_was_written(
    repo_root: Path, parse_dockerfile: Callable
):
    builder = _stages(parse_dockerfile((repo_root / TEMPLATE).read_text()))[0]
    assert ("ARG", "PREPARE_DEFS_STATE=false") in builder
    (refresh,) = [args for keyword, args in builder if "refresh-defs-state" in args]
    assert refresh.startswith('if [ "${PREPARE_DEFS_STATE}" = true ]; then')
    assert "DBT_TARGET=parse" in refresh, "the credential-free dbt target"
    assert ".local_defs_state" in refresh
    assert "exit 1" in refresh, "fails when no state was prepared"


def test_lint_covers_the_template_and_every_location_dockerfile(repo_root: Path):
    images_mk = (repo_root / "mk" / "images.mk").read_text()
    assert re.search(
        r"^IMAGE_DOCKERFILES = infra/docker/location\.Dockerfile "
        r"\$\(wildcard locations/\*/Dockerfile\)$",
        images_mk,
        re.MULTILINE,
    )
    assert "$(HADOLINT) $(IMAGE_DOCKERFILES)" in images_mk


# --- what every image's Dockerfile holds -------------------------------------------------


def test_default_command_is_what_the_helm_values_run(
    dockerfile: list[tuple[str, str]], helm_command: list[str]
):
    cmds = [args for keyword, args in dockerfile if keyword == "CMD"]
    assert len(cmds) == 1
    assert json.loads(cmds[0]) == helm_command


def test_server_port_is_exposed(dockerfile: list[tuple[str, str]], helm_command: list[str]):
    port = helm_command[helm_command.index("-p") + 1]
    assert ("EXPOSE", port) in dockerfile


def test_base_image_is_a_build_argument_defaulting_to_the_official_slim_python(
    dockerfile: list[tuple[str, str]],
):
    assert dockerfile[0] == ("ARG", "BASE_IMAGE=python:3.11-slim-bookworm")
    froms = [args for keyword, args in dockerfile if keyword == "FROM"]
    assert len(froms) >= 2, "multi-stage: a builder stage and the final stage"
    assert all(f.split()[0] == "${BASE_IMAGE}" for f in froms)


def test_final_stage_runs_as_a_numeric_non_root_user(dockerfile: list[tuple[str, str]]):
    final = _stages(dockerfile)[-1]
    users = [args for keyword, args in final if keyword == "USER"]
    assert users, "the final stage sets USER"
    uid, _, gid = users[-1].partition(":")
    # Numeric, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
    assert uid.isdigit()
    assert int(uid) > 0
    assert gid == "" or int(gid) > 0


def test_final_stage_installs_no_build_tools(dockerfile: list[tuple[str, str]]):
    final = _stages(dockerfile)[-1]
    runs = " ".join(args for keyword, args in final if keyword == "RUN")
    for tool in ("apt-get", "pip ", "uv ", "gcc", "build-essential"):
        assert tool not in runs


def test_dependencies_are_installed_before_the_code_is_copied(
    dockerfile: list[tuple[str, str]], location: str
):
    """A code-only change must reuse the dependencies layer and run no installer."""
    builder = _stages(dockerfile)[0]
    dependency_sync = next(
        i for i, (keyword, args) in enumerate(builder) if keyword == "RUN" and "uv sync" in args
    )
    code_copy = next(
        i
        for i, (keyword, args) in enumerate(builder)
        if keyword == "COPY" and args.startswith(f"locations/{location}/ ")
    )
    copies_before = [args for keyword, args in builder[:dependency_sync] if keyword == "COPY"]
    assert code_copy > dependency_sync
    after = [args for keyword, args in builder[code_copy:] if keyword == "RUN"]
    assert not any("uv sync" in args or "pip install" in args for args in after)
    assert all(
        src.endswith(("pyproject.toml", "uv.lock", "ca/"))
        for args in copies_before
        for src in args.split()[:-1]
    ), copies_before


def test_syncs_only_its_own_package_from_the_lock_without_dev_tools(
    dockerfile: list[tuple[str, str]], build_plan
):
    package = build_plan.build_args["PACKAGE"]
    syncs = [args for keyword, args in dockerfile if keyword == "RUN" and "uv sync" in args]
    assert len(syncs) == 1
    assert f"--package {package}" in syncs[0].replace('"', "")
    assert "--frozen" in syncs[0]
    assert "--no-dev" in syncs[0]
    assert "--no-editable" not in syncs[0], "the location runs from its source folder"


def test_copies_no_other_location(dockerfile: list[tuple[str, str]], location: str):
    sources = [
        src
        for keyword, args in dockerfile
        if keyword == "COPY" and not args.startswith("--from")
        for src in args.split()[:-1]
    ]
    others = [
        s
        for s in sources
        if s.startswith("locations/") and not s.startswith(f"locations/{location}/")
    ]
    assert others == []


def test_uses_no_buildkit_only_syntax(build_plan):
    found = [name for pattern, name in BUILDKIT_ONLY if pattern.search(build_plan.text)]
    assert found == []


def test_labels_name_the_location_its_module_and_description(
    dockerfile: list[tuple[str, str]], build_plan, location: str
):
    (labels,) = [args for keyword, args in _stages(dockerfile)[-1] if keyword == "LABEL"]
    module = build_plan.build_args["MODULE"]
    for label in (
        f'org.opencontainers.image.title="{location}"',
        f'org.opencontainers.image.description="{build_plan.build_args["DESCRIPTION"]}"',
        f'io.dagster.code-location="{location}"',
        f'io.dagster.module="{module}.definitions"',
    ):
        assert label in labels


# --- optional extras (EXTRAS): production's S3 compute logs -----------------------------------

# The extras a production image is built with (docs/deploy.md "Compute logs", docs/images.md
# "Extras": make images EXTRAS=aws), for what charts/dagster/values-prod.yaml makes every image
# import: the instance's compute log manager, which run pods and code servers load.
PRODUCTION_EXTRAS = {"aws": "dagster-aws"}
PROD_COMPUTE_LOGS = {"S3ComputeLogManager": "dagster-aws"}


def _build_plan_with(repo_root: Path, location: str, extras: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(repo_root / "infra" / "docker" / "build-image.sh"), "--dry-run", location],
        env={**os.environ, "EXTRAS": extras}, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip


def _locked(repo_root: Path) -> dict[str, dict]:
    lock = tomllib.loads((repo_root / "uv.lock").read_text())
    return {package["name"]: package for package in lock["package"]}


def test_production_compute_log_manager_comes_with_the_production_extras(repo_root: Path):
    values = yaml.safe_load((repo_root / "charts/dagster/values-prod.yaml").read_text())
    manager = values["computeLogManager"]["type"]

    assert PROD_COMPUTE_LOGS[manager] in PRODUCTION_EXTRAS.values()


def test_every_location_locks_the_production_extras_at_the_integrations_pin(
    repo_root: Path, location: str
):
    """`uv sync --frozen --extra aws` installs from the lock only: each location's entry must
    have the extra, pinned like the other integrations (0.29.27 with dagster 1.13.27)."""
    locked = _locked(repo_root)
    extras = locked[location].get("optional-dependencies", {})
    pins = {
        d["name"]: d.get("specifier") for d in locked[location]["metadata"].get("requires-dist", [])
    }

    for extra, distribution in PRODUCTION_EXTRAS.items():
        assert distribution in {d["name"] for d in extras.get(extra, [])}, (location, extra)
        assert pins[distribution] == "==" + locked["dagster-k8s"]["version"], distribution
        assert locked[distribution]["version"] == locked["dagster-k8s"]["version"]


def test_the_build_passes_the_extras_it_is_given_to_the_lock_sync(
    repo_root: Path, location: str, parse_dockerfile: Callable
):
    result = _build_plan_with(repo_root, location, ",".join(PRODUCTION_EXTRAS))
    assert result.returncode == 0, result.stderr
    build_args = dict(
        line.removeprefix("# build-arg: ").split("=", 1)
        for line in result.stdout.splitlines()
        if line.startswith("# build-arg: ")
    )
    instructions = parse_dockerfile(result.stdout)
    (sync,) = [args for keyword, args in instructions if keyword == "RUN" and "uv sync" in args]
    declared = [args for keyword, args in instructions if keyword == "ARG"]

    assert build_args["EXTRAS"] == " ".join(PRODUCTION_EXTRAS)
    # Every stage that uses it declares it, the builder's before its sync.
    assert declared.count('EXTRAS=""') == 2
    assert 'for extra in ${EXTRAS}; do set -- "$@" "--extra=${extra}"; done' in sync
    assert sync.endswith('--package "${PACKAGE}" "$@"')
    assert 'io.dagster.extras="${EXTRAS}"' in result.stdout


def test_the_extras_expand_to_one_extra_flag_each_and_to_none_when_empty():
    """The sync line's expansion, run by bash as the builder's SHELL runs it."""
    script = (
        'EXTRAS="$1"; set --; for extra in ${EXTRAS}; do set -- "$@" "--extra=${extra}"; done;'
        ' printf "[%s]" uv "$@"'
    )
    for given, flags in [("", "[uv]"), ("aws", "[uv][--extra=aws]"),
                         ("aws s3", "[uv][--extra=aws][--extra=s3]")]:  # fmt: skip
        result = subprocess.run(
            ["bash", "-o", "pipefail", "-c", script, "-", given],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert result.stdout == flags, given


@pytest.mark.parametrize("extras", ["nope", "aws,nope", "aws nope"])
def test_an_extra_the_location_does_not_declare_stops_the_build_naming_it(
    repo_root: Path, location: str, extras: str
):
    result = _build_plan_with(repo_root, location, extras)

    assert result.returncode != 0
    assert f"locations/{location}/pyproject.toml" in result.stderr
    assert "EXTRAS names ['nope']" in result.stderr


def test_the_docs_and_make_name_the_production_extras(repo_root: Path):
    wanted = "EXTRAS=" + ",".join(PRODUCTION_EXTRAS)
    for doc in ("docs/deploy.md", "docs/images.md"):
        assert f"make images {wanted}" in (repo_root / doc).read_text(), doc
    assert "EXTRAS=" in (repo_root / "mk" / "images.mk").read_text()


def test_dockerignore_keeps_secrets_history_and_host_state_out_of_the_context(repo_root: Path):
    patterns = set((repo_root / ".dockerignore").read_text().split())
    for required in (
        ".git",
        ".local",
        "**/.venv",
        "**/.env",
        "**/*.env",
        "**/.local_defs_state",
        "locations/*/tests",
    ):
        assert required in patterns
