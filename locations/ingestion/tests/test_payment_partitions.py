"""The payment partitions start at the configured first day (PAYMENTS_FIRST_DAY)."""

import os
import subprocess
import sys
from datetime import date

import dagster as dg
import pytest

from ingestion.defs.payments.partitions import DEFAULT_FIRST_DAY, first_day

# What a code server does when it loads the location: import the definitions and build them.
LOAD = """
from ingestion.definitions import defs
import dagster as dg
graph = defs().resolve_asset_graph()
print(graph.get(dg.AssetKey(["raw", "payments"])).partitions_def.get_first_partition_key())
"""


def _load_location(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", LOAD], env={**os.environ, **env},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_the_first_day_is_the_variables_value_or_the_documented_default():
    assert first_day({"PAYMENTS_FIRST_DAY": "2026-02-01"}) == date(2026, 2, 1)
    assert first_day({"PAYMENTS_FIRST_DAY": " 2026-02-01\n"}) == date(2026, 2, 1)
    assert (
        first_day({})
        == first_day({"PAYMENTS_FIRST_DAY": ""})
        == date.fromisoformat(DEFAULT_FIRST_DAY)
    )


@pytest.mark.parametrize(
    "value", ["2026-02-30", "2026-13-01", "20260201", "2026-W05-1", "01.02.2026", "yesterday"]
)
def test_a_first_day_that_is_not_a_calendar_day_fails_naming_the_variable(value):
    with pytest.raises(dg.DagsterInvalidDefinitionError, match="PAYMENTS_FIRST_DAY=") as error:
        first_day({"PAYMENTS_FIRST_DAY": value})

    assert value in str(error.value)
    assert "YYYY-MM-DD" in str(error.value)


def test_the_location_starts_its_partitions_at_the_configured_first_day():
    loaded = _load_location(PAYMENTS_FIRST_DAY="2026-02-01")

    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip().splitlines()[-1] == "2026-02-01"


def test_a_location_with_an_invalid_first_day_does_not_load_and_says_why():
    loaded = _load_location(PAYMENTS_FIRST_DAY="2026-02-30")

    assert loaded.returncode != 0
    assert "PAYMENTS_FIRST_DAY='2026-02-30' is not a day: expected YYYY-MM-DD" in loaded.stderr
