"""Where the repository and the local platform's state live."""

import os
from pathlib import Path

# The devkit is installed editable from the workspace, so the repository is found from here.
REPO_ROOT = Path(__file__).resolve().parents[4]
SQL_DIR = REPO_ROOT / "infra" / "sql"
DG_TOML = REPO_ROOT / "dg.toml"


def state_dir() -> Path:
    """The git-ignored folder with the local platform's data (PLATFORM_STATE_DIR overrides)."""
    return Path(os.environ.get("PLATFORM_STATE_DIR", REPO_ROOT / ".local")).resolve()
