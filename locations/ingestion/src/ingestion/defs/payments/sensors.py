"""Notices payment files in the landing area and requests exactly their days."""

import json
import time
from dataclasses import dataclass, field

import dagster as dg

# A backfill is what Dagster's own automation requests to load many partitions at once
# (AutomationTickEvaluationContext does the same); RunRequest.for_asset_graph_subset takes
# this class, which dagster 1.13 does not export publicly.
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset

from ingestion.defs.payments.assets import PAYMENT_SPECS
from ingestion.defs.payments.files import Landing, list_landing
from ingestion.defs.payments.partitions import PAYMENTS_PARTITIONS
from ingestion.defs.resources import PaymentLanding
from platform_ops.recovery import RUN_RETRY_TAGS

# How long the cursor remembers a file after newer ones arrived, by modification time. A file
# older than that, by the newest one seen, was delivered before the cursor forgot it. Producers
# write and rename, so a file's time is its delivery time; a copy that keeps an older time
# (rsync -t, cp -p) must land within this window of the newest file to be noticed.
RECENT_SECONDS = 7 * 24 * 3600
# The payment tables and their checks, by group: a new payment asset joins without an edit here.
PAYMENT_ASSETS = dg.AssetSelection.groups("payments")


@dataclass
class LandingCursor:
    """What the sensor has handled: the newest modification time seen (`high_water`) and the
    version of each file modified within RECENT_SECONDS of it (or whose store gives no time).
    Bounded by the deliveries of about a week, however many files the landing area keeps."""

    high_water: float | None = None
    recent: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None) -> "LandingCursor":
        if not text:
            return cls()
        state = json.loads(text)
        if "high_water" not in state:
            # The cursor before it was bounded: every file name with its version.
            return cls(recent=state)
        return cls(state["high_water"], state["recent"])

    def dumps(self) -> str:
        return json.dumps({"high_water": self.high_water, "recent": self.recent}, sort_keys=True)

    def is_new(self, name: str, version: str, modified: float | None) -> bool:
        if self.recent.get(name) == version:
            return False
        # Older than the window: handled before the cursor forgot it.
        dated = self.high_water is not None and modified is not None
        return not (dated and modified < self.high_water - RECENT_SECONDS)

    def advance(self, landing: Landing, handled: set[str], now: float) -> "LandingCursor":
        """The cursor after a tick that handled `handled`: the high-water mark moves to the
        newest file (a time in the future counts as now), files that fall out of the window
        are forgotten, and so are files no longer in the landing area."""
        entries = [*landing.files, *landing.skipped]
        stamps = [min(e.modified, now) for e in entries if e.modified is not None]
        if self.high_water is not None:
            stamps.append(self.high_water)
        high_water = max(stamps, default=None)
        horizon = high_water - RECENT_SECONDS if high_water is not None else None
        return LandingCursor(
            high_water,
            {
                e.name: e.version
                for e in entries
                if (e.name in handled or self.recent.get(e.name) == e.version)
                and (horizon is None or e.modified is None or e.modified >= horizon)
            },
        )


def _history_backfill(days: list[str]) -> dg.RunRequest:
    """One backfill of the payment tables for `days`; their backfill policy makes it ranged
    runs of consecutive days. Its runs, like the single-day ones, carry the platform's run
    retries (a run that died, not one whose load failed)."""
    subset = PAYMENTS_PARTITIONS.subset_with_partition_keys(days)
    return dg.RunRequest.for_asset_graph_subset(
        AssetGraphSubset(
            partitions_subsets_by_asset_key={spec.key: subset for spec in PAYMENT_SPECS.values()}
        ),
        tags=RUN_RETRY_TAGS,
    )


@dg.sensor(
    name="payment_files_landed",
    # asset_selection, not target: only such a sensor may request a backfill (1.13).
    asset_selection=PAYMENT_ASSETS,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def payment_files_landed(
    context: dg.SensorEvaluationContext, payment_landing: PaymentLanding
) -> dg.SensorResult:
    """Requests the days that have new payment files: one run for a single day, one backfill
    when several days arrive together (a history, a sensor that was stopped).

    A file is new when the cursor does not hold its current version (size and modification
    time, or ETag), so an unchanged file is never requested twice, a late file for an old day
    is picked up whenever it lands, and a replaced or re-delivered file is loaded again. Files
    for days that have no partition yet wait, unrequested, until the day exists.
    """
    cursor = LandingCursor.parse(context.cursor)
    first_day = PAYMENTS_PARTITIONS.start.date().isoformat()
    last_day = PAYMENTS_PARTITIONS.get_last_partition_key()
    landing = list_landing(payment_landing.url)
    handled: set[str] = set()
    for skipped in landing.skipped:
        # Reported once per version of the file, then left alone: one stray file must never
        # stop the other days from loading.
        if cursor.is_new(skipped.name, skipped.version, skipped.modified):
            context.log.warning(f"{skipped.name}: skipped, {skipped.reason}")
            handled.add(skipped.name)
    new_by_day: dict[str, list[str]] = {}
    for file in landing.files:
        if not cursor.is_new(file.name, file.version, file.modified):
            continue
        day = file.day.isoformat()
        if day < first_day:
            context.log.warning(f"{file.name}: {day} is before the first partition, ignored")
            handled.add(file.name)
            continue
        if last_day is None or day > last_day:
            context.log.info(f"{file.name}: partition {day} does not exist yet; waiting")
            continue
        new_by_day.setdefault(day, []).append(f"{file.name}@{file.version}")
        handled.add(file.name)

    if len(new_by_day) > 1:
        context.log.info(f"{len(new_by_day)} days with new files: requesting one backfill")
        requests = [_history_backfill(sorted(new_by_day))]
    else:
        # One day: a run whose key makes a repeated request (a cursor lost in a restore) a no-op.
        requests = [
            dg.RunRequest(
                partition_key=day,
                run_key=f"{day}|{'|'.join(sorted(versions))}",
                tags=RUN_RETRY_TAGS,
            )
            for day, versions in new_by_day.items()
        ]
    return dg.SensorResult(
        run_requests=requests, cursor=cursor.advance(landing, handled, time.time()).dumps()
    )
