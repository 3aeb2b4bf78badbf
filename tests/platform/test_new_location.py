"""`make new-location`: a fourth location scaffolded in a copy of the repository works there
with nothing else edited. For it, in the copy: its own test (dg.materialize on the embedded
warehouse), the contract tests, the bootstrap and privilege tests, the chart renders (official
charts from the configured chart repository, where it answers) and `dg check defs`. The image
layer (tests/images) builds it where Docker runs."""

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from platform_devkit import locations, scaffold
from platform_devkit.scaffold import ScaffoldError, check_name
from platform_devkit.testing import copy_repository

pytestmark = pytest.mark.slow

REPO = locations.REPO_ROOT
# The example name, or the next free one when a team has taken it.
NAME = next(
    name
    for name in ("marketing", *(f"marketing{i}" for i in range(2, 100)))
    if not (Path(__file__).resolve().parents[2] / "locations" / name).exists()
)
TEAM = "growth"


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 900):
    return subprocess.run(
        args, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def scaffolded(tmp_path_factory) -> tuple[Path, dict[str, str], subprocess.CompletedProcess]:
    """The copy after `python -m platform_devkit.scaffold marketing growth` (what
    `make new-location` runs before `uv lock`), and the environment that makes Python import
    the copy's sources, devkit included, before the installed ones."""
    root = copy_repository(REPO, tmp_path_factory.mktemp("new-location") / "repo")
    sources = [root / "infra" / "devkit" / "src", root / "locations" / NAME / "src"]
    sources += [root / p / "src" for p in locations.workspace_paths(REPO)]
    env = {"PYTHONPATH": os.pathsep.join(map(str, sources)), "DAGSTER_DISABLE_TELEMETRY": "1"}
    result = run([sys.executable, "-m", "platform_devkit.scaffold", NAME, TEAM], root, env)
    assert result.returncode == 0, result.stdout + result.stderr
    return root, env, result


def changed_lines(root: Path) -> dict[str, list[str]]:
    """Added and removed lines of every tracked file the scaffold changed."""
    diff = run(["git", "diff", "--unified=0", "--no-color"], root).stdout
    changed: dict[str, list[str]] = {}
    current = ""
    for line in diff.splitlines():
        if line.startswith("+++ b/"):
            current = line[6:]
        elif line[:1] in "+-" and not line.startswith(("+++", "---")):
            changed.setdefault(current, []).append(line)
    return changed


def test_the_scaffold_adds_one_folder_and_one_line_to_the_workspace_and_to_codeowners(
    scaffolded,
):
    root, _, _ = scaffolded
    status = run(["git", "status", "--porcelain", "--untracked-files=normal"], root).stdout

    assert sorted(status.splitlines()) == sorted(
        [" M .github/CODEOWNERS", " M dg.toml", f"?? locations/{NAME}/"]
    )
    changed = changed_lines(root)
    assert changed.keys() == {"dg.toml", ".github/CODEOWNERS"}
    assert changed["dg.toml"] == [f'+    {{ path = "locations/{NAME}" }},']
    # GitHub reads CODEOWNERS only from the repository: the one derived file that is committed.
    (owner_line,) = changed[".github/CODEOWNERS"]
    assert owner_line.split() == [f"+/locations/{NAME}/", f"@data-platform/{TEAM}"]


def test_its_test_the_contracts_the_bootstrap_and_the_charts_pass_for_it(scaffolded):
    root, env, _ = scaffolded
    tests = [
        f"locations/{NAME}/tests",
        "tests/contracts",
        "tests/platform/test_warehouse_bootstrap.py",
        "tests/platform/test_location_declarations.py",
        "tests/helm/test_deployment_contracts.py",
        "tests/helm/test_official_chart_values.py",
        "tests/helm/test_platform_chart.py",
        # What every code server and run pod must have (the compute-logs volume among them).
        "tests/helm/test_run_pods.py",
        "tests/helm/test_operations.py",
    ]
    # -rs lists what skipped (the chart tests, where no chart repository answers) and why.
    result = run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *tests],
                 root, env)  # fmt: skip

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout
    collected = run([sys.executable, "-m", "pytest", "-q", "--collect-only", *tests], root, env)
    # The new location is among what ran: its own tests and the per-location chart contracts.
    assert f"locations/{NAME}/tests/test_revenue_last_30_days.py" in collected.stdout
    assert f"[{NAME}]" in collected.stdout


