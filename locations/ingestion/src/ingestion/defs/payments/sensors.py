"""Notices payment files in the landing area and requests exactly their days."""

import hashlib
import json
from dataclasses import dataclass, field

import dagster as dg

# A backfill is what Dagster's own automation requests to load many partitions at once
# (AutomationTickEvaluationContext does the same); RunRequest.for_asset_graph_subset takes
# this class, which dagster 1.13 does not export publicly.
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
from dagster._core.events import DagsterEventType
from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus
from dagster._core.storage.dagster_run import FINISHED_STATUSES
from dagster._core.storage.tags import AUTO_RETRY_RUN_ID_TAG

# The clock Dagster's own daemons read (and its tests freeze).
from dagster._time import get_current_timestamp

from ingestion.defs.payments.assets import BAD_DAYS, PAYMENT_SPECS, PAYMENTS
from ingestion.defs.payments.files import Landing, list_landing
from ingestion.defs.payments.partitions import PAYMENTS_PARTITIONS
from ingestion.defs.resources import PaymentLanding
from platform_ops.alerts import will_be_retried
from platform_ops.recovery import RUN_RETRY_TAGS

# How long the cursor remembers a file after newer ones arrived, by modification time. A file
# older than that, by the newest one seen, was delivered before the cursor forgot it. Producers
# write and rename, so a file's time is its delivery time; a copy that keeps an older time
# (rsync -t, cp -p) must land within this window of the newest file to be noticed.
RECENT_SECONDS = 7 * 24 * 3600
# The payment tables and their checks, by group: a new payment asset joins without an edit here.
PAYMENT_ASSETS = dg.AssetSelection.groups("payments")
# A request the sensor made but whose days did not all load is asked again after these waits
# (5, 15, 30 minutes: sparser each time, so a long outage costs few runs), then given up until
# a new version of the day's file lands. A bad delivery (the run names it in `bad_days`) is
# never retried: only a new file can fix it.
RETRY_BACKOFF_SECONDS = (5 * 60, 15 * 60, 30 * 60)
# Every request's runs (and backfill) carry its id, a digest of its days' file versions and
# its attempt: the sensor finds their outcome by it, and a repeated request (a cursor lost in
# a restore) finds the backfill already there.
REQUEST_TAG = "payments/request"
ATTEMPT_TAG = "payments/attempt"
# A request with no run or backfill this long after it was made was never submitted (or was
# deleted): it is forgotten rather than waited for.
SUBMIT_GRACE_SECONDS = 15 * 60


@dataclass
class LandingCursor:
    """What the sensor has handled: the newest modification time seen (`high_water`) and the
    version of each file modified within RECENT_SECONDS of it (or whose store gives no time),
    and the requests it follows until their days loaded or ran out of retries. Bounded by the
    deliveries of about a week, however many files the landing area keeps."""

    high_water: float | None = None
    recent: dict[str, str] = field(default_factory=dict)
    # request id -> Pending, for requests whose outcome is not known yet or that wait to be
    # retried. A day is in one at most; it leaves when loaded, bad, superseded or given up.
    pending: dict[str, "Pending"] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None) -> "LandingCursor":
        if not text:
            return cls()
        state = json.loads(text)
        if "high_water" not in state:
            # The cursor before it was bounded: every file name with its version.
            return cls(recent=state)
        pending = {rid: Pending(**entry) for rid, entry in state.get("pending", {}).items()}
        return cls(state["high_water"], state["recent"], pending)

    def dumps(self) -> str:
        return json.dumps(
            {
                "high_water": self.high_water,
                "recent": self.recent,
                "pending": {rid: vars(entry) for rid, entry in self.pending.items()},
            },
            sort_keys=True,
        )

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
            self.pending,
        )


@dataclass
class Pending:
    """A request of the sensor: its days (as ranges of consecutive days, so a history of years
    is a few entries), the first request it retries (`origin`, its own id for a first request),
    its attempt (0 for the first request), when it was made (`requested_at`, None while it
    waits for its retry) and when its retry is due."""

    ranges: list[list[str]]
    origin: str
    attempt: int = 0
    requested_at: float | None = None
    due: float | None = None
    backfill: bool = False

    @property
    def days(self) -> list[str]:
        return [
            day
            for start, end in self.ranges
            for day in PAYMENTS_PARTITIONS.get_partition_keys_in_range(
                dg.PartitionKeyRange(start, end)
            )
        ]


def _ranges(days: list[str]) -> list[list[str]]:
    subset = PAYMENTS_PARTITIONS.subset_with_partition_keys(days)
    return [[r.start, r.end] for r in subset.get_partition_key_ranges(PAYMENTS_PARTITIONS)]


