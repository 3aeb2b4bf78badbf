"""Deterministic demo data for the shop: the operational database and daily payment files.

Same seed, size and days in, same rows and files out. Rows are generated column-wise with numpy
and written with COPY, so 1M orders take seconds, not minutes.

The payment provider drops one CSV per day into the landing area,
`payments_YYYY-MM-DD.csv`, written to a temporary name and renamed, so a reader never sees half
a file. Some rows are malformed on purpose, of four kinds (see MALFORMED_KINDS); the report of
each delivery says how many of each, which is what tests check the ingestion against.
"""

import csv
import io
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib.resources import files
from pathlib import Path

import numpy as np
import psycopg2
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from psycopg2 import sql

US = 1_000_000
MINUTE = 60 * US
HOUR = 60 * MINUTE
DAY = 24 * HOUR

PAYMENT_HEADER = ["payment_id", "order_id", "amount", "currency", "method", "paid_at"]
MALFORMED_KINDS = ("bad_type", "missing_field", "unknown_order", "truncated")  # in this order
PAYMENT_FILE_PREFIX = "payments_"

FIRST_NAMES = np.array(
    ["Ada", "Ben", "Chloe", "David", "Emma", "Felix", "Grace", "Hugo", "Ines", "Jonas",
     "Klara", "Liam", "Mia", "Noah", "Olivia", "Paul", "Rosa", "Sami", "Tara", "Yusuf"]
)  # fmt: skip
LAST_NAMES = np.array(
    ["Adler", "Berg", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Hansen", "Ivanova",
     "Jansen", "Keller", "Lopez", "Moreau", "Novak", "Olsen", "Peters", "Rossi", "Schmidt"]
)  # fmt: skip
COUNTRIES = np.array(["DE", "FR", "NL", "ES", "IT", "AT", "BE", "PL", "SE", "DK"])
COUNTRY_WEIGHTS = np.array([0.25, 0.18, 0.1, 0.1, 0.1, 0.07, 0.06, 0.06, 0.04, 0.04])
CATEGORIES = np.array(["books", "games", "garden", "kitchen", "music", "outdoor", "toys"])
PAYMENT_METHODS = np.array(["card", "paypal", "bank_transfer"])


@dataclass(frozen=True)
class Size:
    """How much to generate: entities at seed time and the number of days they span."""

    customers: int
    products: int
    orders: int
    days: int


SIZES: dict[str, Size] = {
    "tiny": Size(customers=60, products=25, orders=400, days=5),
    "small": Size(customers=2_000, products=150, orders=20_000, days=30),
    "medium": Size(customers=20_000, products=500, orders=100_000, days=60),
    "large": Size(customers=100_000, products=2_000, orders=1_000_000, days=90),
}


@dataclass
class FileReport:
    """One delivered payment file and what is in it."""

    name: str
    day: date
    good_rows: int
    malformed: dict[str, int] = field(default_factory=dict)


@dataclass
class Delivery:
    """What a seed or an advance wrote: source rows per table and payment files."""

    rows: dict[str, int] = field(default_factory=dict)
    files: list[FileReport] = field(default_factory=list)
    withheld: list[str] = field(default_factory=list)

    def add_rows(self, table: str, count: int) -> None:
        self.rows[table] = self.rows.get(table, 0) + count


