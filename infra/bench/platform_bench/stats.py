"""Figures (median, min, max of repeated runs) and paired ratios.

A ratio is computed per repetition, from a subject run and the baseline run of the same
repetition (run back to back, so they share the machine's load at that moment), and then
summarised like any other figure. Dividing two medians would pair runs that never ran together.
"""

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Figure:
    """One measured quantity: its runs and their summary."""

    name: str
    unit: str
    samples: tuple[float, ...]
    note: str = ""

    def __post_init__(self) -> None:
        if not self.samples:
            raise ValueError(f"figure {self.name!r} has no samples")

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    @property
    def runs(self) -> int:
        return len(self.samples)

    def as_dict(self) -> dict:
        return {
            **asdict(self),
            "samples": list(self.samples),
            "median": self.median,
            "min": self.min,
            "max": self.max,
            "runs": self.runs,
        }


def paired_ratios(subject: Sequence[float], baseline: Sequence[float]) -> tuple[float, ...]:
    """subject[i] / baseline[i] for each repetition i."""
    if len(subject) != len(baseline):
        raise ValueError(f"unpaired runs: {len(subject)} subject, {len(baseline)} baseline")
    if any(b == 0 for b in baseline):
        raise ValueError("a baseline run measured zero")
    return tuple(s / b for s, b in zip(subject, baseline, strict=True))


def ratio(name: str, subject: Sequence[float], baseline: Sequence[float], note: str = "") -> Figure:
    """The paired ratio subject / baseline as a figure (unit "x")."""
    return Figure(name, "x", paired_ratios(subject, baseline), note)


def throughput(rows: int, seconds: Sequence[float]) -> tuple[float, ...]:
    """Rows per second of each run."""
    return tuple(rows / s for s in seconds)


@dataclass
class Goal:
    """A target from the issue and how the measured median compares with it."""

    name: str
    figure: str
    target: float
    # "max": the figure must be at most the target; "min": at least.
    kind: str
    measured: float | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def met(self) -> bool | None:
        if self.measured is None:
            return None
        return self.measured <= self.target if self.kind == "max" else self.measured >= self.target

    @property
    def gap(self) -> str:
        """How far a missed goal is from its target, in words ("" when met or unmeasured)."""
        if self.met is not False or self.measured is None:
            return ""
        if self.kind == "max":
            return (
                f"{self.measured / self.target:.2f}x the limit ({self.measured - self.target:+.3g})"
            )
        return (
            f"{self.measured / self.target:.0%} of the target ({self.measured - self.target:+.3g})"
        )

    def as_dict(self) -> dict:
        return {**asdict(self), "met": self.met, "gap": self.gap}