def request_id(*parts: object) -> str:
    """A request's id: the same days and file versions (or, for a retry, the same first
    request, days and attempt) are the same request, whichever tick or cursor makes it."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def _run_days(run: dg.DagsterRun) -> list[str]:
    if run.tags.get("dagster/partition"):
        return [run.tags["dagster/partition"]]
    start = run.tags.get("dagster/asset_partition_range_start")
    end = run.tags.get("dagster/asset_partition_range_end")
    if not (start and end):
        return []
    return PAYMENTS_PARTITIONS.get_partition_keys_in_range(dg.PartitionKeyRange(start, end))


@dataclass
class Outcome:
    """What became of a request's days."""

    loaded: set[str] = field(default_factory=set)
    bad: dict[str, str] = field(default_factory=dict)  # day -> why its delivery is unusable
    canceled: set[str] = field(default_factory=set)


def outcome(instance: dg.DagsterInstance, rid: str, entry: Pending, now: float) -> Outcome | None:
    """The outcome of request `rid` once its runs (and backfill) finished, else None. A run
    that the platform's run retries will retry is not finished."""
    runs = instance.get_runs(dg.RunsFilter(tags={REQUEST_TAG: rid}))
    backfill = None
    if entry.backfill:
        found = instance.get_backfills(filters=BulkActionsFilter(tags={REQUEST_TAG: rid}), limit=1)
        backfill = found[0] if found else None
        if backfill is not None and backfill.status in (
            BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING, BulkActionStatus.FAILING,
        ):  # fmt: skip
            return None
    if (backfill is None and not runs) and now - (entry.requested_at or now) < SUBMIT_GRACE_SECONDS:
        return None
    if any(_unfinished(instance, run) for run in runs):
        return None
    result = Outcome()
    if backfill is not None and backfill.status == BulkActionStatus.CANCELED:
        result.canceled = set(entry.days)
    for run in runs:
        days = _run_days(run)
        if run.status == dg.DagsterRunStatus.SUCCESS:
            result.loaded.update(days)
            continue
        if run.status == dg.DagsterRunStatus.CANCELED and AUTO_RETRY_RUN_ID_TAG not in run.tags:
            result.canceled.update(days)
        result.loaded.update(_materialized_in(instance, run.run_id))
        result.bad.update(_bad_days_of(instance, run.run_id))
    return result


