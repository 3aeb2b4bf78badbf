"""The daily revenue chart: a PNG that says its own date range (title and PNG text chunks).

Outside `defs/` and imported by the report asset when it runs: the defs loader imports every
module under `defs/`, and matplotlib's import was a fifth of the code server's start-up
(docs/benchmarks.md); servers that only serve definitions never need it.
"""

import io
from datetime import date
from decimal import Decimal

import matplotlib

matplotlib.use("Agg")  # no display in a code server or a run pod

import matplotlib.pyplot as plt


def revenue_chart(days: list[date], revenue: list[Decimal], payments: list[Decimal]) -> bytes:
    title = f"Daily revenue {days[0].isoformat()} to {days[-1].isoformat()}"
    figure, axes = plt.subplots(figsize=(10, 4), dpi=100)
    try:
        axes.bar(days, [float(v) for v in revenue], color="#4f46e5", label="revenue (orders)")
        axes.plot(days, [float(v) for v in payments], color="#f59e0b", marker=".",
                  label="payments received")  # fmt: skip
        axes.set_title(title)
        axes.set_ylabel("amount")
        axes.grid(axis="y", alpha=0.3)
        axes.legend(loc="upper left")
        figure.autofmt_xdate()
        figure.tight_layout()
        out = io.BytesIO()
        figure.savefig(
            out,
            format="png",
            metadata={
                "Title": title,
                "Description": f"first_day={days[0].isoformat()} last_day={days[-1].isoformat()}",
            },
        )
        return out.getvalue()
    finally:
        plt.close(figure)
