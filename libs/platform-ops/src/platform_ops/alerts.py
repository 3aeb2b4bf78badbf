"""Alerts: every failed run of a location, including a run a blocking check failed, is posted
as JSON to a webhook, unless Dagster's run retries will re-execute it (then the sensor only
logs it, and the retry's own failure is posted). The body's `text` is one human line, so a
Slack or Mattermost incoming webhook shows it as it is; the other fields are for machines
(docs/operations.md):

    {"text", "run_id", "root_run_id", "attempt", "consecutive_failures", "location", "job",
     "assets", "failed_checks", "error", "url"}

The webhook's URL comes from the Secret variable ALERT_WEBHOOK_URL and is a credential: it is
never logged, put in a definition or sent anywhere but to itself. Unset, no sensor exists.
"""

import json
import os
import time
import urllib.error
import urllib.request

import dagster as dg
from dagster._core.events import RunFailureReason
from dagster._core.execution.backfill import BULK_ACTION_TERMINAL_STATUSES
from dagster._core.execution.retries import auto_reexecution_should_retry_run
from dagster._core.storage.tags import (
    AUTO_RETRY_RUN_ID_TAG,
    BACKFILL_ID_TAG,
    RETRY_NUMBER_TAG,
    RUN_FAILURE_REASON_TAG,
    WILL_RETRY_TAG,
)
from dagster._utils.tags import get_boolean_tag_value

WEBHOOK_VARIABLE = "ALERT_WEBHOOK_URL"
# Where the UI is (e.g. https://dagster.example.com): runs are linked when it is set.
WEBSERVER_VARIABLE = "DAGSTER_WEBSERVER_URL"
SENSOR_NAME = "run_failure_alert"
DEFERRED_SENSOR_NAME = "run_retry_alert"
# Put on a failed run whose alert waits for Dagster's retry, with the location as its value;
# `posted` or `retried` once the deferred sensor has settled it.
DEFERRED_TAG = "platform/alert_deferred"
# A promised retry not launched within this is treated as not coming (the daemon stopped, or
# it failed to launch and wrote no dagster/will_retry=false): the failure is posted.
RETRY_GRACE_SECONDS = 600
# Failed runs whose alert waits, looked at per tick: more are settled on later ticks.
DEFERRED_BATCH = 50
# A receiver that does not answer within this delays the sensor's tick, never blocks it.
POST_TIMEOUT_SECONDS = 10
# How many of an asset's latest planned runs `consecutive_failures` looks at: enough for any
# outage automation keeps retrying (it stops after 4 attempts), a bounded query per alert.
HISTORY_RUNS = 50


def _event_data(instance: dg.DagsterInstance, run_id: str, event_type: dg.DagsterEventType):
    records = instance.get_records_for_run(run_id=run_id, of_type=event_type).records
    return [r.event_log_entry.dagster_event.event_specific_data for r in records]


