"""Test helpers for the library's tests, the locations' and the end-to-end suite: a real HTTP
webhook receiver on 127.0.0.1, the sensor context of a failed run, a port that refuses
connections (a warehouse that is gone), what in an automation tick's evaluation requested
a run (the retry rule of `platform_ops.recovery`, or the asset's own condition), and Dagster's
freshness daemon over a location at chosen clock times."""

import contextlib
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg

from platform_ops import alerts
from platform_ops.recovery import RETRY_LABEL


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 (a free port) that records every POST and answers `status`.
    A context manager: it serves from entering to leaving. Its URL carries a token, as real
    incoming-webhook URLs do, so tests can look for it where it must not appear."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(
                    {
                        "path": self.path,
                        "content_type": self.headers["Content-Type"],
                        "body": json.loads(body),
                    }
                )
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args) -> None:  # the test's output, not the server's
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}/hooks/s3cr3t-token"

    def __enter__(self) -> "WebhookReceiver":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def failure_context(instance: dg.DagsterInstance, run_id: str) -> dg.RunFailureSensorContext:
    """What the daemon hands a run-failure sensor for the failed run `run_id`."""
    (record,) = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.RUN_FAILURE
    ).records
    return dg.build_run_status_sensor_context(
        sensor_name=alerts.SENSOR_NAME,
        dagster_event=record.event_log_entry.dagster_event,
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(run_id),
    ).for_run_failure()


def closed_port() -> int:
    """A local port nothing listens on: connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def evaluation_nodes(evaluation) -> list[dict]:
    """An in-process evaluation tree (`AutomationResult.serializable_evaluation`) as the flat
    nodes the webserver's GraphQL serves for a record (`evaluationNodes`): uniqueId, userLabel,
    numTrue, childUniqueIds; the root first."""
    nodes, pending = [], [evaluation]
    while pending:
        current = pending.pop(0)
        children = current.child_evaluations
        nodes.append({
            "uniqueId": current.condition_snapshot.unique_id,
            "userLabel": current.condition_snapshot.label,
            "numTrue": current.true_subset.size,
            "childUniqueIds": [c.condition_snapshot.unique_id for c in children],
        })  # fmt: skip
        pending += children
    return nodes


def retry_request(nodes: list[dict]) -> str | None:
    """The label of the retry level ("retry 1 of 3 (...)") that requested the asset at this
    evaluation when the retry rule alone did: the rule and that level true, and every other
    branch of the `recovering(...)` OR (the asset's own condition) false. None otherwise, so
    an ordinary rebuild (eager, a cron) never passes for a recovery. `nodes` are GraphQL's
    `evaluationNodes` of a record, root first, or `evaluation_nodes(...)`."""
    by_id = {node["uniqueId"]: node for node in nodes}
    rule = next((n for n in nodes if n["userLabel"] == RETRY_LABEL), None)
    if rule is None or not rule["numTrue"]:
        return None
    parent = next((n for n in nodes if rule["uniqueId"] in n["childUniqueIds"]), None)
    siblings = [] if parent is None else parent["childUniqueIds"]
    if any(by_id[s]["numTrue"] for s in siblings if s != rule["uniqueId"]):
        return None
    levels = [n for n in nodes if (n["userLabel"] or "").startswith("retry ") and n["numTrue"]]
    return levels[0]["userLabel"] if levels else None


class FreshnessDaemon:
    """Dagster's freshness daemon over one code location loaded in this process, as
    `dagster-daemon` runs it, on a real test instance: record materialisations at a clock
    time, run one iteration at another, read each asset's freshness state. A context manager:
    the instance and the workspace live from entering to leaving."""

    def __init__(self, module: str, location: str) -> None:
        self.module = module
        self.location = location

    def __enter__(self) -> "FreshnessDaemon":
        # Dagster's own test harness for daemons; private, pinned with dagster.
        from dagster._core.remote_origin import InProcessCodeLocationOrigin
        from dagster._core.test_utils import create_test_daemon_workspace_context
        from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
        from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
        from dagster._daemon.freshness import FreshnessDaemon as Daemon

        origin = InProcessCodeLocationOrigin(
            LoadableTargetOrigin(module_name=self.module, attribute="defs"),
            location_name=self.location,
        )
        self._stack = contextlib.ExitStack()
        self.instance = self._stack.enter_context(dg.instance_for_test())
        self.context = self._stack.enter_context(
            create_test_daemon_workspace_context(
                InProcessWorkspaceLoadTarget(origin), self.instance
            )
        )
        self._daemon = Daemon()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stack.close()

    @property
    def asset_graph(self):
        return self.context.create_request_context().asset_graph

    def materialized(
        self, keys: list[dg.AssetKey], at: float | None = None, partition: str | None = None
    ) -> float:
        """Record a materialisation of each of `keys` (at clock time `at`, seconds since the
        epoch, or now); the latest one's timestamp."""
        from dagster._core.test_utils import freeze_time

        with freeze_time(at) if at is not None else contextlib.nullcontext():
            for key in keys:
                self.instance.report_runless_asset_event(
                    dg.AssetMaterialization(key, partition=partition)
                )
        return max(self.instance.get_latest_materialization_event(k).timestamp for k in keys)

    def states(self, keys: list[dg.AssetKey], at: float) -> dict:
        """One daemon iteration at clock time `at`: {key: FreshnessState} of `keys`."""
        from dagster._core.test_utils import freeze_time

        with freeze_time(at):
            list(self._daemon.run_iteration(self.context))
        records = self.instance.get_freshness_state_records(keys)
        return {key: record.freshness_state for key, record in records.items()}
