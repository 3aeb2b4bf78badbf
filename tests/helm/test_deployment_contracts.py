"""Contracts between the deployment's parts: dg.toml, each location's package, image and
deploy values, the system values, the platform chart, the secrets script, the Makefile, the
lock and the docs. Most need no helm; those that render say so with the marker."""

import importlib.util
import re
import subprocess

import chartkit
import pytest
import yaml

from platform_devkit import locations
from platform_devkit.deploy import charts, plan
from platform_devkit.instance import instance_config

LOCATIONS = chartkit.locations()
SYSTEM = chartkit.load_yaml(chartkit.SYSTEM_VALUES_DIR / "values.yaml")
PLATFORM = chartkit.load_yaml(chartkit.PLATFORM_CHART / "values.yaml")
# Every warehouse role's Secret, as the deployment plan derives it from the declarations.
DECLARED = locations.load()
ROLE_SECRETS = {role.name: role.secret for role in locations.warehouse_roles(DECLARED)}
DEPLOY_DOC = chartkit.REPO / "docs" / "deploy.md"

# Variables a location reads: dg.EnvVar("X") / dg.EnvVar.int("X") in Python, env_var('X') without
# a default in dbt profiles and models.
ENV_VAR_IN_PYTHON = re.compile(r"EnvVar(?:\.int)?\(\s*\"([A-Z0-9_]+)\"")
ENV_VAR_IN_DBT = re.compile(r"env_var\(\s*'([A-Z0-9_]+)'\s*\)")


@pytest.fixture(scope="module")
def system_values(official_charts) -> dict:
    """Our system values over the pulled chart's defaults, as helm merges them."""
    return chartkit.merged(chartkit.load_yaml(official_charts.system / "values.yaml"), SYSTEM)


@pytest.fixture(scope="module")
def user_defaults(official_charts) -> dict:
    return chartkit.load_yaml(official_charts.user / "values.yaml")


def platform_secret_names() -> set[str]:
    secrets = PLATFORM["secrets"]
    return {
        secrets["postgresAdmin"],
        secrets["dagsterStorage"],
        *ROLE_SECRETS.values(),
    }


def variables_read_by(location: chartkit.Location) -> set[str]:
    """dg.EnvVar and dbt env_var references, and the declared environment variables the code
    names (read at load time, e.g. PAYMENTS_FIRST_DAY for the partitions, where no EnvVar
    reaches)."""
    (declared,) = [loc for loc in DECLARED if loc.name == location.name]
    found = set()
    for path in (location.path / "src").rglob("*.py"):
        text = path.read_text()
        found |= set(ENV_VAR_IN_PYTHON.findall(text))
        found |= {var for var in declared.environment if f'"{var}"' in text}
    for path in location.path.rglob("*.yml"):
        if "dbt_packages" not in path.parts and "target" not in path.parts:
            found |= set(ENV_VAR_IN_DBT.findall(path.read_text()))
    return found


def test_locations_are_the_dg_workspace_and_each_has_deploy_values():
    folders = {
        p.name for p in (chartkit.REPO / "locations").iterdir() if (p / "pyproject.toml").exists()
    }

    assert {loc.name for loc in LOCATIONS} == folders
    for location in LOCATIONS:
        assert location.values_file.exists(), location.name


def test_system_workspace_lists_exactly_the_locations_with_their_names_and_ports():
    workspace = SYSTEM["dagsterWebserver"]["workspace"]
    generated = plan.system_values()["dagsterWebserver"]["workspace"]

    assert workspace["enabled"] is True
    assert "servers" not in workspace, "the workspace is derived: charts/dagster lists no server"
    assert generated["servers"] == [
        {"host": loc.deployment["name"], "port": loc.deployment["port"], "name": loc.name}
        for loc in LOCATIONS
    ]
    for location in LOCATIONS:
        assert location.deployment["name"] == location.name


def test_user_code_is_deployed_as_separate_releases_not_by_the_system_chart():
    user_deployments = SYSTEM["dagster-user-deployments"]

    assert user_deployments["enabled"] is True
    assert user_deployments["enableSubchart"] is False
    assert user_deployments["deployments"] == []


