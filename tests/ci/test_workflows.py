"""The GitHub workflows users run (.github/workflows): supply chain, artifacts and the kind
job's order, held as they cannot be run here."""

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
PINNED = re.compile(r"^\s*(?:- )?uses: [^@\s]+@[0-9a-f]{40} # v\d+(\.\d+)*\s*$")


def steps(workflow: Path) -> list[dict]:
    jobs = yaml.safe_load(workflow.read_text())["jobs"]
    return [step for job in jobs.values() for step in job["steps"]]


def test_the_repository_ships_its_workflows():
    assert {w.name for w in WORKFLOWS} >= {"ci.yml", "e2e-kind.yml"}


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda w: w.name)
def test_every_action_is_pinned_to_a_commit_with_its_tag_in_a_comment(workflow):
    uses = [line for line in workflow.read_text().splitlines() if "uses:" in line]

    assert uses
    assert [line for line in uses if not PINNED.match(line)] == []


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda w: w.name)
def test_checkouts_keep_no_credentials(workflow):
    checkouts = [s for s in steps(workflow) if s.get("uses", "").startswith("actions/checkout@")]

    assert checkouts
    assert all(s["with"]["persist-credentials"] is False for s in checkouts)


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda w: w.name)
def test_uploaded_artifacts_exclude_credentials_and_database_files(workflow):
    uploads = [
        s for s in steps(workflow) if s.get("uses", "").startswith("actions/upload-artifact@")
    ]

    for step in uploads:
        paths = step["with"]["path"].splitlines()
        assert "!${{ env.E2E_ARTIFACTS }}/**/*.env" in paths
        assert "!${{ env.E2E_ARTIFACTS }}/**/pgdata/" in paths
        assert not any(".local" in p for p in paths), paths


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda w: w.name)
def test_steps_run_make_targets_only(workflow):
    commands = [s["run"].strip() for s in steps(workflow) if "run" in s]
    # Besides make: the artifacts folder and the commit's image tag, in GitHub's own files.
    plumbing = ("echo ", "mkdir ")

    offenders = [
        line
        for command in commands
        for line in command.splitlines()
        if not line.startswith(("make ", "sudo make ", *plumbing))
    ]

    assert commands
    assert offenders == []


def test_kind_job_creates_artifacts_first_and_collects_diagnostics_on_any_failure():
    (job,) = yaml.safe_load((REPO / ".github/workflows/e2e-kind.yml").read_text())["jobs"].values()
    names = [s.get("name", s.get("uses", "")) for s in job["steps"]]
    diagnostics = next(s for s in job["steps"] if "kind-diagnostics" in s.get("run", ""))
    upload = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/upload"))

    assert names[0] == "Create the artifacts folder"
    assert "failure()" in diagnostics["if"]
    assert upload["if"] == "always()"
    assert job["steps"].index(diagnostics) < job["steps"].index(upload)


def test_kind_job_builds_deploys_and_tests_one_tag():
    (job,) = yaml.safe_load((REPO / ".github/workflows/e2e-kind.yml").read_text())["jobs"].values()
    by_target = {
        s["run"].split()[1]: s for s in job["steps"] if s.get("run", "").startswith("make ")
    }

    for target in ("images", "kind-deploy", "e2e-kind"):
        step = by_target[target]
        assert step["env"]["TAG"] == "${{ steps.tag.outputs.tag }}", target
        assert 'TAG="$TAG"' in step["run"], target
    assert by_target["e2e-kind"]["env"]["E2E_KIND_REUSE"] == "1"
    assert job["env"]["REQUIRE_OFFICIAL_CHARTS"] == "1"
