"""The servers under test: how to start each one, know it is ready, measure it, and stop it for sure.

Every server runs one worker, access log off, bound to 127.0.0.1, in its own process group pinned
to the server CPU, so the harness can kill the whole group (masters, workers, resource trackers)
on any exit path and read CPU and memory for the whole process tree from /proc.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.procfs import process_tree, socket_count

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
APPS = {
    "raw": "benchmarks.apps.raw:app",
    "starlette": "benchmarks.apps.starlette_app:app",
    "fastapi": "benchmarks.apps.fastapi_app:app",
}
# Idle connections must outlive the memory measurement; every server gets this keep-alive (s).
IDLE_KEEP_ALIVE = 600
# Granian has no idle keep-alive timeout flag; hyper's header-read timeout (max 60 s) is the
# nearest knob, so it is raised to its maximum for memory runs.
GRANIAN_MAX_HEADER_READ_MS = 60_000
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"

Builder = Callable[[str, int, str, bool], list[str]]


def _celeris(app: str, port: int, proto: str, idle: bool) -> list[str]:
    cmd = ["-m", "celeris_asgi", app, "--host", HOST, "--port", str(port)]
    cmd += ["--no-access-log", "--log-level", "warning"]
    return cmd + (["--timeout-keep-alive", str(IDLE_KEEP_ALIVE)] if idle else [])


def _uvicorn(app: str, port: int, proto: str, idle: bool) -> list[str]:
    cmd = ["-m", "uvicorn", app, "--host", HOST, "--port", str(port), "--loop", "uvloop"]
    cmd += ["--http", "httptools", "--no-access-log", "--log-level", "warning"]
    return cmd + (["--timeout-keep-alive", str(IDLE_KEEP_ALIVE)] if idle else [])


def _uvicorn_zttp(app: str, port: int, proto: str, idle: bool) -> list[str]:
    cmd = ["-m", "uvicorn", app, "--host", HOST, "--port", str(port), "--loop", "uvloop"]
    cmd += ["--http", "zttp", "--http2", "--no-access-log", "--log-level", "warning"]
    return cmd + (["--timeout-keep-alive", str(IDLE_KEEP_ALIVE)] if idle else [])


def _hypercorn(app: str, port: int, proto: str, idle: bool) -> list[str]:
    # Hypercorn writes no access log unless --access-logfile is given; -w 1 is one spawned worker.
    cmd = ["-m", "hypercorn", app, "-b", f"{HOST}:{port}", "-k", "uvloop", "-w", "1"]
    cmd += ["--log-level", "warning"]
    return cmd + (["--keep-alive", str(IDLE_KEEP_ALIVE)] if idle else [])


def _granian(app: str, port: int, proto: str, idle: bool) -> list[str]:
    # Granian's default `--http auto` also answers h2c prior knowledge; `--http 2` is its
    # dedicated HTTP/2 mode, the strongest baseline for the h2 ratio.
    cmd = ["-m", "granian", "--interface", "asgi", "--loop", "uvloop", "--workers", "1"]
    cmd += ["--host", HOST, "--port", str(port), "--no-access-log", "--log-level", "warning"]
    cmd += ["--http", "2" if proto == "h2" else "auto"]
    if idle:
        # Its default backpressure (backlog/workers = 1024) also caps open connections.
        cmd += ["--http1-header-read-timeout", str(GRANIAN_MAX_HEADER_READ_MS), "--backpressure", "65536"]
    return [*cmd, app]


def _h2corn(app: str, port: int, proto: str, idle: bool) -> list[str]:
    # One worker whose Rust I/O runs on one Tokio thread: the server is pinned to one core, where a
    # second runtime thread could only take turns with the first (and with the Python loop).
    # HTTP/1.1 and h2c prior knowledge share the port; access log off (it has no log-level flag).
    cmd = ["-m", "h2corn", app, "--bind", f"{HOST}:{port}", "--workers", "1", "--runtime-threads", "1"]
    cmd += ["--loop", "uvloop", "--no-access-log"]
    return cmd + (["--timeout-keep-alive", str(IDLE_KEEP_ALIVE)] if idle else [])


@dataclass(frozen=True)
class ServerSpec:
    """One server variant: what it needs installed, which protocols it speaks, how to start it."""

    name: str
    package: str  # distribution name, for the version in the report
    modules: tuple[str, ...]  # importable modules it needs; missing ones skip the server
    protocols: frozenset[str]  # "h1" (plain and pipelined) and/or "h2" (h2c prior knowledge)
    build: Builder = field(repr=False)
    needs: Callable[[], str | None] = field(default=lambda: None, repr=False)

    def missing(self) -> str | None:
        """Why this server cannot run here, or None when it can."""
        for module in self.modules:
            if importlib.util.find_spec(module) is None:
                return f"module {module!r} is not installed in {sys.executable}"
        return self.needs()

    def version(self) -> str:
        try:
            return importlib.metadata.version(self.package)
        except importlib.metadata.PackageNotFoundError:
            return "unknown"

    def command(self, app: str, port: int, proto: str, idle: bool = False) -> list[str]:
        return [sys.executable, *self.build(APPS[app], port, proto, idle)]


def _uvicorn_has_zttp() -> str | None:
    """uvicorn gained `--http zttp --http2` only recently; older ones must be skipped, not crash."""
    from uvicorn.config import HTTP_PROTOCOLS  # imported lazily: only when uvicorn is installed

    return None if "zttp" in HTTP_PROTOCOLS else "this uvicorn has no `--http zttp`"


SERVERS: dict[str, ServerSpec] = {
    spec.name: spec
    for spec in (
        ServerSpec("celeris", "celeris-asgi", ("celeris_asgi",), frozenset({"h1", "h2"}), _celeris),
        ServerSpec("uvicorn", "uvicorn", ("uvicorn", "uvloop", "httptools"), frozenset({"h1"}), _uvicorn),
        ServerSpec(
            "uvicorn-zttp",
            "uvicorn",
            ("uvicorn", "uvloop", "zttp"),
            frozenset({"h1", "h2"}),
            _uvicorn_zttp,
            _uvicorn_has_zttp,
        ),
        ServerSpec("hypercorn", "hypercorn", ("hypercorn", "uvloop"), frozenset({"h1", "h2"}), _hypercorn),
        ServerSpec("granian", "granian", ("granian",), frozenset({"h1", "h2"}), _granian),
        ServerSpec("h2corn", "h2corn", ("h2corn", "uvloop"), frozenset({"h1", "h2"}), _h2corn),
    )
}


def free_port() -> int:
    """A loopback port nobody listens on right now (never a fixed one: other jobs share the box)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _probe(port: int, proto: str) -> bool:
    """True once the port answers in the protocol we will load it with."""
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as sock:
            if proto == "h2":
                sock.sendall(H2_PREFACE + EMPTY_SETTINGS)
                header = sock.recv(9)
                return len(header) >= 4 and header[3] == 0x4  # the server's SETTINGS frame
            sock.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            return sock.recv(16).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


