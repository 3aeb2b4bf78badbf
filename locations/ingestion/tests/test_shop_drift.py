"""Drift between the shop database and raw, class by class: what the reconciliation check says
(it compares content, not counts) and what the next load does about it."""

from datetime import timedelta

import dagster as dg
import pytest

from ingestion.defs.shop.assets import SHOP_TABLES
from ingestion.defs.shop.checks import RECONCILIATION_CHECK
from ingestion.pipelines.shop import LOOKBACK
from platform_devkit.testing import check_of, metadata_of

pytestmark = pytest.mark.integration

SHOP_KEYS = [f"raw/{table}" for table in SHOP_TABLES]
KEYS = {table: key for table, (key, _) in SHOP_TABLES.items()}
RESYNC = {"ops": {"shop_tables": {"config": {"resync": True}}}}


@pytest.fixture
def loaded(platform_env, materialize):
    """A seeded shop, loaded into raw once."""
    platform_env.seed()
    assert materialize(SHOP_KEYS).success
    return platform_env


@pytest.fixture
def reconcile(ingestion_defs):
    """Run the reconciliation check of one table alone, without a load."""

    def run(table: str) -> dg.AssetCheckEvaluation:
        result = dg.materialize(
            assets=[*ingestion_defs.assets, *ingestion_defs.asset_checks],
            selection=dg.AssetSelection.checks(
                dg.AssetCheckKey(dg.AssetKey(["raw", table]), RECONCILIATION_CHECK)
            ),
            resources=ingestion_defs.resources,
            instance=dg.DagsterInstance.ephemeral(),
        )
        assert not result.get_asset_materialization_events()
        (evaluation,) = result.get_asset_check_evaluations()
        return evaluation

    return run


def _values(evaluation: dg.AssetCheckEvaluation) -> dict:
    return {name: value.value for name, value in evaluation.metadata.items()}


def _run_sql(platform, database: str, statement: str, params: tuple) -> list[tuple]:
    conn = platform.admin_connect(database)
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def _shop(platform, statement: str, params: tuple = ()) -> list[tuple]:
    """A statement in the shop database as its owner: the application's writes and migrations."""
    return _run_sql(platform, platform.env["SHOP_DB_NAME"], statement, params)


def _raw(platform, statement: str, params: tuple = ()) -> list[tuple]:
    """A statement in the warehouse as its administrator."""
    return _run_sql(platform, platform.env["WAREHOUSE_DB"], statement, params)


def _cursor(platform, table: str):
    return _raw(platform, f"SELECT max(updated_at) FROM raw.{table}")[0][0]


def _touch(platform, table: str, assignment: str = "") -> int:
    """Change the table's first row after raw's cursor, as the application would; its key."""
    key = KEYS[table]
    (first,) = _shop(platform, f"SELECT min({key}) FROM {table}")[0]
    _shop(
        platform,
        f"UPDATE {table} SET {assignment}{', ' if assignment else ''}"
        f"updated_at = %s WHERE {key} = %s",
        (_cursor(platform, table) + timedelta(minutes=1), first),
    )
    return first


def _loads(platform) -> int:
    return _raw(platform, "SELECT count(*) FROM raw._dlt_loads")[0][0]


def test_a_clean_load_passes_the_content_check(platform_env, materialize):
    delivery = platform_env.seed()

    result = materialize(SHOP_KEYS)

    for key in SHOP_KEYS:
        table = key.split("/")[1]
        check = check_of(result, key, RECONCILIATION_CHECK)
        assert check.passed
        values = _values(check)
        assert values["source_rows_up_to_cursor"] == values["raw_rows"] == delivery.rows[table]
        assert values["rows_differing"] == 0
        assert values["keys_missing_in_raw"] == values["keys_missing_in_source"] == 0
        assert values["columns_missing_in_raw"] == values["columns_of_another_type"] == []


