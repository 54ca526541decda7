"""Typed per-server settings, built once from a loaded Config and read by every protocol.

Config is the user-facing bag of every flag (validated once, with its one default). The protocols
need a small, typed, immutable subset of it, with derived objects already built (the loaded app,
the access log, the HTTP/2 limits, the proxy-header rules), so a connection never rebuilds or
revalidates anything and mypy sees what each protocol reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from celeris_asgi.logging import AccessLog
from celeris_asgi.protocols.http2.settings import H2Settings

if TYPE_CHECKING:
    from celeris_asgi.asgi_types import ASGIApp
    from celeris_asgi.config import Config
    from celeris_asgi.metrics import Metrics
    from celeris_asgi.middleware.proxy_headers import ProxyHeaders, TrustedHosts


@dataclass(frozen=True, slots=True)
class WebSocketSettings:
    """What a WebSocket session needs; `enabled` is False when `Upgrade: websocket` stays plain HTTP."""

    enabled: bool
    max_size: int
    max_queue: int
    ping_interval: float
    ping_timeout: float
    per_message_deflate: bool


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Everything a connection reads from the configuration; one instance per server."""

    app: ASGIApp
    http: str  # auto | h1 | h2
    root_path: str
    access_log: AccessLog
    proxy: ProxyHeaders | None  # proxy-header rules, or None with --no-proxy-headers
    limit_concurrency: int | None
    limit_request_line: int
    limit_request_headers: int
    limit_request_header_size: int
    limit_request_body: int | None
    limit_request_min_rate: int
    timeout_keep_alive: float
    timeout_request_header: float
    timeout_request_body: float
    timeout_send: float
    h2: H2Settings
    websocket: WebSocketSettings
    metrics: Metrics | None = None  # None with metrics off: the request cycle checks it once per request
    proxy_protocol: str = "off"  # off | v1 | v2: a PROXY header expected first from trusted peers
    # the peers whose PROXY header is read (--forwarded-allow-ips); None with --proxy-protocol off
    proxy_protocol_peers: TrustedHosts | None = None

    @classmethod
    def from_config(cls, config: Config) -> ServerSettings:
        """Build the settings of a loaded config (Config.load() ran: the app is imported)."""
        from celeris_asgi.middleware.proxy_headers import TrustedHosts
        from celeris_asgi.protocols.websocket import websocket_enabled

        websocket = WebSocketSettings(
            enabled=websocket_enabled(config),
            max_size=config.ws_max_size,
            max_queue=config.ws_max_queue,
            ping_interval=config.ws_ping_interval or 0.0,
            ping_timeout=config.ws_ping_timeout or 0.0,
            per_message_deflate=config.ws_per_message_deflate,
        )
        return cls(
            app=config.loaded_app,
            http=config.http,
            root_path=config.root_path,
            access_log=AccessLog(config.access_log_format, config.access_log),
            proxy=config.proxy,
            limit_concurrency=config.limit_concurrency,
            limit_request_line=config.limit_request_line,
            limit_request_headers=config.limit_request_headers,
            limit_request_header_size=config.limit_request_header_size,
            limit_request_body=config.limit_request_body,
            limit_request_min_rate=config.limit_request_min_rate,
            timeout_keep_alive=config.timeout_keep_alive,
            timeout_request_header=config.timeout_request_header,
            timeout_request_body=config.timeout_request_body,
            timeout_send=config.timeout_send,
            h2=config.h2,
            websocket=websocket,
            metrics=config.metrics,
            proxy_protocol=config.proxy_protocol,
            proxy_protocol_peers=(None if config.proxy_protocol == "off" else TrustedHosts(config.forwarded_allow_ips)),
        )
