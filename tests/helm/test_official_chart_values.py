"""Our values for the official charts (dagster/dagster, dagster/dagster-user-deployments),
checked against the charts' published values schemas (the pulled chart's own where the chart
repository answers, else the offline copy), as Kubernetes objects, and, where the charts can
be pulled (GitHub Actions), rendered for real."""

import functools
import http.server
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import chartkit
import pytest
import yaml

pytestmark = pytest.mark.helm

LOCATIONS = chartkit.locations()
SYSTEM_VALUES = chartkit.SYSTEM_VALUES_DIR / "values.yaml"
SYSTEM_OVERLAYS = sorted(chartkit.SYSTEM_VALUES_DIR.glob("values-*.yaml"))


def location_values_sets() -> list[list[Path]]:
    """Each location's values.yaml, alone and with each of its overlays (if it has any)."""
    sets = []
    for location in LOCATIONS:
        base = location.values_file
        sets.append([base])
        sets += [[base, overlay] for overlay in sorted(base.parent.glob("values-*.yaml"))]
    return sets


@pytest.fixture(scope="module")
def validator(official_charts: chartkit.OfficialCharts, tmp_path_factory):
    """The shared validator (merges like helm, then checks the schema), pointed at the schemas
    and defaults in use: a copy of validate.py beside the pulled chart's files when pulled."""
    if official_charts.source == "offline":
        script = chartkit.SHARED_SCHEMAS / "validate.py"
    else:
        folder = tmp_path_factory.mktemp("chart-schemas")
        script = folder / "validate.py"
        shutil.copy(chartkit.SHARED_SCHEMAS / "validate.py", script)
        shutil.copy(official_charts.system_schema, folder / "system.values.schema.json")
        shutil.copy(official_charts.system_defaults, folder / "system.values.yaml")
        shutil.copy(official_charts.user_schema, folder / "user-deployments.values.schema.json")
        shutil.copy(official_charts.user_defaults, folder / "user-deployments.values.yaml")

    def validate(kind: str, files: list[Path]) -> subprocess.CompletedProcess[str]:
        joined = ",".join(str(f) for f in files)
        return subprocess.run(
            [sys.executable, str(script), kind, joined],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    return validate


@pytest.mark.parametrize(
    "files",
    [[SYSTEM_VALUES]] + [[SYSTEM_VALUES, overlay] for overlay in SYSTEM_OVERLAYS],
    ids=lambda files: "+".join(f.name for f in files),
)
def test_system_values_match_the_dagster_chart_schema(validator, official_charts, files):
    result = validator("system", files)

    assert result.returncode == 0, (
        f"schema from the {official_charts.source} copy:\n{result.stdout}{result.stderr}"
    )
    assert "valid (system schema)" in result.stdout


@pytest.mark.parametrize(
    "files",
    location_values_sets(),
    ids=lambda files: "+".join(f"{f.parent.parent.name}/{f.name}" for f in files),
)
def test_location_values_match_the_user_deployments_chart_schema(validator, official_charts, files):
    result = validator("user-deployments", files)

    assert result.returncode == 0, (
        f"schema from the {official_charts.source} copy:\n{result.stdout}{result.stderr}"
    )
    assert "valid (user-deployments schema)" in result.stdout


def test_the_schema_check_rejects_a_misspelt_system_value(validator, tmp_path):
    typo = tmp_path / "typo.yaml"
    typo.write_text("dagsterWebserver:\n  imag:\n    tag: '1'\n")

    result = validator("system", [SYSTEM_VALUES, typo])

    assert result.returncode == 1
    assert "imag" in result.stdout


# -- the Kubernetes parts of the values, as the pods they become --------------------------------
def code_server_pod(deployment: dict) -> dict:
    """The pod the user-deployments chart builds from one `deployments` entry: the fields it
    copies into the pod as they are (probes without the chart's `enabled` switch)."""
    container = {
        "name": "dagster-user-deployments",
        "image": f"{deployment['image']['repository']}:test",
        "args": [
            "dagster",
            "api",
            "grpc",
            "-h",
            chartkit.ALL_INTERFACES,
            "-p",
            str(deployment["port"]),
            *deployment["dagsterApiGrpcArgs"],
        ],
        "env": deployment.get("env", []),
        "envFrom": [{"configMapRef": ref} for ref in deployment.get("envConfigMaps", [])]
        + [{"secretRef": ref} for ref in deployment.get("envSecrets", [])],
        "resources": deployment["resources"],
        "securityContext": deployment["securityContext"],
        "volumeMounts": deployment.get("volumeMounts", []),
    }
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        container[probe] = {k: v for k, v in deployment[probe].items() if k != "enabled"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": deployment["name"], "labels": deployment.get("labels", {})},
        "spec": {
            "securityContext": deployment["podSecurityContext"],
            "containers": [container],
            "volumes": deployment.get("volumes", []),
        },
    }


@pytest.mark.parametrize("location", LOCATIONS, ids=lambda loc: loc.name)
def test_location_pod_settings_are_valid_kubernetes_and_meet_the_restricted_standard(location):
    pod = code_server_pod(location.deployment)

    assert chartkit.kubernetes_errors(pod) is None
    assert chartkit.restricted_violations(pod["spec"]) == []


@pytest.mark.parametrize("location", LOCATIONS, ids=lambda loc: loc.name)
def test_code_servers_run_read_only_as_the_image_user_with_probes_and_requests(location):
    deployment = location.deployment
    pod = code_server_pod(deployment)["spec"]
    (container,) = pod["containers"]

    assert pod["securityContext"]["runAsUser"] == pod["securityContext"]["runAsGroup"] == 10001
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"mountPath": chartkit.TMP, "name": "tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {}} in pod["volumes"]
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}
    assert deployment["startupProbe"]["enabled"] is True
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        command = deployment[probe]["exec"]["command"]
        assert command[-1] == str(deployment["port"]), probe
        assert 'service="DagsterApi"' in command[2], probe