def _micros(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * US


def _day_of(micros: int) -> date:
    return datetime.fromtimestamp(micros // US, tz=UTC).date()


def _ts(values: np.ndarray) -> pa.Array:
    return pa.array(values, type=pa.timestamp("us", tz="UTC"))


def _iso(micros: int) -> str:
    return datetime.fromtimestamp(micros // US, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _amount(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


class ShopSource:
    """The demo source system: creates, seeds and advances the shop database and landing area."""

    def __init__(
        self,
        admin: Mapping[str, str],
        database: str,
        reader_user: str,
        reader_password: str,
        landing: Path,
        outbox: Path,
    ) -> None:
        self.admin = dict(admin)
        self.database = database
        self.reader_user = reader_user
        self.reader_password = reader_password
        self.landing = landing
        self.outbox = outbox

    # -- connections ------------------------------------------------------------------------
    def _connect(self, database: str) -> psycopg2.extensions.connection:
        return psycopg2.connect(
            host=self.admin["PGHOST"],
            port=self.admin.get("PGPORT", "5432"),
            user=self.admin.get("PGUSER", "postgres"),
            password=self.admin.get("PGPASSWORD"),
            sslmode=self.admin.get("PGSSLMODE", "prefer"),
            dbname=database,
        )

    @contextmanager
    def _shop(self) -> Iterator[psycopg2.extensions.cursor]:
        conn = self._connect(self.database)
        try:
            with conn, conn.cursor() as cur:
                yield cur
        finally:
            conn.close()

    @contextmanager
    def _autocommit(self, database: str) -> Iterator[psycopg2.extensions.cursor]:
        """A cursor outside any transaction, for statements that cannot run in one
        (CREATE DATABASE, VACUUM)."""
        conn = self._connect(database)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                yield cur
        finally:
            conn.close()

    # -- structure ----------------------------------------------------------------------------
    def create(self) -> None:
        """Create the database, its tables and the read-only role ingestion uses (idempotent)."""
        with self._autocommit("postgres") as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (self.reader_user,))
            if cur.fetchone() is None:
                cur.execute(
                    sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(self.reader_user))
                )
            cur.execute(
                sql.SQL("ALTER ROLE {} PASSWORD %s").format(sql.Identifier(self.reader_user)),
                (self.reader_password,),
            )
        reader = sql.Identifier(self.reader_user)
        with self._shop() as cur:
            cur.execute(files(__package__).joinpath("schema.sql").read_text())
            # The shop reader connects here and nowhere else; nobody else connects here.
            cur.execute(
                sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(
                    sql.Identifier(self.database)
                )
            )
            cur.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(self.database), reader))  # fmt: skip
            cur.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(reader))
            cur.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(reader))
        self.landing.mkdir(parents=True, exist_ok=True)
        self.outbox.mkdir(parents=True, exist_ok=True)

    def state(self) -> dict | None:
        """The generator's bookkeeping row, or None before the first seed."""
        with self._shop() as cur:
            cur.execute("SELECT * FROM generator.state")
            row = cur.fetchone()
            if row is None:
                return None
            return dict(zip([c.name for c in cur.description], row, strict=True))

    # -- seed ---------------------------------------------------------------------------------
    def seed(
        self,
        size: Size,
        seed: int = 7,
        last_day: date | None = None,
        malformed_ratio: float = 0.01,
        incident_ratio: float = 0.12,
        hold_back_late_file: bool = True,
        size_name: str = "custom",
    ) -> Delivery:
        """Generate `size.days` days of history ending `last_day` (default: yesterday).

        The first day's file is an "incident": `incident_ratio` of its rows are malformed. The
        second-to-last day's file is held back and arrives late, with the next advance.
        """
        self.create()
        if self.state() is not None:
            raise RuntimeError(f"database {self.database!r} is already seeded; use advance")
        last_day = last_day or (datetime.now(UTC).date() - timedelta(days=1))
        first_day = last_day - timedelta(days=size.days - 1)
        rng = np.random.default_rng(seed)
        t_lo, t_hi = _micros(first_day), _micros(last_day) + DAY
        delivery = Delivery()

        customers = self._customers(rng, 1, size.customers, t_lo - 180 * DAY, t_lo)
        prices = np.round(np.exp(rng.normal(3.0, 0.8, size.products)) * 100).astype(np.int64)
        prices = prices.clip(199, 99_999)
        products = self._products(rng, prices, t_lo - 30 * DAY)
        orders, items, paid = self._orders(
            rng, 1, 1, size.orders, size.customers, prices, t_lo, t_hi, t_hi - 1
        )
        with self._shop() as cur:
            for table, data in (("customers", customers), ("products", products),
                                ("orders", orders), ("order_items", items)):  # fmt: skip
                _copy(cur, table, data)
                delivery.add_rows(table, data.num_rows)
            cur.execute(
                "INSERT INTO generator.state VALUES (true, %s, %s, %s, %s, %s, %s, %s, %s)",
                (seed, size_name, first_day, last_day, size.customers + 1, size.orders + 1,
                 items.num_rows + 1, len(paid["order_id"]) + 1),
            )  # fmt: skip

        late_day = last_day - timedelta(days=1) if hold_back_late_file and size.days > 2 else None
        for day, rows in _payments_by_day(paid, first_payment_id=1):
            ratio = incident_ratio if day == first_day else malformed_ratio
            report = self._write_payment_file(
                day, rows, rng, ratio, size.orders, hold_back=(day == late_day)
            )
            if day == late_day:
                delivery.withheld.append(report.name)
            else:
                delivery.files.append(report)
        return delivery

    # -- advance ------------------------------------------------------------------------------
    def advance(self, malformed_ratio: float = 0.01) -> Delivery:
        """Simulate the next day: new customers and orders, status changes, price changes, that
        day's payment file, and any file held back earlier (it arrives late)."""
        state = self.state()
        if state is None:
            raise RuntimeError(f"database {self.database!r} is not seeded yet; run seed first")
        day = state["last_day"] + timedelta(days=1)
        if day > datetime.now(UTC).date():
            raise RuntimeError(
                f"the demo shop is already at {state['last_day']}; it does not run ahead of the "
                "clock (payment partitions for future days do not exist yet)"
            )
        rng = np.random.default_rng([state["seed"], (day - state["first_day"]).days])
        t_lo, t_hi = _micros(day), _micros(day) + DAY
        delivery = Delivery()
        with self._shop() as cur:
            cur.execute("SELECT count(*), max(customer_id) FROM customers")
            n_customers, max_customer = cur.fetchone()
            cur.execute("SELECT count(*) FROM orders")
            (n_orders,) = cur.fetchone()
            span = (state["last_day"] - state["first_day"]).days + 1
            daily_orders = max(1, n_orders // span)

            new_customers = self._customers(
                rng, state["next_customer_id"], max(1, n_customers // 100), t_lo, t_hi
            )
            _copy(cur, "customers", new_customers)
            delivery.add_rows("customers", new_customers.num_rows)
            moved = "email = 'moved.' || t.customer_id || '@example.org'"
            repriced = (
                "unit_price = round(t.unit_price * (0.9 + c.random_factor * 0.2)::numeric, 2)"
            )
            delivery.add_rows(
                "customers",
                _update_sample(cur, rng, "customers", "customer_id", 0.002, t_lo, moved),
            )
            delivery.add_rows(
                "products", _update_sample(cur, rng, "products", "product_id", 0.02, t_lo, repriced)
            )

            cur.execute("SELECT round(unit_price * 100)::bigint FROM products ORDER BY product_id")
            prices = np.array([r[0] for r in cur.fetchall()], dtype=np.int64)
            orders, items, paid = self._orders(
                rng, state["next_order_id"], state["next_item_id"], daily_orders,
                max_customer + new_customers.num_rows, prices, t_lo, t_hi, t_hi - 1,
            )  # fmt: skip
            _copy(cur, "orders", orders)
            _copy(cur, "order_items", items)
            delivery.add_rows("orders", orders.num_rows)
            delivery.add_rows("order_items", items.num_rows)

            moved, progressed = self._progress_orders(cur, rng, t_lo)
            delivery.add_rows("orders", moved)
            paid = {k: np.concatenate([paid[k], progressed[k]]) for k in paid}

            n_paid = paid["order_id"].size
            cur.execute(
                """UPDATE generator.state SET last_day = %s, next_customer_id = %s,
                   next_order_id = %s, next_item_id = %s, next_payment_id = %s""",
                (day, state["next_customer_id"] + new_customers.num_rows,
                 state["next_order_id"] + orders.num_rows, state["next_item_id"] + items.num_rows,
                 state["next_payment_id"] + n_paid),
            )  # fmt: skip
            max_order_id = state["next_order_id"] + orders.num_rows

        for file_day, rows in _payments_by_day(paid, state["next_payment_id"]):
            delivery.files.append(
                self._write_payment_file(file_day, rows, rng, malformed_ratio, max_order_id)
            )
        for held in sorted(self.outbox.glob(f"{PAYMENT_FILE_PREFIX}*.csv")):
            delivery.files.append(self._deliver(held))
        return delivery

    def touch(self, table: str, key: str, fraction: float) -> int:
        """Change a deterministic `fraction` of a table's rows as an application would: a new
        `updated_at`, later than any before and distinct per row, on every row whose `key` is a
        multiple of 1/fraction. Returns the number of rows changed (for benchmarks and tests)."""
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        modulus = max(1, round(1 / fraction))
        with self._shop() as cur:
            # `%%`: the statement has parameters, so a literal modulo operator is escaped.
            cur.execute(
                sql.SQL(
                    "UPDATE {t} SET updated_at = (SELECT max(updated_at) FROM {t}) "
                    "+ interval '1 second' + {k} * interval '1 microsecond' WHERE {k} %% %s = 0"
                ).format(t=sql.Identifier(table), k=sql.Identifier(key)),
                (modulus,),
            )
            changed = cur.rowcount
        # Fresh statistics, as autovacuum would give a real source soon after such an update.
        with self._autocommit(self.database) as cur:
            cur.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(table)))
        return changed

    # -- row generation ---------------------------------------------------------------------
    @staticmethod
    def _customers(
        rng: np.random.Generator, first_id: int, n: int, t_lo: int, t_hi: int
    ) -> pa.Table:
        ids = np.arange(first_id, first_id + n, dtype=np.int64)
        first = pa.array(rng.choice(FIRST_NAMES, n))
        last = pa.array(rng.choice(LAST_NAMES, n))
        created = np.sort(rng.integers(t_lo, t_hi, n))
        email = pc.binary_join_element_wise(
            pc.utf8_lower(first), pc.utf8_lower(last), pa.array(ids.astype(str)), "."
        )
        return pa.table({
            "customer_id": ids,
            "email": pc.binary_join_element_wise(email, pa.scalar("example.com"), "@"),
            "full_name": pc.binary_join_element_wise(first, last, " "),
            "country": rng.choice(COUNTRIES, n, p=COUNTRY_WEIGHTS),
            "created_at": _ts(created),
            "updated_at": _ts(created),
        })  # fmt: skip

    @staticmethod
    def _products(rng: np.random.Generator, prices: np.ndarray, at: int) -> pa.Table:
        n = prices.size
        ids = np.arange(1, n + 1, dtype=np.int64)
        category = rng.choice(CATEGORIES, n)
        return pa.table({
            "product_id": ids,
            "sku": [f"SKU-{i:06d}" for i in ids],
            "name": [f"{c.title()} item {i}" for c, i in zip(category, ids, strict=True)],
            "category": category,
            "unit_price": [_amount(int(c)) for c in prices],
            "updated_at": _ts(np.full(n, at)),
        })  # fmt: skip

    @staticmethod
    def _orders(
        rng: np.random.Generator,
        first_id: int,
        first_item_id: int,
        n: int,
        max_customer: int,
        prices: np.ndarray,
        t_lo: int,
        t_hi: int,
        cap: int,
    ) -> tuple[pa.Table, pa.Table, dict[str, np.ndarray]]:
        """Orders placed in [t_lo, t_hi), their items, and the payments made up to `cap`."""
        ids = np.arange(first_id, first_id + n, dtype=np.int64)
        ordered = np.sort(rng.integers(t_lo, t_hi, n))
        # Skewed customers: a few order often, which makes lifetime value interesting.
        customer = 1 + (max_customer * rng.random(n) ** 2).astype(np.int64)
        paid_at = ordered + rng.integers(5 * MINUTE, 3 * HOUR, n)
        shipped_at = paid_at + rng.integers(12 * HOUR, 48 * HOUR, n)
        delivered_at = shipped_at + rng.integers(24 * HOUR, 72 * HOUR, n)
        cancelled = rng.random(n) < 0.04
        cancelled_at = ordered + rng.integers(10 * MINUTE, 6 * HOUR, n)

        status = np.full(n, "placed", dtype=object)
        updated = ordered.copy()
        for name, at in (("paid", paid_at), ("shipped", shipped_at), ("delivered", delivered_at)):
            reached = ~cancelled & (at <= cap)
            status[reached] = name
            updated[reached] = at[reached]
        gone = cancelled & (cancelled_at <= cap)
        status[gone] = "cancelled"
        updated[gone] = cancelled_at[gone]

        counts = 1 + np.minimum(rng.poisson(1.2, n), 5)
        total = int(counts.sum())
        product = rng.integers(1, prices.size + 1, total)
        quantity = 1 + np.minimum(rng.poisson(0.5, total), 4)
        unit_cents = prices[product - 1]
        order_cents = np.bincount(np.repeat(np.arange(n), counts), weights=quantity * unit_cents)

        orders = pa.table({
            "order_id": ids,
            "customer_id": customer,
            "status": pa.array(status.tolist(), type=pa.string()),
            "ordered_at": _ts(ordered),
            "updated_at": _ts(updated),
        })  # fmt: skip
        items = pa.table({
            "order_item_id": np.arange(first_item_id, first_item_id + total, dtype=np.int64),
            "order_id": np.repeat(ids, counts),
            "product_id": product,
            "quantity": quantity.astype(np.int32),
            "unit_price": [_amount(int(c)) for c in unit_cents],
            "updated_at": _ts(np.repeat(ordered, counts)),
        })  # fmt: skip
        is_paid = ~cancelled & (paid_at <= cap)
        paid = {
            "order_id": ids[is_paid],
            "cents": order_cents[is_paid].astype(np.int64),
            "paid_at": paid_at[is_paid],
            "method": rng.choice(PAYMENT_METHODS, n)[is_paid],
        }
        return orders, items, paid

    @staticmethod
    def _progress_orders(
        cur: psycopg2.extensions.cursor, rng: np.random.Generator, t_lo: int
    ) -> tuple[int, dict[str, np.ndarray]]:
        """Move open orders placed before today along: placed -> paid or cancelled, paid ->
        shipped, shipped -> delivered. Returns how many moved and the payments of the newly
        paid ones."""
        cur.execute(
            """SELECT o.order_id, o.status, coalesce(sum(i.quantity * i.unit_price * 100), 0)
               FROM orders o LEFT JOIN order_items i USING (order_id)
               WHERE o.status IN ('placed', 'paid', 'shipped') AND o.ordered_at < %s
               GROUP BY o.order_id, o.status ORDER BY o.order_id""",
            (datetime.fromtimestamp(t_lo // US, tz=UTC),),
        )
        rows = cur.fetchall()
        if not rows:
            none = np.array([], dtype=np.int64)
            return 0, {
                "order_id": none,
                "cents": none,
                "paid_at": none,
                "method": none.astype(object),
            }
        order_id = np.array([r[0] for r in rows], dtype=np.int64)
        status = np.array([r[1] for r in rows], dtype=object)
        cents = np.array([int(r[2]) for r in rows], dtype=np.int64)
        roll = rng.random(order_id.size)
        at = t_lo + np.sort(rng.integers(0, DAY - 1, order_id.size))
        new_status = status.copy()
        placed = status == "placed"
        new_status[placed & (roll < 0.85)] = "paid"
        new_status[placed & (roll >= 0.95)] = "cancelled"
        new_status[(status == "paid") & (roll < 0.7)] = "shipped"
        new_status[(status == "shipped") & (roll < 0.6)] = "delivered"
        moved = new_status != status
        changes = pa.table({
            "order_id": order_id[moved],
            "status": pa.array(new_status[moved].tolist(), type=pa.string()),
            "updated_at": _ts(at[moved]),
        })  # fmt: skip
        cur.execute("CREATE TEMP TABLE order_changes (order_id bigint, status text, "
                    "updated_at timestamptz) ON COMMIT DROP")  # fmt: skip
        _copy(cur, "order_changes", changes)
        cur.execute(
            """UPDATE orders o SET status = c.status, updated_at = c.updated_at
               FROM order_changes c WHERE o.order_id = c.order_id"""
        )
        newly_paid = placed & (new_status == "paid")
        return int(moved.sum()), {
            "order_id": order_id[newly_paid],
            "cents": cents[newly_paid],
            "paid_at": at[newly_paid],
            "method": rng.choice(PAYMENT_METHODS, order_id.size)[newly_paid],
        }

    # -- payment files ----------------------------------------------------------------------
    def _write_payment_file(
        self,
        day: date,
        rows: list[list[str]],
        rng: np.random.Generator,
        malformed_ratio: float,
        max_order_id: int,
        hold_back: bool = False,
    ) -> FileReport:
        name = f"{PAYMENT_FILE_PREFIX}{day.isoformat()}.csv"
        report = FileReport(name=name, day=day, good_rows=len(rows))
        bad = max(1, round(len(rows) * malformed_ratio)) if malformed_ratio > 0 and rows else 0
        lines = [_csv_line(r) for r in rows]
        tail = ""
        # The row-level kinds in turn; a file can be cut short only once, at its end.
        kinds = [MALFORMED_KINDS[k % 3] for k in range(bad)]
        if bad >= len(MALFORMED_KINDS):
            kinds[-1] = "truncated"
        for k, kind in enumerate(kinds):
            report.malformed[kind] = report.malformed.get(kind, 0) + 1
            template = rows[int(rng.integers(0, len(rows)))]
            if kind == "truncated":
                # A transfer cut short: the last line stops mid-row, without a newline.
                cut = _csv_line(template)
                tail = cut[: max(3, len(cut) // 3)]
                continue
            broken = list(template)
            if kind == "bad_type":
                broken[2] = broken[2].replace(".", ",") + "x"
            elif kind == "missing_field":
                broken[1] = ""
            else:
                broken[1] = str(max_order_id + 1_000_000 + k)
            lines.insert(int(rng.integers(0, len(lines) + 1)), _csv_line(broken))
        body = _csv_line(PAYMENT_HEADER) + "".join(lines) + tail
        if hold_back:
            _atomic_write(self.outbox / name, body)
            _atomic_write(
                self.outbox / f"{name}.report.json", json.dumps(asdict(report), default=str)
            )
        else:
            _atomic_write(self.landing / name, body)
        return report

    def _deliver(self, held: Path) -> FileReport:
        """Move a held-back file into the landing area; returns the report kept beside it."""
        report_path = held.with_name(f"{held.name}.report.json")
        report = json.loads(report_path.read_text())
        _atomic_write(self.landing / held.name, held.read_text())
        held.unlink()
        report_path.unlink()
        report["day"] = date.fromisoformat(report["day"])
        return FileReport(**report)


def _atomic_write(target: Path, body: str) -> None:
    """Write to a hidden temporary name and rename: readers never see half a file."""
    tmp = target.with_name(f".{target.name}.part")
    tmp.write_text(body)
    tmp.replace(target)


def _csv_line(values: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()


def _payments_by_day(
    paid: Mapping[str, np.ndarray], first_payment_id: int
) -> Iterator[tuple[date, list[list[str]]]]:
    """Payment rows grouped by the day they were made, ids assigned in time order."""
    order = np.argsort(paid["paid_at"], kind="stable")
    by_day: dict[date, list[list[str]]] = {}
    for offset, i in enumerate(order):
        at = int(paid["paid_at"][i])
        by_day.setdefault(_day_of(at), []).append([
            str(first_payment_id + offset), str(int(paid["order_id"][i])),
            _amount(int(paid["cents"][i])), "EUR", str(paid["method"][i]), _iso(at),
        ])  # fmt: skip
    yield from sorted(by_day.items())


def _copy(cur: psycopg2.extensions.cursor, table: str, data: pa.Table) -> None:
    """Bulk-load an Arrow table with COPY (CSV rendered by Arrow's multithreaded writer)."""
    buffer = io.BytesIO()
    pacsv.write_csv(data, buffer, pacsv.WriteOptions(include_header=True))
    buffer.seek(0)
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in data.column_names)
    cur.copy_expert(
        sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv, HEADER true)")
        .format(sql.Identifier(table), columns)
        .as_string(cur),
        buffer,
    )


def _update_sample(
    cur: psycopg2.extensions.cursor,
    rng: np.random.Generator,
    table: str,
    key: str,
    fraction: float,
    t_lo: int,
    assignment: str,
) -> int:
    """Update a random `fraction` of rows with `assignment` (over target `t` and the change row
    `c`, which carries `random_factor`) at a time during the day."""
    cur.execute(sql.SQL("SELECT {k} FROM {t} ORDER BY {k}").format(
        k=sql.Identifier(key), t=sql.Identifier(table)))  # fmt: skip
    keys = np.array([r[0] for r in cur.fetchall()], dtype=np.int64)
    chosen = np.sort(rng.choice(keys, max(1, int(keys.size * fraction)), replace=False))
    changes = pa.table({
        key: chosen,
        "random_factor": rng.random(chosen.size),
        "updated_at": _ts(t_lo + np.sort(rng.integers(0, DAY - 1, chosen.size))),
    })  # fmt: skip
    cur.execute(f"CREATE TEMP TABLE {table}_changes ({key} bigint, random_factor float8, "
                "updated_at timestamptz) ON COMMIT DROP")  # fmt: skip
    _copy(cur, f"{table}_changes", changes)
    cur.execute(
        f"UPDATE {table} t SET {assignment}, updated_at = c.updated_at "
        f"FROM {table}_changes c WHERE t.{key} = c.{key}"
    )
    return cur.rowcount
