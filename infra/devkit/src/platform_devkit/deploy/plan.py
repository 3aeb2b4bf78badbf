"""The deployment as a list of commands: one function builds them, `make deploy*`,
`make kind-deploy` and `make deploy-diff` run or print them, and the tests render every release
from the very same arguments (tests/helm)."""

import json
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from platform_devkit import locations as declared
from platform_devkit.deploy.charts import OfficialCharts, official_charts
from platform_devkit.instance import locations
from platform_devkit.paths import REPO_ROOT

# The platform chart's NetworkPolicies select the system release's pods by its name
# (charts/platform values.yaml dagsterRelease).
PLATFORM_RELEASE = "platform"
SYSTEM_RELEASE = "dagster"
PLATFORM_CHART = REPO_ROOT / "charts" / "platform"
SYSTEM_VALUES = REPO_ROOT / "charts" / "dagster"
KIND_CONFIG = REPO_ROOT / "infra" / "kind" / "cluster.yaml"
SECRETS_SCRIPT = REPO_ROOT / "infra" / "kind" / "secrets.sh"
# The kind release whose node image infra/kind/cluster.yaml pins (kind supports a node image
# only with the release that built it); the e2e-kind workflow installs exactly this version.
KIND_VERSION = "v0.27.0"
# Values derived from the locations' declarations (platform_devkit.locations), written here by
# every plan and passed right after each chart's values.yaml (an overlay may still override).
GENERATED_VALUES = REPO_ROOT / ".local" / "deploy" / "generated"
# Port of every code server (deployments[].port in locations/*/deploy/values.yaml).
CODE_SERVER_PORT = 3030

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
# host[:port]/path of an image repository, without the location's own name.
REGISTRY_NAME = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
OVERLAY_NAME = re.compile(r"^[a-z0-9][-a-z0-9]*$")


class PlanError(ValueError):
    """Bad deployment settings; the message names the setting to fix."""


@dataclass(frozen=True)
class Settings:
    """What `make deploy*` passes (docs/deploy.md, "Variables")."""

    namespace: str = "data-platform"
    kube_context: str = ""
    tag: str = ""
    registry: str = "data-platform"
    overlay: str = ""
    timeout: str = "10m"
    # Roll a failed upgrade back to the last good revision (and remove a failed first install).
    atomic: bool = True
    # Run Dagster's storage migration Job with the system release (when upgrading Dagster).
    migrate: bool = False
    kind_cluster: str = "data-platform"
    charts: OfficialCharts = field(default_factory=official_charts)

    def check(self, needs_tag: bool) -> None:
        if not DNS_LABEL.match(self.namespace):
            raise PlanError(f"NAMESPACE={self.namespace!r} is not a Kubernetes namespace name")
        if needs_tag and not self.tag:
            raise PlanError("TAG is empty: set the image tag to deploy (make images prints it)")
        if needs_tag and not IMAGE_TAG.match(self.tag):
            raise PlanError(f"TAG={self.tag!r} is not a valid image tag")
        if not REGISTRY_NAME.match(self.registry):
            raise PlanError(f"REGISTRY={self.registry!r} is not an image repository prefix")
        if self.overlay and not OVERLAY_NAME.match(self.overlay):
            raise PlanError(f"OVERLAY={self.overlay!r}: use a name such as kind or prod")
        if self.overlay and not any(
            (folder / f"values-{self.overlay}.yaml").exists() for folder in values_folders()
        ):
            raise PlanError(
                f"OVERLAY={self.overlay}: no values-{self.overlay}.yaml in "
                + ", ".join(shown(f) for f in values_folders())
            )


def values_folders() -> list[Path]:
    return [PLATFORM_CHART, SYSTEM_VALUES] + [Path(loc["path"]) / "deploy" for loc in locations()]


def shown(path: Path) -> str:
    """A path as the commands show it: relative to the repository (they run from its root)."""
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


@dataclass(frozen=True)
class Release:
    name: str
    chart: Path
    values: tuple[Path, ...]
    sets: tuple[tuple[str, str], ...] = ()
    # The platform release is gated by its bootstrap hook instead: its file-area claims stay
    # Pending until a location mounts them (WaitForFirstConsumer storage), so --wait (and
    # --atomic, which implies it) would time out on a healthy install.
    wait: bool = True

    def inputs(self, settings: Settings) -> list[str]:
        args = [self.name, shown(self.chart), "--namespace", settings.namespace]
        for path in self.values:
            args += ["--values", shown(path)]
        for key, value in self.sets:
            args += ["--set", f"{key}={value}"]
        return args

    def upgrade(self, settings: Settings) -> list[str]:
        args = ["helm", "upgrade", "--install", *self.inputs(settings)]
        if settings.kube_context:
            args += ["--kube-context", settings.kube_context]
        args += ["--timeout", settings.timeout]
        if self.wait:
            args += ["--wait", *(["--atomic"] if settings.atomic else [])]
        return args

    def template(self, settings: Settings) -> list[str]:
        """What `upgrade` would apply: the same chart, values and flags, hooks included, no
        `helm test` pods (install does not run them)."""
        return ["helm", "template", *self.inputs(settings), "--skip-tests"]


