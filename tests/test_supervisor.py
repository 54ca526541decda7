"""The prefork supervisor (`celeris APP --workers N`), with real processes, signals and clients.

Each test runs the command line in its own process group (conftest.start_cli) on port 0, and an app
written into tmp_path that answers with its worker's pid, so a test can tell which worker served.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from celeris_asgi.config import Config
from celeris_asgi.main import EXIT_CONFIG, serve_config
from tests.conftest import ROOT, CliProcess, start_cli, stop_process

PID_APP = """
import asyncio, os, time

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["path"] == "/slow":
        print("slow request in flight", flush=True)  # a test waits for this line before it signals
        await asyncio.sleep(1.0)
    elif scope["path"] == "/block":
        time.sleep(30)  # a stuck event loop: the health check must notice
    elif scope["path"] == "/crash":
        os._exit(1)
    body = str(os.getpid()).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
"""

HANGING_IMPORT = """
import time
time.sleep(3600)  # a module that never finishes importing (a stuck connection at import time)
"""

# The first worker to start up hangs in its lifespan startup; every later one serves PID_APP.
HANG_ONCE_APP = """
import asyncio, os
from pidapp import app as pid_app

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        try:
            os.close(os.open(os.path.join(os.path.dirname(__file__), "hung"), os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            pass
        else:
            await asyncio.Event().wait()
    await pid_app(scope, receive, send)
"""

FAILING_LIFESPAN_APP = """
async def app(scope, receive, send):
    assert scope["type"] == "lifespan"
    await receive()
    await send({"type": "lifespan.startup.failed", "message": "database unreachable"})
"""


class LogTail:
    """Collects a process's output on a thread (so its pipe never fills) and waits for patterns."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self.read, args=(proc,), daemon=True)
        self.thread.start()

    def read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            with self.changed:
                self.lines.append(raw.decode(errors="replace").rstrip())
                self.changed.notify_all()

    def matches(self, pattern: str) -> list[re.Match[str]]:
        with self.changed:
            return [m for m in map(re.compile(pattern).search, self.lines) if m]

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 10) -> list[re.Match[str]]:
        deadline = time.monotonic() + timeout
        with self.changed:
            while len(found := self.matches(pattern)) < count:
                if not self.changed.wait(deadline - time.monotonic()) and time.monotonic() > deadline:
                    raise AssertionError(f"{pattern!r} x{count} not in log:\n" + "\n".join(self.lines[-40:]))
            return found

    def text(self) -> str:
        with self.changed:
            return "\n".join(self.lines)

    def wait_eof(self, timeout: float = 10) -> None:
        """Until the reader has met the end of the output: the process has exited, but its last lines
        may still be in the pipe when the test checks all of them."""
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the output did not end:\n" + "\n".join(self.lines[-40:])


def fetch(port: int, path: str = "/", timeout: float = 5) -> tuple[int, str]:
    """One GET on a fresh connection (no keep-alive race): (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 "):
        raise ConnectionError(f"no response: {data[:60]!r}")
    return int(head[9:12]), body.decode()


class Load:
    """Threads sending requests back to back; counts answers per worker pid and failures."""

    def __init__(self, port: int, threads: int = 4) -> None:
        self.port = port
        self.pids: Counter[str] = Counter()
        self.failures: list[str] = []
        self.running = True
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.loop, daemon=True) for _ in range(threads)]
        for thread in self.threads:
            thread.start()

    def loop(self) -> None:
        while self.running:
            try:
                status, body = fetch(self.port)
                ok = status == 200
            except OSError as exc:
                ok, body = False, repr(exc)
            with self.lock:
                if ok:
                    self.pids[body] += 1
                else:
                    self.failures.append(body)

    def total(self) -> int:
        with self.lock:
            return sum(self.pids.values())

    def wait_requests(self, count: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        start = self.total()
        while self.total() - start < count:
            assert time.monotonic() < deadline, f"load stalled at {self.total()} requests"
            time.sleep(0.01)

    def stop(self) -> None:
        self.running = False
        for thread in self.threads:
            thread.join(10)


@contextlib.contextmanager
def supervisor(app_dir: Path, *args: str, app: str = "pidapp:app") -> Iterator[tuple[CliProcess, LogTail]]:
    """`celeris APP --app-dir APP_DIR ARGS` on port 0; stopped (process group) afterwards."""
    process = start_cli(app, "--app-dir", str(app_dir), "--port", "0", "--no-access-log", *args, wait_ready=False)
    tail = LogTail(process.proc)
    try:
        process.port = int(tail.wait_for(r"running on http://127\.0\.0\.1:(\d+)")[0][1])
        yield process, tail
    finally:
        stop_process(process.proc)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "pidapp.py").write_text(PID_APP)
    return tmp_path


def worker_pids(tail: LogTail) -> set[str]:
    """Workers that reported READY and have not stopped or died since."""
    serving = {m[1] for m in tail.matches(r"Worker \[(\d+)\] is serving")}
    gone = {m[1] for m in tail.matches(r"Worker \[(\d+)\] (?:stopped|died)")}
    return serving - gone


def wait_until(predicate: Callable[[], bool], timeout: float = 10, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {message}"
        time.sleep(0.02)


@pytest.mark.timeout(20)
def test_two_workers_serve_and_sigterm_lets_a_slow_request_finish(app_dir: Path, tmp_path: Path) -> None:
    pid_file = tmp_path / "celeris.pid"
    with supervisor(app_dir, "--workers", "2", "--pid-file", str(pid_file)) as (process, tail):
        tail.wait_for(r"is serving", count=2)
        assert pid_file.read_text().strip() == str(process.proc.pid)
        seen = {fetch(process.port)[1] for _ in range(40)}
        assert seen <= worker_pids(tail) and seen
        result: list[tuple[int, str]] = []
        slow = threading.Thread(target=lambda: result.append(fetch(process.port, "/slow")))
        slow.start()
        tail.wait_for(r"slow request in flight")  # a worker has it: a signal earlier would find it queued
        process.proc.send_signal(signal.SIGTERM)
        slow.join(5)
        assert result and result[0][0] == 200
        assert process.proc.wait(10) == 0
    assert not pid_file.exists()
    tail.wait_for(r"Shutting down \(SIGTERM\)")  # the reader thread may not have read it yet


@pytest.mark.timeout(20)
def test_ctrl_c_to_the_process_group_lets_a_slow_request_finish(app_dir: Path) -> None:
    # A terminal sends SIGINT to every process of the group; the master then sends SIGTERM too,
    # which must not turn the workers' graceful stop into a forced one.
    with supervisor(app_dir, "--workers", "2") as (process, tail):
        tail.wait_for(r"is serving", count=2)
        result: list[tuple[int, str]] = []
        slow = threading.Thread(target=lambda: result.append(fetch(process.port, "/slow")))
        slow.start()
        tail.wait_for(r"slow request in flight")
        os.killpg(process.proc.pid, signal.SIGINT)
        slow.join(5)
        assert result and result[0][0] == 200
        assert process.proc.wait(10) == 0


@pytest.mark.timeout(20)
def test_kill_9_worker_is_replaced_while_the_other_keeps_serving(app_dir: Path) -> None:
    with supervisor(app_dir, "--workers", "2") as (process, tail):
        tail.wait_for(r"is serving", count=2)
        load = Load(process.port)
        try:
            load.wait_requests(50)
            victim = sorted(worker_pids(tail))[0]
            os.kill(int(victim), signal.SIGKILL)
            tail.wait_for(rf"Worker \[{victim}\] died \(killed by SIGKILL\)")
            tail.wait_for(r"is serving", count=3)
            load.wait_requests(100)
        finally:
            load.stop()
        replacement = worker_pids(tail) - {victim}
        assert len(replacement) == 2
        assert len(load.failures) <= 4, load.failures  # at most the requests the killed worker held
        assert all(load.pids[pid] for pid in replacement)


@pytest.mark.timeout(20)
def test_sighup_rolling_restart_has_zero_failed_requests(app_dir: Path) -> None:
    with supervisor(app_dir, "--workers", "2") as (process, tail):
        tail.wait_for(r"is serving", count=2)
        old = worker_pids(tail)
        load = Load(process.port)
        try:
            load.wait_requests(50)
            process.proc.send_signal(signal.SIGHUP)
            tail.wait_for(r"Worker \[\d+\] stopped", count=2)
            before = Counter(load.pids)
            load.wait_requests(50)
        finally:
            load.stop()
        new = worker_pids(tail)
        assert len(new) == 2 and not new & old
        assert load.failures == []
        assert sum((load.pids - before)[pid] for pid in new) >= 50
        # Rolling: each old worker was stopped only after its replacement served.
        log = tail.text()
        for match in re.finditer(r"Stopping worker \[(\d+)\] \(replaced by worker \[(\d+)\]\)", log):
            assert log.index(f"Worker [{match[2]}] is serving") < match.start()


@pytest.mark.timeout(20)
def test_max_requests_recycles_workers_without_failed_requests(app_dir: Path) -> None:
    with supervisor(app_dir, "--workers", "2", "--limit-max-requests", "60") as (process, tail):
        tail.wait_for(r"is serving", count=2)
        load = Load(process.port)
        try:
            tail.wait_for(r"reached --limit-max-requests; replacing it", count=2)
            tail.wait_for(r"Worker \[\d+\] stopped", count=2)
            load.wait_requests(30)
        finally:
            load.stop()
        assert load.failures == []
        assert len(load.pids) >= 3
        assert "Started worker" in tail.text() and "died" not in tail.text()


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("flag", "reason"),
    [
        ("--workers-lifetime", "reached --workers-lifetime"),
        ("--workers-max-rss", "exceeded --workers-max-rss"),
    ],
)
def test_lifetime_and_memory_limits_recycle_workers(app_dir: Path, flag: str, reason: str) -> None:
    # 1 second, 1 MiB: every worker hits the limit soon after it starts serving.
    with supervisor(app_dir, "--workers", "2", flag, "1") as (process, tail):
        tail.wait_for(rf"{reason}; replacing it", count=2)
        tail.wait_for(r"Worker \[\d+\] stopped \(exit code 0\)", count=2)
        assert fetch(process.port)[0] == 200


@pytest.mark.timeout(20)
def test_ttin_adds_a_worker_and_ttou_removes_one(app_dir: Path) -> None:
    with supervisor(app_dir, "--workers", "2") as (process, tail):
        tail.wait_for(r"is serving", count=2)
        process.proc.send_signal(signal.SIGTTIN)
        tail.wait_for(r"is serving", count=3)
        assert len(worker_pids(tail)) == 3
        process.proc.send_signal(signal.SIGTTOU)
        tail.wait_for(r"2 workers wanted")  # signals sent back to back may merge into one
        process.proc.send_signal(signal.SIGTTOU)
        tail.wait_for(r"Worker \[\d+\] stopped", count=2)
        assert len(worker_pids(tail)) == 1
        process.proc.send_signal(signal.SIGTTOU)
        tail.wait_for(r"keeping the last worker")
        assert fetch(process.port)[1] in worker_pids(tail)


@pytest.mark.timeout(20)
def test_health_check_kills_and_replaces_a_stuck_worker(app_dir: Path) -> None:
    with supervisor(app_dir, "--workers", "2", "--timeout-worker-healthcheck", "1") as (process, tail):
        tail.wait_for(r"is serving", count=2)
        with contextlib.suppress(OSError):
            fetch(process.port, "/block", timeout=0.3)
        tail.wait_for(r"did not answer its health check for 1.0 s; killing it")
        tail.wait_for(r"died \(killed by SIGKILL\); starting a replacement")
        tail.wait_for(r"is serving", count=3)
        assert fetch(process.port)[0] == 200


@pytest.mark.timeout(20)
def test_workers_that_keep_crashing_are_restarted_with_a_back_off(app_dir: Path) -> None:
    with supervisor(app_dir, "--workers", "2") as (process, tail):
        tail.wait_for(r"is serving", count=2)
        for crashes in (1, 2):
            with contextlib.suppress(OSError):
                fetch(process.port, "/crash")
            tail.wait_for(r"died \(exit code 1\); starting a replacement", count=crashes)
            if crashes == 1:
                # The replacement's first request may kill it: from the moment it listens, that is a
                # death (it said READY before it accepted), not a failed start.
                tail.wait_for(r"Celeris running on", count=3)
        tail.wait_for(r"2 worker failures in a row: next start in 0\.5 s")
        tail.wait_for(r"is serving", count=4)
        assert fetch(process.port)[0] == 200


@pytest.mark.timeout(20)
def test_a_worker_hanging_in_startup_is_killed_and_replaced_while_another_serves(app_dir: Path) -> None:
    (app_dir / "hangonce.py").write_text(HANG_ONCE_APP)
    args = ("--workers", "2", "--timeout-worker-startup", "1")
    with supervisor(app_dir, *args, app="hangonce:app") as (process, tail):
        hung = tail.wait_for(r"Worker \[(\d+)\] did not start within 1\.0 s \(--timeout-worker-startup\); killing it")
        hung_pid = hung[0][1]
        tail.wait_for(rf"Worker \[{hung_pid}\] failed to start \(killed by SIGKILL\)")
        tail.wait_for(r"Started worker \[\d+\]$", count=3)  # the replacement, started at once
        tail.wait_for(r"is serving", count=2)
        assert len(worker_pids(tail)) == 2 and hung_pid not in worker_pids(tail)
        assert fetch(process.port)[0] == 200
        assert process.proc.poll() is None
    assert "No worker could start" not in tail.text()


@pytest.mark.timeout(15)
@pytest.mark.parametrize(
    ("source", "args", "code", "message"),
    [
        ("raise ImportError('no such dependency')", (), 1, "Error loading module"),
        (FAILING_LIFESPAN_APP, (), 3, "database unreachable"),
        (
            HANGING_IMPORT,
            ("--timeout-worker-startup", "1"),
            1,
            "did not start within 1.0 s (--timeout-worker-startup); killing it",
        ),
    ],
    ids=["import-error", "lifespan-failed", "startup-timeout"],
)
def test_an_app_that_cannot_start_stops_the_supervisor_quickly(
    tmp_path: Path, source: str, args: tuple[str, ...], code: int, message: str
) -> None:
    (tmp_path / "broken.py").write_text(source)
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celeris_asgi",
            "broken:app",
            "--app-dir",
            str(tmp_path),
            "--port",
            "0",
            "--workers",
            "2",
            "--lifespan",
            "on",
            *args,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=10)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # hung workers a failing master left behind
        proc.wait(5)
    assert proc.returncode == code, output
    assert time.monotonic() - started < 5
    assert message in output
    assert "No worker could start; stopping." in output
    assert output.count("Started worker") == 2  # not restarted


@pytest.mark.timeout(10)
def test_a_port_in_use_is_one_clear_error(app_dir: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "celeris_asgi",
                "pidapp:app",
                "--app-dir",
                str(app_dir),
                "--port",
                str(port),
                "--workers",
                "2",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
    assert result.returncode == 1
    lines = [line.split(None, 1) for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert lines == [["ERROR:", f"Cannot bind to 127.0.0.1:{port}: Address already in use."]]


@pytest.mark.timeout(20)
def test_reuse_port_gives_each_worker_its_own_socket(app_dir: Path) -> None:
    with supervisor(app_dir, "--workers", "2", "--reuse-port") as (process, tail):
        tail.wait_for(r"is serving", count=2)
        assert "SO_REUSEPORT" in tail.text()
        seen = Counter(fetch(process.port)[1] for _ in range(100))
        assert set(seen) == worker_pids(tail)  # the kernel spread fresh connections over both


@pytest.mark.timeout(15)
def test_run_with_workers_from_python(app_dir: Path) -> None:
    script = textwrap.dedent(
        f"""
        import celeris_asgi
        celeris_asgi.run("pidapp:app", app_dir={str(app_dir)!r}, port=0, workers=2, access_log=False)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    tail = LogTail(proc)
    try:
        port = int(tail.wait_for(r"running on http://127\.0\.0\.1:(\d+)")[0][1])
        tail.wait_for(r"is serving", count=2)
        assert fetch(port)[0] == 200
    finally:
        assert stop_process(proc) == 0


def test_an_app_object_with_workers_asks_for_an_import_string(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: dict, receive: Callable, send: Callable) -> None: ...

    assert serve_config(Config(app, workers=2, log_config=None)) == EXIT_CONFIG
    assert "import string" in caplog.text
