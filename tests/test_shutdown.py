"""Graceful shutdown of the real command, driven by signals.

SIGINT/SIGTERM: stop accepting, close idle keep-alive connections, let requests in flight finish
(with `connection: close`), cancel what is left after --timeout-graceful-shutdown; a second signal
forces the exit at once.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import pytest

from tests.rawhttp import connect, parse_responses, read_responses, read_until_close

pytestmark = pytest.mark.timeout(30)

APP = "tests.cli_apps:app"


def wait_exit(process, timeout: float) -> int:
    """Wait for the process to exit on its own; the test fails (and cleanup kills it) if it does not."""
    return process.proc.wait(timeout)


def output_of(process) -> str:
    assert process.proc.stdout is not None
    return process.proc.stdout.read().decode(errors="replace")


def start_sleep_request(port: int, seconds: float) -> socket.socket:
    """Send GET /sleep?seconds on a new connection and return it."""
    sock = connect(port, timeout=10)
    sock.sendall(b"GET /sleep?%.2f HTTP/1.1\r\nHost: t\r\n\r\n" % seconds)
    return sock


def wait_output(process, text: bytes) -> None:
    """Read the child's output until a line contains `text` (the test's timeout bounds the wait)."""
    assert process.proc.stdout is not None
    while True:
        line = process.proc.stdout.readline()
        assert line, f"the child exited before it printed {text!r}"
        if text in line:
            return


def wait_app_started(process) -> None:
    """Until the app logged the start of the sleeping request."""
    wait_output(process, b"request: sleeping")


def wait_graceful_wait(process) -> None:
    """Until the server, its listeners closed, logged that it waits for connections in flight."""
    wait_output(process, b"Waiting for connections to close")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_request_in_flight_completes_with_connection_close(cli, sig):
    process = cli(APP, "--port", "0")
    sock = start_sleep_request(process.port, 1.0)
    with sock:
        wait_app_started(process)
        os.killpg(process.proc.pid, sig)
        wait_graceful_wait(process)
        with pytest.raises(OSError):  # no longer accepting
            socket.create_connection(("127.0.0.1", process.port), timeout=1).close()
        raw, closed = read_until_close(sock, timeout=5)
    responses, _ = parse_responses(raw)
    assert [(r.status, r.body) for r in responses] == [(200, b"slept")]
    assert responses[0].header(b"connection") == b"close"
    assert closed
    assert wait_exit(process, 10) == 0
    assert "lifespan: shutdown complete" in output_of(process)


def test_idle_keep_alive_connections_are_closed_at_once(cli):
    process = cli(APP, "--port", "0", "--timeout-keep-alive", "60")
    with connect(process.port) as idle:
        idle.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        (response,) = read_responses(idle, 1)
        assert response.header(b"connection") is None  # kept alive
        started = time.monotonic()
        os.killpg(process.proc.pid, signal.SIGTERM)
        raw, closed = read_until_close(idle, timeout=5)
    assert closed
    assert raw == b""
    assert time.monotonic() - started < 3
    assert wait_exit(process, 10) == 0


def test_graceful_shutdown_timeout_cancels_requests_left_over(cli):
    process = cli(APP, "--port", "0", "--timeout-graceful-shutdown", "1")
    sock = start_sleep_request(process.port, 30)
    with sock:
        wait_app_started(process)
        started = time.monotonic()
        os.killpg(process.proc.pid, signal.SIGTERM)
        raw, closed = read_until_close(sock, timeout=6)
    assert closed
    assert raw == b""
    assert wait_exit(process, 10) == 0
    assert time.monotonic() - started < 4
    output = output_of(process)
    assert "request: cancelled" in output
    assert "lifespan: shutdown complete" in output


def test_second_signal_forces_exit(cli):
    process = cli(APP, "--port", "0")  # the default graceful timeout (30 s) would outlast this test
    sock = start_sleep_request(process.port, 30)
    with sock:
        wait_app_started(process)
        os.killpg(process.proc.pid, signal.SIGINT)
        wait_graceful_wait(process)
        with pytest.raises(subprocess.TimeoutExpired):  # a negative: no exit while the request runs
            process.proc.wait(0.5)
        started = time.monotonic()
        os.killpg(process.proc.pid, signal.SIGINT)
        wait_exit(process, 5)
        assert time.monotonic() - started < 3
        _, closed = read_until_close(sock, timeout=3)
    assert closed