def _values(folder: Path, overlay: str, generated: Path | None = None) -> tuple[Path, ...]:
    files = [folder / "values.yaml", *([generated] if generated else [])]
    if overlay and (folder / f"values-{overlay}.yaml").exists():
        files.append(folder / f"values-{overlay}.yaml")
    return tuple(files)


def platform_values() -> dict:
    """The platform chart's values derived from the declarations: every warehouse role with
    its Secret and variables (the bootstrap Job's environment, the ExternalSecrets), and the
    bootstrap script that creates them (infra/sql, platform_devkit.locations)."""
    found = declared.load(REPO_ROOT)
    roles = [
        {
            "name": role.name,
            "secret": role.secret,
            "userVar": role.user_var,
            "passwordVar": role.password_var,
        }
        for role in declared.warehouse_roles(found)
    ]
    return {
        "warehouseRoles": roles,
        "bootstrap": {"script": declared.bootstrap_script(found)},
    }


def system_values() -> dict:
    """The system release's workspace: one gRPC server per location, the Service its release
    creates (Service name = deployments[0].name = the location's name)."""
    servers = [
        {"host": loc.name, "port": CODE_SERVER_PORT, "name": loc.name}
        for loc in declared.load(REPO_ROOT)
    ]
    return {"dagsterWebserver": {"workspace": {"servers": servers}}}


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (the bootstrap script) as readable `|` blocks."""


_BlockDumper.add_representer(
    str,
    lambda dumper, text: dumper.represent_scalar(
        "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None
    ),
)


def write_generated(release: str, values: dict) -> Path:
    """The values file of a release's derived values (rewritten by every plan, atomically)."""
    GENERATED_VALUES.mkdir(parents=True, exist_ok=True)
    path = GENERATED_VALUES / f"{release}.yaml"
    header = (
        f"# Generated for the {release} release from the locations' declarations\n"
        "# (platform_devkit.deploy.plan); rewritten by every deployment plan, never edited.\n"
    )
    text = header + yaml.dump(values, Dumper=_BlockDumper, sort_keys=False, width=100)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def platform_release(settings: Settings) -> Release:
    generated = write_generated(PLATFORM_RELEASE, platform_values())
    return Release(
        PLATFORM_RELEASE,
        PLATFORM_CHART,
        _values(PLATFORM_CHART, settings.overlay, generated),
        wait=False,
    )


def system_release(settings: Settings) -> Release:
    # The chart's migration Job is a plain Job that helm cannot update in place: set it for the
    # one upgrade that changes Dagster's storage schema, then deploy again without.
    sets = (("migrate.enabled", "true"),) if settings.migrate else ()
    generated = write_generated(SYSTEM_RELEASE, system_values())
    values = _values(SYSTEM_VALUES, settings.overlay, generated)
    return Release(SYSTEM_RELEASE, settings.charts.system, values, sets)


def location_folder(name: str) -> Path:
    """The folder of a code location listed in dg.toml; a PlanError naming LOCATION else."""
    known = {loc["name"]: Path(loc["path"]) for loc in locations()}
    if name not in known:
        raise PlanError(f"LOCATION={name!r} is not a code location (one of: {', '.join(known)})")
    return known[name]


def location_release(settings: Settings, name: str) -> Release:
    folder = location_folder(name) / "deploy"
    if not (folder / "values.yaml").exists():
        raise PlanError(f"LOCATION={name}: {shown(folder / 'values.yaml')} does not exist")
    # The values file's repository and tag are placeholders: the deployed image is always the
    # one built for this commit (make images).
    sets = (
        ("deployments[0].image.repository", f"{settings.registry}/{name}"),
        ("deployments[0].image.tag", settings.tag),
    )
    return Release(name, settings.charts.user, _values(folder, settings.overlay), sets)


def releases(settings: Settings, only: str = "all", location: str = "") -> list[Release]:
    """The releases a target installs, in order: platform, system, then every location in
    dg.toml order (upstream first)."""
    if only == "platform":
        return [platform_release(settings)]
    if only == "system":
        return [system_release(settings)]
    if only == "location":
        if not location:
            names = ", ".join(loc["name"] for loc in locations())
            raise PlanError(f"LOCATION is empty: name the location to deploy (one of: {names})")
        return [location_release(settings, location)]
    if only != "all":
        raise PlanError(f"unknown release set {only!r}")
    return [
        platform_release(settings),
        system_release(settings),
        *(location_release(settings, loc["name"]) for loc in locations()),
    ]


