"""The `kind` driver: the real Helm deployment on a kind cluster.

Unless E2E_KIND_REUSE=1 (a cluster already deployed by `make kind-deploy`), it creates the
cluster, loads the images, creates the Secrets and deploys with the kind overlays, all through
the Makefile, as the platform team would. The body's alert receiver listens on the kind Docker
network's gateway (this machine, as the pods see it); its URL goes into every team's Secret as
ALERT_WEBHOOK_URL (infra/kind/secrets.sh; on a reused cluster the code servers are restarted to
read it). It then forwards the webserver and PostgreSQL to
local ports (supervised: each forward is waited for until it answers and restarted when it
drops, e.g. when a rollout replaces the pod behind it), seeds the demo shop through the forward
and puts the payment files on the landing volume through the ingestion code server's pod. It
deletes the cluster at the end unless E2E_KIND_KEEP=1. Diagnostics on failure:
infra/kind/diagnostics.sh (objects, events, every container's logs, helm releases, kind logs).
"""

import base64
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from platform_devkit.e2e.base import Deployment, location_names
from platform_devkit.e2e.graphql import DagsterGraphQL
from platform_devkit.paths import REPO_ROOT
from platform_devkit.postgres import free_port
from platform_devkit.shop.generator import SIZES, ShopSource

CLUSTER = os.environ.get("KIND_CLUSTER", "data-platform")
CONTEXT = f"kind-{CLUSTER}"
NAMESPACE = os.environ.get("NAMESPACE", "data-platform")
REGISTRY = os.environ.get("REGISTRY", "data-platform")
# Names given by charts/platform and the official charts for the releases `make deploy` creates.
# Every kubectl call of the driver: the kind cluster's context and the platform's namespace.
KUBECTL = ("kubectl", "--context", CONTEXT, "--namespace", NAMESPACE)
WEBSERVER_SERVICE = "dagster-dagster-webserver"
POSTGRES_SERVICE = "platform-postgresql"
ADMIN_SECRET = "platform-postgres-admin"  # noqa: S105 (a Secret's name)
LANDING = "/data/landing/payments"
EXPORTS = "/data/exports"

# Runs in a code server's pod with the image's Python: files below a folder, base64 in JSON.
_READ_FILES = """
import base64, json, pathlib, sys
root = pathlib.Path(sys.argv[1])
base = pathlib.Path(sys.argv[2])
print(json.dumps({str(p.relative_to(root)): base64.b64encode(p.read_bytes()).decode()
                  for p in sorted((root / base).rglob("*")) if p.is_file()}))
"""
_WRITE_FILE = """
import pathlib, sys
path = pathlib.Path(sys.argv[1])
path.parent.mkdir(parents=True, exist_ok=True)
path.write_bytes(sys.stdin.buffer.read())
"""


