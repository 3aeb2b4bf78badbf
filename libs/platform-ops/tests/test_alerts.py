"""The run-failure alert: what a webhook receives for a failed run, and that a receiver that is
down or refuses is logged without the URL and never breaks the sensor."""

import dagster as dg
import pytest
from dagster._core.remote_representation.external_data import RepositorySnap

from platform_ops import alerts, testing


@dg.asset(key=["raw", "orders"])
def orders() -> None:
    raise RuntimeError("connection to the warehouse lost\nsecond line of the error")


@dg.asset(
    key=["raw", "customers"],
    check_specs=[dg.AssetCheckSpec("has_rows", asset=["raw", "customers"], blocking=True)],
)
def customers():
    yield dg.Output(None)
    yield dg.AssetCheckResult(passed=False)


def failure_context(asset: dg.AssetsDefinition) -> dg.RunFailureSensorContext:
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([asset], instance=instance, raise_on_error=False)
    assert not result.success
    return testing.failure_context(instance, result.run_id)


def sensor_from_env(monkeypatch, url: str | None, webserver: str | None = None):
    for name, value in ((alerts.WEBHOOK_VARIABLE, url), (alerts.WEBSERVER_VARIABLE, webserver)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    sensors = list(alerts.definitions("exports").sensors or [])
    return sensors[0] if sensors else None


def test_no_webhook_no_sensor(monkeypatch):
    assert sensor_from_env(monkeypatch, None) is None
    assert sensor_from_env(monkeypatch, "  ") is None


def test_the_sensor_runs_by_default_and_what_the_webserver_sees_holds_no_url(monkeypatch, receiver):
    sensor = sensor_from_env(monkeypatch, receiver.url)

    assert sensor.name == alerts.SENSOR_NAME
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    # The snapshot a code server sends to the webserver and daemon.
    repository = dg.Definitions(sensors=[sensor]).get_repository_def()
    snapshot = dg.serialize_value(RepositorySnap.from_def(repository))
    assert alerts.SENSOR_NAME in snapshot
    assert "s3cr3t" not in snapshot


def test_a_failed_run_is_posted_with_its_run_assets_error_and_link(monkeypatch, receiver):
    sensor = sensor_from_env(monkeypatch, receiver.url, "https://dagster.example.com/")
    context = failure_context(orders)

    sensor(context)

    (request,) = receiver.requests
    assert request["path"] == "/hooks/s3cr3t-token"
    assert request["content_type"] == "application/json"
    run_id = context.dagster_run.run_id
    body = request["body"]
    assert body == {
        "text": body["text"],
        "run_id": run_id,
        "location": "exports",
        "job": context.dagster_run.job_name,
        "assets": ["raw/orders"],
        "failed_checks": [],
        "error": "RuntimeError: connection to the warehouse lost",
        "url": f"https://dagster.example.com/runs/{run_id}",
    }
    assert "\n" not in body["text"]
    assert "exports" in body["text"]
    assert "raw/orders" in body["text"]
    assert body["url"] in body["text"]


def test_a_run_failed_by_a_blocking_check_names_the_check(monkeypatch, receiver):
    sensor = sensor_from_env(monkeypatch, receiver.url)

    sensor(failure_context(customers))

    (request,) = receiver.requests
    assert request["body"]["failed_checks"] == ["raw/customers:has_rows"]
    assert request["body"]["assets"] == ["raw/customers"]
    assert "raw/customers:has_rows" in request["body"]["text"]
    assert "url" not in request["body"]


@pytest.mark.parametrize("down", [True, False], ids=["nothing-listens", "http-500"])
def test_an_undelivered_alert_is_logged_without_the_url_and_the_sensor_goes_on(
    monkeypatch, failing_receiver, capsys, down
):
    url = failing_receiver.url
    if down:
        failing_receiver.__exit__()
    sensor = sensor_from_env(monkeypatch, url)
    context = failure_context(orders)
    capsys.readouterr()

    sensor(context)  # returns: the tick succeeds

    # The sensor's log (stderr here, the tick's log in the daemon).
    logged = capsys.readouterr().err
    assert f"alert for failed run {context.dagster_run.run_id} not delivered" in logged
    assert "HTTP 500" in logged or down
    assert "s3cr3t" not in logged
    assert str(failing_receiver.port) not in logged
