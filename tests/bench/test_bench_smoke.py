"""The benchmark harness (infra/bench, `make bench`): its ratio arithmetic, and benchmarks run
end to end at the smallest size, with the checks they make on every run."""

import json
import os
import shutil

import pytest

from platform_bench import stats, suites
from platform_bench.locations import copy_transformation, transformation_location
from platform_bench.platform import BenchPlatform
from platform_bench.report import write_json, write_markdown


def test_a_ratio_pairs_each_run_with_the_baseline_run_of_the_same_repetition():
    figure = stats.ratio("a / b", [2.0, 9.0, 4.0], [1.0, 3.0, 4.0])

    assert figure.samples == (2.0, 3.0, 1.0)
    assert (figure.median, figure.min, figure.max) == (2.0, 1.0, 3.0)
    # Not the ratio of the medians (4.0 / 3.0): runs that never ran together are not compared.
    assert figure.median != pytest.approx(4.0 / 3.0)


def test_unpaired_or_zero_baselines_are_refused():
    with pytest.raises(ValueError, match="unpaired"):
        stats.paired_ratios([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="zero"):
        stats.paired_ratios([1.0], [0.0])


def test_a_goal_says_whether_and_by_how_much_it_is_missed():
    at_most = stats.Goal("start", "start / floor", 1.3, "max", measured=2.6)
    at_least = stats.Goal("share", "share of COPY", 0.6, "min", measured=0.15)
    met = stats.Goal("rebuild", "rebuild", 15, "max", measured=9)

    assert at_most.met is False
    assert at_most.gap.startswith("2.00x the limit")
    assert at_least.met is False
    assert at_least.gap.startswith("25% of the target")
    assert met.met is True
    assert met.gap == ""
    assert stats.Goal("size", "size", 450, "max").met is None


def test_throughput_is_rows_over_each_runs_time():
    assert stats.throughput(1000, [2.0, 0.5]) == (500.0, 2000.0)


@pytest.mark.slow
@pytest.mark.integration
def test_the_ingestion_benchmark_runs_at_the_tiny_size_and_reports_paired_ratios(
    server_tmp_path, tmp_path
):
    with BenchPlatform(server_tmp_path / "work") as platform:
        section = suites.ingestion_at(platform, "tiny", repetitions=2, goals=True, warmup=False)

    product = section.figure("product (dlt through Dagster): time").samples
    copy = section.figure("COPY limit: time").samples
    pandas = section.figure("pandas read_sql + to_sql: time").samples
    incremental = section.figure("incremental: time").samples
    assert len(product) == len(copy) == 2
    # Throughput is the slower load's time in the denominator: product/COPY = t_copy / t_product.
    assert section.figure("product throughput / COPY limit").samples == pytest.approx(
        [c / p for c, p in zip(copy, product, strict=True)]
    )
    assert section.figure("product throughput / pandas").samples == pytest.approx(
        [d / p for d, p in zip(pandas, product, strict=True)]
    )
    assert section.figure("incremental / full load").samples == pytest.approx(
        [i / p for i, p in zip(incremental, product, strict=True)]
    )
    assert section.figure("product (dlt through Dagster): throughput").samples == pytest.approx(
        [400 / p for p in product]
    )
    assert {g.name for g in section.goals} == {
        "ingestion at 400: share of the COPY limit",
        "ingestion at 400: speed-up over pandas",
        "1% re-run vs full load at 400",
        "payment re-delivery vs shop full load at 400",
    }
    payments_again = section.figure("payments, re-delivery: time").samples
    assert section.figure("payments re-delivery / shop full load").samples == pytest.approx(
        [a / p for a, p in zip(payments_again, product, strict=True)]
    )
    assert all(g.measured is not None for g in section.goals)
    assert set(section.breakdown["product, full load (s, median per step)"]) >= {
        "extract",
        "normalize",
        "load",
    }

    meta = {"started": "now", "duration_minutes": 1.0, "profile": "smoke", "repetitions": 2,
            "commit": "test", "cpus": 2, "memory_gb": 1.0, "python": "3", "versions": "",
            "load_start": "0/0/0", "load_end": "0/0/0"}  # fmt: skip
    write_json(tmp_path / "benchmarks.json", meta, [section])
    write_markdown(tmp_path / "benchmarks.md", meta, [section])
    written = json.loads((tmp_path / "benchmarks.json").read_text())
    figures = {f["name"]: f for f in written["sections"][0]["figures"]}
    assert figures["product throughput / COPY limit"]["runs"] == 2
    assert "| product throughput / COPY limit | x |" in (tmp_path / "benchmarks.md").read_text()


@pytest.mark.slow
@pytest.mark.integration
def test_the_dbt_load_benchmark_loads_without_parsing_under_the_dev_flag(server_tmp_path):
    if (os.environ.get("UV") or shutil.which("uv")) is None:
        pytest.skip("uv is not on PATH (make setup installs it): it makes the location's venv")
    work = server_tmp_path / "work"
    with BenchPlatform(work) as platform:
        copy = copy_transformation(work)
        location = transformation_location(work, copy)
        section = suites.dbt_load(platform, location, copy, repetitions=1)

    figures = {f.name: f for f in section.figures}
    prepared = figures["load with the prepared manifest"].samples
    dev = figures["load under the dev flag (DAGSTER_IS_DEV_CLI=1)"].samples
    preparing = figures["preparing the defs state (dbt parse)"].samples
    assert len(prepared) == len(dev) == len(preparing) == 1
    assert figures["dev-flag load / prepared"].samples == pytest.approx([dev[0] / prepared[0]])
    # Preparing runs dbt parse on top of a load: the pair costs more than the load alone.
    assert figures["(preparing + load) / prepared load"].median > 1
    assert section.notes[0].endswith("materialisable assets in every mode.")
    assert int(section.notes[0].split()[0]) > 0