class PortForward:
    """`kubectl port-forward` to a Service on a fixed local port, kept alive: started again
    whenever it exits (kubectl ends a forward when the pod behind it goes away)."""

    def __init__(self, target: str, remote: int, progress: Callable[[str], None]) -> None:
        self.target, self.remote, self.progress = target, remote, progress
        self.local = free_port()
        self.process: subprocess.Popen | None = None
        self.restarts = 0
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, daemon=True)

    def _spawn(self) -> None:
        self.process = subprocess.Popen(
            [
                *KUBECTL,
                "port-forward",
                "--address",
                "127.0.0.1",
                self.target,
                f"{self.local}:{self.remote}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _answers(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.local), timeout=2).close()
        except OSError:
            return False
        return True

    def _until_answering(self, timeout: float) -> bool:
        """Wait until the local port answers, starting kubectl again whenever it exits."""
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self._stop.is_set() or time.monotonic() > deadline:
                return False
            if self.process.poll() is not None:
                self._spawn()
            time.sleep(1)
        return True

    def start(self, timeout: float = 120) -> int:
        self._spawn()
        if not self._until_answering(timeout):
            self.stop()
            raise RuntimeError(f"port-forward to {self.target} never answered in {timeout:.0f}s")
        self._watcher.start()
        return self.local

    def _watch(self) -> None:
        while not self._stop.wait(1):
            if self.process.poll() is not None:
                self.restarts += 1
                self.progress(f"port-forward to {self.target} dropped; restarting it")
                self._spawn()
                if not self._until_answering(120) and not self._stop.is_set():
                    self.progress(f"port-forward to {self.target} does not answer again yet")

    def stop(self) -> None:
        self._stop.set()
        if self._watcher.is_alive():
            self._watcher.join(timeout=130)
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def kind_available() -> str | None:
    """None when kind, kubectl, helm and Docker are usable, else what is missing."""
    for tool in ("kind", "kubectl", "helm", "docker"):
        if shutil.which(tool) is None:
            return (
                f"{tool} is not on PATH; the kind driver runs in GitHub Actions "
                "(.github/workflows/e2e-kind.yml) or on a machine where kind can create a node"
            )
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        return "no Docker engine reachable"
    return None


class KindDeployment(Deployment):
    name = "kind"

    def __init__(self, workdir: Path, progress: Callable[[str], None], tag: str) -> None:
        super().__init__(workdir, progress)
        self.tag = tag
        self.forwards: list[PortForward] = []
        self.admin: dict[str, str] = {}

    # -- plumbing ----------------------------------------------------------------------------
    def kubectl(self, *args: str, input: bytes | None = None, check: bool = True) -> bytes:
        result = subprocess.run(
            [*KUBECTL, *args],
            input=input, capture_output=True, timeout=600,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr.decode()[-2000:]}")
        return result.stdout

    def make(self, *targets: str, **variables: str) -> None:
        argv = ["make", "--no-print-directory", *targets]
        argv += [f"{k}={v}" for k, v in {"KUBE_CONTEXT": CONTEXT, **variables}.items()]
        self.progress(" ".join(argv))
        # The webhook URL reaches secrets.sh through the environment, not the command line.
        # A team's own <NAME>_ALERT_WEBHOOK_URL from the shell would win over the receiver and
        # send test alerts to a real channel: the test's run has none.
        env = {k: v for k, v in os.environ.items() if not k.endswith("_ALERT_WEBHOOK_URL")}
        if self.alerts:
            env["ALERT_WEBHOOK_URL"] = self.alerts.url
        subprocess.run(argv, cwd=REPO_ROOT, check=True, timeout=1800, env=env)

    @staticmethod
    def docker_gateway() -> str:
        """This machine's IPv4 address on the kind Docker network: where pods reach the host."""
        gateways = subprocess.run(
            ["docker", "network", "inspect", "kind", "--format",
             "{{range .IPAM.Config}}{{.Gateway}} {{end}}"],
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        ipv4 = [g for g in gateways if "." in g]
        if not ipv4:
            raise RuntimeError(f"the kind Docker network has no IPv4 gateway: {gateways}")
        return ipv4[0]

    def secret(self, name: str) -> dict[str, str]:
        data = json.loads(self.kubectl("get", "secret", name, "-o", "json"))["data"]
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    def pod(self, location: str) -> str:
        """The serving pod of a location's code server (label set by dagster-user-deployments):
        Ready and not terminating, the newest one during a rollout."""
        pods = json.loads(self.kubectl("get", "pods", "-l", f"deployment={location}", "-o", "json"))
        serving = [
            p
            for p in pods["items"]
            if not p["metadata"].get("deletionTimestamp")
            and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p["status"].get("conditions") or []
            )
        ]
        if not serving:
            raise RuntimeError(f"no Ready pod of the {location} code server")
        return max(serving, key=lambda p: p["metadata"]["creationTimestamp"])["metadata"]["name"]

    def python_in(self, location: str, script: str, *args: str, input: bytes | None = None):
        return self.kubectl(
            "exec", "-i", self.pod(location), "--", "python", "-c", script, *args, input=input
        )

    def port_forward(self, target: str, remote: int) -> int:
        forward = PortForward(target, remote, self.progress)
        self.forwards.append(forward)
        return forward.start()

    def deployment_of(self, location: str) -> str:
        return self.kubectl(
            "get", "deployments", "-l", f"deployment={location}",
            "-o", "jsonpath={.items[0].metadata.name}",
        ).decode()  # fmt: skip

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> "KindDeployment":
        try:
            return self._start()
        except BaseException:
            self._stop_forwards()
            super().__exit__()
            raise

    def _stop_forwards(self) -> None:
        for forward in self.forwards:
            forward.stop()

    def _start(self) -> "KindDeployment":
        reuse = os.environ.get("E2E_KIND_REUSE") == "1"
        if not reuse:
            self.make("kind-up")  # the Docker network the receiver listens on
        self.start_alerts(self.docker_gateway())
        if reuse:
            self.make("secrets")
            # Environment variables are read at start: the servers restart with the new URL.
            deployments = [f"deployment/{self.deployment_of(n)}" for n in location_names()]
            self.kubectl("rollout", "restart", *deployments)
            for deployment in deployments:
                self.kubectl("rollout", "status", deployment, "--timeout=300s")
        else:
            self.make("kind-deploy", TAG=self.tag)
        # The webserver listens on 8080: a non-root process cannot bind a port below 1024.
        web_port = self.port_forward(f"svc/{WEBSERVER_SERVICE}", 8080)
        self.webserver_url = f"http://127.0.0.1:{web_port}"
        pg_port = self.port_forward(f"svc/{POSTGRES_SERVICE}", 5432)
        credentials = self.secret(ADMIN_SECRET)
        self.admin = {
            "PGHOST": "127.0.0.1", "PGPORT": str(pg_port),
            "PGUSER": credentials["PGUSER"], "PGPASSWORD": credentials["PGPASSWORD"],
        }  # fmt: skip
        self.graphql = DagsterGraphQL(self.webserver_url, self.progress)
        self.graphql.wait_until_serving()
        self._seed()
        return self

    def _seed(self) -> None:
        """The demo shop in the cluster's server, its payment files on the landing volume."""
        ingestion = self.secret("ingestion-credentials")
        landing, outbox = self.workdir / "landing", self.workdir / "outbox"
        source = ShopSource(
            admin=self.admin, database="shop", reader_user=ingestion["SHOP_DB_USER"],
            reader_password=ingestion["SHOP_DB_PASSWORD"], landing=landing, outbox=outbox,
        )  # fmt: skip
        source.create()
        if source.state() is None:
            source.seed(SIZES["tiny"], size_name="tiny")
        for file in sorted(landing.iterdir()):
            self.python_in(
                "ingestion", _WRITE_FILE, f"{LANDING}/{file.name}", input=file.read_bytes()
            )
        self.progress(f"seeded the shop and put {len(list(landing.iterdir()))} payment files")

    def __exit__(self, *exc) -> None:
        self._stop_forwards()
        super().__exit__(*exc)
        if os.environ.get("E2E_KIND_KEEP") != "1" and os.environ.get("E2E_KIND_REUSE") != "1":
            self.make("kind-down")

    # -- data --------------------------------------------------------------------------------
    def admin_settings(self) -> dict[str, str]:
        return self.admin

    def _files(self, location: str, root: str, folder: str) -> dict[str, bytes]:
        listing = json.loads(self.python_in(location, _READ_FILES, root, folder))
        return {path: base64.b64decode(data) for path, data in listing.items()}

    def export_files(self, folder: str) -> dict[str, bytes]:
        return self._files("exports", EXPORTS, folder)

    def delivered_payment_days(self) -> list[str]:
        files = self._files("ingestion", LANDING, ".")
        return sorted(Path(p).stem.removeprefix("payments_") for p in files if p.endswith(".csv"))

    # -- code servers ------------------------------------------------------------------------
    def _scale(self, location: str, replicas: int) -> None:
        name = self.deployment_of(location)
        self.progress(f"scaling {name} to {replicas}")
        self.kubectl("scale", f"deployment/{name}", f"--replicas={replicas}")
        if replicas:
            self.kubectl("rollout", "status", f"deployment/{name}", "--timeout=300s")
        else:
            self.kubectl(
                "wait", "--for=delete", "pod", "-l", f"deployment={location}", "--timeout=120s",
                check=False,
            )  # fmt: skip

    def stop_location(self, name: str) -> None:
        self._scale(name, 0)

    def start_location(self, name: str) -> None:
        self._scale(name, 1)

    def upgrade_location(self, name: str) -> None:
        """A new image tag, loaded into the node and rolled out by the team's own release."""
        new_tag = f"{self.tag}-upgrade"
        subprocess.run(
            ["docker", "tag", f"{REGISTRY}/{name}:{self.tag}", f"{REGISTRY}/{name}:{new_tag}"],
            check=True,
        )
        self.make("kind-load", LOCATION=name, TAG=new_tag)
        self.make("deploy-location", LOCATION=name, TAG=new_tag, OVERLAY="kind")
        image = self.kubectl(
            "get", f"deployment/{self.deployment_of(name)}",
            "-o", "jsonpath={.spec.template.spec.containers[0].image}",
        ).decode()  # fmt: skip
        assert image == f"{REGISTRY}/{name}:{new_tag}", image

    # -- assertions only a cluster can make --------------------------------------------------
    def verify_runtime_isolation(self) -> None:
        """Runs were Kubernetes Jobs with their location's image, and each got its own team's
        Secret and no other team's."""
        jobs = json.loads(
            self.kubectl(
                "get", "jobs", "-l", "app.kubernetes.io/component=run_worker", "-o", "json"
            )
        )["items"]
        seen = set()
        for job in jobs:
            location = job["metadata"]["labels"]["dagster/code-location"]
            (container,) = job["spec"]["template"]["spec"]["containers"]
            assert container["image"].startswith(f"{REGISTRY}/{location}:"), container["image"]
            secrets = {
                source["secretRef"]["name"]
                for source in container.get("envFrom", [])
                if "secretRef" in source
            }
            assert secrets == {f"{location}-credentials"}, (location, secrets)
            seen.add(location)
        assert seen == set(location_names()), f"run Jobs only for {seen}"

    def diagnostics(self) -> str:
        """infra/kind/diagnostics.sh into the artifacts folder; its summary as the report."""
        folder = self.artifacts / "cluster"
        result = subprocess.run(
            ["bash", str(REPO_ROOT / "infra" / "kind" / "diagnostics.sh"), str(folder)],
            env={
                **os.environ,
                "NAMESPACE": NAMESPACE,
                "KUBE_CONTEXT": CONTEXT,
                "KIND_CLUSTER": CLUSTER,
            },
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        summary = folder / "SUMMARY.txt"
        listing = summary.read_text() if summary.exists() else ""
        return f"{result.stdout}{result.stderr}{listing}"
