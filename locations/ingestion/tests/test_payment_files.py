"""Payment files into raw.payments / raw.payments_rejected, by daily partition."""

from datetime import UTC, datetime, timedelta

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


# -- deliveries that must never destroy or hide data (docs/payment-files.md) ------------------

DAY = "2026-03-07"
HEADER = "payment_id,order_id,amount,currency,method,paid_at\n"


def _day_state(platform, day: str = DAY) -> tuple[int, int]:
    return _rows(platform, "payments", day), _rows(platform, "payments_rejected", day)


def _failure(result) -> str:
    return str(next(e for e in result.all_events if e.is_step_failure).event_specific_data.error)


def _some_order(platform) -> int:
    return platform.query("SELECT min(order_id) FROM orders", database="shop")[0][0]


@pytest.mark.parametrize(
    ("name", "body", "says"),
    [
        (f"payments_{DAY}.csv", "", "0 bytes"),  # the day's file replaced by an empty one
        (f"payments_{DAY}_resend.csv", "", "0 bytes"),
        (f"payments_{DAY}_resend.csv", HEADER, "allow_empty_redelivery"),  # header, no rows
        (f"payments_{DAY}_resend.csv", "payment_id,order_id\n1,2\n", "allow_empty_redelivery"),
        (f"payments_{DAY}_resend.csv", "\ufeff\n \n", "no header line"),  # BOM, white space
        (f"payments_{DAY}_resend.csv", "payment_id,order_id\n", "header lacks amount"),
    ],
    ids=[
        "zero-bytes-in-place", "zero-bytes-resend", "header-only-resend", "all-rejected",
        "no-header", "broken-header-only",
    ],
)  # fmt: skip
def test_a_redelivery_without_rows_never_empties_a_loaded_day(
    platform_env, materialize, name, body, says
):
    platform_env.seed()
    materialize(PAYMENT_KEYS, partition_key=DAY)
    before = _day_state(platform_env)
    assert before[0] > 0
    (platform_env.landing / name).write_text(body)

    result = materialize(PAYMENT_KEYS, partition_key=DAY, raise_on_error=False)

    assert not result.success
    assert _day_state(platform_env) == before
    message = _failure(result)
    assert name in message
    assert says in message


def test_an_operator_can_confirm_that_a_loaded_day_has_no_payments(platform_env, materialize):
    platform_env.seed()
    materialize(PAYMENT_KEYS, partition_key=DAY)
    (platform_env.landing / f"payments_{DAY}_resend.csv").write_text(HEADER)

    result = materialize(
        PAYMENT_KEYS, partition_key=DAY,
        run_config={"ops": {"payment_files": {"config": {"allow_empty_redelivery": True}}}},
    )  # fmt: skip

    assert result.success
    assert _day_state(platform_env) == (0, 0)


def test_a_file_without_a_usable_header_for_a_new_day_fails_naming_the_file(
    platform_env, materialize
):
    platform_env.seed()
    (platform_env.landing / "payments_2026-03-09.csv").write_text("amount;currency\n")

    result = materialize(PAYMENT_KEYS, partition_key="2026-03-09", raise_on_error=False)

    assert not result.success
    assert "payments_2026-03-09.csv is not a delivery: header lacks payment_id" in _failure(result)


def test_a_header_only_file_for_a_new_day_loads_a_day_without_payments(platform_env, materialize):
    platform_env.seed()
    (platform_env.landing / "payments_2026-03-09.csv").write_text(HEADER)

    result = materialize(PAYMENT_KEYS, partition_key="2026-03-09")

    assert result.success
    assert _day_state(platform_env, "2026-03-09") == (0, 0)
    assert check_of(result, "raw/payments", REJECT_CHECK).passed


