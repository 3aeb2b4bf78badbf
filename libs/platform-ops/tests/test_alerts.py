"""The run-failure alert: what a webhook receives for a failed run, that a run Dagster's run
retries will re-execute is only logged and its last attempt is posted with its number, how
many failed runs in a row it reports, and that a receiver that is down or refuses is logged
without the URL and never breaks the sensor."""

from collections.abc import Iterator

import dagster as dg
import pytest
from dagster._core.remote_representation.external_data import RepositorySnap
from dagster._core.storage.tags import AUTO_RETRY_RUN_ID_TAG, WILL_RETRY_TAG

from platform_ops import alerts, recovery, testing


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


# Whether raw/orders fails, for the tests that need a run to succeed between failures.
BROKEN = {"orders": True}


@dg.asset(key=["raw", "orders"])
def flaky_orders() -> None:
    if BROKEN["orders"]:
        raise RuntimeError("too many connections for role")


def orders_job() -> dg.JobDefinition:
    """A job `dg.execute_job` can re-execute from failure, as the run-retry daemon does."""
    defs = dg.Definitions(
        assets=[flaky_orders],
        jobs=[dg.define_asset_job("orders_job", executor_def=dg.in_process_executor)],
    )
    return defs.resolve_job_def("orders_job")


@pytest.fixture
def broken_orders() -> Iterator[None]:
    BROKEN["orders"] = True
    yield
    BROKEN["orders"] = True


def run_orders(
    instance: dg.DagsterInstance, tags: dict[str, str], retry_of: dg.DagsterRun | None = None
) -> dg.DagsterRun:
    """A real run of orders_job; with `retry_of`, a re-execution from its failure tagged the
    way the daemon's `instance.create_reexecuted_run` tags the retries it launches: its run
    group (parent and root run ids, which Dagster keeps as tags) and dagster/retry_number, the
    size of the group so far."""
    options = None
    if retry_of is not None:
        options = dg.ReexecutionOptions.from_failure(retry_of.run_id, instance)
        _, group = instance.get_run_group(retry_of.run_id)
        tags = {
            **tags,
            "dagster/parent_run_id": retry_of.run_id,
            "dagster/root_run_id": retry_of.root_run_id or retry_of.run_id,
            "dagster/retry_number": str(len(list(group))),
        }
    with dg.execute_job(
        dg.reconstructable(orders_job), instance, tags=tags, reexecution_options=options
    ) as result:
        return instance.get_run_by_id(result.run_id)


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
        "root_run_id": run_id,
        "attempt": 1,
        "consecutive_failures": 1,
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
    assert f"attempt 1 of run {run_id}, 1 failed run in a row" in body["text"]


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


# The platform's instance (platform_devkit.instance): run retries on, none by default.
RUN_RETRIES = {"run_retries": {"enabled": True, "max_retries": 0}}
# Run retries for any failure, a step's included, so that the retried failures are real runs.
RETRY_ANY_FAILURE = {**recovery.RUN_RETRY_TAGS, "dagster/retry_on_asset_or_op_failure": "true"}


def test_failures_run_retries_will_re_execute_are_logged_and_the_last_attempt_is_posted(
    monkeypatch, receiver, capsys, broken_orders
):
    sensor = sensor_from_env(monkeypatch, receiver.url)
    with dg.instance_for_test(overrides=RUN_RETRIES) as instance:
        first = run_orders(instance, RETRY_ANY_FAILURE)
        second = run_orders(instance, RETRY_ANY_FAILURE, retry_of=first)
        third = run_orders(instance, RETRY_ANY_FAILURE, retry_of=second)
        capsys.readouterr()
        for run in (first, second, third):
            assert run.status == dg.DagsterRunStatus.FAILURE
            sensor(testing.failure_context(instance, run.run_id))
        logged = capsys.readouterr().err

    # dagster/max_retries 2: the first run and its first retry are retried, the second is not.
    for number, run in enumerate((first, second), start=1):
        assert f"run {run.run_id} (attempt {number} of run {first.run_id}) failed; not posted" in (
            logged
        )
    (request,) = receiver.requests
    body = request["body"]
    assert (body["run_id"], body["root_run_id"], body["attempt"]) == (
        third.run_id,
        first.run_id,
        3,
    )
    assert body["consecutive_failures"] == 3
    assert f"attempt 3 of run {first.run_id}, 3 failed runs in a row" in body["text"]