def test_it_declares_the_extras_production_images_are_built_with(scaffolded):
    """`make images EXTRAS=aws` (docs/images.md) builds every location with the extra: one the
    new location lacked would stop the whole build. The lock follows in `make new-location`."""
    root, _, _ = scaffolded
    declared = {}
    for name in locations.workspace_paths(root):
        project = tomllib.loads((root / name / "pyproject.toml").read_text())["project"]
        declared[name] = project.get("optional-dependencies", {})
    new = declared.pop(f"locations/{NAME}")

    # The extras every location declares are the platform's (a location may add its own).
    shared = set.intersection(*(set(extras) for extras in declared.values()))
    assert shared
    for name, extras in declared.items():
        assert {extra: new.get(extra) for extra in shared} == {e: extras[e] for e in shared}, name


def test_its_files_pass_the_repositorys_lint_as_written(scaffolded):
    """make lint runs ruff over the whole repository: a scaffold whose imports sort wrong for
    its name would fail the team's first pull request."""
    root, _, _ = scaffolded
    ruff = str(Path(sys.executable).parent / "ruff")
    folder = f"locations/{NAME}"
    checked = run([ruff, "check", "--no-cache", folder], root)
    formatted = run([ruff, "format", "--check", "--no-cache", folder], root)

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr


@pytest.mark.parametrize("name", ["aardvark", "zebra"])
def test_first_party_imports_sort_for_names_before_and_after_the_platform_modules(name, tmp_path):
    """The example asset imports the location's own module and platform_ops, both first-party:
    their order depends on the name."""
    # What ruff and the scaffold read: the root configuration, the lock, the libraries.
    root = tmp_path / "repo"
    (root / "locations").mkdir(parents=True)
    for file in ("pyproject.toml", "uv.lock"):
        shutil.copy2(REPO / file, root / file)
    (root / "libs").symlink_to(REPO / "libs")
    written = [root / path for path in scaffold.render(name, TEAM, root)]
    ruff = str(Path(sys.executable).parent / "ruff")
    files = [str(path) for path in written if path.suffix == ".py"]
    checked = run([ruff, "check", "--no-cache", "--select", "I", *files], root)

    assert files
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_dg_check_defs_loads_it_with_the_workspace(scaffolded):
    root, env, _ = scaffolded
    dg = str(Path(sys.executable).parent / "dg")
    path = f"{Path(dg).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    listed = run([dg, "list", "defs", "--json"], root / "locations" / NAME,
                 {**env, "DBT_TARGET": "parse", "PATH": path})  # fmt: skip
    checked = run([dg, "check", "defs"], root, {**env, "DBT_TARGET": "parse", "PATH": path})

    assert listed.returncode == 0, listed.stderr[-3000:]
    assert f'"{NAME}/revenue_last_30_days"' in listed.stdout
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-3000:]
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr


def test_the_derived_places_name_it(scaffolded):
    root, env, _ = scaffolded
    script = root / "infra" / "devkit" / "src" / "platform_devkit" / "locations.py"
    secrets = run(["bash", "infra/kind/secrets.sh", "--list"], root, env).stdout
    names = run([sys.executable, str(script), "names"], root, env).stdout.split()
    bootstrap = run([sys.executable, str(script), "bootstrap"], root, env).stdout

    assert names[-1] == NAME
    prefix = NAME.upper()
    assert f"{NAME}-credentials {prefix}_WAREHOUSE_USER {prefix}_WAREHOUSE_PASSWORD" in secrets
    assert f"\\set role_name {NAME}\n" in bootstrap
    assert f"\\set writes '{NAME}'\n" in bootstrap


@pytest.mark.parametrize(
    ("name", "team", "reason"),
    [
        ("Marketing", "growth", "lower-case letters and digits"),
        ("mark-eting", "growth", "lower-case letters and digits"),
        ("2fast", "growth", "starting with a letter"),
        ("m", "growth", "2 to 30"),
        ("class", "growth", "is reserved"),
        ("dagster", "growth", "is reserved"),
        ("ingestion", "growth", "locations/ingestion exists already"),
        ("raw", "growth", "the schema raw belongs to ingestion"),
        ("bireader", "growth", None),
        ("json", "growth", "a module of that name is importable already"),
        ("marketing", "", "TEAM=''"),
        ("marketing", "Growth Team", "the owning team's GitHub team slug"),
    ],
)
def test_bad_names_are_refused_with_the_reason(name, team, reason):
    if reason is None:
        check_name(name, team)  # a fine name: nothing raised
        return
    with pytest.raises(ScaffoldError, match=reason):
        check_name(name, team)


def test_make_new_location_without_arguments_prints_its_usage():
    result = run(["make", "--no-print-directory", "new-location"], REPO)

    assert result.returncode != 0
    assert "usage: make new-location NAME=<name> TEAM=<team>" in result.stdout + result.stderr