def test_a_corrected_resend_replaces_the_day_and_its_rows_arrive(platform_env, materialize):
    platform_env.seed()
    materialize(PAYMENT_KEYS, partition_key=DAY)
    original = platform_env.landing / f"payments_{DAY}.csv"
    lines = original.read_text().splitlines()
    loaded_line = platform_env.query(
        "SELECT min(source_line) FROM raw.payments WHERE file_date = %s", (DAY,)
    )[0][0]
    header, fields = lines[0], lines[loaded_line - 1].split(",")
    corrected = ",".join([*fields[:2], "1234.56", *fields[3:]])
    (platform_env.landing / f"payments_{DAY}_resend.csv").write_text(
        "\n".join([header, corrected]) + "\n"
    )

    result = materialize(PAYMENT_KEYS, partition_key=DAY)

    assert result.success
    assert platform_env.query(
        "SELECT payment_id, amount::text, source_file FROM raw.payments WHERE file_date = %s",
        (DAY,),
    ) == [(int(fields[0]), "1234.56", f"payments_{DAY}_resend.csv")]
    assert _rows(platform_env, "payments_rejected", DAY) == 0
    assert metadata_of(result, "raw/payments")["superseded_files"] == [original.name]


def test_a_payment_id_of_another_day_is_rejected_and_that_day_keeps_its_payment(
    platform_env, materialize
):
    platform_env.seed()
    materialize(PAYMENT_KEYS, partition_key="2026-03-08")
    other_day = platform_env.query(
        "SELECT payment_id, amount FROM raw.payments WHERE file_date = '2026-03-08' "
        "ORDER BY payment_id LIMIT 1"
    )[0]
    path = platform_env.landing / f"payments_{DAY}.csv"
    reused = f"{other_day[0]},{_some_order(platform_env)},1.00,EUR,card,{DAY}T12:00:00Z\n"
    path.write_text(path.read_text() + reused)

    result = materialize(PAYMENT_KEYS, partition_key=DAY)

    assert result.success
    assert platform_env.query(
        "SELECT file_date::text, amount FROM raw.payments WHERE payment_id = %s", (other_day[0],)
    ) == [("2026-03-08", other_day[1])]
    assert platform_env.query(
        "SELECT reason, detail LIKE %s FROM raw.payments_rejected WHERE raw_line = %s",
        ("%payments_2026-03-08.csv:%already loaded%", reused.strip()),
    ) == [("duplicate_payment_id", True)]


def test_a_badly_named_file_is_skipped_by_name_and_the_day_still_loads(platform_env, materialize):
    platform_env.seed()
    (platform_env.landing / "payments_2026-02-30.csv").write_text(HEADER)

    result = materialize(PAYMENT_KEYS, partition_key=DAY)

    assert result.success
    assert _rows(platform_env, "payments", DAY) > 0
    skipped = metadata_of(result, "raw/payments")["skipped_files"]
    assert skipped == ["payments_2026-02-30.csv: 2026-02-30 is not a calendar day"]


def test_hostile_lines_are_quarantined_with_reasons_and_the_good_rows_load(
    platform_env, materialize
):
    platform_env.seed()
    order = _some_order(platform_env)
    good = f"900000001,{order},104.68,EUR,card,{DAY}T10:00:00Z\n"
    hostile = [
        f"900000002,{order},12345678901234.00,EUR,card,{DAY}T10:00:00Z\n",  # beyond numeric(12,2)
        f"99999999999999999999,{order},1.00,EUR,card,{DAY}T10:00:00Z\n",  # beyond bigint
        f"900000003,{order},1.00,EUR,ca\x00rd,{DAY}T10:00:00Z\n",  # NUL
        f"900000004,{order},1.00,EUR,carte bleue \xe9,{DAY}T10:00:00Z\n",  # latin-1 byte
        f"900000005,{order},104.6",  # the transfer was cut inside the amount 104.68
    ]
    body = HEADER.encode() + good.encode() + "".join(hostile).encode("latin-1")
    (platform_env.landing / f"payments_{DAY}.csv").write_bytes(b"\xef\xbb\xbf" + body)

    result = materialize(PAYMENT_KEYS, partition_key=DAY)

    assert result.success
    assert platform_env.query(
        "SELECT payment_id, amount::text FROM raw.payments WHERE file_date = %s", (DAY,)
    ) == [(900000001, "104.68")]
    assert platform_env.query(
        "SELECT source_line, reason FROM raw.payments_rejected WHERE file_date = %s "
        "ORDER BY source_line",
        (DAY,),
    ) == [
        (3, "out_of_range"), (4, "out_of_range"), (5, "bad_value"), (6, "bad_encoding"),
        (7, "truncated_line"),
    ]  # fmt: skip


