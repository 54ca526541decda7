"""WebSocket (RFC 6455) for ASGI on the `websockets` sans-I/O protocol, over HTTP/1.1 or an HTTP/2 stream.

`WebSocketSession` holds everything a WebSocket needs once its opening request has been read: the
ASGI websocket scope with receive()/send(), the frame engine (websockets' ServerProtocol, reading
frames into messages: websocket_engine.py), the bounded queue towards the app, keepalive pings, the
close handshake and shutdown. It never touches a socket. A *carrier* moves its bytes and
implements `WebSocketCarrier` (its names differ from a request cycle owner's on purpose: the two
contracts are different) and feeds the session with feed_data(), feed_eof(), writing_resumed(), connection_lost(),
check_timeouts() and shutdown(). The carriers: websocket_h1.py (after an HTTP/1.1 Upgrade) and
websocket_h2.py (an HTTP/2 stream, RFC 8441). This module imports without the websockets library;
websocket_enabled() then says no and upgrade requests stay plain HTTP (`--ws auto`; with
`--ws websockets` the Config refuses to start instead).
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import Sequence
from time import perf_counter
from typing import TYPE_CHECKING, Any, Protocol

from celeris_asgi.cycle import ASGI_VERSIONS, ClientDisconnected, admit, start_app_task
from celeris_asgi.headers import validate_header
from celeris_asgi.logging import error_logger

if TYPE_CHECKING:
    from celeris_asgi.asgi_types import Headers as AsgiHeaders
    from celeris_asgi.asgi_types import HTTPScope, WebSocketScope
    from celeris_asgi.settings import ServerSettings
    from celeris_asgi.state import ServerState

try:
    from websockets.datastructures import Headers
    from websockets.exceptions import InvalidHandshake, InvalidHeader
    from websockets.extensions.permessage_deflate import enable_server_permessage_deflate
    from websockets.frames import Frame, Opcode
    from websockets.headers import parse_subprotocol
    from websockets.protocol import OPEN
    from websockets.server import ServerProtocol

    from celeris_asgi.protocols.websocket_engine import FrameEngine
except ImportError:  # the server still runs: upgrade requests are then served as plain HTTP
    ServerProtocol = None  # type: ignore[assignment,misc]


_EXTENSIONS: dict[str, Any] = {"websocket.http.response": {}}
_CONNECT: dict[str, Any] = {"type": "websocket.connect"}
CLOSE_TIMEOUT = 10.0  # seconds the peer has to answer our close frame (or to read our last bytes)
PENDING_LIMIT = 64 * 1024  # bytes read ahead of the app's accept before reading pauses
_VERSION_HEADERS = ((b"sec-websocket-version", b"13"),)  # RFC 6455 4.2.2: the versions this server speaks
_MAX_REASON = 123  # a close frame's reason fits a 125-byte control frame with its 2-byte code

# The app's side of the handshake.
_CONNECTING, _ACCEPTED, _RESPONDING, _DONE = range(4)


class WebSocketCarrier(Protocol):
    """What a WebSocketSession needs from the connection or stream that carries it."""

    @property
    def write_paused(self) -> bool:
        """True while send() must wait for the session's writing_resumed()."""

    def send_accept(self, headers: AsgiHeaders) -> None:
        """The handshake answer: 101 on HTTP/1.1, 200 on HTTP/2."""

    def send_response(self, status: int, headers: AsgiHeaders, body: bytes, more_body: bool) -> None:
        """A plain HTTP response instead of the handshake (denial, 403, 500, 503)."""

    def send_body(self, body: bytes, more_body: bool) -> None:
        """Later parts of that response."""

    def send_frames(self, data: bytes) -> None:
        """WebSocket frames."""

    def end_cleanly(self) -> None:
        """End once written (TCP close / END_STREAM)."""

    def end_abruptly(self) -> None:
        """End now (TCP abort / RST_STREAM)."""

    def pause_reading(self) -> None:
        """Backpressure towards the peer."""

    def resume_reading(self) -> None:
        """Reading may go on."""


def websocket_enabled(config: Any) -> bool:
    """True when an `Upgrade: websocket` request becomes a WebSocket (else it is served as plain HTTP)."""
    return config.ws != "none" and ServerProtocol is not None


