"""What a session measured, as JSON (docs/benchmarks.json) and Markdown (docs/benchmarks.md)."""

import json
from dataclasses import dataclass, field
from pathlib import Path

from platform_bench.stats import Figure, Goal

ANALYSIS = Path(__file__).with_name("analysis.md")


@dataclass
class Section:
    """One benchmark: its figures, the goals it checks, and how to read it."""

    key: str
    title: str
    method: str
    figures: list[Figure] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    # Where the time goes (name -> {phase: median seconds}).
    breakdown: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # Load averages (1, 5, 15 min) when the section started and ended.
    load: dict[str, list[float]] = field(default_factory=dict)
    # Why nothing (or not everything) was measured (no Docker engine, ...), or None.
    skipped: str | None = None
    measured_at: str = ""

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def figure(self, name: str) -> Figure:
        return next(f for f in self.figures if f.name == name)

    def as_dict(self) -> dict:
        return {
            "key": self.key,
            "title": self.title,
            "method": self.method,
            "figures": [f.as_dict() for f in self.figures],
            "goals": [g.as_dict() for g in self.goals],
            "breakdown": self.breakdown,
            "notes": self.notes,
            "load": self.load,
            "skipped": self.skipped,
            "measured_at": self.measured_at,
        }


def read_json(path: Path) -> tuple[dict, list[Section]]:
    """A report written by write_json, back as sections (to render the Markdown again)."""
    body = json.loads(path.read_text())
    sections = []
    for raw in body["sections"]:
        section = Section(raw["key"], raw["title"], raw["method"])
        section.figures = [
            Figure(f["name"], f["unit"], tuple(f["samples"]), f.get("note", ""))
            for f in raw["figures"]
        ]
        section.goals = [
            Goal(g["name"], g["figure"], g["target"], g["kind"], g["measured"], g.get("note", ""))
            for g in raw["goals"]
        ]
        section.breakdown = raw["breakdown"]
        section.notes = raw["notes"]
        section.load = raw["load"]
        section.skipped = raw["skipped"]
        section.measured_at = raw.get("measured_at", "")
        sections.append(section)
    return body["meta"], sections


def write_json(path: Path, meta: dict, sections: list[Section]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"meta": meta, "sections": [s.as_dict() for s in sections]}
    path.write_text(json.dumps(body, indent=2, default=str) + "\n")


def _number(value: float, unit: str) -> str:
    if unit == "x":
        return f"{value:.3g}x" if value < 10 else f"{value:.1f}x"
    if unit == "rows/s":
        return f"{value:,.0f}"
    if unit == "MB":
        return f"{value:,.0f}"
    if unit == "s":
        return f"{value:.2f}" if value < 10 else f"{value:.1f}"
    return f"{value:.3g}"


def _figures_table(figures: list[Figure]) -> list[str]:
    lines = ["| figure | unit | median | min | max | runs |", "|---|---|--:|--:|--:|--:|"]
    for f in figures:
        lines.append(
            f"| {f.name}{f' ({f.note})' if f.note else ''} | {f.unit} | "
            f"**{_number(f.median, f.unit)}** | {_number(f.min, f.unit)} | "
            f"{_number(f.max, f.unit)} | {f.runs} |"
        )
    return lines


def _verdict(goal: Goal) -> str:
    if goal.met is None:
        return "not measured"
    return "met" if goal.met else f"**missed**: {goal.gap}"


def _goal_row(goal: Goal, unit: str) -> str:
    sign = "<=" if goal.kind == "max" else ">="
    measured = "-" if goal.measured is None else _number(goal.measured, unit)
    note = f" {goal.note}" if goal.note else ""
    return (
        f"| {goal.name} | {sign} {_number(goal.target, unit)} | {measured} | "
        f"{_verdict(goal)}{note} |"
    )


def _unit_of(section: Section, goal: Goal) -> str:
    try:
        return section.figure(goal.figure).unit
    except StopIteration:
        return "x"


def _load(load: dict[str, list[float]]) -> str:
    parts = [
        f"{when} {values[0]:.1f}/{values[1]:.1f}/{values[2]:.1f}" for when, values in load.items()
    ]
    return "; ".join(parts)


def write_markdown(path: Path, meta: dict, sections: list[Section]) -> None:
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (infra/bench, mk/bench.mk); the same figures are in "
        "[benchmarks.json](benchmarks.json). Each figure is the median of "
        f"{meta['repetitions']} or more runs, with min and max; each ratio is computed per "
        "repetition from runs made back to back in the same session, on the same data and the "
        "same server, and then summarised the same way.",
        "",
        f"- Run: {meta['started']} ({meta['duration_minutes']:.0f} min), profile "
        f"`{meta['profile']}`, commit `{meta['commit']}`",
        f"- Machine: {meta['cpus']} CPUs, {meta['memory_gb']:.0f} GiB, Python {meta['python']}; "
        f"{meta['versions']}",
        f"- Load average (1/5/15 min) at start {meta['load_start']}, at end {meta['load_end']}: "
        "absolute times carry the machine's noise (a load near or above its CPU count means "
        "other work ran beside the benchmarks); the ratios, measured in the same run, are what "
        "the goals compare.",
        "",
        "## Goals",
        "",
        "| goal | target | measured (median) | verdict |",
        "|---|--:|--:|---|",
    ]
    for section in sections:
        for goal in section.goals:
            lines.append(_goal_row(goal, _unit_of(section, goal)))
    for section in sections:
        lines += ["", f"## {section.title}", "", section.method, ""]
        if section.skipped:
            lines += [f"Not measured{' in full' if section.figures else ''}: {section.skipped}", ""]
        if not section.figures:
            continue
        lines += _figures_table(section.figures)
        if section.breakdown:
            lines += ["", "Where it goes:", ""]
            for name, phases in section.breakdown.items():
                parts = ", ".join(f"{k} {v:.2f}" for k, v in phases.items())
                lines.append(f"- {name}: {parts}")
        if section.notes:
            lines += [""] + [f"- {note}" for note in section.notes]
        if section.load:
            when = f"Measured {section.measured_at}; l" if section.measured_at else "L"
            lines += [
                "",
                f"{when}oad average (1/5/15 min) during this section: {_load(section.load)}.",
            ]
    if ANALYSIS.exists():
        lines += ["", ANALYSIS.read_text().strip()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
