"""A code server loading the exports location imports what serving definitions needs, not what
the assets need to run (docs/benchmarks.md: matplotlib, pyarrow and fsspec were a quarter of
its start-up)."""

import json
import subprocess
import sys

# Libraries only the asset bodies use; each costs start-up time on every server and every run
# pod if imported at load.
RUN_TIME_ONLY = ("matplotlib", "pyarrow", "numpy", "fsspec")

# What the exports code adds to what a code server imports anyway: Dagster and every installed
# plugin library, which Dagster imports for a defs-folder location (in the workspace venv that
# includes dlt, which itself imports fsspec; in the exports image it does not).
LOAD = """
import json, sys
import dagster as dg
from dagster.components.core.package_entry import discover_entry_point_package_objects

discover_entry_point_package_objects()
before = {name.split(".")[0] for name in sys.modules}
from exports.definitions import defs
loaded = defs if isinstance(defs, dg.Definitions) else defs()
graph = loaded.resolve_asset_graph()
print(json.dumps({
    "assets": sorted(k.to_user_string() for k in graph.materializable_asset_keys),
    "added": sorted({name.split(".")[0] for name in sys.modules} - before),
}))
"""


def test_loading_the_definitions_leaves_run_time_libraries_unimported():
    result = subprocess.run(
        [sys.executable, "-c", LOAD], capture_output=True, text=True, timeout=300
    )

    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert "reports/daily_revenue" in loaded["assets"]
    assert not set(RUN_TIME_ONLY) & set(loaded["added"])
    assert "exports" in loaded["added"]


def test_the_report_chart_still_renders_a_png():
    """The control: the chart module the report imports at run time works on its own."""
    from datetime import date
    from decimal import Decimal

    from exports.charts import revenue_chart

    png = revenue_chart([date(2026, 1, 1), date(2026, 1, 2)], [Decimal(1), Decimal(2)],
                        [Decimal(1), Decimal(1)])  # fmt: skip

    assert png.startswith(b"\x89PNG")
