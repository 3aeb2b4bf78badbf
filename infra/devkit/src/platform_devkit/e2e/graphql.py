"""A small client for the Dagster webserver's GraphQL API: what the e2e body needs, nothing more."""

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable

REPOSITORY = "__repository__"  # the repository a `@dg.definitions` module loads as
ASSET_JOB = "__ASSET_JOB"
ACTIVE_RUN_STATUSES = {"QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"}

LOCATIONS_QUERY = """
query {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        versionKey
        locationOrLoadError {
          __typename
          ... on RepositoryLocation { name }
          ... on PythonError { message }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""

RELOAD_MUTATION = """
mutation ($name: String!) {
  reloadRepositoryLocation(repositoryLocationName: $name) {
    __typename
    ... on WorkspaceLocationEntry { name loadStatus }
    ... on PythonError { message }
    ... on RepositoryLocationNotFound { message }
  }
}
"""

LAUNCH_MUTATION = """
mutation ($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on UnauthorizedError { message }
  }
}
"""

RUNS_QUERY = """
query {
  runsOrError(limit: 1000) {
    __typename
    ... on Runs {
      results {
        runId
        status
        startTime
        endTime
        repositoryOrigin { repositoryLocationName }
        tags { key value }
        assetSelection { path }
      }
    }
  }
}
"""

RUN_ERRORS_QUERY = """
query ($id: ID!) {
  logsForRun(runId: $id) {
    ... on EventConnection {
      events {
        __typename
        ... on ExecutionStepFailureEvent { stepKey error { message cause { message } } }
        ... on RunFailureEvent { error { message } }
      }
    }
  }
}
"""

RUN_QUERY = """
query ($id: ID!) {
  runOrError(runId: $id) {
    __typename
    ... on Run { runId status }
  }
}
"""

ASSETS_QUERY = """
query {
  assetNodes {
    assetKey { path }
    dependencyKeys { path }
    isPartitioned
    isMaterializable
    repository { location { name } }
    assetMaterializations(limit: 1) { timestamp }
  }
}
"""


class GraphQLError(RuntimeError):
    pass


class DagsterGraphQL:
    def __init__(self, base_url: str, progress: Callable[[str], None] = print) -> None:
        self.base_url = base_url.rstrip("/")
        self.progress = progress

    def query(self, document: str, variables: dict | None = None, timeout: float = 120) -> dict:
        body = json.dumps({"query": document, "variables": variables or {}}).encode()
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"not an http(s) URL: {self.base_url}")
        request = urllib.request.Request(  # noqa: S310 (scheme checked above)
            f"{self.base_url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        for attempt in range(4):
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                    payload = json.load(response)
                break
            except urllib.error.HTTPError as error:
                # A loaded webserver answers 5xx now and then; a 4xx is our mistake.
                if error.code < 500 or attempt == 3:
                    detail = error.read().decode(errors="replace")[-2000:]
                    raise GraphQLError(
                        f"HTTP {error.code} from {self.base_url}: {detail}"
                    ) from error
                time.sleep(2 * (attempt + 1))
        if payload.get("errors"):
            raise GraphQLError(json.dumps(payload["errors"])[:2000])
        return payload["data"]

    # -- workspace ---------------------------------------------------------------------------
    def wait_until_serving(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.base_url}/server_info", timeout=5):  # noqa: S310
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"webserver at {self.base_url} not serving: {error}"
                    ) from error
                time.sleep(1)

    def locations(self) -> dict[str, dict]:
        workspace = self.query(LOCATIONS_QUERY)["workspaceOrError"]
        if workspace["__typename"] != "Workspace":
            raise GraphQLError(workspace.get("message", workspace["__typename"]))
        return {entry["name"]: entry for entry in workspace["locationEntries"]}

    @staticmethod
    def is_loaded(entry: dict) -> bool:
        return (
            entry["loadStatus"] == "LOADED"
            and entry["locationOrLoadError"]["__typename"] == "RepositoryLocation"
        )

    def wait_for_locations(self, names: list[str], timeout: float = 300) -> dict[str, dict]:
        deadline = time.monotonic() + timeout
        while True:
            entries = self.locations()
            if all(name in entries and self.is_loaded(entries[name]) for name in names):
                return entries
            if time.monotonic() > deadline:
                states = {
                    n: (e["loadStatus"], e["locationOrLoadError"]) for n, e in entries.items()
                }
                raise TimeoutError(f"code locations not loaded after {timeout}s: {states}")
            time.sleep(2)

    def reload_location(self, name: str) -> dict:
        result = self.query(RELOAD_MUTATION, {"name": name})["reloadRepositoryLocation"]
        if result["__typename"] != "WorkspaceLocationEntry":
            raise GraphQLError(f"reload of {name}: {result}")
        return self.locations()[name]

    # -- runs --------------------------------------------------------------------------------
    def launch_assets(self, location: str, keys: list[str], partition: str | None = None) -> str:
        tags = [{"key": "e2e", "value": "explicit"}]
        if partition:
            tags.append({"key": "dagster/partition", "value": partition})
        params = {
            "selector": {
                "repositoryLocationName": location,
                "repositoryName": REPOSITORY,
                "jobName": ASSET_JOB,
                "assetSelection": [{"path": key.split("/")} for key in keys],
            },
            "executionMetadata": {"tags": tags},
        }
        result = self.query(LAUNCH_MUTATION, {"params": params})["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            raise GraphQLError(f"launch of {keys} in {location}: {result}")
        return result["run"]["runId"]

    def run_status(self, run_id: str) -> str:
        return self.query(RUN_QUERY, {"id": run_id})["runOrError"]["status"]

    def wait_for_run(self, run_id: str, timeout: float = 600) -> str:
        deadline = time.monotonic() + timeout
        while (status := self.run_status(run_id)) in ACTIVE_RUN_STATUSES:
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} still {status} after {timeout}s")
            time.sleep(2)
        return status

    def runs(self) -> list[dict]:
        return self.query(RUNS_QUERY)["runsOrError"]["results"]

    def run_errors(self, run_id: str) -> list[str]:
        """The error messages of a failed run's steps (and causes), for assertion messages."""
        events = self.query(RUN_ERRORS_QUERY, {"id": run_id})["logsForRun"].get("events", [])
        messages = []
        for event in events:
            error = event.get("error") or {}
            cause = (error.get("cause") or {}).get("message", "")
            if error:
                messages.append(f"{event.get('stepKey', 'run')}: {error['message']} {cause}")
        return messages

    def failed_runs(self) -> dict[str, list[str]]:
        return {
            f"{r['repositoryOrigin']['repositoryLocationName']}:{r['runId']}": self.run_errors(
                r["runId"]
            )
            for r in self.runs()
            if r["status"] == "FAILURE"
        }

    # -- assets ------------------------------------------------------------------------------
    def asset_nodes(self) -> dict[str, dict]:
        return {
            "/".join(node["assetKey"]["path"]): node
            for node in self.query(ASSETS_QUERY)["assetNodes"]
        }

    def wait_until_settled(
        self, expected: set[str], timeout: float = 1200, quiet_polls: int = 4, interval: float = 10
    ) -> None:
        """Until every expected asset has a materialisation and no run has been active for
        `quiet_polls` consecutive polls (longer than a sensor interval: nothing more is coming)."""
        deadline = time.monotonic() + timeout
        quiet = 0
        while quiet < quiet_polls:
            nodes = self.asset_nodes()
            missing = sorted(
                k for k in expected if not nodes.get(k, {}).get("assetMaterializations")
            )
            runs = self.runs()
            active = [r for r in runs if r["status"] in ACTIVE_RUN_STATUSES]
            if any(r["status"] == "FAILURE" for r in runs):
                raise AssertionError(f"a run failed: {self.failed_runs()}")
            quiet = quiet + 1 if not missing and not active else 0
            self.progress(
                f"  {len(expected) - len(missing)}/{len(expected)} assets materialised, "
                f"{len(active)} run(s) active" + (f", waiting for {missing[:4]}" if missing else "")
            )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"not settled after {timeout}s: missing {missing}, active runs {active}"
                )
            time.sleep(interval)
