"""infra/kind/secrets.sh against a stand-in API server: a `kubectl` on PATH that keeps Secrets in
a JSON file and hands manifest generation (`create --dry-run=client -o yaml`) to the real
kubectl. The cluster is outside the product; the script's logic and kubectl's output are not."""

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import chartkit
import pytest

from platform_devkit import locations
from platform_devkit.testing import stand_in

pytestmark = pytest.mark.helm

FAKE_KUBECTL = r"""
import base64, json, os, shutil, subprocess, sys, tempfile

state_path = os.environ["FAKE_KUBE_STATE"]
state = json.load(open(state_path))
with open(os.environ["FAKE_KUBE_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\n")

args, namespace = [], None
rest = sys.argv[1:]
while rest:
    arg = rest.pop(0)
    if arg == "--context":
        rest.pop(0)
    elif arg == "--namespace":
        namespace = rest.pop(0)
    else:
        args.append(arg)
secrets = state["secrets"].setdefault(namespace, {})

def save():
    json.dump(state, open(state_path, "w"))

if args[:2] == ["get", "namespace"]:
    sys.exit(0 if args[2] in state["namespaces"] else 1)
if args[:2] == ["get", "secret"]:
    if args[2] not in secrets:
        print(f'Error from server (NotFound): secrets "{args[2]}" not found', file=sys.stderr)
        sys.exit(1)
    if len(args) > 3:
        keys_only = "go-template={{range $key, $value := .data}}{{$key}}{{\"\\n\"}}{{end}}"
        assert args[3:5] == ["-o", keys_only], args
        print("".join(f"{key}\n" for key in sorted(secrets[args[2]])), end="")
    sys.exit(0)
if args[:3] == ["create", "secret", "generic"]:
    assert "--dry-run=client" in args, args
    source = next(a.split("=", 1)[1] for a in args if a.startswith("--from-env-file="))
    with tempfile.NamedTemporaryFile("w", delete=False) as copy:
        copy.write(open(source).read())
    real = [a for a in args if not a.startswith("--from-env-file=")]
    result = subprocess.run(
        [os.environ["REAL_KUBECTL"], "--namespace", namespace, *real,
         f"--from-env-file={copy.name}"], capture_output=True, text=True)
    os.unlink(copy.name)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    sys.exit(result.returncode)
if args[:2] == ["apply", "-f"]:
    import yaml
    doc = yaml.safe_load(sys.stdin)
    if doc["kind"] == "Namespace":
        state["namespaces"].append(doc["metadata"]["name"])
        state.setdefault("labels", {})[doc["metadata"]["name"]] = doc["metadata"]["labels"]
    else:
        secrets[doc["metadata"]["name"]] = doc["data"]
    save()
    sys.exit(0)
if args[:2] == ["patch", "secret"]:
    patch = json.load(open(args[args.index("--patch-file") + 1]))
    for key, value in patch["stringData"].items():
        secrets[args[2]][key] = base64.b64encode(value.encode()).decode()
    save()
    sys.exit(0)
print(f"fake kubectl: unsupported {args}", file=sys.stderr)
sys.exit(3)
"""