def system_pod(component: dict, name: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "securityContext": component["podSecurityContext"],
            "initContainers": [
                {
                    "name": "check-db-ready",
                    "image": "postgres",
                    "securityContext": component["securityContext"],
                    "resources": component["initContainerResources"],
                }
            ],
            "containers": [
                {
                    "name": name,
                    "image": component["image"]["repository"],
                    "securityContext": component["securityContext"],
                    "resources": component["resources"],
                    "volumeMounts": component["volumeMounts"],
                }
            ],
            "volumes": component["volumes"],
        },
    }


@pytest.mark.parametrize("component", ["dagsterWebserver", "dagsterDaemon"])
def test_webserver_and_daemon_settings_meet_the_restricted_standard(component):
    values = chartkit.load_yaml(SYSTEM_VALUES)
    pod = system_pod(values[component], component.lower())

    assert chartkit.kubernetes_errors(pod) is None
    assert chartkit.restricted_violations(pod["spec"]) == []
    assert values[component]["securityContext"]["readOnlyRootFilesystem"] is True


def test_run_workers_are_launched_under_the_restricted_standard():
    launcher = chartkit.load_yaml(SYSTEM_VALUES)["runLauncher"]["config"]["k8sRunLauncher"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "run"},
        "spec": {
            **launcher["runK8sConfig"]["podSpecConfig"],
            "containers": [{"name": "dagster", "securityContext": launcher["securityContext"]}],
        },
    }

    assert chartkit.kubernetes_errors(pod) is None
    assert chartkit.restricted_violations(pod["spec"]) == []


# -- the official charts rendered for real (where they can be pulled) ---------------------------
def test_rendered_official_charts_are_valid_kubernetes(official_renders):
    errors = {
        name: [e for e in map(chartkit.kubernetes_errors, docs) if e]
        for name, docs in official_renders.items()
    }

    assert errors == {name: [] for name in official_renders}


def test_rendered_official_pods_meet_the_restricted_standard(official_renders):
    violations = {
        f"{release}: {name}": chartkit.restricted_violations(spec)
        for release, docs in official_renders.items()
        for name, _, spec in chartkit.pod_templates(docs)
    }

    assert violations
    assert violations == {name: [] for name in violations}


