"""Every setting with its default and validation; app loading, socket binding and the SSL context.

One place owns the defaults so that the CLI, `run(**settings)`, the supervisor and the gunicorn
worker all agree. A bad value raises `ConfigError` with one line a user can act on.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import socket
import ssl
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celeris_asgi.app_loading import AppLoadError, load_app
from celeris_asgi.logging import DEFAULT_LOG_CONFIG, LogConfig, configure_logging, error_logger
from celeris_asgi.protocols.http2.settings import H2Settings, H2SettingsError
from celeris_asgi.systemd import Notifier, listen_fd
from celeris_asgi.tls_info import remember_server_cert

if TYPE_CHECKING:
    from celeris_asgi.metrics import Metrics
    from celeris_asgi.middleware.proxy_headers import ProxyHeaders
    from celeris_asgi.settings import ServerSettings

LOOP_CHOICES = ("auto", "asyncio", "uvloop", "none")
HTTP_CHOICES = ("auto", "h1", "h2")
WS_CHOICES = ("auto", "none", "websockets")
LIFESPAN_CHOICES = ("auto", "on", "off")
INTERFACE_CHOICES = ("auto", "asgi3", "asgi2", "wsgi")
LOG_FORMAT_CHOICES = ("text", "json")
PROXY_PROTOCOL_CHOICES = ("off", "v1", "v2")
# uvicorn's names for implementations celeris has one of: accepted, mapped to celeris's own, and said
# once in the start-up log (Config.notes). Values are (celeris value, what the user is told).
UVICORN_HTTP = {
    name: (
        "auto",
        f"--http {name}: celeris has one HTTP/1.1 parser (httptools) and serves HTTP/2 on the "
        "same port; serving as --http auto (use --http h1 for HTTP/1.1 only)",
    )
    for name in ("h11", "httptools", "zttp")
}
UVICORN_WS = {
    name: (
        "websockets",
        f"--ws {name}: celeris has one WebSocket engine (websockets, sans-I/O); serving as --ws websockets",
    )
    for name in ("wsproto", "websockets-sansio")
}
UVICORN_LOOPS = {
    "zuvloop": ("auto", "--loop zuvloop: not supported by celeris; serving as --loop auto (uvloop if installed)")
}
LOG_LEVELS = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": 5,
}
DEFAULT_ACCESS_LOG_FORMAT = '%(client_addr)s - "%(r)s" %(s)s %(b)s %(M)sms'
# TLS 1.2 suites allowed by RFC 9113 appendix A (no CBC, no RSA key exchange); TLS 1.3 is always on.
DEFAULT_SSL_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20"
# The --h2-* defaults are the HTTP/2 engine's own (one source); so are their bounds (validate()).
H2_DEFAULTS = H2Settings()


class ConfigError(ValueError):
    """A setting the server cannot start with; its message is shown to the user as one line."""


def _default_workers() -> int:
    raw = os.environ.get("WEB_CONCURRENCY", "1")
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"WEB_CONCURRENCY must be a whole number, got {raw!r}.") from None


def parse_header_option(raw: str) -> tuple[bytes, bytes]:
    """`--header NAME:VALUE` to a lowercased (name, value) pair, validated like an app's header."""
    name, sep, value = raw.partition(":")
    name, value = name.strip(), value.strip()
    if not sep or not name:
        raise ConfigError(f'--header {raw!r} must be "NAME:VALUE".')
    try:
        from celeris_asgi.headers import validate_header

        pair = (name.lower().encode("latin-1"), value.encode("latin-1"))
        validate_header(*pair)
    except (UnicodeEncodeError, RuntimeError):
        raise ConfigError(f"--header {raw!r} is not a valid HTTP header.") from None
    return pair


