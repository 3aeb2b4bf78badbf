"""One end-to-end body for every driver: it talks only to the Dagster GraphQL API, the
warehouse and the export area, so processes, containers and kind prove the same things."""

import io
import re

import pyarrow.parquet as pq
import pytest

from platform_devkit.e2e.base import location_names

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3600)]


MARTS = ["fct_orders", "dim_customers", "customer_lifetime_value", "daily_revenue"]


def test_every_run_succeeds_and_automation_ran_the_downstream_locations(deployment, settled):
    runs = deployment.graphql.runs()

    assert [(r["runId"], r["status"]) for r in runs if r["status"] != "SUCCESS"] == []
    by_daemon = {
        r["repositoryOrigin"]["repositoryLocationName"]
        for r in runs
        if r["assetSelection"] and {"key": "e2e", "value": "explicit"} not in r["tags"]
    }
    # Nobody launched dbt or the exports: sensors and declarative automation did.
    assert set(location_names()) <= by_daemon


def test_row_counts_in_raw_marts_bi_and_the_exported_files(deployment, settled):
    query = deployment.query
    (orders,) = query("SELECT count(*) FROM orders", database="shop")[0]
    (customers,) = query("SELECT count(*) FROM customers", database="shop")[0]

    assert query("SELECT count(*) FROM raw.orders")[0][0] == orders
    assert query("SELECT count(*) FROM marts.fct_orders")[0][0] == orders
    assert query("SELECT count(*) FROM marts.dim_customers")[0][0] == customers
    days = query("SELECT DISTINCT file_date::text FROM raw.payments ORDER BY 1")
    loaded_days = [day for (day,) in days]
    assert loaded_days == deployment.delivered_payment_days()
    assert query("SELECT sum(payments_received) FROM marts.daily_revenue") == query(
        "SELECT sum(amount) FROM raw.payments"
    )
    assert query("SELECT count(*) FROM bi.daily_revenue") == query(
        "SELECT count(*) FROM marts.daily_revenue"
    )
    for mart in MARTS:
        files = deployment.export_files(f"snapshots/{mart}")
        exported = sum(pq.read_metadata(io.BytesIO(data)).num_rows for data in files.values())
        assert exported == query(f"SELECT count(*) FROM marts.{mart}")[0][0], mart
    reports = deployment.export_files("reports/daily_revenue")
    (last_day,) = query("SELECT max(day)::text FROM marts.daily_revenue")[0]
    assert reports[f"reports/daily_revenue/{last_day}.png"].startswith(b"\x89PNG")


def test_lineage_crosses_the_code_locations(deployment, settled):
    nodes = deployment.graphql.asset_nodes()

    def location(key: str) -> str:
        return nodes[key]["repository"]["location"]["name"]

    def parents(key: str) -> set[str]:
        return {"/".join(d["path"]) for d in nodes[key]["dependencyKeys"]}

    assert "raw/orders" in parents("staging/stg_orders")
    assert "raw/payments" in parents("staging/stg_payments")
    assert "marts/fct_orders" in parents("snapshots/fct_orders")
    assert "marts/daily_revenue" in parents("reports/daily_revenue")
    assert location("raw/orders") == "ingestion"
    assert location("staging/stg_orders") == "transformation"
    assert location("snapshots/fct_orders") == "exports"


def test_a_steps_stdout_is_readable_in_the_ui_after_the_run(deployment, settled):
    gql = deployment.graphql
    gql.wait_until_settled(settled)
    run_id = gql.launch_assets("transformation", ["marts/daily_revenue"])
    assert gql.wait_for_run(run_id) == "SUCCESS"

    captures = gql.captured_logs(run_id)

    # Read back through the webserver, which never ran the step: the run worker (a code
    # server's subprocess, a container, a Kubernetes Job) wrote them where the webserver reads.
    # dagster-dbt re-emits each of dbt's log lines on the step's stdout.
    (dbt,) = [c for c in captures.values() if "Running with dbt=" in c["stdout"]]
    assert dbt["steps"], captures.keys()
    assert re.search(r"OK created sql \w+ model marts\.daily_revenue", dbt["stdout"]), dbt["stdout"]


def test_runs_executed_where_the_driver_says(deployment, settled):
    deployment.verify_runtime_isolation()


def test_one_code_server_down_leaves_the_other_locations_working(deployment, settled):
    gql = deployment.graphql
    # Outside Kubernetes a run is a subprocess of its code server: stop servers only when idle.
    gql.wait_until_settled(settled)
    deployment.stop_location("exports")
    try:
        entries = {name: gql.reload_location(name) for name in location_names()}

        assert not gql.is_loaded(entries["exports"])
        assert all(gql.is_loaded(entries[n]) for n in location_names() if n != "exports")
        run_id = gql.launch_assets("ingestion", ["raw/customers"])
        assert gql.wait_for_run(run_id) == "SUCCESS"
    finally:
        deployment.start_location("exports")
    assert gql.is_loaded(gql.reload_location("exports"))


def test_an_upgraded_location_is_reloaded_and_runs_again(deployment, settled):
    gql = deployment.graphql
    gql.wait_until_settled(settled)  # the ingestion run above may have started dbt again
    before = gql.locations()["transformation"]["versionKey"]

    deployment.upgrade_location("transformation")
    entry = gql.reload_location("transformation")

    assert gql.is_loaded(entry)
    assert entry["versionKey"] != before  # a new server answered, not the old one
    run_id = gql.launch_assets("transformation", ["marts/daily_revenue"])
    assert gql.wait_for_run(run_id) == "SUCCESS"