def test_pods_carry_the_labels_the_network_policies_select(official_renders):
    system = {
        name: meta["labels"] for name, meta, _ in chartkit.pod_templates(official_renders["system"])
    }
    webserver = next(v for k, v in system.items() if "webserver" in k)
    daemon = next(v for k, v in system.items() if "daemon" in k)

    assert chartkit.webserver_pod_labels().items() <= webserver.items()
    assert chartkit.daemon_pod_labels().items() <= daemon.items()
    for location in LOCATIONS:
        (pod_labels,) = [
            m["labels"] for _, m, _ in chartkit.pod_templates(official_renders[location.name])
        ]
        expected = chartkit.code_server_pod_labels(location.name, location.deployment["labels"])
        assert expected.items() <= pod_labels.items(), location.name


def test_rendered_workspace_points_at_each_location_service(official_renders):
    config_maps = {
        d["metadata"]["name"]: d for d in official_renders["system"] if d["kind"] == "ConfigMap"
    }
    workspace = yaml.safe_load(config_maps["dagster-workspace-yaml"]["data"]["workspace.yaml"])
    services = {
        loc.name: {
            d["metadata"]["name"]: d for d in official_renders[loc.name] if d["kind"] == "Service"
        }
        for loc in LOCATIONS
    }

    assert [entry["grpc_server"] for entry in workspace["load_from"]] == [
        {"host": loc.name, "port": loc.deployment["port"], "location_name": loc.name}
        for loc in LOCATIONS
    ]
    for location in LOCATIONS:
        service = services[location.name][location.name]
        assert service["spec"]["ports"][0]["port"] == location.deployment["port"]


def test_rendered_code_servers_pass_their_team_secret_to_their_runs_only(official_renders):
    for location in LOCATIONS:
        (deployment,) = [d for d in official_renders[location.name] if d["kind"] == "Deployment"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        context = yaml.safe_load(env["DAGSTER_CLI_API_GRPC_CONTAINER_CONTEXT"]["value"])

        assert context["k8s"]["env_secrets"] == [f"{location.name}-credentials"]
        assert "platform-environment" in context["k8s"]["env_config_maps"]
        assert context["k8s"]["labels"] == location.deployment["labels"]


def test_rendered_official_charts_require_only_secrets_the_platform_creates(official_renders):
    created = set(chartkit.secrets_script_listing())
    required = {name: chartkit.secret_names_in(docs) for name, docs in official_renders.items()}

    assert {name: found - created for name, found in required.items()} == {
        name: set() for name in required
    }
    assert "dagster-postgresql-secret" in required["system"]


# -- the pull itself, against a chart repository on 127.0.0.1 ----------------------------------
@pytest.fixture
def local_chart_repository(helm_available, tmp_path):
    """A chart repository with stand-ins for both official charts, served over HTTP."""
    packages = tmp_path / "repo"
    packages.mkdir()
    for chart in ("dagster", "dagster-user-deployments"):
        folder = tmp_path / "src" / chart
        (folder / "templates").mkdir(parents=True)
        (folder / "Chart.yaml").write_text(f"apiVersion: v2\nname: {chart}\nversion: 9.9.9\n")
        (folder / "values.yaml").write_text(f"origin: {chart}\n")
        (folder / "values.schema.json").write_text(json.dumps({"title": chart}))
        result = chartkit.helm("package", str(folder), "--destination", str(packages))
        assert result.returncode == 0, result.stderr
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(packages))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    assert chartkit.helm("repo", "index", str(packages), "--url", url).returncode == 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield url
    server.shutdown()
    server.server_close()


def test_pulled_charts_provide_their_own_schemas_and_defaults(local_chart_repository, tmp_path):
    charts = chartkit.pull_official_charts(
        "9.9.9", tmp_path / "pulled", repo=local_chart_repository
    )

    assert charts.source == "pulled"
    assert yaml.safe_load(charts.system_defaults.read_text()) == {"origin": "dagster"}
    assert yaml.safe_load(charts.user_defaults.read_text()) == {
        "origin": "dagster-user-deployments"
    }
    assert "dagster-user-deployments" in charts.user_schema.read_text()
    assert charts.system_chart.name == "dagster"


def test_an_unreachable_repository_falls_back_to_the_offline_copy(local_chart_repository, tmp_path):
    charts = chartkit.pull_official_charts(
        "0.0.1", tmp_path / "pulled", repo=local_chart_repository
    )

    assert charts.source == "offline"
    assert "0.0.1" in charts.reason
    assert charts.system_schema == chartkit.SHARED_SCHEMAS / "system.values.schema.json"
    assert charts.system_chart is None
