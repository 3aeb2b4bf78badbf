"""Our values for the official charts (dagster/dagster, dagster/dagster-user-deployments):
every release of the deployment plan rendered for real from the configured chart repository,
in every overlay, with helm's own values-schema validation; the output validated as
Kubernetes objects; and the Kubernetes parts of the values checked as the pods they become."""

import functools
import http.server
import json
import re
import subprocess
import threading

import chartkit
import pytest
import yaml
from conftest import plan_settings

from platform_devkit.deploy import charts, plan

pytestmark = pytest.mark.helm

LOCATIONS = chartkit.locations()
SYSTEM_VALUES = chartkit.SYSTEM_VALUES_DIR / "values.yaml"
OVERLAYS = chartkit.shipped_overlays()


def overlay_id(overlay: str) -> str:
    return overlay or "no-overlay"


# -- every release renders, schema-validated, in every overlay ----------------------------------
def test_the_repository_ships_the_kind_and_prod_overlays():
    assert {"", "kind", "prod"} <= set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS, ids=overlay_id)
def test_every_release_renders_in_every_overlay(deployment_renders, overlay):
    renders = deployment_renders[overlay]
    kinds = {name: {d["kind"] for d in docs} for name, docs in renders.items()}

    assert list(renders) == [
        chartkit.PLATFORM_RELEASE,
        chartkit.SYSTEM_RELEASE,
        *(loc.name for loc in LOCATIONS),
    ]
    assert {"Deployment", "ConfigMap", "Service"} <= kinds[chartkit.SYSTEM_RELEASE]
    for location in LOCATIONS:
        assert {"Deployment", "Service"} <= kinds[location.name], location.name


def core_objects(docs: list[dict]) -> list[dict]:
    """Kubernetes' own objects: ExternalSecrets are a CRD (test_platform_chart.py checks them)."""
    return [d for d in docs if not d["apiVersion"].startswith("external-secrets.io/")]


@pytest.mark.parametrize("overlay", OVERLAYS, ids=overlay_id)
def test_rendered_releases_are_valid_kubernetes_in_every_overlay(deployment_renders, overlay):
    errors = {
        name: [e for e in map(chartkit.kubernetes_errors, core_objects(docs)) if e]
        for name, docs in deployment_renders[overlay].items()
    }

    assert errors == {name: [] for name in errors}


@pytest.mark.parametrize("overlay", OVERLAYS, ids=overlay_id)
def test_rendered_pods_meet_the_restricted_standard_in_every_overlay(deployment_renders, overlay):
    violations = {
        f"{release}: {name}": chartkit.restricted_violations(spec)
        for release, docs in deployment_renders[overlay].items()
        for name, _, spec in chartkit.pod_templates(docs)
    }

    assert len(violations) >= 3 + len(LOCATIONS)
    assert violations == {name: [] for name in violations}


def render_with(official_charts, release: plan.Release, extra: str, tmp_path) -> str:
    """helm's error output for a release rendered with one more values file."""
    path = tmp_path / "extra.yaml"
    path.write_text(extra)
    broken = plan.Release(release.name, release.chart, (*release.values, path), release.sets)
    argv = broken.template(plan_settings(official_charts))
    result = subprocess.run(
        [chartkit.helm_binary(), *argv[1:]],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=chartkit.REPO,
        check=False,
    )
    assert result.returncode != 0, "helm rendered values its schema forbids"
    return result.stderr


def test_helm_refuses_a_misspelt_system_value(official_charts, tmp_path):
    release = plan.system_release(plan_settings(official_charts))

    stderr = render_with(
        official_charts, release, "dagsterWebserver:\n  imag: {tag: '1'}\n", tmp_path
    )

    assert "imag" in stderr


def test_helm_refuses_a_location_probe_without_enabled(official_charts, tmp_path):
    """The regression this suite exists for: the chart's schema requires `enabled` in a
    deployment's readinessProbe, and lists replace the chart's default entry whole."""
    location = LOCATIONS[0]
    deployment = dict(location.deployment)
    deployment["readinessProbe"] = {
        k: v for k, v in deployment["readinessProbe"].items() if k != "enabled"
    }
    release = plan.location_release(plan_settings(official_charts), location.name)

    stderr = render_with(
        official_charts, release, yaml.safe_dump({"deployments": [deployment]}), tmp_path
    )

    assert "readinessProbe" in stderr
    assert "enabled is required" in stderr


def test_schema_validation_is_never_skipped():
    """No command of the repository renders or installs with helm's schema check off."""
    flag = "--skip-" + "schema-validation"
    sources = [
        p
        for pattern in (
            "Makefile",
            "mk/*.mk",
            ".ci/*",
            ".github/workflows/*.yml",
            "infra/**/*",
            "tests/**/*.py",
            "docs/*.md",
            "README.md",
        )
        for p in chartkit.REPO.glob(pattern)
        if p.is_file() and ".local" not in p.parts
    ]

    assert len(sources) > 20
    assert [
        str(p.relative_to(chartkit.REPO)) for p in sources if flag in p.read_text(errors="ignore")
    ] == []


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


