"""The run pods Kubernetes would get: the real K8sRunLauncher (dagster-k8s, the version in the
lock) launches one run per location with our run launcher settings and that location's
container context, against a stand-in for the Kubernetes API that only records the Job.

Where the configured chart repository answers, both inputs come from the official charts' real
render (the instance ConfigMap and the code server's DAGSTER_CLI_API_GRPC_CONTAINER_CONTEXT);
elsewhere they are read from our values the way the charts pass them on."""

import json

import chartkit
import dagster as dg
import kubernetes
import pytest
import yaml
from conftest import official_charts_or_none
from dagster._config import process_config
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.launcher import LaunchRunContext
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
from dagster._core.remote_origin import (
    GrpcServerCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.test_utils import create_run_for_test
from dagster_k8s import K8sRunLauncher

pytestmark = pytest.mark.helm

LOCATIONS = chartkit.locations()
SYSTEM = chartkit.load_yaml(chartkit.SYSTEM_VALUES_DIR / "values.yaml")
SYSTEM_FULLNAME = chartkit.SYSTEM_RELEASE  # the release name contains the chart name
# What the system chart's env ConfigMaps set for the `env:` references in its dagster.yaml.
CHART_ENVIRONMENT = {
    "DAGSTER_HOME": "/opt/dagster/dagster_home",
    "DAGSTER_K8S_INSTANCE_CONFIG_MAP": f"{SYSTEM_FULLNAME}-instance",
    "DAGSTER_K8S_PG_PASSWORD_SECRET": SYSTEM["global"]["postgresqlSecretName"],
    "DAGSTER_K8S_PIPELINE_RUN_ENV_CONFIGMAP": f"{SYSTEM_FULLNAME}-pipeline-env",
}
KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: none, user: {token: none}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
"""


def launcher_config_from_values() -> dict:
    """dagster.yaml's run_launcher.config as the system chart writes it from our values."""
    k8s = SYSTEM["runLauncher"]["config"]["k8sRunLauncher"]
    snake = {
        "containerConfig": "container_config",
        "podSpecConfig": "pod_spec_config",
        "podTemplateSpecMetadata": "pod_template_spec_metadata",
        "jobSpecConfig": "job_spec_config",
        "jobMetadata": "job_metadata",
    }
    return {
        "load_incluster_config": True,
        "job_namespace": chartkit.NAMESPACE,
        "image_pull_policy": k8s["imagePullPolicy"],
        "service_account_name": SYSTEM_FULLNAME,
        "dagster_home": {"env": "DAGSTER_HOME"},
        "instance_config_map": {"env": "DAGSTER_K8S_INSTANCE_CONFIG_MAP"},
        "postgres_password_secret": {"env": "DAGSTER_K8S_PG_PASSWORD_SECRET"},
        "env_config_maps": [{"env": "DAGSTER_K8S_PIPELINE_RUN_ENV_CONFIGMAP"}],
        "env_secrets": [s["name"] for s in k8s["envSecrets"]],
        "fail_pod_on_run_failure": k8s["failPodOnRunFailure"],
        "volumes": k8s["volumes"],
        "volume_mounts": k8s["volumeMounts"],
        "security_context": k8s["securityContext"],
        "run_k8s_config": {snake[k]: v for k, v in k8s["runK8sConfig"].items()},
    }


def container_context_from_values(location: chartkit.Location) -> dict:
    """What the user-deployments chart passes the code server as its container context."""
    deployment = location.deployment
    fullname = f"{location.name}-dagster-user-deployments"
    return {
        "k8s": {
            "image_pull_policy": deployment["image"]["pullPolicy"],
            "env_config_maps": [
                f"{fullname}-{location.name}-user-env",
                *(c["name"] for c in deployment["envConfigMaps"]),
            ],
            "env_secrets": [s["name"] for s in deployment["envSecrets"]],
            "volume_mounts": deployment["volumeMounts"],
            "volumes": deployment["volumes"],
            "labels": deployment["labels"],
            "resources": deployment["resources"],
            "namespace": chartkit.NAMESPACE,
            "service_account_name": f"{fullname}-user-deployments",
            "env": deployment.get("env", []),
        }
    }


@pytest.fixture(scope="module")
def inputs(request) -> dict:
    """(launcher config, container context per location, where they came from)."""
    if official_charts_or_none() is not None:
        renders = request.getfixturevalue("official_renders")
        instance = next(
            d
            for d in renders["system"]
            if d["kind"] == "ConfigMap" and d["metadata"]["name"] == f"{SYSTEM_FULLNAME}-instance"
        )
        launcher = yaml.safe_load(instance["data"]["dagster.yaml"])["run_launcher"]
        assert launcher["class"] == "K8sRunLauncher"
        contexts = {}
        for location in LOCATIONS:
            (deployment,) = [d for d in renders[location.name] if d["kind"] == "Deployment"]
            env = {
                e["name"]: e.get("value")
                for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
            }
            contexts[location.name] = json.loads(env["DAGSTER_CLI_API_GRPC_CONTAINER_CONTEXT"])
        return {"launcher": launcher["config"], "contexts": contexts, "source": "rendered charts"}
    return {
        "launcher": launcher_config_from_values(),
        "contexts": {loc.name: container_context_from_values(loc) for loc in LOCATIONS},
        "source": "values",
    }


class RecordingBatchApi:
    """Stands in for the Kubernetes batch API: keeps the Jobs it is asked to create."""

    def __init__(self) -> None:
        self.jobs: list = []

    def create_namespaced_job(self, body, namespace, **_):
        self.jobs.append((namespace, body))
        return body


@pytest.fixture(scope="module")
def run_jobs(inputs, tmp_path_factory) -> dict[str, dict]:
    """The Job manifest the launcher creates for one run of each location."""
    kubeconfig = tmp_path_factory.mktemp("kube") / "config"
    kubeconfig.write_text(KUBECONFIG)
    config = {
        **inputs["launcher"],
        "load_incluster_config": False,
        "kubeconfig_file": str(kubeconfig),
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in CHART_ENVIRONMENT.items():
            patch.setenv(name, value)
        processed = process_config(K8sRunLauncher.config_type(), config)
    assert processed.success, processed.errors
    batch = RecordingBatchApi()
    jobs = {}
    with dg.instance_for_test() as instance:
        launcher = K8sRunLauncher(
            **processed.value, k8s_client_batch_api=batch, k8s_client_core_api=object()
        )
        launcher.register_instance(instance)
        for location in LOCATIONS:
            image = f"{location.deployment['image']['repository']}:abc1234"
            origin = JobPythonOrigin(
                "__ASSET_JOB",
                RepositoryPythonOrigin(
                    executable_path="/app/.venv/bin/python",
                    code_pointer=ModuleCodePointer(location.module, "defs", None),
                    container_image=image,
                    entry_point=["dagster"],
                    container_context=inputs["contexts"][location.name],
                ),
            )
            remote = RemoteJobOrigin(
                RemoteRepositoryOrigin(
                    GrpcServerCodeLocationOrigin(location.name, 3030, location_name=location.name),
                    "__repository__",
                ),
                "__ASSET_JOB",
            )
            run = create_run_for_test(
                instance, job_name="__ASSET_JOB", job_code_origin=origin, remote_job_origin=remote
            )
            launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
            namespace, job = batch.jobs[-1]
            assert namespace == chartkit.NAMESPACE
            jobs[location.name] = kubernetes.client.ApiClient().sanitize_for_serialization(job)
    return jobs


@pytest.fixture(scope="module")
def platform_policies(platform_renders) -> dict[str, dict]:
    return {
        d["metadata"]["name"]: d
        for d in platform_renders["defaults"]
        if d["kind"] == "NetworkPolicy"
    }


@pytest.mark.parametrize("location", LOCATIONS, ids=lambda loc: loc.name)
def test_run_job_is_a_valid_kubernetes_job_under_the_restricted_standard(run_jobs, location):
    job = {"apiVersion": "batch/v1", "kind": "Job", **run_jobs[location.name]}
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]

    assert chartkit.kubernetes_errors(job) is None
    assert chartkit.restricted_violations(pod) == []
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert container["image"] == f"data-platform/{location.name}:abc1234"
    assert container["resources"] == location.deployment["resources"]


@pytest.mark.parametrize("location", LOCATIONS, ids=lambda loc: loc.name)
def test_run_pod_gets_its_own_teams_secret_and_no_other(run_jobs, location):
    pod = run_jobs[location.name]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    names, secrets, config_maps = chartkit.env_names_and_sources(container)

    assert secrets == {f"{location.name}-credentials", "dagster-postgresql-secret"}
    assert "platform-environment" in config_maps
    assert "DAGSTER_PG_PASSWORD" in names
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert chartkit.TMP in mounts
    for mount in location.deployment["volumeMounts"]:
        assert mount["mountPath"] in mounts


@pytest.mark.parametrize("location", LOCATIONS, ids=lambda loc: loc.name)
def test_run_pod_writes_compute_logs_where_the_webserver_reads_them(run_jobs, location):
    pod = run_jobs[location.name]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    base_dir = SYSTEM["computeLogManager"]["config"]["localComputeLogManager"]["baseDir"]
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    }
    webserver_claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in SYSTEM["dagsterWebserver"]["volumes"]
        if "persistentVolumeClaim" in v
    }
    webserver_mounts = {
        m["mountPath"]: m["name"] for m in SYSTEM["dagsterWebserver"]["volumeMounts"]
    }

    mounted = {m["mountPath"]: claims.get(m["name"]) for m in container["volumeMounts"]}
    # The code server mounts the same area (its sensors' logs) and hands its volumes to the
    # run too: the run launcher's copy and the server's must merge into one, since Kubernetes
    # refuses a pod with two volumes of one name or two mounts at one path.
    names = [v["name"] for v in pod["volumes"]]
    paths = [m["mountPath"] for m in container["volumeMounts"]]
    assert len(names) == len(set(names)), names
    assert len(paths) == len(set(paths)), paths
    assert mounted[base_dir] == webserver_claims[webserver_mounts[base_dir]]
    assert not next(m for m in container["volumeMounts"] if m["mountPath"] == base_dir).get(
        "readOnly"
    )


@pytest.mark.parametrize("location", LOCATIONS, ids=lambda loc: loc.name)
def test_run_pod_labels_are_the_ones_the_network_policies_let_in(
    run_jobs, platform_policies, location
):
    labels = run_jobs[location.name]["spec"]["template"]["metadata"]["labels"]

    assert chartkit.RUN_POD_COMMON_LABELS.items() <= labels.items()
    assert labels["dagster/code-location"] == location.name
    assert labels["team"] == location.deployment["labels"]["team"]
    assert chartkit.allowed_by(platform_policies["platform-code-servers"], labels, 3030)
    assert chartkit.allowed_by(platform_policies["platform-postgresql"], labels, 5432)
