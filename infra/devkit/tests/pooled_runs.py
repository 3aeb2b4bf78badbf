"""A code location for the run-monitoring tests: two jobs whose only step takes the slot of one
pool, executed in process as the platform's locations execute theirs.

`held` keeps the slot and works on the database, a query every half second, as a load does,
until its process is killed or its database goes away; `quick` takes the slot and returns.
"""

import os
import time

import dagster as dg
import psycopg2

POOL = "run_monitoring_test"


class Storage(dg.ConfigurableResource):
    """The server of Dagster's own storage, which the tests stop to play a warehouse outage."""

    host: str
    port: int
    database: str
    user: str
    password: str


@dg.op(pool=POOL)
def hold_the_slot(context: dg.OpExecutionContext, storage: Storage) -> None:
    conn = psycopg2.connect(
        host=storage.host,
        port=storage.port,
        dbname=storage.database,
        user=storage.user,
        password=storage.password,
        connect_timeout=5,
    )
    context.log.info("holding the slot")
    with conn, conn.cursor() as cur:
        while True:
            try:
                cur.execute("SELECT pg_sleep(0.5)")
            except psycopg2.OperationalError:
                # The database went away. Dagster would spend about 45 s trying to record that
                # on the same server before the process ends; end it now.
                os._exit(1)
            time.sleep(0.01)


@dg.op(pool=POOL)
def take_the_slot() -> None:
    """Returns at once: the slot was free."""


@dg.job(executor_def=dg.in_process_executor)
def held() -> None:
    hold_the_slot()


@dg.job(executor_def=dg.in_process_executor)
def quick() -> None:
    take_the_slot()


defs = dg.Definitions(
    jobs=[held, quick],
    resources={
        "storage": Storage(
            host=dg.EnvVar("DAGSTER_PG_HOST"),
            port=dg.EnvVar.int("DAGSTER_PG_PORT"),
            database=dg.EnvVar("DAGSTER_PG_DB"),
            user=dg.EnvVar("DAGSTER_PG_USER"),
            password=dg.EnvVar("DAGSTER_PG_PASSWORD"),
        )
    },
)
