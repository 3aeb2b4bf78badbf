"""The local platform as one object: PostgreSQL, bootstrap, demo source, Dagster instance."""

import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import psycopg2

from platform_devkit.bootstrap import bootstrap
from platform_devkit.defs_state import prepare
from platform_devkit.instance import locations, write_instance
from platform_devkit.paths import state_dir
from platform_devkit.postgres import EmbeddedPostgres, free_port, port_is_free
from platform_devkit.settings import ROLES, PlatformSettings
from platform_devkit.shop.generator import SIZES, Delivery, ShopSource


def say(message: str) -> None:
    """Progress line on stderr (stdout stays clean for command output)."""
    print(f"==> {message}", file=sys.stderr, flush=True)


class LocalPlatform:
    """Everything `make dev`, `make run` and the tests need, on the embedded server by default
    or on the server PGHOST names."""

    def __init__(
        self,
        state: Path | None = None,
        environ: Mapping[str, str] | None = None,
        progress: Callable[[str], None] = say,
    ) -> None:
        self.state = (state or state_dir()).resolve()
        self.settings = PlatformSettings(self.state, environ)
        self.postgres = EmbeddedPostgres(self.state / "pgdata")
        self.progress = progress

    # -- PostgreSQL ---------------------------------------------------------------------------
    def start_postgres(self) -> None:
        if self.settings.external:
            admin = self.settings.admin()
            self.progress(
                f"using PostgreSQL at {admin['PGHOST']}:{admin['PGPORT']} (PGHOST is set)"
            )
            self._wait_for_server(admin)
            return
        if not self.postgres.initialised:
            self.progress(f"initialising embedded PostgreSQL in {self.postgres.data_dir}")
            self.postgres.initialise(self.settings.superuser_password())
        port = self.postgres.running_port()
        if port is None:
            # The server keeps its port across restarts: every process started earlier (a
            # `make dev`, its runs) holds it in DAGSTER_PG_PORT and WAREHOUSE_PORT.
            port = self.settings.embedded_port
            if port is not None and not port_is_free(port):
                self.progress(
                    f"127.0.0.1:{port} is taken by another program: the embedded server moves; "
                    "restart whatever still uses the old port"
                )
                port = None
            port = port or free_port()
            self.progress(f"starting embedded PostgreSQL on 127.0.0.1:{port}")
            port = self.postgres.start(port)
        if port != self.settings.embedded_port:
            self.settings.remember_embedded_port(port)

    def stop_postgres(self) -> None:
        if not self.settings.external:
            self.postgres.stop()

    @staticmethod
    def _wait_for_server(admin: Mapping[str, str], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg2.connect(
                    host=admin["PGHOST"], port=admin["PGPORT"], user=admin["PGUSER"],
                    password=admin.get("PGPASSWORD"), dbname="postgres", connect_timeout=5,
                ).close()  # fmt: skip
                return
            except psycopg2.OperationalError as error:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"cannot connect to PostgreSQL at {admin['PGHOST']}:{admin['PGPORT']} "
                        f"as {admin['PGUSER']}: {error}".strip()
                    ) from error
                time.sleep(1)

    # -- platform -----------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """Every variable the locations and Dagster read (connection values, credentials)."""
        return self.settings.resolve()

    def source(self) -> ShopSource:
        env = self.env()
        return ShopSource(
            admin=self.settings.admin(),
            database=env["SHOP_DB_NAME"],
            reader_user=env[ROLES["shop_reader"].user_var],
            reader_password=env[ROLES["shop_reader"].password_var],
            landing=Path(env["PAYMENTS_LANDING_URL"]),
            outbox=self.state / "landing" / "outbox",
        )

    def up(self, size: str = "small", seed: bool = True) -> dict[str, str]:
        """Start (or reuse) everything; idempotent. Returns the platform's environment."""
        self.start_postgres()
        env = self.env()
        self.progress("applying the warehouse bootstrap (roles, databases, schemas, grants)")
        self.progress(bootstrap(env))
        source = self.source()
        if seed:
            source.create()
            if source.state() is None:
                self.progress(f"seeding the demo shop ({size}) and its payment files")
                report(source.seed(SIZES[size], size_name=size), self.progress)
            else:
                self.progress("demo shop already seeded (devkit advance simulates the next day)")
        for location in locations():
            prepare(Path(location["path"]), self.progress)
        home = Path(env["DAGSTER_HOME"])
        write_instance(home)
        self.progress(f"Dagster instance: {home / 'dagster.yaml'} (PostgreSQL storage)")
        return env


def report(delivery: Delivery, progress: Callable[[str], None] = say) -> None:
    """Print what a seed or advance produced."""
    for table, count in sorted(delivery.rows.items()):
        progress(f"  shop.{table}: {count:,} rows written")
    good = sum(f.good_rows for f in delivery.files)
    bad = sum(sum(f.malformed.values()) for f in delivery.files)
    progress(
        f"  payment files delivered: {len(delivery.files)} ({good:,} good rows, {bad} malformed)"
    )
    for name in delivery.withheld:
        progress(f"  held back, arrives late with the next advance: {name}")
