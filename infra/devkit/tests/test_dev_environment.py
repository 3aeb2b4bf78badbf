"""`make dev` gives Dagster the UI's address as DAGSTER_WEBSERVER_URL, so that the alerts of a
local run link to the UI that shows it."""

import pytest

from platform_devkit.cli import WEBSERVER_VARIABLE, dev_environment

PLATFORM = {"DAGSTER_HOME": "/srv/dagster-home", "WAREHOUSE_PORT": "5432"}


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:3000"),
        ("localhost", "http://localhost:3000"),
        ("0.0.0.0", "http://127.0.0.1:3000"),  # noqa: S104 - a wildcard bind: the loopback
        ("::", "http://127.0.0.1:3000"),
        ("::1", "http://[::1]:3000"),
    ],
)
def test_the_alert_links_point_at_the_ui_make_dev_serves(host, url):
    env = dev_environment(PLATFORM, host, 3000, environ={})

    assert env == {**PLATFORM, WEBSERVER_VARIABLE: url}


def test_an_address_the_shell_sets_is_kept():
    shell = {WEBSERVER_VARIABLE: "https://dagster.example.com"}

    env = dev_environment(PLATFORM, "127.0.0.1", 3000, environ=shell)

    assert env[WEBSERVER_VARIABLE] == "https://dagster.example.com"


def test_an_empty_address_in_the_shell_is_not_a_setting():
    env = dev_environment(PLATFORM, "127.0.0.1", 3001, environ={WEBSERVER_VARIABLE: " "})

    assert env[WEBSERVER_VARIABLE] == "http://127.0.0.1:3001"
