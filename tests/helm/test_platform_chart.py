"""charts/platform rendered by the real helm: lint, Kubernetes schemas, security settings,
NetworkPolicies against the official charts' pod labels, the bootstrap Job and its SQL."""

import hashlib

import chartkit
import pytest
import yaml
from chartkit import PLATFORM_SCENARIOS

from platform_devkit import locations

pytestmark = pytest.mark.helm

LOCATIONS = chartkit.locations()


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def platform_values() -> dict:
    return chartkit.load_yaml(chartkit.PLATFORM_CHART / "values.yaml")


@pytest.mark.parametrize("overlay", ["", "values-kind.yaml", "values-prod.yaml"])
def test_helm_lint_passes_with_every_shipped_values_file(helm_available, overlay):
    args = [
        "lint",
        "--strict",
        str(chartkit.PLATFORM_CHART),
        "-f",
        str(chartkit.platform_generated()),
    ]
    if overlay:
        args += ["-f", str(chartkit.PLATFORM_CHART / overlay)]

    result = chartkit.helm(*args)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_values_outside_the_chart_schema_are_refused(helm_available):
    result = chartkit.helm(
        "template", "platform", str(chartkit.PLATFORM_CHART), "--set", "postgres.enabeld=false"
    )

    assert result.returncode != 0
    assert "enabeld" in result.stderr


def test_a_managed_server_without_a_host_is_refused(helm_available):
    result = chartkit.helm(
        "template", "platform", str(chartkit.PLATFORM_CHART), "-f",
        str(chartkit.platform_generated()), "--set", "postgres.enabled=false",
    )  # fmt: skip

    assert result.returncode != 0
    assert "postgres.external.host is required" in result.stderr


@pytest.mark.parametrize("scenario", PLATFORM_SCENARIOS)
def test_every_rendered_manifest_is_a_valid_kubernetes_object(platform_renders, scenario):
    docs = platform_renders[scenario]
    core = [d for d in docs if not d["apiVersion"].startswith("external-secrets.io/")]

    errors = [e for e in map(chartkit.kubernetes_errors, core) if e]

    assert core, "nothing rendered"
    assert errors == []


@pytest.mark.parametrize("scenario", PLATFORM_SCENARIOS)
def test_every_pod_meets_the_restricted_pod_security_standard(platform_renders, scenario):
    pods = list(chartkit.pod_templates(platform_renders[scenario]))

    violations = {name: chartkit.restricted_violations(spec) for name, _, spec in pods}

    assert pods
    assert violations == {name: [] for name, _, _ in pods}


@pytest.mark.parametrize("scenario", PLATFORM_SCENARIOS)
def test_every_container_is_non_root_read_only_without_capabilities_and_with_requests(
    platform_renders, scenario
):
    for name, _, pod in chartkit.pod_templates(platform_renders[scenario]):
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == 999, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, (name, container["name"])
            assert context["allowPrivilegeEscalation"] is False, (name, container["name"])
            assert context["capabilities"] == {"drop": ["ALL"]}, (name, container["name"])
            assert set(container["resources"]["requests"]) == {"cpu", "memory"}
            assert "memory" in container["resources"]["limits"]


def test_postgres_is_pinned_probed_and_keeps_its_data_on_a_volume(platform_renders):
    docs = platform_renders["defaults"]
    values = platform_values()["postgres"]
    statefulset = by_kind(docs, "StatefulSet")[values["name"]]
    pod = statefulset["spec"]["template"]["spec"]
    (container,) = pod["containers"]

    assert container["image"] == f"docker.io/library/postgres:{values['image']['tag']}"
    assert values["image"]["tag"].startswith("16.")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert "pg_isready" in " ".join(container[probe]["exec"]["command"]), probe
    assert {m["mountPath"] for m in container["volumeMounts"]} == {
        "/var/lib/postgresql/data",
        "/var/run/postgresql",
        chartkit.TMP,
        "/dev/shm",  # noqa: S108
    }
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == values["persistence"]["size"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "platform-postgres-admin",
        "key": "PGPASSWORD",
    }
    service = by_kind(docs, "Service")[values["name"]]
    assert service["spec"]["ports"][0]["port"] == 5432
    assert chartkit.selector_matches(
        {"matchLabels": service["spec"]["selector"]},
        statefulset["spec"]["template"]["metadata"]["labels"],
    )