def _unfinished(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    """Running, or failed with a run retry still to come (its retry carries the same tags): the
    rule of Dagster's retry daemon, which retries no run of a backfill that has ended."""
    if run.status not in FINISHED_STATUSES:
        return True
    return AUTO_RETRY_RUN_ID_TAG not in run.tags and will_be_retried(run, instance)


def _materialized_in(instance: dg.DagsterInstance, run_id: str) -> set[str]:
    records = instance.get_records_for_run(
        run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION
    ).records
    return {
        r.event_log_entry.dagster_event.partition
        for r in records
        if r.event_log_entry.dagster_event.asset_key == PAYMENTS
    }


def _bad_days_of(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    """The days the run's step failure names as bad deliveries (pipelines/payments.py)."""
    bad: dict[str, str] = {}
    for record in instance.get_records_for_run(
        run_id, of_type=DagsterEventType.STEP_FAILURE
    ).records:
        failure = record.event_log_entry.dagster_event.step_failure_data.user_failure_data
        if failure is not None and BAD_DAYS in failure.metadata:
            bad.update(failure.metadata[BAD_DAYS].value)
    return bad


def _request(
    context: dg.SensorEvaluationContext,
    days: list[str],
    attempt: int = 0,
    origin: str | None = None,
    versions: dict[str, str] | None = None,
) -> tuple[str, Pending, dg.RunRequest | None]:
    """The request of `days` at `attempt` (a first one: with the days' file `versions`; a
    retry: of request `origin`): one run for a single day (its run key makes a repeated
    request a no-op), else one backfill (its backfill policy makes it ranged runs of up to 31
    consecutive days), None when that backfill exists already. Its runs carry the platform's
    run retries (for a run that died, not one whose load failed)."""
    days = sorted(days)
    rid = request_id(sorted((versions or {}).items())) if origin is None else (
        request_id(origin, days, attempt)
    )  # fmt: skip
    tags = {**RUN_RETRY_TAGS, REQUEST_TAG: rid, ATTEMPT_TAG: str(attempt)}
    entry = Pending(
        _ranges(days), origin or rid, attempt, get_current_timestamp(), backfill=len(days) > 1
    )
    if len(days) == 1:
        # A first request keeps the key single-day runs always had, so a run made before
        # requests were followed is still recognised.
        key = f"{days[0]}|{versions[days[0]]}" if versions else f"{days[0]}|{entry.origin}"
        run_key = key + (f"|attempt-{attempt}" if attempt else "")
        return rid, entry, dg.RunRequest(partition_key=days[0], run_key=run_key, tags=tags)
    if context.instance.get_backfills(filters=BulkActionsFilter(tags={REQUEST_TAG: rid}), limit=1):
        context.log.info(f"the backfill of {_span(days)} was requested already ({rid})")
        return rid, entry, None
    subset = PAYMENTS_PARTITIONS.subset_with_partition_keys(days)
    request = dg.RunRequest.for_asset_graph_subset(
        AssetGraphSubset(
            partitions_subsets_by_asset_key={spec.key: subset for spec in PAYMENT_SPECS.values()}
        ),
        tags=tags,
    )
    return rid, entry, request


def _span(days: list[str]) -> str:
    return days[0] if len(days) == 1 else f"{days[0]}...{days[-1]} ({len(days)} days)"


def _follow_up(
    context: dg.SensorEvaluationContext, cursor: LandingCursor, now: float
) -> list[dg.RunRequest]:
    """Look at the outcome of the requests in flight; schedule a retry of the days that failed
    for a reason other than their file, and make the retries that are due."""
    requests: list[dg.RunRequest] = []
    for rid, entry in list(cursor.pending.items()):
        days = entry.days
        if entry.requested_at is None:
            if entry.due is not None and entry.due <= now:
                del cursor.pending[rid]
                context.log.info(
                    f"retry {entry.attempt} of {len(RETRY_BACKOFF_SECONDS)}: {_span(days)}"
                )
                new_id, made, request = _request(context, days, entry.attempt, entry.origin)
                cursor.pending[new_id] = made
                requests += [request] if request else []
            continue
        if now - entry.requested_at > RECENT_SECONDS:
            context.log.warning(f"{_span(days)}: no outcome of request {rid} in the cursor's "
                                "window; forgotten")  # fmt: skip
            del cursor.pending[rid]
            continue
        result = outcome(context.instance, rid, entry, now)
        if result is None:
            continue
        del cursor.pending[rid]
        for day, why in sorted(result.bad.items()):
            if day in days and day not in result.loaded:
                context.log.warning(f"{day} not loaded, waiting for a new file: {why}")
        failed = [d for d in days if d not in result.loaded | set(result.bad) | result.canceled]
        if not failed:
            continue
        if entry.attempt >= len(RETRY_BACKOFF_SECONDS):
            context.log.error(
                f"{_span(failed)}: still not loaded after {entry.attempt} retries; none more "
                "until a new file lands (or launch the days by hand)"
            )
            continue
        wait = RETRY_BACKOFF_SECONDS[entry.attempt]
        context.log.warning(
            f"{_span(failed)}: not loaded; retry {entry.attempt + 1} of "
            f"{len(RETRY_BACKOFF_SECONDS)} in {wait // 60} min"
        )
        attempt = entry.attempt + 1
        cursor.pending[request_id(entry.origin, failed, attempt)] = Pending(
            _ranges(failed), entry.origin, attempt, due=now + wait
        )
    return requests


def _supersede(cursor: LandingCursor, days: set[str]) -> None:
    """Days requested anew leave the requests in flight: the new request follows them."""
    for rid, entry in list(cursor.pending.items()):
        rest = [day for day in entry.days if day not in days]
        if not rest:
            del cursor.pending[rid]
        elif len(rest) < len(entry.days):
            entry.ranges = _ranges(rest)


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
    when several days arrive together (a history, a sensor that was stopped). Follows what
    became of each request: days that failed for any reason but their file are requested again
    after 5, 15 and 30 minutes, then left failed until a new file lands; days whose file is bad
    wait for a new file at once.

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

    now = get_current_timestamp()
    versions = {day: "|".join(sorted(names)) for day, names in new_by_day.items()}
    _supersede(cursor, set(versions))
    requests = _follow_up(context, cursor, now)
    if versions:
        if len(versions) > 1:
            context.log.info(f"{len(versions)} days with new files: requesting one backfill")
        rid, entry, request = _request(context, list(versions), versions=versions)
        cursor.pending[rid] = entry
        requests += [request] if request else []
    return dg.SensorResult(
        run_requests=requests, cursor=cursor.advance(landing, handled, now).dumps()
    )
