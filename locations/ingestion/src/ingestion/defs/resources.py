"""Connections of the ingestion location, all from the environment (dg.EnvVar).

Nothing here connects while the code location loads: resources are bound lazily, so a code
server starts without its databases, and a missing variable fails the run that needs it with
a message naming the variable.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import psycopg2

# libpq options that bound every wait on a server that is gone or stops answering: a connection
# attempt gives up after 10 s, and an open connection fails within about a minute (keepalive
# probes after 30 s of silence; at most 60 s of data left unacknowledged) instead of holding
# its run, and the run's pool slot, forever. keepalives_count stays the system's: ConnectorX,
# which reads the shop with these options, rejects it, and tcp_user_timeout ends the probes.
CONNECTION_OPTIONS = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "tcp_user_timeout": 60_000,
}


class PostgresResource(dg.ConfigurableResource):
    """A PostgreSQL database and the role this location uses on it; `sslmode` is libpq's
    (production sets `require`, WAREHOUSE_SSLMODE / SHOP_DB_SSLMODE)."""

    host: str
    port: int = 5432
    database: str
    user: str
    password: str
    sslmode: str

    def dlt_fields(self) -> dict:
        """Connection fields for dlt. Structured, never a URL: dlt masks the password when it
        prints credentials, while a malformed URL ends up verbatim in driver error messages.
        The query reaches every driver dlt connects with (psycopg2, ADBC, ConnectorX)."""
        return {
            "drivername": "postgresql",
            "host": self.host,
            "port": self.port,
            "database": self.database,
            "username": self.user,
            "password": self.password,
            # dlt's Postgres destination writes this field over the query's (its default: 15).
            "connect_timeout": CONNECTION_OPTIONS["connect_timeout"],
            "query": {"sslmode": self.sslmode, **CONNECTION_OPTIONS},
        }

    @contextmanager
    def connect(self) -> Iterator[psycopg2.extensions.connection]:
        conn = psycopg2.connect(
            host=self.host,
            port=self.port,
            dbname=self.database,
            user=self.user,
            password=self.password,
            sslmode=self.sslmode,
            application_name="dagster-ingestion",
            **CONNECTION_OPTIONS,
        )
        try:
            yield conn
        finally:
            conn.close()


class PaymentLanding(dg.ConfigurableResource):
    """The payment provider's landing area (an fsspec URL: a folder, or s3://bucket/prefix) and
    how many malformed rows a file may have before its check fails."""

    url: str
    max_reject_ratio: float = 0.05


def warehouse_from_env() -> PostgresResource:
    return PostgresResource(
        host=dg.EnvVar("WAREHOUSE_HOST"),
        port=dg.EnvVar.int("WAREHOUSE_PORT"),
        database=dg.EnvVar("WAREHOUSE_DB"),
        user=dg.EnvVar("INGESTION_WAREHOUSE_USER"),
        password=dg.EnvVar("INGESTION_WAREHOUSE_PASSWORD"),
        sslmode=dg.EnvVar("WAREHOUSE_SSLMODE"),
    )


def shop_db_from_env() -> PostgresResource:
    return PostgresResource(
        host=dg.EnvVar("SHOP_DB_HOST"),
        port=dg.EnvVar.int("SHOP_DB_PORT"),
        database=dg.EnvVar("SHOP_DB_NAME"),
        user=dg.EnvVar("SHOP_DB_USER"),
        password=dg.EnvVar("SHOP_DB_PASSWORD"),
        sslmode=dg.EnvVar("SHOP_DB_SSLMODE"),
    )


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={
            "warehouse": warehouse_from_env(),
            "shop_db": shop_db_from_env(),
            "payment_landing": PaymentLanding(url=dg.EnvVar("PAYMENTS_LANDING_URL")),
        }
    )
