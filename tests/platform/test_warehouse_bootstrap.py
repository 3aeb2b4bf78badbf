"""infra/sql/bootstrap.sql on a real server: idempotent, and least privilege for every role."""

import dataclasses

import psycopg2
import pytest

from platform_devkit import locations
from platform_devkit.bootstrap import bootstrap

pytestmark = pytest.mark.integration

CATALOG = {
    "roles": """SELECT rolname, rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolinherit
                FROM pg_roles WHERE rolname !~ '^pg_' ORDER BY 1""",
    "databases": """SELECT datname, pg_get_userbyid(datdba), datacl::text
                    FROM pg_database ORDER BY 1""",
    "memberships": """SELECT roleid::regrole::text, member::regrole::text FROM pg_auth_members
                      ORDER BY 1, 2""",
    "schemas": """SELECT nspname, pg_get_userbyid(nspowner), nspacl::text FROM pg_namespace
                  WHERE nspname !~ '^pg_' ORDER BY 1""",
    "default_privileges": """SELECT defaclrole::regrole::text, defaclnamespace::regnamespace::text,
                             defaclobjtype, defaclacl::text FROM pg_default_acl ORDER BY 1, 2, 3""",
    "tables": """SELECT schemaname, tablename, tableowner FROM pg_tables
                 WHERE schemaname !~ '^(pg_|information_schema)' ORDER BY 1, 2""",
}


def catalog(platform) -> dict[str, list]:
    return {name: platform.query(sql) for name, sql in CATALOG.items()}


def attempt(conn, statement: str) -> str:
    """'ok', or the SQLSTATE class of the error ('42' = insufficient privilege and friends)."""
    with conn.cursor() as cur:
        try:
            cur.execute(statement)
        except psycopg2.Error as error:
            return f"denied:{error.pgcode}"
    return "ok"


def test_bootstrap_twice_changes_nothing_and_loses_nothing(platform_env):
    with platform_env.connect_as("ingestion") as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE raw.kept (id int); INSERT INTO raw.kept VALUES (1), (2)")
    before = catalog(platform_env)

    bootstrap(platform_env.env)

    assert catalog(platform_env) == before
    assert platform_env.query("SELECT count(*) FROM raw.kept")[0][0] == 2
    for role in ("ingestion", "transformation", "exports", "bi_reader"):
        platform_env.connect_as(role).close()  # passwords still match the Secrets


def test_a_missing_password_variable_stops_the_bootstrap_and_is_named(platform_env, monkeypatch):
    monkeypatch.delenv("EXPORTS_WAREHOUSE_PASSWORD")
    env = {k: v for k, v in platform_env.env.items() if k != "EXPORTS_WAREHOUSE_PASSWORD"}

    with pytest.raises(RuntimeError, match="EXPORTS_WAREHOUSE_PASSWORD"):
        bootstrap(env)


def test_ingestion_writes_raw_and_nothing_else(platform_env):
    conn = platform_env.connect_as("ingestion")

    assert attempt(conn, "CREATE TABLE raw.orders_copy (id int)") == "ok"
    for schema in ("staging", "marts", "bi", "public"):
        assert attempt(conn, f"CREATE TABLE {schema}.intruder (id int)") == "denied:42501", schema
    assert attempt(conn, "CREATE SCHEMA elsewhere") == "denied:42501"


def test_transformation_reads_raw_and_writes_only_its_dbt_schemas(platform_env):
    with platform_env.connect_as("ingestion") as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE raw.orders (id int); INSERT INTO raw.orders VALUES (7)")
    conn = platform_env.connect_as("transformation")

    assert attempt(conn, "SELECT * FROM raw.orders") == "ok"
    assert attempt(conn, "INSERT INTO raw.orders VALUES (8)") == "denied:42501"
    assert attempt(conn, "CREATE TABLE raw.model (id int)") == "denied:42501"
    assert attempt(conn, "CREATE TABLE staging.stg_orders AS SELECT 1 AS id") == "ok"
    assert attempt(conn, "CREATE TABLE marts.fct_orders AS SELECT 1 AS id") == "ok"
    assert attempt(conn, "CREATE TABLE bi.report (id int)") == "denied:42501"


