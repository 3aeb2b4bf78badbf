"""The shop tables, loaded with dlt into raw on the real embedded PostgreSQL."""

from datetime import datetime

import dagster as dg
import pytest

from ingestion.defs.shop.checks import RECONCILIATION_CHECK
from ingestion.pipelines.shop import LOOKBACK
from platform_devkit.testing import check_of, metadata_of

pytestmark = pytest.mark.integration

SHOP_KEYS = ["raw/customers", "raw/products", "raw/orders", "raw/order_items"]


def _counts(platform, schema: str, database: str | None = None) -> dict[str, int]:
    return {
        key.split("/")[1]: platform.query(
            f"SELECT count(*) FROM {schema}.{key.split('/')[1]}", database=database
        )[0][0]
        for key in SHOP_KEYS
    }


def _source_counts(platform) -> dict[str, int]:
    return _counts(platform, "public", database=platform.env["SHOP_DB_NAME"])


def test_full_load_lands_exactly_the_source_rows(platform_env, materialize):
    delivery = platform_env.seed()

    result = materialize(SHOP_KEYS)

    assert result.success
    assert _counts(platform_env, "raw") == _source_counts(platform_env) == delivery.rows
    for key in SHOP_KEYS:
        table = key.split("/")[1]
        assert metadata_of(result, key)["rows_loaded"] == delivery.rows[table]
        assert metadata_of(result, key)["dagster/row_count"] == delivery.rows[table]
        assert metadata_of(result, key)["rows_repaired"] == 0
        assert check_of(result, key, RECONCILIATION_CHECK).passed


def _cursors(platform) -> dict[str, datetime]:
    """Each table's newest loaded updated_at: where its next incremental read starts from."""
    tables = [key.split("/")[1] for key in SHOP_KEYS]
    return {t: platform.query(f"SELECT max(updated_at) FROM raw.{t}")[0][0] for t in tables}


def _source_rows_since(platform, table: str, since: datetime) -> int:
    """Source rows an incremental read from `since` (a loaded cursor) extracts: those of the
    lookback window before it and any later."""
    return platform.query(
        f"SELECT count(*) FROM {table} WHERE updated_at >= %s",
        (since - LOOKBACK,),
        database=platform.env["SHOP_DB_NAME"],
    )[0][0]


def test_rerunning_the_load_adds_no_rows_and_extracts_only_the_lookback_window(
    platform_env, materialize
):
    platform_env.seed()
    materialize(SHOP_KEYS)
    before = _counts(platform_env, "raw")
    cursors = _cursors(platform_env)

    again = materialize(SHOP_KEYS)

    assert again.success
    assert _counts(platform_env, "raw") == before
    windows = {t: _source_rows_since(platform_env, t, cursors[t]) for t in before}
    # Orders span days; all products were seeded at one instant, so their window is the table.
    assert 0 < windows["orders"] < before["orders"]
    for key in SHOP_KEYS:
        table = key.split("/")[1]
        # Nothing changed: the re-run re-reads the window before the cursor, and no more.
        assert metadata_of(again, key)["rows_loaded"] == windows[table]
        assert metadata_of(again, key)["rows_repaired"] == 0
        assert check_of(again, key, RECONCILIATION_CHECK).passed
    duplicates = platform_env.query("SELECT count(*) - count(DISTINCT order_id) FROM raw.orders")[
        0
    ][0]
    assert duplicates == 0


def test_source_changes_arrive_incrementally_with_only_changed_rows_extracted(
    platform_env, materialize
):
    platform_env.seed()
    materialize(SHOP_KEYS)
    cursors = _cursors(platform_env)
    changes = platform_env.source().advance()
    assert changes.rows["orders"] > 0

    result = materialize(SHOP_KEYS)

    for key in SHOP_KEYS:
        table = key.split("/")[1]
        # The changed rows (all later than the cursor) and the lookback window, nothing else.
        extracted = _source_rows_since(platform_env, table, cursors[table])
        assert extracted >= changes.rows.get(table, 0)
        assert metadata_of(result, key).get("rows_loaded", 0) == extracted
        assert metadata_of(result, key)["rows_repaired"] == 0
    assert _counts(platform_env, "raw") == _source_counts(platform_env)
    # Updated rows replaced their earlier version: raw holds the source's current status.
    shop = platform_env.env["SHOP_DB_NAME"]
    source_status = dict(platform_env.query("SELECT order_id, status FROM orders", database=shop))
    raw_status = dict(platform_env.query("SELECT order_id, status FROM raw.orders"))
    assert raw_status == source_status


def test_a_subset_loads_only_the_selected_tables(platform_env, materialize):
    platform_env.seed()

    result = materialize(["raw/orders"])

    assert result.success
    assert {e.asset_key for e in result.get_asset_materialization_events()} == {
        dg.AssetKey(["raw", "orders"])
    }
    assert platform_env.query("SELECT to_regclass('raw.customers')")[0][0] is None


def test_a_missing_connection_variable_fails_with_its_name(platform_env, materialize, monkeypatch):
    platform_env.seed()
    monkeypatch.delenv("WAREHOUSE_HOST")

    with pytest.raises(Exception, match="WAREHOUSE_HOST"):
        materialize(["raw/orders"])


def test_a_failed_load_never_writes_the_password_into_the_run_log(
    platform_env, materialize, monkeypatch
):
    platform_env.seed()
    password = platform_env.env["INGESTION_WAREHOUSE_PASSWORD"]
    monkeypatch.setenv("WAREHOUSE_DB", "no_such_database")
    instance = dg.DagsterInstance.ephemeral()

    result = materialize(["raw/orders"], instance=instance, raise_on_error=False)

    assert not result.success
    records = instance.all_logs(result.run_id)
    failure = [r for r in records if r.dagster_event and r.dagster_event.is_step_failure]
    assert failure
    assert "no_such_database" in str(failure[0].dagster_event.event_specific_data)
    assert not [r for r in records if password in str(r)]