def _error_line(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str:
    """The first line of the first step's error, at its root cause (the wrapper Dagster puts
    around user code says only which op raised); the run's own failure message otherwise."""
    for data in _event_data(instance, run.run_id, dg.DagsterEventType.STEP_FAILURE):
        error = data.error
        while error is not None and error.cause is not None:
            error = error.cause
        if error is not None and error.message.strip():
            line = error.message.strip().splitlines()[0]
            # dg.Failure is the code saying what went wrong: its words, without the class.
            if error.cls_name == "Failure":
                line = line.split(": ", 1)[-1]
            return line
    failures = instance.get_records_for_run(
        run_id=run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE
    ).records
    message = failures[-1].event_log_entry.dagster_event.message if failures else None
    return (message or "run failed").strip().splitlines()[0]


def will_be_retried(run: dg.DagsterRun, instance: dg.DagsterInstance) -> bool:
    """Whether Dagster's run-retry daemon will re-execute this failed run: the rule of
    dagster/_daemon/auto_run_reexecution (`should_retry`), without its side effects. The daemon
    runs only when the instance enables run retries; it then trusts dagster/will_retry, which
    the instance writes on the run as the failure is stored (False for a step failure under
    dagster/retry_on_asset_or_op_failure=false, else whether fewer than dagster/max_retries
    retries exist in the run's group). Without the tag (a sensor that read the run before it
    was written) the same function computes it. A run of a finished or deleted backfill is
    not retried."""
    if not instance.run_retries_enabled:
        return False
    tag = run.tags.get(WILL_RETRY_TAG)
    if tag is None:
        reason = run.tags.get(RUN_FAILURE_REASON_TAG)
        retry = auto_reexecution_should_retry_run(
            instance, run, RunFailureReason(reason) if reason else None
        )
    else:
        retry = get_boolean_tag_value(tag, default_value=False)
    backfill_id = run.tags.get(BACKFILL_ID_TAG)
    if retry and backfill_id is not None:
        backfill = instance.get_backfill(backfill_id)
        return backfill is not None and backfill.status not in BULK_ACTION_TERMINAL_STATUSES
    return retry


def attempt(run: dg.DagsterRun) -> int:
    """Which try of its root run this run is, from 1: the daemon numbers its retries in
    dagster/retry_number; a run without it (the first, or a manual re-execution) is 1 + 0."""
    return int(run.tags.get(RETRY_NUMBER_TAG, "0")) + 1


def consecutive_failures(
    instance: dg.DagsterInstance, run: dg.DagsterRun, asset_keys: list[dg.AssetKey]
) -> int | None:
    """How many runs in a row, this one and the ones before it, failed for one of the run's
    assets: for each asset, the failed runs that planned it since the last run that planned it
    and succeeded, counting every run alike (run retries, automation's re-requests after a
    backoff, launches); the largest count (the asset failing longest). None when the run has
    no assets."""
    if not asset_keys:
        return None
    counts = []
    for key in asset_keys:
        planned = dg.EventRecordsFilter(dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED, key)
        records = instance.event_log_storage.get_event_records(planned, limit=HISTORY_RUNS)
        run_ids = list(dict.fromkeys(r.run_id for r in records))  # newest first
        # Runs planned after this one (the sensor may read it late) are not its history.
        run_ids = run_ids[run_ids.index(run.run_id) :] if run.run_id in run_ids else [run.run_id]
        statuses = {r.run_id: r.status for r in instance.get_runs(dg.RunsFilter(run_ids=run_ids))}
        failed = 0
        for run_id in run_ids:
            status = statuses.get(run_id)
            if status == dg.DagsterRunStatus.SUCCESS:
                break
            if status == dg.DagsterRunStatus.FAILURE:
                failed += 1
        counts.append(failed)
    return max(counts)


def failure_payload(
    instance: dg.DagsterInstance,
    run: dg.DagsterRun,
    location: str,
    webserver_url: str | None = None,
) -> dict:
    """The webhook body for a failed run."""
    planned = _event_data(instance, run.run_id, dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED)
    asset_keys = sorted(
        {p.asset_key for p in planned if p.asset_key}, key=dg.AssetKey.to_user_string
    )
    assets = [key.to_user_string() for key in asset_keys]
    evaluations = _event_data(instance, run.run_id, dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    failed_checks = sorted(
        e.asset_check_key.to_user_string() for e in evaluations if not e.passed and e.blocking
    )
    error = _error_line(instance, run)
    what = ", ".join(assets) if assets else run.job_name
    checks = f" (blocking check failed: {', '.join(failed_checks)})" if failed_checks else ""
    root_run_id = run.root_run_id or run.run_id
    tries = attempt(run)
    in_a_row = consecutive_failures(instance, run, asset_keys)
    history = f"attempt {tries} of run {root_run_id}"
    if in_a_row is not None:
        history += f", {in_a_row} failed run{'s' if in_a_row != 1 else ''} in a row"
    payload = {
        "text": f"Dagster run failed in {location}: {what}{checks}: {error} ({history})",
        "run_id": run.run_id,
        "root_run_id": root_run_id,
        "attempt": tries,
        "consecutive_failures": in_a_row,
        "location": location,
        "job": run.job_name,
        "assets": assets,
        "failed_checks": failed_checks,
        "error": error,
    }
    if webserver_url:
        payload["url"] = f"{webserver_url.rstrip('/')}/runs/{run.run_id}"
        payload["text"] += f" <{payload['url']}>"
    return payload


def post(url: str, payload: dict, timeout: float = POST_TIMEOUT_SECONDS) -> int:
    """POST the payload as JSON; the HTTP status, or an exception when it was not accepted."""
    request = urllib.request.Request(  # noqa: S310 - the platform's own configured URL
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        return response.status


def _reason(error: Exception, url: str) -> str:
    """Why a POST failed, without the URL (a credential) even where a library quotes it."""
    if isinstance(error, urllib.error.HTTPError):
        reason = f"HTTP {error.code} {error.reason}"
    elif isinstance(error, urllib.error.URLError):
        reason = str(error.reason)
    else:
        reason = f"{type(error).__name__}: {error}"
    return reason.replace(url, f"<{WEBHOOK_VARIABLE}>")


def failure_sensor(
    location: str, webhook_url: str, webserver_url: str | None = None
) -> dg.SensorDefinition:
    """A run-failure sensor for the location's runs that posts each failure to the webhook,
    except a failure Dagster's run retries will re-execute: a person can do nothing about it
    yet, and the retry's failure, if it comes, is posted with its attempt number."""

    @dg.run_failure_sensor(
        name=SENSOR_NAME,
        description=(
            f"Posts every failed run of {location} that run retries will not re-execute to the "
            f"webhook in {WEBHOOK_VARIABLE}."
        ),
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def _alert(context: dg.RunFailureSensorContext) -> None:
        run = context.dagster_run
        run_id = run.run_id
        if will_be_retried(run, context.instance):
            # Settled by the deferred sensor: posted if the retry never comes (the daemon
            # could not launch it), dropped once it is launched.
            context.instance.add_run_tags(run_id, {DEFERRED_TAG: location})
            context.log.info(
                f"run {run_id} (attempt {attempt(run)} of run {run.root_run_id or run_id}) "
                "failed; not posted: Dagster's run retries will re-execute it"
            )
            return
        payload = failure_payload(context.instance, run, location, webserver_url)
        deliver(context.log, webhook_url, payload)

    return _alert


def deliver(log, webhook_url: str, payload: dict) -> bool:
    """POST the alert; whether it was accepted. A receiver that is down must not stop the
    sensor: the failure is logged (without the URL) and the next alert is posted again."""
    try:
        status = post(webhook_url, payload)
    except Exception as error:
        log.warning(
            f"alert for failed run {payload['run_id']} not delivered: {_reason(error, webhook_url)}"
        )
        return False
    log.info(f"alert for failed run {payload['run_id']} delivered (HTTP {status})")
    return True


def deferred_sensor(
    location: str, webhook_url: str, webserver_url: str | None = None
) -> dg.SensorDefinition:
    """Settles the alerts the failure sensor held back for a run retry. A run-failure sensor
    sees each run once, and Dagster's retry daemon may still not launch the retry it promised
    (the code location unreachable as it tries: then it writes dagster/will_retry=false): such
    a failure is posted here, as is one whose retry did not start within RETRY_GRACE_SECONDS.
    A run whose retry was launched needs no alert (the retry's own failure is posted)."""

    @dg.sensor(
        name=DEFERRED_SENSOR_NAME,
        description=(
            f"Posts failed runs of {location} whose run retry was promised but never launched "
            f"to the webhook in {WEBHOOK_VARIABLE}."
        ),
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def _settle(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        instance = context.instance
        records = instance.get_run_records(
            dg.RunsFilter(tags={DEFERRED_TAG: location}), limit=DEFERRED_BATCH
        )
        now = time.time()
        posted = 0
        for record in records:
            run = record.dagster_run
            if run.tags.get(AUTO_RETRY_RUN_ID_TAG):
                instance.add_run_tags(run.run_id, {DEFERRED_TAG: "retried"})
                continue
            ended = record.end_time or record.update_timestamp.timestamp()
            if will_be_retried(run, instance) and now - ended < RETRY_GRACE_SECONDS:
                continue  # the daemon has not acted yet
            payload = failure_payload(instance, run, location, webserver_url)
            payload["text"] += " (its run retry was not launched)"
            if deliver(context.log, webhook_url, payload):
                instance.add_run_tags(run.run_id, {DEFERRED_TAG: "posted"})
                posted += 1
        return dg.SkipReason(f"{len(records)} held-back alert(s) looked at, {posted} posted")

    return _settle


def definitions(location: str) -> dg.Definitions:
    """The location's alert sensors when ALERT_WEBHOOK_URL is set, else nothing."""
    webhook_url = os.environ.get(WEBHOOK_VARIABLE, "").strip()
    if not webhook_url:
        return dg.Definitions()
    webserver_url = os.environ.get(WEBSERVER_VARIABLE, "").strip() or None
    return dg.Definitions(
        sensors=[
            failure_sensor(location, webhook_url, webserver_url),
            deferred_sensor(location, webhook_url, webserver_url),
        ]
    )