def test_production_renders_no_server_and_points_the_bootstrap_at_the_managed_one(
    platform_renders,
):
    docs = platform_renders["managed-postgres"]
    job = by_kind(docs, "Job")["platform-bootstrap"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}

    assert "StatefulSet" not in {d["kind"] for d in docs}
    assert "platform-postgresql" not in by_kind(docs, "NetworkPolicy")
    assert env["PGHOST"] == "db.example.internal"
    assert env["PGSSLMODE"] == "require"
    config = by_kind(docs, "ConfigMap")["platform-environment"]["data"]
    assert config["WAREHOUSE_HOST"] == "db.example.internal"


def test_bootstrap_job_runs_exactly_the_repository_sql_after_install_and_upgrade(
    platform_renders,
):
    docs = platform_renders["defaults"]
    sql_dir = chartkit.REPO / "infra" / "sql"
    script = locations.bootstrap_script(locations.load())
    config_map = by_kind(docs, "ConfigMap")["platform-bootstrap-sql"]
    job = by_kind(docs, "Job")["platform-bootstrap"]
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    files = {name: (sql_dir / name).read_text() for name in ("bootstrap.sql", "role.sql")}

    assert config_map["data"] == {**files, "apply.psql": script}
    for name, text in files.items():
        assert (chartkit.PLATFORM_CHART / "files" / name).read_text() == text
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    assert job["spec"]["template"]["metadata"]["annotations"]["checksum/bootstrap-sql"] == (
        hashlib.sha256((files["bootstrap.sql"] + files["role.sql"] + script).encode()).hexdigest()
    )
    assert container["command"] == ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-f",
                                    "/bootstrap/apply.psql"]  # fmt: skip
    assert "pg_isready" in " ".join(pod["initContainers"][0]["command"])
    assert job["spec"]["activeDeadlineSeconds"] > 0


def test_the_platform_chart_refuses_to_render_without_the_derived_values(helm_available):
    result = chartkit.helm("template", "platform", str(chartkit.PLATFORM_CHART))

    assert result.returncode != 0
    assert "bootstrap.script is empty: deploy with make deploy" in result.stderr


def test_bootstrap_job_gets_every_variable_the_sql_reads_and_no_password_in_clear(
    platform_renders,
):
    sql = (chartkit.REPO / "infra" / "sql" / "bootstrap.sql").read_text()
    read_by_sql = {line.split()[2] for line in sql.splitlines() if line.startswith("\\getenv ")}
    job = by_kind(platform_renders["defaults"], "Job")["platform-bootstrap"]
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}

    assert read_by_sql <= set(env)
    for name, var in env.items():
        if "PASSWORD" in name:
            assert "value" not in var, name
            assert not var["valueFrom"]["secretKeyRef"].get("optional", False), name
    assert env["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "dagster-postgresql-secret",
        "key": "postgresql-password",
    }
    roles = locations.warehouse_roles(locations.load())
    assert {r.name for r in roles} >= {loc.name for loc in LOCATIONS} | {"bi_reader"}
    for role in roles:
        ref = env[role.password_var]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": role.secret, "key": role.password_var}
        assert env[role.user_var]["valueFrom"]["secretKeyRef"]["optional"] is True


