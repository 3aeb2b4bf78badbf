"""`python -m platform_devkit.deploy`: run, print or preview a deployment (the Makefile's
deploy targets call it; docs/deploy.md explains each).

    python -m platform_devkit.deploy [settings] {all,platform,system,location,kind} [--dry-run]
    python -m platform_devkit.deploy [settings] diff [--out DIR]
    python -m platform_devkit.deploy [settings] charts
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

from platform_devkit.deploy.charts import ChartsUnavailableError, ensure_pulled, official_charts
from platform_devkit.deploy.plan import TARGETS, PlanError, Settings, Step, releases, steps
from platform_devkit.paths import REPO_ROOT, state_dir


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
    parser.add_argument("--atomic", choices=("0", "1"), default=env("HELM_ATOMIC", "1"))
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
        atomic=args.atomic == "1",
        kind_cluster=args.kind_cluster,
        charts=official_charts(repository=args.chart_repo or None),
    )


def _run(argv: tuple[str, ...], **kwargs) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, text=True, cwd=REPO_ROOT, check=False, **kwargs)
    except FileNotFoundError:
        hint = "make tools installs helm and kubectl" if argv[0] in {"helm", "kubectl"} else ""
        raise SystemExit(
            f"deploy: {argv[0]} is not installed{'; ' + hint if hint else ''}"
        ) from None


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
                f"; `helm status {step.release.name} -n <namespace>` and `helm history` "
                "show what helm kept, `make deploy-diff` what it would apply"
            )
        raise SystemExit(f"deploy: {step.title} failed (exit {result.returncode}){hint}")


def diff(settings: Settings, location: str, out: Path | None) -> None:
    """Render every release the deployment would install into a folder, then, when the cluster
    answers, `kubectl diff` each render against what runs."""
    selected = releases(settings, "location", location) if location else releases(settings)
    folder = out or state_dir() / "deploy" / (settings.kube_context or "current-context")
    folder.mkdir(parents=True, exist_ok=True)
    for release in selected:
        rendered = _run(tuple(release.template(settings)), capture_output=True)
        if rendered.returncode != 0:
            raise SystemExit(
                f"deploy-diff: helm template {release.name} failed:\n{rendered.stderr}"
            )
        target = folder / f"{release.name}.yaml"
        target.write_text(rendered.stdout)
        say(f"{release.name}: {target} ({rendered.stdout.count(chr(10) + 'kind: ')} objects)")
    context = ["--context", settings.kube_context] if settings.kube_context else []
    probe = _run(
        ("kubectl", *context, "--request-timeout=10s", "get", "namespace", settings.namespace),
        capture_output=True,
    )
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or ["no answer"])[-1]
        say(
            f"no diff against the cluster (namespace {settings.namespace}: {reason}); "
            f"the renders above are what `make deploy` would apply"
        )
        return
    for release in selected:
        say(f"kubectl diff {release.name}")
        # kubectl diff: 0 no change, 1 changes shown, >1 an error.
        target = str(folder / f"{release.name}.yaml")
        result = _run(
            ("kubectl", *context, "--namespace", settings.namespace, "diff", "-f", target)
        )
        if result.returncode > 1:
            raise SystemExit(f"deploy-diff: kubectl diff of {release.name} failed")


def main(argv: list[str] | None = None) -> None:
    args = parse(sys.argv[1:] if argv is None else argv)
    settings = settings_from(args)
    try:
        if args.target == "charts":
            ensure_pulled(settings.charts)
            say(
                f"official charts {settings.charts.version} from {settings.charts.repository} "
                f"in {settings.charts.folder}"
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
        for step in planned:
            run(step)
    except (PlanError, ChartsUnavailableError) as error:
        raise SystemExit(f"deploy: {error}") from None


if __name__ == "__main__":
    main()
