"""Test helpers for the library's tests, the locations' and the end-to-end suite: a real HTTP
webhook receiver on 127.0.0.1, the sensor context of a failed run, a port that refuses
connections (a warehouse that is gone), and what in an automation tick's evaluation requested
a run (the retry rule of `platform_ops.recovery`, or the asset's own condition)."""

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
