"""Recovery without a human (docs/operations.md): the warehouse refuses every connection for
the length of one run. The load retries its step (the error is transient) and the run fails;
automation requests the tables again after the backoff, that run succeeds, and raw holds the
source's rows, with no launch by anyone; the evaluation of the tick that requested the run
again says the retry rule did, not the tables' own schedule."""

import datetime
import warnings
from collections.abc import Iterator

import dagster as dg
import pytest

from platform_devkit.settings import ROLES
from platform_devkit.testing import materialize
from platform_ops import recovery
from platform_ops.testing import closed_port, evaluation_nodes, retry_request

pytestmark = pytest.mark.integration

SHOP = {"raw/customers", "raw/products", "raw/orders", "raw/order_items"}
DAY = "2026-03-11T"


class Automation:
    """The ingestion location's automation ticks, at chosen times, on one instance."""

    def __init__(self, defs: dg.Definitions) -> None:
        self.defs = defs
        self.instance = dg.DagsterInstance.ephemeral()
        self.cursor = None

    def tick(self, hh_mm_ss: str) -> set[str]:
        """The shop tables requested by a tick at that time."""
        when = datetime.datetime.fromisoformat(f"{DAY}{hh_mm_ss}+00:00")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dg.BetaWarning)
            result = dg.evaluate_automation_conditions(
                defs=self.defs, instance=self.instance, cursor=self.cursor, evaluation_time=when
            )
        self.cursor = result.cursor
        self.evaluations = {
            r.key.to_user_string(): r.serializable_evaluation for r in result.results
        }
        requested = {r.key.to_user_string() for r in result.results if r.true_subset.size}
        return requested & SHOP

    def requested_by_retry(self) -> dict[str, str | None]:
        """For each shop table, the retry level that alone requested it at the last tick."""
        return {key: retry_request(evaluation_nodes(self.evaluations[key])) for key in SHOP}

    def run(self, keys: set[str]) -> dg.ExecuteInProcessResult:
        return materialize(self.defs, sorted(keys), instance=self.instance, raise_on_error=False)


def test_a_load_that_lost_the_warehouse_is_requested_again_and_raw_is_fresh(
    platform_env, location_defs, monkeypatch
):
    platform_env.seed()
    # One step retry a second apart instead of three from 10 s: the same rule, faster.
    monkeypatch.setattr(recovery, "STEP_RETRY", recovery.StepRetry(max_retries=1, first_delay=1))
    automation = Automation(location_defs["ingestion"])
    assert automation.tick("10:00:30") == SHOP  # a new deployment fills itself
    assert automation.requested_by_retry() == dict.fromkeys(SHOP)

    monkeypatch.setenv("WAREHOUSE_PORT", str(closed_port()))
    broken = automation.run(SHOP)
    monkeypatch.setenv("WAREHOUSE_PORT", platform_env.env["WAREHOUSE_PORT"])

    assert not broken.success
    events = broken.all_events
    assert sum(e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY for e in events) == 1
    assert automation.tick("10:01:00") == set()  # the backoff has not passed
    assert automation.tick("10:05:00") == SHOP
    assert automation.requested_by_retry() == dict.fromkeys(
        SHOP, "retry 1 of 3 (after the next tick of */5 * * * *)"
    )

    assert automation.run(SHOP).success
    for table in ("customers", "products", "orders", "order_items"):
        source = platform_env.query(
            f"SELECT count(*) FROM {table}", database=platform_env.env["SHOP_DB_NAME"]
        )
        assert platform_env.query(f"SELECT count(*) FROM raw.{table}") == source
    assert source[0][0] > 0
    assert automation.tick("10:15:00") == set()  # fresh: nothing more to retry


@pytest.fixture
def refused_role(platform_env) -> Iterator[str]:
    """The transformation role at CONNECTION LIMIT 0 (every login refused with SQLSTATE 53300,
    "too many connections for role"); its limit restored after the test."""
    role = platform_env.env[ROLES["transformation"].user_var]
    ((limit,),) = platform_env.query(
        "SELECT rolconnlimit FROM pg_roles WHERE rolname = %s", (role,)
    )
    admin = platform_env.admin_connect()
    try:
        with admin.cursor() as cur:
            cur.execute(f'ALTER ROLE "{role}" CONNECTION LIMIT 0')
        yield role
    finally:
        with admin.cursor() as cur:
            cur.execute(f'ALTER ROLE "{role}" CONNECTION LIMIT {limit}')
        admin.close()


@pytest.mark.parametrize("fault", ["refused", "connection-limit"])
def test_a_dbt_build_that_cannot_reach_the_warehouse_is_retried(
    platform_env, location_defs, monkeypatch, request, fault
):
    """dbt reports a refused connection, or a role over its connection limit, in its own words
    (`Database Error ...`, no SQLSTATE); the transformation component retries the build on it,
    as on any transient error."""
    monkeypatch.setattr(recovery, "STEP_RETRY", recovery.StepRetry(max_retries=1, first_delay=1))
    if fault == "refused":
        monkeypatch.setenv("WAREHOUSE_PORT", str(closed_port()))
    else:
        request.getfixturevalue("refused_role")
    transformation = location_defs["transformation"]
    keys = sorted(
        k.to_user_string() for k in transformation.resolve_asset_graph().materializable_asset_keys
    )

    result = materialize(transformation, keys, raise_on_error=False)

    assert not result.success
    events = result.all_events
    assert sum(e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY for e in events) == 1
    if fault == "connection-limit":
        failures = [e for e in events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
        assert any(
            "too many connections for role" in str(e.step_failure_data.error) for e in failures
        )