class ServerFailed(RuntimeError):
    """A server did not come up; the message is one line fit for the report."""


class RunningServer:
    """A started server process group; use as a context manager so it is always killed."""

    def __init__(self, spec: ServerSpec, app: str, proto: str, cpu: int | None, idle: bool = False):
        self.spec, self.app, self.proto = spec, app, proto
        self.port = free_port()
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server; closed in stop()
        cmd = spec.command(app, self.port, proto, idle)
        if cpu is not None:
            cmd = ["taskset", "-c", str(cpu), *cmd]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        LIVE.add(self)

    def wait_ready(self, timeout: float) -> None:
        """Block until the port answers; raise ServerFailed with the log's last line otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerFailed(f"exited with code {self.proc.returncode}: {self.last_log_line()}")
            if _probe(self.port, self.proto):
                time.sleep(0.2)  # a server that lost the port race exits now rather than mid-run
                if self.proc.poll() is None:
                    return
            time.sleep(0.1)
        raise ServerFailed(f"did not answer on port {self.port} within {timeout:.0f}s: {self.last_log_line()}")

    def last_log_line(self) -> str:
        self.log.seek(0)
        lines = [line.strip() for line in self.log.read().decode(errors="replace").splitlines() if line.strip()]
        return lines[-1][:200] if lines else "(no output)"

    def tree(self) -> list[int]:
        return process_tree(self.proc.pid)

    def worker_pid(self) -> int:
        """The process that serves connections: most sockets, deepest on a tie (masters hold one too)."""
        pids = self.tree()
        return max(pids, key=lambda pid: (socket_count(pid), pids.index(pid)))

    def stop(self) -> None:
        """SIGTERM the group, wait briefly, then SIGKILL whatever of the group is left (once only)."""
        if self not in LIVE:
            return
        LIVE.discard(self)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self.log.close()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


LIVE: set[RunningServer] = set()


def stop_all() -> None:
    """Kill every server still running: called on normal exit, ctrl-c and SIGTERM."""
    for server in list(LIVE):
        server.stop()
