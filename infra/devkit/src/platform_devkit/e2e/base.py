"""What every e2e driver provides: a running deployment behind a GraphQL URL, the warehouse,
the export area, a receiver for the locations' alerts, and the operations the body performs on
one code location."""

import abc
from collections.abc import Callable
from pathlib import Path

import psycopg2

from platform_devkit import locations
from platform_devkit.e2e.alerts import AlertReceiver
from platform_devkit.e2e.graphql import DagsterGraphQL

# Variables each team's code server (and its runs) receives; nothing of another team's.
# The team's own are its declaration's (platform_devkit.locations: its Secret's keys, the
# optional ones such as ALERT_WEBHOOK_URL when set, and the platform variables it reads); in
# Kubernetes the same split is the team Secrets. DAGSTER_WEBSERVER_URL (the UI's address, for
# links in alerts) is the same for every team and no secret: in Kubernetes it is a key of the
# platform's ConfigMap platform-environment.
SHARED_VARIABLES = (
    "DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_DB", "DAGSTER_PG_USER",
    "DAGSTER_PG_PASSWORD", "WAREHOUSE_HOST", "WAREHOUSE_PORT", "WAREHOUSE_DB",
    "WAREHOUSE_SSLMODE", "DAGSTER_WEBSERVER_URL",
)  # fmt: skip


def location_names() -> list[str]:
    return [loc.name for loc in locations.load()]


def location_environment(name: str, env: dict[str, str]) -> dict[str, str]:
    """The variables of one location's server: shared connection settings and its team's."""
    found = {loc.name: loc for loc in locations.load()}
    if name not in found:
        raise KeyError(f"{name} is not a code location (one of: {', '.join(found)})")
    return {k: env[k] for k in (*SHARED_VARIABLES, *found[name].variables()) if k in env}


class Deployment(abc.ABC):
    """A running platform. Subclasses start it in `__enter__` and remove it in `__exit__`."""

    name: str
    graphql: DagsterGraphQL
    webserver_url: str
    # What the locations were given as DAGSTER_WEBSERVER_URL (None: not given).
    linked_webserver_url: str | None = None

    def __init__(self, workdir: Path, progress: Callable[[str], None]) -> None:
        # workdir: the deployment's state (databases, credentials); never uploaded.
        # artifacts: logs, screenshots and diagnostics, which CI uploads (set by the caller).
        self.workdir = workdir
        self.artifacts = workdir
        self.progress = progress
        # Started by the driver before the code servers, which get its URL as ALERT_WEBHOOK_URL.
        self.alerts: AlertReceiver | None = None

    def __enter__(self) -> "Deployment":
        return self

    def __exit__(self, *exc) -> None:
        if self.alerts is not None:
            self.alerts.stop()

    def start_alerts(self, host: str = "127.0.0.1") -> str:
        """Start the alert receiver on `host` (an address the runs' code servers reach)."""
        self.alerts = AlertReceiver(host).start()
        self.progress(f"alert receiver at {self.alerts.url}")
        return self.alerts.url

    @abc.abstractmethod
    def admin_settings(self) -> dict[str, str]:
        """libpq settings (PGHOST, PGPORT, PGUSER, PGPASSWORD) of the administrative role."""

    def _connect(self, database: str):
        admin = self.admin_settings()
        return psycopg2.connect(
            host=admin["PGHOST"], port=admin["PGPORT"], user=admin["PGUSER"],
            password=admin["PGPASSWORD"], dbname=database,
        )  # fmt: skip

    def query(self, sql: str, database: str = "warehouse") -> list[tuple]:
        """Run SQL as the administrative role; its rows."""
        conn = self._connect(database)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall()
        finally:
            conn.close()

    def execute(self, sql: str, database: str = "warehouse") -> None:
        """Run a statement as the administrative role, committed (ALTER ROLE, ...)."""
        conn = self._connect(database)
        try:
            with conn, conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    @abc.abstractmethod
    def export_files(self, folder: str) -> dict[str, bytes]:
        """Files below a folder of the export area: relative path -> content."""

    @abc.abstractmethod
    def delivered_payment_days(self) -> list[str]:
        """Days whose payment file is in the landing area."""

    @abc.abstractmethod
    def stop_location(self, name: str) -> None:
        """Stop one code server (the others keep running)."""

    @abc.abstractmethod
    def start_location(self, name: str) -> None:
        """Start a stopped code server again."""

    @abc.abstractmethod
    def upgrade_location(self, name: str) -> None:
        """Replace one code server by a new one (a new image tag, or a restarted server)."""

    def diagnostics(self) -> str:
        """What to print when a test failed: logs, events."""
        return ""

    def verify_runtime_isolation(self) -> None:  # noqa: B027 (optional hook)
        """Driver-specific checks that runs executed where they should (kind: Kubernetes Jobs
        with the location's image and only that team's Secret)."""
