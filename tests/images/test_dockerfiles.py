"""The Dockerfiles as text: what can be held without a Docker engine (runs in `make test`).

The images themselves are tested in test_images.py (marker docker).
"""

import json
import re
from pathlib import Path

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


def test_every_location_has_a_dockerfile(repo_root: Path, location: str):
    assert (repo_root / "locations" / location / "Dockerfile").is_file()


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
    dockerfile: list[tuple[str, str]], location: str
):
    syncs = [args for keyword, args in dockerfile if keyword == "RUN" and "uv sync" in args]
    assert len(syncs) == 1
    assert f"--package {location}" in syncs[0]
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


def test_uses_no_buildkit_only_syntax(repo_root: Path, location: str):
    text = (repo_root / "locations" / location / "Dockerfile").read_text()
    found = [name for pattern, name in BUILDKIT_ONLY if pattern.search(text)]
    assert found == []


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
