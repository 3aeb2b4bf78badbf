"""pytest fixtures for every test tree: a real embedded PostgreSQL per session, bootstrapped
like production, and a clean warehouse and demo shop per test that asks for them.

Registered through the `pytest11` entry point, so location tests and cross-location tests
share one server. Tests always use their own embedded server in a folder of their own
(platform-test-* in the temporary folder), never the `make dev` one and never a server
PGHOST names.
"""

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import psycopg2
import pytest

from platform_devkit.bootstrap import bootstrap
from platform_devkit.defs_state import prepare
from platform_devkit.instance import locations, write_instance
from platform_devkit.local import LocalPlatform
from platform_devkit.settings import ROLES
from platform_devkit.shop.generator import SIZES, Delivery, ShopSource

# A fixed calendar for tests: results do not depend on the day they run.
TEST_LAST_DAY = date(2026, 3, 10)

# Variables the platform sets; scrubbed from the test process so none leaks in from a shell.
PLATFORM_PREFIXES = (
    "PG", "DAGSTER_PG_", "WAREHOUSE_", "SHOP_DB_", "PAYMENTS_", "EXPORTS_URL", "BI_READER_",
)  # fmt: skip


def _scrubbed_environ() -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(PLATFORM_PREFIXES)}
    for role in ROLES.values():
        keep.pop(role.user_var, None)
        keep.pop(role.password_var, None)
    return keep


class PlatformUnderTest:
    """The session's platform plus helpers to reset and seed it."""

    def __init__(self, platform: LocalPlatform) -> None:
        self.platform = platform
        self.env = platform.env()
        self.landing = Path(self.env["PAYMENTS_LANDING_URL"])
        self.exports = Path(self.env["EXPORTS_URL"])

    def admin_connect(self, database: str = "postgres") -> psycopg2.extensions.connection:
        admin = self.platform.settings.admin()
        conn = psycopg2.connect(
            host=admin["PGHOST"], port=admin["PGPORT"], user=admin["PGUSER"],
            password=admin["PGPASSWORD"], dbname=database,
        )  # fmt: skip
        conn.autocommit = True
        return conn

    def connect_as(self, role: str, database: str | None = None) -> psycopg2.extensions.connection:
        spec = ROLES[role]
        conn = psycopg2.connect(
            host=self.env["WAREHOUSE_HOST"], port=self.env["WAREHOUSE_PORT"],
            user=self.env[spec.user_var], password=self.env[spec.password_var],
            dbname=database or self.env["WAREHOUSE_DB"],
        )  # fmt: skip
        conn.autocommit = True
        return conn

    def query(self, sql: str, params: tuple = (), database: str | None = None) -> list[tuple]:
        conn = self.admin_connect(database or self.env["WAREHOUSE_DB"])
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall()
        finally:
            conn.close()

    def reset(self) -> None:
        """Drop the warehouse and the demo shop, empty the landing and export areas, bootstrap
        again."""
        conn = self.admin_connect()
        try:
            with conn.cursor() as cur:
                for database in (self.env["WAREHOUSE_DB"], self.env["SHOP_DB_NAME"]):
                    cur.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            conn.close()
        for folder in (self.landing, self.platform.state / "landing" / "outbox"):
            if folder.exists():
                for file in folder.iterdir():
                    file.unlink()
        shutil.rmtree(self.exports, ignore_errors=True)
        bootstrap(self.env)

    def source(self) -> ShopSource:
        return self.platform.source()

    def seed(self, size: str = "tiny", **kwargs) -> Delivery:
        kwargs.setdefault("last_day", TEST_LAST_DAY)
        return self.source().seed(SIZES[size], size_name=size, **kwargs)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Every location's defs state prepared (when stale) before any test loads definitions:
    loading only reads it, in dg and in code servers (platform_devkit.defs_state)."""
    for location in locations():
        prepare(Path(location["path"]), progress=lambda _: None)


@pytest.fixture(autouse=True)
def _keep_working_directory(request: pytest.FixtureRequest) -> Iterator[None]:
    """Run every test in the directory pytest was started from. dbt moves the process into the
    project it runs (dbt.task.base), for an in-process run the copy in the defs state; a later
    refresh of that state (dg, the devkit) replaces the folder and would leave every following
    test in a deleted directory."""
    home = request.config.invocation_params.dir
    os.chdir(home)
    yield
    os.chdir(home)


@contextmanager
def server_folder() -> Iterator[Path]:
    """A folder for an embedded server's data, directly in the system's temporary folder
    (platform-test-*) and removed afterwards; never under pytest's temporary root. Run as root,
    the server runs as another user, and every new pytest session on the machine resets
    /tmp/pytest-of-<user> to mode 0700, which would cut a running server off from its own data.
    No other session touches this folder, and its parent (/tmp) needs no permission change."""
    folder = Path(tempfile.mkdtemp(prefix="platform-test-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def server_tmp_path() -> Iterator[Path]:
    """`server_folder()` for one test that starts an embedded server of its own."""
    with server_folder() as folder:
        yield folder


@pytest.fixture(scope="session")
def test_platform() -> Iterator[PlatformUnderTest]:
    """One embedded PostgreSQL for the session, bootstrapped, with a Dagster home, its data in
    a `server_folder()`."""
    with server_folder() as state:
        platform = LocalPlatform(state=state, environ=_scrubbed_environ(), progress=lambda _: None)
        try:
            platform.start_postgres()
            env = platform.env()
            bootstrap(env)
            write_instance(Path(env["DAGSTER_HOME"]))
            yield PlatformUnderTest(platform)
        finally:
            platform.stop_postgres()


def _clean_with_env(
    platform: PlatformUnderTest, monkeypatch: pytest.MonkeyPatch
) -> PlatformUnderTest:
    platform.reset()
    for key, value in platform.env.items():
        monkeypatch.setenv(key, value)
    return platform


@pytest.fixture
def platform_env(
    test_platform: PlatformUnderTest, monkeypatch: pytest.MonkeyPatch
) -> PlatformUnderTest:
    """A clean warehouse and shop (nothing seeded) and the platform's variables in os.environ,
    where dg.EnvVar reads them."""
    return _clean_with_env(test_platform, monkeypatch)


@pytest.fixture(scope="module")
def module_platform_env(test_platform: PlatformUnderTest) -> Iterator[PlatformUnderTest]:
    """The same, shared by the tests of one module that only read what a fixture built."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield _clean_with_env(test_platform, monkeypatch)
