"""Server: one event loop, its listeners, lifespan, the clock tick and graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import os
import random
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType

from celeris_asgi._compiled import build_mode
from celeris_asgi.config import Config, ConfigError
from celeris_asgi.headers import DefaultHeaders
from celeris_asgi.lifespan import Lifespan
from celeris_asgi.logging import error_logger, reopen_log_files
from celeris_asgi.protocols.detect import ProtocolDetector
from celeris_asgi.protocols.tls import TLSListener
from celeris_asgi.state import Connection, ServerState

TICK = 0.1  # seconds between clock ticks: should_exit polling, Date refresh, timeouts
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def new_event_loop(loop_setting: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The loop factory for --loop: uvloop when asked or when "auto" finds it installed; "none" leaves
    it to asyncio's policy (as uvicorn does); "module:factory" is imported."""
    if loop_setting == "none":
        return None
    if ":" in loop_setting:
        from celeris_asgi.importer import ImportFromStringError, import_from_string

        try:
            factory: Callable[[], asyncio.AbstractEventLoop] = import_from_string(loop_setting)
        except ImportFromStringError as exc:
            raise ConfigError(f"--loop: {exc}") from None
        return factory
    if loop_setting in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if loop_setting == "uvloop":
                raise ConfigError(
                    "--loop uvloop: uvloop is not installed (pip install uvloop, or --loop auto)."
                ) from None
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


def sweep_timeouts(connections: set[Connection], now: float) -> None:
    """Every connection's timeout check; one that raises is logged and dropped, so a bug in one
    connection never ends the clock tick (and with it the worker and every other connection)."""
    for conn in list(connections):
        try:
            conn.check_timeouts(now)
        except Exception:
            error_logger.exception("Closing a connection whose timeout check failed.")
            connections.discard(conn)
            transport = getattr(conn, "transport", None)
            if transport is not None:
                transport.abort()


GC_YOUNG_THRESHOLD = 2000  # CPython 3.13's default for generation 0 (3.11 and 3.12 use 700)


def tune_gc_for_serving() -> None:
    """Freeze what imports and startup made, and collect the young generation less often.

    Start-up objects live as long as the process, yet every full collection walked all of them:
    under HTTP/2 load (h2load -c16 -m10) a stall of several ms a few times a second, p99 8.8 ms;
    frozen, 2.9 ms (the collect first keeps garbage out of the freeze). Each request allocates
    dozens of container objects, so at 700 allocations the young generation was collected every
    ~150 requests; at 3.13's 2000, HTTP/2 CPU per request is 3-5% lower on 3.11, the same as with
    the collector off.
    """
    gc.collect()
    gc.freeze()
    young, *older = gc.get_threshold()
    if 0 < young < GC_YOUNG_THRESHOLD:
        gc.set_threshold(GC_YOUNG_THRESHOLD, *older)


