"""Loading the shop's orders table from the source database into the warehouse, three ways.

- the product: `raw/orders` materialised through Dagster with the ingestion location's own
  definitions (dlt, ConnectorX extraction into Arrow, Parquet loaded by binary COPY, merge on
  the key);
- the limit: `COPY (SELECT ...) TO STDOUT` on the source piped into `COPY ... FROM STDIN` on
  the warehouse, binary format, two threads and a pipe: no parsing, no client-side work;
- the hand-written load: pandas `read_sql` + `to_sql`, as people write it.

Every run starts from nothing (dlt's state tables dropped too, so the product does a full
load), writes the same columns of the same rows into the same database as the same role, and
is checked afterwards: a run that loaded the wrong number of rows fails the benchmarks.
"""

import os
import threading
import time
from dataclasses import dataclass, field

import dagster as dg
import psycopg2
from psycopg2 import sql

from platform_bench.platform import BenchPlatform
from platform_devkit.runner import load_definitions

ORDERS = dg.AssetKey(["raw", "orders"])
PAYMENTS = dg.AssetKey(["raw", "payments"])
# The benchmark's payment file: one payment per source order, all on one day long before the
# seeded history, in a landing area of its own so no seeded file is read.
PAYMENT_DAY = "2025-01-02"
PAYMENT_HEADER = "payment_id,order_id,amount,currency,method,paid_at\n"
COLUMNS = ("order_id", "customer_id", "status", "ordered_at", "updated_at")
# The columns as raw.orders has them after a dlt load (dlt maps text to varchar).
TABLE_DDL = """CREATE TABLE {} (
    order_id bigint NOT NULL, customer_id bigint NOT NULL, status varchar NOT NULL,
    ordered_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)"""
COPY_TABLE = ("raw", "orders_copy")
STAGING_TABLE = ("raw_staging", "orders_copy")
PANDAS_TABLE = "orders_pandas"
# The run's own logs are not what is measured; only warnings reach the terminal.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
SCHEMAS = ("raw", "raw_staging")
# psycopg2 reads the COPY FROM input in chunks of this many bytes (its default of 8 KiB would
# make the limit pay for thousands of small reads).
COPY_CHUNK = 1 << 20


@dataclass
class Run:
    """One timed load."""

    seconds: float
    rows: int
    # Where the time went (dlt: extract, normalize, load, ...), seconds.
    phases: dict[str, float] = field(default_factory=dict)


