"""A failed exports run is posted to the webhook by the location's own sensor: the report run
fails on an empty mart in the embedded warehouse, and the sensor, given that run as the daemon
would give it, posts the run, the location, the asset and the error to a receiver on 127.0.0.1."""

import dagster as dg
import pytest

from exports.definitions import defs as load_defs
from platform_devkit.testing import materialize
from platform_ops import alerts
from platform_ops.testing import WebhookReceiver, failure_context

pytestmark = pytest.mark.integration


def test_a_failed_report_run_is_posted_to_the_webhook(platform_env, monkeypatch):
    with platform_env.connect_as("transformation") as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE marts.daily_revenue (day date, orders bigint, revenue numeric,"
                    " payments_received numeric)")  # fmt: skip

    with WebhookReceiver() as receiver:
        monkeypatch.setenv(alerts.WEBHOOK_VARIABLE, receiver.url)
        monkeypatch.setenv(alerts.WEBSERVER_VARIABLE, "http://127.0.0.1:3000")
        defs = load_defs()
        instance = dg.DagsterInstance.ephemeral()
        failed = materialize(
            defs, ["reports/daily_revenue"], instance=instance, raise_on_error=False
        )
        assert not failed.success

        defs.resolve_sensor_def(alerts.SENSOR_NAME)(failure_context(instance, failed.run_id))

    (request,) = receiver.requests
    body = request["body"]
    assert body["run_id"] == failed.run_id
    assert body["location"] == "exports"
    assert body["assets"] == ["reports/daily_revenue"]
    assert body["error"] == "marts.daily_revenue is empty: there is nothing to report yet"
    assert body["url"] == f"http://127.0.0.1:3000/runs/{failed.run_id}"
    # A manual launch, not retried by run retries: the first attempt of its own root.
    assert (body["attempt"], body["root_run_id"], body["consecutive_failures"]) == (
        1,
        failed.run_id,
        1,
    )
    assert body["text"].startswith("Dagster run failed in exports: reports/daily_revenue")


def test_without_a_webhook_the_location_has_no_alert_sensor(monkeypatch):
    monkeypatch.delenv(alerts.WEBHOOK_VARIABLE, raising=False)
    assert alerts.SENSOR_NAME not in {s.name for s in load_defs().sensors or []}
