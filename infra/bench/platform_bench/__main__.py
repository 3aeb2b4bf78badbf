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
from platform_bench.report import Section, read_json, write_json, write_markdown
from platform_devkit.instance import locations
from platform_devkit.paths import REPO_ROOT
from platform_devkit.shop.generator import SIZES

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


SECTION_ORDER = ("start", "dbt_load", "ingestion", "dbt_build", "images")


def _rank(section: Section) -> tuple[int, int]:
    """Report order: by benchmark, ingestion sizes smallest first."""
    prefix, _, size = section.key.partition("_")
    key = section.key if section.key in SECTION_ORDER else prefix
    return SECTION_ORDER.index(key), SIZES[size].orders if size in SIZES else 0


class Report:
    """The report on disk, rewritten after every section: an error in a later benchmark (a
    Docker engine gone, a build failing) leaves the earlier figures written. With `merge`,
    sections of the existing report that this session does not measure are kept."""

    def __init__(self, out: Path, profile: str, repetitions: int, merge: bool) -> None:
        self.out = out
        self.sections: list[Section] = []
        self.kept: list[Section] = []
        self.started, self.clock, self.load_start = datetime.now(UTC), time.monotonic(), load()
        self.profile, self.repetitions = profile, repetitions
        if merge and (out / "benchmarks.json").exists():
            self.kept = read_json(out / "benchmarks.json")[1]

    def add(self, section: Section) -> None:
        section.measured_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        self.sections.append(section)
        self.write()

    def write(self) -> None:
        measured = {s.key for s in self.sections}
        everything = sorted(
            [*(s for s in self.kept if s.key not in measured), *self.sections], key=_rank
        )
        meta = {
            "started": self.started.strftime("%Y-%m-%d %H:%M UTC"),
            "duration_minutes": (time.monotonic() - self.clock) / 60,
            "profile": self.profile,
            "repetitions": self.repetitions,
            "commit": _commit(),
            "cpus": os.cpu_count(),
            "memory_gb": psutil.virtual_memory().total / 2**30,
            "python": host.python_version(),
            "versions": _versions(),
            "load_start": "/".join(f"{v:.1f}" for v in self.load_start),
            "load_end": "/".join(f"{v:.1f}" for v in load()),
        }
        write_json(self.out / "benchmarks.json", meta, everything)
        write_markdown(self.out / "benchmarks.md", meta, everything)
        say(f"wrote {self.out / 'benchmarks.md'} and {self.out / 'benchmarks.json'}")


def run(
    profile_name: str,
    only: set[str],
    workdir: Path,
    out: Path,
    repetitions: int | None,
    merge: bool = False,
) -> list[Section]:
    profile = PROFILES[profile_name]
    reps = repetitions or profile.repetitions
    report = Report(out, profile_name, reps, merge)
    workdir.mkdir(parents=True, exist_ok=True)
    say(f"benchmarks ({profile_name}): {', '.join(b for b in BENCHMARKS if b in only)}; "
        f"{reps} repetitions; work folder {workdir}")  # fmt: skip
    if only - {"images"}:
        with BenchPlatform(workdir) as platform:
            copy = copy_transformation(workdir)
            subjects = workspace_locations(workdir, copy)
            transformation = next(loc for loc in subjects if loc.name == "transformation")
            if only & {"start", "dbt-load", "dbt-build"}:
                # The copy's defs state must exist before its server starts or it builds.
                with step("preparing the transformation copy's defs state (dbt parse)"):
                    dbt.prepare_copy(transformation, platform.process_env(), copy)
            if "start" in only:
                report.add(suites.code_location_start(platform, subjects, reps, workdir / "logs"))
            if "dbt-load" in only:
                report.add(suites.dbt_load(platform, transformation, copy, reps))
            if "ingestion" in only:
                for i, size in enumerate(profile.ingestion_sizes):
                    last = i == len(profile.ingestion_sizes) - 1
                    report.add(suites.ingestion_at(platform, size, reps, goals=last))
            if "dbt-build" in only:
                report.add(suites.dbt_build(platform, transformation, profile.dbt_size, reps))
    if "images" in only and profile.images:
        names = [loc["name"] for loc in locations()]
        report.add(suites.image_figures(workdir, names, profile.cold_builds, profile.rebuilds))
    report.write()
    return report.sections


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
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the sections of the existing report that this run does not measure",
    )
    parser.add_argument(
        "--render",
        action="store_true",
        help="measure nothing: write benchmarks.md again from the benchmarks.json in --out",
    )
    args = parser.parse_args(argv)
    if args.render:
        meta, sections = read_json(args.out / "benchmarks.json")
        write_markdown(args.out / "benchmarks.md", meta, sections)
        return 0
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    unknown = only - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    sections = run(
        args.profile,
        only,
        args.workdir.resolve(),
        args.out.resolve(),
        args.repetitions,
        args.merge,
    )
    for section in sections:
        for goal in section.goals:
            verdict = {None: "not measured", True: "met"}.get(goal.met, f"MISSED ({goal.gap})")
            print(
                f"{goal.name}: {goal.measured if goal.measured is not None else '-'} -> {verdict}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
