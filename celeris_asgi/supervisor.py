"""The prefork master: binds the listening sockets once, forks N workers, watches and replaces them.

The master never imports the app and never creates an event loop, so forking stays safe and
--reload can pick up new code in every new worker. It is a small select() loop over one pipe per
worker (messages in worker_process), a signal wake-up pipe and, with --reload, the watcher's pipe.

Everything the master does to its workers comes out of `reconcile()`, which compares the workers it
has with the ones it wants: `target` of them (SIGTTIN/SIGTTOU), all of the current `generation`
(SIGHUP and file changes bump it) and none asking to retire (recycling limits). Replacing is
start-then-stop, one worker at a time: the replacement is forked, and only once it reports READY
does the old worker get SIGTERM, so the port is never without a worker and no request is dropped.

Workers that die are replaced with an exponential back-off, also those that die before they are
ready once any worker has served. Only a start-up that never succeeds stops the supervisor with the
worker's exit code instead of restarting forever: a worker that reports its own failure (an import
error, a failing lifespan startup) or sends no READY within --timeout-worker-startup before any
worker has served; with --reload it waits for the next file change instead. A worker killed from
outside (the OOM killer, `kill -9`) while the first workers start says nothing about the app: it is
replaced with the back-off too, up to STARTUP_KILL_RETRIES times in a row.

SIGUSR1 (logrotate) reopens the master's log files and is passed on to every worker, which does the same.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celeris_asgi.config import Config, ConfigError
from celeris_asgi.logging import error_logger, reopen_log_files
from celeris_asgi.master_sockets import bind_master_sockets, describe_listeners
from celeris_asgi.metrics import MasterMetrics, SelectScrapeServer, new_shared_buffer, parse_address
from celeris_asgi.supervisor_worker import Worker, describe_exit, plural
from celeris_asgi.worker_process import (
    HEARTBEAT,
    READY,
    RETIRE_LIFETIME,
    RETIRE_MEMORY,
    RETIRE_REASONS,
    RETIRE_REQUESTS,
    STOPPING,
    reset_signals,
    run_worker,
)

if TYPE_CHECKING:
    from celeris_asgi.reload import Watcher

POLL_INTERVAL = 0.2  # seconds; signals, worker messages and exits wake the loop at once
KILL_MARGIN = 2.0  # seconds past --timeout-graceful-shutdown before a stopping worker gets SIGKILL
QUICK_STOP_GRACE = 3.0  # seconds a worker gets after SIGQUIT before SIGKILL
BACKOFF_BASE = 0.5  # seconds; doubled for each further consecutive worker failure
BACKOFF_MAX = 10.0
BACKOFF_RESET = 10.0  # a worker that served this long before dying starts the back-off afresh
STARTUP_KILL_RETRIES = 5  # outside kills before any worker served, in a row, before the start-up counts as failed
RESTART_REASONS = {RETIRE_REQUESTS: "max-requests", RETIRE_MEMORY: "max-rss", RETIRE_LIFETIME: "lifetime"}
MASTER_SIGNALS = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGUSR1,
    signal.SIGCHLD,
)


class Supervisor:
    """Runs `config.workers` worker processes on shared (or SO_REUSEPORT) sockets until stopped."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.pid = os.getpid()
        self.target = config.workers
        self.generation = 0
        self.workers: dict[int, Worker] = {}
        self.sockets: list[socket.socket] = []
        self.signals: deque[int] = deque()
        self.selector: selectors.BaseSelector | None = None
        self.wakeup: tuple[int, int] = (-1, -1)
        self.watcher: Watcher | None = None
        self.stopping = False
        self.exit_code = 0
        self.paused = False  # --reload: no worker could start; wait for a file change
        self.failures = 0
        self.next_spawn = 0.0
        self.served = False  # some worker has been READY: the app can start, so deaths are replaced
        self.logs_reopened = -1.0  # monotonic time of the last SIGUSR1
        self.systemd_ready = False  # READY=1 sent for the current generation (sd_notify)
        self.generation_reason = "reload"  # why the generation last changed: reload (files) or sighup
        self.metrics = MasterMetrics() if config.metrics_address is not None else None
        self.scrapes: SelectScrapeServer | None = None

    # ----- life of the master -------------------------------------------------------------

    def run(self) -> int:
        """Bind, fork the workers and supervise them until a stop signal; return the exit code."""
        if not hasattr(os, "fork"):
            raise ConfigError("Several workers and --reload need os.fork (Linux, macOS, BSD).")
        if threading.current_thread() is not threading.main_thread():
            raise ConfigError("Several workers or --reload need the main thread: the supervisor handles signals.")
        config = self.config
        config.announce()
        if config.reload:
            from celeris_asgi import reload

            reload.check_available()
            self.watcher = reload.Watcher(config)
        self.bind()
        self.selector = selectors.DefaultSelector()
        self.wakeup = os.pipe()
        for fd in self.wakeup:
            os.set_blocking(fd, False)
        self.selector.register(self.wakeup[0], selectors.EVENT_READ, "wakeup")
        self.serve_metrics()
        previous = self.install_signals()
        try:
            self.write_pid_file()
            if self.watcher is not None:
                self.watcher.start(lambda child: self.fork(child, keep_sockets=False))
                self.selector.register(self.watcher.fd, selectors.EVENT_READ, "watcher")
                error_logger.info("Watching %s for changes.", ", ".join(map(str, self.watcher.dirs)))
            error_logger.info(
                "Started supervisor process [%d]: %s on %s",
                self.pid,
                plural(self.target),
                self.describe_listeners(),
            )
            self.main_loop()
        finally:
            self.cleanup(previous)
        error_logger.info("Finished supervisor process [%d]", self.pid)
        return self.exit_code

    def bind(self) -> None:
        """Bind once in the master: a port in use is one clear error, privileged ports work."""
        self.sockets = bind_master_sockets(self.config)

    def serve_metrics(self) -> None:
        """--metrics-address: the master answers scrapes with the sum of its workers' counters."""
        if self.metrics is None or self.config.metrics_address is None:
            return
        assert self.selector is not None
        try:
            self.scrapes = SelectScrapeServer(parse_address(self.config.metrics_address), self.metrics.render)
        except OSError as exc:
            raise ConfigError(f"Cannot bind --metrics-address {self.config.metrics_address}: {exc.strerror}.") from None
        self.scrapes.register(self.selector)
        host, port = self.scrapes.address
        error_logger.info("Metrics on http://%s:%d/metrics", f"[{host}]" if ":" in host else host, port)

    def describe_listeners(self) -> str:
        return describe_listeners(self.config)

    def write_pid_file(self) -> None:
        if self.config.pid_file:
            try:
                Path(self.config.pid_file).write_text(f"{self.pid}\n", encoding="ascii")
            except OSError as exc:
                raise ConfigError(f"Cannot write --pid-file {self.config.pid_file!r}: {exc.strerror}.") from None

    def install_signals(self) -> tuple[dict[signal.Signals, Any], int]:
        """Our handlers and wake-up fd in; what was there before, for cleanup()."""
        previous = {sig: signal.signal(sig, self.on_signal) for sig in MASTER_SIGNALS}
        return previous, signal.set_wakeup_fd(self.wakeup[1], warn_on_full_buffer=False)

    def on_signal(self, sig: int, frame: Any) -> None:
        self.signals.append(sig)

    def main_loop(self) -> None:
        assert self.selector is not None
        self.reconcile(time.monotonic())
        while True:
            for key, _ in self.selector.select(POLL_INTERVAL):
                if key.data == "wakeup":
                    with contextlib.suppress(BlockingIOError):
                        os.read(self.wakeup[0], 4096)
                elif key.data == "watcher":
                    self.on_watcher()
                elif key.data is self.scrapes:
                    self.scrapes.ready(self.selector, key.fileobj)
                else:
                    self.on_messages(key.data)
            self.handle_signals()
            self.reap()
            if self.stopping and not self.workers:
                return
            now = time.monotonic()
            self.check_workers(now)
            self.reconcile(now)

    def cleanup(self, previous: tuple[dict[signal.Signals, Any], int]) -> None:
        """Leave nothing behind, whatever way the loop ended."""
        for worker in list(self.workers.values()):
            self.kill(worker, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(worker.pid, 0)
            self.release(worker)
        self.workers.clear()
        if self.watcher is not None:
            self.watcher.stop()
        handlers, wakeup_fd = previous
        signal.set_wakeup_fd(wakeup_fd)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        if self.scrapes is not None:
            self.scrapes.close(self.selector)
        if self.selector is not None:
            self.selector.close()
        for fd in self.wakeup:
            with contextlib.suppress(OSError):
                os.close(fd)
        for sock in self.sockets:
            sock.close()
        config = self.config
        if config.uds and os.path.exists(config.uds):
            with contextlib.suppress(OSError):
                os.remove(config.uds)
        if config.pid_file:
            with contextlib.suppress(OSError):
                if Path(config.pid_file).read_text(encoding="ascii").strip() == str(self.pid):
                    os.remove(config.pid_file)

    # ----- processes ----------------------------------------------------------------------

    def fork(self, child: Callable[[], int], keep_sockets: bool) -> int:
        """Fork; the child drops the master's signals and descriptors, runs `child`, and exits."""
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid:
            return pid
        code = 1
        try:
            reset_signals()
            self.close_in_child(keep_sockets)
            code = child()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            error_logger.exception("Worker process failed")
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)

    def close_in_child(self, keep_sockets: bool) -> None:
        if self.selector is not None:
            self.selector.close()
        if self.scrapes is not None:
            self.scrapes.close(None)
        fds = [*self.wakeup, *(w.fd for w in self.workers.values())]
        if self.watcher is not None:
            fds.append(self.watcher.fd)
        for fd in fds:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if not keep_sockets:
            for sock in self.sockets:
                sock.close()

    def spawn(self, replaces: Worker | None = None) -> Worker:
        read_fd, write_fd = os.pipe()
        config, sockets, ppid = self.config, self.sockets, self.pid
        page = new_shared_buffer() if self.metrics is not None else None

        def child() -> int:
            os.close(read_fd)
            return run_worker(config, sockets, write_fd, ppid, page)

        pid = self.fork(child, keep_sockets=not config.reuse_port)
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        worker = Worker(pid, read_fd, self.generation, time.monotonic())
        if self.metrics is not None and page is not None:
            self.metrics.worker_started(page, pid)
        if replaces is not None:
            worker.replaces = replaces.pid
            error_logger.info("Started %s to replace %s", worker.name, replaces.name)
        else:
            error_logger.info("Started %s", worker.name)
        self.workers[pid] = worker
        assert self.selector is not None
        self.selector.register(read_fd, selectors.EVENT_READ, worker)
        return worker

    def kill(self, worker: Worker, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, sig)

    def stop_worker(self, worker: Worker, reason: str) -> None:
        """SIGTERM: the worker stops accepting, finishes its requests and exits."""
        if worker.stopping:
            return
        error_logger.info("Stopping %s (%s)", worker.name, reason)
        worker.stopping = True
        worker.stop_deadline = time.monotonic() + self.config.timeout_graceful_shutdown + KILL_MARGIN
        self.kill(worker, signal.SIGTERM)

    def release(self, worker: Worker) -> None:
        if worker.fd >= 0:
            if self.selector is not None:
                with contextlib.suppress(KeyError, ValueError):
                    self.selector.unregister(worker.fd)
            os.close(worker.fd)
            worker.fd = -1

    # ----- events -------------------------------------------------------------------------

    def on_messages(self, worker: Worker) -> None:
        try:
            data = os.read(worker.fd, 512)
        except BlockingIOError:
            return
        if not data:
            self.release(worker)  # the worker has exited; reap() collects it
            return
        now = time.monotonic()
        for code in data:
            message = bytes((code,))
            if message == HEARTBEAT:
                worker.last_beat = now
            elif message == READY:
                self.on_ready(worker, now)
            elif message == STOPPING:
                if not worker.stopping:
                    error_logger.info("%s received a stop signal and is shutting down", worker.name.capitalize())
                    worker.stopping = True
                    worker.stop_deadline = now + self.config.timeout_graceful_shutdown + KILL_MARGIN
            elif message in RETIRE_REASONS and worker.retire is None:
                worker.retire = message
                error_logger.info("%s %s; replacing it", worker.name.capitalize(), RETIRE_REASONS[message])

    def on_ready(self, worker: Worker, now: float) -> None:
        worker.ready = True
        worker.ready_at = worker.last_beat = now
        self.served = True
        self.paused = False  # --reload: one worker started after all, so the others may too
        error_logger.info("%s is serving", worker.name.capitalize())
        if worker.started <= self.logs_reopened:
            self.kill(worker, signal.SIGUSR1)  # it ignored the forwarded one while starting
        old = self.workers.get(worker.replaces) if worker.replaces is not None else None
        worker.replaces = None
        if old is not None:
            self.stop_worker(old, f"replaced by {worker.name}")
        self.notify_ready()

    def notify_ready(self) -> None:
        """sd_notify READY=1 once workers serve and none runs outdated code (at start and after a reload)."""
        serving = [w for w in self.workers.values() if w.ready and not w.stopping]
        if self.systemd_ready or not serving or any(w.generation < self.generation for w in serving):
            return
        self.systemd_ready = True
        self.config.sd_notify("READY=1", f"STATUS={plural(len(serving))} serving on {self.describe_listeners()}")

    def notify_reloading(self) -> None:
        self.systemd_ready = False
        self.config.sd_notify.reloading()

    def on_watcher(self) -> None:
        assert self.watcher is not None and self.selector is not None
        batches = self.watcher.read()
        if batches is None:
            error_logger.error("The --reload watcher has exited; file changes are no longer watched.")
            self.selector.unregister(self.watcher.fd)
            self.watcher.stop()
            self.watcher = None
            return
        if not batches or self.stopping:
            return
        paths = sorted({path for batch in batches for path in batch if path})
        shown = ", ".join(repr(p) for p in paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
        error_logger.warning("Detected changes in %s; restarting the workers.", shown)
        self.notify_reloading()
        self.generation += 1
        self.generation_reason = "reload"
        self.paused = False
        self.failures = 0
        self.next_spawn = 0.0

    def handle_signals(self) -> None:
        while self.signals:
            sig = self.signals.popleft()
            if sig == signal.SIGCHLD:
                continue  # reap() runs on every pass of the loop
            name = signal.Signals(sig).name
            if sig == signal.SIGUSR1:
                self.reopen_logs()
            elif sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
                if sig == signal.SIGQUIT or self.stopping:
                    self.quick_stop(name)
                else:
                    self.begin_stop(name)
            elif self.stopping:
                continue
            elif sig == signal.SIGHUP:
                error_logger.info("Received SIGHUP: restarting the workers one at a time.")
                self.notify_reloading()
                self.generation += 1
                self.generation_reason = "sighup"
                self.paused = False
            elif sig == signal.SIGTTIN:
                self.target += 1
                error_logger.info("Received SIGTTIN: %s wanted.", plural(self.target))
            elif sig == signal.SIGTTOU:
                if self.target > 1:
                    self.target -= 1
                    error_logger.info("Received SIGTTOU: %s wanted.", plural(self.target))
                else:
                    error_logger.info("Received SIGTTOU: keeping the last worker.")

    def reopen_logs(self) -> None:
        """logrotate moved the log files: write to new ones here, and have every worker do the same."""
        self.logs_reopened = time.monotonic()
        reopen_log_files()
        for worker in self.workers.values():
            self.kill(worker, signal.SIGUSR1)

    def begin_stop(self, reason: str) -> None:
        if self.stopping:
            return
        error_logger.info("Shutting down (%s): stopping %s.", reason, plural(len(self.workers)))
        self.config.sd_notify("STOPPING=1")
        self.stopping = True
        for worker in list(self.workers.values()):
            self.stop_worker(worker, "shutdown")

    def quick_stop(self, name: str) -> None:
        """A second stop signal (or SIGQUIT): workers cut their requests short and exit now."""
        self.begin_stop(name)
        error_logger.info("Received %s: stopping the workers quickly.", name)
        deadline = time.monotonic() + QUICK_STOP_GRACE
        for worker in self.workers.values():
            # SIGQUIT reaches the worker's handler once it serves; before that it would dump core.
            self.kill(worker, signal.SIGQUIT if worker.ready else signal.SIGKILL)
            worker.stop_deadline = min(worker.stop_deadline, deadline)

    def reap(self) -> None:
        for worker in list(self.workers.values()):
            try:
                pid, status = os.waitpid(worker.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = worker.pid, 0
            if pid:
                del self.workers[worker.pid]
                if worker.fd >= 0:
                    self.on_messages(worker)  # what it sent before it died (READY) still counts
                self.release(worker)
                self.on_exit(worker, status)

    def on_exit(self, worker: Worker, status: int) -> None:
        how = describe_exit(status)
        now = time.monotonic()
        if self.metrics is not None:
            self.metrics.worker_exited(worker.pid)
        if worker.stopping:
            error_logger.info("%s stopped (%s)", worker.name.capitalize(), how)
        elif worker.ready:
            error_logger.error("%s died (%s); starting a replacement", worker.name.capitalize(), how)
            if self.metrics is not None:
                # Killed while serving and not stopping: only the health check does that.
                self.metrics.restarted("health-check" if worker.killed else "crash")
            self.note_failure(now, now - worker.ready_at)
        else:
            self.on_startup_failure(worker, status, how, now)

    def on_startup_failure(self, worker: Worker, status: int, how: str, now: float) -> None:
        error_logger.error("%s failed to start (%s)", worker.name.capitalize(), how)
        old = self.workers.get(worker.replaces) if worker.replaces is not None else None
        if old is not None and not old.stopping and old.generation < self.generation:
            error_logger.error("Restart abandoned: the running workers keep serving the previous code.")
            for other in self.workers.values():
                other.generation = self.generation
            self.notify_ready()
            return
        serving = any(w.ready and not w.stopping for w in self.workers.values())
        killed_from_outside = os.waitstatus_to_exitcode(status) < 0 and not worker.killed
        if (
            serving
            or (self.served and not self.config.reload)
            or (killed_from_outside and self.failures < STARTUP_KILL_RETRIES)
        ):
            error_logger.info("Starting a replacement for %s", worker.name)
            self.note_failure(now, 0.0)
        elif self.config.reload:
            error_logger.error("No worker could start; waiting for a file change.")
            self.paused = True
        else:
            error_logger.error("No worker could start; stopping. Fix the error above and start again.")
            code = os.waitstatus_to_exitcode(status)
            self.exit_code = code if code > 0 else 1
            self.begin_stop("startup failed")

    def note_failure(self, now: float, served: float) -> None:
        """Exponential back-off before the next worker start, so a crashing app cannot spin the CPU."""
        if served > BACKOFF_RESET:
            self.failures = 0
        self.failures += 1
        delay = 0.0 if self.failures == 1 else min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (self.failures - 2))
        self.next_spawn = now + delay
        if delay:
            error_logger.warning("%d worker failures in a row: next start in %.1f s.", self.failures, delay)

    # ----- keeping the workers right ------------------------------------------------------

    def check_workers(self, now: float) -> None:
        """Kill workers that do not stop in time, hang while starting, or whose event loop stopped answering.

        A worker killed before READY that was not being stopped exits as a start-up failure (see
        on_exit): replaced with the back-off once any worker has served, the end of the supervisor if
        none has.
        """
        limit = self.config.timeout_worker_healthcheck
        startup_limit = self.config.timeout_worker_startup
        for worker in self.workers.values():
            if worker.killed:
                continue
            if worker.stopping and now > worker.stop_deadline:
                level, reason = logging.WARNING, "did not stop in time"
            elif not worker.ready and now - worker.started > startup_limit:
                level, reason = logging.ERROR, f"did not start within {startup_limit:.1f} s (--timeout-worker-startup)"
            elif not worker.stopping and worker.ready and now - worker.last_beat > limit:
                level, reason = logging.ERROR, f"did not answer its health check for {limit:.1f} s"
            else:
                continue
            error_logger.log(level, "%s %s; killing it", worker.name.capitalize(), reason)
            worker.killed = True
            self.kill(worker, signal.SIGKILL)

    def reconcile(self, now: float) -> None:
        """Start, stop or replace workers until the set matches target, generation and limits."""
        if self.stopping or self.paused:
            return
        active = [w for w in self.workers.values() if not w.stopping]
        active_pids = {w.pid for w in active}
        for worker in active:
            if worker.replaces not in active_pids:
                worker.replaces = None  # its predecessor is gone: it simply fills a slot
        regular = [w for w in active if w.replaces is None]
        incoming = [w for w in active if w.replaces is not None]
        excess = len(regular) - self.target
        if excess > 0:
            # Not-yet-serving first, then outdated, then the oldest.
            order = sorted(regular, key=lambda w: (w.ready, w.generation >= self.generation, w.started))
            for worker in order[:excess]:
                for newcomer in incoming:
                    if newcomer.replaces == worker.pid:
                        self.stop_worker(newcomer, "fewer workers wanted")
                self.stop_worker(worker, "fewer workers wanted")
            return
        if now < self.next_spawn:
            return
        for _ in range(self.target - len(regular)):
            self.spawn()
        if incoming or len(regular) < self.target:
            return  # one replacement at a time, and only with a full set
        for worker in sorted(regular, key=lambda w: w.started):
            outdated = worker.generation < self.generation
            if not worker.ready:
                if outdated:
                    self.stop_worker(worker, "outdated before it served")
                continue
            retire = worker.retire
            if outdated or retire is not None:
                if self.metrics is not None:
                    reason = self.generation_reason if outdated or retire is None else RESTART_REASONS[retire]
                    self.metrics.restarted(reason)
                self.spawn(replaces=worker)
                return