def load_env_file(path: str) -> None:
    """Read KEY=VALUE lines (comments, `export`, quotes allowed) into os.environ, not overriding it."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"Cannot read --env-file {path!r}: {exc.strerror}.") from None
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise ConfigError(f"--env-file {path!r} line {number} is not KEY=VALUE.")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        os.environ.setdefault(key, value)


def check_websockets_available(config: Config) -> None:
    """`--ws websockets` is an explicit ask: without the library, fail at start instead of serving
    upgrade requests as plain HTTP (what `--ws auto` quietly does)."""
    from celeris_asgi.protocols.websocket import websocket_enabled

    if not websocket_enabled(config):
        raise ConfigError(
            "--ws websockets needs the websockets library, which cannot be imported: "
            "pip install 'websockets>=13.0' (or use --ws auto to serve without WebSockets)."
        )


class Config:
    """All server settings. Attribute names match the CLI flags (dashes become underscores)."""

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 8000,
        uds: str | None = None,
        fd: int | None = None,
        loop: str = "auto",
        http: str = "auto",
        http2: bool = False,
        ws: str = "auto",
        lifespan: str = "auto",
        root_path: str = "",
        proxy_headers: bool = True,
        forwarded_allow_ips: list[str] | str | None = None,
        timeout_keep_alive: float = 5,
        timeout_graceful_shutdown: float | None = 30,
        timeout_request_header: float = 10,
        timeout_request_body: float = 30,
        timeout_send: float = 30,
        limit_concurrency: int | None = None,
        backlog: int = 2048,
        headers: list[str] | list[tuple[str, str]] | None = None,
        server_header: bool = True,
        date_header: bool = True,
        gc_tuning: bool = True,
        log_level: str | int | None = None,
        log_config: LogConfig = DEFAULT_LOG_CONFIG,
        access_log: bool = True,
        access_log_format: str = DEFAULT_ACCESS_LOG_FORMAT,
        use_colors: bool | None = None,
        env_file: str | None = None,
        factory: bool = False,
        interface: str = "auto",
        app_dir: str | None = ".",
        limit_request_line: int = 8190,
        limit_request_headers: int = 100,
        limit_request_header_size: int = 8190,
        limit_request_body: int | None = None,
        limit_request_min_rate: int = 500,
        ssl_keyfile: str | None = None,
        ssl_certfile: str | None = None,
        ssl_keyfile_password: str | None = None,
        ssl_ca_certs: str | None = None,
        ssl_version: int = ssl.PROTOCOL_TLS_SERVER,
        ssl_cert_reqs: int = ssl.CERT_NONE,
        ssl_ciphers: str | None = DEFAULT_SSL_CIPHERS,
        ssl_context_factory: Callable[[Config, Callable[[], ssl.SSLContext]], ssl.SSLContext] | None = None,
        h2_max_concurrent_streams: int = H2_DEFAULTS.max_concurrent_streams,
        h2_initial_window_size: int = H2_DEFAULTS.initial_window_size,
        h2_max_frame_size: int = H2_DEFAULTS.max_frame_size,
        h2_max_header_list_size: int = H2_DEFAULTS.max_header_list_size,
        h2_header_table_size: int = H2_DEFAULTS.header_table_size,
        h2_max_header_block_size: int = H2_DEFAULTS.max_header_block_size,
        h2_max_continuation_frames: int = H2_DEFAULTS.max_continuation_frames,
        h2_max_resets_per_interval: int = H2_DEFAULTS.max_resets_per_interval,
        h2_max_pings_per_interval: int = H2_DEFAULTS.max_pings_per_interval,
        h2_max_settings_per_interval: int = H2_DEFAULTS.max_settings_per_interval,
        h2_max_empty_data_per_interval: int = H2_DEFAULTS.max_empty_data_per_interval,
        h2_flood_interval: float = H2_DEFAULTS.flood_interval,
        h2_settings_timeout: float = H2_DEFAULTS.settings_timeout,
        ws_max_size: int = 16 * 1024 * 1024,
        ws_max_queue: int = 32,
        ws_ping_interval: float | None = 20.0,
        ws_ping_timeout: float | None = 20.0,
        ws_per_message_deflate: bool = True,
        workers: int | None = None,
        reuse_port: bool = False,
        timeout_worker_healthcheck: float = 10,
        timeout_worker_startup: float = 60,
        limit_max_requests: int | None = None,
        limit_max_requests_jitter: int = 0,
        workers_max_rss: int | None = None,
        workers_lifetime: float | None = None,
        pid_file: str | None = None,
        reload: bool = False,
        reload_dirs: list[str] | str | None = None,
        reload_includes: list[str] | str | None = None,
        reload_excludes: list[str] | str | None = None,
        reload_delay: float = 0.25,
        install_signal_handlers: bool = True,
        callback_notify: Callable[[], Any] | None = None,
        timeout_notify: float = 30,
        h11_max_incomplete_event_size: int | None = None,
        reset_contextvars: bool = False,
        metrics_address: str | None = None,
        log_format: str = "text",
        proxy_protocol: str = "off",
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.uds = uds
        self.fd = listen_fd() if fd is None and uds is None else fd  # systemd socket activation
        self.sd_notify = Notifier()
        self.notes: list[str] = []  # uvicorn values mapped to celeris's own, said once at start-up
        self.loop = self._from_uvicorn("--loop", loop, UVICORN_LOOPS)
        self.http = self._from_uvicorn("--http", http, UVICORN_HTTP)
        self.http2 = http2
        self.ws = self._from_uvicorn("--ws", ws, UVICORN_WS)
        self.lifespan = lifespan
        self.root_path = root_path
        self.proxy_headers = proxy_headers
        self.proxy: ProxyHeaders | None = None  # built by load() with --proxy-headers
        if forwarded_allow_ips is None:
            forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
        if isinstance(forwarded_allow_ips, str):
            forwarded_allow_ips = [ip.strip() for ip in forwarded_allow_ips.split(",") if ip.strip()]
        self.forwarded_allow_ips: list[str] = list(forwarded_allow_ips)
        self.timeout_keep_alive = timeout_keep_alive
        # uvicorn's None: wait for the requests however long they take.
        self.timeout_graceful_shutdown = math.inf if timeout_graceful_shutdown is None else timeout_graceful_shutdown
        self.timeout_request_header = timeout_request_header
        self.timeout_request_body = timeout_request_body
        self.timeout_send = timeout_send
        self.limit_concurrency = limit_concurrency
        self.backlog = backlog
        self.headers: list[tuple[bytes, bytes]] = [
            parse_header_option(h) if isinstance(h, str) else parse_header_option(f"{h[0]}:{h[1]}")
            for h in (headers or [])
        ]
        self.server_header = server_header
        self.date_header = date_header
        self.gc_tuning = gc_tuning
        self.log_level = log_level
        self.log_config = log_config
        self.access_log = access_log
        self.access_log_format = access_log_format
        self.use_colors = use_colors
        self.env_file = env_file
        self.factory = factory
        self.interface = interface
        self.app_dir = app_dir
        self.limit_request_line = limit_request_line
        self.limit_request_headers = limit_request_headers
        self.limit_request_header_size = limit_request_header_size
        self.limit_request_body = limit_request_body
        self.limit_request_min_rate = limit_request_min_rate
        self.ssl_keyfile = ssl_keyfile
        self.ssl_certfile = ssl_certfile
        self.ssl_keyfile_password = ssl_keyfile_password
        self.ssl_ca_certs = ssl_ca_certs
        self.ssl_version = ssl_version
        self.ssl_cert_reqs = ssl_cert_reqs
        self.ssl_ciphers = DEFAULT_SSL_CIPHERS if ssl_ciphers is None else ssl_ciphers
        self.ssl_context_factory = ssl_context_factory
        self.h2_max_concurrent_streams = h2_max_concurrent_streams
        self.h2_initial_window_size = h2_initial_window_size
        self.h2_max_frame_size = h2_max_frame_size
        self.h2_max_header_list_size = h2_max_header_list_size
        self.h2_header_table_size = h2_header_table_size
        self.h2_max_header_block_size = h2_max_header_block_size
        self.h2_max_continuation_frames = h2_max_continuation_frames
        self.h2_max_resets_per_interval = h2_max_resets_per_interval
        self.h2_max_pings_per_interval = h2_max_pings_per_interval
        self.h2_max_settings_per_interval = h2_max_settings_per_interval
        self.h2_max_empty_data_per_interval = h2_max_empty_data_per_interval
        self.h2_flood_interval = h2_flood_interval
        self.h2_settings_timeout = h2_settings_timeout
        self.ws_max_size = ws_max_size
        self.ws_max_queue = ws_max_queue
        self.ws_ping_interval = ws_ping_interval
        self.ws_ping_timeout = ws_ping_timeout
        self.ws_per_message_deflate = ws_per_message_deflate
        self.workers = _default_workers() if workers is None else workers
        self.reuse_port = reuse_port
        self.timeout_worker_healthcheck = timeout_worker_healthcheck
        self.timeout_worker_startup = timeout_worker_startup
        self.limit_max_requests = limit_max_requests
        self.limit_max_requests_jitter = limit_max_requests_jitter
        self.workers_max_rss = workers_max_rss
        self.workers_lifetime = workers_lifetime
        self.pid_file = pid_file
        self.reload = reload
        self.reload_dirs = _as_list(reload_dirs)
        self.reload_includes = _as_list(reload_includes)
        self.reload_excludes = _as_list(reload_excludes)
        self.reload_delay = reload_delay
        self.install_signal_handlers = install_signal_handlers
        self.callback_notify = callback_notify
        self.timeout_notify = timeout_notify
        self.h11_max_incomplete_event_size = h11_max_incomplete_event_size
        self.reset_contextvars = reset_contextvars
        self.metrics_address = metrics_address
        # The Metrics this process counts into: a shared page from the master in a worker, else made by load().
        self.metrics: Metrics | None = None
        self.log_format = log_format
        self.proxy_protocol = proxy_protocol

        self.loaded = False
        self.loaded_app: Any = None
        self.settings: ServerSettings | None = None  # built by load()
        self.ssl: ssl.SSLContext | None = None
        if env_file is not None:
            load_env_file(env_file)
        self.validate()
        self.note_uvicorn_only_settings()
        configure_logging(self.log_config, self.log_level, self.access_log, self.use_colors, self.log_format)

    def _from_uvicorn(self, flag: str, value: Any, mapping: dict[str, tuple[str, str]]) -> Any:
        """uvicorn's value for a setting celeris does its own way: celeris's nearest one, with a note."""
        if isinstance(value, str) and value in mapping:
            value, note = mapping[value]
            self.notes.append(note)
        return value

    def note_uvicorn_only_settings(self) -> None:
        """uvicorn settings celeris accepts without an equivalent: say what happens instead."""
        if self.http2:
            self.notes.append("--http2: HTTP/2 is always on in celeris (h2c and ALPN h2); nothing to enable")
        if self.h11_max_incomplete_event_size is not None:
            self.notes.append(
                "--h11-max-incomplete-event-size: ignored; celeris bounds request heads with "
                "--limit-request-line, --limit-request-header-size and --limit-request-headers"
            )
        if self.reset_contextvars:
            self.notes.append(
                "--reset-contextvars: celeris always runs each request in its own copy of the server's "
                "context, so context set in the lifespan never reaches requests"
            )
        if self.ssl_version == ssl.PROTOCOL_TLSv1_2:
            self.notes.append("--ssl-version 5 (TLS 1.2): serving TLS 1.2 only, without TLS 1.3")

    def announce(self) -> None:
        """Log the uvicorn values mapped to celeris's own, once per process tree (forked workers inherit
        the emptied list)."""
        for note in self.notes:
            error_logger.info("%s.", note)
        self.notes = []

    def validate(self) -> None:
        """Check every value up front, so a typo fails before anything binds or forks."""
        if not isinstance(self.http, str):
            raise ConfigError(
                "http= takes a name (auto, h1, h2, or uvicorn's h11/httptools); celeris cannot use a protocol class."
            )
        if not isinstance(self.ws, str):
            raise ConfigError("ws= takes a name (auto, none, websockets); celeris cannot use a protocol class.")
        for name, value, choices in (
            ("--loop", self.loop, LOOP_CHOICES),
            ("--http", self.http, HTTP_CHOICES),
            ("--ws", self.ws, WS_CHOICES),
            ("--lifespan", self.lifespan, LIFESPAN_CHOICES),
            ("--interface", self.interface, INTERFACE_CHOICES),
            ("--log-format", self.log_format, LOG_FORMAT_CHOICES),
            ("--proxy-protocol", self.proxy_protocol, PROXY_PROTOCOL_CHOICES),
        ):
            if value in choices or (name == "--loop" and ":" in str(value)):
                continue  # --loop also takes a "module:factory" import string, as in uvicorn
            raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}.")
        if self.interface == "wsgi":
            raise ConfigError(
                "--interface wsgi: celeris serves ASGI apps only; wrap the WSGI app with "
                "a2wsgi.WSGIMiddleware (pip install a2wsgi) and serve that, or use gunicorn."
            )
        if self.http2 and self.http == "h1":
            raise ConfigError("--http2 and --http h1 contradict each other; drop one of them.")
        if self.ssl_version not in (ssl.PROTOCOL_TLS, ssl.PROTOCOL_TLS_SERVER, ssl.PROTOCOL_TLSv1_2):
            raise ConfigError(
                f"--ssl-version {int(self.ssl_version)}: celeris serves TLS 1.2 and 1.3 only; drop --ssl-version "
                f"(or give {int(ssl.PROTOCOL_TLSv1_2)} for TLS 1.2 only)."
            )
        if self.ssl_cert_reqs not in (ssl.CERT_NONE, ssl.CERT_OPTIONAL, ssl.CERT_REQUIRED):
            raise ConfigError(
                f"--ssl-cert-reqs must be 0 (none), 1 (optional) or 2 (required); got {self.ssl_cert_reqs}."
            )
        if self.ws == "websockets":
            check_websockets_available(self)
        if isinstance(self.log_level, str) and self.log_level.lower() not in LOG_LEVELS:
            raise ConfigError(f"--log-level must be one of {', '.join(LOG_LEVELS)}; got {self.log_level!r}.")
        if not 0 <= int(self.port) <= 65535:
            raise ConfigError(f"--port must be between 0 and 65535; got {self.port}.")
        positive = {
            "--timeout-keep-alive": self.timeout_keep_alive,
            "--timeout-graceful-shutdown": self.timeout_graceful_shutdown,
            "--timeout-request-header": self.timeout_request_header,
            "--timeout-request-body": self.timeout_request_body,
            "--timeout-send": self.timeout_send,
            "--backlog": self.backlog,
            "--limit-request-line": self.limit_request_line,
            "--limit-request-headers": self.limit_request_headers,
            "--limit-request-header-size": self.limit_request_header_size,
            "--timeout-worker-healthcheck": self.timeout_worker_healthcheck,
            "--timeout-worker-startup": self.timeout_worker_startup,
            "--ws-max-size": self.ws_max_size,
            "--ws-max-queue": self.ws_max_queue,
        }
        optional_positive = {
            "--limit-concurrency": self.limit_concurrency,
            "--limit-request-body": self.limit_request_body,
            "--limit-max-requests": self.limit_max_requests,
            "--workers-max-rss": self.workers_max_rss,
            "--workers-lifetime": self.workers_lifetime,
        }
        for name, value in {**positive, **optional_positive}.items():
            if value is None and name in optional_positive:
                continue
            if value is None or value <= 0:
                raise ConfigError(f"{name} must be greater than 0; got {value}.")
        if self.limit_request_min_rate < 0:
            raise ConfigError(f"--limit-request-min-rate must be 0 (off) or more; got {self.limit_request_min_rate}.")
        if self.workers < 1:
            raise ConfigError(f"--workers must be at least 1; got {self.workers}.")
        if self.limit_max_requests_jitter < 0:
            raise ConfigError("--limit-max-requests-jitter must not be negative.")
        self.h2 = self.build_h2_settings()
        if self.metrics_address is not None:
            from celeris_asgi.metrics import parse_address

            try:
                parse_address(self.metrics_address)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ConfigError("--ssl-keyfile needs --ssl-certfile.")
        if self.proxy_protocol != "off" and self.ssl_certfile:
            raise ConfigError("--proxy-protocol with --ssl-certfile is not supported: terminate TLS at the proxy.")
        if self.uds and self.fd is not None:
            raise ConfigError("--uds and --fd cannot be used together.")
        from celeris_asgi.middleware.proxy_headers import TrustedHosts

        try:
            TrustedHosts(self.forwarded_allow_ips)
        except ValueError as exc:
            raise ConfigError(f"--forwarded-allow-ips: {exc}") from None

    def build_h2_settings(self) -> H2Settings:
        """The HTTP/2 engine's limits from every ``h2_<field>`` attribute: built, and so checked
        against the engine's one set of bounds, once, here; the server shares the result."""
        from celeris_asgi.protocols.websocket import websocket_enabled

        values: dict[str, Any] = {}  # getattr's values: checked by H2Settings itself
        for field in dataclasses.fields(H2Settings):
            value = getattr(self, "h2_" + field.name, None)
            if value is not None:
                values[field.name] = value
        # The connection window bounds the request body buffered per connection; twice the stream
        # window keeps one stream whose app does not read from starving the others.
        doubled = 2 * self.h2_initial_window_size
        values["connection_window_size"] = min(max(H2_DEFAULTS.connection_window_size, doubled), 2**31 - 1)
        values["send_timeout"] = self.timeout_send  # checked above as --timeout-send
        values["enable_connect_protocol"] = websocket_enabled(self)  # RFC 8441 WebSockets
        try:
            return dataclasses.replace(H2_DEFAULTS, **values)
        except H2SettingsError as exc:  # any other field it checks comes from an --h2-* flag
            raise ConfigError(f"--h2-{exc.field.replace('_', '-')} {exc.rule}.") from None

    @property
    def is_ssl(self) -> bool:
        return bool(self.ssl_certfile)

    @property
    def use_subprocess(self) -> bool:
        """True when a supervisor (several workers or reload) must run instead of one Server."""
        return self.workers > 1 or self.reload

    def load(self) -> None:
        """Import the app, wrap its middleware, and build the SSL context; idempotent."""
        if self.loaded:
            return
        if self.app_dir is not None:
            app_dir = os.path.abspath(self.app_dir)
            if app_dir not in sys.path:
                sys.path.insert(0, app_dir)
        if self.is_ssl:
            factory = self.ssl_context_factory
            self.ssl = factory(self, self.create_ssl_context) if factory else self.create_ssl_context()
        try:
            app = load_app(self.app, self.factory, self.interface)
        except AppLoadError as exc:
            raise ConfigError(str(exc)) from exc.__cause__  # the app's own traceback, shown at debug
        if self.proxy_headers:
            # Applied by the protocols, per trusted connection: no middleware layer on every request.
            from celeris_asgi.middleware.proxy_headers import ProxyHeaders

            self.proxy = ProxyHeaders(self.forwarded_allow_ips)
        self.loaded_app = app
        if self.metrics is None and self.metrics_address is not None:
            from celeris_asgi.metrics import Metrics

            self.metrics = Metrics()  # this process serves its own scrapes (no master)
        from celeris_asgi.settings import ServerSettings

        self.settings = ServerSettings.from_config(self)  # what the protocols read, built once
        self.loaded = True

    def create_ssl_context(self) -> ssl.SSLContext:
        """A server context with TLS >= 1.2, ALPN h2/http1.1 (per --http) and the h2-safe cipher list."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.ssl_version == ssl.PROTOCOL_TLSv1_2:
            context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
        for flag, path in (
            ("--ssl-certfile (the certificate)", self.ssl_certfile),
            ("--ssl-keyfile (the private key)", self.ssl_keyfile),
            ("--ssl-ca-certs (the CA certificates)", self.ssl_ca_certs),
        ):
            if path and not os.path.isfile(path):
                raise ConfigError(f"{flag} {str(path)!r} does not exist or is not a file.")
        if not self.ssl_certfile:  # a --ssl-context-factory may call this without one
            raise ConfigError("A TLS context needs --ssl-certfile (the certificate).")
        try:
            context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile, self.ssl_keyfile_password)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"Cannot load the TLS certificate or key: {exc}.") from None
        remember_server_cert(context, self.ssl_certfile)  # for the ASGI `tls` extension's server_cert
        try:
            context.set_ciphers(self.ssl_ciphers)
        except ssl.SSLError:
            raise ConfigError(f"--ssl-ciphers {self.ssl_ciphers!r} selects no usable cipher.") from None
        context.verify_mode = ssl.VerifyMode(self.ssl_cert_reqs)
        if self.ssl_ca_certs:
            try:
                context.load_verify_locations(self.ssl_ca_certs)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"Cannot load --ssl-ca-certs: {exc}.") from None
        alpn = {"auto": ["h2", "http/1.1"], "h1": ["http/1.1"], "h2": ["h2"]}[self.http]
        context.set_alpn_protocols(alpn)
        return context

    def bind_socket(self) -> socket.socket:
        """Bind the listening socket (TCP host:port, a unix socket, or an inherited fd)."""
        if self.fd is not None:
            try:
                sock = socket.socket(fileno=self.fd)
            except OSError as exc:
                raise ConfigError(f"--fd {self.fd} is not a usable socket: {exc.strerror}.") from None
            sock.setblocking(False)
            return sock
        if self.uds:
            path = self.uds
            try:
                if os.path.exists(path) and stat.S_ISSOCK(os.stat(path).st_mode):
                    os.remove(path)
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.bind(path)
                os.chmod(path, 0o666)
                sock.listen(self.backlog)
            except OSError as exc:
                raise ConfigError(f"Cannot bind unix socket {path}: {exc.strerror}.") from None
            sock.setblocking(False)
            return sock
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((self.host, self.port))
            sock.listen(self.backlog)
        except OSError as exc:
            sock.close()
            raise ConfigError(f"Cannot bind to {self.host}:{self.port}: {exc.strerror}.") from None
        sock.setblocking(False)
        return sock


def _as_list(value: list[str] | str | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)
