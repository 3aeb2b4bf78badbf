"""marts -> exports: Parquet snapshots, the BI schema and the report, read back and compared."""

import base64
import io
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from platform_devkit.testing import check_of, materialize, metadata_of

pytestmark = pytest.mark.integration

SHOP_KEYS = ["raw/customers", "raw/products", "raw/orders", "raw/order_items"]
MARTS = {
    "fct_orders": "order_id",
    "dim_customers": "customer_id",
    "customer_lifetime_value": "customer_id",
    "daily_revenue": "day",
}


def all_keys(defs: dg.Definitions) -> list[str]:
    return sorted(k.to_user_string() for k in defs.resolve_asset_graph().materializable_asset_keys)


def build_marts(platform, location_defs) -> None:
    delivery = platform.seed()
    assert materialize(location_defs["ingestion"], SHOP_KEYS).success
    for report in delivery.files:
        materialize(
            location_defs["ingestion"], ["raw/payments", "raw/payments_rejected"],
            partition_key=report.day.isoformat(),
        )  # fmt: skip
    transformation = location_defs["transformation"]
    assert materialize(transformation, all_keys(transformation)).success


@pytest.fixture(scope="module")
def exported(module_platform_env, location_defs):
    """The tiny shop through ingestion, dbt and one export run (shared, read only)."""
    build_marts(module_platform_env, location_defs)
    result = materialize(location_defs["exports"], all_keys(location_defs["exports"]))
    return module_platform_env, result


