"""Recovery without a human, in three layers (docs/operations.md):

1. step retries, with exponential backoff, for transient failures only: the warehouse dropped
   or refused the connection, a serialization failure, a deadlock. Bad data, a failed check or
   a wrong password fail at once: retrying cannot fix them (`retry_transient`, `is_transient`);
2. run retries for runs that died (a pod evicted, a node lost): the tags automation and
   schedules put on their runs (`RUN_RETRY_TAGS`, `automation_sensor`);
3. automation that requests a failed asset again after a backoff and stops after a few tries
   (`recovering`), so a failure that outlived the step retries heals by itself once the cause
   has gone.
"""

import functools
import operator
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import dagster as dg

# PostgreSQL error codes (SQLSTATE) worth another attempt: connection exceptions (class 08),
# serialization failure and deadlock (the transaction lost a race and may simply be run again),
# the server shutting down or starting up, too many connections.
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "57P01", "57P02", "57P03", "53300"})
TRANSIENT_SQLSTATE_CLASSES = ("08",)
# The same conditions as drivers and tools put them in words, for errors that carry no
# SQLSTATE: libpq's connection failures (psycopg2, ConnectorX, ADBC) and dbt's log lines.
TRANSIENT_MESSAGES = (
    "connection refused",
    "could not connect to server",
    "server closed the connection unexpectedly",
    "terminating connection due to administrator command",
    "connection reset by peer",
    "connection timed out",
    "timeout expired",
    "no connection to the server",
    "ssl syscall error",
    "the database system is starting up",
    "the database system is shutting down",
    "sorry, too many clients already",
    # SQLSTATE 53300 as a role's or a database's CONNECTION LIMIT words it: dbt logs only this.
    "too many connections for role",
    "too many connections for database",
    "remaining connection slots are reserved",
    "could not serialize access",
    "deadlock detected",
)


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error and every error it was raised from or while handling (dlt, SQLAlchemy and
    Dagster wrap the driver's)."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        # SQLAlchemy keeps the driver's error in .orig; dlt's job errors in .exception.
        pending += [current.__cause__, current.__context__]
        pending += [getattr(current, name, None) for name in ("orig", "exception")]
        pending = [p if isinstance(p, BaseException) else None for p in pending]


def is_transient_message(text: str) -> bool:
    lowered = text.lower()
    return any(message in lowered for message in TRANSIENT_MESSAGES)


def is_transient(error: BaseException) -> bool:
    """Whether another attempt may succeed: a lost or refused connection, a serialization
    failure or a deadlock anywhere in the error's chain."""
    for current in _chain(error):
        code = getattr(current, "pgcode", None) or getattr(current, "sqlstate", None)
        if isinstance(code, str) and (
            code in TRANSIENT_SQLSTATES or code.startswith(TRANSIENT_SQLSTATE_CLASSES)
        ):
            return True
        if is_transient_message(str(current)):
            return True
    return False


@dataclass(frozen=True)
class StepRetry:
    """Retries of one step: `max_retries` more attempts, the first after `first_delay`
    seconds, each wait twice the previous one (10, 20, 40 s by default)."""

    max_retries: int = 3
    first_delay: float = 10.0

    def delay(self, retry_number: int) -> float:
        return self.first_delay * 2**retry_number


STEP_RETRY = StepRetry()


def request_retry_if_transient(
    context: dg.OpExecutionContext, error: BaseException, policy: StepRetry | None = None
) -> None:
    """Raise dg.RetryRequested (from `error`) when `error` is transient; otherwise return, and
    the caller re-raises its error as it is."""
    policy = policy or STEP_RETRY
    if not is_transient(error):
        return
    attempt = context.retry_number
    if attempt >= policy.max_retries:
        context.log.error(f"transient failure, retries exhausted ({attempt}): {error}")
        return
    wait = policy.delay(attempt)
    context.log.warning(
        f"transient failure, retry {attempt + 1} of {policy.max_retries} in {wait:g} s: {error}"
    )
    raise dg.RetryRequested(max_retries=policy.max_retries, seconds_to_wait=wait) from error


@contextmanager
def retry_transient(
    context: dg.OpExecutionContext, policy: StepRetry | None = None
) -> Iterator[None]:
    """Around a step's body: a transient failure retries the step with backoff, any other
    error fails it as usual. Works in generator assets too (around `yield from`)."""
    try:
        yield
    except dg.RetryRequested:
        raise
    except Exception as error:
        request_retry_if_transient(context, error, policy)
        raise


# Run retries (the instance's run_retries, enabled by the platform with a default of 0) for
# runs that died outside the code: a pod evicted, a node lost, a run worker killed. A run that
# failed in an asset or check is not retried as a whole: its transient errors were retried by
# the step already, and anything else would fail again. FROM_FAILURE re-executes only what had
# not succeeded.
RUN_RETRY_TAGS = {
    "dagster/max_retries": "2",
    "dagster/retry_strategy": "FROM_FAILURE",
    "dagster/retry_on_asset_or_op_failure": "false",
}


def automation_sensor(name: str) -> dg.AutomationConditionSensorDefinition:
    """A location's declarative automation, running as soon as the location is deployed (the
    implicit default sensor starts stopped), its runs with the platform's run retries."""
    return dg.AutomationConditionSensorDefinition(
        name,
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
        run_tags=RUN_RETRY_TAGS,
    )


# After the k-th failed attempt, the next one waits for the next tick of the k-th schedule:
# at most 5 minutes, then 15, then 30 (sparser each time, so a longer outage costs few runs).
RETRY_BACKOFF_CRONS = ("*/5 * * * *", "*/15 * * * *", "*/30 * * * *")
# The labels the UI shows for the rule and each of its levels ("retry 1 of 3 (...)"); tests
# find them in the evaluation of the tick that requested a run.
RETRY_LABEL = "failed: request again after a backoff"
RETRY_LEVEL_LABEL = "retry {level} of {tries} (after the next tick of {cron})"


def _attempts_since_success(count: int) -> list[dg.AutomationCondition]:
    """Conditions true when at least 1, 2, ... `count` runs were requested for the asset since
    it last materialised. A request is seen at exactly one tick (newly_requested); the
    (k+1)-th is one seen while at least k were, after the tick the k-th was seen.

    The shape matters: Dagster keys the memory of a `since` or `newly_true` by the names of
    its direct children (recursively only through other `since`/`newly_true` nodes), so two
    `since` nodes whose children have the same names would share it. Each level therefore
    resets on the previous level's `newly_true`, which makes every node's key distinct."""
    requested = dg.AutomationCondition.newly_requested()
    at_least = requested.since(dg.AutomationCondition.newly_updated())
    levels = [at_least]
    seen = at_least.newly_true()  # the tick the latest counted request was seen
    for _ in range(count - 1):
        after = (requested & at_least).since(seen)
        at_least = at_least & after
        levels.append(at_least)
        seen = after.newly_true()
    return levels


def retry_after_failure(
    backoff_crons: tuple[str, ...] = RETRY_BACKOFF_CRONS,
) -> dg.AutomationCondition:
    """True when the asset's latest run failed, nothing is running for it, fewer than
    1 + len(backoff_crons) runs were requested since it last materialised, and after the k-th
    attempt a tick of the k-th cron has passed. It starts again when the asset materialises.
    Only attempts automation requested count: a failed manual launch is its launcher's."""
    tries = len(backoff_crons)
    attempts = _attempts_since_success(tries + 1)
    failed_now = dg.AutomationCondition.execution_failed() & ~dg.AutomationCondition.in_progress()
    retries = [
        (
            attempts[k]
            & ~attempts[k + 1]
            & dg.AutomationCondition.cron_tick_passed(cron, cron_timezone="UTC")
        ).with_label(RETRY_LEVEL_LABEL.format(level=k + 1, tries=tries, cron=cron))
        for k, cron in enumerate(backoff_crons)
    ]
    return (failed_now & functools.reduce(operator.or_, retries)).with_label(RETRY_LABEL)


def recovering(condition: dg.AutomationCondition) -> dg.AutomationCondition:
    """`condition`, or a retry of the latest failed run (`retry_after_failure`)."""
    return condition | retry_after_failure()