@pytest.mark.parametrize("location", LOCATIONS, ids=lambda loc: loc.name)
def test_each_release_serves_its_own_importable_definitions_module(location):
    args = location.deployment["dagsterApiGrpcArgs"]

    assert args == ["-m", location.module]
    assert importlib.util.find_spec(location.module) is not None, location.module


@pytest.mark.parametrize("location", LOCATIONS, ids=lambda loc: loc.name)
def test_image_command_is_what_the_chart_runs(location):
    # The Dockerfile the image is built from (the shared template or the location's own),
    # filled in as infra/docker/build-image.sh builds it.
    built = subprocess.run(
        ["bash", "infra/docker/build-image.sh", "--dry-run", location.name],
        cwd=chartkit.REPO, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    (cmd,) = re.findall(r"^CMD\s+(\[.*\])\s*$", built, re.MULTILINE)
    deployment = location.deployment

    assert yaml.safe_load(cmd) == [
        "dagster",
        "api",
        "grpc",
        "-h",
        chartkit.ALL_INTERFACES,
        "-p",
        str(deployment["port"]),
        *deployment["dagsterApiGrpcArgs"],
    ]


def test_image_repositories_are_what_make_images_builds():
    registry = chartkit.make_variable("REGISTRY", chartkit.REPO / "Makefile")

    assert registry == plan.Settings.registry
    for location in LOCATIONS:
        image = location.deployment["image"]
        assert image["repository"] == f"{registry}/{location.name}", location.name
        assert image["pullPolicy"] == "IfNotPresent"


def test_chart_version_and_system_images_pin_the_dagster_version_in_the_lock():
    dagster = chartkit.locked_version("dagster")

    assert charts.chart_version() == dagster
    for component in ("dagsterWebserver", "dagsterDaemon"):
        assert SYSTEM[component]["image"] == {
            "repository": "docker.io/dagster/dagster-k8s",
            "tag": dagster,
            "pullPolicy": "IfNotPresent",
        }
    assert f"version {dagster}" in (chartkit.SYSTEM_VALUES_DIR / "values.yaml").read_text()
    assert f"dagster/dagster` {dagster}" in DEPLOY_DOC.read_text()


def test_storage_settings_of_the_system_release_match_the_platform(system_values):
    postgresql = system_values["postgresql"]

    assert postgresql["enabled"] is False
    assert system_values["generatePostgresqlPasswordSecret"] is False
    assert postgresql["postgresqlHost"] == PLATFORM["postgres"]["name"]
    assert postgresql["service"]["port"] == PLATFORM["postgres"]["port"]
    assert postgresql["postgresqlUsername"] == PLATFORM["dagsterStorage"]["username"]
    assert postgresql["postgresqlDatabase"] == PLATFORM["dagsterStorage"]["database"]
    assert postgresql["postgresqlPassword"] == ""
    # check-db-ready runs the platform server's own image.
    image, server = postgresql["image"], PLATFORM["postgres"]["image"]
    assert f"{image['registry']}/{image['repository']}" == server["repository"]
    assert image["tag"] == server["tag"]


def test_every_release_reads_dagster_storage_from_the_secret_the_platform_names(
    system_values, user_defaults
):
    storage_secret = PLATFORM["secrets"]["dagsterStorage"]

    assert system_values["global"]["postgresqlSecretName"] == storage_secret
    for location in LOCATIONS:
        values = chartkit.merged(user_defaults, chartkit.load_yaml(location.values_file))
        name = values["global"]["postgresqlSecretName"] or values["postgresqlSecretName"]
        assert name == storage_secret, location.name


def test_every_secret_referenced_anywhere_is_created_by_the_script_and_by_external_secrets():
    created_by_script = set(chartkit.secrets_script_listing())
    launcher = SYSTEM["runLauncher"]["config"]["k8sRunLauncher"]
    referenced = {
        SYSTEM["global"]["postgresqlSecretName"],
        *(s["name"] for s in launcher["envSecrets"]),
        *(s["name"] for s in SYSTEM["dagsterWebserver"].get("envSecrets", [])),
        *(s["name"] for s in SYSTEM["dagsterDaemon"].get("envSecrets", [])),
        *(s["name"] for loc in LOCATIONS for s in loc.deployment.get("envSecrets", [])),
        *platform_secret_names(),
    }

    assert referenced <= created_by_script
    # ExternalSecrets (production) create the same set as the script (kind/dev).
    assert platform_secret_names() == created_by_script


def test_secrets_script_creates_every_key_the_consumers_read():
    keys = chartkit.secrets_script_listing()
    secrets = PLATFORM["secrets"]

    assert set(keys[secrets["postgresAdmin"]]) == {"PGUSER", "PGPASSWORD"}
    assert keys[secrets["dagsterStorage"]] == ["postgresql-password"]
    assert set(keys[ROLE_SECRETS["bi_reader"]]) == {"BI_READER_USER", "BI_READER_PASSWORD"}
    for location in LOCATIONS:
        prefix = location.name.upper()
        assert {f"{prefix}_WAREHOUSE_USER", f"{prefix}_WAREHOUSE_PASSWORD"} <= set(
            keys[ROLE_SECRETS[location.name]]
        )
    assert {"SHOP_DB_USER", "SHOP_DB_PASSWORD"} <= set(keys[ROLE_SECRETS["ingestion"]])


def test_each_team_secret_reaches_its_own_location_and_runs_only():
    launcher = SYSTEM["runLauncher"]["config"]["k8sRunLauncher"]
    secret_of = {loc.name: loc.secret for loc in DECLARED}

    assert launcher["envSecrets"] == []
    assert not SYSTEM["dagsterWebserver"].get("envSecrets")
    assert not SYSTEM["dagsterDaemon"].get("envSecrets")
    assert set(secret_of) == {loc.name for loc in LOCATIONS}
    for location in LOCATIONS:
        deployment = location.deployment
        assert deployment["envSecrets"] == [{"name": secret_of[location.name]}]
        assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}
    assert len(set(secret_of.values())) == len(LOCATIONS)


