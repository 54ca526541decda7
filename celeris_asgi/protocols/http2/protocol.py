"""The HTTP/2 asyncio protocol: the sans-I/O engine on one side, a table of stream handlers on the other.

Bytes from the transport go to ``H2Connection.receive_data``; the engine calls back
``on_request`` / ``on_data`` / ``on_stream_reset`` / ``on_stream_drained``. Each stream
is served by one ``StreamHandler`` in one table: a request cycle (``H2Cycle``, see
handlers.py) or an RFC 8441 WebSocket (websocket_h2.py); the connection's events reach
them through that one interface. A cycle calls ``write_head`` & co.; their frames
accumulate in the engine and go out in one ``transport.write`` per event-loop pass,
however many streams answered in it.

With metrics on, the bytes are counted here, where they meet the transport (streams, GOAWAYs and
resets in the engine: see StreamTable and Sender); at --log-level trace, a ``FrameTrace`` (trace.py)
logs them as frames. Both are None otherwise: one check each per read and per write.
"""

from __future__ import annotations

import asyncio
from time import perf_counter
from typing import TYPE_CHECKING, cast

from celeris_asgi.cycle import COMPLETE, CycleOwner, Endpoint, RequestCycle, build_scope
from celeris_asgi.headers import validate_header
from celeris_asgi.logging import TRACE, error_logger
from celeris_asgi.protocols.addresses import Addresses, client_address, describe_peer, log_closed, server_address
from celeris_asgi.protocols.flow import FlowControl
from celeris_asgi.protocols.target import split_origin_form
from celeris_asgi.tls_info import tls_extension

from . import frames as f
from .connection import H2Connection
from .handlers import TOO_LARGE, H2Cycle, StreamHandler, body_overdue
from .trace import FrameTrace
from .validation import RequestHead

if TYPE_CHECKING:
    from celeris_asgi.asgi_types import Headers, HTTPScope
    from celeris_asgi.settings import ServerSettings
    from celeris_asgi.state import ServerState

_NO_BODY_STATUS = frozenset({204, 304})
_SHUTDOWN_PING_WAIT = 2.0  # seconds to wait for the PING ACK before the final GOAWAY
_SWITCHING_PROTOCOLS = b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n"
_UPGRADE_BODY_HIGH_WATER = 64 * 1024  # h2c request body bytes buffered for the app before reading pauses

# (method, path, raw_path, query_string): a request target split for the scope.
Target = tuple[str, str, bytes, bytes]


