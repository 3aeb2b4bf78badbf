"""What ShopDbtProjectComponent adds to DbtProjectComponent: automation for tests that read
several models (the rest of each check spec as dagster-dbt made it) and retries of a build
that failed transiently, unless a dbt test of severity error failed in it."""

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
from dagster.components.core.component_tree import ComponentTree
from dagster_dbt import DbtProjectComponent
from dagster_shared.record import as_dict

from platform_devkit.defs_state import prepare
from platform_ops import recovery
from transformation.dbt_component import ShopDbtProjectComponent

LOCATION = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def component() -> ShopDbtProjectComponent:
    prepare(LOCATION, progress=lambda _: None)
    (loaded,) = ComponentTree.for_project(LOCATION).get_all_components(ShopDbtProjectComponent)
    return loaded


def check_specs(component: ShopDbtProjectComponent, get_spec) -> dict[str, dg.AssetCheckSpec]:
    """Each dbt test's check spec, as `get_spec` (the component's or dagster-dbt's) builds it
    from the model the test is attached to, as build_dbt_specs calls it."""
    project = component.dbt_project
    manifest = json.loads(project.manifest_path.read_text())
    specs = {}
    for unique_id, children in manifest["child_map"].items():
        if not unique_id.startswith("model."):
            continue
        model = component.get_asset_spec(manifest, unique_id, project)
        for child in children:
            if child.startswith("test.") and child not in specs:
                spec = get_spec(model, manifest, child, project)
                if spec is not None:
                    specs[child] = spec
    return specs


def test_a_cross_model_test_gets_its_automation_and_keeps_every_other_field(component):
    ours = check_specs(component, component.get_asset_check_spec)
    theirs = check_specs(
        component,
        lambda *args: DbtProjectComponent.get_asset_check_spec(component, *args),
    )

    assert ours.keys() == theirs.keys()
    cross_model = {uid for uid, spec in theirs.items() if spec.additional_deps}
    assert "test.shop.assert_no_order_is_paid_more_than_its_total" in cross_model
    for uid, spec in ours.items():
        expected = component.cross_model_check_automation if uid in cross_model else None
        assert spec.automation_condition == expected, uid
        # Every field, also one a later dagster adds, as dagster-dbt set it.
        assert {k: v for k, v in as_dict(spec).items() if k != "automation_condition"} == {
            k: v for k, v in as_dict(theirs[uid]).items() if k != "automation_condition"
        }, uid


def refused_connection() -> psycopg2.OperationalError:
    """A real lost warehouse: libpq refused by a port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    try:
        psycopg2.connect(host="127.0.0.1", port=port, dbname="x", user="x", connect_timeout=5)
    except psycopg2.OperationalError as error:
        return error
    raise AssertionError(f"something listens on 127.0.0.1:{port}")


class ScriptedBuild(ShopDbtProjectComponent):
    """The component with dbt's event stream replaced by a script: a real dbt cannot be made
    to fail a test and then lose its warehouse on cue. Everything after the stream (the
    component's own execute, Dagster's retries) is the real code."""

    script: tuple[dg.AssetCheckSeverity, ...] = ()

    def _get_dbt_event_iterator(self, context, dbt) -> Iterator:
        for check, severity in zip(CHECKS, self.script, strict=False):
            yield dg.AssetCheckResult(
                asset_key="orders", check_name=check, passed=False, severity=severity
            )
        raise refused_connection()


CHECKS = ("accepted_values", "not_null")


def build(component: ShopDbtProjectComponent, *severities: dg.AssetCheckSeverity):
    scripted = ScriptedBuild(project=component.project)
    scripted.script = severities

    @dg.multi_asset(
        specs=[dg.AssetSpec("orders")],
        check_specs=[dg.AssetCheckSpec(check, asset="orders") for check in CHECKS],
    )
    def dbt_build(context: dg.AssetExecutionContext):
        yield from scripted.execute(context, dbt=None)

    return dg.materialize([dbt_build], raise_on_error=False)


def retries(result: dg.ExecuteInProcessResult) -> int:
    return sum(e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY for e in result.all_events)


@pytest.fixture
def one_quick_retry(monkeypatch):
    monkeypatch.setattr(recovery, "STEP_RETRY", recovery.StepRetry(max_retries=1, first_delay=0))


def test_a_build_that_lost_the_warehouse_after_a_warn_test_failed_is_retried(
    component, one_quick_retry
):
    result = build(component, dg.AssetCheckSeverity.WARN)

    assert not result.success
    assert retries(result) == 1
    (first, *_) = result.get_asset_check_evaluations()
    assert (first.passed, first.severity) == (False, dg.AssetCheckSeverity.WARN)


def test_a_build_in_which_an_error_test_failed_is_not_retried(component, one_quick_retry):
    result = build(component, dg.AssetCheckSeverity.WARN, dg.AssetCheckSeverity.ERROR)

    assert not result.success
    assert retries(result) == 0
    assert [e.severity for e in result.get_asset_check_evaluations()] == [
        dg.AssetCheckSeverity.WARN,
        dg.AssetCheckSeverity.ERROR,
    ]


def test_a_build_that_lost_the_warehouse_before_any_test_is_retried(component, one_quick_retry):
    """The control: the script's refused connection is transient to the recovery rules."""
    assert retries(build(component)) == 1
