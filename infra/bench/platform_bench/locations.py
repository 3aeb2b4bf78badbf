"""The code locations as the benchmarks start them.

Each location runs in an environment with exactly its own dependencies, made the way its image
makes it (`uv sync --frozen --package <location> --no-dev`, from uv's cache, hard-linked: under
a second). The workspace venv would not do: it holds every location's libraries, and
`load_from_defs_folder` imports every installed Dagster plugin library (dagster-dbt with
dbt-core, dagster-dlt with dlt, ...) to publish their component types, so each location would
pay for the others' libraries at start.

The transformation location runs from a private copy of its folder: the benchmark of its
preparation rewrites its defs state, and in the shared checkout other processes
(tests, `make dev`) read and refresh that state at the same time. The copy is the same code and
dbt project, put first on PYTHONPATH, ahead of the environment's editable install.
"""

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from platform_bench.progress import step
from platform_devkit.instance import locations
from platform_devkit.paths import REPO_ROOT

BENCH_DIR = Path(__file__).resolve().parents[1]
STATE_DIR = ".local_defs_state"
# Host state that is not part of a location's code (dbt output, caches, test homes).
_NOT_COPIED = shutil.ignore_patterns(
    ".venv", STATE_DIR, "target", "logs", "__pycache__", ".tmp_dagster_home_*", "tests"
)


@dataclass(frozen=True)
class Location:
    """How to start one code location's gRPC server, or run Python as it would."""

    name: str
    module: str
    # The environment's bin folder (dagster, dbt, python).
    bin_dir: Path
    # Prepended to PYTHONPATH (the transformation copy), or empty.
    pythonpath: tuple[str, ...] = ()
    # Extra `dagster api grpc` arguments (the floor's working directory).
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)

    @property
    def python(self) -> str:
        return str(self.bin_dir / "python")

    def grpc_command(self, port: int) -> list[str]:
        return [
            str(self.bin_dir / "dagster"), "api", "grpc", "-m", self.module,
            "-h", "127.0.0.1", "-p", str(port), *self.args,
        ]  # fmt: skip

    def environment(self, base: dict[str, str]) -> dict[str, str]:
        """`base` plus this location's variables, its bin folder first on PATH."""
        env = {**base, **self.env}
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{base.get('PATH', '')}"
        env.pop("VIRTUAL_ENV", None)
        if self.pythonpath:
            env["PYTHONPATH"] = os.pathsep.join(
                [*self.pythonpath, *filter(None, [base.get("PYTHONPATH")])]
            )
        return env


def floor() -> Location:
    """The floor location runs in the workspace venv: it loads no plugins, so what else is
    installed does not change its start."""
    return Location(
        "floor", "floor_location", Path(sys.executable).parent, args=("-d", str(BENCH_DIR))
    )


def copy_transformation(workdir: Path) -> Path:
    """A fresh copy of locations/transformation (code and dbt project, no state) in workdir."""
    source = REPO_ROOT / "locations" / "transformation"
    target = workdir / "locations" / "transformation"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, ignore=_NOT_COPIED)
    return target


def location_venv(name: str, workdir: Path) -> Path:
    """The location's own environment, as its image installs it; returns its bin folder."""
    venv = workdir / "venvs" / name
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        raise RuntimeError("uv is needed to make the locations' environments (make setup)")
    with step(f"environment of {name}: uv sync --frozen --package {name} --no-dev"):
        subprocess.run(
            [uv, "sync", "--frozen", "--package", name, "--no-dev", "--link-mode", "hardlink",
             "--quiet", "--python", sys._base_executable],
            cwd=REPO_ROOT,
            env={**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv),
                 "UV_PYTHON_DOWNLOADS": "never"},
            check=True, timeout=900,
        )  # fmt: skip
    return venv / "bin"


def transformation_location(workdir: Path, transformation_copy: Path) -> Location:
    """The transformation location in its own environment, its code from the copy."""
    return Location(
        "transformation",
        "transformation.definitions",
        location_venv("transformation", workdir),
        pythonpath=(str(transformation_copy / "src"),),
        # Code servers run dbt with the warehouse target; nothing connects at load.
        env={"DBT_TARGET": "dev"},
    )


def workspace_locations(workdir: Path, transformation_copy: Path) -> list[Location]:
    """Every location of dg.toml, in its order, each in its own environment; transformation
    from the copy."""
    found = []
    for location in locations():
        name = location["name"]
        if name == "transformation":
            found.append(transformation_location(workdir, transformation_copy))
        else:
            found.append(Location(name, location["module"], location_venv(name, workdir)))
    return found


def manifest_of(location_copy: Path) -> Path:
    """The prepared manifest inside a copy's defs state (exists after preparation)."""
    matches = list(location_copy.glob(f"src/*/defs/{STATE_DIR}/*/project/target/manifest.json"))
    if len(matches) != 1:
        raise FileNotFoundError(f"no prepared manifest under {location_copy} ({matches})")
    return matches[0]
