"""What the Helm tests share: rendering with the real helm (the deployment plan's own
arguments for the official charts), offline Kubernetes validation, label selectors, the
"restricted" Pod Security Standard, and the labels the official charts put on their pods.
Imported by the tests through this folder's conftest.py."""

import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from platform_devkit.deploy import plan

REPO = Path(__file__).resolve().parents[2]
PLATFORM_CHART = plan.PLATFORM_CHART
SYSTEM_VALUES_DIR = plan.SYSTEM_VALUES
DEPLOY_MK = REPO / "mk" / "deploy.mk"
SECRETS_SCRIPT = plan.SECRETS_SCRIPT

# Manifests are validated against the Kubernetes 1.32 API: the kind node image
# (infra/kind/cluster.yaml) and kubectl (infra/helm/install-tools.sh) are 1.32 too, and a test
# holds the three together. Bundled with kubernetes-validate.
KUBERNETES_VERSION = "1.32"

# Release names `make deploy` uses (the deployment plan); the charts derive pod labels from them.
SYSTEM_RELEASE = plan.SYSTEM_RELEASE
PLATFORM_RELEASE = plan.PLATFORM_RELEASE
NAMESPACE = plan.Settings.namespace
# Paths and addresses as they appear in manifests (never opened or bound by the tests).
TMP = "/tmp"  # noqa: S108
ALL_INTERFACES = "0.0.0.0"  # noqa: S104

# The platform chart is rendered in every configuration the repository ships or documents:
# name -> (values files after values.yaml, --set values).
PLATFORM_SCENARIOS: dict[str, tuple[list[str], dict[str, str]]] = {
    "defaults": ([], {}),
    "kind": (["values-kind.yaml"], {}),
    "prod": (["values-prod.yaml"], {}),
    "external-secrets": ([], {"externalSecrets.enabled": "true"}),
    "managed-postgres": (
        [],
        {"postgres.enabled": "false", "postgres.external.host": "db.example.internal"},
    ),
}


# -- the labels the official charts and dagster-k8s put on pods -------------------------------
# One place, each with the template it comes from (dagster-io/dagster, chart 1.13.x):
def webserver_pod_labels(release: str = SYSTEM_RELEASE) -> dict[str, str]:
    # helm/dagster/templates/helpers/_deployment-webserver.tpl: dagster.selectorLabels
    # (app.kubernetes.io/name = chart name, app.kubernetes.io/instance = release) + component.
    return {
        "app.kubernetes.io/name": "dagster",
        "app.kubernetes.io/instance": release,
        "component": "dagster-webserver",
    }


def daemon_pod_labels(release: str = SYSTEM_RELEASE) -> dict[str, str]:
    # helm/dagster/templates/deployment-daemon.yaml: selectorLabels + component + deployment.
    return {
        "app.kubernetes.io/name": "dagster",
        "app.kubernetes.io/instance": release,
        "component": "dagster-daemon",
        "deployment": "daemon",
    }


def code_server_pod_labels(location: str, extra: Mapping[str, str]) -> dict[str, str]:
    # helm/dagster/charts/dagster-user-deployments/templates/deployment-user.yaml: selectorLabels
    # of the user-deployments chart (release = location) + component + deployment + labels.
    return {
        "app.kubernetes.io/name": "dagster-user-deployments",
        "app.kubernetes.io/instance": location,
        "component": "user-deployments",
        "deployment": location,
        **extra,
    }


def migrate_job_pod_labels(release: str = SYSTEM_RELEASE) -> dict[str, str]:
    # helm/dagster/templates/job-instance-migrate.yaml sets no pod labels; Kubernetes adds the
    # Job's name (dagster.webserver.migrate: <release>-dagster-webserver-instance-migrate).
    name = f"{release}-dagster-webserver-instance-migrate"
    return {"batch.kubernetes.io/job-name": name, "job-name": name}


# Run pods are not rendered by any chart: K8sRunLauncher creates them. Their labels come from
# python_modules/libraries/dagster-k8s/dagster_k8s/utils.py get_common_labels() (name, instance
# and part-of all "dagster", whatever the release is called) and launcher.py
# (component="run_worker", dagster/job, dagster/run-id, dagster/code-location), plus the code
# server's labels through its container context. test_run_pods.py builds real ones.
RUN_POD_COMMON_LABELS = {
    "app.kubernetes.io/name": "dagster",
    "app.kubernetes.io/instance": "dagster",
    "app.kubernetes.io/part-of": "dagster",
    "app.kubernetes.io/component": "run_worker",
}


