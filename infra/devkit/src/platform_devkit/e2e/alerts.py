"""A webhook receiver for the e2e body: what the locations' alert sensors POST to
ALERT_WEBHOOK_URL, kept in memory. Standard library only; one thread; JSON bodies."""

import http.server
import json
import threading
import time
from collections.abc import Callable


class AlertReceiver:
    """An HTTP server on `host` (a free port) that keeps every JSON body POSTed to it."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._received: list[dict] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    message = json.loads(body)
                except ValueError:
                    message = {"unparsed": body.decode(errors="replace")}
                with receiver._lock:
                    receiver._received.append(message)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                """Quiet: the body reports what arrived."""

        self._server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/alerts"

    def start(self) -> "AlertReceiver":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def received(self) -> list[dict]:
        with self._lock:
            return list(self._received)

    def wait_for(
        self, matches: Callable[[dict], bool], timeout: float = 300, interval: float = 2
    ) -> dict:
        """The first message for which `matches` is true; TimeoutError listing what came."""
        deadline = time.monotonic() + timeout
        while True:
            found = next((m for m in self.received() if matches(m)), None)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"no matching alert at {self.url} after {timeout:.0f}s; received: "
                    f"{json.dumps(self.received())[:2000]}"
                )
            time.sleep(interval)
