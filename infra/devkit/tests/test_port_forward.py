"""The kind driver's supervised port-forward, against a stand-in `kubectl port-forward` that
really listens on the local port and, the first time, drops after a moment (as kubectl does
when the pod behind a Service is replaced)."""

import os
import socket
import time
from pathlib import Path

import pytest

from platform_devkit.e2e.kind import PortForward
from platform_devkit.testing import stand_in

# Listens on the LOCAL port of its last argument (LOCAL:REMOTE) and answers "ok"; the first
# instance exits after FAKE_FORWARD_LIFETIME seconds, later ones run until stopped.
FAKE_KUBECTL = r"""
import os, socket, sys, time
runs = os.environ["FAKE_FORWARD_RUNS"]
with open(runs, "a") as log:
    log.write("run\n")
first = open(runs).read().count("run") == 1
local = int(sys.argv[-1].split(":")[0])
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
time.sleep(float(os.environ.get("FAKE_FORWARD_DELAY", "0")))
server.bind(("127.0.0.1", local))
server.listen()
server.settimeout(0.2)
deadline = time.monotonic() + float(os.environ["FAKE_FORWARD_LIFETIME"])
while not first or time.monotonic() < deadline:
    try:
        conn, _ = server.accept()
        conn.sendall(b"ok")
        conn.close()
    except TimeoutError:
        pass
"""


@pytest.fixture
def fake_kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    stand_in(bin_dir, "kubectl", FAKE_KUBECTL)
    runs = tmp_path / "runs"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_FORWARD_RUNS", str(runs))
    monkeypatch.setenv("FAKE_FORWARD_LIFETIME", "2")
    monkeypatch.setenv("FAKE_FORWARD_DELAY", "1")
    return runs


def answer(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        return conn.recv(2)


def test_start_returns_only_once_the_forward_answers(fake_kubectl):
    forward = PortForward("svc/webserver", 8080, progress=lambda _: None)
    try:
        port = forward.start(timeout=30)

        assert answer(port) == b"ok"
    finally:
        forward.stop()


def test_a_dropped_forward_is_started_again_on_the_same_port(fake_kubectl):
    messages: list[str] = []
    forward = PortForward("svc/webserver", 8080, progress=messages.append)
    try:
        port = forward.start(timeout=30)
        deadline = time.monotonic() + 30
        while forward.restarts == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        while not forward._answers() and time.monotonic() < deadline:
            time.sleep(0.2)  # the new kubectl binds after its start-up delay

        assert forward.restarts >= 1
        assert answer(port) == b"ok"
        assert any("dropped; restarting" in m for m in messages)
    finally:
        forward.stop()


def test_stop_leaves_no_kubectl_running(fake_kubectl):
    forward = PortForward("svc/webserver", 8080, progress=lambda _: None)
    forward.start(timeout=30)

    forward.stop()

    assert forward.process.poll() is not None
    assert not forward._watcher.is_alive()


def test_a_forward_that_never_answers_fails_with_the_target(fake_kubectl, monkeypatch):
    monkeypatch.setenv("FAKE_FORWARD_DELAY", "30")
    forward = PortForward("svc/nothing-here", 8080, progress=lambda _: None)

    with pytest.raises(RuntimeError, match="svc/nothing-here never answered"):
        forward.start(timeout=3)

    assert forward.process.poll() is not None
