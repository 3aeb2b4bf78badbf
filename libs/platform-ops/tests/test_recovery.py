"""Recovery: which errors are transient, step retries with backoff for those only, and the
automation condition that requests a failed asset again after a backoff, a bounded number of
times."""

import datetime
import warnings

import dagster as dg
import psycopg2
import pytest

from platform_devkit.settings import ROLES
from platform_ops import recovery
from platform_ops.recovery import StepRetry, is_transient, recovering, retry_transient
from platform_ops.testing import closed_port, evaluation_nodes, retry_request


def refused_connection() -> psycopg2.OperationalError:
    with pytest.raises(psycopg2.OperationalError) as caught:
        psycopg2.connect(host="127.0.0.1", port=closed_port(), dbname="x", connect_timeout=5)
    return caught.value


class DriverError(Exception):
    """An error as drivers raise it for a server's answer: with its SQLSTATE in pgcode."""

    def __init__(self, message: str, pgcode: str) -> None:
        super().__init__(message)
        self.pgcode = pgcode


class LoadStepFailedError(Exception):
    """A wrapper as dlt raises it around the driver's error."""


def wrapped(error: BaseException) -> BaseException:
    try:
        raise LoadStepFailedError("load step failed") from error
    except LoadStepFailedError as outer:
        return outer


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(refused_connection(), id="connection-refused"),
        pytest.param(wrapped(refused_connection()), id="refused-inside-dlt"),
        pytest.param(DriverError("could not serialize access", "40001"), id="serialization"),
        pytest.param(DriverError("deadlock detected", "40P01"), id="deadlock"),
        pytest.param(DriverError("terminating connection", "57P01"), id="admin-shutdown"),
        pytest.param(
            RuntimeError("server closed the connection unexpectedly"), id="dropped-connection"
        ),
        pytest.param(
            RuntimeError("Database Error in model fct_orders\n  Connection refused"), id="dbt"
        ),
        # What a role's CONNECTION LIMIT (53300) looks like in dbt's log: words, no SQLSTATE.
        pytest.param(
            RuntimeError(
                'Database Error\n  connection to server at "127.0.0.1", port 5432 failed: '
                'FATAL:  too many connections for role "transformation"'
            ),
            id="dbt-role-connection-limit",
        ),
        pytest.param(
            RuntimeError('FATAL:  too many connections for database "warehouse"'),
            id="database-connection-limit",
        ),
        pytest.param(
            RuntimeError(
                "FATAL:  remaining connection slots are reserved for roles with the SUPERUSER "
                "attribute"
            ),
            id="reserved-slots",
        ),
    ],
)
def test_transient_errors(error):
    assert is_transient(error)


@pytest.mark.integration
def test_a_role_refused_by_its_connection_limit_is_transient(platform_env):
    """The real server's answer to CONNECTION LIMIT 0: libpq reports a refused login without
    a SQLSTATE, so only its words say it is 53300."""
    role = platform_env.env[ROLES["transformation"].user_var]
    admin = platform_env.admin_connect()
    try:
        with admin.cursor() as cur:
            cur.execute("SELECT rolconnlimit FROM pg_roles WHERE rolname = %s", (role,))
            ((limit,),) = cur.fetchall()
            cur.execute(f'ALTER ROLE "{role}" CONNECTION LIMIT 0')
            try:
                with pytest.raises(psycopg2.OperationalError) as refused:
                    platform_env.connect_as("transformation")
            finally:
                cur.execute(f'ALTER ROLE "{role}" CONNECTION LIMIT {limit}')
    finally:
        admin.close()

    assert "too many connections for role" in str(refused.value)
    assert refused.value.pgcode is None
    assert is_transient(refused.value)


@pytest.mark.parametrize(
    "error",
    [
        DriverError('duplicate key value violates unique constraint "x"', "23505"),
        DriverError('relation "marts.daily_revenue" does not exist', "42P01"),
        RuntimeError(
            'connection to server at "127.0.0.1", port 5432 failed: FATAL:  password '
            'authentication failed for user "exports"'
        ),
        dg.Failure("marts.daily_revenue is empty"),
        ValueError("bad row"),
    ],
    ids=["unique-violation", "missing-table", "wrong-password", "failure", "bad-data"],
)
def test_errors_that_another_attempt_cannot_fix(error):
    assert not is_transient(error)


def test_backoff_doubles():
    assert [StepRetry().delay(n) for n in range(3)] == [10, 20, 40]


class Flaky:
    """Raises `error` on the first `failures` attempts, then succeeds."""

    def __init__(self, error: Exception, failures: int) -> None:
        self.error, self.failures, self.attempts = error, failures, 0

    def asset(self) -> dg.AssetsDefinition:
        @dg.asset(key=["bi", "daily_revenue"])
        def _asset(context: dg.AssetExecutionContext) -> None:
            with retry_transient(context, StepRetry(max_retries=2, first_delay=0.05)):
                self.attempts += 1
                if self.attempts <= self.failures:
                    raise self.error

        return _asset


def retries(result: dg.ExecuteInProcessResult) -> int:
    events = result.all_events
    return sum(e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY for e in events)


