"""Alerts: every failed run of a location, including a run a blocking check failed, is posted
as JSON to a webhook. The body's `text` is one human line, so a Slack or Mattermost incoming
webhook shows it as it is; the other fields are for machines (docs/operations.md):

    {"text", "run_id", "location", "job", "assets", "failed_checks", "error", "url"}

The webhook's URL comes from the Secret variable ALERT_WEBHOOK_URL and is a credential: it is
never logged, put in a definition or sent anywhere but to itself. Unset, no sensor exists.
"""

import json
import os
import urllib.error
import urllib.request

import dagster as dg

WEBHOOK_VARIABLE = "ALERT_WEBHOOK_URL"
# Where the UI is (e.g. https://dagster.example.com): runs are linked when it is set.
WEBSERVER_VARIABLE = "DAGSTER_WEBSERVER_URL"
SENSOR_NAME = "run_failure_alert"
# A receiver that does not answer within this delays the sensor's tick, never blocks it.
POST_TIMEOUT_SECONDS = 10


def _event_data(instance: dg.DagsterInstance, run_id: str, event_type: dg.DagsterEventType):
    records = instance.get_records_for_run(run_id=run_id, of_type=event_type).records
    return [r.event_log_entry.dagster_event.event_specific_data for r in records]


def _error_line(context: dg.RunFailureSensorContext) -> str:
    """The first line of the first step's error, at its root cause (the wrapper Dagster puts
    around user code says only which op raised); the run's own failure message otherwise."""
    for event in context.get_step_failure_events():
        error = event.step_failure_data.error
        while error is not None and error.cause is not None:
            error = error.cause
        if error is not None and error.message.strip():
            line = error.message.strip().splitlines()[0]
            # dg.Failure is the code saying what went wrong: its words, without the class.
            if error.cls_name == "Failure":
                line = line.split(": ", 1)[-1]
            return line
    return (context.failure_event.message or "run failed").strip().splitlines()[0]


def failure_payload(
    context: dg.RunFailureSensorContext, location: str, webserver_url: str | None = None
) -> dict:
    """The webhook body for a failed run."""
    run = context.dagster_run
    instance = context.instance
    planned = _event_data(instance, run.run_id, dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED)
    assets = sorted({p.asset_key.to_user_string() for p in planned if p.asset_key})
    evaluations = _event_data(instance, run.run_id, dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    failed_checks = sorted(
        e.asset_check_key.to_user_string() for e in evaluations if not e.passed and e.blocking
    )
    error = _error_line(context)
    what = ", ".join(assets) if assets else run.job_name
    checks = f" (blocking check failed: {', '.join(failed_checks)})" if failed_checks else ""
    payload = {
        "text": f"Dagster run failed in {location}: {what}{checks}: {error}",
        "run_id": run.run_id,
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
    """A run-failure sensor for the location's runs that posts each failure to the webhook."""

    @dg.run_failure_sensor(
        name=SENSOR_NAME,
        description=f"Posts every failed run of {location} to the webhook in {WEBHOOK_VARIABLE}.",
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def _alert(context: dg.RunFailureSensorContext) -> None:
        run_id = context.dagster_run.run_id
        try:
            status = post(webhook_url, failure_payload(context, location, webserver_url))
        # A receiver that is down must not stop the sensor: the next failure is posted again.
        except Exception as error:
            context.log.warning(
                f"alert for failed run {run_id} not delivered: {_reason(error, webhook_url)}"
            )
            return
        context.log.info(f"alert for failed run {run_id} delivered (HTTP {status})")

    return _alert


def definitions(location: str) -> dg.Definitions:
    """The location's alert sensor when ALERT_WEBHOOK_URL is set, else nothing."""
    webhook_url = os.environ.get(WEBHOOK_VARIABLE, "").strip()
    if not webhook_url:
        return dg.Definitions()
    webserver_url = os.environ.get(WEBSERVER_VARIABLE, "").strip() or None
    return dg.Definitions(sensors=[failure_sensor(location, webhook_url, webserver_url)])