def websocket_scope(http_scope: HTTPScope, subprotocols: list[str]) -> WebSocketScope:
    """The ASGI websocket scope (spec 2.4) for the opening request whose http scope was built."""
    return {
        "type": "websocket",
        "asgi": ASGI_VERSIONS,
        "http_version": http_scope["http_version"],
        "scheme": "wss" if http_scope["scheme"] == "https" else "ws",
        "server": http_scope["server"],
        "client": http_scope["client"],
        "root_path": http_scope["root_path"],
        "path": http_scope["path"],
        "raw_path": http_scope["raw_path"],
        "query_string": http_scope["query_string"],
        "headers": http_scope["headers"],
        "subprotocols": subprotocols,
        "state": http_scope["state"],
        "extensions": _EXTENSIONS,
    }


def offered_subprotocols(headers: list[tuple[bytes, bytes]]) -> list[str]:
    """Sec-WebSocket-Protocol values in order; raises InvalidHandshake when malformed."""
    offered: list[str] = []
    for name, value in headers:
        if name == b"sec-websocket-protocol":
            offered.extend(parse_subprotocol(value.decode("latin-1")))
    return offered


def handshake_headers(headers: list[tuple[bytes, bytes]]) -> Headers:
    """The request headers as websockets' Headers, the input of its validation and negotiation."""
    return Headers([(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers])


def _truncate_reason(reason: str) -> str:
    """A close reason cut to what fits a control frame, on a character boundary."""
    encoded = reason.encode()
    if len(encoded) <= _MAX_REASON:
        return reason
    return encoded[:_MAX_REASON].decode(errors="ignore")


class WebSocketSession:
    """One WebSocket between one app call and one carrier; see the module docstring."""

    __slots__ = (
        "accept_headers",
        "access_log",
        "app_closed",
        "carrier",
        "close_code",
        "close_deadline",
        "close_reason",
        "closed",
        "connect_sent",
        "drain_waiter",
        "eof",
        "held",
        "held_deadline",
        "loop",
        "low_water",
        "max_queue",
        "method",
        "next_ping",
        "pending",
        "phase",
        "ping_deadline",
        "ping_interval",
        "ping_payload",
        "ping_timeout",
        "protocol",
        "queue",
        "read_paused",
        "response_headers",
        "response_status",
        "scope",
        "settings",
        "start_time",
        "state",
        "task",
        "waiter",
    )

    def __init__(
        self,
        settings: ServerSettings,
        state: ServerState,
        loop: asyncio.AbstractEventLoop,
        carrier: WebSocketCarrier,
        http_scope: HTTPScope,
        method: str,
    ) -> None:
        self.settings = settings
        self.state = state
        self.loop = loop
        self.carrier = carrier
        self.method = method  # GET over HTTP/1.1, CONNECT over HTTP/2 (for the access log)
        extensions = enable_server_permessage_deflate(None) if settings.websocket.per_message_deflate else None
        # state=OPEN: the carrier has done the HTTP part, so the engine only ever parses frames.
        self.protocol = FrameEngine(extensions=extensions, state=OPEN, max_size=settings.websocket.max_size)
        self.held: list[bytes] | None = None  # the engine's closing bytes, waiting for the app (hold_close)
        self.held_deadline = 0.0
        self.scope: HTTPScope | WebSocketScope = http_scope  # until start() swaps in the websocket scope
        self.accept_headers: list[tuple[bytes, bytes]] = []
        self.access_log = settings.access_log
        self.start_time = perf_counter()
        self.task: asyncio.Task[None] | None = None  # the app's task, which removes itself from state.tasks
        self.phase = _CONNECTING
        self.connect_sent = False
        self.app_closed = False
        self.response_status = 0
        self.response_headers: list[tuple[bytes, bytes]] = []
        self.queue: deque[dict[str, Any]] = deque()
        self.max_queue = settings.websocket.max_queue
        self.low_water = settings.websocket.max_queue // 4
        self.waiter: asyncio.Future[None] | None = None
        self.drain_waiter: asyncio.Future[None] | None = None
        self.read_paused = False
        self.pending = bytearray()
        self.eof = False
        self.closed = False
        self.close_code = 1006
        self.close_reason = ""
        self.ping_interval = settings.websocket.ping_interval
        self.ping_timeout = settings.websocket.ping_timeout
        self.ping_payload: bytes | None = None
        self.next_ping = 0.0
        self.ping_deadline = 0.0
        self.close_deadline = 0.0

    # ----- start ---------------------------------------------------------------------------

    def start(self, scope: WebSocketScope, accept_headers: list[tuple[bytes, bytes]]) -> None:
        """Run the app for a valid opening request; accept_headers go into the handshake answer."""
        self.scope = scope
        self.accept_headers = accept_headers
        state = self.state
        if not admit(state, self.settings) or state.shutting_down:
            self.respond_plain(503, b"Service Unavailable")
            return
        self.task = start_app_task(state, self.run(self.settings.app), self.loop)

    async def run(self, app: Any) -> None:
        """Call the app and close whatever it left open, the way the ASGI spec asks."""
        try:
            await app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except asyncio.CancelledError:
            self.app_failed()
            raise
        except BaseException as exc:
            if not self.closed:
                error_logger.error("Exception in ASGI application", exc_info=exc)
            self.app_failed()
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
        else:
            if self.phase == _CONNECTING:
                if not self.closed:
                    error_logger.error("ASGI callable returned without accepting or closing the WebSocket.")
                self.respond_plain(500, b"Internal Server Error")
            elif self.phase == _RESPONDING:
                error_logger.error("ASGI callable returned without completing the response.")
                self.carrier.end_abruptly()
            elif self.phase == _ACCEPTED and not self.app_closed:
                self.start_close(1000, "")
        finally:
            self.state.tasks.discard(self.task)

    def app_failed(self) -> None:
        """The app raised: 500 before the handshake, 1011 after it, an aborted denial response."""
        if self.phase == _CONNECTING:
            self.respond_plain(500, b"Internal Server Error")
        elif self.phase == _RESPONDING:
            self.carrier.end_abruptly()
        elif self.phase == _ACCEPTED:
            self.start_close(1011, "")

    def refuse_handshake(self, exc: InvalidHandshake) -> None:
        """400 for an invalid opening request; a version we do not speak gets the one we do (RFC 6455 4.2.2)."""
        error_logger.debug("Invalid WebSocket handshake: %s", exc)
        version = isinstance(exc, InvalidHeader) and exc.name == "Sec-WebSocket-Version"
        self.respond_plain(400, f"Invalid WebSocket handshake: {exc}\n".encode(), _VERSION_HEADERS if version else ())

    def respond_plain(self, status: int, body: bytes, extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
        """A server-made HTTP answer instead of the handshake; the WebSocket never opens."""
        if self.closed or self.phase != _CONNECTING:
            return
        headers = [(b"content-type", b"text/plain; charset=utf-8")] if body else []
        headers.append((b"content-length", b"%d" % len(body)))
        headers.extend(extra)
        self.phase = _DONE
        self.log_access(status)
        self.carrier.send_response(status, headers, body, False)
        self.set_closed(1006, "")

    def log_access(self, status: int) -> None:
        if self.access_log.enabled:
            duration = perf_counter() - self.start_time
            self.access_log.log({**self.scope, "method": self.method}, status, [], 0, duration)

    # ----- the ASGI side -------------------------------------------------------------------

    async def receive(self) -> dict[str, Any]:
        if not self.connect_sent:
            self.connect_sent = True
            return _CONNECT
        queue = self.queue
        while not queue:
            if self.held is not None:  # the app has had every message that came before the close
                self.release_close()
            if self.closed:
                return {"type": "websocket.disconnect", "code": self.close_code, "reason": self.close_reason}
            self.waiter = self.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        message = queue.popleft()
        if self.read_paused and len(queue) <= self.low_water:
            self.read_paused = False
            self.carrier.resume_reading()
        return message

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "websocket.send":
            if self.phase != _ACCEPTED or self.app_closed:
                raise RuntimeError("'websocket.send' before 'websocket.accept' or after 'websocket.close'.")
            if self.closed or (self.protocol.state is not OPEN and self.held is None):
                raise ClientDisconnected("The WebSocket is closed.")
            text = message.get("text")
            if text is not None:
                frame = Frame(Opcode.TEXT, text.encode())
            else:
                data = message.get("bytes")
                if data is None:
                    raise RuntimeError("'websocket.send' needs 'bytes' or 'text'.")
                frame = Frame(Opcode.BINARY, data)
            # Serialized here, not by the engine: a reply still goes out while hold_close keeps the close.
            self.carrier.send_frames(frame.serialize(mask=False, extensions=self.protocol.extensions))
            if self.carrier.write_paused:
                await self.drain()
        elif kind == "websocket.accept":
            self.accept(message)
        elif kind == "websocket.close":
            if self.phase == _CONNECTING:
                self.respond_plain(403, b"")
            elif self.phase == _ACCEPTED and not self.app_closed:
                self.app_closed = True
                self.start_close(message.get("code") or 1000, message.get("reason") or "")
            elif self.phase == _RESPONDING:
                raise RuntimeError("Unexpected ASGI message 'websocket.close' during an HTTP response.")
        elif kind == "websocket.http.response.start":
            if self.phase != _CONNECTING:
                raise RuntimeError("Unexpected ASGI message 'websocket.http.response.start'.")
            if self.closed:
                raise ClientDisconnected("The client went away before the response.")
            self.response_status = message["status"]
            self.response_headers = self.checked_headers(message.get("headers", ()))
            self.phase = _RESPONDING
            self.log_access(self.response_status)
        elif kind == "websocket.http.response.body":
            await self.send_response_body(message)
        else:
            raise RuntimeError(f"Unexpected ASGI message type {kind!r}.")

    def accept(self, message: dict[str, Any]) -> None:
        if self.phase != _CONNECTING:
            raise RuntimeError("Unexpected 'websocket.accept': the handshake is already answered.")
        if self.closed:
            raise ClientDisconnected("The client went away before the WebSocket was accepted.")
        headers = list(self.accept_headers)
        subprotocol = message.get("subprotocol")
        if subprotocol is not None:
            headers.append((b"sec-websocket-protocol", subprotocol.encode("ascii")))
        for name, value in self.checked_headers(message.get("headers", ())):
            if name.lower() == b"sec-websocket-protocol":
                raise RuntimeError("Pass the subprotocol in 'subprotocol', not as a header.")
            headers.append((name, value))
        self.phase = _ACCEPTED
        self.carrier.send_accept(headers)
        self.log_access(101 if self.method == "GET" else 200)
        self.next_ping = self.state.now + self.ping_interval
        pending = bytes(self.pending)
        self.pending.clear()
        self.carrier.resume_reading()
        if pending:
            self.feed_data(pending)

    async def send_response_body(self, message: dict[str, Any]) -> None:
        if self.phase != _RESPONDING:
            raise RuntimeError("Unexpected ASGI message 'websocket.http.response.body'.")
        if self.closed:
            raise ClientDisconnected("The client went away during the response.")
        body = message.get("body", b"")
        more_body = message.get("more_body", False)
        if self.response_status:
            status, self.response_status = self.response_status, 0
            self.carrier.send_response(status, self.response_headers, body, more_body)
        else:
            self.carrier.send_body(body, more_body)
        if not more_body:
            self.phase = _DONE
            self.set_closed(1006, "")
        elif self.carrier.write_paused:
            await self.drain()

    @staticmethod
    def checked_headers(headers: Any) -> list[tuple[bytes, bytes]]:
        checked = []
        for name, value in headers:
            validate_header(name, value)
            checked.append((name, value))
        return checked

    async def drain(self) -> None:
        """Wait until the carrier takes more (the transport drained, or an HTTP/2 window opened)."""
        while self.carrier.write_paused and not self.closed:
            self.drain_waiter = self.loop.create_future()
            try:
                await self.drain_waiter
            finally:
                self.drain_waiter = None

    # ----- fed by the carrier --------------------------------------------------------------

    def feed_data(self, data: bytes) -> None:
        if self.phase != _ACCEPTED:
            if self.phase == _CONNECTING and not self.closed:
                self.pending += data  # frames sent ahead of our answer wait for the accept
                if len(self.pending) > PENDING_LIMIT:
                    self.carrier.pause_reading()
            return
        if self.eof:
            return
        protocol = self.protocol
        if protocol.state is not OPEN:
            # Our close frame is out: what the peer sends until its own close is read and dropped.
            protocol.receive_data(data)
            protocol.events_received()
            self.flush()
            return
        queued = len(self.queue)
        protocol.receive_data(data)
        events = protocol.events_received()
        if events:
            self.handle_events(events)
        writes = protocol.data_to_send()
        if writes:
            if protocol.state is not OPEN and len(self.queue) > queued:
                self.hold_close(writes)
            else:
                self.write_out(writes)

    def hold_close(self, writes: list[bytes]) -> None:
        """Keep the engine's closing bytes until the app has taken the messages that came before them.

        A read can bring valid messages and then a close frame or a protocol error. The messages are
        delivered; the close (or failure) goes out once the app's next receive() finds none left, it
        closes or ends, or CLOSE_TIMEOUT passes, so its replies to them are sent first (Autobahn 3.2,
        5.15: a message before a bad frame is still answered). Nothing after the close is read.
        """
        self.held = writes
        self.held_deadline = self.state.now + CLOSE_TIMEOUT

    def release_close(self) -> None:
        writes, self.held = self.held, None
        if writes is not None:
            self.write_out(writes)

    def feed_eof(self) -> None:
        if self.eof:
            return
        self.eof = True
        self.release_close()
        if self.phase == _ACCEPTED:
            self.protocol.receive_eof()
            self.flush()
        self.set_closed(1006, "")

    def writing_resumed(self) -> None:
        waiter = self.drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def connection_lost(self) -> None:
        self.eof = True
        self.held = None
        self.close_deadline = 0.0
        self.set_closed(1006, "")
        self.writing_resumed()

    def handle_events(self, events: list[Any]) -> None:
        """The engine's events: messages for the app (see websocket_engine.py), and pongs to match."""
        for event in events:
            if type(event) is dict:
                self.deliver(event)
            elif event.opcode is Opcode.PONG and event.data == self.ping_payload:
                self.ping_payload = None
                self.ping_deadline = 0.0

    def deliver(self, message: dict[str, Any]) -> None:
        queue = self.queue
        queue.append(message)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if len(queue) >= self.max_queue and not self.read_paused:
            self.read_paused = True  # the app lags: stop reading until it catches up
            self.carrier.pause_reading()

    def flush(self) -> None:
        """Write what the engine produced."""
        writes = self.protocol.data_to_send()
        if writes:
            self.write_out(writes)

    def write_out(self, writes: list[bytes]) -> None:
        """Write the engine's output; its end-of-stream marker means: close the carrier now."""
        data = writes[0] if len(writes) == 1 else b"".join(writes)
        if data:
            self.carrier.send_frames(data)
        if not writes[-1]:  # SEND_EOF: the close handshake is done, or the connection failed
            self.close_frames_done()
            self.carrier.end_cleanly()

    def close_frames_done(self) -> None:
        received, sent = self.protocol.close_rcvd, self.protocol.close_sent
        if received is not None:
            self.set_closed(received.code, received.reason)
        elif sent is not None:
            self.set_closed(sent.code, sent.reason)
        else:
            self.set_closed(1006, "")

    def set_closed(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_code = code
        self.close_reason = reason
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self.writing_resumed()

    def start_close(self, code: int, reason: str) -> None:
        """Send our close frame; the peer's answer (or CLOSE_TIMEOUT) ends the connection."""
        if self.held is not None:  # the peer's close or a failure is on its way out: that ends it
            self.release_close()
            return
        if self.closed or self.protocol.state is not OPEN:
            return
        self.protocol.send_close(code, _truncate_reason(reason))
        self.flush()
        self.close_deadline = self.state.now + CLOSE_TIMEOUT

    # ----- timers and shutdown -------------------------------------------------------------

    def check_timeouts(self, now: float) -> None:
        """Keepalive pings and the close-handshake deadline, on the server's clock tick."""
        if self.held is not None and now >= self.held_deadline:
            self.release_close()
        if self.close_deadline and now >= self.close_deadline:
            self.close_deadline = 0.0
            self.carrier.end_abruptly()
            return
        if self.phase != _ACCEPTED or not self.ping_interval or self.protocol.state is not OPEN:
            return
        if self.ping_payload is not None:
            if self.ping_timeout and now >= self.ping_deadline:
                if self.read_paused:  # the pong may be waiting behind messages the app has not taken
                    self.ping_deadline = now + self.ping_timeout
                    return
                error_logger.info("Closing a WebSocket whose peer stopped answering pings.")
                self.protocol.fail(1011, "keepalive ping timeout")
                self.flush()
        elif now >= self.next_ping:
            self.ping_payload = os.urandom(4)
            self.protocol.send_ping(self.ping_payload)
            self.flush()
            self.ping_deadline = now + self.ping_timeout
            self.next_ping = now + self.ping_interval

    def shutdown(self) -> None:
        """Server shutdown: close an open WebSocket with 1012, refuse one still being decided."""
        if self.phase == _CONNECTING:
            self.respond_plain(503, b"Service Unavailable")
        elif self.phase == _ACCEPTED:
            self.start_close(1012, "server shutting down")
