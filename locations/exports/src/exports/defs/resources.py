"""Connections of the exports location, all from the environment (dg.EnvVar).

Nothing connects while the location loads; a missing variable fails the run that needs it
with a message naming the variable.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import dagster as dg
import psycopg2

if TYPE_CHECKING:
    from exports.storage import ExportArea

# libpq options that bound every wait on a server that is gone or stops answering: a connection
# attempt gives up after 10 s, and an open connection fails within about a minute (keepalive
# probes after 30 s of silence; at most 60 s of data left unacknowledged) instead of holding
# its run forever.
CONNECTION_OPTIONS = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "tcp_user_timeout": 60_000,
}


class Warehouse(dg.ConfigurableResource):
    """The warehouse as the exports role: reads marts, owns the bi schema. `sslmode` is
    libpq's (production sets `require`, WAREHOUSE_SSLMODE)."""

    host: str
    port: int = 5432
    database: str
    user: str
    password: str
    sslmode: str

    @contextmanager
    def connect(self) -> Iterator[psycopg2.extensions.connection]:
        conn = psycopg2.connect(
            host=self.host,
            port=self.port,
            dbname=self.database,
            user=self.user,
            password=self.password,
            sslmode=self.sslmode,
            application_name="dagster-exports",
            **CONNECTION_OPTIONS,
        )
        try:
            yield conn
        finally:
            conn.close()


class ExportStore(dg.ConfigurableResource):
    """Where snapshots and reports go: a folder or an fsspec URL such as s3://bucket/prefix."""

    url: str

    def area(self) -> "ExportArea":
        # fsspec is imported when a run writes, not when a code server loads the definitions.
        from exports.storage import ExportArea

        return ExportArea(self.url)


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={
            "warehouse": Warehouse(
                host=dg.EnvVar("WAREHOUSE_HOST"),
                port=dg.EnvVar.int("WAREHOUSE_PORT"),
                database=dg.EnvVar("WAREHOUSE_DB"),
                user=dg.EnvVar("EXPORTS_WAREHOUSE_USER"),
                password=dg.EnvVar("EXPORTS_WAREHOUSE_PASSWORD"),
                sslmode=dg.EnvVar("WAREHOUSE_SSLMODE"),
            ),
            "export_store": ExportStore(url=dg.EnvVar("EXPORTS_URL")),
        }
    )