@pytest.fixture
def cluster(tmp_path: Path):
    kubectl = kubectl_binary()
    bin_dir = tmp_path / "bin"
    stand_in(bin_dir, "kubectl", FAKE_KUBECTL)
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"namespaces": ["data-platform"], "secrets": {}}))
    log = tmp_path / "argv.log"

    def run(
        *args: str,
        namespace: str = "data-platform",
        alert_webhook_url: str = "",
        webhooks: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        env = {
            **{k: v for k, v in os.environ.items() if not k.endswith("ALERT_WEBHOOK_URL")},
            **({"ALERT_WEBHOOK_URL": alert_webhook_url} if alert_webhook_url else {}),
            **(webhooks or {}),
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "FAKE_KUBE_STATE": str(state),
            "FAKE_KUBE_LOG": str(log),
            "REAL_KUBECTL": kubectl,
            "NAMESPACE": namespace,
            "KUBECONFIG": str(tmp_path / "no-kubeconfig"),
        }
        return subprocess.run(
            ["bash", str(chartkit.SECRETS_SCRIPT), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )

    def secrets() -> dict[str, dict[str, str]]:
        stored = json.loads(state.read_text())["secrets"].get("data-platform", {})
        return {
            name: {k: base64.b64decode(v).decode() for k, v in data.items()}
            for name, data in stored.items()
        }

    def store(name: str, data: dict[str, str]) -> None:
        current = json.loads(state.read_text())
        current["secrets"].setdefault("data-platform", {})[name] = {
            k: base64.b64encode(v.encode()).decode() for k, v in data.items()
        }
        state.write_text(json.dumps(current))

    run.secrets, run.store, run.argv = secrets, store, lambda: log.read_text()
    return run


def kubectl_binary() -> str:
    """kubectl on PATH, else the copy `make tools` installs into .tools/bin."""
    found = shutil.which("kubectl") or chartkit.REPO / ".tools" / "bin" / "kubectl"
    if not Path(found).exists():
        pytest.skip("kubectl is not on PATH nor in .tools/bin: run `make tools`")
    return str(found)


def test_first_run_creates_every_secret_with_random_passwords_and_prints_none(cluster):
    result = cluster()
    created = cluster.secrets()

    assert result.returncode == 0, result.stderr
    assert {name: sorted(data) for name, data in created.items()} == {
        name: sorted(keys) for name, keys in chartkit.secrets_script_listing().items()
    }
    passwords = [
        v
        for data in created.values()
        for k, v in data.items()
        if "PASSWORD" in k or k.endswith("-password")
    ]
    # Every warehouse role's, the shop reader's, the admin's and Dagster's.
    roles = locations.warehouse_roles(locations.load())
    assert len(passwords) == len(set(passwords)) == len(roles) + 3
    assert all(len(p) == 48 and set(p) <= set("0123456789abcdef") for p in passwords)
    assert created["ingestion-credentials"]["INGESTION_WAREHOUSE_USER"] == "ingestion"
    assert created["ingestion-credentials"]["SHOP_DB_USER"] == "shop_reader"
    assert created["platform-postgres-admin"]["PGUSER"] == "postgres"
    for password in passwords:
        assert password not in result.stdout + result.stderr
        assert password not in cluster.argv()


def test_a_second_run_keeps_every_secret_as_it_is(cluster):
    cluster()
    before = cluster.secrets()

    result = cluster()

    assert result.returncode == 0, result.stderr
    assert cluster.secrets() == before
    assert result.stdout.count("exists, kept") == len(before)


def test_missing_keys_are_added_and_existing_values_kept(cluster):
    cluster.store("ingestion-credentials", {"INGESTION_WAREHOUSE_PASSWORD": "chosen-by-hand"})

    result = cluster()
    ingestion = cluster.secrets()["ingestion-credentials"]

    assert result.returncode == 0, result.stderr
    assert ingestion["INGESTION_WAREHOUSE_PASSWORD"] == "chosen-by-hand"
    assert set(ingestion) == set(chartkit.secrets_script_listing()["ingestion-credentials"])
    assert "ingestion-credentials: exists, added" in result.stdout
    assert "chosen-by-hand" not in cluster.argv()


def test_rotate_replaces_the_passwords_of_the_named_secret_only(cluster):
    cluster()
    before = cluster.secrets()

    result = cluster("--rotate", "exports-credentials")
    after = cluster.secrets()

    assert result.returncode == 0, result.stderr
    assert (
        after["exports-credentials"]["EXPORTS_WAREHOUSE_PASSWORD"]
        != (before["exports-credentials"]["EXPORTS_WAREHOUSE_PASSWORD"])
    )
    assert after["exports-credentials"]["EXPORTS_WAREHOUSE_USER"] == "exports"
    assert {k: v for k, v in after.items() if k != "exports-credentials"} == {
        k: v for k, v in before.items() if k != "exports-credentials"
    }


def test_a_missing_namespace_stops_the_script_with_a_hint(cluster):
    result = cluster(namespace="elsewhere")

    assert result.returncode == 1
    assert "make secrets or make deploy creates it" in result.stderr
    assert cluster.secrets() == {}


def test_listing_needs_no_cluster_and_shows_no_values():
    listing = chartkit.secrets_script_listing()

    assert "dagster-postgresql-secret" in listing
    assert all(
        key.isupper() or key == "postgresql-password" for keys in listing.values() for key in keys
    )


# A webhook URL carries a token, like a password: the script must never show it.
WEBHOOK = "https://hooks.example.internal/services/T000/B000/token-d41d8cd98f00b204e9800998"


def test_an_alert_webhook_url_goes_into_every_location_secret_and_no_other(cluster):
    result = cluster(alert_webhook_url=WEBHOOK)
    created = cluster.secrets()
    teams = {loc.secret for loc in locations.load()}

    assert result.returncode == 0, result.stderr
    assert {name for name, data in created.items() if "ALERT_WEBHOOK_URL" in data} == teams
    assert {created[name]["ALERT_WEBHOOK_URL"] for name in teams} == {WEBHOOK}
    assert WEBHOOK not in result.stdout + result.stderr
    assert WEBHOOK not in cluster.argv()


def test_a_new_webhook_url_replaces_the_old_and_none_given_keeps_it(cluster):
    cluster(alert_webhook_url="http://127.0.0.1:9/old")
    cluster(alert_webhook_url=WEBHOOK)
    cluster()

    assert cluster.secrets()["transformation-credentials"]["ALERT_WEBHOOK_URL"] == WEBHOOK
    assert "ALERT_WEBHOOK_URL" not in cluster.secrets()["bi-reader-credentials"]


@pytest.mark.parametrize("url", ["hooks.example.internal/x", 'http://a"b', "http://a b"])
def test_a_malformed_webhook_url_is_refused_naming_the_variable(cluster, url):
    result = cluster(alert_webhook_url=url)

    assert result.returncode == 2
    assert "ALERT_WEBHOOK_URL" in result.stderr
    assert cluster.secrets() == {}


def test_each_team_gets_its_own_webhook_and_the_others_the_shared_one(cluster):
    """<LOCATION>_ALERT_WEBHOOK_URL for a team's own channel, ALERT_WEBHOOK_URL for the rest."""
    found = locations.load()
    own, *rest = found
    team_url = "https://hooks.example.internal/services/T111/B111/own-team-token-0123456789"
    result = cluster(
        alert_webhook_url=WEBHOOK, webhooks={f"{own.name.upper()}_ALERT_WEBHOOK_URL": team_url}
    )
    created = cluster.secrets()

    assert result.returncode == 0, result.stderr
    assert created[own.secret]["ALERT_WEBHOOK_URL"] == team_url
    assert {created[loc.secret]["ALERT_WEBHOOK_URL"] for loc in rest} == {WEBHOOK}
    for url in (team_url, WEBHOOK):
        assert url not in result.stdout + result.stderr
        assert url not in cluster.argv()
    assert f"{own.secret}: ALERT_WEBHOOK_URL set from {own.name.upper()}_ALERT_WEBHOOK_URL" in (
        result.stdout
    )


def test_a_team_webhook_alone_reaches_only_that_team(cluster):
    last = locations.load()[-1]
    url = "http://127.0.0.1:9/only-this-team"
    result = cluster(webhooks={f"{last.name.upper()}_ALERT_WEBHOOK_URL": url})
    created = cluster.secrets()

    assert result.returncode == 0, result.stderr
    assert {name for name, data in created.items() if "ALERT_WEBHOOK_URL" in data} == {last.secret}
    assert created[last.secret]["ALERT_WEBHOOK_URL"] == url


@pytest.mark.parametrize(
    "url", ["hooks.example.internal/x", 'http://a"b', "http://a b", "http://a\\b"]
)
def test_a_malformed_team_webhook_url_is_refused_naming_its_variable_only(cluster, url):
    variable = f"{locations.load()[0].name.upper()}_ALERT_WEBHOOK_URL"
    result = cluster(alert_webhook_url=WEBHOOK, webhooks={variable: url})

    assert result.returncode == 2
    assert f"secrets.sh: {variable} is not an http(s) URL" in result.stderr
    assert url not in result.stdout + result.stderr
    # Checked before anything changes: not even the valid shared URL was written.
    assert cluster.secrets() == {}
