"""`make kind-deploy` run for real, against stand-ins for what only a cluster has: a `kind` that
records what it is asked, the Secrets API stand-in of test_secrets_script.py as `kubectl`, and
a `helm` that answers every `helm upgrade --install` by rendering it with the real helm
(`helm template` with the same arguments, values-schema validation on). So the whole sequence
(cluster, image loads, namespace, Secrets, installs in order, waits) runs as in GitHub Actions,
and every release it installs is rendered from the arguments it passed."""

import json
import os
import subprocess
import sys

import chartkit
import pytest
import yaml
from test_secrets_script import FAKE_KUBECTL, kubectl_binary

from platform_devkit.deploy import plan
from platform_devkit.testing import stand_in

pytestmark = pytest.mark.helm

LOCATIONS = chartkit.locations()
TAG = "abc1234"

FAKE_KIND = r"""
import json, os, sys
with open(os.environ["FAKE_CALLS"], "a") as log:
    log.write(json.dumps(["kind", *sys.argv[1:]]) + "\n")
"""

# Records the call, then renders `upgrade --install` as `template` with the real helm.
FAKE_HELM = r"""
import json, os, subprocess, sys
args = sys.argv[1:]
with open(os.environ["FAKE_CALLS"], "a") as log:
    log.write(json.dumps(["helm", *args]) + "\n")
assert args[:2] == ["upgrade", "--install"], args
skip = {"--wait": 0, "--atomic": 0, "--timeout": 1, "--kube-context": 1}
template, rest = ["template"], args[2:]
while rest:
    arg = rest.pop(0)
    if arg in skip:
        del rest[:skip[arg]]
    else:
        template.append(arg)
result = subprocess.run([os.environ["REAL_HELM"], *template, "--skip-tests"],
                        capture_output=True, text=True)
open(os.path.join(os.environ["FAKE_RENDERS"], template[1] + ".yaml"), "w").write(result.stdout)
sys.stderr.write(result.stderr)
sys.exit(result.returncode)
"""


def without_flags(args: list[str]) -> list[str]:
    out, rest = [], list(args)
    while rest:
        arg = rest.pop(0)
        if arg in {"--context", "--namespace"}:
            rest.pop(0)
        else:
            out.append(arg)
    return out


@pytest.fixture(scope="module")
def kind_deploy(official_charts, tmp_path_factory):
    """`python -m platform_devkit.deploy kind` (what `make kind-deploy` runs) against the
    stand-ins: (calls in order, renders by release, the stand-in cluster's state)."""
    root = tmp_path_factory.mktemp("kind-deploy")
    bin_dir, renders = root / "bin", root / "renders"
    renders.mkdir()
    stand_in(bin_dir, "kind", FAKE_KIND)
    stand_in(bin_dir, "helm", FAKE_HELM)
    stand_in(bin_dir, "kubectl", FAKE_KUBECTL)
    calls, state = root / "calls.log", root / "state.json"
    state.write_text(json.dumps({"namespaces": [], "secrets": {}}))
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_CALLS": str(calls),
        "FAKE_RENDERS": str(renders),
        "FAKE_KUBE_STATE": str(state),
        "FAKE_KUBE_LOG": str(calls),
        "REAL_KUBECTL": kubectl_binary(),
        "REAL_HELM": chartkit.helm_binary(),
        "KUBECONFIG": str(root / "no-kubeconfig"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "platform_devkit.deploy", "--tag", TAG, "kind"],
        cwd=chartkit.REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    logged = [json.loads(line) for line in calls.read_text().splitlines()]
    # The kubectl stand-in logs its arguments without the program name; its context and
    # namespace flags are dropped here so calls read as what they do.
    tools = {"kind", "helm"}
    ordered = [c if c[0] in tools else ["kubectl", *without_flags(c)] for c in logged]
    rendered = {
        path.stem: [d for d in yaml.safe_load_all(path.read_text()) if d]
        for path in renders.glob("*.yaml")
    }
    return ordered, rendered, json.loads(state.read_text()), result.stdout


def test_make_kind_deploy_runs_this_command():
    dry = subprocess.run(
        ["make", "--no-print-directory", "-n", "kind-deploy", f"TAG={TAG}"],
        cwd=chartkit.REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout

    assert "python -m platform_devkit.deploy" in dry
    assert f"--tag '{TAG}'" in dry
    assert dry.rstrip().endswith(" kind")


def test_the_cluster_is_created_then_every_image_loaded_before_anything_is_installed(kind_deploy):
    calls, _, _, _ = kind_deploy
    kind = [c for c in calls if c[0] == "kind" and c[1] != "version"]
    first_install = next(i for i, c in enumerate(calls) if c[0] == "helm")

    assert kind[0] == ["kind", "get", "clusters"]
    assert kind[1][:5] == ["kind", "create", "cluster", "--name", "data-platform"]
    assert kind[1][kind[1].index("--config") + 1] == "infra/kind/cluster.yaml"
    assert [c[:5] for c in kind[2:]] == [
        ["kind", "load", "docker-image", "--name", "data-platform"]
    ] * len(LOCATIONS)
    assert [c[-1] for c in kind[2:]] == [f"data-platform/{loc.name}:{TAG}" for loc in LOCATIONS]
    assert max(i for i, c in enumerate(calls) if c[0] == "kind") < first_install


def test_the_namespace_enforces_restricted_and_secrets_exist_before_the_first_install(kind_deploy):
    calls, rendered, state, _ = kind_deploy
    first_install = next(i for i, c in enumerate(calls) if c[0] == "helm")
    secret_writes = [i for i, c in enumerate(calls) if c[:3] == ["kubectl", "apply", "-f"]]
    required = set().union(*(chartkit.secret_names_in(docs) for docs in rendered.values()))

    assert state["labels"]["data-platform"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert max(secret_writes) < first_install
    assert required
    assert required <= set(state["secrets"]["data-platform"])


def test_releases_are_installed_in_order_each_dagster_one_waited_for(kind_deploy):
    calls, _, _, _ = kind_deploy
    installs = [c for c in calls if c[0] == "helm"]

    assert [c[3] for c in installs] == ["platform", "dagster", *(loc.name for loc in LOCATIONS)]
    for call in installs:
        assert call[call.index("--kube-context") + 1] == "kind-data-platform"
        assert call[call.index("--namespace") + 1] == "data-platform"
    assert "--wait" not in installs[0]
    assert all({"--wait", "--atomic"} <= set(c) for c in installs[1:])


def test_every_release_it_installed_rendered_valid_with_the_kind_overlays_and_the_tag(kind_deploy):
    _, rendered, _, _ = kind_deploy
    settings = plan.Settings(tag=TAG, overlay="kind", kube_context="kind-data-platform")

    assert sorted(rendered) == sorted(r.name for r in plan.releases(settings))
    for name, docs in rendered.items():
        core = [d for d in docs if not d["apiVersion"].startswith("external-secrets.io/")]
        assert [e for e in map(chartkit.kubernetes_errors, core) if e] == [], name
    for location in LOCATIONS:
        (deployment,) = [d for d in rendered[location.name] if d["kind"] == "Deployment"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"] == f"data-platform/{location.name}:{TAG}"