# -- the official charts rendered for real: what the releases wire together ----------------
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
def local_chart_repository(helm_available, tmp_path, monkeypatch):
    """A chart repository with stand-ins for both official charts at 9.9.9, served over HTTP,
    and a private cache (PLATFORM_STATE_DIR) for what is pulled from it."""
    monkeypatch.setenv("PLATFORM_STATE_DIR", str(tmp_path / "state"))
    packages = tmp_path / "repo"
    packages.mkdir()
    for chart in (charts.SYSTEM_CHART, charts.USER_CHART):
        folder = tmp_path / "src" / chart
        (folder / "templates").mkdir(parents=True)
        (folder / "Chart.yaml").write_text(f"apiVersion: v2\nname: {chart}\nversion: 9.9.9\n")
        (folder / "values.yaml").write_text(f"origin: {chart}\n")
        (folder / "values.schema.json").write_text(
            json.dumps(
                {
                    "properties": {
                        "pod": {"$ref": "https://schemas.example.com/k8s/v1.32.0/pod.json"}
                    }
                }
            )
        )
        result = chartkit.helm("package", str(folder), "--destination", str(packages))
        assert result.returncode == 0, result.stderr
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(packages))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    assert chartkit.helm("repo", "index", str(packages), "--url", url).returncode == 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield url, server
    server.shutdown()
    server.server_close()


def pull(url: str, version: str = "9.9.9") -> charts.OfficialCharts:
    return charts.ensure_pulled(charts.official_charts(url, version), chartkit.helm_binary())


def test_charts_are_pulled_from_the_configured_repository_into_the_cache(local_chart_repository):
    url, _ = local_chart_repository

    pulled = pull(url)

    assert pulled.present
    assert pulled.folder == charts.cache_dir("9.9.9", url)
    assert yaml.safe_load((pulled.system / "values.yaml").read_text()) == {"origin": "dagster"}
    assert yaml.safe_load((pulled.user / "values.yaml").read_text()) == {
        "origin": "dagster-user-deployments"
    }
    assert (pulled.folder / ".repository").read_text().strip() == url


def test_a_pulled_version_is_reused_without_asking_the_repository(local_chart_repository):
    url, server = local_chart_repository
    pull(url)
    server.shutdown()

    assert pull(url).present


def test_another_repository_gets_its_own_copy_and_leaves_the_first_in_place(
    local_chart_repository,
):
    url, _ = local_chart_repository
    first = pull(url)
    mirror = url.replace("127.0.0.1", "localhost")

    second = pull(mirror)

    assert second.folder != first.folder
    assert first.present
    assert (second.folder / ".repository").read_text().strip() == mirror


def test_a_version_the_repository_lacks_is_an_error_not_a_skip(local_chart_repository):
    url, _ = local_chart_repository

    with pytest.raises(charts.ChartsError, match="DAGSTER_CHART_REPO") as failure:
        pull(url, "0.0.1")

    assert not isinstance(failure.value, charts.ChartsUnreachableError)
    assert "0.0.1" in str(failure.value)
    assert not charts.official_charts(url, "0.0.1").present


def test_a_repository_url_without_an_index_is_an_error_not_a_skip(local_chart_repository):
    url, _ = local_chart_repository

    with pytest.raises(charts.ChartsError, match="404") as failure:
        pull(f"{url}/wrong")

    assert not isinstance(failure.value, charts.ChartsUnreachableError)


def test_a_repository_that_does_not_answer_is_unreachable(local_chart_repository):
    url, server = local_chart_repository
    server.shutdown()
    server.server_close()

    with pytest.raises(charts.ChartsUnreachableError, match="DAGSTER_CHART_REPO"):
        pull(url, "9.9.8")


def test_a_repository_added_with_helm_repo_add_is_used_by_name(
    local_chart_repository, tmp_path, monkeypatch
):
    url, _ = local_chart_repository
    monkeypatch.setenv("HELM_REPOSITORY_CONFIG", str(tmp_path / "repositories.yaml"))
    monkeypatch.setenv("HELM_REPOSITORY_CACHE", str(tmp_path / "repository-cache"))
    assert chartkit.helm("repo", "add", "company-mirror", url).returncode == 0

    pulled = pull("company-mirror")

    assert yaml.safe_load((pulled.system / "values.yaml").read_text()) == {"origin": "dagster"}


def test_schema_references_are_rewritten_to_the_configured_mirror(
    local_chart_repository, monkeypatch
):
    url, _ = local_chart_repository
    monkeypatch.setenv(
        "DAGSTER_CHART_SCHEMA_REWRITE",
        "https://schemas.example.com/k8s=https://mirror.example.internal/k8s",
    )

    pulled = pull(url)
    rewritten = charts.official_charts(url, "9.9.9")

    schema = (pulled.system / "values.schema.json").read_text()
    assert "https://mirror.example.internal/k8s/v1.32.0/pod.json" in schema
    assert pulled.schema_hosts() == {"mirror.example.internal"}
    monkeypatch.delenv("DAGSTER_CHART_SCHEMA_REWRITE")
    assert charts.official_charts(url, "9.9.9").folder != rewritten.folder


def test_a_malformed_schema_rewrite_names_the_variable(monkeypatch):
    monkeypatch.setenv("DAGSTER_CHART_SCHEMA_REWRITE", "https://only-one-side")

    with pytest.raises(charts.ChartsError, match="DAGSTER_CHART_SCHEMA_REWRITE"):
        charts.schema_rewrite()


def test_the_chart_repository_defaults_to_dagsters_and_is_a_setting():
    assert charts.chart_repository({}) == "https://dagster-io.github.io/helm"
    assert charts.chart_repository({"DAGSTER_CHART_REPO": ""}) == charts.OFFICIAL_REPOSITORY
    mirror = "https://charts.example.internal/dagster"
    assert charts.chart_repository({"DAGSTER_CHART_REPO": mirror}) == mirror
    assert re.fullmatch(r"\d+\.\d+\.\d+", charts.chart_version())