# -- history: ranged runs, as the backfill of the landing sensor's first tick runs them ----------

RANGE = {
    "dagster/asset_partition_range_start": "2026-03-06",
    "dagster/asset_partition_range_end": "2026-03-08",
}


def test_a_ranged_run_loads_each_days_good_rows_and_quarantines_the_rest(platform_env, materialize):
    delivery = platform_env.seed()
    files = {f.day.isoformat(): f for f in delivery.files}
    instance = dg.DagsterInstance.ephemeral()

    result = materialize(PAYMENT_KEYS, tags=RANGE, instance=instance)

    assert result.success
    for day in ("2026-03-06", "2026-03-07", "2026-03-08"):
        assert _day_state(platform_env, day) == (
            files[day].good_rows, sum(files[day].malformed.values())
        )  # fmt: skip
    assert instance.get_materialized_partitions(dg.AssetKey(["raw", "payments"])) == {
        "2026-03-06", "2026-03-07", "2026-03-08",
    }  # fmt: skip
    metadata = metadata_of(result, "raw/payments")
    assert metadata["good_rows"] == sum(
        files[d].good_rows for d in ("2026-03-06", "2026-03-07", "2026-03-08")
    )
    assert "dagster/partition_row_count" not in metadata  # a total over days, not per day
    reject = check_of(result, "raw/payments", REJECT_CHECK)
    assert not reject.passed  # the seed's first day is an incident
    assert [d.split(" ")[0] for d in reject.metadata["days_over_limit"].value] == ["2026-03-06"]


def test_a_ranged_run_and_day_by_day_runs_leave_the_same_rows(platform_env, materialize):
    platform_env.seed()
    columns = "file_date, payment_id, order_id, amount, source_file, source_line"
    materialize(PAYMENT_KEYS, tags=RANGE)
    ranged = platform_env.query(f"SELECT {columns} FROM raw.payments ORDER BY 1, 2")
    rejected = platform_env.query("SELECT * FROM raw.payments_rejected ORDER BY 1, 2, 3")
    platform_env.reset()
    platform_env.seed()

    for day in ("2026-03-06", "2026-03-07", "2026-03-08"):
        materialize(PAYMENT_KEYS, partition_key=day)

    assert platform_env.query(f"SELECT {columns} FROM raw.payments ORDER BY 1, 2") == ranged
    assert platform_env.query("SELECT * FROM raw.payments_rejected ORDER BY 1, 2, 3") == rejected


def _status(instance: dg.DagsterInstance, days: list[str]) -> dict[str, str]:
    from ingestion.defs.payments.partitions import PAYMENTS_PARTITIONS

    statuses = instance.get_status_by_partition(
        dg.AssetKey(["raw", "payments"]), days, PAYMENTS_PARTITIONS
    )
    return {day: status.value if status else "missing" for day, status in statuses.items()}


def _run_five_days(materialize, instance: dg.DagsterInstance):
    """One ranged run of the payment tables, 2026-03-06 to 2026-03-10, allowed to fail."""
    return materialize(
        PAYMENT_KEYS, raise_on_error=False, instance=instance,
        tags={**RANGE, "dagster/asset_partition_range_end": "2026-03-10"},
    )  # fmt: skip


def test_a_ranged_run_loads_its_good_days_and_fails_the_day_without_a_file(
    platform_env, materialize
):
    delivery = platform_env.seed()  # 2026-03-09 is held back
    files = {f.day.isoformat(): f for f in delivery.files}
    instance = dg.DagsterInstance.ephemeral()

    result = _run_five_days(materialize, instance)

    assert not result.success
    good = ["2026-03-06", "2026-03-07", "2026-03-08", "2026-03-10"]
    for day in good:
        assert _day_state(platform_env, day) == (
            files[day].good_rows, sum(files[day].malformed.values())
        )  # fmt: skip
    assert _day_state(platform_env, "2026-03-09") == (0, 0)
    assert _status(instance, [*good, "2026-03-09"]) == {
        **dict.fromkeys(good, "MATERIALIZED"), "2026-03-09": "FAILED",
    }  # fmt: skip
    assert instance.get_materialized_partitions(dg.AssetKey(["raw", "payments_rejected"])) == set(
        good
    )
    failure = next(e for e in result.all_events if e.is_step_failure)
    bad_days = failure.step_failure_data.user_failure_data.metadata["bad_days"].value
    assert list(bad_days) == ["2026-03-09"]
    assert "no payment file" in bad_days["2026-03-09"]
    by_day = {
        e.partition: e.materialization.metadata["good_rows"].value
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(["raw", "payments"])
    }
    assert by_day == {day: files[day].good_rows for day in good}