def test_exports_reads_marts_and_writes_only_bi(platform_env):
    with platform_env.connect_as("transformation") as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE marts.daily_revenue AS SELECT 1 AS day")
        cur.execute("CREATE TABLE staging.stg_orders AS SELECT 1 AS id")
    with platform_env.connect_as("ingestion") as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE raw.orders (id int)")
    conn = platform_env.connect_as("exports")

    assert attempt(conn, "SELECT * FROM marts.daily_revenue") == "ok"
    assert attempt(conn, "SELECT * FROM staging.stg_orders") == "denied:42501"
    assert attempt(conn, "SELECT * FROM raw.orders") == "denied:42501"
    assert attempt(conn, "CREATE TABLE bi.daily_revenue AS SELECT 1 AS day") == "ok"
    assert attempt(conn, "CREATE TABLE marts.mine (id int)") == "denied:42501"


def test_bi_reader_reads_the_bi_schema_only(platform_env):
    with platform_env.connect_as("exports") as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE bi.daily_revenue AS SELECT 1 AS day")
    with platform_env.connect_as("transformation") as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE marts.daily_revenue AS SELECT 1 AS day")
    with platform_env.connect_as("ingestion") as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE raw.orders (id int)")
    conn = platform_env.connect_as("bi_reader")

    assert attempt(conn, "SELECT * FROM bi.daily_revenue") == "ok"
    assert attempt(conn, "SELECT * FROM marts.daily_revenue") == "denied:42501"
    assert attempt(conn, "SELECT * FROM raw.orders") == "denied:42501"
    assert attempt(conn, "CREATE TABLE bi.mine (id int)") == "denied:42501"


def test_the_dagster_role_cannot_reach_the_warehouse(platform_env):
    with pytest.raises(psycopg2.OperationalError, match="permission denied"):
        platform_env.connect_as("dagster")


@pytest.mark.parametrize("role", ["ingestion", "transformation", "exports", "bi_reader", "dagster"])
def test_no_role_but_the_shop_reader_connects_to_the_shop_or_the_maintenance_databases(
    platform_env, role
):
    platform_env.source().create()

    for database in ("postgres", "template1", platform_env.env["SHOP_DB_NAME"]):
        with pytest.raises(psycopg2.OperationalError, match="permission denied") as denied:
            platform_env.connect_as(role, database).close()
        assert database in str(denied.value), (role, database)


def test_the_shop_reader_connects_to_the_shop_only(platform_env):
    platform_env.source().create()

    with platform_env.connect_as("shop_reader", platform_env.env["SHOP_DB_NAME"]) as conn:
        assert attempt(conn, "SELECT count(*) FROM customers") == "ok"
        assert attempt(conn, "CREATE TEMPORARY TABLE scratch (id int)") == "denied:42501"
    for database in ("postgres", "template1", platform_env.env["WAREHOUSE_DB"]):
        with pytest.raises(psycopg2.OperationalError, match="permission denied"):
            platform_env.connect_as("shop_reader", database).close()


def test_ingestion_may_not_create_temporary_tables_in_the_warehouse(platform_env):
    with platform_env.connect_as("ingestion") as conn:
        assert attempt(conn, "CREATE TEMPORARY TABLE scratch (id int)") == "denied:42501"


DECLARED_ROLES = locations.warehouse_roles(locations.load())
OWNER_OF = {schema: role.name for role in DECLARED_ROLES for schema in role.writes}


@pytest.mark.parametrize("role", DECLARED_ROLES, ids=lambda role: role.name)
def test_every_declared_role_writes_and_reads_exactly_what_its_declaration_says(platform_env, role):
    """The whole privilege matrix from the declarations, for every role a location declares
    (a team's own location from `make new-location` included)."""
    for schema, owner in OWNER_OF.items():
        with platform_env.connect_as(owner) as conn, conn.cursor() as cur:
            cur.execute(f"CREATE TABLE {schema}.probe AS SELECT 1 AS id")
    conn = platform_env.connect_as(role.name)

    for schema in [*OWNER_OF, "public"]:
        writes = "ok" if schema in role.writes else "denied:42501"
        reads = "ok" if schema in (*role.writes, *role.reads) else "denied:42501"
        assert attempt(conn, f"CREATE TABLE {schema}.mine (id int)") == writes, (role, schema)
        if schema != "public":
            assert attempt(conn, f"SELECT * FROM {schema}.probe") == reads, (role, schema)
    temporary = "ok" if role.temporary_tables else "denied:42501"
    assert attempt(conn, "CREATE TEMPORARY TABLE scratch (id int)") == temporary


