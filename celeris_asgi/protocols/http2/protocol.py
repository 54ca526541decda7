"""The HTTP/2 asyncio protocol: the sans-I/O engine on one side, the shared ASGI cycle on the other.

Bytes from the transport go to ``H2Connection.receive_data``; the engine calls
back ``on_request`` / ``on_data`` / ``on_stream_reset`` / ``on_stream_drained``,
which create and feed ``RequestCycle`` objects (one task per stream).  The
cycle calls ``write_head`` & co. (see cycle.py); their frames accumulate in the
engine and go out in one ``transport.write`` per event-loop pass, however many
streams answered in it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from celeris_asgi.cycle import RequestCycle
from celeris_asgi.headers import validate_header
from celeris_asgi.logging import AccessLog, error_logger
from celeris_asgi.protocols.addresses import client_address, server_address, trusted_proxy
from celeris_asgi.protocols.target import split_origin_form

from . import frames as f
from .connection import H2Connection
from .validation import RequestHead

_ASGI = {"version": "3.0", "spec_version": "2.4"}
_EXTENSIONS: dict[str, Any] = {"http.response.trailers": {}, "http.response.early_hint": {}}
_NO_BODY_STATUS = frozenset({204, 304})
_SHUTDOWN_PING_WAIT = 2.0  # seconds to wait for the PING ACK before the final GOAWAY
_TARGET_CACHE_MAX = 64
_SWITCHING_PROTOCOLS = b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n"
_UPGRADE_BODY_HIGH_WATER = 64 * 1024  # h2c request body bytes buffered for the app before reading pauses


class H2Cycle(RequestCycle):
    """A request cycle that knows its stream."""

    __slots__ = (
        "body_deadline",
        "body_rate_start",
        "drain_deadline",
        "drain_waiter",
        "orphaned",
        "received",
        "stream_id",
        "trailers",
    )

    def __init__(
        self, scope: dict[str, Any], conn: Any, stream_id: int, body_complete: bool, start_time: float
    ) -> None:
        super().__init__(scope, conn, False, body_complete, start_time)  # type: ignore[arg-type]
        self.stream_id = stream_id
        self.drain_waiter: asyncio.Future[None] | None = None
        self.drain_deadline = 0.0
        self.body_deadline = 0.0  # --timeout-request-body: the request body may not stall longer
        # --limit-request-min-rate: the body is due by this + received / rate (see check_body_rate)
        self.body_rate_start = 0.0
        self.received = 0
        self.orphaned = False
        self.trailers: list[tuple[bytes, bytes]] = []


class HTTP2Protocol(asyncio.Protocol):
    """One HTTP/2 connection (prior knowledge, ALPN h2, or upgraded from HTTP/1.1)."""

    def __init__(self, config: Any, state: Any, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.config = config
        self.settings = config.settings
        self.state = state
        self.app = config.loaded_app
        self.loop = loop or asyncio.get_running_loop()
        self.h2_settings = self.settings.h2
        default_headers = state.default_headers
        self.engine = H2Connection(
            self.h2_settings, self, header_check=validate_header, default_headers=lambda: default_headers.pairs
        )
        self.access_log = AccessLog(config.access_log_format, config.access_log)
        self.root_path = config.root_path
        self.limit_concurrency = config.limit_concurrency
        self.limit_body = config.limit_request_body
        self.min_rate = config.limit_request_min_rate
        self.transport: asyncio.Transport | None = None
        self.server: tuple[str, int] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme = "http"
        self.proxy: Any = None  # config.proxy when the peer is a trusted proxy
        self.cycles: dict[int, H2Cycle] = {}
        self.flush_scheduled = False
        self.write_paused = False
        self.write_paused_since = 0.0
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
        self.targets: dict[int, tuple[RequestHead, str, str, bytes, bytes]] = {}
        self.websockets: dict[int, Any] = {}  # RFC 8441 streams carrying a WebSocket (websocket_h2.py)

    # ----- connection events ---------------------------------------------------------------

    def attach(self, transport: asyncio.BaseTransport) -> None:
        """Take the transport, whether the connection began as HTTP/2 or was upgraded from HTTP/1.1."""
        self.transport = transport  # type: ignore[assignment]
        self.state.connections.add(self)
        self.server = server_address(transport)
        self.client = client_address(transport)
        self.proxy = trusted_proxy(self.config, self.client)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        self.attach(transport)
        self.scheme = "https" if transport.get_extra_info("sslcontext") else "http"
        self.connected_at = self.idle_since = self.ticked_at = self.state.now
        self.engine.initiate()
        if self.state.shutting_down:  # accepted just before the server began to stop
            self.shutdown()
        self.flush()

    def upgrade(self, transport: asyncio.Transport, scope: dict[str, Any], settings: bytes, rest: bytes) -> None:
        """Take over a connection upgraded with ``Upgrade: h2c``; ``scope`` is the upgrading request.

        The request's body (``Content-Length`` bytes at the start of ``rest``) feeds
        stream 1 while it arrives; the 101 and everything HTTP/2 go out only once it is
        all in (RFC 7540 3.2: the body comes whole before any HTTP/2 frame, and a client
        may stop uploading when it sees the 101).  Raises ValueError (before writing
        anything) for an unusable HTTP2-Settings value.
        """
        self.engine.initiate_upgrade(settings)
        self.attach(transport)  # (the upgrading request's scope has its proxy headers applied already)
        self.idle_since = self.ticked_at = self.state.now
        self.upgrade_deadline = self.upgrade_rate_start = self.state.now + self.config.timeout_request_body
        self.holding = True
        scope["http_version"] = "2"
        scope["extensions"] = _EXTENSIONS
        length = next((int(v) for k, v in scope["headers"] if k == b"content-length"), 0)
        cycle = H2Cycle(scope, self, 1, not length, self.loop.time() if self.access_log.enabled else 0.0)
        self.upgrade_body_left = length
        if self.limit_body is not None and length > self.limit_body:
            # The body is skipped on its way to the preface; stream 1 gets the 413.
            self.engine.send_status(1, 413)
        else:
            self.upgrade_cycle = cycle
            self.start_cycle(cycle)
        if not length:
            self.switch_protocols()
        if rest:
            self.data_received(rest)

    def switch_protocols(self) -> None:
        """The h2c request is all in: 101 and our SETTINGS.

        Stream 1's response waits for the client's first HTTP/2 bytes: clients read the
        101 with a small buffer and may choke on a large response glued to it.
        """
        self.upgrade_deadline = 0.0
        self.connected_at = self.state.now  # the SETTINGS ACK clock starts now
        if self.transport is not None:
            self.transport.write(_SWITCHING_PROTOCOLS + self.engine.data_to_send())

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        self.transport = None
        for cycle in list(self.cycles.values()):
            cycle.feed_disconnect()
            self.wake(cycle)
        for websocket in list(self.websockets.values()):
            websocket.reset()

    def pause_writing(self) -> None:
        # The peer is not reading: stop reading its frames too, so nothing it sends can make us queue more.
        self.write_paused = True
        self.write_paused_since = self.state.now
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.transport is not None and not self.closing and not self.upgrade_paused:
            self.transport.resume_reading()
        for cycle in list(self.cycles.values()):
            if not self.engine.is_blocked(cycle.stream_id):
                self.wake(cycle)
        for websocket in list(self.websockets.values()):
            websocket.drained()

    def data_received(self, data: bytes) -> None:
        if self.upgrade_body_left:
            data = self.feed_upgrade_body(data)
            if not data:
                return
        if self.holding and not self.upgrade_deadline:
            self.holding = False
        self.engine.receive_data(data)
        self.schedule_flush()

    def feed_upgrade_body(self, data: bytes) -> bytes:
        """Route the h2c request's own body to stream 1; return the bytes after it."""
        take = min(self.upgrade_body_left, len(data))
        self.upgrade_body_left -= take
        self.upgrade_received += take
        self.upgrade_deadline = self.state.now + self.config.timeout_request_body
        cycle = self.upgrade_cycle
        if cycle is not None and not cycle.response_complete and not cycle.disconnected:
            cycle.feed_body(data[:take])
            if not self.upgrade_body_left:
                cycle.feed_eof()
            elif len(cycle.body) > _UPGRADE_BODY_HIGH_WATER and self.transport is not None:
                self.upgrade_paused = True  # HTTP/1.1 bytes: no window to close, so stop reading
                self.transport.pause_reading()
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
        if engine.closed:
            if engine.error_code:
                error_logger.debug("HTTP/2 connection error %d", engine.error_code)
            self.close()
        elif engine.shutdown_complete and not self.cycles:
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

    # ----- engine callbacks (H2Listener) ------------------------------------------------------

    def target(self, head: RequestHead) -> tuple[RequestHead, str, str, bytes, bytes] | None:
        """(head, method, path, raw_path, query_string) for the scope, or None for an unservable target.

        Cached per head object: the engine hands out the very same head for a repeated header block.
        """
        cached = self.targets.get(id(head))
        if cached is not None and cached[0] is head:
            return cached
        if head.path is None or (head.protocol is not None and head.protocol != b"websocket"):
            return None  # plain CONNECT is not served (as over HTTP/1.1); extended CONNECT only for WebSockets
        try:
            path, raw_path, query = split_origin_form(head.path)
        except UnicodeDecodeError:
            return None
        root_path = self.root_path
        if root_path:
            path = root_path + path
            raw_path = root_path.encode("ascii") + raw_path
        target = (head, head.method.decode("ascii"), path, raw_path, query)
        if len(self.targets) >= _TARGET_CACHE_MAX:
            self.targets.clear()
        self.targets[id(head)] = target
        return target

    def on_request(self, stream_id: int, head: RequestHead, end_stream: bool) -> None:
        engine = self.engine
        target = self.target(head)
        if target is None:
            unsupported = head.path is None or head.protocol is not None  # CONNECT: 405; a non-ASCII path: 400
            engine.send_status(stream_id, 405 if unsupported else 400)
            engine.finish_stream(stream_id)
            return
        _, method, path, raw_path, query = target
        scope = {
            "type": "http",
            "asgi": _ASGI,
            "http_version": "2",
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "method": method,
            "root_path": self.root_path,
            "path": path,
            "raw_path": raw_path,
            "query_string": query,
            "headers": list(head.headers),
            "state": self.state.app_state.copy(),
            "extensions": _EXTENSIONS,
        }
        if self.proxy is not None:
            scope = self.proxy.rewrite(scope)
        if head.protocol is not None:  # RFC 8441 extended CONNECT: this stream carries a WebSocket
            from celeris_asgi.protocols.websocket_h2 import open_h2_websocket

            open_h2_websocket(self, stream_id, scope, end_stream)
            return
        limit = self.limit_body
        if limit is not None and head.content_length is not None and head.content_length > limit:
            engine.send_status(stream_id, 413)
            engine.finish_stream(stream_id)
            return
        cycle = H2Cycle(scope, self, stream_id, end_stream, self.loop.time() if self.access_log.enabled else 0.0)
        if not end_stream:
            cycle.body_deadline = cycle.body_rate_start = self.state.now + self.config.timeout_request_body
        self.start_cycle(cycle)

    def start_cycle(self, cycle: H2Cycle) -> None:
        self.cycles[cycle.stream_id] = cycle
        # A request without a body starts at once (3.12+): an app that does not wait answers before
        # the next frame is read, and the answers to a whole read go out in one write.
        cycle.start(eager=cycle.body_complete)

    def on_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        cycle = self.cycles.get(stream_id)
        if cycle is None and stream_id in self.websockets:
            self.websockets[stream_id].feed(data, end_stream)
            return
        if cycle is None or cycle.disconnected or cycle.response_complete:
            if data:
                self.engine.consume(stream_id, len(data))
            return
        if data:
            cycle.received += len(data)
            if self.limit_body is not None and cycle.received > self.limit_body:
                self.refuse_body(cycle, 413)
                return
            cycle.feed_body(data)
        if end_stream:
            cycle.body_deadline = 0.0
            cycle.feed_eof()
        else:
            cycle.body_deadline = self.state.now + self.config.timeout_request_body

    def refuse_body(self, cycle: H2Cycle, status: int) -> None:
        """A request body over --limit-request-body (413) or stalled past --timeout-request-body (408)."""
        sid = cycle.stream_id
        cycle.body_deadline = 0.0
        cycle.respond_error(status, "Request body too large" if status == 413 else "Request body timeout")
        self.engine.finish_stream(sid)
        self.on_stream_reset(sid, f.CANCEL)
        self.schedule_flush()

    def on_stream_reset(self, stream_id: int, error_code: int) -> None:
        cycle = self.cycles.get(stream_id)
        if cycle is None:
            if stream_id in self.websockets:
                self.websockets[stream_id].reset()
            return
        if cycle.body:
            self.engine.consume(0, len(cycle.body))
            cycle.body = b""
        if not cycle.orphaned:
            cycle.orphaned = True
            self.engine.orphaned_streams += 1
        cycle.feed_disconnect()
        self.wake(cycle)

    def on_stream_drained(self, stream_id: int) -> None:
        cycle = self.cycles.get(stream_id)
        if cycle is not None and not self.write_paused:
            self.wake(cycle)
        elif cycle is None and stream_id in self.websockets:
            self.websockets[stream_id].drained()

    @staticmethod
    def wake(cycle: H2Cycle) -> None:
        waiter = cycle.drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ----- the cycle's protocol side (see cycle.py) -------------------------------------------

    def write_head(
        self,
        cycle: RequestCycle,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        more_body: bool,
    ) -> bool:
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
            if not engine.send_response(sid, status, headers, defaults, body, end):
                self.schedule_flush()
                return True
        self.schedule_flush()
        return self.write_paused

    def write_body(self, cycle: RequestCycle, body: bytes, more_body: bool) -> bool:
        assert isinstance(cycle, H2Cycle)
        end = not more_body and not cycle.trailers_expected
        if not body and not end:
            return self.write_paused
        cycle.response_bytes += len(body)
        self.schedule_flush()
        return not self.engine.send_data(cycle.stream_id, body, end) or self.write_paused

    def write_trailers(self, cycle: RequestCycle, headers: list[tuple[bytes, bytes]]) -> bool:
        assert isinstance(cycle, H2Cycle)
        cycle.trailers.extend(headers)
        if cycle.response_complete:
            self.engine.send_trailers(cycle.stream_id, cycle.trailers)
            self.schedule_flush()
        return self.write_paused

    def write_informational(self, cycle: RequestCycle, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        assert isinstance(cycle, H2Cycle)
        if 100 < status < 200:  # 100 Continue is implicit in HTTP/2 flow control
            self.engine.send_headers(cycle.stream_id, status, headers)
            self.schedule_flush()

    async def drain(self, cycle: RequestCycle) -> None:
        """Wait until the stream's queued data went out and the transport takes more."""
        assert isinstance(cycle, H2Cycle)
        engine = self.engine
        while (
            (self.write_paused or engine.is_blocked(cycle.stream_id))
            and not cycle.disconnected
            and self.transport is not None
        ):
            cycle.drain_waiter = self.loop.create_future()
            cycle.drain_deadline = self.state.now + self.h2_settings.send_timeout
            try:
                await cycle.drain_waiter
            finally:
                cycle.drain_waiter = None
                cycle.drain_deadline = 0.0

    def body_consumed(self, cycle: RequestCycle, nbytes: int) -> None:
        assert isinstance(cycle, H2Cycle)
        if cycle is self.upgrade_cycle:
            if self.upgrade_paused and len(cycle.body) <= _UPGRADE_BODY_HIGH_WATER:
                self.upgrade_paused = False
                if self.transport is not None and not self.write_paused:
                    self.transport.resume_reading()
        elif nbytes:
            self.engine.consume(cycle.stream_id, nbytes)
            if self.engine.has_output:
                self.schedule_flush()

    def abort_response(self, cycle: RequestCycle) -> None:
        assert isinstance(cycle, H2Cycle)
        self.engine.reset_stream(cycle.stream_id, f.INTERNAL_ERROR)
        self.schedule_flush()

    def cycle_done(self, cycle: RequestCycle) -> None:
        assert isinstance(cycle, H2Cycle)
        sid = cycle.stream_id
        if self.cycles.pop(sid, None) is None:
            return
        if cycle is self.upgrade_cycle:  # the rest of its body, if any, is read and dropped
            self.upgrade_cycle = None
            if self.upgrade_paused and self.transport is not None:
                self.upgrade_paused = False
                self.transport.resume_reading()
        engine = self.engine
        if cycle.orphaned:
            engine.orphaned_streams -= 1
        if cycle.body and cycle is not self.upgrade_cycle:
            engine.consume(0, len(cycle.body))
        cycle.body = b""
        engine.finish_stream(sid, linger=True)  # a request still arriving is checked to its end
        if not self.cycles:
            self.idle_since = self.state.now
        if self.access_log.enabled:
            cycle.log_access()
        self.schedule_flush()

    # ----- timeouts and shutdown ----------------------------------------------------------------

    def check_timeouts(self, now: float) -> None:
        """Server tick: SETTINGS ACK, send and keep-alive timeouts, the second shutdown step."""
        transport = self.transport
        if transport is None:
            return
        engine = self.engine
        if self.upgrade_deadline:
            if self.upgrade_paused:  # we stopped reading it: the client could not send
                self.upgrade_deadline = now + self.config.timeout_request_body
                self.upgrade_rate_start += now - self.ticked_at
            elif self.body_overdue(self.upgrade_deadline, self.upgrade_rate_start, self.upgrade_received, now):
                transport.close()  # the h2c request body stalled or dribbles
            self.ticked_at = now
            return
        engine.expire_lingering(self.config.timeout_request_body)  # requests left unfinished after their response
        if not engine.settings_acked and now - self.connected_at > self.h2_settings.settings_timeout:
            engine.close(f.SETTINGS_TIMEOUT, "SETTINGS not acknowledged")
        elif self.write_paused and now - self.write_paused_since > self.config.timeout_send:
            error_logger.info("Closing an HTTP/2 connection whose client stopped reading (--timeout-send).")
            transport.abort()
            return
        elif self.shutdown_started and now - self.shutdown_started > _SHUTDOWN_PING_WAIT:
            engine.finish_shutdown()
        elif not self.cycles and not engine.streams and now - self.idle_since > self.config.timeout_keep_alive:
            engine.close(f.NO_ERROR, "idle")
        for cycle in list(self.cycles.values()):
            if cycle.drain_deadline and now > cycle.drain_deadline:
                # The peer never opened its window: give the stream up (it keeps no memory pinned).
                engine.reset_stream(cycle.stream_id, f.CANCEL)
                self.on_stream_reset(cycle.stream_id, f.CANCEL)
            elif cycle.body_deadline and not cycle.disconnected:
                self.check_body_deadlines(cycle, now)
        self.ticked_at = now
        for websocket in list(self.websockets.values()):
            websocket.check_timeouts(now)  # pings, close handshake, a window that never opens
        self.flush()

    def check_body_deadlines(self, cycle: H2Cycle, now: float) -> None:
        """408 for a stream's request body that stalled or dribbles (see ``body_overdue``).

        Only that stream is refused; the others go on.  Time while we hold the window
        closed (the app is not reading) stops both clocks: the client could not send.
        """
        if self.engine.receive_window_closed(cycle.stream_id):
            cycle.body_deadline = now + self.config.timeout_request_body
            cycle.body_rate_start += now - self.ticked_at
        elif self.body_overdue(cycle.body_deadline, cycle.body_rate_start, cycle.received, now):
            self.refuse_body(cycle, 408)

    def body_overdue(self, stall_deadline: float, rate_start: float, received: int, now: float) -> bool:
        """Past ``stall_deadline`` (--timeout-request-body since the last bytes), or too slow on average.

        --limit-request-min-rate: the body is due by ``rate_start`` (its start +
        --timeout-request-body) + one second per ``min_rate`` bytes received.
        """
        return now > stall_deadline or (self.min_rate > 0 and now > rate_start + received / self.min_rate)

    def shutdown(self) -> None:
        """Graceful shutdown: GOAWAY twice (announce, then name the last stream), close when idle."""
        if self.transport is None:
            return
        self.shutdown_started = self.state.now
        self.engine.start_shutdown()
        for websocket in list(self.websockets.values()):
            websocket.shutdown()  # close frame 1012 on each open WebSocket stream
        if not self.cycles and not self.engine.streams:
            self.engine.finish_shutdown()
        self.flush()
