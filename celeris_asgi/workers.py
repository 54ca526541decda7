"""The gunicorn worker class: `gunicorn -k celeris_asgi.workers.CelerisWorker app:app`.

gunicorn's arbiter keeps doing what it does (binding, forking, heartbeat timeouts, HUP, TTIN/TTOU,
USR2 upgrades); each worker runs a celeris Server on gunicorn's sockets with gunicorn's settings:
keep-alive, graceful timeout, max_requests (+ jitter), SSL, forwarded_allow_ips, request limits,
and its access log (format and files) and error log. Signals behave as gunicorn users expect:
TERM stops gracefully, INT and QUIT quickly, USR1 reopens the log files, ABRT (the arbiter's
heartbeat timeout) exits at once.

Subclass and set CONFIG_KWARGS to pass celeris settings gunicorn has no name for, e.g.
`class H1Worker(CelerisWorker): CONFIG_KWARGS = {"http": "h1"}`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from typing import Any, ClassVar

from gunicorn.arbiter import Arbiter
from gunicorn.workers.base import Worker

from celeris_asgi.config import DEFAULT_SSL_CIPHERS, Config, ConfigError
from celeris_asgi.lifespan import LifespanFailed
from celeris_asgi.server import Server, new_event_loop


class CelerisWorker(Worker):
    """A gunicorn worker serving ASGI over HTTP/1.1 and HTTP/2 with celeris."""

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.server: Server | None = None
        self.last_notify = 0.0

    def init_process(self) -> None:
        """In the forked worker (__init__ runs in the arbiter): route the logs, then gunicorn's set-up."""
        self.route_logs()
        super().init_process()

    def route_logs(self) -> None:
        """Send celeris' error and access logs to gunicorn's handlers (so USR1 reopens them too)."""
        error = logging.getLogger("celeris.error")
        error.handlers = self.log.error_log.handlers
        error.setLevel(self.log.error_log.level)
        error.propagate = False
        access = logging.getLogger("celeris.access")
        access.handlers = self.log.access_log.handlers if self.cfg.accesslog else []
        access.setLevel(logging.INFO)
        access.propagate = False
        access.disabled = not self.cfg.accesslog

    def config_kwargs(self) -> dict[str, Any]:
        """gunicorn's settings as celeris Config keywords (CONFIG_KWARGS win)."""
        cfg = self.cfg
        kwargs: dict[str, Any] = {
            # gunicorn allows 0 for both; celeris needs a positive value, so 0 becomes the shortest.
            "timeout_keep_alive": cfg.keepalive or 0.1,
            "timeout_graceful_shutdown": cfg.graceful_timeout or 0.1,
            "forwarded_allow_ips": cfg.forwarded_allow_ips,
            "access_log": bool(cfg.accesslog),
            "access_log_format": cfg.access_log_format,
            "log_config": None,  # gunicorn's logging, routed in route_logs()
            "log_level": None,
            "install_signal_handlers": False,  # ours, in serve()
            "callback_notify": self.tick,
            "timeout_notify": 0,  # tick on every server tick; tick() paces gunicorn's heartbeat
        }
        if cfg.is_ssl:
            kwargs.update(
                ssl_keyfile=cfg.keyfile,
                ssl_certfile=cfg.certfile,
                ssl_ca_certs=cfg.ca_certs,
                ssl_cert_reqs=cfg.cert_reqs,
                ssl_ciphers=cfg.ciphers or DEFAULT_SSL_CIPHERS,
            )
        # gunicorn's 0 means "unlimited"; celeris keeps its own (bounded) default then.
        for ours, theirs in (
            ("limit_request_line", cfg.limit_request_line),
            ("limit_request_headers", cfg.limit_request_fields),
            ("limit_request_header_size", cfg.limit_request_field_size),
        ):
            if theirs > 0:
                kwargs[ours] = theirs
        kwargs.update(self.CONFIG_KWARGS)
        return kwargs

    def init_signals(self) -> None:
        """Reset the arbiter's handlers; TERM/INT/QUIT/USR1 are installed on the loop in serve()."""
        for sig in self.SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGABRT, self.handle_abort)  # must work even if the loop is stuck
        # types-gunicorn types handle_winch's frame as str | None; gunicorn's is a signal handler.
        signal.signal(signal.SIGWINCH, self.handle_winch)  # type: ignore[arg-type, unused-ignore]

    def run(self) -> None:
        try:
            config = Config(self.wsgi, **self.config_kwargs())
            self.server = Server(config)
            with asyncio.Runner(loop_factory=new_event_loop(config.loop)) as runner:
                runner.run(self.serve(self.server))
        except (ConfigError, LifespanFailed) as exc:
            self.log.error("Application startup failed: %s", exc)
            sys.exit(Arbiter.WORKER_BOOT_ERROR)  # the arbiter halts instead of respawning forever

    async def serve(self, server: Server) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.graceful_stop)
        loop.add_signal_handler(signal.SIGINT, self.quick_stop)
        loop.add_signal_handler(signal.SIGQUIT, self.quick_stop)
        loop.add_signal_handler(signal.SIGUSR1, self.log.reopen_files)
        # gunicorn's listeners are gunicorn.sock.BaseSocket wrappers (types-gunicorn says socket.socket);
        # the event loop needs the real socket inside.
        listeners = [listener.sock for listener in self.sockets]  # type: ignore[attr-defined, unused-ignore]
        await server.serve(sockets=listeners)

    def graceful_stop(self) -> None:
        server = self.server
        if server is None or not self.alive:
            return
        self.alive = False
        server.should_exit = True  # graceful: fresh connections get the protocols' SHUTDOWN_GRACE

    def quick_stop(self) -> None:
        self.alive = False
        self.cfg.worker_int(self)
        if self.server is not None:
            self.server.force_exit = self.server.should_exit = True

    def tick(self) -> None:
        """Every server tick: gunicorn's heartbeat, orphan check and max_requests (+ jitter)."""
        server = self.server
        assert server is not None
        now = time.monotonic()
        if now - self.last_notify >= self.timeout / 2:
            self.last_notify = now
            self.notify()
        if not self.alive:
            return
        if self.ppid != os.getppid():
            self.log.info("Parent changed, shutting down: %s", self)
            self.graceful_stop()
        elif server.total_requests >= self.max_requests:
            self.log.info("Autorestarting worker after current request.")
            self.graceful_stop()