def test_a_transient_failure_is_retried_until_the_step_succeeds():
    flaky = Flaky(refused_connection(), failures=2)
    result = dg.materialize([flaky.asset()], raise_on_error=False)
    assert result.success
    assert (flaky.attempts, retries(result)) == (3, 2)


def test_retries_of_a_lasting_transient_failure_are_bounded():
    flaky = Flaky(refused_connection(), failures=10)
    result = dg.materialize([flaky.asset()], raise_on_error=False)
    assert not result.success
    assert (flaky.attempts, retries(result)) == (3, 2)


def test_bad_data_fails_at_once():
    flaky = Flaky(ValueError("bad row"), failures=1)
    result = dg.materialize([flaky.asset()], raise_on_error=False)
    assert not result.success
    assert (flaky.attempts, retries(result)) == (1, 0)


def test_automation_and_schedules_runs_carry_run_retries():
    sensor = recovery.automation_sensor("x_automation")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.run_tags == recovery.RUN_RETRY_TAGS
    assert recovery.RUN_RETRY_TAGS["dagster/retry_on_asset_or_op_failure"] == "false"


class Automation:
    """One asset requested on the first tick and daily at noon, `recovering`; ticks at chosen
    times, real runs in between."""

    def __init__(self) -> None:
        self.instance = dg.DagsterInstance.ephemeral()
        self.broken = True
        self.cursor = None

        first_tick = dg.AutomationCondition.missing() & dg.AutomationCondition.initial_evaluation()
        noon = dg.AutomationCondition.cron_tick_passed("0 12 * * *")

        @dg.asset(automation_condition=recovering(first_tick | noon))
        def report() -> None:
            if self.broken:
                raise RuntimeError("warehouse unreachable")

        self.asset = report

    def tick(self, hh_mm_ss: str) -> bool:
        """Evaluate at that time of a fixed day; run the asset when it is requested."""
        when = datetime.datetime.fromisoformat(f"2026-03-10T{hh_mm_ss}+00:00")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dg.BetaWarning)
            result = dg.evaluate_automation_conditions(
                defs=[self.asset], instance=self.instance, cursor=self.cursor, evaluation_time=when
            )
        self.cursor = result.cursor
        (self.evaluation,) = [r.serializable_evaluation for r in result.results]
        requested = result.total_requested > 0
        if requested:
            dg.materialize([self.asset], instance=self.instance, raise_on_error=False)
        return requested


def test_a_failed_asset_is_requested_again_after_a_growing_backoff_and_then_left_alone():
    automation = Automation()
    ticks = {
        "10:00:30": True,  # missing: the first attempt, which fails
        "10:01:00": False,  # failed, but no backoff tick yet
        "10:05:00": True,  # retry 1 at the next 5-minute tick
        "10:10:00": False,  # retry 2 waits for a 15-minute tick
        "10:15:00": True,
        "10:20:00": False,
        "10:30:00": True,  # retry 3 at the next 30-minute tick: the last one
        "11:00:00": False,
        "11:30:00": False,
    }
    assert {t: automation.tick(t) for t in ticks} == ticks


def test_once_the_cause_is_gone_the_retry_succeeds_and_the_next_failure_counts_afresh():
    automation = Automation()
    assert automation.tick("10:00:30")
    automation.broken = False

    assert automation.tick("10:05:00")
    assert automation.instance.get_latest_materialization_event(automation.asset.key)
    assert [automation.tick(t) for t in ("10:15:00", "10:30:00", "11:00:00")] == [False] * 3

    automation.broken = True
    ticks = {
        "12:00:00": True,  # the daily run, which fails
        "12:05:00": True,  # retried: three more times, as after the first failure
        "12:10:00": False,
        "12:15:00": True,
        "12:30:00": True,
        "13:00:00": False,
    }
    assert {t: automation.tick(t) for t in ticks} == ticks


def test_the_evaluation_of_a_tick_says_whether_the_retry_rule_requested_the_run():
    automation = Automation()
    why = {}
    for t in ("10:00:30", "10:05:00", "10:15:00", "10:30:00"):
        assert automation.tick(t)
        why[t] = retry_request(evaluation_nodes(automation.evaluation))

    assert why == {
        "10:00:30": None,  # missing: the first attempt
        "10:05:00": "retry 1 of 3 (after the next tick of */5 * * * *)",
        "10:15:00": "retry 2 of 3 (after the next tick of */15 * * * *)",
        "10:30:00": "retry 3 of 3 (after the next tick of */30 * * * *)",
    }


def test_a_run_the_assets_own_condition_requested_too_is_not_taken_for_a_recovery():
    automation = Automation()
    assert automation.tick("11:56:00")  # missing: the first attempt, which fails
    assert automation.tick("12:00:00")  # the 5-minute backoff and the daily noon run at once

    nodes = evaluation_nodes(automation.evaluation)
    (rule,) = [n for n in nodes if n["userLabel"] == recovery.RETRY_LABEL]
    assert rule["numTrue"] == 1
    assert retry_request(nodes) is None