@pytest.mark.parametrize(
    ("column", "in_raw", "definition"),
    [
        ("channel", "channel", "text DEFAULT 'web'"),
        ("channel", "channel", "text NOT NULL DEFAULT 'web'"),
        # dlt names it sales_channel in raw.
        ('"Sales Channel"', "sales_channel", "text DEFAULT 'web'"),
    ],
    ids=["nullable", "not-null", "mixed-case-name"],
)
def test_a_column_added_with_a_default_fails_the_check_and_the_next_load_fills_it(
    loaded, materialize, reconcile, column, in_raw, definition
):
    orders = _raw(loaded, "SELECT count(*) FROM raw.orders")[0][0]
    _shop(loaded, f"ALTER TABLE orders ADD COLUMN {column} {definition}")

    check = reconcile("orders")

    # Same row count on both sides, and yet every row differs.
    assert not check.passed
    values = _values(check)
    assert values["source_rows_up_to_cursor"] == values["raw_rows"] == orders
    assert values["columns_missing_in_raw"] == [column.strip('"')]
    assert values["rows_differing"] == orders
    assert len(values["sample_rows_differing"]) == 10

    result = materialize(["raw/orders"])

    assert _raw(
        loaded, f"SELECT count(*), count(*) FILTER (WHERE {in_raw} = 'web') FROM raw.orders"
    ) == [(orders, orders)]
    loaded_rows = metadata_of(result, "raw/orders")
    # The lookback's rows came with the incremental read, the others with the repair.
    assert loaded_rows["rows_loaded"] + loaded_rows["rows_repaired"] >= orders
    assert loaded_rows["rows_repaired"] > 0
    assert check_of(result, "raw/orders", RECONCILIATION_CHECK).passed


@pytest.mark.parametrize(
    ("behind", "repaired"),
    [(timedelta(days=1), True), (LOOKBACK / 3, False)],
    ids=["beyond-the-lookback", "within-the-lookback"],
)
def test_a_row_updated_with_an_older_updated_at_fails_the_check_and_the_next_load_brings_it(
    loaded, materialize, reconcile, behind, repaired
):
    cursor = _cursor(loaded, "orders")
    ((order, status),) = _shop(
        loaded,
        "SELECT order_id, status FROM orders WHERE status <> 'cancelled' AND updated_at < %s "
        "ORDER BY order_id LIMIT 1",
        (cursor - behind,),
    )
    _shop(
        loaded,
        "UPDATE orders SET status = 'cancelled', updated_at = %s WHERE order_id = %s",
        (cursor - behind, order),
    )

    check = reconcile("orders")

    assert not check.passed
    values = _values(check)
    assert values["rows_differing"] == 1
    assert values["sample_rows_differing"] == [str(order)]
    assert values["keys_missing_in_raw"] == values["keys_missing_in_source"] == 0
    assert values["columns_missing_in_raw"] == []
    assert _raw(loaded, "SELECT status FROM raw.orders WHERE order_id = %s", (order,)) == [
        (status,)
    ]

    result = materialize(["raw/orders"])

    assert _raw(loaded, "SELECT status, updated_at FROM raw.orders WHERE order_id = %s", (order,))[
        0
    ] == ("cancelled", cursor - behind)
    assert check_of(result, "raw/orders", RECONCILIATION_CHECK).passed
    if repaired:
        assert metadata_of(result, "raw/orders")["rows_repaired"] >= 1
        assert metadata_of(result, "raw/orders")["sample_repaired_keys"] == [str(order)]
    else:
        # The incremental read's lookback took it; nothing was left to repair.
        assert metadata_of(result, "raw/orders")["rows_repaired"] == 0


def test_a_row_deleted_in_the_source_fails_the_check_and_stays_in_raw(
    loaded, materialize, reconcile
):
    (item,) = _shop(loaded, "SELECT max(order_item_id) FROM order_items")[0]
    _shop(loaded, "DELETE FROM order_items WHERE order_item_id = %s", (item,))

    check = reconcile("order_items")

    assert not check.passed
    values = _values(check)
    assert values["keys_missing_in_source"] == 1
    assert values["sample_keys_missing_in_source"] == [str(item)]
    assert values["rows_differing"] == values["keys_missing_in_raw"] == 0

    result = materialize(["raw/order_items"])

    # Deletions are reported, never repaired: the load cannot tell a deletion from an accident.
    assert _raw(loaded, "SELECT count(*) FROM raw.order_items WHERE order_item_id = %s", (item,))[
        0
    ] == (1,)
    after = check_of(result, "raw/order_items", RECONCILIATION_CHECK)
    assert not after.passed
    assert _values(after)["sample_keys_missing_in_source"] == [str(item)]


def test_a_column_dropped_in_the_source_is_reported_and_new_rows_load_without_it(
    loaded, materialize
):
    _shop(loaded, "ALTER TABLE customers DROP COLUMN country")
    customer = _touch(loaded, "customers", "full_name = 'Renamed Customer'")

    result = materialize(["raw/customers"])

    assert _raw(
        loaded, "SELECT full_name, country FROM raw.customers WHERE customer_id = %s", (customer,)
    ) == [("Renamed Customer", None)]
    check = check_of(result, "raw/customers", RECONCILIATION_CHECK)
    # raw keeps the column and what it held; every column the source still has matches.
    assert check.passed
    assert _values(check)["columns_only_in_raw"] == ["country"]


