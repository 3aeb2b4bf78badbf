"""The deployment plan (platform_devkit.deploy) is what the Makefile runs: `make deploy`,
`make deploy-location` and `make kind-deploy` print exactly the plan's commands with DRY_RUN=1,
in order, and every release they install renders with the very arguments they pass."""

import os
import re
import shlex
import subprocess

import chartkit
import pytest
import yaml

from platform_devkit.deploy import plan

LOCATIONS = chartkit.locations()
TAG = "abc1234"
KIND_CONTEXT = "kind-data-platform"
# Flags of `helm upgrade` that change how it installs, not what it renders.
INSTALL_ONLY = {"--wait": 0, "--atomic": 0, "--timeout": 1, "--kube-context": 1, "--install": 0}


def make(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=chartkit.REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=check,
    )


def printed_plan(*args: str) -> list[str]:
    """The commands a make target would run: what it prints with DRY_RUN (1 unless given),
    comments dropped."""
    dry = [] if any(a.startswith("DRY_RUN=") for a in args) else ["DRY_RUN=1"]
    out = make(*args, *dry).stdout
    return [line for line in out.splitlines() if line and not line.startswith(("#", "==>"))]


def planned(target: str, location: str = "", **settings) -> list[plan.Step]:
    return plan.steps(target, plan.Settings(**settings), location)


def upgrade_to_template(argv: list[str]) -> list[str]:
    """`helm upgrade --install` arguments turned into the `helm template` that renders them."""
    assert argv[:3] == ["helm", "upgrade", "--install"], argv
    out, skip = ["helm", "template"], 0
    for arg in argv[2:]:
        if skip:
            skip -= 1
        elif arg in INSTALL_ONLY:
            skip = INSTALL_ONLY[arg]
        else:
            out.append(arg)
    return [*out, "--skip-tests"]


def helm_lines(lines: list[str]) -> list[list[str]]:
    return [shlex.split(line) for line in lines if line.startswith("helm upgrade")]


# -- the Makefile runs the plan -------------------------------------------------------------------
def test_make_deploy_prints_the_plan_platform_then_system_then_every_location():
    lines = printed_plan("deploy", f"TAG={TAG}", "OVERLAY=kind")
    steps = planned("all", tag=TAG, overlay="kind")
    installs = helm_lines(lines)

    assert lines == [step.shell() for step in steps]
    assert [argv[3] for argv in installs] == [
        "platform",
        "dagster",
        *(loc.name for loc in LOCATIONS),
    ]
    assert lines[0].endswith("kubectl apply -f -")
    assert '"pod-security.kubernetes.io/enforce":"restricted"' in lines[0]
    # An existing namespace that enforces it already is left alone (no cluster-wide rights).
    assert lines[0].startswith("kubectl get namespace data-platform -o 'jsonpath=")
    for argv in installs:
        assert argv[argv.index("--namespace") + 1] == "data-platform"
        assert "--values" in argv


def test_make_kind_deploy_prints_cluster_loads_secrets_then_every_release_with_kind_overlays():
    lines = printed_plan("kind-deploy", f"TAG={TAG}")
    steps = planned("kind", tag=TAG, overlay="kind", kube_context=KIND_CONTEXT)
    programs = [step.argv[0] if "secrets.sh" not in step.argv[-1] else "secrets" for step in steps]
    loads = [step.argv for step in steps if step.argv[:2] == ("kind", "load")]

    assert lines == [step.shell() for step in steps]
    assert lines[0].startswith("kind get clusters 2>/dev/null | grep -qxF data-platform || kind")
    assert "--config infra/kind/cluster.yaml" in lines[0]
    assert [argv[-1] for argv in loads] == [f"data-platform/{loc.name}:{TAG}" for loc in LOCATIONS]
    assert all(
        argv[:5] == ("kind", "load", "docker-image", "--name", "data-platform") for argv in loads
    )
    last_load = max(i for i, program in enumerate(programs) if program == "kind")
    namespace = programs.index("kubectl")
    assert 0 < last_load < namespace < programs.index("secrets") < programs.index("helm")
    assert "KUBE_CONTEXT=kind-data-platform" in next(line for line in lines if "secrets.sh" in line)
    for argv in helm_lines(lines):
        assert argv[argv.index("--kube-context") + 1] == KIND_CONTEXT
        release = argv[3]
        if release in {"platform", "dagster"}:
            assert any(v.endswith("values-kind.yaml") for v in argv), release


