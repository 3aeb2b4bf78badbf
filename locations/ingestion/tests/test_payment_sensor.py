"""The landing-area sensor: new files produce run requests for exactly their days, once."""

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from ingestion.defs.payments.sensors import payment_files_landed
from ingestion.defs.resources import PaymentLanding


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    return tmp_path


def drop(landing: Path, name: str, body: str = "payment_id\n") -> Path:
    path = landing / name
    path.write_text(body)
    return path


def tick(landing: Path, cursor: str | None) -> dg.SensorResult:
    context = dg.build_sensor_context(
        cursor=cursor, resources={"payment_landing": PaymentLanding(url=str(landing))}
    )
    return payment_files_landed(context)


def days(result: dg.SensorResult) -> list[str]:
    return [request.partition_key for request in result.run_requests]


def test_new_files_request_exactly_their_days_and_only_once(landing):
    drop(landing, "payments_2026-03-01.csv")
    drop(landing, "payments_2026-03-02.csv")
    drop(landing, "notes.txt")
    drop(landing, ".payments_2026-03-03.csv.part")  # still being written

    first = tick(landing, None)
    second = tick(landing, first.cursor)

    assert days(first) == ["2026-03-01", "2026-03-02"]
    assert days(second) == []


def test_a_late_file_for_an_old_day_is_picked_up(landing):
    drop(landing, "payments_2026-03-01.csv")
    drop(landing, "payments_2026-03-03.csv")
    cursor = tick(landing, None).cursor

    drop(landing, "payments_2026-03-02.csv")
    late = tick(landing, cursor)

    assert days(late) == ["2026-03-02"]


def test_two_files_of_one_day_make_one_request(landing):
    drop(landing, "payments_2026-03-01.csv")
    drop(landing, "payments_2026-03-01_resend.csv")

    assert days(tick(landing, None)) == ["2026-03-01"]


def test_a_replaced_file_is_requested_again(landing):
    path = drop(landing, "payments_2026-03-01.csv")
    cursor = tick(landing, None).cursor

    path.write_text("payment_id,order_id\n1,2\n")
    stamp = path.stat().st_mtime + 5
    os.utime(path, (stamp, stamp))

    assert days(tick(landing, cursor)) == ["2026-03-01"]


def test_a_file_for_a_day_without_partition_waits_until_the_day_exists(landing):
    today = datetime.now(UTC).date()
    drop(landing, f"payments_{today.isoformat()}.csv")
    drop(landing, "payments_2024-12-31.csv")  # before the first partition: never loadable

    result = tick(landing, None)

    assert days(result) == []
    assert list(json.loads(result.cursor)) == ["payments_2024-12-31.csv"]
    yesterday = (today - timedelta(days=1)).isoformat()
    drop(landing, f"payments_{yesterday}.csv")
    assert days(tick(landing, result.cursor)) == [yesterday]


def test_run_keys_make_a_repeated_request_a_no_op(landing):
    drop(landing, "payments_2026-03-01.csv")

    first = tick(landing, None)
    again = tick(landing, None)  # e.g. a cursor lost in a restore

    assert [r.run_key for r in first.run_requests] == [r.run_key for r in again.run_requests]


def test_a_missing_landing_area_fails_with_its_url(tmp_path):
    with pytest.raises(Exception, match="does-not-exist"):
        tick(tmp_path / "does-not-exist", None)


def test_a_file_named_for_an_impossible_day_is_skipped_and_named_once(landing, capfd):
    drop(landing, "payments_2026-02-30.csv")
    drop(landing, "payments_2026-03-01_part-2.csv")
    drop(landing, "payments_2026-03-01.csv")

    first = tick(landing, None)
    first_log = capfd.readouterr().err
    again = tick(landing, first.cursor)

    assert days(first) == ["2026-03-01"]
    assert "payments_2026-02-30.csv: skipped, 2026-02-30 is not a calendar day" in first_log
    assert "payments_2026-03-01_part-2.csv: skipped, not a payment file name" in first_log
    assert days(again) == []
    assert "skipped" not in capfd.readouterr().err


def test_a_redelivery_requests_its_day_again(landing):
    drop(landing, "payments_2026-03-01.csv")
    cursor = tick(landing, None).cursor

    drop(landing, "payments_2026-03-01_resend.csv")

    assert days(tick(landing, cursor)) == ["2026-03-01"]


def test_a_folder_named_like_a_payment_file_is_skipped_by_name(landing, capfd):
    (landing / "payments_2026-03-03.csv").mkdir()
    drop(landing, "payments_2026-03-01.csv")

    result = tick(landing, None)

    assert days(result) == ["2026-03-01"]
    assert "payments_2026-03-03.csv: skipped, a folder, not a file" in capfd.readouterr().err