@pytest.mark.parametrize(
    ("settings", "tags"),
    [
        pytest.param(RUN_RETRIES, recovery.RUN_RETRY_TAGS, id="step-failure-not-retried"),
        pytest.param(RUN_RETRIES, {}, id="no-max-retries"),
        pytest.param({}, RETRY_ANY_FAILURE, id="run-retries-disabled"),
        pytest.param(
            RUN_RETRIES,
            {**RETRY_ANY_FAILURE, "dagster/max_retries": "0"},
            id="max-retries-0",
        ),
    ],
)
def test_a_failure_run_retries_will_not_re_execute_is_posted_as_attempt_1(
    monkeypatch, receiver, broken_orders, settings, tags
):
    sensor = sensor_from_env(monkeypatch, receiver.url)
    with dg.instance_for_test(overrides=settings) as instance:
        run = run_orders(instance, tags)
        assert not alerts.will_be_retried(run, instance)
        sensor(testing.failure_context(instance, run.run_id))

    (request,) = receiver.requests
    assert request["body"]["run_id"] == run.run_id
    assert (request["body"]["root_run_id"], request["body"]["attempt"]) == (run.run_id, 1)


def test_without_its_will_retry_tag_the_daemons_rule_is_computed(broken_orders):
    """A sensor may read the run before the instance tags it: the same answer then."""
    with dg.instance_for_test(overrides=RUN_RETRIES) as instance:
        run = run_orders(instance, RETRY_ANY_FAILURE)
        assert run.tags["dagster/will_retry"] == "true"
        untagged = run.with_tags({k: v for k, v in run.tags.items() if k != "dagster/will_retry"})
        assert alerts.will_be_retried(untagged, instance)
        retry = run_orders(instance, RETRY_ANY_FAILURE, retry_of=run)
        last = run_orders(instance, RETRY_ANY_FAILURE, retry_of=retry)
        assert last.tags["dagster/will_retry"] == "false"
        untagged = last.with_tags({k: v for k, v in last.tags.items() if k != "dagster/will_retry"})
        assert not alerts.will_be_retried(untagged, instance)


def test_automations_re_requests_count_the_failed_runs_in_a_row_until_one_succeeds(
    monkeypatch, receiver, broken_orders
):
    """Automation's retries after a backoff are new runs, each its own root: attempt 1 every
    time, and the count of failed runs in a row says how long the asset has been failing."""
    sensor = sensor_from_env(monkeypatch, receiver.url)
    with dg.instance_for_test(overrides=RUN_RETRIES) as instance:
        failed = [run_orders(instance, recovery.RUN_RETRY_TAGS) for _ in range(3)]
        BROKEN["orders"] = False
        assert run_orders(instance, recovery.RUN_RETRY_TAGS).status == dg.DagsterRunStatus.SUCCESS
        BROKEN["orders"] = True
        after_success = run_orders(instance, recovery.RUN_RETRY_TAGS)
        # A run that started later does not count for an alert the sensor posts late.
        later = run_orders(instance, recovery.RUN_RETRY_TAGS)
        for run in (*failed, after_success):
            sensor(testing.failure_context(instance, run.run_id))

    bodies = [r["body"] for r in receiver.requests]
    assert [b["run_id"] for b in bodies] == [r.run_id for r in (*failed, after_success)]
    assert [b["attempt"] for b in bodies] == [1, 1, 1, 1]
    assert [b["consecutive_failures"] for b in bodies] == [1, 2, 3, 1]
    assert "3 failed runs in a row" in bodies[2]["text"]
    assert later.status == dg.DagsterRunStatus.FAILURE


