"""Test helpers for the library's tests, the locations' and the end-to-end suite: a real HTTP
webhook receiver on 127.0.0.1, the sensor context of a failed run, and a port that refuses
connections (a warehouse that is gone)."""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg

from platform_ops import alerts


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