@pytest.mark.parametrize(
    ("body", "says"),
    [("", "is empty (0 bytes)"), ("amount;currency\n", "is not a delivery")],
    ids=["zero-bytes", "no-header"],
)
def test_a_bad_file_in_a_ranged_run_fails_only_its_day(platform_env, materialize, body, says):
    platform_env.seed()
    (platform_env.landing / "payments_2026-03-09.csv").write_text(body)
    instance = dg.DagsterInstance.ephemeral()

    result = _run_five_days(materialize, instance)

    assert not result.success
    assert says in _failure(result)
    days = ["2026-03-06", "2026-03-07", "2026-03-08", "2026-03-09", "2026-03-10"]
    assert _status(instance, days) == {
        **dict.fromkeys(days, "MATERIALIZED"), "2026-03-09": "FAILED",
    }  # fmt: skip


def test_a_day_that_would_be_emptied_keeps_its_rows_and_its_ids_stay_unique(
    platform_env, materialize
):
    platform_env.seed()
    materialize(PAYMENT_KEYS, partition_key="2026-03-07")
    kept = _day_state(platform_env, "2026-03-07")
    # 03-07 re-delivered empty; 03-08 re-delivered with a payment id raw holds for 03-07.
    (platform_env.landing / "payments_2026-03-07_resend.csv").write_text(HEADER)
    pid, order = platform_env.query(
        "SELECT payment_id, order_id FROM raw.payments WHERE file_date = '2026-03-07' LIMIT 1"
    )[0]
    (platform_env.landing / "payments_2026-03-08_resend.csv").write_text(
        f"{HEADER}{pid},{order},1.00,EUR,card,2026-03-08T10:00:00Z\n"
    )
    instance = dg.DagsterInstance.ephemeral()

    result = materialize(PAYMENT_KEYS, raise_on_error=False, instance=instance, tags=RANGE)

    assert not result.success
    assert "would replace 2026-03-07" in _failure(result)
    assert _day_state(platform_env, "2026-03-07") == kept
    assert _day_state(platform_env, "2026-03-08") == (0, 1)
    assert platform_env.query(
        "SELECT reason FROM raw.payments_rejected WHERE file_date = '2026-03-08'"
    ) == [("duplicate_payment_id",)]
    assert _status(instance, ["2026-03-06", "2026-03-07", "2026-03-08"]) == {
        "2026-03-06": "MATERIALIZED", "2026-03-07": "FAILED", "2026-03-08": "MATERIALIZED",
    }  # fmt: skip


# -- freshness: a run of historical days is news at warning level, never a failure ---------------


def test_a_run_of_historical_days_warns_that_the_newest_day_is_not_loaded(
    platform_env, materialize
):
    platform_env.seed()

    result = materialize(PAYMENT_KEYS, partition_key="2026-03-08")

    assert result.success
    newest = check_of(result, "raw/payments", "newest_day_loaded")
    assert not newest.passed
    assert newest.severity == dg.AssetCheckSeverity.WARN
    assert newest.metadata["run_days"].value == "2026-03-08"


def test_the_newest_day_check_passes_once_the_newest_due_day_is_loaded(platform_env, materialize):
    platform_env.seed()
    now = datetime.now(UTC)
    due = (now - timedelta(hours=9)).date() - timedelta(days=1)
    (platform_env.landing / f"payments_{due}.csv").write_text(HEADER)
    instance = dg.DagsterInstance.ephemeral()
    materialize(PAYMENT_KEYS, partition_key=due.isoformat(), instance=instance)

    later = materialize(PAYMENT_KEYS, partition_key="2026-03-08", instance=instance)

    newest = check_of(later, "raw/payments", "newest_day_loaded")
    assert newest.passed
    assert newest.metadata["newest_due_day"].value == due.isoformat()
