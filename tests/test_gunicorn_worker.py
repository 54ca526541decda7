"""celeris as a gunicorn worker class, under a real gunicorn arbiter with real signals."""

from __future__ import annotations

import contextlib
import importlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, stop_process
from tests.test_supervisor import FAILING_LIFESPAN_APP, PID_APP, Load, LogTail, fetch

gunicorn_config = pytest.importorskip("gunicorn.config")
WORKER = "celeris_asgi.workers.CelerisWorker"
# gunicorn >= 24 opens a control socket in $HOME by default; tests leave nothing behind.
NO_CONTROL = ["--no-control-socket"] if "control_socket_disable" in gunicorn_config.Config().settings else []


def http2_ready() -> bool:
    try:
        importlib.import_module("celeris_asgi.protocols.http2").HTTP2Protocol  # noqa: B018
    except (ImportError, AttributeError):
        return False
    return True


# PID_APP, telling the test when a /slow request has reached the app (it is then in flight).
SLOW_MARKING_APP = (
    PID_APP
    + """
_pid_app = app


async def app(scope, receive, send):
    if scope["type"] == "http" and scope["path"] == "/slow":
        print("pidapp: /slow started", flush=True)
    await _pid_app(scope, receive, send)
"""
)


@contextlib.contextmanager
def gunicorn(app_dir: Path, *args: str) -> Iterator[tuple[subprocess.Popen[bytes], LogTail, int]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-k",
            WORKER,
            "--bind",
            "127.0.0.1:0",
            "--chdir",
            str(app_dir),
            "--graceful-timeout",
            "5",
            *NO_CONTROL,
            *args,
            "pidapp:app",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    tail = LogTail(proc)
    try:
        port = int(tail.wait_for(r"Listening at: http://127\.0\.0\.1:(\d+)")[0][1])
        yield proc, tail, port
    finally:
        stop_process(proc)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "pidapp.py").write_text(SLOW_MARKING_APP)
    return tmp_path


@pytest.mark.timeout(20)
def test_gunicorn_worker_serves_http1_and_h2c_with_gunicorns_access_log(app_dir: Path, tmp_path: Path) -> None:
    access = tmp_path / "access.log"
    with gunicorn(
        app_dir,
        "--workers",
        "2",
        "--access-logfile",
        str(access),
        "--access-logformat",
        '%(m)s %(U)s %(s)s "%(a)s"',
    ) as (_proc, tail, port):
        tail.wait_for(r"running on http://127\.0\.0\.1", count=2)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            response = client.get("/hello", headers={"user-agent": "ua-test"})
        assert response.status_code == 200 and response.http_version == "HTTP/1.1"
        assert response.headers["server"] == "celeris"
        if http2_ready():
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", http1=False, http2=True) as client:
                response = client.get("/h2")
            assert response.status_code == 200 and response.http_version == "HTTP/2"
        deadline = time.monotonic() + 5
        while 'GET /hello 200 "ua-test"' not in (access.read_text() if access.exists() else ""):
            assert time.monotonic() < deadline, access.read_text()
            time.sleep(0.05)
    if not http2_ready():
        pytest.skip("HTTP/1.1 checked; celeris_asgi.protocols.http2 is not importable yet")


@pytest.mark.timeout(25)
def test_gunicorn_signals_term_is_graceful_hup_replaces_usr1_reopens_logs(app_dir: Path, tmp_path: Path) -> None:
    access = tmp_path / "access.log"
    with gunicorn(app_dir, "--workers", "2", "--access-logfile", str(access)) as (proc, tail, port):
        tail.wait_for(r"running on http://127\.0\.0\.1", count=2)
        old = {fetch(port)[1] for _ in range(30)}
        # USR1: the arbiter and the workers reopen their log files (logrotate's move-then-signal).
        access.rename(tmp_path / "access.log.1")
        proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while not access.exists() or "GET / " not in access.read_text():
            assert time.monotonic() < deadline, "access log not reopened after USR1"
            fetch(port)
            time.sleep(0.05)
        # HUP: the arbiter starts new workers and stops the old ones gracefully, with no failed request.
        load = Load(port, threads=2)
        try:
            proc.send_signal(signal.SIGHUP)
            tail.wait_for(r"running on http://127\.0\.0\.1", count=4)
            for pid in old:  # gunicorn logs this once the worker's server has shut down
                tail.wait_for(rf"Worker exiting \(pid: {pid}\)")
            load.wait_requests(30)
        finally:
            load.stop()
        assert load.failures == []
        new = {fetch(port)[1] for _ in range(30)}
        assert new and not new & old
        # TERM: the request in flight completes before the worker exits.
        result: list[tuple[int, str]] = []
        slow = threading.Thread(target=lambda: result.append(fetch(port, "/slow")))
        slow.start()
        tail.wait_for(r"pidapp: /slow started")
        proc.send_signal(signal.SIGTERM)
        slow.join(5)
        assert result and result[0][0] == 200
        assert proc.wait(10) == 0


@pytest.mark.timeout(20)
def test_gunicorn_max_requests_recycles_workers_without_failed_requests(app_dir: Path) -> None:
    with gunicorn(app_dir, "--workers", "2", "--max-requests", "40", "--max-requests-jitter", "10") as (
        _proc,
        tail,
        port,
    ):
        tail.wait_for(r"running on http://127\.0\.0\.1", count=2)
        load = Load(port, threads=2)
        try:
            tail.wait_for(r"Autorestarting worker", count=2)
            tail.wait_for(r"running on http://127\.0\.0\.1", count=4)
            load.wait_requests(30)
        finally:
            load.stop()
        assert load.failures == []
        assert len(load.pids) >= 3


@pytest.mark.timeout(15)
def test_gunicorn_halts_when_lifespan_startup_fails(tmp_path: Path) -> None:
    (tmp_path / "pidapp.py").write_text(FAILING_LIFESPAN_APP)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-k",
            WORKER,
            "--bind",
            "127.0.0.1:0",
            "--chdir",
            str(tmp_path),
            *NO_CONTROL,
            "pidapp:app",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=10,
        start_new_session=True,
    )
    assert result.returncode == 3, result.stderr
    assert "Application startup failed: database unreachable" in result.stderr
    assert "Worker failed to boot" in result.stderr
