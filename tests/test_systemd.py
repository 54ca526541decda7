"""systemd: socket activation (LISTEN_FDS/LISTEN_PID without --fd) and sd_notify on $NOTIFY_SOCKET.

The test plays systemd: it listens on a unix datagram socket for the notifications and hands celeris
a listening socket as fd 3 with LISTEN_PID set to celeris's own pid.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, stop_process
from tests.test_dropin import APP, Celeris, celeris_processes

pytestmark = pytest.mark.timeout(60)
celeris = pytest.fixture(celeris_processes, name="celeris")


class NotifySocket:
    """systemd's side of sd_notify: a datagram socket collecting the messages."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(20)
        self.address = address

    def next(self) -> dict[str, str]:
        """The next message as its KEY=VALUE fields (waits up to 20 s)."""
        data = self.sock.recv(4096).decode()
        return dict(line.split("=", 1) for line in data.splitlines())

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NotifySocket]:
    if request.param == "path":
        address = str(tmp_path / "notify.sock")
    else:
        address = f"@celeris-test-notify-{os.getpid()}-{id(tmp_path)}"
    listener = NotifySocket(address)
    yield listener
    listener.close()


def test_single_process_notifies_ready_and_stopping(celeris, notify_socket):
    process = celeris(APP, "--port", "0", env={"NOTIFY_SOCKET": notify_socket.address})
    ready = notify_socket.next()
    assert ready["READY"] == "1"
    assert ready["STATUS"] == f"Serving on http://127.0.0.1:{process.port}"
    assert httpx.get(f"http://127.0.0.1:{process.port}/").text == "ok"
    os.kill(process.proc.pid, signal.SIGTERM)
    assert notify_socket.next() == {"STOPPING": "1"}
    assert process.proc.wait(20) == 0


def test_supervisor_notifies_ready_reloading_and_stopping(celeris, notify_socket):
    process = celeris(APP, "--port", "0", "--workers", "2", env={"NOTIFY_SOCKET": notify_socket.address})
    ready = notify_socket.next()
    assert ready["READY"] == "1"
    assert ready["STATUS"].endswith(f"serving on http://127.0.0.1:{process.port}")
    # The master has seen both workers serve before the reload, so both are replaced (one it has not yet
    # seen ready would be stopped instead, and READY would then come with one worker).
    process.read_until(r"Worker \[\d+\] is serving", count=2)
    os.kill(process.proc.pid, signal.SIGHUP)
    reloading = notify_socket.next()
    assert reloading["RELOADING"] == "1" and int(reloading["MONOTONIC_USEC"]) > 0
    # READY again once both workers run the new generation; the workers themselves never notify.
    assert notify_socket.next() == {"READY": "1", "STATUS": f"2 workers serving on http://127.0.0.1:{process.port}"}
    process.read_until(r"Stopping worker \[\d+\] \(replaced by", count=2)
    os.kill(process.proc.pid, signal.SIGTERM)
    assert notify_socket.next() == {"STOPPING": "1"}
    assert process.proc.wait(20) == 0


# ----- socket activation ---------------------------------------------------------------------------------

# Plays systemd's part in the child: the socket becomes fd 3, LISTEN_PID is the pid celeris will have.
ACTIVATE = (
    "import os, sys\n"
    "os.dup2(int(sys.argv[1]), 3)\n"
    "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1', LISTEN_FDNAMES='http')\n"
    "os.execv(sys.executable, [sys.executable, '-m', 'celeris_asgi', *sys.argv[2:]])\n"
)


@pytest.mark.parametrize("workers", ["1", "2"], ids=["single-process", "supervisor"])
def test_listen_fds_is_served_without_fd_flag(workers):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        fd = listener.fileno()
        proc = subprocess.Popen(
            [sys.executable, "-c", ACTIVATE, str(fd), APP, "--workers", workers],
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            pass_fds=[fd],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        process = Celeris(proc)
        try:
            process.read_until(rf"running on http://127\.0\.0\.1:{port} ", count=int(workers))
            assert httpx.get(f"http://127.0.0.1:{port}/env?LISTEN_PID").json() is None  # not passed on
        finally:
            assert process.stop() == 0
    assert "8000" not in process.output  # never bound the default port


def test_listen_pid_of_another_process_is_ignored(celeris):
    process = celeris(APP, "--port", "0", env={"LISTEN_PID": "1", "LISTEN_FDS": "1"})
    assert httpx.get(f"http://127.0.0.1:{process.port}/").text == "ok"
    assert stop_process(process.proc) == 0