@pytest.mark.helm
@pytest.mark.parametrize("location", LOCATIONS, ids=lambda loc: loc.name)
def test_every_variable_a_location_reads_is_provided_and_no_other_teams_credentials(
    platform_renders, location
):
    config_map = next(
        d
        for d in platform_renders["kind"]
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "platform-environment"
    )
    deployment = location.deployment
    keys = chartkit.secrets_script_listing()
    provided = {e["name"] for e in deployment.get("env", [])}
    for ref in deployment["envConfigMaps"]:
        assert ref["name"] == "platform-environment"
        provided |= set(config_map["data"])
    for ref in deployment["envSecrets"]:
        provided |= set(keys[ref["name"]])

    assert variables_read_by(location) <= provided
    secret_of = ROLE_SECRETS
    others = {key for o in LOCATIONS if o != location for key in keys[secret_of[o.name]]}
    assert provided & others == set()


# Set by the platform for libraries, not read by our code: each one's reader.
READ_BY_LIBRARIES = {
    "DAGSTER_DISABLE_TELEMETRY": "dagster",
    "DO_NOT_TRACK": "dbt",
    "RUNTIME__DLTHUB_TELEMETRY": "dlt",
    # The locations' alert sensor (libs/platform-ops, platform_ops.alerts) links the UI.
    "DAGSTER_WEBSERVER_URL": "platform_ops",
}
ANY_ENV_VAR_IN_DBT = re.compile(r"env_var\(\s*'([A-Z0-9_]+)'")


def variables_any_location_reads() -> set[str]:
    found = set()
    for location in LOCATIONS:
        found |= variables_read_by(location)
        for path in location.path.rglob("*.yml"):
            if not {"dbt_packages", "target", ".local_defs_state"} & set(path.parts):
                found |= set(ANY_ENV_VAR_IN_DBT.findall(path.read_text()))
    return found


