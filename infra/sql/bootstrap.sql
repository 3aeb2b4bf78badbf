-- Warehouse bootstrap: the Dagster and warehouse databases, one role per team, the schemas and
-- least-privilege grants. Applied with psql, the same way everywhere (local platform, tests,
-- the Helm bootstrap Job):
--
--   psql -X -v ON_ERROR_STOP=1 -f infra/sql/bootstrap.sql
--
-- Connection: the standard libpq variables (PGHOST, PGPORT, PGUSER, PGPASSWORD) of a role that
-- may create roles and databases. Role passwords come from the environment through \getenv, so
-- they never appear on a command line, in this file or in psql's output. Re-running it changes
-- nothing (every object is created only when missing) and loses nothing (nothing is dropped);
-- it resets each role's password to the value given, which is how a rotated Secret is applied.
--
-- Who may do what (DESIGN.md, "One warehouse dialect"):
--   ingestion       owns raw (+ raw_staging, dlt's merge staging); reads nothing else
--   transformation  reads raw; owns the dbt schemas staging and marts
--   exports         reads marts; owns bi (the BI-facing tables)
--   bi_reader       reads bi only
--   dagster         owns the Dagster storage database

\set ON_ERROR_STOP on
\set QUIET on

-- Settings with defaults, each overridable from the environment.
\getenv dagster_db DAGSTER_PG_DB
\if :{?dagster_db} \else \set dagster_db dagster \endif
\getenv warehouse_db WAREHOUSE_DB
\if :{?warehouse_db} \else \set warehouse_db warehouse \endif
\getenv dagster_user DAGSTER_PG_USER
\if :{?dagster_user} \else \set dagster_user dagster \endif
\getenv ingestion_user INGESTION_WAREHOUSE_USER
\if :{?ingestion_user} \else \set ingestion_user ingestion \endif
\getenv transformation_user TRANSFORMATION_WAREHOUSE_USER
\if :{?transformation_user} \else \set transformation_user transformation \endif
\getenv exports_user EXPORTS_WAREHOUSE_USER
\if :{?exports_user} \else \set exports_user exports \endif
\getenv bi_reader_user BI_READER_USER
\if :{?bi_reader_user} \else \set bi_reader_user bi_reader \endif

-- Passwords are required: a role without one could not log in over TCP.
\getenv dagster_password DAGSTER_PG_PASSWORD
\getenv ingestion_password INGESTION_WAREHOUSE_PASSWORD
\getenv transformation_password TRANSFORMATION_WAREHOUSE_PASSWORD
\getenv exports_password EXPORTS_WAREHOUSE_PASSWORD
\getenv bi_reader_password BI_READER_PASSWORD
\if :{?dagster_password} \else
  \warn 'bootstrap: DAGSTER_PG_PASSWORD is not set'
  SELECT missing_environment_variable_DAGSTER_PG_PASSWORD;
\endif
\if :{?ingestion_password} \else
  \warn 'bootstrap: INGESTION_WAREHOUSE_PASSWORD is not set'
  SELECT missing_environment_variable_INGESTION_WAREHOUSE_PASSWORD;
\endif
\if :{?transformation_password} \else
  \warn 'bootstrap: TRANSFORMATION_WAREHOUSE_PASSWORD is not set'
  SELECT missing_environment_variable_TRANSFORMATION_WAREHOUSE_PASSWORD;
\endif
\if :{?exports_password} \else
  \warn 'bootstrap: EXPORTS_WAREHOUSE_PASSWORD is not set'
  SELECT missing_environment_variable_EXPORTS_WAREHOUSE_PASSWORD;
\endif
\if :{?bi_reader_password} \else
  \warn 'bootstrap: BI_READER_PASSWORD is not set'
  SELECT missing_environment_variable_BI_READER_PASSWORD;
\endif

-- Roles: created when missing, password (re)set every time.
SELECT format('CREATE ROLE %I LOGIN', r) FROM unnest(ARRAY[
    :'dagster_user', :'ingestion_user', :'transformation_user', :'exports_user', :'bi_reader_user'
]) AS r WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) \gexec
ALTER ROLE :"dagster_user" WITH LOGIN PASSWORD :'dagster_password';
ALTER ROLE :"ingestion_user" WITH LOGIN PASSWORD :'ingestion_password';
ALTER ROLE :"transformation_user" WITH LOGIN PASSWORD :'transformation_password';
ALTER ROLE :"exports_user" WITH LOGIN PASSWORD :'exports_password';
ALTER ROLE :"bi_reader_user" WITH LOGIN PASSWORD :'bi_reader_password';

