"""The HTTP/1.1 carrier of a WebSocket: takes over the connection after an `Upgrade: websocket` request.

HTTP1Protocol hands over the transport (handoff.hand_over) with the request's http scope, and the
bytes that followed the request head as the first data received; this protocol answers the
handshake (101, or a plain HTTP response framed by http1_response.ResponseWriter) and moves the
WebSocketSession's bytes (see websocket.py for the carrier contract). Imported only when WebSockets
are enabled (settings.websocket.enabled).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

from websockets.exceptions import InvalidHandshake
from websockets.http11 import Request

from celeris_asgi.logging import error_logger
from celeris_asgi.protocols.addresses import log_closed
from celeris_asgi.protocols.flow import FlowControl
from celeris_asgi.protocols.http1_response import ResponseWriter, switching_protocols
from celeris_asgi.protocols.websocket import (
    CLOSE_TIMEOUT,
    WebSocketSession,
    handshake_headers,
    offered_subprotocols,
    websocket_scope,
)

if TYPE_CHECKING:
    from celeris_asgi.asgi_types import Headers, HTTPScope
    from celeris_asgi.settings import ServerSettings
    from celeris_asgi.state import ServerState


class WebSocketProtocol(asyncio.Protocol):
    """The HTTP/1.1 carrier: owns the connection once an `Upgrade: websocket` request was read."""

    __slots__ = (
        "closing_deadline",
        "flow",
        "http_scope",
        "loop",
        "metrics",
        "session",
        "settings",
        "state",
        "transport",
        "writer",
    )

    def __init__(
        self,
        settings: ServerSettings,
        state: ServerState,
        loop: asyncio.AbstractEventLoop,
        http_scope: HTTPScope,
    ) -> None:
        self.settings = settings
        self.state = state
        self.metrics = settings.metrics
        self.loop = loop
        self.http_scope = http_scope
        self.transport: asyncio.Transport | None = None
        self.session = WebSocketSession(settings, state, loop, self, http_scope, "GET")
        self.closing_deadline = 0.0
        self.writer = ResponseWriter(state.default_headers)  # a plain response instead of the handshake

    flow: FlowControl

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        self.flow = FlowControl(transport)
        self.state.connections.add(self)
        http_scope = self.http_scope
        session = self.session
        try:
            subprotocols = offered_subprotocols(http_scope["headers"])
            target = http_scope["raw_path"].decode("latin-1")
            request = Request(
                target,
                handshake_headers(http_scope["headers"]),
                method=http_scope["method"],
                protocol=f"HTTP/{http_scope['http_version']}",
            )
            accept_key, extensions, _ = session.protocol.process_request(request)
        except InvalidHandshake as exc:
            session.refuse_handshake(exc)
            return
        accept_headers = [
            (b"upgrade", b"websocket"),
            (b"connection", b"Upgrade"),
            (b"sec-websocket-accept", accept_key.encode("ascii")),
        ]
        if extensions is not None:
            accept_headers.append((b"sec-websocket-extensions", extensions.encode("ascii")))
        session.start(websocket_scope(http_scope, subprotocols), accept_headers)

    def data_received(self, data: bytes) -> None:
        if self.metrics is not None:
            self.metrics.bytes_received(len(data))
        self.session.feed_data(data)

    def eof_received(self) -> bool | None:
        self.session.feed_eof()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        log_closed(self.transport, "WebSocket")
        self.state.connections.discard(self)
        self.transport = None
        self.flow.resume_writing()
        self.session.connection_lost()

    def pause_writing(self) -> None:
        self.flow.pause_writing(self.state.now, self.settings.timeout_send)

    def resume_writing(self) -> None:
        self.flow.resume_writing()
        self.session.writing_resumed()

    # ----- the carrier side (websocket.WebSocketCarrier) ------------------------------------------

    @property
    def write_paused(self) -> bool:
        return self.flow.write_paused

    def send_accept(self, headers: Headers) -> None:
        self.send_frames(switching_protocols(self.state.default_headers.block, headers))

    def send_response(self, status: int, headers: Headers, body: bytes, more_body: bool) -> None:
        """A plain HTTP/1.1 response on this connection, which then closes."""
        writer = self.writer
        writer.reset(False, self.http_scope["http_version"] == "1.0", False)
        self.send_frames(writer.head(status, headers, body, more_body, False, True))
        if not more_body:
            self.end_cleanly()

    def send_body(self, body: bytes, more_body: bool) -> None:
        data = self.writer.body(body, more_body, False)
        if data:
            self.send_frames(data)
        if not more_body:
            self.end_cleanly()

    def send_frames(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)
            if self.metrics is not None:
                self.metrics.bytes_sent(len(data))

    def end_cleanly(self) -> None:
        if self.transport is not None and not self.closing_deadline:
            self.closing_deadline = self.state.now + CLOSE_TIMEOUT
            self.transport.close()

    def end_abruptly(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def pause_reading(self) -> None:
        if self.transport is not None:
            self.flow.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None:
            self.flow.resume_reading()

    # ----- asked by the server ---------------------------------------------------------------

    def check_timeouts(self, now: float) -> None:
        if self.transport is None:
            return
        if (self.closing_deadline and now >= self.closing_deadline) or self.flow.send_timed_out(now):
            error_logger.info("Closing a WebSocket connection whose client stopped reading.")
            self.transport.abort()
            return
        self.session.check_timeouts(now)

    def shutdown(self) -> None:
        self.session.shutdown()