@pytest.mark.parametrize(
    ("tamper", "kind"),
    [
        ("DELETE FROM raw.customers WHERE customer_id = %s", "keys_missing_in_raw"),
        (
            "UPDATE raw.customers SET email = 'someone@else.example' WHERE customer_id = %s",
            "rows_differing",
        ),
    ],
    ids=["lost", "changed"],
)
def test_a_row_lost_or_changed_in_raw_fails_the_check_and_the_next_load_restores_it(
    loaded, materialize, reconcile, tamper, kind
):
    (customer,) = _shop(loaded, "SELECT min(customer_id) FROM customers")[0]
    source_row = _shop(loaded, "SELECT * FROM customers WHERE customer_id = %s", (customer,))
    _raw(loaded, tamper, (customer,))

    check = reconcile("customers")

    assert not check.passed
    values = _values(check)
    assert values[kind] == 1
    assert values[f"sample_{kind}"] == [str(customer)]

    result = materialize(["raw/customers"])

    assert (
        _raw(
            loaded,
            "SELECT customer_id, email, full_name, country, created_at, updated_at "
            "FROM raw.customers WHERE customer_id = %s",
            (customer,),
        )
        == source_row
    )
    assert check_of(result, "raw/customers", RECONCILIATION_CHECK).passed


@pytest.mark.parametrize(
    ("table", "column", "migration", "source_type", "raw_type"),
    [
        (
            "products",
            "unit_price",
            "ALTER TABLE products DROP CONSTRAINT products_unit_price_check, "
            "ALTER COLUMN unit_price TYPE text",
            "text",
            "numeric(10,2)",
        ),
        (
            "order_items",
            "quantity",
            "ALTER TABLE order_items DROP CONSTRAINT order_items_quantity_check, "
            "ALTER COLUMN quantity TYPE text",
            "text",
            "integer",
        ),
        (
            "orders",
            "ordered_at",
            "ALTER TABLE orders ALTER COLUMN ordered_at TYPE text",
            "text",
            "timestamp with time zone",
        ),
        (
            "customers",
            "created_at",
            "ALTER TABLE customers ALTER COLUMN created_at TYPE date",
            "date",
            "timestamp with time zone",
        ),
    ],
    ids=["numeric-to-text", "integer-to-text", "timestamptz-to-text", "timestamptz-to-date"],
)
def test_a_column_type_raw_cannot_take_fails_before_loading_and_a_resync_takes_it(
    loaded, materialize, reconcile, table, column, migration, source_type, raw_type
):
    _shop(loaded, migration)
    key = _touch(loaded, table)
    before = _raw(loaded, f"SELECT * FROM raw.{table} ORDER BY {KEYS[table]}")
    loads = _loads(loaded)

    with pytest.raises(dg.Failure) as failure:
        materialize([f"raw/{table}"])

    message = failure.value.description
    assert f"raw.{table} cannot take the source's values, so nothing was loaded" in message
    assert f"- {column}: {source_type} in the shop database's {table}, {raw_type} in raw" in message
    assert "resync: true" in message
    assert _raw(loaded, f"SELECT * FROM raw.{table} ORDER BY {KEYS[table]}") == before
    assert _loads(loaded) == loads
    check = reconcile(table)
    assert not check.passed
    assert _values(check)["columns_of_another_type"] == [
        f"{column}: {source_type} in the source, {raw_type} in raw"
    ]

    # The fix the failure names: re-create the table from the source.
    result = materialize([f"raw/{table}"], run_config=RESYNC)

    assert _raw(
        loaded,
        "SELECT data_type FROM information_schema.columns "
        "WHERE table_schema = 'raw' AND table_name = %s AND column_name = %s",
        (table, column),
    ) == [("character varying" if source_type == "text" else source_type,)]
    source_value = _shop(loaded, f"SELECT {column} FROM {table} WHERE {KEYS[table]} = %s", (key,))
    raw_value = _raw(loaded, f"SELECT {column} FROM raw.{table} WHERE {KEYS[table]} = %s", (key,))
    assert raw_value == source_value
    assert metadata_of(result, f"raw/{table}")["dagster/row_count"] == len(before)
    assert check_of(result, f"raw/{table}", RECONCILIATION_CHECK).passed


