-- Warehouse bootstrap, platform part: the Dagster and warehouse databases and Dagster's role.
-- The team roles, their schemas and grants come after it, one `role.sql` per role, in the
-- order the locations' declarations give ([tool.platform] in locations/<name>/pyproject.toml).
-- The script that runs both is generated from those declarations and is the same everywhere
-- (local platform, tests, the Helm bootstrap Job); print it with
--
--   python3 infra/devkit/src/platform_devkit/locations.py bootstrap
--
-- and apply it from this folder: `... bootstrap | psql -X -f -` (its \ir paths are relative).
--
-- Connection: the standard libpq variables (PGHOST, PGPORT, PGUSER, PGPASSWORD) of a role that
-- may create roles and databases. Role passwords come from the environment through \getenv, so
-- they never appear on a command line, in these files or in psql's output. Re-running it changes
-- nothing (every object is created only when missing) and loses nothing (nothing is dropped);
-- it resets each role's password to the value given, which is how a rotated Secret is applied.
--
-- Who may do what (DESIGN.md, "One warehouse dialect"): each location's role owns the schemas
-- its declaration writes and reads those it reads; `dagster` owns the Dagster storage database.

\set ON_ERROR_STOP on
\set QUIET on

-- Settings with defaults, each overridable from the environment.
\getenv dagster_db DAGSTER_PG_DB
\if :{?dagster_db} \else \set dagster_db dagster \endif
\getenv warehouse_db WAREHOUSE_DB
\if :{?warehouse_db} \else \set warehouse_db warehouse \endif
\getenv dagster_user DAGSTER_PG_USER
\if :{?dagster_user} \else \set dagster_user dagster \endif

-- The password is required: a role without one could not log in over TCP.
\getenv dagster_password DAGSTER_PG_PASSWORD
\if :{?dagster_password} \else
  \warn 'bootstrap: DAGSTER_PG_PASSWORD is not set'
  SELECT missing_environment_variable_DAGSTER_PG_PASSWORD;
\endif

SELECT format('CREATE ROLE %I LOGIN', :'dagster_user')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'dagster_user') \gexec
ALTER ROLE :"dagster_user" WITH LOGIN PASSWORD :'dagster_password';

-- A managed server's admin is often not a superuser: it can only act for roles it belongs to.
-- Membership (without inheritance from PostgreSQL 16 on) lets it create objects owned by the
-- platform's roles. A superuser needs none, and a role cannot be granted to itself.
SELECT format('GRANT %I TO %I', :'dagster_user', current_user)
    || CASE WHEN current_setting('server_version_num')::int >= 160000
            THEN ' WITH INHERIT FALSE, SET TRUE' ELSE '' END
WHERE :'dagster_user' <> current_user
  AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
  AND NOT pg_has_role(current_user, :'dagster_user', 'SET') \gexec

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

-- As the Dagster role, which owns its database: a managed server's admin holds that role
-- without inheriting its rights (membership above), a superuser may act as anyone.
SET ROLE :"dagster_user";
REVOKE ALL ON DATABASE :"dagster_db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"dagster_db" TO :"dagster_user";
-- A non-superuser admin keeps CONNECT, which the next statements and the next run need.
SELECT format('GRANT CONNECT ON DATABASE %I TO %I', :'dagster_db', session_user)
WHERE NOT (SELECT rolsuper FROM pg_roles WHERE rolname = session_user) \gexec
RESET ROLE;
-- Team roles get CONNECT (and TEMPORARY where declared) in role.sql.
REVOKE ALL ON DATABASE :"warehouse_db" FROM PUBLIC;

-- Dagster's storage lives in the public schema of its own database, owned by its role.
\connect :"dagster_db"
SET ROLE :"dagster_user";
ALTER SCHEMA public OWNER TO :"dagster_user";
RESET ROLE;

\connect :"warehouse_db"
-- Nobody creates objects in public; every team writes only to the schemas it owns (role.sql).
-- The script goes on connected to the warehouse.
REVOKE ALL ON SCHEMA public FROM PUBLIC;