def test_a_run_failed_by_its_blocking_check_counts_although_its_asset_materialised(
    monkeypatch, receiver
):
    sensor = sensor_from_env(monkeypatch, receiver.url)
    instance = dg.DagsterInstance.ephemeral()
    runs = [dg.materialize([customers], instance=instance, raise_on_error=False) for _ in range(2)]
    sensor(testing.failure_context(instance, runs[1].run_id))

    (request,) = receiver.requests
    assert request["body"]["consecutive_failures"] == 2


def deferred_sensor_from_env(monkeypatch, url: str):
    monkeypatch.setenv(alerts.WEBHOOK_VARIABLE, url)
    return alerts.definitions("exports").resolve_sensor_def(alerts.DEFERRED_SENSOR_NAME)


def test_a_held_back_alert_is_posted_when_the_promised_retry_is_never_launched(
    monkeypatch, receiver, broken_orders
):
    """The retry daemon may fail to launch the retry it promised (the code location down as it
    tries) and then writes dagster/will_retry=false: the run-failure sensor has seen the run
    already, so the deferred sensor posts it, once."""
    sensor = sensor_from_env(monkeypatch, receiver.url)
    deferred = deferred_sensor_from_env(monkeypatch, receiver.url)
    with dg.instance_for_test(overrides=RUN_RETRIES) as instance:
        run = run_orders(instance, RETRY_ANY_FAILURE)
        sensor(testing.failure_context(instance, run.run_id))
        assert receiver.requests == []
        # Within the grace period, with the retry still promised: nothing yet.
        deferred(dg.build_sensor_context(instance=instance))
        assert receiver.requests == []

        instance.add_run_tags(run.run_id, {WILL_RETRY_TAG: "false"})
        deferred(dg.build_sensor_context(instance=instance))
        deferred(dg.build_sensor_context(instance=instance))
        tag = instance.get_run_by_id(run.run_id).tags[alerts.DEFERRED_TAG]

    (request,) = receiver.requests
    assert request["body"]["run_id"] == run.run_id
    assert request["body"]["error"] == "RuntimeError: too many connections for role"
    assert "its run retry was not launched" in request["body"]["text"]
    assert tag == "posted"


def test_a_held_back_alert_whose_retry_was_launched_is_dropped(
    monkeypatch, receiver, broken_orders
):
    sensor = sensor_from_env(monkeypatch, receiver.url)
    deferred = deferred_sensor_from_env(monkeypatch, receiver.url)
    with dg.instance_for_test(overrides=RUN_RETRIES) as instance:
        run = run_orders(instance, RETRY_ANY_FAILURE)
        sensor(testing.failure_context(instance, run.run_id))
        retry = run_orders(instance, RETRY_ANY_FAILURE, retry_of=run)
        # What the daemon writes on the run it retried.
        instance.add_run_tags(run.run_id, {AUTO_RETRY_RUN_ID_TAG: retry.run_id})
        deferred(dg.build_sensor_context(instance=instance))
        tag = instance.get_run_by_id(run.run_id).tags[alerts.DEFERRED_TAG]

    assert receiver.requests == []
    assert tag == "retried"


def test_a_promised_retry_that_never_starts_is_posted_after_the_grace_period(
    monkeypatch, receiver, broken_orders
):
    """The retry daemon not running at all: the run keeps dagster/will_retry=true."""
    monkeypatch.setattr(alerts, "RETRY_GRACE_SECONDS", 0)
    sensor = sensor_from_env(monkeypatch, receiver.url)
    deferred = deferred_sensor_from_env(monkeypatch, receiver.url)
    with dg.instance_for_test(overrides=RUN_RETRIES) as instance:
        run = run_orders(instance, RETRY_ANY_FAILURE)
        sensor(testing.failure_context(instance, run.run_id))
        assert alerts.will_be_retried(instance.get_run_by_id(run.run_id), instance)
        deferred(dg.build_sensor_context(instance=instance))

    (request,) = receiver.requests
    assert request["body"]["run_id"] == run.run_id