# -- the repository -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Location:
    name: str
    module: str
    path: Path

    @property
    def values_file(self) -> Path:
        return self.path / "deploy" / "values.yaml"

    @property
    def deployment(self) -> dict[str, Any]:
        """The single entry of `deployments` in the location's values."""
        (deployment,) = load_yaml(self.values_file)["deployments"]
        return deployment


@cache
def locations() -> tuple[Location, ...]:
    """Code locations in dg.toml order, with the module their pyproject declares."""
    found = []
    for project in tomllib.loads((REPO / "dg.toml").read_text())["workspace"]["projects"]:
        path = REPO / project["path"]
        pyproject = tomllib.loads((path / "pyproject.toml").read_text())
        module = pyproject["tool"]["dg"]["project"]["root_module"] + ".definitions"
        found.append(Location(pyproject["project"]["name"], module, path))
    return tuple(found)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def merged(base: Any, override: Any) -> Any:
    """Helm's coalescing of values files: maps merge key by key, anything else replaces."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = merged(base[key], value) if key in base else value
        return out
    return override


def locked_version(package: str) -> str:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    (version,) = {p["version"] for p in lock["package"] if p["name"] == package}
    return version


def make_variable(name: str, makefile: Path = DEPLOY_MK) -> str:
    """The value a Makefile assigns to `name` (`:=`, `?=` or `=`), as written."""
    match = re.search(rf"^{name}\s*[:?]?=\s*(.*)$", makefile.read_text(), re.MULTILINE)
    assert match, f"{name} is not set in {makefile}"
    return match.group(1).strip()


# -- helm ---------------------------------------------------------------------------------------
def helm_binary() -> str | None:
    """helm on PATH, else the copy `make tools` installs into .tools/bin."""
    found = shutil.which("helm")
    if found:
        return found
    local = REPO / ".tools" / "bin" / "helm"
    return str(local) if local.exists() else None


def helm(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    binary = helm_binary()
    assert binary, "helm is not installed"
    return subprocess.run(
        [binary, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def platform_generated() -> Path:
    """The platform chart's values derived from the locations' declarations, as every
    deployment plan writes and passes them (after values.yaml, before an overlay)."""
    return plan.write_generated(PLATFORM_RELEASE, plan.platform_values())


def render(
    chart: Path | str,
    release: str,
    values: list[Path] | tuple[Path, ...] = (),
    sets: Mapping[str, str] | None = None,
    namespace: str = NAMESPACE,
) -> list[dict[str, Any]]:
    """`helm template` with hooks, as `helm install` applies them (not `helm test` pods)."""
    args = ["template", release, str(chart), "--namespace", namespace, "--skip-tests"]
    for path in values:
        args += ["-f", str(path)]
    for key, value in (sets or {}).items():
        args += ["--set", f"{key}={value}"]
    result = helm(*args)
    assert result.returncode == 0, f"helm {' '.join(args)} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def render_release(release: plan.Release, settings: plan.Settings) -> list[dict[str, Any]]:
    """A release exactly as the deployment plan would install it (its `helm template` twin)."""
    argv = release.template(settings)
    binary = helm_binary()
    assert binary, "helm is not installed"
    result = subprocess.run(
        [binary, *argv[1:]], capture_output=True, text=True, timeout=120, cwd=REPO, check=False
    )
    assert result.returncode == 0, f"{' '.join(argv)} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def shipped_overlays() -> list[str]:
    """ "" (values.yaml alone) and every overlay name a values-<name>.yaml in the repo gives."""
    names = {
        path.stem.removeprefix("values-")
        for folder in plan.values_folders()
        for path in folder.glob("values-*.yaml")
    }
    return ["", *sorted(names)]


# -- Kubernetes ---------------------------------------------------------------------------------
def kubernetes_errors(doc: Mapping[str, Any]) -> str | None:
    """Strict validation against the Kubernetes API schema; None when valid.

    Raises SchemaNotFoundError for kinds Kubernetes does not define (CRDs such as
    ExternalSecret); callers check those themselves."""
    try:
        kubernetes_validate.validate(without_nulls(doc), KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(p) for p in error.path)
        return f"{doc['kind']}/{doc['metadata']['name']}: {path}: {error.message}"
    return None


def without_nulls(node: Any) -> Any:
    """The object as the API server stores it: a null field is an absent field."""
    if isinstance(node, dict):
        return {k: without_nulls(v) for k, v in node.items() if v is not None}
    if isinstance(node, list):
        return [without_nulls(v) for v in node]
    return node


def pod_templates(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict, dict]]:
    """(kind/name, pod metadata, pod spec) of every workload in a render."""
    for doc in docs:
        kind, name = doc["kind"], doc["metadata"]["name"]
        if kind in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
            template = doc["spec"]["template"]
            yield f"{kind}/{name}", template.get("metadata") or {}, template["spec"]
        elif kind == "CronJob":
            template = doc["spec"]["jobTemplate"]["spec"]["template"]
            yield f"{kind}/{name}", template.get("metadata") or {}, template["spec"]
        elif kind == "Pod":
            yield f"{kind}/{name}", doc["metadata"], doc["spec"]


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Kubernetes LabelSelector semantics (matchLabels and matchExpressions)."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def allowed_by(policy: Mapping[str, Any], source: Mapping[str, str], port: int) -> bool:
    """Whether a NetworkPolicy lets a pod of this namespace with `source` labels in on `port`."""
    for rule in policy["spec"].get("ingress") or []:
        ports = [p["port"] for p in rule.get("ports") or []]
        if ports and port not in ports:
            continue
        peers = rule.get("from")
        if not peers:
            return True
        for peer in peers:
            same_namespace = "podSelector" in peer and "namespaceSelector" not in peer
            if same_namespace and selector_matches(peer["podSelector"], source):
                return True
    return False


ALLOWED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def restricted_violations(pod: Mapping[str, Any]) -> list[str]:
    """Where a pod spec breaks the "restricted" Pod Security Standard (Kubernetes docs,
    "Pod Security Standards"), as the admission controller of a namespace enforcing it would."""
    problems = []
    pod_context = pod.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            problems.append(f"pod sets {flag}")
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUME_TYPES:
            problems.append(f"volume {volume['name']} is {sorted(kinds)}")
    containers = [*(pod.get("initContainers") or []), *pod["containers"]]
    for container in containers:
        name = container["name"]
        context = container.get("securityContext") or {}
        if context.get("privileged"):
            problems.append(f"{name}: privileged")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        if "ALL" not in ((context.get("capabilities") or {}).get("drop") or []):
            problems.append(f"{name}: capabilities do not drop ALL")
        added = set((context.get("capabilities") or {}).get("add") or []) - {"NET_BIND_SERVICE"}
        if added:
            problems.append(f"{name}: adds capabilities {sorted(added)}")
        non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
        if non_root is not True:
            problems.append(f"{name}: runAsNonRoot is not true")
        if context.get("runAsUser", pod_context.get("runAsUser")) == 0:
            problems.append(f"{name}: runs as uid 0")
        seccomp = context.get("seccompProfile") or pod_context.get("seccompProfile") or {}
        if seccomp.get("type") not in {"RuntimeDefault", "Localhost"}:
            problems.append(f"{name}: seccompProfile is not RuntimeDefault")
    return problems


def env_names_and_sources(container: Mapping[str, Any]) -> tuple[set[str], set[str], set[str]]:
    """(names set directly in env, Secrets required, ConfigMaps required) of a container.
    References marked optional are left out: a pod starts without them."""
    names, secrets, config_maps = set(), set(), set()
    for var in container.get("env") or []:
        names.add(var["name"])
        source = var.get("valueFrom") or {}
        for key, found in (("secretKeyRef", secrets), ("configMapKeyRef", config_maps)):
            if key in source and not source[key].get("optional"):
                found.add(source[key]["name"])
    for source in container.get("envFrom") or []:
        for key, found in (("secretRef", secrets), ("configMapRef", config_maps)):
            if key in source and not source[key].get("optional"):
                found.add(source[key]["name"])
    return names, secrets, config_maps


def secret_names_in(docs: list[dict[str, Any]]) -> set[str]:
    """Every Secret a render requires: env, envFrom, volumes, imagePullSecrets."""
    found = set()
    for _, _, pod in pod_templates(docs):
        for container in [*(pod.get("initContainers") or []), *pod["containers"]]:
            found |= env_names_and_sources(container)[1]
        for volume in pod.get("volumes") or []:
            if "secret" in volume:
                found.add(volume["secret"]["secretName"])
        found |= {s["name"] for s in pod.get("imagePullSecrets") or []}
    return found


def secrets_script_listing() -> dict[str, list[str]]:
    """`infra/kind/secrets.sh --list`: each Secret the script creates, with its keys."""
    result = subprocess.run(
        ["bash", str(SECRETS_SCRIPT), "--list"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    listing = {}
    for line in result.stdout.splitlines():
        name, *keys = line.split()
        listing[name] = keys
    return listing
