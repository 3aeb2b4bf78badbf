"""Payment files into raw.payments / raw.payments_rejected, by daily partition."""

import dagster as dg
import pytest

from platform_devkit.testing import check_of, metadata_of

pytestmark = pytest.mark.integration

PAYMENT_KEYS = ["raw/payments", "raw/payments_rejected"]
REJECT_CHECK = "reject_ratio_within_limit"


def _rows(platform, table: str, day: str) -> int:
    return platform.query(f"SELECT count(*) FROM raw.{table} WHERE file_date = %s", (day,))[0][0]


def test_a_day_loads_its_good_rows_and_quarantines_the_rest(platform_env, materialize):
    delivery = platform_env.seed()
    report = next(f for f in delivery.files if f.day.isoformat() == "2026-03-08")

    result = materialize(PAYMENT_KEYS, partition_key="2026-03-08")

    assert result.success
    assert _rows(platform_env, "payments", "2026-03-08") == report.good_rows
    assert _rows(platform_env, "payments_rejected", "2026-03-08") == sum(report.malformed.values())
    assert metadata_of(result, "raw/payments")["good_rows"] == report.good_rows
    assert check_of(result, "raw/payments", REJECT_CHECK).passed


def test_an_incident_day_loads_its_good_rows_and_fails_the_reject_check(platform_env, materialize):
    delivery = platform_env.seed()
    incident = delivery.files[0]  # the seed's first day has 12% malformed rows
    bad = sum(incident.malformed.values())
    assert bad / (bad + incident.good_rows) > 0.05

    result = materialize(PAYMENT_KEYS, partition_key=incident.day.isoformat())

    assert result.success  # the good rows are in; the check carries the bad news
    assert _rows(platform_env, "payments", incident.day.isoformat()) == incident.good_rows
    rejected = platform_env.query(
        "SELECT source_file, source_line, reason, raw_line FROM raw.payments_rejected"
    )
    assert len(rejected) == bad
    assert {r[0] for r in rejected} == {incident.name}
    assert all(line > 1 and reason and raw for _, line, reason, raw in rejected)
    assert {r[2] for r in rejected} >= {"bad_type", "missing_field", "unknown_order"}
    check = check_of(result, "raw/payments", REJECT_CHECK)
    assert not check.passed
    assert check.metadata["rejected_rows"].value == bad
    assert check.metadata["good_rows"].value == incident.good_rows


def test_reloading_a_day_replaces_it_without_duplicates(platform_env, materialize):
    platform_env.seed()
    materialize(PAYMENT_KEYS, partition_key="2026-03-07")
    before = (
        _rows(platform_env, "payments", "2026-03-07"),
        _rows(platform_env, "payments_rejected", "2026-03-07"),
    )

    materialize(PAYMENT_KEYS, partition_key="2026-03-07")

    after = (
        _rows(platform_env, "payments", "2026-03-07"),
        _rows(platform_env, "payments_rejected", "2026-03-07"),
    )
    assert after == before
    assert (
        platform_env.query("SELECT count(*) - count(DISTINCT payment_id) FROM raw.payments")[0][0]
        == 0
    )


def test_a_corrected_file_clears_the_days_earlier_rejections(platform_env, materialize):
    delivery = platform_env.seed()
    day = "2026-03-07"
    materialize(PAYMENT_KEYS, partition_key=day)
    assert _rows(platform_env, "payments_rejected", day) > 0
    path = platform_env.landing / f"payments_{day}.csv"
    rejected_lines = {
        r[0] for r in platform_env.query("SELECT source_line FROM raw.payments_rejected")
    }
    lines = path.read_text().splitlines()
    kept = [line for n, line in enumerate(lines, 1) if n not in rejected_lines]
    path.write_text("\n".join(kept) + "\n")

    materialize(PAYMENT_KEYS, partition_key=day)

    assert _rows(platform_env, "payments_rejected", day) == 0
    good = next(f.good_rows for f in delivery.files if f.day.isoformat() == day)
    assert _rows(platform_env, "payments", day) == good


def test_a_day_without_a_file_fails_and_names_what_is_missing(platform_env, materialize):
    platform_env.seed()  # the 2026-03-09 file is held back: it arrives late

    result = materialize(PAYMENT_KEYS, partition_key="2026-03-09", raise_on_error=False)

    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "2026-03-09" in str(failure.event_specific_data.error)


def test_a_new_column_in_the_files_evolves_the_table(platform_env, materialize):
    platform_env.seed()
    path = platform_env.landing / "payments_2026-03-08.csv"
    header, *rows = path.read_text().splitlines()
    path.write_text("\n".join([header + ",channel", *(r + ",web" for r in rows)]) + "\n")

    result = materialize(PAYMENT_KEYS, partition_key="2026-03-08")

    assert result.success
    channels = platform_env.query("SELECT DISTINCT channel FROM raw.payments")
    assert channels == [("web",)]


def test_payment_assets_are_partitioned_by_day(ingestion_defs):
    spec = ingestion_defs.resolve_assets_def(dg.AssetKey(["raw", "payments"]))
    assert isinstance(spec.partitions_def, dg.DailyPartitionsDefinition)
