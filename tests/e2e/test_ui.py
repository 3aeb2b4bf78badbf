"""The UI, in a real headless browser (Debian's chromium): the global asset graph shows the
assets of every location. The screenshot is kept as an artifact."""

import shutil
import subprocess

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
GROUPS_QUERY = "{ assetNodes { groupName repository { location { name } } } }"


def browser(*args: str, url: str) -> subprocess.CompletedProcess:
    binary = next(filter(None, map(shutil.which, BROWSERS)), None)
    if binary is None:
        pytest.skip("no chromium on PATH (make e2e installs Debian's chromium)")
    return subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--hide-scrollbars", "--window-size=1600,1000", "--virtual-time-budget=30000",
         *args, url],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def test_the_asset_graph_page_shows_assets_of_every_location(deployment, settled, artifacts):
    # The global lineage page draws the graph by asset group (expandable); every location's
    # groups must be on it. The groups come from the API, so the check follows the code.
    groups: dict[str, set[str]] = {}
    for node in deployment.graphql.query(GROUPS_QUERY)["assetNodes"]:
        groups.setdefault(node["repository"]["location"]["name"], set()).add(node["groupName"])
    url = f"{deployment.webserver_url}/asset-groups"
    screenshot = artifacts / "asset-graph.png"

    dom = browser("--dump-dom", url=url)
    browser(f"--screenshot={screenshot}", url=url)

    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "Global asset lineage" in dom.stdout
    shown = {
        location: {g for g in names if f">{g}<" in dom.stdout} for location, names in groups.items()
    }
    assert shown == groups, f"groups drawn per location: {shown}, expected {groups}"
    assert screenshot.read_bytes().startswith(b"\x89PNG")