def test_a_read_the_declaration_no_longer_lists_is_revoked_and_nothing_is_dropped(platform_env):
    with platform_env.connect_as("transformation") as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE marts.daily_revenue AS SELECT 1 AS day")
    found = locations.load()
    exports = next(loc for loc in found if loc.name == "exports")
    narrowed = dataclasses.replace(exports, role=dataclasses.replace(exports.role, reads=()))

    bootstrap(platform_env.env, [narrowed if loc is exports else loc for loc in found])

    conn = platform_env.connect_as("exports")
    assert attempt(conn, "SELECT * FROM marts.daily_revenue") == "denied:42501"
    with platform_env.connect_as("transformation") as owner, owner.cursor() as cur:
        cur.execute("CREATE TABLE marts.later AS SELECT 1 AS day")
    assert attempt(conn, "SELECT * FROM marts.later") == "denied:42501"  # no default grant left
    assert platform_env.query("SELECT count(*) FROM marts.daily_revenue")[0][0] == 1

    bootstrap(platform_env.env)

    assert attempt(conn, "SELECT * FROM marts.daily_revenue") == "ok"
    assert attempt(conn, "SELECT * FROM marts.later") == "ok"


def test_a_managed_servers_admin_without_superuser_rights_bootstraps_it_twice(platform_env):
    """As on a managed server (RDS, Cloud SQL, Azure): the admin may create roles and
    databases but is no superuser. Everything gets its own names here, so the platform's
    objects of this server are left alone."""
    suffix = "_managed"
    roles = [*locations.warehouse_roles(locations.load())]
    env = {
        **platform_env.env,
        "PGUSER": f"admin{suffix}",
        "PGPASSWORD": "admin-password",
        "DAGSTER_PG_DB": f"dagster{suffix}",
        "DAGSTER_PG_USER": f"dagster{suffix}",
        "WAREHOUSE_DB": f"warehouse{suffix}",
        **{role.user_var: f"{role.name}{suffix}" for role in roles},
    }
    names = [env["PGUSER"], env["DAGSTER_PG_USER"], *(f"{r.name}{suffix}" for r in roles)]
    superuser = platform_env.admin_connect()
    superuser.cursor().execute(
        f"CREATE ROLE {env['PGUSER']} LOGIN CREATEROLE CREATEDB PASSWORD %s;"
        f"GRANT CONNECT ON DATABASE postgres TO {env['PGUSER']}",  # as the provider does
        (env["PGPASSWORD"],),
    )
    try:
        bootstrap(env)
        bootstrap(env)

        def connect(role: str) -> psycopg2.extensions.connection:
            spec = next(r for r in roles if r.name == role)
            conn = psycopg2.connect(
                host=env["WAREHOUSE_HOST"], port=env["WAREHOUSE_PORT"], user=env[spec.user_var],
                password=env[spec.password_var], dbname=env["WAREHOUSE_DB"],
            )  # fmt: skip
            conn.autocommit = True
            return conn

        connect("ingestion").cursor().execute("CREATE TABLE raw.orders AS SELECT 1 AS id")
        reader = connect("transformation")
        assert attempt(reader, "SELECT * FROM raw.orders") == "ok"
        assert attempt(reader, "CREATE TABLE raw.intruder (id int)") == "denied:42501"
        assert attempt(connect("bi_reader"), "SELECT * FROM raw.orders") == "denied:42501"
    finally:
        cur = superuser.cursor()
        for database in (env["WAREHOUSE_DB"], env["DAGSTER_PG_DB"]):
            cur.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        for name in reversed(names):
            cur.execute(f"DROP OWNED BY {name}; DROP ROLE {name}")
        superuser.close()
