-- One warehouse role, as a location's declaration gives it ([tool.platform] in
-- locations/<name>/pyproject.toml): included by the generated bootstrap script after
-- bootstrap.sql, connected to the warehouse, once per role, with these psql variables set:
--
--   role_name       the role's default name (the location's, or an outside reader's)
--   user_var        the variable that may rename it (e.g. INGESTION_WAREHOUSE_USER)
--   password_var    the variable holding its password (required)
--   writes          comma-separated schemas the role owns; empty for a reader
--   reads           comma-separated schemas it only reads, owned by a role created before
--   temporary_tables  true: may create session-private temporary tables (dbt)
--
-- The grants are exactly the declaration's: reads a declaration no longer lists are revoked
-- (tables, schema usage, default privileges). Nothing is dropped: a removed location's role and
-- schemas stay until the platform team drops them by hand (docs/adding-a-location.md).

\unset role_user
\unset role_password
\getenv role_user :user_var
\if :{?role_user} \else \set role_user :role_name \endif
\getenv role_password :password_var
\if :{?role_password} \else
  \warn 'bootstrap:' :password_var 'is not set'
  SELECT :"password_var" AS missing_environment_variable;
\endif

SELECT format('CREATE ROLE %I LOGIN', :'role_user')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role_user') \gexec
ALTER ROLE :"role_user" WITH LOGIN PASSWORD :'role_password';

-- A managed server's admin is often not a superuser: it can only act for roles it belongs to.
-- Membership (without inheritance from PostgreSQL 16 on) lets it create the schemas this role
-- owns. A superuser needs none, a reader owns nothing, and a role cannot be granted to itself.
SELECT format('GRANT %I TO %I', :'role_user', current_user)
    || CASE WHEN current_setting('server_version_num')::int >= 160000
            THEN ' WITH INHERIT FALSE, SET TRUE' ELSE '' END
WHERE :'writes' <> ''
  AND :'role_user' <> current_user
  AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
  AND NOT pg_has_role(current_user, :'role_user', 'SET') \gexec

-- The warehouse only (bootstrap.sql took every database away from PUBLIC).
GRANT CONNECT ON DATABASE :"warehouse_db" TO :"role_user";
\if :temporary_tables
GRANT TEMPORARY ON DATABASE :"warehouse_db" TO :"role_user";
\else
REVOKE TEMPORARY ON DATABASE :"warehouse_db" FROM :"role_user";
\endif

-- Owned schemas. One that exists under another owner is a conflict to resolve by hand (two
-- declarations never write one schema; a removed location's may still be there).
SELECT format('DO $$BEGIN RAISE EXCEPTION %L; END$$',
              format('bootstrap: schema %s belongs to role %s, but %s declares it in writes',
                     n.nspname, pg_get_userbyid(n.nspowner), :'role_name'))
FROM unnest(string_to_array(NULLIF(:'writes', ''), ',')) AS s
JOIN pg_namespace AS n ON n.nspname = s
WHERE n.nspowner <> (SELECT oid FROM pg_roles WHERE rolname = :'role_user') \gexec
SELECT format('CREATE SCHEMA IF NOT EXISTS %I AUTHORIZATION %I', s, :'role_user')
FROM unnest(string_to_array(NULLIF(:'writes', ''), ',')) AS s \gexec

-- Read schemas: usage, the tables there now, and (default privileges of the schema's owner)
-- every table it creates later, e.g. what dlt or dbt (re)builds. Granted as the schema's owner
-- (SET ROLE): a managed server's admin holds the team roles without inheriting their rights.
SELECT format('DO $$BEGIN RAISE EXCEPTION %L; END$$',
              format('bootstrap: schema %s, which %s reads, does not exist', s, :'role_name'))
FROM unnest(string_to_array(NULLIF(:'reads', ''), ',')) AS s
WHERE NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = s) \gexec
SELECT format('SET ROLE %I', pg_get_userbyid(n.nspowner)),
       format('GRANT USAGE ON SCHEMA %I TO %I', n.nspname, :'role_user'),
       format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO %I', n.nspname, :'role_user'),
       format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT ON TABLES TO %I',
              n.nspname, :'role_user'),
       'RESET ROLE'
FROM unnest(string_to_array(NULLIF(:'reads', ''), ',')) AS s
JOIN pg_namespace AS n ON n.nspname = s \gexec

-- Schemas the declaration no longer reads, among those where this role holds a grant of its
-- own: their grants go, so the declaration stays the whole truth about this role.
SELECT format('SET ROLE %I', pg_get_userbyid(n.nspowner)),
       format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM %I', n.nspname, :'role_user'),
       format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I REVOKE ALL ON TABLES FROM %I',
              n.nspname, :'role_user'),
       format('REVOKE ALL ON SCHEMA %I FROM %I', n.nspname, :'role_user'),
       'RESET ROLE'
FROM pg_namespace AS n
WHERE n.nspname !~ '^pg_' AND n.nspname NOT IN ('information_schema', 'public')
  AND n.nspowner <> (SELECT oid FROM pg_roles WHERE rolname = :'role_user')
  AND n.nspname <> ALL (string_to_array(:'reads', ','))
  AND pg_has_role(current_user, n.nspowner, 'SET')
  AND EXISTS (SELECT FROM aclexplode(n.nspacl) AS a
              WHERE a.grantee = (SELECT oid FROM pg_roles WHERE rolname = :'role_user')) \gexec
