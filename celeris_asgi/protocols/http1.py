"""HTTP/1.1 on httptools: keep-alive, pipelining in strict order, strict request validation.

One protocol object per connection: transport events, parser callbacks, the pipeline, timeouts.
The pure rules are in http1_request.py, response framing in http1_response.py, and the scope, app
call, ASGI rules, server-made answers and access log in the RequestCycle (cycle.py). Pipelined
requests wait in `pipeline` and run in order; `phase` says where the connection is (http1_phase.py);
the server's clock tick checks the timeouts (the hot path sets a float instead of arming a timer).
"""

from __future__ import annotations

import asyncio
from collections import deque
from time import perf_counter
from typing import TYPE_CHECKING, cast

import httptools

from celeris_asgi.cycle import (
    COMPLETE,
    CycleOwner,
    Endpoint,
    RequestCycle,
    build_scope,
    error_response,
)
from celeris_asgi.logging import TRACE, error_logger
from celeris_asgi.protocols.addresses import Addresses, client_address, describe_peer, log_closed, server_address
from celeris_asgi.protocols.flow import FlowControl
from celeris_asgi.protocols.http1_phase import BODY, CLOSING, HEAD, IDLE, RESPONDING
from celeris_asgi.protocols.http1_request import (
    GOOD_HOSTS,
    METHODS,
    OWS,
    RequestError,
    check_declared_length,
    check_head,
    check_host,
    field_value,
    has_no_body,
    parser_error_answer,
    request_method,
    request_target,
)
from celeris_asgi.protocols.http1_response import ResponseWriter, informational
from celeris_asgi.protocols.http1_sendfile import send_file
from celeris_asgi.protocols.http1_timeouts import check_timeouts
from celeris_asgi.protocols.http1_upgrade import at_upgrade_point, upgrade_offer
from celeris_asgi.tls_info import tls_extension

if TYPE_CHECKING:
    from celeris_asgi.asgi_types import Headers, HTTPScope
    from celeris_asgi.settings import ServerSettings
    from celeris_asgi.state import ServerState

HIGH_WATER = 64 * 1024  # request body bytes buffered for the app before reading pauses
_BATCH_BYTES = 8192  # a write larger than this is not batched
_BATCH_WRITES = 32  # a batch this long is written at once
SHUTDOWN_GRACE = 1.0  # seconds a connection accepted just before shutdown may still send its request
# The Host value last found good: requests mostly repeat it, and comparing it costs less than the
# hash a GOOD_HOSTS lookup takes of each new value.
LAST_HOST = b""