-- A managed server's admin is often not a superuser: it can only act for roles it belongs to.
-- Membership (without inheritance from PostgreSQL 16 on) lets it create objects owned by the
-- team roles. A superuser needs none, and a role cannot be granted to itself.
SELECT format('GRANT %I TO %I', r, current_user)
    || CASE WHEN current_setting('server_version_num')::int >= 160000
            THEN ' WITH INHERIT FALSE, SET TRUE' ELSE '' END
FROM unnest(ARRAY[:'dagster_user', :'ingestion_user', :'transformation_user', :'exports_user'])
    AS r
WHERE r <> current_user
  AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
  AND NOT pg_has_role(current_user, r, 'SET') \gexec

-- Databases.
SELECT format('CREATE DATABASE %I OWNER %I', :'dagster_db', :'dagster_user')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'dagster_db') \gexec
SELECT format('CREATE DATABASE %I', :'warehouse_db')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'warehouse_db') \gexec

-- Least privilege: a team role connects to the warehouse only, the Dagster role to its own
-- database only. PostgreSQL lets every role connect to any database and create temporary
-- tables there by default; take that away on the maintenance databases too, where this role
-- may (a managed server's admin may not own them: those stay as its provider set them).
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', datname)
FROM pg_database
WHERE datname IN ('postgres', 'template1')
  AND ((SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
       OR pg_has_role(current_user, datdba, 'USAGE')) \gexec

REVOKE ALL ON DATABASE :"dagster_db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"dagster_db" TO :"dagster_user";
REVOKE ALL ON DATABASE :"warehouse_db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"warehouse_db"
    TO :"ingestion_user", :"transformation_user", :"exports_user", :"bi_reader_user";
-- dbt's incremental models and table swaps stage rows in session-private temporary tables.
GRANT TEMPORARY ON DATABASE :"warehouse_db" TO :"transformation_user", :"exports_user";

-- Dagster's storage lives in the public schema of its own database, owned by its role.
\connect :"dagster_db"
ALTER SCHEMA public OWNER TO :"dagster_user";

\connect :"warehouse_db"
-- Nobody creates objects in public; every team writes only to the schemas it owns.
REVOKE ALL ON SCHEMA public FROM PUBLIC;

CREATE SCHEMA IF NOT EXISTS raw AUTHORIZATION :"ingestion_user";
CREATE SCHEMA IF NOT EXISTS raw_staging AUTHORIZATION :"ingestion_user";
CREATE SCHEMA IF NOT EXISTS staging AUTHORIZATION :"transformation_user";
CREATE SCHEMA IF NOT EXISTS marts AUTHORIZATION :"transformation_user";
CREATE SCHEMA IF NOT EXISTS bi AUTHORIZATION :"exports_user";

-- raw -> transformation (read only). Default privileges cover tables dlt creates later.
GRANT USAGE ON SCHEMA raw TO :"transformation_user";
GRANT SELECT ON ALL TABLES IN SCHEMA raw TO :"transformation_user";
ALTER DEFAULT PRIVILEGES FOR ROLE :"ingestion_user" IN SCHEMA raw
    GRANT SELECT ON TABLES TO :"transformation_user";

-- marts -> exports (read only). dbt rebuilds tables as the transformation role, so the default
-- privileges apply to every rebuilt table.
GRANT USAGE ON SCHEMA marts TO :"exports_user";
GRANT SELECT ON ALL TABLES IN SCHEMA marts TO :"exports_user";
ALTER DEFAULT PRIVILEGES FOR ROLE :"transformation_user" IN SCHEMA marts
    GRANT SELECT ON TABLES TO :"exports_user";

-- bi -> bi_reader (read only), and nothing else.
GRANT USAGE ON SCHEMA bi TO :"bi_reader_user";
GRANT SELECT ON ALL TABLES IN SCHEMA bi TO :"bi_reader_user";
ALTER DEFAULT PRIVILEGES FOR ROLE :"exports_user" IN SCHEMA bi
    GRANT SELECT ON TABLES TO :"bi_reader_user";

\echo 'bootstrap: roles, databases, schemas and grants are in place'
