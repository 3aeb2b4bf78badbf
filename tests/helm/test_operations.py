"""What operating the platform needs, rendered from the official charts in every overlay: the
steps' stdout/stderr reach the UI (a compute log manager whose storage the run pods and the
webserver share), run retries are on with none by default (each location sets its own), and
production exposes the UI behind TLS and an authentication proxy with a read-only webserver
for viewers, which the NetworkPolicies let through."""

import chartkit
import pytest
import yaml

pytestmark = pytest.mark.helm

SYSTEM = chartkit.SYSTEM_RELEASE
COMPUTE_LOGS_CLAIM = "platform-compute-logs"
# Overlays where compute logs live on the shared volume (no cloud); prod uses object storage.
VOLUME_OVERLAYS = ["", "kind"]


def instance(renders: dict[str, list]) -> dict:
    """dagster.yaml of the system release: what the webserver, daemon and run pods load."""
    (config_map,) = [
        d
        for d in renders[SYSTEM]
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == f"{SYSTEM}-instance"
    ]
    return yaml.safe_load(config_map["data"]["dagster.yaml"])


def deployments(renders: dict[str, list]) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in renders[SYSTEM] if d["kind"] == "Deployment"}


def mount_of(claim: str, volumes: list[dict], mounts: list[dict]) -> str | None:
    """Where a container mounts the PersistentVolumeClaim `claim`, if it does."""
    names = {
        v["name"]
        for v in volumes
        if (v.get("persistentVolumeClaim") or {}).get("claimName") == claim
    }
    return next((m["mountPath"] for m in mounts if m["name"] in names), None)


def webserver_mount(deployment: dict) -> str | None:
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return mount_of(COMPUTE_LOGS_CLAIM, pod.get("volumes") or [], container["volumeMounts"])


@pytest.mark.parametrize("overlay", VOLUME_OVERLAYS, ids=lambda o: o or "no-overlay")
def test_run_pods_and_the_webserver_share_the_compute_logs_volume(deployment_renders, overlay):
    renders = deployment_renders[overlay]
    config = instance(renders)
    launcher = config["run_launcher"]["config"]
    claims = {
        d["metadata"]["name"]
        for d in renders[chartkit.PLATFORM_RELEASE]
        if d["kind"] == "PersistentVolumeClaim"
    }

    assert config["compute_logs"]["module"] == "dagster.core.storage.local_compute_log_manager"
    assert config["compute_logs"]["class"] == "LocalComputeLogManager"
    base_dir = config["compute_logs"]["config"]["base_dir"]
    assert COMPUTE_LOGS_CLAIM in claims
    # Every run pod writes there (the run launcher's own volumes, whatever the location)...
    assert mount_of(COMPUTE_LOGS_CLAIM, launcher["volumes"], launcher["volume_mounts"]) == base_dir
    # ...and the webserver reads there.
    assert webserver_mount(deployments(renders)[f"{SYSTEM}-dagster-webserver"]) == base_dir


def test_production_keeps_compute_logs_in_object_storage_and_mounts_no_volume(
    deployment_renders,
):
    renders = deployment_renders["prod"]
    config = instance(renders)
    launcher = config["run_launcher"]["config"]

    assert config["compute_logs"]["module"] == "dagster_aws.s3.compute_log_manager"
    assert config["compute_logs"]["class"] == "S3ComputeLogManager"
    assert config["compute_logs"]["config"]["bucket"]
    assert "volumes" not in launcher
    for name, deployment in deployments(renders).items():
        if "webserver" in name:
            assert webserver_mount(deployment) is None, name
    assert COMPUTE_LOGS_CLAIM not in {
        d["metadata"]["name"] for d in renders[chartkit.PLATFORM_RELEASE]
    }


@pytest.mark.parametrize("overlay", chartkit.shipped_overlays(), ids=lambda o: o or "no-overlay")
def test_run_retries_are_on_and_left_to_each_location(deployment_renders, overlay):
    retries = instance(deployment_renders[overlay])["run_retries"]

    # The chart writes max_retries only when it is not 0; a run's dagster/max_retries tag
    # (set by its location) decides.
    assert retries["enabled"] is True
    assert retries.get("max_retries", 0) == 0
    assert retries.get("retry_on_asset_or_op_failure", True) is True


def test_no_ingress_outside_production(deployment_renders):
    for overlay in VOLUME_OVERLAYS:
        assert not [d for d in deployment_renders[overlay][SYSTEM] if d["kind"] == "Ingress"]


def test_production_serves_both_webservers_over_tls_behind_the_auth_proxy(deployment_renders):
    renders = deployment_renders["prod"]
    (ingress,) = [d for d in renders[SYSTEM] if d["kind"] == "Ingress"]
    services = {d["metadata"]["name"]: d for d in renders[SYSTEM] if d["kind"] == "Service"}
    annotations = ingress["metadata"]["annotations"]
    backends = {
        rule["host"]: [p["backend"]["service"] for p in rule["http"]["paths"]]
        for rule in ingress["spec"]["rules"]
    }
    tls_hosts = {host for entry in ingress["spec"]["tls"] for host in entry["hosts"]}
    read_only = deployments(renders)[f"{SYSTEM}-dagster-webserver-read-only"]
    (container,) = read_only["spec"]["template"]["spec"]["containers"]

    assert set(backends) == tls_hosts
    assert all(entry["secretName"] for entry in ingress["spec"]["tls"])
    assert annotations["nginx.ingress.kubernetes.io/auth-url"].startswith("https://")
    assert annotations["nginx.ingress.kubernetes.io/auth-signin"].startswith("https://")
    assert sorted(s["name"] for paths in backends.values() for s in paths) == [
        f"{SYSTEM}-dagster-webserver",
        f"{SYSTEM}-dagster-webserver-read-only",
    ]
    for paths in backends.values():
        for backend in paths:
            ports = {p["port"] for p in services[backend["name"]]["spec"]["ports"]}
            assert backend["port"]["number"] in ports, backend
    assert "--read-only" in " ".join(container["command"])


def test_network_policies_let_both_webservers_do_their_work_in_production(
    deployment_renders,
):
    renders = deployment_renders["prod"]
    policies = {
        d["metadata"]["name"]: d
        for d in renders[chartkit.PLATFORM_RELEASE]
        if d["kind"] == "NetworkPolicy"
    }
    webservers = {
        name: meta["labels"]
        for name, meta, _ in chartkit.pod_templates(renders[SYSTEM])
        if "webserver" in name
    }
    network = chartkit.load_yaml(chartkit.PLATFORM_CHART / "values.yaml")["networkPolicy"]

    assert len(webservers) == 2
    for name, labels in webservers.items():
        # The ingress controller reaches them (its namespace is listed in webserverFrom) ...
        assert chartkit.selector_matches(
            policies["platform-webserver"]["spec"]["podSelector"], labels
        ), name
        # ... and they reach the code servers, which answer nothing else of the release's.
        assert chartkit.allowed_by(
            policies["platform-code-servers"], labels, network["codeServerPort"]
        ), name