def mart_rows(platform, mart: str) -> list[dict]:
    conn = platform.admin_connect(platform.env["WAREHOUSE_DB"])
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT * FROM marts.{mart} ORDER BY {MARTS[mart]}")
            names = [c.name for c in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    finally:
        conn.close()


def parquet_files(platform, mart: str) -> list[Path]:
    return sorted((platform.exports / "snapshots" / mart).rglob("*.parquet"))


def read_snapshot(platform, mart: str) -> list[dict]:
    tables = [pq.read_table(f) for f in parquet_files(platform, mart)]
    rows = pa.concat_tables(tables).to_pylist()
    return sorted(rows, key=lambda r: r[MARTS[mart]])


def test_snapshot_files_read_back_equal_the_mart_rows(exported):
    platform, result = exported
    assert result.success

    for mart in MARTS:
        expected = mart_rows(platform, mart)
        assert expected, mart
        assert read_snapshot(platform, mart) == expected, mart
    # daily_revenue is written by day: one file per day of the mart, named for its day.
    days = {row["day"].isoformat() for row in mart_rows(platform, "daily_revenue")}
    files = parquet_files(platform, "daily_revenue")
    assert {f.parent.name for f in files} == {f"day={d}" for d in days}
    assert len(parquet_files(platform, "fct_orders")) == 1


def test_row_count_checks_compare_the_exports_with_the_marts(exported):
    platform, result = exported

    for mart in MARTS:
        check = check_of(result, f"snapshots/{mart}", "rows_equal_mart")
        assert check.passed
        assert check.metadata["exported_rows"].value == len(mart_rows(platform, mart))
    for table in ("daily_revenue", "customer_value"):
        assert check_of(result, f"bi/{table}", "rows_equal_mart").passed


def test_bi_tables_hold_the_mart_figures_without_personal_data(exported):
    platform, _ = exported

    bi = platform.query("SELECT day, revenue, payments_received FROM bi.daily_revenue ORDER BY 1")
    mart = platform.query(
        "SELECT day, revenue, payments_received FROM marts.daily_revenue ORDER BY 1"
    )
    assert bi == mart
    columns = {
        name
        for (name,) in platform.query(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'bi'"
        )
    }
    assert not columns & {"email", "full_name"}
    value = platform.query("SELECT sum(lifetime_value) FROM bi.customer_value")
    assert value == platform.query("SELECT sum(lifetime_value) FROM marts.customer_lifetime_value")


def test_bi_reader_reads_the_bi_schema_and_nothing_else(exported):
    platform, _ = exported
    conn = platform.connect_as("bi_reader")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM bi.daily_revenue")
            assert cur.fetchone()[0] > 0
            for table in ("raw.orders", "staging.stg_orders", "marts.daily_revenue"):
                with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                    cur.execute(f"SELECT * FROM {table} LIMIT 1")
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute("DELETE FROM bi.daily_revenue")
    finally:
        conn.close()


def test_the_exports_role_reads_marts_and_writes_only_bi(exported):
    platform, _ = exported
    conn = platform.connect_as("exports")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM marts.fct_orders")
            assert cur.fetchone()[0] > 0
            for statement in (
                "DELETE FROM marts.fct_orders",
                "CREATE TABLE marts.exports_was_here (x int)",
                "CREATE TABLE raw.exports_was_here (x int)",
                "SELECT * FROM raw.orders LIMIT 1",
            ):
                with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                    cur.execute(statement)
    finally:
        conn.close()


def test_the_report_is_a_png_of_the_last_30_days_and_the_metadata_carries_it(exported):
    platform, result = exported
    (last_day,) = platform.query("SELECT max(day)::text FROM marts.daily_revenue")[0]

    metadata = metadata_of(result, "reports/daily_revenue")

    assert metadata["last_day"] == last_day
    first_day = date.fromisoformat(last_day) - timedelta(days=29)
    assert metadata["first_day"] == first_day.isoformat()
    png = (platform.exports / "reports" / "daily_revenue" / f"{last_day}.png").read_bytes()
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    assert image.size == (1000, 400)
    assert image.text["Description"] == f"first_day={metadata['first_day']} last_day={last_day}"
    embedded = metadata["report"].split("data:image/png;base64,")[1].rstrip(")")
    assert base64.b64decode(embedded) == png
    summary = (platform.exports / "reports" / "daily_revenue" / f"{last_day}.md").read_text()
    assert f"{metadata['first_day']} to {last_day}" in summary


def test_rerunning_the_exports_replaces_and_never_duplicates(platform_env, location_defs):
    build_marts(platform_env, location_defs)
    exports = location_defs["exports"]
    assert materialize(exports, all_keys(exports)).success
    files_before = sorted(p for p in platform_env.exports.rglob("*") if p.is_file())

    assert materialize(exports, all_keys(exports)).success

    assert sorted(p for p in platform_env.exports.rglob("*") if p.is_file()) == files_before
    assert read_snapshot(platform_env, "fct_orders") == mart_rows(platform_env, "fct_orders")
    assert platform_env.query("SELECT count(*) FROM bi.daily_revenue") == platform_env.query(
        "SELECT count(*) FROM marts.daily_revenue"
    )


def test_a_failure_in_the_middle_of_a_write_leaves_the_previous_snapshot(
    platform_env, location_defs, monkeypatch
):
    from exports import parquet

    build_marts(platform_env, location_defs)
    exports = location_defs["exports"]
    assert materialize(exports, ["snapshots/fct_orders"]).success
    (previous,) = parquet_files(platform_env, "fct_orders")
    previous_bytes = previous.read_bytes()
    platform_env.query("UPDATE marts.fct_orders SET status = 'shipped' RETURNING 1")

    real_query_batches = parquet.query_batches

    def connection_lost_after_the_first_batch(conn, query, params=None):
        schema, batches = real_query_batches(conn, query, params)

        def failing():
            yield next(batches)
            raise psycopg2.OperationalError("server closed the connection unexpectedly")

        return schema, failing()

    monkeypatch.setattr(parquet, "query_batches", connection_lost_after_the_first_batch)
    result = materialize(exports, ["snapshots/fct_orders"], raise_on_error=False)

    assert not result.success
    assert previous.read_bytes() == previous_bytes
    assert pq.read_table(previous).num_rows > 0
    assert [p.name for p in previous.parent.iterdir()] == [previous.name]  # no temporary file