class HTTP1Protocol(CycleOwner):
    """One HTTP/1.x connection (no asyncio.Protocol base: compiled it is a Cython type; asyncio duck-types)."""

    __slots__ = (
        "access_logging",
        "addresses",
        "body_bytes",
        "body_deadline",
        "bytes_in",
        "bytes_out",
        "content_length",
        "cycle",
        "deadline",
        "endpoint",
        "expect_continue",
        "flow",
        "forwarded",
        "head_bytes",
        "header_count_limit",
        "header_size_limit",
        "headers",
        "host_count",
        "keep_alive_asked",
        "line_limit",
        "out",
        "parser",
        "parsing",
        "paused_at",
        "pending_refusal",
        "phase",
        "pipeline",
        "requests_started",
        "seconds_per_byte",
        "switch",
        "timeout_keep_alive",
        "timeout_request_body",
        "timeout_request_header",
        "timing",
        "trace",
        "transfer_encoding",
        "transport",
        "trusts_proxy",
        "upgrade",
        "url",
        "writer",
    )

    def __init__(
        self,
        settings: ServerSettings,
        state: ServerState,
        loop: asyncio.AbstractEventLoop | None = None,
        addresses: Addresses | None = None,
    ) -> None:
        super().__init__(settings, state, loop or asyncio.get_running_loop())
        self.addresses = addresses  # (server, client) from a PROXY header, else the socket's own
        self.access_logging = settings.access_log.enabled
        self.timing = self.access_logging or self.metrics is not None  # the cycle's start_time is needed
        self.bytes_in = self.bytes_out = 0  # with metrics on: counted since the last Metrics.take_traffic
        self.trace = error_logger.isEnabledFor(TRACE)  # --log-level trace: protocol events (see trace_event)
        # The head's limits, read per header: C fields here, where the settings' are Python attributes.
        self.line_limit = settings.limit_request_line
        self.header_count_limit = settings.limit_request_headers
        self.header_size_limit = settings.limit_request_header_size
        # The timeouts, read per request: C fields too (one settings read each was ~0.3k instructions).
        self.timeout_request_header = settings.timeout_request_header
        self.timeout_request_body = settings.timeout_request_body
        self.timeout_keep_alive = settings.timeout_keep_alive
        # --limit-request-min-rate: a head's or body's deadline grows by this many seconds per byte received
        rate = settings.limit_request_min_rate
        self.seconds_per_byte = 1.0 / rate if rate else 0.0
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.writer = ResponseWriter(state.default_headers)
        self.phase = IDLE
        self.deadline = 0.0
        self.body_deadline = 0.0  # the body's deadline before its min-rate allowance; moved on by paused time
        self.paused_at = 0.0
        self.out: list[bytes] | None = None  # answers batched until the end of the loop pass (see write)
        # the request being read
        self.url = b""
        self.headers: Headers = []
        self.head_bytes = 0
        self.host_count = 0
        self.keep_alive_asked = False  # a Connection (or Proxy-Connection) field may hold "keep-alive"
        self.trusts_proxy = False  # the peer is a trusted proxy (see connection_made)
        self.forwarded = False  # with trusts_proxy: a header name holds "forwarded" (build_scope's proxy_headers)
        self.expect_continue = False
        self.transfer_encoding: bytes | None = None
        self.content_length: bytes | None = None
        self.upgrade: bytes | None = None
        self.body_bytes = 0
        self.parsing: RequestCycle | None = None  # the request whose body is being read
        # the requests being answered
        self.cycle: RequestCycle | None = None  # the response in progress
        self.pipeline: deque[tuple[RequestCycle, bool]] = deque()  # (request, keep-alive) read ahead
        self.requests_started = 0
        self.pending_refusal: tuple[int, str] | None = None  # a refusal that waits for the response in progress
        self.switch: tuple[str, HTTPScope, bytes] | None = None  # an accepted Upgrade: (kind, scope, h2c settings)

    endpoint: Endpoint
    flow: FlowControl

    # ----- connection events ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        self.state.connections.add(self)
        self.flow = FlowControl(transport)
        scheme = "https" if transport.get_extra_info("sslcontext") else "http"
        server, client = self.addresses or (server_address(transport), client_address(transport))
        self.endpoint = Endpoint(server, client, scheme, self.settings.proxy, tls_extension(transport))
        self.trusts_proxy = self.endpoint.proxy is not None
        self.deadline = self.state.now + self.timeout_request_header  # the first request's head

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        if self.metrics is not None:
            self.metrics.take_traffic(self)
        log_closed(self.transport, "HTTP/1.1")
        self.phase = CLOSING
        cycle = self.cycle
        if cycle is not None:
            if cycle.head_sent and self.access_logging:
                cycle.response_bytes = self.writer.sent
                cycle.log_access()  # aborted mid-body (by the client or the server): log what was sent
            cycle.feed_disconnect()
        for cycle, _ in self.pipeline:
            cycle.feed_disconnect()
        self.pipeline.clear()
        if self.parsing is not None and self.parsing is not self.cycle:
            self.parsing.feed_disconnect()
        self.flow.resume_writing()  # a sender waiting in drain() returns
        self.transport = None

    def eof_received(self) -> bool | None:
        """A half-close (SHUT_WR): answer what was sent, then close (RFC 9112 9.6). A FIN may also be a
        client that left, so close at once (None) where that must be seen: an app that read its whole
        body waits for http.disconnect; also a body cut short, TLS, or nothing left to answer."""
        self.flush()  # an answer made eagerly inside data_received is still batched
        cycle = self.cycle
        if cycle is None or cycle.eof_delivered or self.phase == BODY or self.endpoint.scheme != "http":
            return None
        pipeline = self.pipeline
        if pipeline:
            pipeline[-1] = (pipeline[-1][0], False)  # the last request's answer ends the connection
        else:
            self.writer.keep_alive = False
        return True

    def pause_writing(self) -> None:
        if self.trace:
            self.trace_event("writing paused: the client reads slower than the server writes")
        self.flow.pause_writing(self.state.now, self.settings.timeout_send)

    def resume_writing(self) -> None:
        if self.trace:
            self.trace_event("writing resumed")
        self.flow.resume_writing()

    def trace_event(self, message: str, *args: object) -> None:
        """A --log-level trace line; callers check `self.trace` first, so it costs nothing otherwise."""
        error_logger.log(TRACE, "%s: " + message, describe_peer(self.transport), *args)

    def data_received(self, data: bytes) -> None:
        if self.metrics is not None:
            self.bytes_in += len(data)
        if self.phase == HEAD:
            self.head_bytes += len(data)
            if self.head_bytes > self.line_limit + self.header_count_limit * (self.header_size_limit + 4):
                self.refuse(431, "Request header fields too large")
                return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, RequestError):
                self.refuse(cause.status, cause.reason)
            else:
                error_logger.error("Error while handling a request", exc_info=cause or exc)
                self.refuse(500, "Internal Server Error")
        except httptools.HttpParserUpgrade as exc:
            self.at_upgrade_point(data[exc.args[0] :])
        except httptools.HttpParserError as exc:
            self.refuse(*parser_error_answer(exc))

    # ----- writing --------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """transport.write, batched until the end of the loop pass (ServerState.write_soon).

        Every connection's answers then leave together once the pass's reads and app steps are done,
        and pipelined answers in one write. Measured with wrk -c64 against writing at once (3.11):
        5% less CPU per request, Starlette p99 3.2 -> 2.2 ms; on 3.13, where bodyless requests start
        eagerly inside data_received, writing at once made each client send its next request sooner
        and cost 5-30% more CPU per lone request.
        """
        transport = self.transport
        if transport is None:
            return
        out = self.out
        if len(data) > _BATCH_BYTES:
            # Large writes go out now, after what is batched, so backpressure (pause_writing) applies at once.
            self.flush()
            transport.write(data)
            if self.metrics is not None:
                self.bytes_out += len(data)
            return
        if out is None:
            self.out = out = []
            self.state.write_soon(self, self.loop)
        out.append(data)
        if len(out) >= _BATCH_WRITES:
            self.flush()

    def write_deferred(self) -> None:
        """The end of the loop pass: write the batch; the next write starts a new one."""
        self.flush()
        self.out = None

    def flush(self) -> None:
        """Write what is batched now: at the end of the pass, before closing, or before handing the transport on."""
        out = self.out
        if out and self.transport is not None:
            data = out[0] if len(out) == 1 else b"".join(out)
            self.transport.write(data)
            out.clear()
            if self.metrics is not None:
                self.bytes_out += len(data)

    def close_transport(self) -> None:
        if self.transport is not None:
            self.flush()
            self.transport.close()

    def answer(self, status: int, reason: str) -> None:
        """A server-made answer written before or instead of any app's (cycle.error_response), then close."""
        headers, body = error_response(status, reason)
        writer = self.writer
        writer.reset(False, False, False)
        self.write(writer.head(status, headers, body, False, False, True))
        self.close_transport()

    # ----- parser callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.head_bytes = 0
        self.host_count = 0
        self.keep_alive_asked = False
        self.forwarded = False
        self.expect_continue = False
        self.transfer_encoding = None
        self.content_length = None
        self.upgrade = None
        self.body_bytes = 0
        if self.phase == IDLE:
            self.deadline = self.state.now + self.timeout_request_header
        else:  # read ahead while a response is in progress: timed once that response is done
            self.deadline = 0.0
        self.phase = HEAD

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.line_limit:
            raise RequestError(414, "Request-URI too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        global LAST_HOST
        headers = self.headers
        if len(headers) >= self.header_count_limit:
            raise RequestError(431, "Too many request header fields")
        if len(name) + len(value) > self.header_size_limit:
            raise RequestError(431, "Request header field too large")
        if value and value[-1] in OWS:
            value = field_value(value)
        name = name.lower()
        headers.append((name, value))
        if name == b"host":
            self.host_count += 1
            if value != LAST_HOST:
                if value not in GOOD_HOSTS:
                    check_host(value)
                LAST_HOST = value
        elif name == b"transfer-encoding":
            self.transfer_encoding = value if self.transfer_encoding is None else self.transfer_encoding + b"," + value
        elif name == b"content-length":
            self.content_length = value
        elif name == b"expect":
            self.expect_continue = value.lower() == b"100-continue"
        elif name == b"upgrade":
            self.upgrade = value.lower()
        elif (name == b"connection" or name == b"proxy-connection") and b"keep-alive" in value.lower():
            self.keep_alive_asked = True  # the HTTP version must be asked (see on_headers_complete)
        elif self.trusts_proxy and b"forwarded" in name:  # every proxy header's name holds it
            self.forwarded = True

    def on_headers_complete(self) -> None:
        parser = self.parser
        persistent = parser.should_keep_alive()
        # get_http_version() formats a new string per call (~2k instructions). llhttp accepts only
        # 0.9, 1.0, 1.1 and 2.0 and keeps any version but 1.1 alive only for a "keep-alive" token in
        # Connection or Proxy-Connection: alive without one, the request is HTTP/1.1.
        version = "1.1" if persistent and not self.keep_alive_asked else parser.get_http_version()
        if version != "1.1" or self.transfer_encoding is not None or self.host_count != 1:
            check_head(version, self.transfer_encoding, self.host_count)
        raw_method = parser.get_method()
        method = METHODS.get(raw_method) or request_method(raw_method)
        path, raw_path, query_string = request_target(self.url, method)
        settings = self.settings
        state = self.state
        scope = build_scope(
            settings, state, self.endpoint, version, method, path, raw_path, query_string, self.headers, self.forwarded
        )
        if self.trace:
            self.trace_event("request head parsed: %s %s HTTP/%s", method, path, version)
        if self.upgrade is not None and self.cycle is None:
            offer = upgrade_offer(
                settings,
                state,
                self.endpoint,
                version,
                method,
                self.upgrade,
                parser.should_upgrade(),
                self.headers,
                self.transfer_encoding,
            )
            if offer is not None:  # switched when httptools stops at the upgrade point (see at_upgrade_point)
                self.switch = (offer[0], scope, offer[1])
                return  # (an h2c body is read by HTTP/2; over the limit, stream 1 answers 413)
        content_length = self.content_length
        if content_length is not None:
            check_declared_length(content_length, settings.limit_request_body)
        # __new__ and prepare(): compiled, two C calls where calling the class parsed its arguments.
        cycle = RequestCycle.__new__(RequestCycle)
        cycle.prepare(
            scope,
            self,
            self.expect_continue and version == "1.1",
            has_no_body(self.transfer_encoding, content_length),  # the app's first receive() need not wait
            perf_counter() if self.timing else 0.0,
        )
        keep_alive = persistent and not state.shutting_down
        self.parsing = cycle
        self.phase = BODY
        self.deadline = self.body_deadline = state.now + self.timeout_request_body
        if self.cycle is None:
            # Python 3.12+: a request without a body starts at once, so an app that does not wait answers
            # before the next request is parsed (half the CPU per pipelined request on 3.13).
            self.start_cycle(cycle, keep_alive, eager=cycle.body_complete)
        else:
            # Pipelined: wait for the response in progress; stop reading until it is done.
            self.pipeline.append((cycle, keep_alive))
            self.pause_reading()

    def on_body(self, body: bytes) -> None:
        cycle = self.parsing
        if cycle is None:
            return
        self.body_bytes += len(body)
        limit = self.settings.limit_request_body
        if limit is not None and self.body_bytes > limit:
            raise RequestError(413, "Request body too large")
        self.deadline = self.state.now + self.timeout_request_body
        if cycle.phase == COMPLETE or cycle.disconnected:
            return  # the app is done with this request: discard the rest of its body
        cycle.feed_body(body)
        if len(cycle.body) > HIGH_WATER:
            self.pause_reading()

    def on_message_complete(self) -> None:
        cycle = self.parsing
        if self.upgrade is not None and cycle is not None and not cycle.body_complete and self.parser.should_upgrade():
            return  # httptools stops at a declined upgrade before its body: continue_declined_upgrade reads it
        self.parsing = None
        if cycle is not None:
            cycle.feed_eof()
        if self.switch is not None:
            return
        if self.cycle is None:
            self.phase = IDLE
            self.deadline = self.state.now + self.timeout_keep_alive
        else:
            self.phase = RESPONDING
            self.deadline = 0.0

    # ----- upgrades (see http1_upgrade.py) ---------------------------------------------------

    def at_upgrade_point(self, rest: bytes) -> None:
        """httptools stopped at an Upgrade: hand the connection on, or read on as HTTP/1.1 (http1_upgrade.py)."""
        at_upgrade_point(self, rest)
        if self.metrics is not None:  # a connection handed on is in no tick's connection set any more
            self.metrics.take_traffic(self)

    # ----- running requests ----------------------------------------------------------------

    def start_cycle(self, cycle: RequestCycle, keep_alive: bool, eager: bool = False) -> None:
        self.cycle = cycle
        self.requests_started += 1
        scope = cycle.scope
        self.writer.reset(scope["method"] == "HEAD", scope["http_version"] == "1.0", keep_alive)
        # Only bodyless requests start eagerly: one with a body starts after the bytes at hand are
        # parsed, so a malformed body in the same packet is refused before the app sees anything.
        # A queued request started from next_request() is never eager: that runs inside the previous
        # app's send(), and eager starts there would nest one app inside the other.
        cycle.start(eager)

    def next_request(self) -> None:
        """The response in progress is complete: close, or run the next pipelined request."""
        cycle = self.cycle
        self.cycle = None
        if self.transport is None:
            return
        writer = self.writer
        if cycle is not None and self.access_logging:
            cycle.response_bytes = writer.sent
            cycle.log_access()
        if self.pending_refusal is not None:
            if writer.keep_alive:  # the response before it ended cleanly: the refusal can follow it
                self.answer(*self.pending_refusal)
            else:
                self.close_transport()
            return
        state = self.state
        if not writer.keep_alive or state.shutting_down:
            self.close_transport()
            return
        if self.pipeline:
            nxt, keep_alive = self.pipeline.popleft()
            self.start_cycle(nxt, keep_alive)
            return
        phase = self.phase
        if phase == RESPONDING:
            self.phase = IDLE
            self.deadline = state.now + self.timeout_keep_alive
        elif phase == HEAD:  # the next head began while this response was in progress
            self.deadline = state.now + self.timeout_request_header
        self.resume_reading()

    def refuse(self, status: int, reason: str) -> None:
        """Answer a bad request and close; nothing more is read from this connection."""
        if self.transport is None or self.phase == CLOSING:
            return
        if status == 408:
            error_logger.debug("Refused request: %d %s", status, reason)
        elif status != 500:  # a 500 here was logged with its traceback
            error_logger.warning("Invalid HTTP request received. %d %s", status, reason)
        metrics = self.metrics
        if metrics is not None:
            metrics.server_response(status)
            if self.parsing is None:  # no cycle counts this request: count the refusal as one
                metrics.request_finished("1.1", "other", status, 0.0)
        self.pause_reading()
        self.phase = CLOSING
        self.deadline = 0.0
        self.pipeline.clear()
        parsing, self.parsing = self.parsing, None
        if parsing is not None:
            # Its body can never complete: the app (if running) sees http.disconnect.
            parsing.feed_disconnect()
            if parsing is self.cycle:
                self.cycle = None
            if parsing.head_sent:  # its response is already on the wire: no second answer
                self.close_transport()
                return
        if self.cycle is None:
            self.answer(status, reason)
        else:  # an earlier pipelined response is in progress: answer after it
            self.pending_refusal = (status, reason)

    # ----- the cycle's protocol side (see cycle.py) -------------------------------------------

    def write_head(self, cycle: RequestCycle, status: int, headers: Headers, body: bytes, more_body: bool) -> bool:
        if cycle is not self.cycle or self.transport is None:
            return False
        complete = not more_body and not cycle.trailers_expected
        close = self.state.shutting_down or (cycle.expect_continue and not cycle.body_complete)
        # (an unread body we never asked for with 100 Continue may still come: close after the answer)
        if self.trace:
            self.trace_event("response head written: %d", status)
        self.write(self.writer.head(status, headers, body, more_body, cycle.trailers_expected, close))
        if complete:
            self.next_request()
        return self.flow.write_paused

    def write_body(self, cycle: RequestCycle, body: bytes, more_body: bool) -> bool:
        if cycle is not self.cycle or self.transport is None:
            return False
        data = self.writer.body(body, more_body, cycle.trailers_expected)
        if data:
            self.write(data)
        if not more_body and not cycle.trailers_expected:
            self.next_request()
        return self.flow.write_paused

    def write_trailers(self, cycle: RequestCycle, headers: Headers) -> bool:
        if cycle is not self.cycle or self.transport is None:
            return False
        final = cycle.phase == COMPLETE
        data = self.writer.trailers(headers, final)
        if data:
            self.write(data)
        if final:
            self.next_request()
        return self.flow.write_paused

    def write_informational(self, cycle: RequestCycle, status: int, headers: Headers) -> None:
        if cycle is self.cycle and self.transport is not None and cycle.scope["http_version"] == "1.1":
            self.write(informational(status, headers))

    async def drain(self, cycle: RequestCycle) -> None:
        if self.transport is not None:
            await self.flow.drain(self.loop)

    async def send_file(self, cycle: RequestCycle, fd: int, offset: int, count: int) -> bool:
        """The CycleOwner fast path for file bodies: os.sendfile where it can (see http1_sendfile.py)."""
        return await send_file(self, cycle, fd, offset, count)

    def body_consumed(self, cycle: RequestCycle, nbytes: int) -> None:
        if self.flow.read_paused and cycle is self.cycle and cycle is self.parsing and len(cycle.body) <= HIGH_WATER:
            self.resume_reading()

    def abort_response(self, cycle: RequestCycle) -> None:
        if self.transport is not None and cycle is self.cycle:
            self.writer.keep_alive = False
            self.close_transport()

    def cycle_done(self, cycle: RequestCycle) -> None:
        if cycle is self.cycle and cycle.phase == COMPLETE and self.transport is not None:
            # Answered by the cycle itself (500/503) after the head was written: move on.
            self.next_request()

    # ----- flow control, timeouts, shutdown ---------------------------------------------------

    def pause_reading(self) -> None:
        if not self.flow.read_paused and self.transport is not None:
            if self.trace:
                self.trace_event("reading paused")
            self.paused_at = self.state.now
            self.flow.pause_reading()

    def resume_reading(self) -> None:
        if self.flow.read_paused and self.transport is not None:
            if self.phase == BODY:  # the time the server did not read is not the client's
                paused = self.state.now - self.paused_at
                self.deadline += paused
                self.body_deadline += paused
            if self.trace:
                self.trace_event("reading resumed")
            self.flow.resume_reading()

    def check_timeouts(self, now: float) -> None:
        """Called by the server tick: the timeouts, and the byte counts for the metrics."""
        check_timeouts(self, now)

    def shutdown(self) -> None:
        """Graceful shutdown: close when idle, otherwise after the response in progress (see next_request)."""
        if self.transport is None or self.phase != IDLE:
            return
        if self.requests_started:
            self.close_transport()
        else:
            # Accepted just before shutdown, its request may be on the way: a short grace, then close.
            self.deadline = self.state.now + SHUTDOWN_GRACE