class Loads:
    """The three loads against one platform; the ingestion definitions are loaded once."""

    def __init__(self, platform: BenchPlatform) -> None:
        self.platform = platform
        with platform.environment():
            self.defs = load_definitions("ingestion.definitions")
            # Imported here, outside the timed runs, as a code server's run worker has it
            # imported after its first run: the first timed run must not pay for dlt's import.
            import dlt  # noqa: F401
            import pandas  # noqa: F401

            import ingestion.pipelines.payments
            import ingestion.pipelines.shop  # noqa: F401

    def source_rows(self) -> int:
        return self.platform.query("SELECT count(*) FROM orders", self.platform.shop_db)[0][0]

    def reset(self) -> None:
        """No orders table, no dlt state: the next product run is a full load."""
        self.platform.drop_tables("ingestion", SCHEMAS)
        self.platform.checkpoint()

    # -- the product ---------------------------------------------------------------------------
    def product(self) -> Run:
        """Materialise raw/orders through Dagster in process (its checks are not part of the
        load and are left out)."""
        import dlt

        with self.platform.environment():
            started = time.perf_counter()
            result = dg.materialize(
                assets=[*self.defs.assets, *self.defs.asset_checks],
                selection=dg.AssetSelection.assets(ORDERS).without_checks(),
                resources=self.defs.resources,
                instance=dg.DagsterInstance.ephemeral(),
                run_config=QUIET,
            )
            seconds = time.perf_counter() - started
        if not result.success:
            raise RuntimeError("materialising raw/orders failed")
        (event,) = result.get_asset_materialization_events()
        loaded = event.materialization.metadata.get("rows_loaded")
        return Run(
            seconds, int(loaded.value) if loaded else 0, dlt_phases(dlt.current.pipeline(), seconds)
        )

    # -- the limit -------------------------------------------------------------------------------
    def copy_limit(self) -> Run:
        """COPY out of the source piped into COPY into the warehouse, binary format."""
        with self.platform.connect("ingestion") as target:
            started = time.perf_counter()
            rows = self._copy_into(target, COPY_TABLE)
            return Run(time.perf_counter() - started, rows)

    def staged_copy(self) -> Run:
        """The limit of a load that merges through a staging table, as dlt does: the COPY
        limit into a staging table, then INSERT ... SELECT into the target."""
        with self.platform.connect("ingestion") as target:
            started = time.perf_counter()
            self._copy_into(target, STAGING_TABLE)
            copied = time.perf_counter() - started
            with target.cursor() as cur:
                cur.execute(sql.SQL(TABLE_DDL).format(sql.Identifier(*COPY_TABLE)))
                cur.execute(
                    sql.SQL("INSERT INTO {} SELECT * FROM {}").format(
                        sql.Identifier(*COPY_TABLE), sql.Identifier(*STAGING_TABLE)
                    )
                )
                rows = cur.rowcount
            seconds = time.perf_counter() - started
        return Run(seconds, rows, {"COPY into staging": copied, "INSERT SELECT": seconds - copied})

    def _copy_into(self, target: psycopg2.extensions.connection, table: tuple[str, str]) -> int:
        """Create `table` and fill it from the source with two COPYs joined by a pipe."""
        columns = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
        name = sql.Identifier(*table)
        out_sql = sql.SQL("COPY (SELECT {} FROM orders) TO STDOUT (FORMAT binary)").format(columns)
        in_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(name, columns)
        with self.platform.connect("shop_reader", self.platform.shop_db) as source:
            with target.cursor() as cur:
                cur.execute(sql.SQL(TABLE_DDL).format(name))
            read_end, write_end = os.pipe()
            failure: list[BaseException] = []

            def produce() -> None:
                try:
                    with os.fdopen(write_end, "wb") as pipe, source.cursor() as cur:
                        cur.copy_expert(out_sql.as_string(source), pipe)
                except BaseException as error:  # re-raised in the calling thread
                    failure.append(error)

            producer = threading.Thread(target=produce, name="copy-out")
            producer.start()
            try:
                with os.fdopen(read_end, "rb") as pipe, target.cursor() as cur:
                    cur.copy_expert(in_sql.as_string(target), pipe, size=COPY_CHUNK)
                    rows = cur.rowcount
            finally:
                producer.join()
        if failure:
            raise failure[0]
        return rows

    # -- by hand ---------------------------------------------------------------------------------
    def pandas(self) -> Run:
        """pandas.read_sql + DataFrame.to_sql with their defaults (method=None, chunksize=None:
        all rows in one DataFrame, inserted with SQLAlchemy's executemany; SQLAlchemy 2 batches
        those into multi-row INSERTs of 1,000 rows for psycopg2)."""
        import pandas as pd
        import sqlalchemy as sa

        def engine(role: str, database: str | None = None) -> sa.Engine:
            libpq = self.platform.libpq(role, database)
            return sa.create_engine(
                sa.URL.create(
                    "postgresql+psycopg2",
                    username=libpq["user"],
                    password=libpq["password"],
                    host=libpq["host"],
                    port=int(libpq["port"]),
                    database=libpq["dbname"],
                )
            )

        source = engine("shop_reader", self.platform.shop_db)
        target = engine("ingestion")
        try:
            started = time.perf_counter()
            read_started = started
            frame = pd.read_sql(f"SELECT {', '.join(COLUMNS)} FROM orders", source)
            read = time.perf_counter() - read_started
            frame.to_sql(PANDAS_TABLE, target, schema="raw", if_exists="replace", index=False)
            seconds = time.perf_counter() - started
        finally:
            source.dispose()
            target.dispose()
        return Run(seconds, len(frame), {"read_sql": read, "to_sql": seconds - read})

    # -- payment files ---------------------------------------------------------------------------
    def write_payment_file(self) -> int:
        """One day's payment file with a payment for every source order; returns its rows."""
        folder = self.platform.workdir / "payment-bench"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"payments_{PAYMENT_DAY}.csv"
        order_ids = [
            row[0]
            for row in self.platform.query(
                "SELECT order_id FROM orders ORDER BY order_id", self.platform.shop_db
            )
        ]
        with path.open("w") as out:
            out.write(PAYMENT_HEADER)
            for order_id in order_ids:
                cents = 100 + order_id * 7919 % 500_000
                out.write(
                    f"{order_id},{order_id},{cents // 100}.{cents % 100:02d},EUR,card,"
                    f"{PAYMENT_DAY}T12:00:00Z\n"
                )
        return len(order_ids)

    def payments(self) -> Run:
        """Materialise one day of raw/payments through Dagster in process, from the benchmark's
        payment file (validation, dlt CSV load, the day-scoped merge)."""
        import dlt

        with self.platform.environment():
            os.environ["PAYMENTS_LANDING_URL"] = str(self.platform.workdir / "payment-bench")
            started = time.perf_counter()
            result = dg.materialize(
                assets=[*self.defs.assets, *self.defs.asset_checks],
                selection=dg.AssetSelection.groups("payments"),
                partition_key=PAYMENT_DAY,
                resources=self.defs.resources,
                instance=dg.DagsterInstance.ephemeral(),
                run_config=QUIET,
            )
            seconds = time.perf_counter() - started
        if not result.success:
            raise RuntimeError("materialising raw/payments failed")
        good = next(
            e.materialization.metadata["good_rows"].value
            for e in result.get_asset_materialization_events()
            if e.materialization.asset_key == PAYMENTS
        )
        return Run(seconds, int(good), dlt_phases(dlt.current.pipeline(), seconds))

    def lookback_rows(self) -> int:
        """Source orders the next incremental run reads: those at or after raw's cursor minus
        the load's lookback (ingestion.pipelines.shop.LOOKBACK)."""
        from ingestion.pipelines.shop import LOOKBACK

        (cursor,) = self.platform.query("SELECT max(updated_at) FROM raw.orders")[0]
        with self.platform.connect(None, self.platform.shop_db) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM orders WHERE updated_at >= %s", (cursor - LOOKBACK,))
            return cur.fetchone()[0]

    def rows_in(self, table: str) -> int:
        return self.platform.query(f"SELECT count(*) FROM raw.{table}")[0][0]

    def touch(self, fraction: float) -> int:
        """Change `fraction` of the source orders as an application would (a later
        updated_at on every order whose id is a multiple of 1/fraction)."""
        return self.platform.source().touch("orders", "order_id", fraction)


def dlt_phases(pipeline: object, total: float) -> dict[str, float]:
    """Seconds per dlt step of the pipeline's last run (from its trace) and what Dagster and the
    asset add around dlt's `run`."""
    trace = pipeline.last_trace
    phases = {s.step: (s.finished_at - s.started_at).total_seconds() for s in trace.steps}
    if "run" in phases:
        phases["outside dlt (Dagster, asset code)"] = total - phases["run"]
    return phases
