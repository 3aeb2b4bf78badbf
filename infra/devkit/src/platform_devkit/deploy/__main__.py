"""`python -m platform_devkit.deploy`: run, print or preview a deployment (the Makefile's
deploy targets call it; docs/deploy.md explains each).

    python -m platform_devkit.deploy [settings] {all,platform,system,location,secrets,
                                                 kind,kind-up,kind-load} [--dry-run]
    python -m platform_devkit.deploy [settings] diff [--out DIR]
    python -m platform_devkit.deploy [settings] charts
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import yaml

from platform_devkit.deploy.charts import ChartsError, ensure_pulled, official_charts
from platform_devkit.deploy.plan import (
    KIND_VERSION,
    TARGETS,
    PlanError,
    Release,
    Settings,
    Step,
    kubectl,
    releases,
    steps,
)
from platform_devkit.paths import REPO_ROOT, state_dir

INSTALL_HINTS = {
    "helm": "make tools installs helm and kubectl",
    "kubectl": "make tools installs helm and kubectl",
    "kind": f"install kind {KIND_VERSION} (https://kind.sigs.k8s.io/docs/user/quick-start/)",
    "docker": "make docker-engine installs and starts one",
}


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def parse(argv: list[str]) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="python -m platform_devkit.deploy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--namespace", default=env("NAMESPACE", "data-platform"))
    parser.add_argument("--context", default=env("KUBE_CONTEXT", ""), help="kubectl context")
    parser.add_argument("--tag", default=env("TAG", ""), help="image tag of the locations")
    parser.add_argument("--registry", default=env("REGISTRY", "data-platform"))
    parser.add_argument("--overlay", default=env("OVERLAY", ""), help="e.g. kind, prod")
    parser.add_argument(
        "--chart-repo",
        default=env("DAGSTER_CHART_REPO", ""),
        help="chart repository of the official charts (default: Dagster's)",
    )
    parser.add_argument("--timeout", default=env("HELM_TIMEOUT", "10m"))
    parser.add_argument("--atomic", default=env("HELM_ATOMIC", "1"), help="0: no rollback")
    parser.add_argument("--migrate", default=env("MIGRATE", ""), help="1: migrate storage")
    parser.add_argument("--kind-cluster", default=env("KIND_CLUSTER", "data-platform"))
    parser.add_argument("--location", default=env("LOCATION", ""))
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument("--out", type=Path, help="diff: folder for the rendered manifests")
    parser.add_argument("target", choices=(*TARGETS, "diff", "charts"))
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    context, overlay = args.context, args.overlay
    if args.target.startswith("kind"):
        # A kind cluster is reached through the context kind creates and uses the kind overlays.
        context = context or f"kind-{args.kind_cluster}"
        overlay = overlay or "kind"
    return Settings(
        namespace=args.namespace,
        kube_context=context,
        tag=args.tag,
        registry=args.registry,
        overlay=overlay,
        timeout=args.timeout,
        atomic=args.atomic != "0",
        migrate=args.migrate not in {"", "0"},
        kind_cluster=args.kind_cluster,
        charts=official_charts(repository=args.chart_repo or None),
    )


def _run(argv: tuple[str, ...], **kwargs) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, text=True, cwd=REPO_ROOT, check=False, **kwargs)
    except FileNotFoundError:
        hint = INSTALL_HINTS.get(argv[0])
        raise SystemExit(
            f"deploy: {argv[0]} is not installed{f'; {hint}' if hint else ''}"
        ) from None


def announce(settings: Settings, target: str) -> None:
    """Say which cluster the commands go to (an empty KUBE_CONTEXT is kubectl's current one),
    and warn when kind is not the release the pinned node image is built for."""
    if target.startswith("kind"):
        found = _run(("kind", "version"), capture_output=True).stdout.split()
        version = found[1] if len(found) > 1 else "unknown"
        if version != KIND_VERSION:
            say(
                f"warning: kind {version}; the node image in infra/kind/cluster.yaml is built "
                f"for kind {KIND_VERSION}"
            )
    if target in {"kind-up", "kind-load"}:
        return
    context = settings.kube_context
    if not context:
        current = _run(("kubectl", "config", "current-context"), capture_output=True)
        context = f"{current.stdout.strip() or 'none'} (kubectl's current context)"
    say(f"cluster {context}, namespace {settings.namespace}")


def run(step: Step) -> None:
    if step.unless:
        listed = _run(step.unless, capture_output=True)
        if step.unless_line in listed.stdout.splitlines():
            say(f"{step.title}: already there")
            return
    say(step.title)
    if not step.stdin:
        print(f"    {step.shell()}", flush=True)
    env = {**os.environ, **dict(step.env)} if step.env else None
    result = _run(step.argv, input=step.stdin or None, env=env)
    if result.returncode != 0:
        hint = ""
        if step.release is not None:
            hint = (
                f"; `helm status {step.release.name}` and `helm history {step.release.name}` "
                "show what helm kept, `make deploy-diff` what it would apply"
            )
        raise SystemExit(f"deploy: {step.title} failed (exit {result.returncode}){hint}")


def _is_hook(doc: dict) -> bool:
    return "helm.sh/hook" in ((doc.get("metadata") or {}).get("annotations") or {})


def _has_helm_diff() -> bool:
    plugins = _run(("helm", "plugin", "list"), capture_output=True).stdout
    return any(line.split()[:1] == ["diff"] for line in plugins.splitlines())


def _diff_release(settings: Settings, release: Release, rendered: str, folder: Path) -> None:
    """The helm-diff plugin where installed (it compares with the release helm stored, so it
    shows deletions too); else `kubectl diff` of the non-hook objects (hooks, such as the
    bootstrap Job, are replaced on every upgrade and cannot be diffed in place)."""
    context = ("--kube-context", settings.kube_context) if settings.kube_context else ()
    if _has_helm_diff():
        result = _run(("helm", "diff", "upgrade", "--install", *release.inputs(settings), *context))
        if result.returncode != 0:
            raise SystemExit(f"deploy-diff: helm diff of {release.name} failed")
        return
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    hooks = [f"{d['kind']}/{d['metadata']['name']}" for d in docs if _is_hook(d)]
    if hooks:
        say(f"{release.name}: hooks, replaced on every upgrade: {', '.join(hooks)}")
    target = folder / f"{release.name}.objects.yaml"
    target.write_text(yaml.safe_dump_all([d for d in docs if not _is_hook(d)]))
    # kubectl diff: 0 no change, 1 changes shown, >1 an error.
    result = _run(kubectl(settings, "--namespace", settings.namespace, "diff", "-f", str(target)))
    target.unlink()
    if result.returncode > 1:
        raise SystemExit(f"deploy-diff: kubectl diff of {release.name} failed")


def _namespace_state(settings: Settings) -> tuple[bool, str]:
    """(whether to diff against the cluster, why not). A namespace the deployer may not read
    (Forbidden: rights in the namespace only) exists; one not found is not deployed yet."""
    probe = _run(
        kubectl(settings, "--request-timeout=10s", "get", "namespace", settings.namespace),
        capture_output=True,
    )
    if probe.returncode == 0 or "Forbidden" in probe.stderr:
        return True, ""
    if "NotFound" in probe.stderr:
        return False, f"namespace {settings.namespace} does not exist yet: everything is new"
    return False, (probe.stderr.strip().splitlines() or ["no answer"])[-1]


def diff(settings: Settings, location: str, out: Path | None) -> None:
    """Render every release the deployment would install into a folder, then, when the cluster
    answers, show each one's difference to what runs."""
    selected = releases(settings, "location", location) if location else releases(settings)
    folder = out or state_dir() / "deploy" / (settings.kube_context or "current-context")
    folder.mkdir(parents=True, exist_ok=True)
    # Only this command's own files are replaced: DIFF_OUT may name a folder that holds more.
    for stale in releases(settings):
        (folder / f"{stale.name}.yaml").unlink(missing_ok=True)
    rendered = {}
    for release in selected:
        result = _run(tuple(release.template(settings)), capture_output=True)
        if result.returncode != 0:
            raise SystemExit(f"deploy-diff: helm template {release.name} failed:\n{result.stderr}")
        rendered[release.name] = result.stdout
        (folder / f"{release.name}.yaml").write_text(result.stdout)
        count = sum(1 for d in yaml.safe_load_all(result.stdout) if d)
        say(f"{release.name}: {folder / release.name}.yaml ({count} objects)")
    answers, reason = _namespace_state(settings)
    if not answers:
        say(
            f"no diff against the cluster ({reason}); the renders above are what "
            "`make deploy` would apply"
        )
        return
    for release in selected:
        say(f"diff {release.name}")
        _diff_release(settings, release, rendered[release.name], folder)


def main(argv: list[str] | None = None) -> None:
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        settings = settings_from(args)
        if args.target == "charts":
            ensure_pulled(settings.charts)
            hosts = ", ".join(sorted(settings.charts.schema_hosts())) or "none"
            say(
                f"official charts {settings.charts.version} from {settings.charts.repository} "
                f"in {settings.charts.folder}; their values schemas reference: {hosts}"
            )
            return
        if args.target == "diff":
            settings.check(needs_tag=True)
            ensure_pulled(settings.charts)
            diff(settings, args.location, args.out)
            return
        planned = steps(args.target, settings, args.location)
        if args.dry_run:
            for step in planned:
                print(f"# {step.title}\n{step.shell()}")
            return
        official = settings.charts.folder
        if any(s.release and s.release.chart.is_relative_to(official) for s in planned):
            ensure_pulled(settings.charts)
        announce(settings, args.target)
        for step in planned:
            run(step)
    except (PlanError, ChartsError) as error:
        raise SystemExit(f"deploy: {error}") from None


if __name__ == "__main__":
    main()