def test_make_deploy_location_installs_that_location_only_with_the_given_tag():
    lines = printed_plan("deploy-location", "LOCATION=transformation", f"TAG={TAG}")
    (argv,) = helm_lines(lines)

    assert lines == [s.shell() for s in planned("location", "transformation", tag=TAG)]
    assert argv[3:5] == ["transformation", str(plan.shown(plan.Settings().charts.user))]
    assert f"deployments[0].image.tag={TAG}" in argv
    assert "deployments[0].image.repository=data-platform/transformation" in argv


def test_the_system_and_every_location_wait_and_roll_back_the_platform_is_gated_by_its_hook():
    installs = helm_lines(printed_plan("deploy", f"TAG={TAG}"))
    without_rollback = helm_lines(printed_plan("deploy", f"TAG={TAG}", "HELM_ATOMIC=0"))

    platform, *dagster_releases = installs
    assert "--wait" not in platform
    assert "--atomic" not in platform
    assert all({"--wait", "--atomic"} <= set(argv) for argv in dagster_releases)
    assert all("--atomic" not in argv and "--wait" in argv for argv in without_rollback[1:])
    for argv in installs:
        assert argv[argv.index("--timeout") + 1] == "10m"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["deploy-location", "LOCATION=nosuch", "TAG=x"], "LOCATION='nosuch' is not a code"),
        (["deploy-location", "TAG=x"], "LOCATION is empty"),
        (["deploy", "TAG="], "TAG is empty"),
        (["deploy", "TAG=a b"], "TAG='a b' is not a valid image tag"),
        (["deploy", "TAG=x", "OVERLAY=knd"], "OVERLAY=knd: no values-knd.yaml"),
        (["deploy", "TAG=x", "NAMESPACE=Data_Platform"], "NAMESPACE='Data_Platform'"),
        (["deploy", "TAG=x", "NAMESPACE="], "NAMESPACE=''"),
        (["deploy", "TAG=x", "REGISTRY=Registry/"], "REGISTRY='Registry/'"),
    ],
    ids=[
        "unknown-location",
        "no-location",
        "no-tag",
        "bad-tag",
        "misspelt-overlay",
        "bad-ns",
        "empty-ns",
        "bad-registry",
    ],
)
def test_bad_settings_stop_before_anything_runs_naming_the_variable(args, message):
    result = make(*args, "DRY_RUN=1", check=False)

    assert result.returncode != 0
    assert message in result.stderr
    assert "helm upgrade" not in result.stdout


