"""The dg validation loop across the workspace, run as a developer would run it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from platform_devkit.instance import locations
from platform_devkit.paths import REPO_ROOT

pytestmark = pytest.mark.slow

DG = str(Path(sys.executable).parent / "dg")
LOCATIONS = {loc["name"]: Path(loc["path"]) for loc in locations()}


def dg(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [DG, *args],
        cwd=cwd,
        env={
            **os.environ,
            "DAGSTER_DISABLE_TELEMETRY": "1",
            # As a developer without warehouse credentials: dg re-parses a changed dbt project,
            # which the credential-free profile target allows (docs/architecture.md).
            "DBT_TARGET": "parse",
            "PATH": f"{Path(DG).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            **(env or {}),
        },
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"dg {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def listed() -> dict[str, dict]:
    """`dg list defs --json` of every location, run inside the location's folder."""
    return {
        name: json.loads(dg("list", "defs", "--json", cwd=path).stdout)
        for name, path in LOCATIONS.items()
    }


def test_dg_check_defs_passes_at_the_workspace_root():
    result = dg("check", "defs", cwd=REPO_ROOT)

    assert "All definitions loaded successfully" in result.stdout + result.stderr


def test_every_location_of_the_workspace_is_a_dg_project_with_its_own_venv_link():
    assert set(LOCATIONS) == {p.name for p in (REPO_ROOT / "locations").iterdir() if p.is_dir()}
    for path in LOCATIONS.values():
        assert (path / ".venv").resolve() == (REPO_ROOT / ".venv").resolve()


def test_dg_list_defs_shows_the_ingestion_assets_with_their_keys(listed):
    keys = {asset["asset_key"] for asset in listed["ingestion"]["assets"]}

    assert keys == {
        "raw/customers",
        "raw/products",
        "raw/orders",
        "raw/order_items",
        "raw/payments",
        "raw/payments_rejected",
    }


def test_every_asset_has_kinds_group_team_owner_tags_and_a_one_line_description(listed):
    for location, defs in listed.items():
        for asset in defs["assets"]:
            if not asset["is_executable"]:
                continue  # another location's asset, referenced here (dbt sources -> raw/*)
            where = f"{location}:{asset['asset_key']}"
            assert asset["kinds"], where
            assert asset["group_name"] not in (None, "", "default"), where
            assert [o for o in asset["owners"] if "team" in o], where
            assert asset["tags"], where
            description = (asset["description"] or "").strip()
            assert description, where
            assert "\n" not in description, where
            assert len(asset["asset_key_parts"]) == 2, f"{where}: keys are [schema, table]"


@pytest.mark.integration
def test_dg_launch_materialises_an_asset_against_the_platform(platform_env):
    platform_env.seed()

    dg("launch", "--assets", "raw/customers", cwd=LOCATIONS["ingestion"], env=platform_env.env)

    source = platform_env.query(
        "SELECT count(*) FROM customers", database=platform_env.env["SHOP_DB_NAME"]
    )
    assert platform_env.query("SELECT count(*) FROM raw.customers") == source
    runs = platform_env.query(
        "SELECT count(*) FROM runs WHERE status = 'SUCCESS'",
        database=platform_env.env["DAGSTER_PG_DB"],
    )
    assert runs[0][0] >= 1  # recorded in the platform's own Dagster storage
