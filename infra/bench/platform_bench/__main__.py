"""`python -m platform_bench`: run the benchmarks and write the report.

make bench         every benchmark, figures of record -> docs/benchmarks.{md,json}
make bench-quick   smaller sizes, fewer runs, no images -> .local/bench/quick/
"""

import argparse
import os
import platform as host
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import psutil

from platform_bench import dbt, suites
from platform_bench.locations import copy_transformation, workspace_locations
from platform_bench.platform import BenchPlatform
from platform_bench.progress import load, say, step
from platform_bench.report import Section, write_json, write_markdown
from platform_devkit.instance import locations
from platform_devkit.paths import REPO_ROOT

BENCHMARKS = ("start", "dbt-load", "ingestion", "dbt-build", "images")


@dataclass(frozen=True)
class Profile:
    """How much to measure."""

    repetitions: int
    # Shop sizes for ingestion; goals are checked at the last (the 1M-row one in `full`).
    ingestion_sizes: tuple[str, ...]
    dbt_size: str
    cold_builds: int
    rebuilds: int
    images: bool


PROFILES = {
    "full": Profile(3, ("medium", "large"), "medium", cold_builds=3, rebuilds=3, images=True),
    "quick": Profile(2, ("small",), "small", cold_builds=1, rebuilds=1, images=False),
    "smoke": Profile(1, ("tiny",), "tiny", cold_builds=1, rebuilds=1, images=False),
}


def _commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    dirty = (
        " (with uncommitted changes)"
        if git("status", "--porcelain", "--untracked-files=no")
        else ""
    )
    return git("rev-parse", "--short", "HEAD") + dirty


def _versions() -> str:
    names = ("dagster", "dlt", "dbt-core", "connectorx", "pandas", "SQLAlchemy", "psycopg2-binary")
    return ", ".join(f"{n} {version(n)}" for n in names)


def run(
    profile_name: str, only: set[str], workdir: Path, out: Path, repetitions: int | None
) -> list[Section]:
    profile = PROFILES[profile_name]
    reps = repetitions or profile.repetitions
    started, clock = datetime.now(UTC), time.monotonic()
    load_start = load()
    sections: list[Section] = []
    workdir.mkdir(parents=True, exist_ok=True)
    say(f"benchmarks ({profile_name}): {', '.join(b for b in BENCHMARKS if b in only)}; "
        f"{reps} repetitions; work folder {workdir}")  # fmt: skip
    with BenchPlatform(workdir) as platform:
        copy = copy_transformation(workdir)
        subjects = workspace_locations(workdir, copy)
        transformation = next(loc for loc in subjects if loc.name == "transformation")
        if only & {"start", "dbt-load", "dbt-build"}:
            # The copy's defs state must exist before its server starts or it builds.
            with step("preparing the transformation copy's defs state (dbt parse)"):
                dbt.prepare_copy(transformation, platform.process_env(), copy)
        if "start" in only:
            sections.append(suites.code_location_start(platform, subjects, reps, workdir / "logs"))
        if "dbt-load" in only:
            sections.append(suites.dbt_load(platform, transformation, copy, reps))
        if "ingestion" in only:
            for i, size in enumerate(profile.ingestion_sizes):
                last = i == len(profile.ingestion_sizes) - 1
                sections.append(suites.ingestion_at(platform, size, reps, goals=last))
        if "dbt-build" in only:
            sections.append(suites.dbt_build(platform, transformation, profile.dbt_size, reps))
    if "images" in only and profile.images:
        names = [loc["name"] for loc in locations()]
        sections.append(
            suites.image_figures(workdir, names, max(profile.cold_builds, 1),
                                 max(profile.rebuilds, 1))
        )  # fmt: skip
    meta = {
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "duration_minutes": (time.monotonic() - clock) / 60,
        "profile": profile_name,
        "repetitions": reps,
        "commit": _commit(),
        "cpus": os.cpu_count(),
        "memory_gb": psutil.virtual_memory().total / 2**30,
        "python": host.python_version(),
        "versions": _versions(),
        "load_start": "/".join(f"{v:.1f}" for v in load_start),
        "load_end": "/".join(f"{v:.1f}" for v in load()),
    }
    write_json(out / "benchmarks.json", meta, sections)
    write_markdown(out / "benchmarks.md", meta, sections)
    say(f"wrote {out / 'benchmarks.md'} and {out / 'benchmarks.json'}")
    return sections


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m platform_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument(
        "--only", default=",".join(BENCHMARKS),
        help=f"comma-separated subset of: {', '.join(BENCHMARKS)}",
    )  # fmt: skip
    parser.add_argument("--repetitions", type=int, help="override the profile's (at least 1)")
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / ".local" / "bench")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs")
    args = parser.parse_args(argv)
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    unknown = only - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    sections = run(args.profile, only, args.workdir.resolve(), args.out.resolve(), args.repetitions)
    for section in sections:
        for goal in section.goals:
            verdict = {None: "not measured", True: "met"}.get(goal.met, f"MISSED ({goal.gap})")
            print(
                f"{goal.name}: {goal.measured if goal.measured is not None else '-'} -> {verdict}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