def test_environment_config_map_names_the_server_the_database_and_the_file_areas(
    platform_renders,
):
    data = by_kind(platform_renders["kind"], "ConfigMap")["platform-environment"]["data"]
    claims = by_kind(platform_renders["kind"], "PersistentVolumeClaim")

    assert data["WAREHOUSE_HOST"] == data["SHOP_DB_HOST"] == "platform-postgresql"
    assert data["WAREHOUSE_PORT"] == data["SHOP_DB_PORT"] == "5432"
    assert data["WAREHOUSE_DB"] == "warehouse"
    assert data["WAREHOUSE_SSLMODE"] == "disable"
    assert data["PAYMENTS_LANDING_URL"].startswith("/data/landing/")
    assert data["EXPORTS_URL"].startswith("/data/exports")
    assert set(claims) == {"platform-landing", "platform-exports", "platform-compute-logs"}
    # Every code server mounts the compute logs area in every environment (their values are
    # the same everywhere), production included although its logs go to S3.
    assert set(by_kind(platform_renders["prod"], "PersistentVolumeClaim")) == set(claims)
    for claim in claims.values():
        assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert all(isinstance(v, str) for v in data.values())
    assert not [k for k in data if "PASSWORD" in k or k.endswith("_USER")]


@pytest.mark.parametrize("scenario", PLATFORM_SCENARIOS)
def test_environment_config_map_sets_every_variable_a_location_declares(platform_renders, scenario):
    """What a location lists in [tool.platform] environment is set once for the environment,
    in the ConfigMap every location release loads."""
    data = by_kind(platform_renders[scenario], "ConfigMap")["platform-environment"]["data"]

    for location in locations.load():
        assert set(location.environment) <= set(data), location.name


@pytest.mark.parametrize("scenario", PLATFORM_SCENARIOS)
def test_the_payments_first_day_is_one_ingestion_accepts(platform_renders, scenario):
    """PAYMENTS_FIRST_DAY renders as the day ingestion's partitions start at: a value it
    refused would stop the code location from loading."""
    from ingestion.defs.payments.partitions import FIRST_DAY_VARIABLE, first_day

    data = by_kind(platform_renders[scenario], "ConfigMap")["platform-environment"]["data"]
    (ingestion,) = [loc for loc in locations.load() if loc.name == "ingestion"]

    assert FIRST_DAY_VARIABLE in ingestion.environment
    assert (
        first_day({FIRST_DAY_VARIABLE: data[FIRST_DAY_VARIABLE]}).isoformat()
        == (data[FIRST_DAY_VARIABLE])
    )


def test_external_secrets_create_every_secret_the_platform_names(platform_renders):
    docs = platform_renders["external-secrets"]
    external = by_kind(docs, "ExternalSecret")
    values = platform_values()
    expected = {
        values["secrets"]["postgresAdmin"],
        values["secrets"]["dagsterStorage"],
        *(role.secret for role in locations.warehouse_roles(locations.load())),
    }

    assert set(external) == expected
    for name, doc in external.items():
        assert doc["apiVersion"] == "external-secrets.io/v1"
        assert doc["spec"]["target"] == {"name": name, "creationPolicy": "Owner"}
        store = {"kind": "ClusterSecretStore", "name": "platform-secrets"}
        assert doc["spec"]["secretStoreRef"] == store
        assert doc["spec"]["dataFrom"] == [{"extract": {"key": f"data-platform/{name}"}}]
        assert doc["spec"]["refreshInterval"] == "1h"
    assert "ExternalSecret" not in {d["kind"] for d in platform_renders["defaults"]}


def test_no_secret_object_and_no_secret_value_is_ever_rendered(platform_renders):
    for scenario, docs in platform_renders.items():
        assert "Secret" not in {d["kind"] for d in docs}, scenario
        text = yaml.safe_dump_all(docs)
        assert "password:" not in text.lower(), scenario


# -- NetworkPolicies against the labels the official charts set --------------------------------
@pytest.fixture(scope="module")
def policies(platform_renders) -> dict[str, dict]:
    return by_kind(platform_renders["defaults"], "NetworkPolicy")


def code_server_pods() -> dict[str, dict[str, str]]:
    return {
        loc.name: chartkit.code_server_pod_labels(loc.name, loc.deployment.get("labels", {}))
        for loc in LOCATIONS
    }


def run_pod(location: str) -> dict[str, str]:
    return {
        **chartkit.RUN_POD_COMMON_LABELS,
        "app.kubernetes.io/version": "1.13.27",
        "dagster/code-location": location,
        "dagster/job": "__ASSET_JOB",
        "dagster/run-id": "0123",
    }