@pytest.mark.parametrize(
    ("table", "column", "migration", "value"),
    [
        # The source widens integer to bigint; raw keeps integer while values fit it.
        (
            "order_items",
            "quantity",
            "ALTER TABLE order_items ALTER COLUMN quantity TYPE bigint",
            "7",
        ),
        # The source narrows bigint to integer; raw's bigint holds it (integer -> bigint).
        (
            "order_items",
            "product_id",
            "ALTER TABLE order_items ALTER COLUMN product_id TYPE integer",
            "3",
        ),
        # varchar(n) in the source, varchar without a limit in raw (varchar(n) -> text).
        (
            "products",
            "name",
            "ALTER TABLE products ALTER COLUMN name TYPE varchar(50)",
            "'Renamed item'",
        ),
        # numeric(10,2) in raw holds a numeric(8,2) source (numeric(8,2) -> numeric(10,2))...
        (
            "products",
            "unit_price",
            "ALTER TABLE products ALTER COLUMN unit_price TYPE numeric(8,2)",
            "12.5",
        ),
        # ... and a numeric(12,2) one while its values fit.
        (
            "products",
            "unit_price",
            "ALTER TABLE products ALTER COLUMN unit_price TYPE numeric(12,2)",
            "99999999.99",
        ),
        (
            "customers",
            "email",
            "ALTER TABLE customers ALTER COLUMN email TYPE char(40)",
            "'padded@example.com'",
        ),
    ],
    ids=[
        "int-to-bigint",
        "bigint-to-int",
        "text-to-varchar",
        "narrower-numeric",
        "wider-numeric",
        "char",
    ],
)
def test_a_compatible_column_type_change_loads_and_matches(
    loaded, materialize, table, column, migration, value
):
    _shop(loaded, migration)
    key = _touch(loaded, table, f"{column} = {value}")

    result = materialize([f"raw/{table}"])

    assert result.success
    # As the type's output function renders it (char(n) with its padding).
    source_value = _shop(
        loaded, f"SELECT concat({column}) FROM {table} WHERE {KEYS[table]} = %s", (key,)
    )
    raw_value = _raw(
        loaded, f"SELECT concat({column}) FROM raw.{table} WHERE {KEYS[table]} = %s", (key,)
    )
    assert raw_value == source_value
    assert metadata_of(result, f"raw/{table}")["rows_loaded"] >= 1
    assert check_of(result, f"raw/{table}", RECONCILIATION_CHECK).passed


@pytest.mark.parametrize(
    ("table", "column", "migration", "value", "source_type", "raw_type"),
    [
        (
            "order_items",
            "quantity",
            "ALTER TABLE order_items ALTER COLUMN quantity TYPE bigint",
            "3000000000",
            "bigint",
            "integer",
        ),
        (
            "products",
            "unit_price",
            "ALTER TABLE products ALTER COLUMN unit_price TYPE numeric(12,2)",
            "123456789.12",
            "numeric(12,2)",
            "numeric(10,2)",
        ),
        # raw would round it to 12.35.
        (
            "products",
            "unit_price",
            "ALTER TABLE products ALTER COLUMN unit_price TYPE numeric(12,4)",
            "12.3456",
            "numeric(12,4)",
            "numeric(10,2)",
        ),
    ],
    ids=["integer-overflow", "numeric-overflow", "numeric-rounding"],
)
def test_a_value_raw_cannot_hold_fails_before_loading_naming_the_column(
    loaded, materialize, table, column, migration, value, source_type, raw_type
):
    _shop(loaded, migration)
    _touch(loaded, table, f"{column} = {value}")
    before = _raw(loaded, f"SELECT * FROM raw.{table} ORDER BY {KEYS[table]}")
    loads = _loads(loaded)

    with pytest.raises(dg.Failure) as failure:
        materialize([f"raw/{table}"])

    message = failure.value.description
    assert (
        f"raw.{table}.{column} is {raw_type} and the shop database's {table}.{column} is "
        f"{source_type}: a source value does not fit raw's column" in message
    )
    assert "nothing was loaded" in message
    assert "resync: true" in message
    assert _raw(loaded, f"SELECT * FROM raw.{table} ORDER BY {KEYS[table]}") == before
    assert _loads(loaded) == loads


def test_a_table_dropped_in_raw_is_loaded_again_in_full(loaded, materialize):
    orders = _shop(loaded, "SELECT count(*) FROM orders")[0][0]
    _raw(loaded, "DROP TABLE raw.orders")

    result = materialize(["raw/orders"])

    assert metadata_of(result, "raw/orders")["rows_loaded"] == orders
    assert _raw(loaded, "SELECT count(*) FROM raw.orders")[0][0] == orders
    assert check_of(result, "raw/orders", RECONCILIATION_CHECK).passed
