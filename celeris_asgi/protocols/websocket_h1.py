"""The HTTP/1.1 carrier of a WebSocket: takes over the connection after an `Upgrade: websocket` request.

HTTP1Protocol hands over the transport with the request's http scope and any bytes that followed
the request head; this protocol answers the handshake (101, or a plain HTTP response) and moves the
WebSocketSession's bytes (see websocket.py). Imported only when websocket_enabled() is true.
"""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.exceptions import InvalidHandshake
from websockets.http11 import Request

from celeris_asgi.headers import status_line
from celeris_asgi.logging import error_logger
from celeris_asgi.protocols.websocket import (
    CLOSE_TIMEOUT,
    WebSocketSession,
    handshake_headers,
    offered_subprotocols,
    websocket_scope,
)


class WebSocketProtocol(asyncio.Protocol):
    """The HTTP/1.1 carrier: owns the connection once an `Upgrade: websocket` request was read."""

    def __init__(
        self,
        config: Any,
        state: Any,
        loop: asyncio.AbstractEventLoop,
        http_scope: dict[str, Any],
        trailing: bytes,
    ) -> None:
        self.config = config
        self.state = state
        self.loop = loop
        self.http_scope = http_scope
        self.trailing = trailing
        self.transport: asyncio.Transport | None = None
        self.session = WebSocketSession(config.settings, state, loop, self, http_scope, "GET")
        self.reading = True
        self.write_paused = False
        self.send_deadline = 0.0
        self.closing_deadline = 0.0
        self.chunked = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        self.transport = transport  # type: ignore[assignment]
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
        if self.trailing:
            session.feed_data(self.trailing)
            self.trailing = b""

    def data_received(self, data: bytes) -> None:
        self.session.feed_data(data)

    def eof_received(self) -> bool | None:
        self.session.feed_eof()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        self.transport = None
        self.session.connection_lost()

    def pause_writing(self) -> None:
        self.write_paused = True
        self.send_deadline = self.state.now + self.config.timeout_send

    def resume_writing(self) -> None:
        self.write_paused = False
        self.send_deadline = 0.0
        self.session.writing_resumed()

    # ----- the carrier side (see the module docstring) ----------------------------------------

    def send_accept(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.write_head(101, headers)

    def send_response(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, more_body: bool) -> None:
        """A plain HTTP/1.1 response on this connection, which then closes."""
        if not any(name.lower() == b"content-length" for name, _ in headers):
            if more_body:
                self.chunked = True
                headers = [*headers, (b"transfer-encoding", b"chunked")]
            else:
                headers = [*headers, (b"content-length", b"%d" % len(body))]
        self.write_head(status, [*headers, (b"connection", b"close")])
        self.send_body(body, more_body)

    def send_body(self, body: bytes, more_body: bool) -> None:
        if self.chunked:
            last = b"" if more_body else b"0\r\n\r\n"
            body = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + last
        if body:
            self.write(body)
        if not more_body:
            self.close()

    def write_head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        parts = [status_line(status), self.state.default_headers.block]
        parts.extend(b"%s: %s\r\n" % (name, value) for name, value in headers)
        parts.append(b"\r\n")
        self.write(b"".join(parts))

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def end_cleanly(self) -> None:
        self.close()

    def end_abruptly(self) -> None:
        self.abort()

    def send_frames(self, data: bytes) -> None:
        self.write(data)

    def close(self) -> None:
        if self.transport is not None and not self.closing_deadline:
            self.closing_deadline = self.state.now + CLOSE_TIMEOUT
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def pause_reading(self) -> None:
        if self.reading and self.transport is not None:
            self.reading = False
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if not self.reading and self.transport is not None:
            self.reading = True
            self.transport.resume_reading()

    # ----- asked by the server ---------------------------------------------------------------

    def check_timeouts(self, now: float) -> None:
        if self.transport is None:
            return
        if (self.closing_deadline and now >= self.closing_deadline) or (
            self.send_deadline and now >= self.send_deadline and self.write_paused
        ):
            error_logger.info("Closing a WebSocket connection whose client stopped reading.")
            self.transport.abort()
            return
        self.session.check_timeouts(now)

    def shutdown(self) -> None:
        self.session.shutdown()
