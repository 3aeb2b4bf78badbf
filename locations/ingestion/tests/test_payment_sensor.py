"""The landing-area sensor: new files produce run requests for exactly their days, once."""

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.test_utils import freeze_time

from ingestion.defs.payments.files import modification_time
from ingestion.defs.payments.sensors import (
    ATTEMPT_TAG,
    RECENT_SECONDS,
    RETRY_BACKOFF_SECONDS,
    LandingCursor,
    payment_files_landed,
)
from ingestion.defs.resources import PaymentLanding
from platform_ops.recovery import RUN_RETRY_TAGS

PAYMENT_KEYS = {dg.AssetKey(["raw", "payments"]), dg.AssetKey(["raw", "payments_rejected"])}
DAY = 24 * 3600


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    return tmp_path


def drop(landing: Path, name: str, body: str = "payment_id\n") -> Path:
    path = landing / name
    path.write_text(body)
    return path


def tick(
    landing: Path, cursor: str | None, instance: dg.DagsterInstance | None = None
) -> dg.SensorResult:
    context = dg.build_sensor_context(
        cursor=cursor,
        resources={"payment_landing": PaymentLanding(url=str(landing))},
        instance=instance or dg.DagsterInstance.ephemeral(),
    )
    return payment_files_landed(context)


def backfill_days(request: dg.RunRequest) -> list[str]:
    """The days a backfill request covers, the same for every payment table."""
    subsets = request.asset_graph_subset.partitions_subsets_by_asset_key
    assert set(subsets) == PAYMENT_KEYS
    (keys,) = {tuple(sorted(subset.get_partition_keys())) for subset in subsets.values()}
    return list(keys)


def days(result: dg.SensorResult) -> list[str]:
    """The days requested, by a run or by a backfill."""
    return sorted(
        day
        for request in result.run_requests
        for day in (
            backfill_days(request)
            if request.requires_backfill_daemon()
            else [request.partition_key]
        )
    )


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
    assert list(LandingCursor.parse(result.cursor).recent) == ["payments_2024-12-31.csv"]
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


def test_a_history_arrives_as_one_backfill_of_both_payment_tables(landing, ingestion_defs):
    history = [f"2026-02-{d:02d}" for d in range(1, 29)] + ["2026-03-02"]  # 03-01 is late
    for day in history:
        drop(landing, f"payments_{day}.csv")
    context = dg.build_sensor_context(
        resources={"payment_landing": PaymentLanding(url=str(landing))},
        definitions=ingestion_defs,
        instance=dg.DagsterInstance.ephemeral(),
    )

    result = payment_files_landed(context)

    [request] = result.run_requests
    assert request.requires_backfill_daemon()
    assert backfill_days(request) == history
    assert RUN_RETRY_TAGS.items() <= request.tags.items()
    assert request.tags[ATTEMPT_TAG] == "0"
    # What the sensor daemon checks before it submits the backfill.
    sensor = ingestion_defs.resolve_sensor_def("payment_files_landed")
    assert sensor.validate_backfill_requests(result.run_requests, context) == [request]
    # The backfill policy makes it ranged runs of consecutive days, at most 31 each.
    spec = ingestion_defs.resolve_assets_def(dg.AssetKey(["raw", "payments"]))
    assert spec.backfill_policy.max_partitions_per_run == 31


def test_a_single_new_day_is_one_run_with_the_platforms_run_retries(landing):
    drop(landing, "payments_2026-03-01.csv")

    [request] = tick(landing, None).run_requests

    assert request.partition_key == "2026-03-01"
    assert not request.requires_backfill_daemon()
    assert RUN_RETRY_TAGS.items() <= request.tags.items()


def _deliver(landing: Path, day: str, at: float) -> Path:
    path = drop(landing, f"payments_{day}.csv")
    os.utime(path, (at, at))
    return path


