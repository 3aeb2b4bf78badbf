"""The locations' connections give up on a server that is gone or never answers, within a
bounded time and naming the server, and the connections they open carry TCP keepalives and a
user timeout, so a server that dies under an open connection fails it instead of hanging it.

Each way a location connects is covered: the resources' own connect(), dlt's Postgres
destination (psycopg2, from dlt_fields()), and the SQLAlchemy engine dlt reflects the shop's
tables with (the same fields). ConnectorX, which then reads the shop's rows, bounds its own
attempts (30 s) but does not name the server; the reflection before it does.
"""

import socket
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing

import dlt
import pytest
import sqlalchemy
from dlt.sources.credentials import ConnectionStringCredentials

from exports.defs.resources import Warehouse
from ingestion.defs.resources import CONNECTION_OPTIONS, PostgresResource
from platform_devkit.postgres import free_port

CONNECT_TIMEOUT = CONNECTION_OPTIONS["connect_timeout"]


def _ingestion(port: int, **given) -> PostgresResource:
    fields = {"database": "warehouse", "user": "ingestion", "password": "pw", "sslmode": "disable"}
    return PostgresResource(host="127.0.0.1", port=port, **{**fields, **given})


def _exports(port: int, **given) -> Warehouse:
    fields = {"database": "warehouse", "user": "exports", "password": "pw", "sslmode": "disable"}
    return Warehouse(host="127.0.0.1", port=port, **{**fields, **given})


def _dlt_client(resource: PostgresResource):
    pipeline = dlt.pipeline(
        pipeline_name="connection_timeouts",
        destination=dlt.destinations.postgres(credentials=resource.dlt_fields()),
        dataset_name="raw",
    )
    return pipeline.sql_client()


def _reflection_engine(resource: PostgresResource) -> sqlalchemy.engine.Engine:
    fields = {**resource.dlt_fields(), "drivername": "postgresql+psycopg2"}
    return sqlalchemy.create_engine(ConnectionStringCredentials(fields).to_url())


def _ways_to_connect(port: int) -> dict[str, Callable[[], object]]:
    """Each way a location opens a connection, run until the connection is open."""

    def resource_connect(resource) -> None:
        with resource.connect():
            pass

    def dlt_destination() -> None:
        with _dlt_client(_ingestion(port)):
            pass

    def reflection() -> None:
        _reflection_engine(_ingestion(port)).connect().close()

    return {
        "ingestion connect()": lambda: resource_connect(_ingestion(port)),
        "exports connect()": lambda: resource_connect(_exports(port)),
        "dlt destination": dlt_destination,
        "dlt reflection": reflection,
    }


def _failures(port: int) -> dict[str, tuple[float, str]]:
    """(seconds until it failed, the error) for each way to connect, tried all at once."""

    def attempt(connect: Callable[[], object]) -> tuple[float, str]:
        started = time.monotonic()
        try:
            connect()
        except Exception as error:  # each driver has its own error class
            return time.monotonic() - started, str(error)
        raise AssertionError("connected to a server that should not answer")

    ways = _ways_to_connect(port)
    with ThreadPoolExecutor(len(ways)) as pool:
        futures = {name: pool.submit(attempt, connect) for name, connect in ways.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word: a hung server, whose kernel
    still completes the handshake."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def test_connecting_to_a_server_that_is_gone_fails_at_once_naming_it():
    port = free_port()

    failures = _failures(port)

    for name, (seconds, error) in failures.items():
        assert seconds < 5, (name, seconds)
        assert f'"127.0.0.1", port {port}' in error, (name, error)


def test_connecting_to_a_server_that_never_answers_gives_up_after_the_connect_timeout(
    silent_server,
):
    failures = _failures(silent_server)

    for name, (seconds, error) in failures.items():
        assert CONNECT_TIMEOUT - 1 <= seconds < CONNECT_TIMEOUT + 10, (name, seconds)
        assert f'"127.0.0.1", port {silent_server}' in error, (name, error)
        assert "timeout expired" in error, (name, error)


def _socket_options(fileno: int) -> dict[str, int]:
    """The keepalive and user-timeout options the kernel holds for a connection's socket."""
    with closing(socket.socket(fileno=socket.dup(fileno))) as sock:
        return {
            "keepalives": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            "keepalives_idle": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            "keepalives_interval": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
            "tcp_user_timeout": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
        }


@pytest.mark.integration
@pytest.mark.skipif(sys.platform != "linux", reason="reads Linux TCP socket options")
def test_open_connections_carry_keepalives_and_a_user_timeout(platform_env):
    env = platform_env.env
    port = int(env["WAREHOUSE_PORT"])
    ingestion = _ingestion(
        port, user=env["INGESTION_WAREHOUSE_USER"], password=env["INGESTION_WAREHOUSE_PASSWORD"]
    )
    exports = _exports(
        port, user=env["EXPORTS_WAREHOUSE_USER"], password=env["EXPORTS_WAREHOUSE_PASSWORD"]
    )
    expected = {k: v for k, v in CONNECTION_OPTIONS.items() if k != "connect_timeout"}
    found = {}

    with ingestion.connect() as conn:
        found["ingestion connect()"] = _socket_options(conn.fileno())
    with exports.connect() as conn:
        found["exports connect()"] = _socket_options(conn.fileno())
    with _dlt_client(ingestion) as client:
        found["dlt destination"] = _socket_options(client.native_connection.fileno())
    with _reflection_engine(ingestion).connect() as conn:
        found["dlt reflection"] = _socket_options(conn.connection.dbapi_connection.fileno())

    assert found == {name: expected for name in _ways_to_connect(port)}