class Server:
    """Serves one app on one event loop until `should_exit` is set (or a signal arrives)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.should_exit = False
        self.force_exit = False
        self.started = False
        self.servers: list[asyncio.base_events.Server] = []
        self.state = ServerState(DefaultHeaders(config.server_header, config.date_header, config.headers))
        self.max_requests: int | None = None
        if config.limit_max_requests is not None:
            self.max_requests = config.limit_max_requests + random.randint(0, config.limit_max_requests_jitter)
        self.last_notified = -math.inf  # the first notify() always goes out
        self.started_at = 0.0

    @property
    def total_requests(self) -> int:
        return self.state.total_requests

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        """The synchronous entry point: a fresh event loop per --loop, served until exit."""
        with asyncio.Runner(loop_factory=new_event_loop(self.config.loop)) as runner:
            runner.run(self.serve(sockets=sockets))

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        """Start up, serve until told to stop, then shut down gracefully."""
        config = self.config
        config.announce()
        config.load()
        bound = sockets is None
        if sockets is None:
            # Before the app's startup: a port in use fails at once, in one line, with no side effects.
            sockets = [config.bind_socket()]
        error_logger.info("Started server process [%d]", os.getpid())
        lifespan = Lifespan(config.loaded_app, config.lifespan, self.state.app_state)
        with self.capture_signals():
            try:
                await lifespan.startup()
            finally:
                if bound and (self.should_exit or lifespan.startup_failed):
                    for sock in sockets:
                        sock.close()
            if self.should_exit:
                return
            await self.startup(sockets)
            try:
                await self.main_loop()
            finally:
                config.sd_notify("STOPPING=1")
                await self.shutdown()
                await lifespan.shutdown()
        error_logger.info("Finished server process [%d]", os.getpid())

    async def startup(self, sockets: list[socket.socket] | None) -> None:
        config = self.config
        loop = asyncio.get_running_loop()
        state = self.state
        settings = config.settings
        if settings is None:
            raise RuntimeError("Server.startup() before Config.load()")  # serve() loads it first

        def factory() -> asyncio.Protocol:
            return ProtocolDetector(settings, state, loop)

        if config.ssl is not None:  # TLS is started per connection, see protocols/tls.py
            factory = TLSListener(config.ssl, settings, state, loop).accept
        if sockets is None:
            sockets = [config.bind_socket()]
        for sock in sockets:
            server = await loop.create_server(factory, sock=sock, backlog=config.backlog)
            self.servers.append(server)
        if config.metrics_address is not None:
            await self.serve_metrics(config.metrics_address)
        # Imports every compiled module (HTTP/2's too, which connections import lazily) before the
        # freeze, so their module-level objects are frozen with the rest of start-up.
        core = build_mode()
        if config.gc_tuning:
            tune_gc_for_serving()
        self.started = True
        self.started_at = time.monotonic()
        # Heartbeat at once: a supervising master counts this worker as serving from its first
        # accepted connection, not from the first tick, so a request that kills it is a death.
        self.notify(self.started_at)
        error_logger.info("Celeris is using the %s core", core)
        for sock in sockets:
            self.log_listening(sock)
        config.sd_notify("READY=1", f"STATUS=Serving on {', '.join(map(self.describe, sockets))}")

    async def serve_metrics(self, raw_address: str) -> None:
        """The metrics listener of a server without a master (--workers 1, a gunicorn worker)."""
        from celeris_asgi.metrics import parse_address, render_single, serve_scrapes

        metrics = self.config.metrics
        assert metrics is not None
        address = parse_address(raw_address)
        try:
            listener = await serve_scrapes(address, lambda: render_single(metrics, len(self.state.tasks)))
        except OSError as exc:
            # A second gunicorn worker finds the port taken by the first: it serves on without it.
            error_logger.warning("Metrics not served on %s: %s.", raw_address, exc.strerror)
            return
        self.servers.append(listener)
        host, port = listener.sockets[0].getsockname()[:2]
        error_logger.info("Metrics on http://%s:%d/metrics", f"[{host}]" if ":" in host else host, port)

    def describe(self, sock: socket.socket) -> str:
        if sock.family == socket.AF_UNIX:
            return f"unix socket {sock.getsockname()}"
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        return f"{'https' if self.config.ssl else 'http'}://{shown}:{port}"

    def log_listening(self, sock: socket.socket) -> None:
        error_logger.info("Celeris running on %s (Press CTRL+C to quit)", self.describe(sock))

    async def main_loop(self) -> None:
        state = self.state
        metrics = self.config.metrics
        ticks = 0
        while not self.should_exit:
            await asyncio.sleep(TICK)
            ticks += 1
            now = time.monotonic()
            state.now = now
            state.default_headers.tick()
            if metrics is not None:
                metrics.connections_open(len(state.connections))
            if ticks % 5 == 0:
                sweep_timeouts(state.connections, now)
            if self.max_requests is not None and state.total_requests >= self.max_requests:
                error_logger.warning("Maximum request limit of %d exceeded. Terminating process.", self.max_requests)
                self.should_exit = True
            self.notify(now)

    def notify(self, now: float) -> None:
        """Heartbeat for a supervising process (the gunicorn worker), at most every timeout_notify/2."""
        callback = self.config.callback_notify
        if callback is not None and now - self.last_notified > self.config.timeout_notify / 2:
            self.last_notified = now
            callback()

    async def shutdown(self) -> None:
        """Stop accepting, close idle connections, let requests finish, cancel what is left."""
        state = self.state
        state.shutting_down = True
        for server in self.servers:
            server.close()
        for conn in list(state.connections):
            conn.shutdown()
        deadline = time.monotonic() + self.config.timeout_graceful_shutdown
        if state.connections and not self.force_exit:
            error_logger.info("Waiting for connections to close. (CTRL+C to force quit)")
        while (state.connections or state.tasks) and not self.force_exit and time.monotonic() < deadline:
            await asyncio.sleep(TICK)
            state.now = time.monotonic()
            sweep_timeouts(state.connections, state.now)
        if state.connections or state.tasks:
            if not self.force_exit:
                error_logger.warning("Graceful shutdown timed out; cancelling what is left.")
            for task in list(state.tasks):
                task.cancel()
            for conn in list(state.connections):
                transport = getattr(conn, "transport", None)
                if transport is not None:
                    transport.abort()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*state.tasks, return_exceptions=True), 1.0)
        for server in self.servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        if self.config.uds and os.path.exists(self.config.uds):
            with contextlib.suppress(OSError):
                os.remove(self.config.uds)

    def handle_exit(self, sig: int, frame: FrameType | None = None) -> None:
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM set should_exit (twice: force_exit), SIGUSR1 reopens the log files; only in
        the main thread."""
        if not self.config.install_signal_handlers or threading.current_thread() is not threading.main_thread():
            yield
            return
        loop = asyncio.get_running_loop()
        installed = []
        for sig in HANDLED_SIGNALS:
            try:
                loop.add_signal_handler(sig, self.handle_exit, sig, None)
                installed.append(sig)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - non-unix loops
                signal.signal(sig, self.handle_exit)
        with contextlib.suppress(NotImplementedError, RuntimeError):  # pragma: no cover - non-unix loops
            loop.add_signal_handler(signal.SIGUSR1, reopen_log_files)
            installed.append(signal.SIGUSR1)
        try:
            yield
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