@dataclass(frozen=True)
class Step:
    """One command of a deployment. `stdin` is fed to it; `unless` is a command whose output
    having the line `unless_line` makes this step unnecessary (e.g. the cluster exists)."""

    title: str
    argv: tuple[str, ...]
    stdin: str = ""
    env: tuple[tuple[str, str], ...] = ()
    unless: tuple[str, ...] = ()
    unless_line: str = ""
    release: Release | None = None

    def shell(self) -> str:
        """The step as one shell line (what `DRY_RUN=1` prints)."""
        line = shlex.join(self.argv)
        if self.env:
            line = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env) + " " + line
        if self.stdin:
            line = f"printf '%s\\n' {shlex.quote(self.stdin)} | {line}"
        if self.unless:
            test = (
                f"{shlex.join(self.unless)} 2>/dev/null | grep -qxF {shlex.quote(self.unless_line)}"
            )
            line = f"{test} || {line}"
        return line


def kubectl(settings: Settings, *args: str) -> tuple[str, ...]:
    context = ("--context", settings.kube_context) if settings.kube_context else ()
    return ("kubectl", *context, *args)


def namespace_step(settings: Settings) -> Step:
    """The namespace, enforcing the "restricted" Pod Security Standard (applied, so existing
    namespaces get the labels too)."""
    manifest = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": settings.namespace,
            "labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/warn": "restricted",
            },
        },
    }
    # Skipped when the namespace already enforces it: deployers with rights in the namespace
    # only (no cluster-wide ones) can then deploy.
    label = "{.metadata.labels.pod-security\\.kubernetes\\.io/enforce}"
    return Step(
        f"namespace {settings.namespace} (pod security: restricted)",
        kubectl(settings, "apply", "-f", "-"),
        stdin=json.dumps(manifest, separators=(",", ":")),
        unless=kubectl(settings, "get", "namespace", settings.namespace, "-o", f"jsonpath={label}"),
        unless_line="restricted",
    )


def secrets_step(settings: Settings) -> Step:
    env = (("NAMESPACE", settings.namespace), ("KUBE_CONTEXT", settings.kube_context))
    return Step(
        "Secrets with random credentials (existing ones kept)",
        ("bash", shown(SECRETS_SCRIPT)),
        env=env,
    )


def release_steps(settings: Settings, selected: list[Release]) -> list[Step]:
    return [
        Step(
            f"helm upgrade --install {r.name} ({shown(r.chart)})",
            tuple(r.upgrade(settings)),
            release=r,
        )
        for r in selected
    ]


def kind_cluster_step(settings: Settings) -> Step:
    """The cluster, unless it exists, with the node image infra/kind/cluster.yaml pins."""
    cluster = settings.kind_cluster
    return Step(
        f"kind cluster {cluster} (created unless it exists)",
        (
            "kind",
            "create",
            "cluster",
            "--name",
            cluster,
            "--config",
            shown(KIND_CONFIG),
            "--wait",
            "180s",
        ),
        unless=("kind", "get", "clusters"),
        unless_line=cluster,
    )


def kind_load_steps(settings: Settings, location: str = "") -> list[Step]:
    """Every location's image (or one's) into the node: kind nodes pull from no registry. The
    images are single-platform (built with the legacy builder, docs/images.md), which is what
    `kind load` needs on engines with the containerd image store (Docker 29's default)."""
    if location:
        location_folder(location)
    names = [location] if location else [loc["name"] for loc in locations()]
    images = [f"{settings.registry}/{name}:{settings.tag}" for name in names]
    return [
        Step(
            f"kind load {image}",
            ("kind", "load", "docker-image", "--name", settings.kind_cluster, image),
        )
        for image in images
    ]


TARGETS = ("all", "platform", "system", "location", "secrets", "kind", "kind-up", "kind-load")


def steps(target: str, settings: Settings, location: str = "") -> list[Step]:
    """Every command of a deployment target, in the order it runs.

    all       namespace, platform, system, every location  (make deploy)
    platform  namespace, platform                          (make deploy-platform)
    system    the system release                           (make deploy-system)
    location  one location's release                       (make deploy-location)
    secrets   namespace, Secrets with random credentials    (make secrets; kind and dev)
    kind      cluster, image loads, namespace, Secrets, then what `all` does (make kind-deploy)
    kind-up   the cluster                                  (make kind-up)
    kind-load every location's image, or one's             (make kind-load)
    """
    if target not in TARGETS:
        raise PlanError(f"unknown deployment target {target!r} (one of: {', '.join(TARGETS)})")
    settings.check(needs_tag=target in {"all", "location", "kind", "kind-load"})
    if target == "kind-up":
        return [kind_cluster_step(settings)]
    if target == "kind-load":
        return kind_load_steps(settings, location)
    if target == "secrets":
        return [namespace_step(settings), secrets_step(settings)]
    if target == "kind":
        return [
            kind_cluster_step(settings),
            *kind_load_steps(settings),
            namespace_step(settings),
            secrets_step(settings),
            *release_steps(settings, releases(settings)),
        ]
    if target == "location":
        return release_steps(settings, releases(settings, "location", location))
    if target == "system":
        return release_steps(settings, releases(settings, "system"))
    return [namespace_step(settings), *release_steps(settings, releases(settings, target))]