class HTTP2Protocol(CycleOwner):
    """One HTTP/2 connection (prior knowledge, ALPN h2, or upgraded from HTTP/1.1).

    Not an ``asyncio.Protocol`` subclass, so that it compiles to a C class: event loops only
    duck-type protocols.
    """

    def __init__(
        self,
        settings: ServerSettings,
        state: ServerState,
        loop: asyncio.AbstractEventLoop | None = None,
        addresses: Addresses | None = None,
    ) -> None:
        super().__init__(settings, state, loop or asyncio.get_running_loop())
        self.addresses = addresses  # (server, client) from a PROXY header, else the socket's own
        self.access_log = settings.access_log
        self.tracer: FrameTrace | None = None  # at --log-level trace (see attach)
        default_headers = state.default_headers
        self.engine = H2Connection(
            settings.h2,
            self,
            header_check=validate_header,
            default_headers=lambda: default_headers.pairs,
            metrics=settings.metrics,
        )
        self.transport: asyncio.Transport | None = None
        self.endpoint = Endpoint(None, None, "http", None)
        self.streams: dict[int, StreamHandler] = {}  # request cycles and WebSocket streams alike
        self.flush_scheduled = False
        self.connected_at = 0.0
        self.idle_since = 0.0
        self.ticked_at = 0.0  # the last check_timeouts
        self.shutdown_started = 0.0
        self.closing = False
        # An h2c upgrade: the HTTP/1.1 request body still arriving ahead of the HTTP/2 preface.
        self.upgrade_body_left = 0
        self.upgrade_cycle: H2Cycle | None = None
        self.upgrade_paused = False
        self.upgrade_deadline = 0.0  # while the h2c request body is still arriving
        self.upgrade_rate_start = 0.0  # as H2Cycle.body_rate_start, for the h2c request body
        self.upgrade_received = 0
        self.holding = False  # h2c: no HTTP/2 output until the 101 is out and the client answered it

    @property
    def write_paused(self) -> bool:
        """True while the transport is above its high-water mark (StreamCarrierHost)."""
        return self.flow.write_paused

    # ----- connection events ---------------------------------------------------------------

    def attach(self, transport: asyncio.Transport, scheme: str) -> None:
        """Take the transport, whether the connection began as HTTP/2 or was upgraded from HTTP/1.1."""
        self.transport = transport
        self.flow = FlowControl(transport)
        self.state.connections.add(self)
        server, client = self.addresses or (server_address(transport), client_address(transport))
        self.endpoint = Endpoint(server, client, scheme, self.settings.proxy, tls_extension(transport))
        if error_logger.isEnabledFor(TRACE):
            self.tracer = FrameTrace(describe_peer(transport))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.attach(cast(asyncio.Transport, transport), "https" if transport.get_extra_info("sslcontext") else "http")
        self.connected_at = self.idle_since = self.ticked_at = self.state.now
        self.engine.initiate()
        if self.state.shutting_down:  # accepted just before the server began to stop
            self.shutdown()
        self.flush()

    def upgrade(self, transport: asyncio.Transport, scope: HTTPScope, settings: bytes, rest: bytes) -> None:
        """Take over a connection upgraded with ``Upgrade: h2c``; ``scope`` is the upgrading request.

        The request's body (``Content-Length`` bytes at the start of ``rest``) feeds
        stream 1 while it arrives; the 101 and everything HTTP/2 go out only once it is
        all in (RFC 7540 3.2: the body comes whole before any HTTP/2 frame, and a client
        may stop uploading when it sees the 101).  Raises ValueError (before writing
        anything) for an unusable HTTP2-Settings value.
        """
        self.engine.initiate_upgrade(settings)
        self.attach(transport, "http")  # h2c is cleartext (the scope has its proxy headers applied already)
        if self.tracer is not None:
            self.tracer.upgraded(scope["method"], scope["path"], f.decode_http2_settings(settings))
        now = self.state.now
        self.idle_since = self.ticked_at = now
        self.upgrade_deadline = self.upgrade_rate_start = now + self.settings.timeout_request_body
        self.holding = True
        scope["http_version"] = "2"
        scope["extensions"] = self.endpoint.extensions
        length = next((int(v) for k, v in scope["headers"] if k == b"content-length"), 0)
        cycle = H2Cycle(scope, self, 1, not length, perf_counter() if self.access_log.enabled else 0.0)
        self.upgrade_body_left = length
        limit = self.settings.limit_request_body
        if limit is not None and length > limit:
            self.refuse_too_large(cycle)  # the body is skipped on its way to the preface
        else:
            self.upgrade_cycle = cycle
            self.start_cycle(cycle)
        if not length:
            self.switch_protocols()
        if rest:
            self.receive(rest)  # counted by HTTP/1.1, which read them

    def switch_protocols(self) -> None:
        """The h2c request is all in: 101 and our SETTINGS.

        Stream 1's response waits for the client's first HTTP/2 bytes: clients read the
        101 with a small buffer and may choke on a large response glued to it.
        """
        self.upgrade_deadline = 0.0
        self.connected_at = self.state.now  # the SETTINGS ACK clock starts now
        if self.transport is not None:
            out = self.engine.data_to_send()
            self.transport.write(_SWITCHING_PROTOCOLS + out)
            if self.metrics is not None:
                self.metrics.bytes_sent(len(_SWITCHING_PROTOCOLS) + len(out))
            if self.tracer is not None:
                self.tracer.event("h2c upgrade: 101 Switching Protocols sent")
                self.tracer.sent.feed(out)

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        log_closed(self.transport, "HTTP/2")
        self.transport = None
        self.engine.table.close_all()  # first: the handlers' ends below have no stream left to reset
        if self.tracer is not None:
            self.tracer.event("connection lost (%s)", exc or "closed")
        for handler in list(self.streams.values()):
            handler.reset()

    def pause_writing(self) -> None:
        # The peer is not reading: stop reading its frames too, so nothing it sends can make us queue more.
        self.flow.pause_writing(self.state.now, self.settings.timeout_send)
        self.flow.pause_reading()
        if self.tracer is not None:
            self.tracer.event("writing paused: the client reads slower than the server writes; reading paused too")

    def resume_writing(self) -> None:
        if self.tracer is not None:
            self.tracer.event("writing resumed")
        flow = self.flow
        flow.resume_writing()
        if not self.closing and not self.upgrade_paused:
            flow.resume_reading()
        for handler in list(self.streams.values()):
            handler.drained()

    def data_received(self, data: bytes) -> None:
        if self.metrics is not None:
            self.metrics.bytes_received(len(data))
        self.receive(data)

    def receive(self, data: bytes) -> None:
        """Bytes read (and counted): the rest of an h2c request's body first, then frames."""
        if self.upgrade_body_left:
            data = self.feed_upgrade_body(data)
            if not data:
                return
        if self.holding and not self.upgrade_deadline:
            self.holding = False
        if self.tracer is not None:
            self.tracer.received.feed(data)
        self.engine.receive_data(data)
        self.schedule_flush()

    def feed_upgrade_body(self, data: bytes) -> bytes:
        """Route the h2c request's own body to stream 1; return the bytes after it."""
        take = min(self.upgrade_body_left, len(data))
        self.upgrade_body_left -= take
        self.upgrade_received += take
        self.upgrade_deadline = self.state.now + self.settings.timeout_request_body
        cycle = self.upgrade_cycle
        if cycle is not None and cycle.phase != COMPLETE and not cycle.disconnected:
            cycle.feed_body(data[:take])
            if not self.upgrade_body_left:
                cycle.feed_eof()
            elif len(cycle.body) > _UPGRADE_BODY_HIGH_WATER:
                self.upgrade_paused = True  # HTTP/1.1 bytes: no window to close, so stop reading
                self.flow.pause_reading()
        if not self.upgrade_body_left:
            self.switch_protocols()
        return data[take:]

    def flush(self) -> None:
        """Write everything the engine queued, then act on its state (closed, shut down)."""
        self.flush_scheduled = False
        transport = self.transport
        if transport is None:
            return
        engine = self.engine
        if not self.holding:
            out = engine.data_to_send()
            if out:
                transport.write(out)
                if self.metrics is not None:
                    self.metrics.bytes_sent(len(out))
                if self.tracer is not None:
                    self.tracer.sent.feed(out)
        if engine.closed:
            if engine.error_code:
                error_logger.debug("HTTP/2 connection error %d", engine.error_code)
            self.close()
        elif engine.shutdown_complete and not self.streams:
            self.close()

    def schedule_flush(self) -> None:
        """Flush at the end of the loop pass, with every other connection's output (one callback for all).

        Frames from every stream that answered in the pass leave in one write; on 3.13, where
        bodyless requests start eagerly inside data_received, writing at the end of each read
        instead cost more CPU per request (as for HTTP/1.1, see HTTP1Protocol.write).
        """
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.state.write_soon(self, self.loop)

    def write_deferred(self) -> None:
        """ServerState.write_soon's callback."""
        if self.flush_scheduled:
            self.flush()

    def close(self) -> None:
        if self.transport is not None and not self.closing:
            self.closing = True
            self.transport.close()

    def stream_closed(self, stream_id: int) -> None:
        """A WebSocket stream is over: it leaves the table (StreamCarrierHost)."""
        self.streams.pop(stream_id, None)
        if not self.streams:
            self.idle_since = self.state.now
        self.schedule_flush()

    # ----- engine callbacks (H2Listener) ------------------------------------------------------

    def target(self, head: RequestHead) -> Target | None:
        """(method, path, raw_path, query_string) for the scope, or None for an unservable target.

        Kept on the head: the engine hands out the very same head for a repeated header block.
        """
        target: Target | None = head.target
        if target is not None:
            return target
        if head.path is None or (head.protocol is not None and head.protocol != b"websocket"):
            return None  # plain CONNECT is not served (as over HTTP/1.1); extended CONNECT only for WebSockets
        try:
            path, raw_path, query = split_origin_form(head.path)
        except UnicodeDecodeError:
            return None
        target = head.target = (head.method.decode("ascii"), path, raw_path, query)
        return target

    def on_request(self, stream_id: int, head: RequestHead, end_stream: bool) -> None:
        target = self.target(head)
        if target is None:  # no scope to build, so no cycle: the engine answers
            unsupported = head.path is None or head.protocol is not None  # CONNECT: 405; a non-ASCII path: 400
            self.engine.send_status(stream_id, 405 if unsupported else 400)
            self.engine.finish_stream(stream_id)
            return
        method, path, raw_path, query = target
        settings = self.settings
        scope = build_scope(settings, self.state, self.endpoint, "2", method, path, raw_path, query, list(head.headers))
        if head.protocol is not None:  # RFC 8441 extended CONNECT: this stream carries a WebSocket
            from celeris_asgi.protocols.websocket_h2 import H2WebSocketStream

            websocket = H2WebSocketStream(self, self.engine, stream_id, scope)
            self.streams[stream_id] = websocket
            websocket.start(end_stream)
            return
        cycle = H2Cycle(scope, self, stream_id, end_stream, perf_counter() if self.access_log.enabled else 0.0)
        limit = settings.limit_request_body
        if limit is not None and head.content_length is not None and head.content_length > limit:
            self.refuse_too_large(cycle)
            return
        if not end_stream:
            cycle.body_deadline = cycle.body_rate_start = self.state.now + settings.timeout_request_body
        self.start_cycle(cycle)

    def start_cycle(self, cycle: H2Cycle) -> None:
        self.streams[cycle.stream_id] = cycle
        # A request without a body starts at once (3.12+): an app that does not wait answers before
        # the next frame is read, and the answers to a whole read go out in one write.
        cycle.start(eager=cycle.body_complete)

    def refuse_too_large(self, cycle: H2Cycle) -> None:
        """413 for a request whose declared length is over --limit-request-body; the app never runs."""
        cycle.respond_error(413, TOO_LARGE)
        self.engine.finish_stream(cycle.stream_id)
        if self.access_log.enabled:
            cycle.log_access()
        self.schedule_flush()

    def on_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        handler = self.streams.get(stream_id)
        if handler is not None:
            handler.feed(data, end_stream)
        elif data:
            self.engine.consume(stream_id, len(data))

    def on_stream_reset(self, stream_id: int, error_code: int) -> None:
        handler = self.streams.get(stream_id)
        if handler is not None:
            handler.reset()

    def on_stream_drained(self, stream_id: int) -> None:
        if self.tracer is not None:
            self.tracer.event("stream %d: flow control let its queued data out", stream_id)
        handler = self.streams.get(stream_id)
        if handler is not None:
            handler.drained()

    # ----- the cycle's owner side (CycleOwner, see cycle.py) ----------------------------------
    # Each takes the RequestCycle of the base's signature; `cycle` is the same object as an H2Cycle
    # (compiled: one C type test, then C access to the stream's fields).

    def write_head(self, request: RequestCycle, status: int, headers: Headers, body: bytes, more_body: bool) -> bool:
        cycle = request
        assert isinstance(cycle, H2Cycle)
        if not 200 <= status <= 599:
            raise RuntimeError(f"Invalid HTTP status code {status!r} in response.")
        engine = self.engine
        sid = cycle.stream_id
        cycle.response_headers = headers
        defaults = self.state.default_headers.pairs
        if cycle.scope["method"] == "HEAD" or status in _NO_BODY_STATUS:
            engine.send_headers(sid, status, headers, not cycle.trailers_expected, defaults)
        elif not body:
            engine.send_headers(sid, status, headers, not more_body and not cycle.trailers_expected, defaults)
        else:
            cycle.response_bytes += len(body)
            end = not more_body and not cycle.trailers_expected
            if not engine.sender.send_response(sid, status, headers, defaults, body, end):
                if self.tracer is not None:
                    self.tracer.stalled(engine, sid)
                self.schedule_flush()
                return True
        self.schedule_flush()
        return self.flow.write_paused

    def write_body(self, request: RequestCycle, body: bytes, more_body: bool) -> bool:
        cycle = request
        assert isinstance(cycle, H2Cycle)
        end = not more_body and not cycle.trailers_expected
        if not body and not end:
            return self.flow.write_paused
        cycle.response_bytes += len(body)
        self.schedule_flush()
        if self.engine.send_data(cycle.stream_id, body, end):
            return self.flow.write_paused
        if self.tracer is not None:
            self.tracer.stalled(self.engine, cycle.stream_id)
        return True

    def write_trailers(self, request: RequestCycle, headers: Headers) -> bool:
        cycle = request
        assert isinstance(cycle, H2Cycle)
        if cycle.trailers is None:
            cycle.trailers = list(headers)
        else:
            cycle.trailers.extend(headers)
        if cycle.phase == COMPLETE:
            self.engine.send_trailers(cycle.stream_id, cycle.trailers)
            self.schedule_flush()
        return self.flow.write_paused

    def write_informational(self, request: RequestCycle, status: int, headers: Headers) -> None:
        cycle = request
        assert isinstance(cycle, H2Cycle)
        if 100 < status < 200:  # 100 Continue is implicit in HTTP/2 flow control
            self.engine.send_headers(cycle.stream_id, status, headers)
            self.schedule_flush()

    async def drain(self, cycle: RequestCycle) -> None:
        """Wait until the stream's queued data went out and the transport takes more."""
        assert isinstance(cycle, H2Cycle)
        engine = self.engine
        flow = self.flow
        while (
            (flow.write_paused or engine.is_blocked(cycle.stream_id))
            and not cycle.disconnected
            and self.transport is not None
        ):
            cycle.drain_waiter = self.loop.create_future()
            cycle.drain_deadline = self.state.now + self.settings.h2.send_timeout
            try:
                await cycle.drain_waiter
            finally:
                cycle.drain_waiter = None
                cycle.drain_deadline = 0.0

    def body_consumed(self, request: RequestCycle, nbytes: int) -> None:
        cycle = request
        assert isinstance(cycle, H2Cycle)
        if cycle is self.upgrade_cycle:
            if self.upgrade_paused and len(cycle.body) <= _UPGRADE_BODY_HIGH_WATER:
                self.upgrade_paused = False
                if self.transport is not None and not self.flow.write_paused:
                    self.flow.resume_reading()
        elif nbytes:
            self.engine.consume(cycle.stream_id, nbytes)
            if self.engine.has_output:
                self.schedule_flush()

    def abort_response(self, request: RequestCycle) -> None:
        cycle = request
        assert isinstance(cycle, H2Cycle)
        self.engine.reset_stream(cycle.stream_id, f.INTERNAL_ERROR)
        self.schedule_flush()

    def cycle_done(self, request: RequestCycle) -> None:
        cycle = request
        assert isinstance(cycle, H2Cycle)
        sid = cycle.stream_id
        streams = self.streams
        if streams.pop(sid, None) is None:
            return
        if cycle is self.upgrade_cycle:  # the rest of its body, if any, is read and dropped
            self.upgrade_cycle = None
            if self.upgrade_paused and self.transport is not None:
                self.upgrade_paused = False
                self.flow.resume_reading()
        engine = self.engine
        if cycle.orphaned:
            engine.orphaned_streams -= 1
        if cycle.body:
            engine.consume(0, len(cycle.body))
            cycle.body = b""
        engine.finish_stream(sid, linger=True)  # a request still arriving is checked to its end
        if not streams:
            self.idle_since = self.state.now
        if self.access_log.enabled:
            cycle.log_access()
        self.schedule_flush()

    # ----- timeouts and shutdown ----------------------------------------------------------------

    def check_timeouts(self, now: float) -> None:
        """Server tick: SETTINGS ACK, send and keep-alive timeouts, the second shutdown step, each stream's own."""
        transport = self.transport
        if transport is None:
            return
        engine = self.engine
        settings = self.settings
        if self.upgrade_deadline:
            if self.upgrade_paused:  # we stopped reading it: the client could not send
                self.upgrade_deadline = now + settings.timeout_request_body
                self.upgrade_rate_start += now - self.ticked_at
            elif body_overdue(settings, self.upgrade_deadline, self.upgrade_rate_start, self.upgrade_received, now):
                transport.close()  # the h2c request body stalled or dribbles
            self.ticked_at = now
            return
        engine.expire_lingering(settings.timeout_request_body)  # requests left unfinished after their response
        if not engine.settings_acked and now - self.connected_at > settings.h2.settings_timeout:
            engine.close(f.SETTINGS_TIMEOUT, "SETTINGS not acknowledged")
        elif self.flow.send_timed_out(now):
            error_logger.info("Closing an HTTP/2 connection whose client stopped reading (--timeout-send).")
            transport.abort()
            return
        elif self.shutdown_started and now - self.shutdown_started > _SHUTDOWN_PING_WAIT:
            engine.finish_shutdown()
        elif not self.streams and not engine.streams and now - self.idle_since > settings.timeout_keep_alive:
            engine.close(f.NO_ERROR, "idle")
        for handler in list(self.streams.values()):
            handler.check_timeouts(now)  # body and send deadlines; WebSocket pings and close handshakes
        self.ticked_at = now
        self.flush()

    def shutdown(self) -> None:
        """Graceful shutdown: GOAWAY twice (announce, then name the last stream), close when idle."""
        if self.transport is None:
            return
        self.shutdown_started = self.state.now
        self.engine.start_shutdown()
        for handler in list(self.streams.values()):
            handler.shutdown()  # close frame 1012 on each open WebSocket stream
        if not self.streams and not self.engine.streams:
            self.engine.finish_shutdown()
        self.flush()