@pytest.mark.helm
@pytest.mark.parametrize("scenario", ["defaults", "kind", "prod"])
def test_every_variable_the_platform_sets_is_read_by_a_location_or_a_named_library(
    platform_renders, scenario
):
    (config_map,) = [
        d
        for d in platform_renders[scenario]
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "platform-environment"
    ]
    read = variables_any_location_reads()

    assert {"WAREHOUSE_SSLMODE", "SHOP_DB_SSLMODE"} <= set(config_map["data"])
    assert set(config_map["data"]) - read - set(READ_BY_LIBRARIES) == set()


def password_like_values(node, path=""):
    """Non-empty values under keys that name a password, and env entries holding one."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}.{key}" if path else str(key)
            named = re.search(r"password|passwd|token", str(key), re.IGNORECASE)
            if named and isinstance(value, str) and value:
                yield here
            yield from password_like_values(value, here)
        if re.search(r"PASSWORD|TOKEN|SECRET_KEY", str(node.get("name", ""))) and "value" in node:
            yield f"{path}.value"
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from password_like_values(value, f"{path}[{index}]")


def test_no_values_file_holds_a_password():
    files = [
        *chartkit.REPO.glob("charts/**/values*.yaml"),
        *chartkit.REPO.glob("locations/*/deploy/*.yaml"),
    ]

    found = {
        str(f.relative_to(chartkit.REPO)): list(password_like_values(chartkit.load_yaml(f)))
        for f in files
    }

    assert len(files) >= 3 + len(LOCATIONS)
    assert found == {name: [] for name in found}


def test_the_password_check_finds_passwords_planted_in_values():
    planted = {
        "postgresql": {"postgresqlPassword": "hunter2", "postgresqlUsername": "dagster"},
        "deployments": [{"env": [{"name": "SHOP_DB_PASSWORD", "value": "hunter2"}]}],
        "generatePostgresqlPasswordSecret": False,
    }

    assert sorted(password_like_values(planted)) == [
        "deployments[0].env[0].value",
        "postgresql.postgresqlPassword",
    ]


def test_run_queue_limits_and_retries_mirror_the_local_platform(system_values):
    local = instance_config()
    daemon = SYSTEM["dagsterDaemon"]
    queued = daemon["runCoordinator"]["config"]["queuedRunCoordinator"]

    assert queued["maxConcurrentRuns"] == local["concurrency"]["runs"]["max_concurrent_runs"]
    assert queued["tagConcurrencyLimits"] == local["concurrency"]["runs"]["tag_concurrency_limits"]
    assert SYSTEM["concurrency"] == {
        "enabled": True,
        "pools": {"defaultLimit": local["concurrency"]["pools"]["default_limit"]},
    }
    assert daemon["runRetries"]["maxRetries"] == local["run_retries"]["max_retries"]
    assert system_values["dagsterDaemon"]["runMonitoring"]["enabled"] is True
    assert SYSTEM["telemetry"] == {"enabled": local["telemetry"]["enabled"]}
    assert system_values["runLauncher"]["type"] == "K8sRunLauncher"
    assert system_values["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"


def test_team_labels_name_the_owners_of_the_locations_assets(location_defs):
    for location in LOCATIONS:
        team = location.deployment["labels"]["team"]
        owners = {
            owner
            for assets in location_defs[location.name].assets or []
            for spec in getattr(assets, "specs", [])
            for owner in spec.owners
        }
        assert owners == {f"team:{team}"}, location.name


def test_deploy_doc_names_every_secret_and_key():
    doc = DEPLOY_DOC.read_text()

    generic = (
        "`<location>-credentials` | `<LOCATION>_WAREHOUSE_USER`, `<LOCATION>_WAREHOUSE_PASSWORD`"
    )
    assert generic in doc
    documented = {"ingestion", "transformation", "exports"}
    for name, keys in chartkit.secrets_script_listing().items():
        location = next((loc for loc in DECLARED if loc.secret == name), None)
        if location and location.name not in documented:
            # A team's own location: the generic row, plus any key its declaration adds.
            keys = [k for k in keys if not k.startswith(f"{location.role.prefix}_")]
        else:
            assert f"`{name}`" in doc, name
        for key in keys:
            assert f"`{key}`" in doc, (name, key)