# -- what it installs renders, with its own arguments -------------------------------------------
def test_kind_deploy_renders_every_release_it_installs_with_the_arguments_it_passes(
    official_charts,
):
    settings = plan.Settings(
        tag=TAG, overlay="kind", kube_context=KIND_CONTEXT, charts=official_charts
    )
    installs = [step for step in plan.steps("kind", settings) if step.release is not None]
    rendered = {}
    for step in installs:
        template = upgrade_to_template(list(step.argv))
        assert template == step.release.template(settings)
        rendered[step.release.name] = chartkit.render_release(step.release, settings)

    assert list(rendered) == ["platform", "dagster", *(loc.name for loc in LOCATIONS)]
    for location in LOCATIONS:
        (deployment,) = [d for d in rendered[location.name] if d["kind"] == "Deployment"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"] == f"data-platform/{location.name}:{TAG}"


def test_deploy_diff_writes_every_release_it_would_apply_and_says_no_cluster_answered(
    official_charts, tmp_path
):
    context = "no-such-context"
    out = tmp_path / "preview"
    result = make("deploy-diff", f"TAG={TAG}", f"KUBE_CONTEXT={context}", f"DIFF_OUT={out}")
    settings = plan.Settings(tag=TAG, kube_context=context, charts=official_charts)

    assert sorted(p.stem for p in out.glob("*.yaml")) == sorted(
        r.name for r in plan.releases(settings)
    )
    assert "no diff against the cluster" in result.stdout
    for release in plan.releases(settings):
        docs = [d for d in yaml.safe_load_all((out / f"{release.name}.yaml").read_text()) if d]
        assert docs == chartkit.render_release(release, settings), release.name


def test_migrate_adds_the_storage_migration_to_the_system_release_only():
    installs = helm_lines(printed_plan("deploy", f"TAG={TAG}", "MIGRATE=1"))
    plain = helm_lines(printed_plan("deploy", f"TAG={TAG}"))

    assert [("migrate.enabled=true" in argv) for argv in installs] == [
        argv[3] == "dagster" for argv in installs
    ]
    assert not any("migrate.enabled=true" in argv for argv in plain)


def test_any_dry_run_value_but_0_prints_instead_of_deploying():
    for value in ("1", "true", "yes"):
        assert printed_plan("deploy", f"TAG={TAG}", f"DRY_RUN={value}")[0].startswith("kubectl get")


# -- the kind cluster and the tools are pinned to the validated Kubernetes version ---------------
def test_kind_node_image_is_pinned_by_digest_to_the_validated_kubernetes_version():
    config = chartkit.load_yaml(plan.KIND_CONFIG)
    (node,) = config["nodes"]

    match = re.fullmatch(r"kindest/node:v(\d+\.\d+)\.\d+@sha256:[0-9a-f]{64}", node["image"])
    assert match, node["image"]
    assert match.group(1) == chartkit.KUBERNETES_VERSION


def test_kubectl_and_kind_versions_match_the_cluster_and_the_workflow():
    tools = (chartkit.REPO / "infra" / "helm" / "install-tools.sh").read_text()
    (pinned,) = re.findall(r'^KUBECTL_VERSION="(v[\d.]+)"', tools, re.MULTILINE)
    kubectl = pinned[1:].rsplit(".", 1)[0]
    kind_version = plan.KIND_VERSION
    workflow = chartkit.load_yaml(chartkit.REPO / ".github" / "workflows" / "e2e-kind.yml")
    kind_steps = [
        step
        for job in workflow["jobs"].values()
        for step in job["steps"]
        if step.get("uses", "").startswith("helm/kind-action@")
    ]

    assert kubectl == chartkit.KUBERNETES_VERSION
    assert kind_version in plan.KIND_CONFIG.read_text()
    assert [step["with"]["version"] for step in kind_steps] == [kind_version]
    assert all(step["with"]["install_only"] is True for step in kind_steps)
    assert [step["with"]["kubectl_version"] for step in kind_steps] == [pinned]


# -- the kind deployment fits the GitHub runner it runs on ----------------------------------------
RUNNER_CPU_MILLICORES = 4000
RUNNER_MEMORY_MIB = 16 * 1024
# What the node needs besides our pods: the kind control plane and its add-ons (requests of
# about 1 CPU), the container runtime, the kernel and the image builds' page cache.
RESERVED_CPU_MILLICORES = 1000
RESERVED_MEMORY_MIB = 3 * 1024


def millicores(quantity: str) -> float:
    return float(quantity[:-1]) if quantity.endswith("m") else float(quantity) * 1000


def mebibytes(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * factor
    return float(quantity) / 2**20


def pod_resources(spec: dict) -> tuple[float, float, float]:
    """(CPU requested, memory requested, memory limit) of a pod's long-running containers."""
    cpu = memory = limit = 0.0
    for container in spec["containers"]:
        resources = container.get("resources") or {}
        requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
        cpu += millicores(requests.get("cpu", "0"))
        memory += mebibytes(requests.get("memory", "0"))
        assert "memory" in limits, f"{container['name']} has no memory limit"
        limit += mebibytes(limits["memory"])
    return cpu, memory, limit


def test_kind_deployment_with_its_concurrent_runs_fits_a_standard_github_runner(
    deployment_renders,
):
    renders = deployment_renders["kind"]
    totals = [0.0, 0.0, 0.0]
    for docs in renders.values():
        for doc in docs:
            if doc["kind"] in {"Deployment", "StatefulSet"}:
                replicas = doc["spec"].get("replicas", 1)
                for i, value in enumerate(pod_resources(doc["spec"]["template"]["spec"])):
                    totals[i] += replicas * value
    instance = next(
        d
        for d in renders[chartkit.SYSTEM_RELEASE]
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-instance")
    )
    coordinator = yaml.safe_load(instance["data"]["dagster.yaml"])["run_coordinator"]["config"]
    runs = coordinator["max_concurrent_runs"]
    # Each run pod gets its code server's resources (includeConfigInLaunchedRuns).
    per_location = [pod_resources({"containers": [loc.deployment]}) for loc in LOCATIONS]
    run = [max(values) for values in zip(*per_location, strict=True)]
    cpu, memory, limit = (total + runs * one for total, one in zip(totals, run, strict=True))

    assert runs >= 2, "the end-to-end body needs runs side by side"
    assert cpu <= RUNNER_CPU_MILLICORES - RESERVED_CPU_MILLICORES, cpu
    assert memory <= (RUNNER_MEMORY_MIB - RESERVED_MEMORY_MIB) / 2, memory
    assert limit <= RUNNER_MEMORY_MIB - RESERVED_MEMORY_MIB, f"memory limits sum to {limit} MiB"