def test_the_cursor_stays_bounded_however_many_files_the_landing_area_keeps(landing):
    start = datetime(2025, 3, 1, tzinfo=UTC)
    delivered = start.timestamp() + DAY / 3  # each file lands at 08:00 the next morning
    for n in range(150):
        _deliver(landing, (start + timedelta(days=n)).date().isoformat(), delivered + n * DAY)
    # No request ever produces a run here: the worst case for the requests the cursor follows
    # (each is retried, then given up). A day passes between ticks.
    now = datetime.now(UTC).timestamp()
    with freeze_time(now):
        history = tick(landing, None)
    assert len(days(history)) == 150

    cursor, sizes = history.cursor, []
    for n in range(150, 190):
        day = (start + timedelta(days=n)).date().isoformat()
        _deliver(landing, day, delivered + n * DAY)
        with freeze_time(now + (n - 149) * DAY):
            result = tick(landing, cursor)
        assert day in days(result)
        cursor = result.cursor
        state = LandingCursor.parse(cursor)
        sizes.append((len(state.recent), len(state.pending)))

    window = RECENT_SECONDS // DAY
    assert max(recent for recent, _ in sizes) <= window + 1
    assert max(pending for _, pending in sizes) <= 2 * (len(RETRY_BACKOFF_SECONDS) + 1)
    assert len(cursor) < 4_000
    # The requests in flight run out of retries; the forgotten files are not requested again.
    first_requests = []
    for n in range(41, 50):
        with freeze_time(now + n * DAY):
            result = tick(landing, cursor)
        first_requests += [r for r in result.run_requests if r.tags[ATTEMPT_TAG] == "0"]
        cursor = result.cursor
    assert first_requests == []
    assert LandingCursor.parse(cursor).pending == {}


def test_a_forgotten_file_replaced_or_redelivered_is_requested_again(landing):
    old = _deliver(landing, "2026-01-05", datetime(2026, 1, 6, 8, tzinfo=UTC).timestamp())
    _deliver(landing, "2026-02-20", datetime(2026, 2, 21, 8, tzinfo=UTC).timestamp())
    cursor = tick(landing, None).cursor
    assert "payments_2026-01-05.csv" not in LandingCursor.parse(cursor).recent

    old.write_text("payment_id,order_id\n1,2\n")  # replaced in place, now
    replaced = tick(landing, cursor)
    drop(landing, "payments_2026-01-05_resend.csv")
    redelivered = tick(landing, replaced.cursor)

    assert days(replaced) == ["2026-01-05"]
    assert days(redelivered) == ["2026-01-05"]


def test_a_file_dated_in_the_future_does_not_make_the_cursor_forget_todays_files(landing):
    future = drop(landing, "payments_2026-03-01.csv")
    ahead = datetime.now(UTC).timestamp() + 400 * DAY  # a producer with a wrong clock
    os.utime(future, (ahead, ahead))
    cursor = tick(landing, None).cursor

    drop(landing, "payments_2026-03-02.csv")

    assert days(tick(landing, cursor)) == ["2026-03-02"]


def test_a_cursor_of_the_unbounded_format_carries_over_without_new_requests(landing):
    drop(landing, "payments_2026-03-01.csv")
    drop(landing, "notes.txt")
    unbounded = json.dumps(LandingCursor.parse(tick(landing, None).cursor).recent)

    result = tick(landing, unbounded)

    assert days(result) == []
    assert set(LandingCursor.parse(result.cursor).recent) == {
        "payments_2026-03-01.csv", "notes.txt",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        ({"mtime": 1767225600.5}, 1767225600.5),  # a local folder, SFTP
        ({"ETag": '"9b2c"', "LastModified": datetime(2026, 1, 1, tzinfo=UTC)}, 1767225600.0),  # S3
        ({"updated": "2026-01-01T00:00:00.000Z"}, 1767225600.0),  # GCS
        ({"ETag": '"9b2c"'}, None),  # a store that gives no time: kept by version only
    ],
    ids=["mtime", "s3", "gcs", "none"],
)
def test_a_files_modification_time_is_read_from_what_each_store_lists(info, expected):
    assert modification_time(info) == expected
