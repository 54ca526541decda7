"""RFC 8441: a WebSocket carried by one HTTP/2 stream opened with extended CONNECT (`:protocol websocket`).

The HTTP/2 protocol hands such a stream to `H2WebSocketStream`, the HTTP/2 carrier of a
`WebSocketSession` (see websocket.py): the stream's DATA frames carry the WebSocket frames both ways,
the handshake answer is a 200 without Sec-WebSocket-Key/Accept, END_STREAM plays the part of the TCP
close, and backpressure is HTTP/2 flow control: while the app lags, received bytes are not given
back to the peer's window, so the peer stops sending. Imported only when WebSockets are enabled.

The stream drives its own stream in the engine (`H2Connection`) and asks the connection for no more
than `StreamCarrierHost` names.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

from websockets.exceptions import InvalidHandshake, InvalidHeaderValue

from celeris_asgi.protocols.http2 import frames as f
from celeris_asgi.protocols.websocket import (
    CLOSE_TIMEOUT,
    WebSocketSession,
    handshake_headers,
    offered_subprotocols,
    websocket_scope,
)

if TYPE_CHECKING:
    from celeris_asgi.asgi_types import Headers, HTTPScope
    from celeris_asgi.protocols.http2.connection import H2Connection
    from celeris_asgi.settings import ServerSettings
    from celeris_asgi.state import ServerState


class StreamCarrierHost(Protocol):
    """What an RFC 8441 stream needs from the HTTP/2 connection that carries it."""

    settings: ServerSettings
    state: ServerState
    loop: asyncio.AbstractEventLoop

    @property
    def write_paused(self) -> bool:
        """True while the connection's transport is above its high-water mark."""

    def schedule_flush(self) -> None:
        """Write what the engine queued, at the end of this loop pass."""

    def stream_closed(self, stream_id: int) -> None:
        """The stream is over: take it out of the connection's table."""


class H2WebSocketStream:
    """One extended-CONNECT stream of an HTTP/2 connection, carrying one WebSocket (a StreamHandler)."""

    __slots__ = (
        "blocked_since",
        "closing_deadline",
        "ended",
        "engine",
        "finished",
        "held",
        "host",
        "http_scope",
        "reading",
        "session",
        "stream_id",
    )

    def __init__(self, host: StreamCarrierHost, engine: H2Connection, stream_id: int, http_scope: HTTPScope) -> None:
        self.host = host
        self.engine = engine
        self.stream_id = stream_id
        self.reading = True
        self.held = 0  # bytes received while paused, given back to the peer's window on resume
        self.ended = False
        self.finished = False
        self.closing_deadline = 0.0
        self.blocked_since = 0.0
        self.http_scope = http_scope
        self.session = WebSocketSession(host.settings, host.state, host.loop, self, http_scope, "CONNECT")

    def start(self, end_stream: bool) -> None:
        """Check the RFC 8441 handshake, negotiate extensions, run the app."""
        session = self.session
        headers = self.http_scope["headers"]
        try:
            subprotocols = offered_subprotocols(headers)
            versions = [value for name, value in headers if name == b"sec-websocket-version"]
            if versions != [b"13"]:
                raise InvalidHeaderValue("Sec-WebSocket-Version", b", ".join(versions).decode("latin-1"))
            extensions, session.protocol.extensions = session.protocol.process_extensions(handshake_headers(headers))
        except InvalidHandshake as exc:
            session.refuse_handshake(exc)
            return
        accept_headers = [(b"sec-websocket-extensions", extensions.encode("ascii"))] if extensions else []
        session.start(websocket_scope(self.http_scope, subprotocols), accept_headers)
        if end_stream:
            self.feed(b"", True)

    # ----- StreamHandler: fed by the HTTP/2 connection ---------------------------------------

    def feed(self, data: bytes, end_stream: bool) -> None:
        if data:
            self.session.feed_data(data)
            if self.reading:
                self.engine.consume(self.stream_id, len(data))
            else:
                self.held += len(data)
        if end_stream:  # the peer is done sending: the WebSocket is over, whatever state it was in
            self.session.feed_eof()
            self.end_cleanly()

    def drained(self) -> None:
        self.session.writing_resumed()

    def reset(self) -> None:
        """The peer reset the stream, or the connection is gone."""
        self.finish()

    def check_timeouts(self, now: float) -> None:
        """Close handshake deadline, --timeout-send for a window that never opens, then pings."""
        if self.engine.is_blocked(self.stream_id):
            self.blocked_since = self.blocked_since or now
        else:
            self.blocked_since = 0.0
        if (self.closing_deadline and now >= self.closing_deadline) or (
            self.blocked_since and now - self.blocked_since > self.host.settings.timeout_send
        ):
            self.end_abruptly()
        else:
            self.session.check_timeouts(now)

    def shutdown(self) -> None:
        self.session.shutdown()

    # ----- the carrier side (WebSocketCarrier, see websocket.py) ------------------------------

    @property
    def write_paused(self) -> bool:
        return self.host.write_paused or self.engine.is_blocked(self.stream_id)

    def send_accept(self, headers: Headers) -> None:
        self.engine.send_headers(self.stream_id, 200, headers, False, self.host.state.default_headers.pairs)
        self.host.schedule_flush()

    def send_response(self, status: int, headers: Headers, body: bytes, more_body: bool) -> None:
        defaults = self.host.state.default_headers.pairs
        if body:
            self.engine.send_response(self.stream_id, status, headers, defaults, body, not more_body)
        else:
            self.engine.send_headers(self.stream_id, status, headers, not more_body, defaults)
        self.host.schedule_flush()
        if not more_body:
            self.finish()  # a plain response: nothing more to wait for (RST NO_ERROR if the peer still sends)

    def send_body(self, body: bytes, more_body: bool) -> None:
        if body or not more_body:
            self.engine.send_data(self.stream_id, body, not more_body)
        self.host.schedule_flush()
        if not more_body:
            self.finish()

    def send_frames(self, data: bytes) -> None:
        """WebSocket frames, as DATA on the stream."""
        self.engine.send_data(self.stream_id, data, False)
        self.host.schedule_flush()

    def end_cleanly(self) -> None:
        """End our side with END_STREAM; done once the peer ends its side too (or CLOSE_TIMEOUT)."""
        if not self.ended:
            self.ended = True
            self.engine.send_data(self.stream_id, b"", True)
            self.host.schedule_flush()
        if not self.engine.stream_is_open(self.stream_id) or self.session.eof:
            self.finish()
        elif not self.closing_deadline:
            self.closing_deadline = self.host.state.now + CLOSE_TIMEOUT

    def end_abruptly(self) -> None:
        """RST_STREAM CANCEL."""
        self.engine.reset_stream(self.stream_id, f.CANCEL)
        self.finish()

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        if not self.reading:
            self.reading = True
            if self.held:
                self.engine.consume(self.stream_id, self.held)
                self.held = 0
                self.host.schedule_flush()

    def finish(self) -> None:
        """The stream is over for us: release it in the engine and tell the session."""
        if self.finished:
            return
        self.finished = True
        if self.held:
            self.engine.consume(0, self.held)  # the connection window must not shrink for good
            self.held = 0
        self.engine.finish_stream(self.stream_id)  # RST_STREAM if the peer has not ended its side
        self.session.connection_lost()
        self.host.stream_closed(self.stream_id)
