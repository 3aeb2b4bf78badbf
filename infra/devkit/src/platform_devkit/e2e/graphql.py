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

# The run's compute log captures: one per step process (multiprocess executor), named by fileKey.
LOG_CAPTURES_QUERY = """
query ($id: ID!) {
  logsForRun(runId: $id) {
    ... on EventConnection {
      events { __typename ... on LogsCapturedEvent { fileKey stepKeys } }
    }
  }
}
"""

# What the UI's log viewer reads: the webserver's compute log manager, for a log key.
CAPTURED_LOGS_QUERY = """
query ($key: [String!]!) {
  capturedLogs(logKey: $key) { stdout stderr }
}
"""

LAST_MATERIALIZATION_QUERY = """
query ($key: AssetKeyInput!) {
  assetOrError(assetKey: $key) {
    __typename
    ... on Asset { assetMaterializations(limit: 1) { timestamp runId } }
  }
}
"""

# The automation ticks' evaluations of one asset, newest first: what the UI's automation tab
# shows, each record with the runs it requested and its condition tree, flattened.
CONDITION_EVALUATIONS_QUERY = """
query ($key: AssetKeyInput!, $limit: Int!) {
  assetConditionEvaluationRecordsOrError(assetKey: $key, limit: $limit) {
    __typename
    ... on AssetConditionEvaluationRecords {
      records {
        evaluationId timestamp runIds
        evaluationNodes { uniqueId userLabel numTrue childUniqueIds }
      }
    }
  }
}
"""

RUN_QUERY = """
query ($id: ID!) {
  runOrError(runId: $id) {
    __typename
    ... on Run { runId status startTime endTime tags { key value } }
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

    def run(self, run_id: str) -> dict:
        """runId, status, startTime, endTime (seconds) and tags of one run."""
        return self.query(RUN_QUERY, {"id": run_id})["runOrError"]

    def run_status(self, run_id: str) -> str:
        return self.run(run_id)["status"]

    def captured_logs(self, run_id: str) -> dict[str, dict]:
        """The stdout and stderr the webserver shows for each of a run's captures, by fileKey,
        with the steps each holds: {file key: {"steps": [...], "stdout": str, "stderr": str}}."""
        events = self.query(LOG_CAPTURES_QUERY, {"id": run_id})["logsForRun"].get("events", [])
        captures = {}
        for event in events:
            if event["__typename"] != "LogsCapturedEvent":
                continue
            # The log key the UI builds for a run's capture (ComputeLogManager.build_log_key).
            key = [run_id, "compute_logs", event["fileKey"]]
            data = self.query(CAPTURED_LOGS_QUERY, {"key": key})["capturedLogs"]
            captures[event["fileKey"]] = {
                "steps": event["stepKeys"] or [],
                "stdout": data["stdout"] or "",
                "stderr": data["stderr"] or "",
            }
        return captures

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

    def failed_runs(self, log_lines: int = 20) -> dict[str, list[str]]:
        """The errors of every failed run, each with the last lines of its steps' stdout (where
        dbt's own error is; its exception only says to look there)."""
        failed = {}
        for run in self.runs():
            if run["status"] != "FAILURE":
                continue
            errors = self.run_errors(run["runId"])
            for key, capture in self.captured_logs(run["runId"]).items():
                tail = capture["stdout"].splitlines()[-log_lines:]
                if tail:
                    errors.append(f"{key} stdout, last lines:\n" + "\n".join(tail))
            failed[f"{run['repositoryOrigin']['repositoryLocationName']}:{run['runId']}"] = errors
        return failed

    # -- assets ------------------------------------------------------------------------------
    def last_materialization(self, key: str) -> dict | None:
        """{"timestamp" (ms, a string), "runId"} of the asset's latest materialisation."""
        result = self.query(LAST_MATERIALIZATION_QUERY, {"key": {"path": key.split("/")}})
        asset = result["assetOrError"]
        if asset["__typename"] != "Asset":
            raise GraphQLError(f"asset {key}: {asset['__typename']}")
        found = asset["assetMaterializations"]
        return found[0] if found else None

    def condition_evaluations(self, key: str, limit: int = 50) -> list[dict]:
        """The asset's latest automation evaluation records, newest first: {"evaluationId",
        "timestamp", "runIds", "evaluationNodes" (root first)}."""
        result = self.query(
            CONDITION_EVALUATIONS_QUERY, {"key": {"path": key.split("/")}, "limit": limit}
        )["assetConditionEvaluationRecordsOrError"]
        if result["__typename"] != "AssetConditionEvaluationRecords":
            raise GraphQLError(f"condition evaluations of {key}: {result['__typename']}")
        return result["records"]

    def evaluation_that_requested(self, key: str, run_id: str) -> dict | None:
        """The evaluation record of the tick that requested `run_id` for the asset."""
        return next((r for r in self.condition_evaluations(key) if run_id in r["runIds"]), None)

    def wait_for_materializations(
        self, keys: set[str], after: float, timeout: float, interval: float = 10
    ) -> dict[str, dict]:
        """The first materialisation later than `after` (seconds since the epoch) of each key,
        once all have one: {key: {"timestamp", "runId"}}."""
        deadline = time.monotonic() + timeout
        while True:
            last = {key: self.last_materialization(key) for key in sorted(keys)}
            done = {k: m for k, m in last.items() if m and int(m["timestamp"]) / 1000 > after}
            if len(done) == len(keys):
                return done
            active = [r["runId"] for r in self.runs() if r["status"] in ACTIVE_RUN_STATUSES]
            self.progress(f"  waiting for {sorted(keys - set(done))}; active runs {active}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{sorted(keys - set(done))} not materialised again within {timeout:.0f}s; "
                    f"failed runs: {self.failed_runs()}"
                )
            time.sleep(interval)

    def wait_for_failed_run(self, location: str, since: float, timeout: float = 1200) -> dict:
        """The first run of `location` started after `since` (seconds) that failed."""
        deadline = time.monotonic() + timeout
        while True:
            runs = [
                r
                for r in self.runs()
                if r["repositoryOrigin"]["repositoryLocationName"] == location
                and (r["startTime"] or 0) > since
            ]
            failed = sorted(
                (r for r in runs if r["status"] == "FAILURE"), key=lambda r: r["startTime"]
            )
            if failed:
                return failed[0]
            self.progress(
                f"  waiting for a failed run of {location}: {[r['status'] for r in runs]}"
            )
            if time.monotonic() > deadline:
                raise TimeoutError(f"no run of {location} failed within {timeout:.0f}s: {runs}")
            time.sleep(5)

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