def test_code_server_policy_selects_every_code_server_and_nothing_else(policies):
    selector = policies["platform-code-servers"]["spec"]["podSelector"]

    for location, labels in code_server_pods().items():
        assert chartkit.selector_matches(selector, labels), location
    for other in (chartkit.webserver_pod_labels(), chartkit.daemon_pod_labels(), run_pod("x")):
        assert not chartkit.selector_matches(selector, other)


def test_code_servers_accept_grpc_from_webserver_daemon_and_run_pods_only(policies):
    policy = policies["platform-code-servers"]
    port = platform_values()["networkPolicy"]["codeServerPort"]

    assert chartkit.allowed_by(policy, chartkit.webserver_pod_labels(), port)
    assert chartkit.allowed_by(policy, chartkit.daemon_pod_labels(), port)
    for location in LOCATIONS:
        assert chartkit.allowed_by(policy, run_pod(location.name), port)
    for location, labels in code_server_pods().items():
        assert not chartkit.allowed_by(policy, labels, port), location
    bootstrap = {
        "app.kubernetes.io/name": "platform",
        "app.kubernetes.io/instance": "platform",
        "app.kubernetes.io/component": "bootstrap",
    }
    assert not chartkit.allowed_by(policy, bootstrap, port)
    assert not chartkit.allowed_by(policy, {"app": "anything-else"}, port)
    assert not chartkit.allowed_by(policy, chartkit.webserver_pod_labels(), 5432)
    # A system release under another name is not trusted.
    assert not chartkit.allowed_by(policy, chartkit.webserver_pod_labels("other"), port)


def test_postgres_accepts_dagster_code_servers_runs_and_the_bootstrap_only(
    policies, platform_renders
):
    policy = policies["platform-postgresql"]
    postgres_pod = by_kind(platform_renders["defaults"], "StatefulSet")["platform-postgresql"]
    bootstrap_pod = by_kind(platform_renders["defaults"], "Job")["platform-bootstrap"]

    assert chartkit.selector_matches(
        policy["spec"]["podSelector"], postgres_pod["spec"]["template"]["metadata"]["labels"]
    )
    allowed = [
        chartkit.webserver_pod_labels(),
        chartkit.daemon_pod_labels(),
        chartkit.migrate_job_pod_labels(),
        bootstrap_pod["spec"]["template"]["metadata"]["labels"],
        *code_server_pods().values(),
        *(run_pod(loc.name) for loc in LOCATIONS),
    ]
    for labels in allowed:
        assert chartkit.allowed_by(policy, labels, 5432), labels
    assert not chartkit.allowed_by(policy, {"app": "anything-else"}, 5432)
    assert not chartkit.allowed_by(policy, chartkit.webserver_pod_labels(), 3030)


def test_default_deny_covers_every_pod_and_the_webserver_opens_only_to_listed_peers(
    policies, platform_renders
):
    deny = policies["platform-default-deny-ingress"]
    prod = by_kind(platform_renders["prod"], "NetworkPolicy")

    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    assert "platform-webserver" not in policies
    webserver = prod["platform-webserver"]
    assert chartkit.selector_matches(
        webserver["spec"]["podSelector"], chartkit.webserver_pod_labels()
    )
    assert webserver["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8080}]
    assert webserver["spec"]["ingress"][0]["from"][0]["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}
    }


def test_network_policy_ports_match_the_values_of_the_releases_they_protect():
    system = chartkit.load_yaml(chartkit.SYSTEM_VALUES_DIR / "values.yaml")
    network = platform_values()["networkPolicy"]

    assert {loc.deployment["port"] for loc in LOCATIONS} == {network["codeServerPort"]}
    assert system["dagsterWebserver"]["service"]["port"] == network["webserverPort"]
    assert platform_values()["dagsterRelease"] == chartkit.SYSTEM_RELEASE
    assert chartkit.make_variable("SYSTEM_RELEASE") == chartkit.SYSTEM_RELEASE
    assert chartkit.make_variable("PLATFORM_RELEASE") == chartkit.PLATFORM_RELEASE
