"""Inside one worker process of the supervisor: a Server, plus a pipe back to the master.

The worker talks to the master in single bytes over its own pipe:

- READY once the Server listens (the first call of the Server's tick, via `config.callback_notify`);
- HEARTBEAT every second or so from the same tick, so a blocked event loop goes silent and the
  master can kill it (`--timeout-worker-healthcheck`);
- STOPPING when a signal tells it to stop, so the master does not mistake a draining worker for a
  hung one;
- RETIRE_* when it reaches --limit-max-requests, --workers-max-rss or --workers-lifetime. It keeps
  serving: the master starts a replacement first and sends SIGTERM once that one is READY, so
  recycling never leaves the port without a worker.

A worker whose master has gone (its parent pid changed, or the pipe broke) shuts down by itself.
SIGUSR1, which the master passes on after logrotate, reopens the worker's log files.
"""

from __future__ import annotations

import asyncio
import logging
import mmap
import os
import resource
import signal
import socket
import sys
import time

from celeris_asgi.config import Config, ConfigError
from celeris_asgi.exits import EXIT_CONFIG, EXIT_OK, startup_failure_code
from celeris_asgi.lifespan import LifespanFailed
from celeris_asgi.logging import DEFAULT_LOG_CONFIG, access_logger, error_logger, reopen_log_files
from celeris_asgi.metrics import Metrics
from celeris_asgi.server import Server, new_event_loop

READY = b"r"
HEARTBEAT = b"h"
STOPPING = b"s"
RETIRE_REQUESTS = b"m"
RETIRE_MEMORY = b"M"
RETIRE_LIFETIME = b"l"
RETIRE_REASONS = {
    RETIRE_REQUESTS: "reached --limit-max-requests",
    RETIRE_MEMORY: "exceeded --workers-max-rss",
    RETIRE_LIFETIME: "reached --workers-lifetime",
}

MEMORY_CHECK_INTERVAL = 1.0  # seconds between RSS readings


def rss_mib() -> float:
    """Resident memory of this process in MiB (current on Linux, peak elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as file:
            pages = int(file.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024


class PidPrefix(logging.Filter):
    """Prefixes the server's own log lines with the worker pid, so N workers' logs can be told apart."""

    def __init__(self, pid: int) -> None:
        super().__init__()
        self.prefix = f"[worker {pid}] "

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.prefix + str(record.msg)
        return True


class WorkerMonitor:
    """The Server's tick callback: readiness, heartbeats, recycling limits and orphan detection."""

    def __init__(self, server: Server, pipe_fd: int, ppid: int, request_limit: int | None) -> None:
        config = server.config
        self.server = server
        self.metrics = config.metrics
        self.pipe_fd = pipe_fd
        self.ppid = ppid
        self.request_limit = request_limit
        self.max_rss = config.workers_max_rss
        self.lifetime = config.workers_lifetime
        self.interval = min(1.0, config.timeout_worker_healthcheck / 4)
        self.started = time.monotonic()
        self.ready = False
        self.retiring = False
        self.last_beat = 0.0
        self.last_memory_check = 0.0

    def send(self, message: bytes) -> None:
        try:
            os.write(self.pipe_fd, message)
        except BlockingIOError:
            pass  # the master is busy; a heartbeat more or less does not matter
        except OSError:
            self.orphaned()

    def orphaned(self) -> None:
        if not self.server.should_exit:
            error_logger.warning("The supervisor is gone; shutting down.")
            self.server.should_exit = True

    def __call__(self) -> None:
        if self.metrics is not None:
            self.metrics.in_flight(len(self.server.state.tasks))
            self.metrics.publish()  # what the master's scrape sees
        now = time.monotonic()
        if not self.ready:
            self.ready = True
            self.last_beat = now
            self.send(READY)
        elif now - self.last_beat >= self.interval:
            self.last_beat = now
            self.send(HEARTBEAT)
        if os.getppid() != self.ppid:
            self.orphaned()
        if not self.retiring:
            reason = self.retire_reason(now)
            if reason is not None:
                self.retiring = True
                error_logger.info("Asking the supervisor for a replacement: this worker %s.", RETIRE_REASONS[reason])
                self.send(reason)

    def retire_reason(self, now: float) -> bytes | None:
        if self.request_limit is not None and self.server.total_requests >= self.request_limit:
            return RETIRE_REQUESTS
        if self.lifetime is not None and now - self.started >= self.lifetime:
            return RETIRE_LIFETIME
        if self.max_rss is not None and now - self.last_memory_check >= MEMORY_CHECK_INTERVAL:
            self.last_memory_check = now
            if rss_mib() > self.max_rss:
                return RETIRE_MEMORY
        return None


