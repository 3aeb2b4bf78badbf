"""The benchmarks' own local platform: an embedded PostgreSQL in a private folder, bootstrapped
like production, never the `make dev` one nor a server PGHOST names (the pytest plugin's
isolation, for a longer-lived process).

Each data size has its own shop database and landing area (`shop_medium`, ...), kept between
sessions: the generator is deterministic, and seeding a million orders takes minutes.
"""

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import psycopg2
from psycopg2 import sql

from platform_bench.progress import say, step
from platform_devkit.bootstrap import bootstrap
from platform_devkit.instance import write_instance
from platform_devkit.local import LocalPlatform
from platform_devkit.settings import ROLES
from platform_devkit.shop.generator import SIZES, Delivery, ShopSource

BIN = Path(sys.executable).parent
# A fixed calendar: the seeded data does not depend on the day the benchmarks run.
LAST_DAY = date(2026, 3, 10)
# Variables of the platform that must not leak in from the shell running the benchmarks.
_PLATFORM_PREFIXES = ("PG", "DAGSTER_", "WAREHOUSE_", "SHOP_DB_", "PAYMENTS_", "EXPORTS_", "DBT_")


def clean_environ() -> dict[str, str]:
    """This process's environment without platform settings, with the workspace's executables
    (dagster, dbt) first on PATH."""
    role_vars = {v for role in ROLES.values() for v in (role.user_var, role.password_var)}
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_PLATFORM_PREFIXES) and k not in role_vars
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["DAGSTER_DISABLE_TELEMETRY"] = "1"
    return env


class BenchPlatform:
    """PostgreSQL (warehouse, shop sources, Dagster storage) for one benchmark session."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.local = LocalPlatform(
            state=workdir / "platform", environ=clean_environ(), progress=say
        )
        self.base_env: dict[str, str] = {}
        self.size: str | None = None

    def __enter__(self) -> "BenchPlatform":
        with step("starting the benchmarks' embedded PostgreSQL"):
            self.local.start_postgres()
            self.base_env = self.local.env()
            bootstrap(self.base_env)
            write_instance(Path(self.base_env["DAGSTER_HOME"]))
        return self

    def __exit__(self, *exc: object) -> None:
        say("stopping the benchmarks' PostgreSQL")
        self.local.stop_postgres()

    # -- the shop of the current size -----------------------------------------------------
    @property
    def shop_db(self) -> str:
        if self.size is None:
            raise RuntimeError("no shop selected: call seed(size) first")
        return f"shop_{self.size}"

    @property
    def landing(self) -> Path:
        return self.local.state / f"landing_{self.size}"

    @property
    def env(self) -> dict[str, str]:
        """The platform's variables, pointing the ingestion location at the current shop."""
        env = dict(self.base_env)
        if self.size is not None:
            env["SHOP_DB_NAME"] = self.shop_db
            env["PAYMENTS_LANDING_URL"] = str(self.landing / "payments")
        return env

    def source(self) -> ShopSource:
        env = self.env
        return ShopSource(
            admin=self.local.settings.admin(),
            database=self.shop_db,
            reader_user=env[ROLES["shop_reader"].user_var],
            reader_password=env[ROLES["shop_reader"].password_var],
            landing=self.landing / "payments",
            outbox=self.landing / "outbox",
        )

    def seed(self, size: str) -> Delivery | None:
        """Select the shop of `size` (generator.SIZES), seeding it first unless a previous
        session did. Returns the seed's delivery, or None when the shop was kept."""
        self.size = size
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.shop_db,))
            exists = cur.fetchone() is not None
        if exists and (self.source().state() or {}).get("size") == size:
            say(f"the demo shop of size {size} is there from a previous session: keeping it")
            return None
        with step(f"seeding the demo shop at size {size} ({SIZES[size].orders:,} orders)"):
            with self.connect() as conn, conn.cursor() as cur:
                cur.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(self.shop_db)
                    )
                )
            for folder in (self.landing / "payments", self.landing / "outbox"):
                for file in folder.glob("*") if folder.exists() else []:
                    file.unlink()
            delivery = self.source().seed(SIZES[size], size_name=size, last_day=LAST_DAY)
            with self.connect(None, self.shop_db) as conn, conn.cursor() as cur:
                cur.execute("VACUUM ANALYZE")
        return delivery

    # -- connections -----------------------------------------------------------------------
    def libpq(self, role: str | None = None, database: str | None = None) -> dict[str, str]:
        """psycopg2.connect() keywords: the admin role, or a role of ROLES."""
        env = self.env
        if role is None:
            admin = self.local.settings.admin()
            user, password = admin["PGUSER"], admin["PGPASSWORD"]
        else:
            user, password = env[ROLES[role].user_var], env[ROLES[role].password_var]
        return {
            "host": env["WAREHOUSE_HOST"],
            "port": env["WAREHOUSE_PORT"],
            "user": user,
            "password": password,
            "dbname": database or env["WAREHOUSE_DB"],
        }

    @contextmanager
    def connect(
        self, role: str | None = None, database: str | None = None
    ) -> Iterator[psycopg2.extensions.connection]:
        conn = psycopg2.connect(**self.libpq(role, database))
        conn.autocommit = True
        try:
            yield conn
        finally:
            conn.close()

    def query(self, statement: str, database: str | None = None) -> list[tuple]:
        with self.connect(None, database) as conn, conn.cursor() as cur:
            cur.execute(statement)
            return cur.fetchall()

    # -- state between runs ----------------------------------------------------------------
    def drop_tables(self, role: str, schemas: tuple[str, ...]) -> None:
        """Drop every table and view `role` owns in `schemas`: the next load or build starts
        from nothing (for dlt: its state tables too, so it does a full load)."""
        with self.connect(role) as conn, conn.cursor() as cur:
            cur.execute(
                """SELECT n.nspname, c.relname, c.relkind FROM pg_class c
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'v', 'm', 'p')
                     AND pg_get_userbyid(c.relowner) = current_user""",
                (list(schemas),),
            )
            kinds = {"v": "VIEW", "m": "MATERIALIZED VIEW"}
            for schema, name, kind in cur.fetchall():
                cur.execute(
                    sql.SQL("DROP {} IF EXISTS {} CASCADE").format(
                        sql.SQL(kinds.get(kind, "TABLE")), sql.Identifier(schema, name)
                    )
                )

    def checkpoint(self) -> None:
        """Flush dirty pages before a timed run, so it does not pay for the previous run's."""
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute("CHECKPOINT")

    def process_env(self) -> dict[str, str]:
        """Environment of the processes the benchmarks start (code servers, loads, builds):
        the platform's variables, and bytecode cached in a folder of the session's own. Images
        ship compiled bytecode; here the first (unmeasured) start writes it, and the checkout
        and the environments stay untouched (PYTHONDONTWRITEBYTECODE may be set around us)."""
        env = {**clean_environ(), **self.env}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(self.workdir / "pycache")
        return env

    @contextmanager
    def environment(self) -> Iterator[dict[str, str]]:
        """The platform's variables in os.environ (where dg.EnvVar reads them), restored after."""
        saved = dict(os.environ)
        env = self.env
        os.environ.update(env)
        try:
            yield env
        finally:
            os.environ.clear()
            os.environ.update(saved)
