"""The demo shop generator: deterministic, reports what it wrote, advances like a real shop."""

from datetime import UTC, date, datetime, timedelta

import pytest

from platform_devkit.pytest_plugin import TEST_LAST_DAY
from platform_devkit.shop.generator import SIZES, Size

pytestmark = pytest.mark.integration

TABLES = ("customers", "products", "orders", "order_items")


def fingerprint(platform) -> dict[str, str]:
    """A digest of every table's rows and every landed file's bytes."""
    shop = platform.env["SHOP_DB_NAME"]
    digests = {
        table: platform.query(
            f"SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {table} t", database=shop
        )[0][0]
        for table in TABLES
    }
    for path in sorted(platform.landing.iterdir()):
        digests[path.name] = path.read_text()
    return digests


def test_the_same_seed_makes_the_same_shop(platform_env):
    platform_env.seed(seed=11)
    first = fingerprint(platform_env)
    platform_env.reset()

    platform_env.seed(seed=11)

    assert fingerprint(platform_env) == first
    platform_env.reset()
    platform_env.seed(seed=12)
    assert fingerprint(platform_env)["orders"] != first["orders"]


def test_the_report_matches_the_database_and_the_files(platform_env):
    delivery = platform_env.seed()
    shop = platform_env.env["SHOP_DB_NAME"]

    for table in TABLES:
        assert (
            platform_env.query(f"SELECT count(*) FROM {table}", database=shop)[0][0]
            == (delivery.rows[table])
        )
    assert delivery.rows["orders"] == SIZES["tiny"].orders
    for report in delivery.files:
        lines = (platform_env.landing / report.name).read_text().splitlines()
        assert len(lines) - 1 == report.good_rows + sum(report.malformed.values())
    # The first day is the incident: more than 5% of its rows are malformed.
    incident = delivery.files[0]
    assert sum(incident.malformed.values()) > 0.05 * incident.good_rows
    assert set(incident.malformed) == {"bad_type", "missing_field", "unknown_order", "truncated"}
    # The second-to-last day's file is held back.
    assert delivery.withheld == [f"payments_{TEST_LAST_DAY - timedelta(days=1)}.csv"]


def test_advancing_a_day_changes_rows_within_that_day_and_delivers_the_late_file(platform_env):
    seeded = platform_env.seed()
    shop = platform_env.env["SHOP_DB_NAME"]
    next_day = TEST_LAST_DAY + timedelta(days=1)

    delivery = platform_env.source().advance()

    names = sorted(f.name for f in delivery.files)
    assert names == sorted([f"payments_{next_day}.csv", *seeded.withheld])
    late = next(f for f in delivery.files if f.name in seeded.withheld)
    assert late.good_rows > 0
    changed = platform_env.query(
        "SELECT count(*) FROM orders WHERE updated_at::date = %s", (next_day,), database=shop
    )[0][0]
    assert changed == delivery.rows["orders"]
    total = platform_env.query("SELECT count(*) FROM orders", database=shop)[0][0]
    assert total > seeded.rows["orders"]


def test_the_shop_never_runs_ahead_of_the_clock(platform_env):
    today = datetime.now(UTC).date()
    platform_env.source().seed(SIZES["tiny"], last_day=today)

    with pytest.raises(RuntimeError, match="ahead of the clock"):
        platform_env.source().advance()


def test_seeding_twice_is_refused(platform_env):
    platform_env.seed()

    with pytest.raises(RuntimeError, match="already seeded"):
        platform_env.seed()


def test_a_million_orders_are_written_with_copy(platform_env):
    """Sizes scale; this one is small enough for `make test` and proves the column-wise path."""
    size = Size(customers=5_000, products=200, orders=50_000, days=10)

    delivery = platform_env.source().seed(
        size, last_day=date(2026, 3, 10), hold_back_late_file=False
    )

    assert delivery.rows["orders"] == 50_000
    assert len(delivery.files) == 10


def test_touch_changes_the_fraction_of_rows_it_says(platform_env):
    platform_env.seed()
    shop = platform_env.env["SHOP_DB_NAME"]
    before = platform_env.query("SELECT max(updated_at) FROM orders", database=shop)[0][0]

    changed = platform_env.source().touch("orders", "order_id", 0.01)

    later = platform_env.query(
        "SELECT count(*), bool_and(order_id %% 100 = 0) FROM orders WHERE updated_at > %s",
        database=shop,
        params=(before,),
    )[0]
    assert changed == later[0] == SIZES["tiny"].orders // 100
    assert later[1] is True
    with pytest.raises(ValueError, match="fraction"):
        platform_env.source().touch("orders", "order_id", 0)