class WorkerSignals:
    """SIGTERM and SIGINT stop gracefully (a second SIGINT forces); SIGQUIT stops quickly; SIGUSR1
    reopens the log files.

    SIGTERM after SIGINT does not force: CTRL+C reaches every process of the group and the master
    then sends SIGTERM too, which must not cut short the requests the first signal let finish.
    """

    def __init__(self, server: Server, monitor: WorkerMonitor) -> None:
        self.server = server
        self.monitor = monitor
        self.seen: set[int] = set()

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            loop.add_signal_handler(sig, self.handle, sig)
        loop.add_signal_handler(signal.SIGUSR1, reopen_log_files)

    def handle(self, sig: int) -> None:
        server = self.server
        force = sig == signal.SIGQUIT or sig in self.seen
        self.seen.add(sig)
        if not server.should_exit:
            self.monitor.send(STOPPING)
        if force or not server.started:
            server.force_exit = force
        # A graceful stop leaves connections accepted a moment ago a short grace to deliver their
        # request (the protocols' SHUTDOWN_GRACE), so the shared socket loses nothing.
        server.should_exit = True


def reset_signals() -> None:
    """Undo the master's signal set-up in a freshly forked child."""
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    # Master-only signals: sent to the whole group (a closed terminal, `kill -HUP -PGID`) they must
    # not stop or kill a worker (SIGTTIN/SIGTTOU would suspend it).
    for sig in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
        signal.signal(sig, signal.SIG_IGN)
    # Until the worker's loop takes SIGUSR1 over, one the master passes on must not kill it (the
    # master sends it again once the worker is READY).
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)


def run_worker(
    config: Config, sockets: list[socket.socket], pipe_fd: int, ppid: int, metrics_page: mmap.mmap | None = None
) -> int:
    """Serve in this (forked) worker until told to stop; return the process exit code.

    With metrics on, the worker counts into `metrics_page`, shared with the master, which serves the scrapes.
    """
    pid = os.getpid()
    if metrics_page is not None:
        config.metrics = Metrics(metrics_page)
        config.metrics_address = None  # the master's listener, not this worker's
    if config.log_config is DEFAULT_LOG_CONFIG and config.log_format == "text":  # JSON lines carry "pid"
        error_logger.addFilter(PidPrefix(pid))
        access_logger.addFilter(PidPrefix(pid))
    config.install_signal_handlers = False  # ours, below: they also tell the master
    config.uds = None  # the master owns the unix socket file; a recycled worker must not remove it
    os.set_blocking(pipe_fd, False)
    try:
        if config.reuse_port:
            sockets = [config.bind_socket()]
        server = Server(config)
        request_limit, server.max_requests = server.max_requests, None  # retire via the master instead
        monitor = WorkerMonitor(server, pipe_fd, ppid, request_limit)
        config.callback_notify = monitor
        config.timeout_notify = 0  # the monitor wants every tick; it paces its own heartbeats
        handlers = WorkerSignals(server, monitor)

        async def serve() -> None:
            handlers.install(asyncio.get_running_loop())
            await server.serve(sockets=sockets)

        with asyncio.Runner(loop_factory=new_event_loop(config.loop)) as runner:
            runner.run(serve())
        if config.metrics is not None:
            config.metrics.in_flight(0)
            config.metrics.publish()  # the requests finished while shutting down
    except (ConfigError, LifespanFailed) as exc:
        return startup_failure_code(exc)
    except Exception:
        error_logger.exception("Worker crashed")
        return EXIT_CONFIG
    return EXIT_OK
