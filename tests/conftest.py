"""Shared fixtures: a real server on 127.0.0.1 (port 0) on its own thread, raw sockets, the CLI."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from celeris_asgi.config import Config
from celeris_asgi.server import Server
from tests.rawhttp import read_until_close

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class RunningServer:
    server: Server
    config: Config
    port: int
    thread: threading.Thread
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def stop(self, timeout: float = 15) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "server thread did not stop"


@contextlib.contextmanager
def running_server(app: Any, **settings: Any) -> Iterator[RunningServer]:
    """Start a Server for `app` on a free port in a thread; stop it (gracefully) afterwards."""
    settings.setdefault("log_level", "warning")
    settings.setdefault("lifespan", "auto")
    settings.setdefault("log_config", None)  # leave logging to pytest (caplog)
    config = Config(app, host="127.0.0.1", port=0, install_signal_handlers=False, **settings)
    config.load()
    sock = config.bind_socket()
    port = sock.getsockname()[1]
    server = Server(config)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # surfaced to the test below
            errors.append(exc)

    thread = threading.Thread(target=target, name="celeris-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and not errors and thread.is_alive():
        if time.monotonic() > deadline:
            raise TimeoutError("server did not start")
        time.sleep(0.01)
    if errors:
        raise errors[0]
    running = RunningServer(server, config, port, thread, "https" if config.ssl else "http")
    try:
        yield running
    finally:
        if thread.is_alive():
            running.stop()
        sock.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., RunningServer]]:
    """`serve(app, **settings)` starts a real server; every server is stopped at test end."""
    stack = contextlib.ExitStack()

    def start(app: Any, **settings: Any) -> RunningServer:
        return stack.enter_context(running_server(app, **settings))

    with stack:
        yield start


class MetricsLineCatcher(logging.Handler):
    """Collects the ports that "Metrics on http://127.0.0.1:PORT/metrics" lines report."""

    LINE = re.compile(r"Metrics on http://127\.0\.0\.1:(\d+)/metrics")

    def __init__(self) -> None:
        super().__init__()
        self.ports: list[int] = []

    def emit(self, record: logging.LogRecord) -> None:
        if match := self.LINE.search(record.getMessage()):
            self.ports.append(int(match[1]))


def metered(serve: Callable[..., RunningServer], app: Any, **settings: Any) -> tuple[RunningServer, int]:
    """A server with --metrics-address 127.0.0.1:0: (server, metrics port). The port is the one the
    server's own start-up line reports, so no other process can take it between a pick and the bind."""
    settings.setdefault("log_level", "info")  # the "Metrics on" line is an INFO line
    catcher = MetricsLineCatcher()
    logger = logging.getLogger("celeris.error")
    logger.addHandler(catcher)
    try:
        server = serve(app, metrics_address="127.0.0.1:0", **settings)  # returns once start-up has logged
    finally:
        logger.removeHandler(catcher)
    assert len(catcher.ports) == 1, f"expected one 'Metrics on' line, got ports {catcher.ports}"
    return server, catcher.ports[0]


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """The test CA that signs the server certificate of `cert_files` (the client trusts it)."""
    return trustme.CA()


@pytest.fixture(scope="session")
def cert_files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """certfile, keyfile, an encrypted keyfile (password "secret") and the CA bundle, as paths."""
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    folder = tmp_path_factory.mktemp("tls")
    paths = {name: folder / f"{name}.pem" for name in ("cert", "key", "encrypted_key", "ca")}
    leaf.cert_chain_pems[0].write_to_path(paths["cert"])
    leaf.private_key_pem.write_to_path(paths["key"])
    ca.cert_pem.write_to_path(paths["ca"])
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    paths["encrypted_key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    return {name: str(path) for name, path in paths.items()}


def raw_exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes on a new connection; read until the server closes it, which must happen within
    `timeout`. An answer on a connection the server keeps open: tests.rawhttp.first_response."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        raw, closed = read_until_close(sock, timeout)
    assert closed, f"the server kept the connection open after: {raw[:300]!r}"
    return raw


def wait_for(predicate: Callable[[], Any], timeout: float = 3.0) -> None:
    """Poll until predicate() is true; fail the test when it is not within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def response_status(raw: bytes) -> int:
    """The status code of the first response in raw bytes."""
    match = re.match(rb"HTTP/1\.[01] (\d{3})", raw)
    assert match, f"not an HTTP response: {raw[:80]!r}"
    return int(match.group(1))


@dataclass
class CliProcess:
    proc: subprocess.Popen[bytes]
    port: int | None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_cli(
    *args: str, env: dict[str, str] | None = None, wait_ready: bool = True, timeout: float = 15
) -> CliProcess:
    """Run `python -m celeris_asgi ARGS` from the repo root; read the port from its log line."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "celeris_asgi", *args],
        cwd=ROOT,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    if not wait_ready:
        return CliProcess(proc, None)
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        match = re.search(rb"running on https?://[^:]+:(\d+)", line)
        if match:
            return CliProcess(proc, int(match.group(1)))
    stop_process(proc)
    raise AssertionError(f"celeris did not start: {b''.join(seen).decode(errors='replace')}")


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15) -> int:
    """Signal the process group and wait; kill it if it does not exit in time."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    return proc.returncode


@pytest.fixture
def cli() -> Iterator[Callable[..., CliProcess]]:
    """`cli(*args)` starts the command line as a subprocess; all are stopped at test end."""
    procs: list[CliProcess] = []

    def start(*args: str, **kwargs: Any) -> CliProcess:
        process = start_cli(*args, **kwargs)
        procs.append(process)
        return process

    yield start
    for process in procs:
        stop_process(process.proc)


@pytest.fixture
def access_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog that sees celeris.access lines (the logger does not propagate by default)."""
    logger = logging.getLogger("celeris.access")
    saved = logger.propagate, logger.disabled
    logger.propagate, logger.disabled = True, False
    caplog.set_level(logging.INFO, logger="celeris.access")
    try:
        yield caplog
    finally:
        logger.propagate, logger.disabled = saved


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "celeris.access"]
