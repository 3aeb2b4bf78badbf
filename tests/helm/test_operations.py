"""What operating the platform needs, rendered from the official charts in every overlay: the
steps' stdout/stderr reach the UI (a compute log manager whose storage the run pods and the
webserver share), run retries are on with none by default (each location sets its own), and
production exposes the UI behind TLS and an authentication proxy with a read-only webserver
for viewers, which the NetworkPolicies let through."""

from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import chartkit
import pytest
import yaml

from platform_ops.recovery import RUN_RETRY_TAGS

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


def code_server_mount(renders: dict[str, list], location: str) -> str | None:
    """Where the location's code server (its release's only Deployment) mounts the claim."""
    (deployment,) = [d for d in renders[location] if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return mount_of(COMPUTE_LOGS_CLAIM, pod.get("volumes") or [], container["volumeMounts"])


@pytest.mark.parametrize("overlay", VOLUME_OVERLAYS, ids=lambda o: o or "no-overlay")
@pytest.mark.parametrize("location", chartkit.locations(), ids=lambda loc: loc.name)
def test_every_code_server_mounts_the_compute_logs_where_the_instance_writes_them(
    deployment_renders, overlay, location
):
    """Sensors and schedules run in the code server, which captures their tick logs with the
    instance's compute log manager: on a read-only root it needs the volume at base_dir."""
    renders = deployment_renders[overlay]
    base_dir = instance(renders)["compute_logs"]["config"]["base_dir"]

    assert code_server_mount(renders, location.name) == base_dir


def test_production_keeps_compute_logs_in_object_storage(deployment_renders):
    renders = deployment_renders["prod"]
    config = instance(renders)
    launcher = config["run_launcher"]["config"]
    claims = {
        d["metadata"]["name"]
        for d in renders[chartkit.PLATFORM_RELEASE]
        if d["kind"] == "PersistentVolumeClaim"
    }

    assert config["compute_logs"]["module"] == "dagster_aws.s3.compute_log_manager"
    assert config["compute_logs"]["class"] == "S3ComputeLogManager"
    assert config["compute_logs"]["config"]["bucket"]
    assert "volumes" not in launcher
    for name, deployment in deployments(renders).items():
        if "webserver" in name:
            assert webserver_mount(deployment) is None, name
    # The code servers' values are the same in every environment and mount the claim: it must
    # exist, or their pods never schedule.
    for location in chartkit.locations():
        assert code_server_mount(renders, location.name), location.name
    assert COMPUTE_LOGS_CLAIM in claims


@pytest.mark.parametrize("overlay", chartkit.shipped_overlays(), ids=lambda o: o or "no-overlay")
def test_run_retries_are_on_and_left_to_each_location(deployment_renders, overlay):
    retries = instance(deployment_renders[overlay])["run_retries"]

    # The chart writes max_retries only when it is not 0; a run's dagster/max_retries tag
    # (set by its location) decides.
    assert retries["enabled"] is True
    assert retries.get("max_retries", 0) == 0
    assert retries.get("retry_on_asset_or_op_failure", True) is True


def ingresses(renders: dict[str, list]) -> list[dict]:
    return [d for releases in renders.values() for d in releases if d["kind"] == "Ingress"]


def test_no_ingress_outside_production(deployment_renders):
    for overlay in VOLUME_OVERLAYS:
        assert not ingresses(deployment_renders[overlay])


def production_ui(renders: dict[str, list]) -> dict[str, tuple[dict, dict]]:
    """{webserver Service name: (its Ingress, the Deployment behind the Service)}."""
    found = {}
    services = {d["metadata"]["name"]: d for d in renders[SYSTEM] if d["kind"] == "Service"}
    for ingress in ingresses(renders):
        ((service, port),) = {
            (path["backend"]["service"]["name"], path["backend"]["service"]["port"]["number"])
            for rule in ingress["spec"]["rules"]
            for path in rule["http"]["paths"]
        }
        assert port in {p["port"] for p in services[service]["spec"]["ports"]}, ingress
        selector = services[service]["spec"]["selector"]
        (deployment,) = [
            d
            for d in deployments(renders).values()
            if chartkit.selector_matches(
                {"matchLabels": selector}, d["spec"]["template"]["metadata"]["labels"]
            )
        ]
        assert service not in found, f"{service} is behind two Ingresses"
        found[service] = (ingress, deployment)
    return found


AUTH_URL = "nginx.ingress.kubernetes.io/auth-url"


def test_production_serves_each_webserver_through_its_own_ingress_with_tls(deployment_renders):
    """Rendered with the official chart's Services and Deployments: each Ingress has one host,
    served over TLS, whose backend is one webserver Service on a port that Service opens."""
    ui = production_ui(deployment_renders["prod"])
    (read_only_container,) = ui[f"{SYSTEM}-dagster-webserver-read-only"][1]["spec"]["template"][
        "spec"
    ]["containers"]
    (writable_container,) = ui[f"{SYSTEM}-dagster-webserver"][1]["spec"]["template"]["spec"][
        "containers"
    ]

    assert set(ui) == {f"{SYSTEM}-dagster-webserver", f"{SYSTEM}-dagster-webserver-read-only"}
    for ingress, _ in ui.values():
        (rule,) = ingress["spec"]["rules"]
        (tls,) = ingress["spec"]["tls"]
        assert tls["hosts"] == [rule["host"]], ingress["metadata"]["name"]
        assert tls["secretName"], ingress["metadata"]["name"]
        assert ingress["spec"]["ingressClassName"]
    hosts = [ingress["spec"]["rules"][0]["host"] for ingress, _ in ui.values()]
    assert len(set(hosts)) == 2
    assert "--read-only" in " ".join(read_only_container["command"])
    assert "--read-only" not in " ".join(writable_container["command"])


def test_production_authenticates_each_host_with_its_own_rule(deployment_renders):
    """The writable UI and the read-only one admit different groups: each host has its own
    auth-url (the proxy's allowed_groups), and the writable one admits fewer people."""
    ui = production_ui(deployment_renders["prod"])
    auth = {service: ingress["metadata"]["annotations"] for service, (ingress, _) in ui.items()}
    writable = auth[f"{SYSTEM}-dagster-webserver"]
    read_only = auth[f"{SYSTEM}-dagster-webserver-read-only"]

    for annotations in (writable, read_only):
        assert annotations[AUTH_URL].startswith("https://")
        assert annotations["nginx.ingress.kubernetes.io/auth-signin"].startswith("https://")
    assert writable[AUTH_URL] != read_only[AUTH_URL]
    writable_groups = set(
        parse_qs(urlsplit(writable[AUTH_URL]).query)["allowed_groups"][0].split(",")
    )
    viewer_groups = set(
        parse_qs(urlsplit(read_only[AUTH_URL]).query)["allowed_groups"][0].split(",")
    )
    assert writable_groups
    assert writable_groups < viewer_groups


def render_platform_prod_with(tmp_path: Path, ingress: Callable[[dict], None]):
    """`helm template` of the platform chart with the production values, their `ingress`
    changed by `ingress` (as an overlay copied with an edit would)."""
    prod = chartkit.load_yaml(chartkit.PLATFORM_CHART / "values-prod.yaml")
    ingress(prod["ingress"])
    values = tmp_path / "values-prod-edited.yaml"
    values.write_text(yaml.safe_dump(prod))
    return chartkit.helm(
        "template", chartkit.PLATFORM_RELEASE, str(chartkit.PLATFORM_CHART),
        "-f", str(chartkit.platform_generated()), "-f", str(values),
    )  # fmt: skip


def test_an_ingress_without_authentication_is_refused(helm_available, tmp_path):
    """Neither webserver has a login of its own: a host whose auth-url was left out of the
    production values (an overlay copied without it) does not render."""
    result = render_platform_prod_with(
        tmp_path, lambda ingress: ingress["readOnlyWebserver"]["annotations"].pop(AUTH_URL)
    )

    assert result.returncode != 0
    assert "read-only-webserver.annotations must name its authentication" in result.stderr


def test_without_a_read_only_host_only_the_writable_webserver_gets_an_ingress(
    helm_available, tmp_path
):
    """A deployment without the read-only webserver (enableReadOnly off) leaves its host
    empty: no Ingress then points at a Service that does not exist."""
    result = render_platform_prod_with(
        tmp_path,
        lambda ingress: ingress.update(
            readOnlyWebserver={"host": "", "tlsSecretName": "", "annotations": {}}
        ),
    )

    assert result.returncode == 0, result.stderr
    ingresses = [d for d in yaml.safe_load_all(result.stdout) if d and d.get("kind") == "Ingress"]
    assert [d["metadata"]["name"] for d in ingresses] == ["platform-webserver"]


def test_instance_retries_no_run_unless_its_tags_ask_and_the_comment_says_so(
    deployment_renders,
):
    """The instance's max 0 is safe only because the automation runs carry their own retries;
    the values' comment names the tags' numbers, which must stay the library's."""
    retries = instance(deployment_renders[""])["run_retries"]
    comment = (chartkit.SYSTEM_VALUES_DIR / "values.yaml").read_text()

    assert retries.get("max_retries", 0) == 0
    assert int(RUN_RETRY_TAGS["dagster/max_retries"]) > 0
    assert RUN_RETRY_TAGS["dagster/retry_on_asset_or_op_failure"] == "false"
    assert "RUN_RETRY_TAGS" in comment
    assert f"dagster/max_retries {RUN_RETRY_TAGS['dagster/max_retries']}," in comment
    assert f"{RUN_RETRY_TAGS['dagster/retry_strategy']}," in comment
    assert "dagster/retry_on_asset_or_op_failure false" in comment


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
