"""HTTP/1.1 on httptools: keep-alive, pipelining in strict order, strict request validation.

One protocol object per connection. Parser callbacks build the scope; a RequestCycle runs the
app; the response head and a complete body go out in one transport.write. Requests that arrive
pipelined wait in `self.pipeline` and run one after the other, so responses stay in order.
Timeouts are checked by the server's clock tick (check_timeouts), so the hot path sets a float
instead of arming a timer per request.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from typing import Any

import httptools

from celeris_asgi.cycle import RequestCycle
from celeris_asgi.headers import (
    CONTENT_LENGTH,
    STATUS_LINES,
    TRANSFER_ENCODING,
    check_header_value,
    checked_values,
    header_name_kind,
    name_kinds,
    status_line,
    validate_header,
)
from celeris_asgi.logging import AccessLog, error_logger
from celeris_asgi.protocols.addresses import client_address, server_address, trusted_proxy
from celeris_asgi.protocols.target import split_origin_form
from celeris_asgi.protocols.websocket import websocket_enabled

HIGH_WATER = 64 * 1024  # request body bytes buffered for the app before reading pauses
_ASGI = {"version": "3.0", "spec_version": "2.4"}
_EXTENSIONS: dict[str, Any] = {"http.response.trailers": {}, "http.response.early_hint": {}}
_HOST_VALUE = re.compile(rb"^[A-Za-z0-9\-._~!$&'()*+,;=:\[\]%]*$")
_NO_BODY_STATUS = frozenset({204, 304})
_OWS = b" \t"  # RFC 9110 5.5: not part of a field value (llhttp drops it in front, keeps it behind)
_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE")}

# Read-side timeout kinds, checked by check_timeouts(); the send timeout has its own deadline.
_IDLE, _HEADERS, _BODY = 0, 1, 2
_BATCH_BYTES = 8192  # a write larger than this is not batched
_BATCH_WRITES = 32  # a batch this long is written at once
SHUTDOWN_GRACE = 1.0  # seconds a connection accepted just before shutdown may still send its request


_GOOD_HOSTS: set[bytes] = set()  # Host values already checked (bounded): a repeated one costs a lookup
_GOOD_HOSTS_MAX = 1024


def check_host(value: bytes) -> None:
    """RFC 9110 7.2 / RFC 3986 3.2.2: a Host value is a reg-name or IP literal with an optional port."""
    if not _HOST_VALUE.match(value):
        raise RequestError(400, "Invalid Host header")
    if len(_GOOD_HOSTS) < _GOOD_HOSTS_MAX:
        _GOOD_HOSTS.add(value)


class RequestError(Exception):
    """A request the server must refuse; carries the HTTP status to answer with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def error_response(status: int, reason: str, default_headers: bytes) -> bytes:
    """A response the server makes itself before any app runs (400, 408, 413, ...): the default headers
    (Server, Date, --header) like every app response, a plain-text reason, and the close."""
    body = reason.encode("latin-1", "replace")
    return b"%s%sconnection: close\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n\r\n%s" % (
        STATUS_LINES[status],
        default_headers,
        len(body),
        body,
    )


class _AfterStandInHead:
    """Callbacks of the parser that reads on after a declined upgrade (see continue_declined_upgrade).

    The stand-in head fed first is swallowed; its body and every later request go to the connection.
    """

    __slots__ = ("conn", "stand_in")

    def __init__(self, conn: HTTP1Protocol) -> None:
        self.conn = conn
        self.stand_in = True

    def on_message_begin(self) -> None:
        if not self.stand_in:
            self.conn.on_message_begin()

    def on_url(self, url: bytes) -> None:
        if not self.stand_in:
            self.conn.on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.stand_in:
            self.conn.on_header(name, value)

    def on_headers_complete(self) -> None:
        if not self.stand_in:
            self.conn.on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self.conn.on_body(body)

    def on_message_complete(self) -> None:
        self.stand_in = False
        self.conn.on_message_complete()


class HTTP1Protocol(asyncio.Protocol):
    """One HTTP/1.x connection."""

    def __init__(self, config: Any, state: Any, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.config = config
        self.settings = config.settings
        self.state = state
        self.app = config.loaded_app
        self.loop = loop or asyncio.get_running_loop()
        self.access_log = AccessLog(config.access_log_format, config.access_log)
        self.access_log_enabled = self.access_log.enabled
        self.root_path = config.root_path
        self.limit_concurrency = config.limit_concurrency
        self.limit_url = config.limit_request_line
        self.limit_header_count = config.limit_request_headers
        self.limit_header_size = config.limit_request_header_size
        self.limit_head_bytes = self.limit_url + self.limit_header_count * (self.limit_header_size + 4)
        self.limit_body = config.limit_request_body
        self.timeout_header = config.timeout_request_header
        self.timeout_body = config.timeout_request_body
        self.timeout_idle = config.timeout_keep_alive
        # --limit-request-min-rate: a head's or body's deadline grows by this many seconds per byte received
        self.seconds_per_byte = 1.0 / config.limit_request_min_rate if config.limit_request_min_rate else 0.0
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.server: tuple[str, int] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme = "http"
        self.proxy: Any = None  # config.proxy when the peer is a trusted proxy
        # request being parsed
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_bytes = 0
        self.in_headers = False
        self.host_count = 0
        self.expect_continue = False
        self.transfer_encoding: bytes | None = None
        self.content_length: bytes | None = None
        self.upgrade: bytes | None = None
        self.body_bytes = 0
        self.out: list[bytes] | None = None  # answers batched until the end of the loop pass (see write)
        self.parsing: RequestCycle | None = None
        # response being written
        self.cycle: RequestCycle | None = None
        self.pipeline: deque[tuple[RequestCycle, bool]] = deque()
        self.keep_alive = True
        self.chunked = False
        self.no_body = False
        self.expected_length: int | None = None
        self.sent_length = 0
        self.close_after_response = False
        self.pending_error: bytes | None = None
        self.h2c: tuple[dict[str, Any], bytes] | None = None  # an accepted Upgrade: h2c (scope, settings)
        self.websocket_scope: dict[str, Any] | None = None  # an Upgrade: websocket request to hand off
        # flow control
        self.read_paused = False
        self.write_paused = False
        self.drain_waiter: asyncio.Future[None] | None = None
        self.deadline = 0.0
        self.timeout_kind = _HEADERS
        self.body_deadline = 0.0  # the body's deadline before its min-rate allowance; moved on by paused time
        self.paused_at = 0.0
        self.send_deadline = 0.0
        self.requests_started = 0

    # ----- connection events ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        self.transport = transport  # type: ignore[assignment]
        self.state.connections.add(self)
        self.server = server_address(transport)
        self.client = client_address(transport)
        self.scheme = "https" if transport.get_extra_info("sslcontext") else "http"
        self.proxy = trusted_proxy(self.config, self.client)
        self.deadline = self.state.now + self.timeout_header
        self.timeout_kind = _HEADERS

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        cycle = self.cycle
        if cycle is not None:
            if cycle.head_sent and self.access_log_enabled:
                cycle.log_access()  # aborted mid-body (by the client or the server): log what was sent
            cycle.feed_disconnect()
        for cycle, _ in self.pipeline:
            cycle.feed_disconnect()
        self.pipeline.clear()
        if self.parsing is not None and self.parsing is not self.cycle:
            self.parsing.feed_disconnect()
        waiter = self.drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self.transport = None

    def eof_received(self) -> bool | None:
        return None

    def pause_writing(self) -> None:
        self.write_paused = True
        self.send_deadline = self.state.now + self.config.timeout_send

    def resume_writing(self) -> None:
        self.write_paused = False
        self.send_deadline = 0.0
        waiter = self.drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.in_headers:
            self.head_bytes += len(data)
            if self.head_bytes > self.limit_head_bytes:
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
            self.flush()
            if self.h2c is not None:
                from celeris_asgi.protocols.http2.upgrade import upgrade_h2c

                upgrade_h2c(self, *self.h2c, data[exc.args[0] :])
            elif self.websocket_scope is not None:
                self.upgrade_websocket(self.websocket_scope, data[exc.args[0] :])
            else:
                self.continue_declined_upgrade(data[exc.args[0] :])
        except httptools.HttpParserInvalidMethodError:
            self.refuse(400, "Invalid HTTP method")
        except httptools.HttpParserError as exc:
            message = str(exc)
            if "HTTP version" in message:
                self.refuse(505, "HTTP version not supported")
            else:
                self.refuse(400, f"Invalid HTTP request: {message}")

    def write(self, data: bytes) -> None:
        """transport.write, batched until the end of the loop pass (ServerState.write_soon).

        Every connection's answers then leave together once the pass's reads and app steps are done,
        and pipelined answers in one write. Measured with wrk -c64 against writing at once (3.11):
        5% less CPU per request, Starlette p99 3.2 -> 2.2 ms; on 3.13, where bodyless requests start
        eagerly inside data_received, writing at once made each client send its next request sooner
        and cost 5-30% more CPU per lone request.
        """
        out = self.out
        if len(data) > _BATCH_BYTES:
            # Large writes go out now, after what is batched, so backpressure (pause_writing) applies at once.
            if out:
                self.transport.write(b"".join(out))  # type: ignore[union-attr]
                out.clear()
            self.transport.write(data)  # type: ignore[union-attr]
            return
        if out is None:
            self.out = out = []
            self.state.write_soon(self, self.loop)
        out.append(data)
        if len(out) >= _BATCH_WRITES:
            self.transport.write(b"".join(out))  # type: ignore[union-attr]
            out.clear()

    def write_deferred(self) -> None:
        """The end of the loop pass: write the batch; the next write starts a new one."""
        self.flush()
        self.out = None

    def flush(self) -> None:
        """Write what is batched now: at the end of the pass, before closing, or before handing the transport on."""
        out = self.out
        if out and self.transport is not None:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()

    def close_transport(self) -> None:
        if self.transport is not None:
            self.flush()
            self.transport.close()

    def continue_declined_upgrade(self, rest: bytes) -> None:
        """RFC 9110 7.8: an Upgrade the server does not take is an ordinary request, and the connection goes on.

        httptools stops at the upgrade point as if the request had no body, and stops for good. A fresh
        parser reads on: first the body, framed by a stand-in head that says what the real one said, then
        the requests that follow `rest`.
        """
        if self.parsing is None:  # no body (on_message_complete has run), or refused
            self.parser = httptools.HttpRequestParser(self)
        else:
            framing = (
                b"transfer-encoding: chunked"
                if self.transfer_encoding is not None
                else b"content-length: %d" % int(self.content_length or b"0")
            )
            self.parser = httptools.HttpRequestParser(_AfterStandInHead(self))
            self.parser.feed_data(b"PUT / HTTP/1.1\r\n%s\r\n\r\n" % framing)
        if rest and self.transport is not None and not self.transport.is_closing():
            self.data_received(rest)

    def upgrade_websocket(self, scope: dict[str, Any], trailing: bytes) -> None:
        """Hand the connection to the WebSocket protocol with the request read and any bytes after it."""
        from celeris_asgi.protocols.websocket_h1 import WebSocketProtocol

        self.websocket_scope = None
        transport = self.transport
        if transport is None:
            return
        self.state.connections.discard(self)
        self.transport = None
        protocol = WebSocketProtocol(self.config, self.state, self.loop, scope, trailing)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)

    # ----- parser callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.head_bytes = 0
        self.in_headers = True
        self.host_count = 0
        self.expect_continue = False
        self.transfer_encoding = None
        self.content_length = None
        self.upgrade = None
        self.body_bytes = 0
        if self.cycle is None:
            self.deadline = self.state.now + self.timeout_header
            self.timeout_kind = _HEADERS

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.limit_url:
            raise RequestError(414, "Request-URI too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self.headers
        if len(headers) >= self.limit_header_count:
            raise RequestError(431, "Too many request header fields")
        if len(name) + len(value) > self.limit_header_size:
            raise RequestError(431, "Request header field too large")
        if value and value[-1] in _OWS:
            value = value.rstrip(_OWS)
        name = name.lower()
        headers.append((name, value))
        if name == b"host":
            self.host_count += 1
            if value not in _GOOD_HOSTS:
                check_host(value)
        elif name == b"transfer-encoding":
            self.transfer_encoding = value if self.transfer_encoding is None else self.transfer_encoding + b"," + value
        elif name == b"content-length":
            self.content_length = value
        elif name == b"expect":
            self.expect_continue = value.lower() == b"100-continue"
        elif name == b"upgrade":
            self.upgrade = value.lower()

    def on_headers_complete(self) -> None:
        self.in_headers = False
        parser = self.parser
        version = parser.get_http_version()
        if version != "1.1" and version != "1.0":
            raise RequestError(505, "HTTP version not supported")
        if self.transfer_encoding is not None or self.host_count != 1:
            self.validate_framing(version)
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method) or raw_method.decode("ascii")
        if method == "CONNECT":
            raise RequestError(405, "CONNECT is not supported over HTTP/1.1")
        url = self.url
        try:
            if url[:1] == b"/" and b"#" not in url:
                path, raw_path, query_string = split_origin_form(url)
            else:  # a fragment to drop, absolute-form or asterisk-form: the path alone is then split the same way
                if url[:1] == b"*" and (url != b"*" or method != "OPTIONS"):
                    raise RequestError(400, "The asterisk-form target is for OPTIONS only")  # RFC 9112 3.2.4
                target, query_string = self.split_target(url)
                path, raw_path, _ = split_origin_form(target)
        except UnicodeDecodeError:
            raise RequestError(400, "Invalid characters in request target") from None
        root_path = self.root_path
        if root_path:
            path = root_path + path
            raw_path = root_path.encode("ascii") + raw_path
        scope = {
            "type": "http",
            "asgi": _ASGI,
            "http_version": version,
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "method": method,
            "root_path": root_path,
            "path": path,
            "raw_path": raw_path,
            "query_string": query_string,
            "headers": self.headers,
            "state": self.state.app_state.copy(),
            "extensions": _EXTENSIONS,
        }
        if self.upgrade is not None and self.cycle is None and self.take_upgrade(scope):
            return  # (an h2c body over the limit is answered 413 on stream 1)
        content_length = self.content_length
        if content_length is not None and self.limit_body is not None and int(content_length) > self.limit_body:
            raise RequestError(413, "Request body too large")  # RFC 9110 10.1.1: before any 100 Continue
        if self.proxy is not None:
            scope = self.proxy.rewrite(scope)
        state = self.state
        keep_alive = parser.should_keep_alive() and not state.shutting_down
        cycle = RequestCycle(
            scope,  # type: ignore[arg-type]
            self,
            self.expect_continue and version == "1.1",
            # no body: the app's first receive() need not wait
            self.transfer_encoding is None and (self.content_length is None or self.content_length == b"0"),
            self.loop.time() if self.access_log_enabled else 0.0,
        )
        self.parsing = cycle
        self.deadline = self.body_deadline = state.now + self.timeout_body
        self.timeout_kind = _BODY
        if self.cycle is None:
            self.keep_alive = keep_alive
            # Python 3.12+: a request without a body starts at once, so an app that does not wait answers
            # before the next request is parsed (half the CPU per pipelined request on 3.13).
            self.start_cycle(cycle, eager=cycle.body_complete)
        else:
            # Pipelined: wait for the response in progress; stop reading until it is done.
            self.pipeline.append((cycle, keep_alive))
            self.pause_reading()

    def take_upgrade(self, scope: dict[str, Any]) -> bool:
        """An Upgrade this server takes over (h2c, websocket): True when the connection changes hands."""
        if scope["http_version"] != "1.1":
            return False  # RFC 9110 7.8: Upgrade in an HTTP/1.0 request is ignored
        settings = None
        if self.upgrade == b"h2c" and not self.state.shutting_down:
            from celeris_asgi.protocols.http2.upgrade import h2c_request

            # Decided on the connection as it is, before proxy headers (they cannot make it TLS).
            settings = h2c_request(self.config, scope, self.transfer_encoding)
            if settings is None:
                return False
        elif not (
            self.upgrade == b"websocket"
            and scope["method"] == "GET"  # RFC 6455 4.1: any other method is a plain request
            and self.parser.should_upgrade()
            and websocket_enabled(self.config)
        ):
            return False
        if self.proxy is not None:
            scope = self.proxy.rewrite(scope)
        if settings is not None:  # RFC 7540 3.2: this request becomes stream 1 of an HTTP/2 connection
            self.h2c = (scope, settings)
        else:  # handed off when httptools stops at the upgrade point
            self.websocket_scope = scope
        return True

    def on_body(self, body: bytes) -> None:
        cycle = self.parsing
        if cycle is None:
            return
        self.body_bytes += len(body)
        if self.limit_body is not None and self.body_bytes > self.limit_body:
            raise RequestError(413, "Request body too large")
        self.deadline = self.state.now + self.timeout_body
        if cycle.response_complete or cycle.disconnected:
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
        if self.cycle is None:
            self.deadline = self.state.now + self.timeout_idle
            self.timeout_kind = _IDLE
        elif self.cycle is cycle:
            self.deadline = 0.0

    # ----- request validation --------------------------------------------------------------

    def validate_framing(self, version: str) -> None:
        """RFC 9112 section 6 and 3.2: the checks llhttp leaves to us."""
        if self.transfer_encoding is not None:
            if version == "1.0":
                raise RequestError(400, "Transfer-Encoding is not allowed in HTTP/1.0")
            codings = [c.strip().lower() for c in self.transfer_encoding.split(b",")]
            if codings[-1] != b"chunked" or codings.count(b"chunked") > 1:
                raise RequestError(400, "Request body length cannot be determined")  # RFC 9112 6.3(4)
            if len(codings) > 1:
                raise RequestError(501, "Unsupported transfer coding")
        if version == "1.1" and self.host_count != 1:
            raise RequestError(400, "Missing Host header" if not self.host_count else "Duplicate Host header")

    @staticmethod
    def split_target(url: bytes) -> tuple[bytes, bytes]:
        """origin-form is the fast path; absolute-form and asterisk-form go through httptools."""
        if url[:1] == b"/":
            path, _, query = url.partition(b"?")
            if b"#" in query:
                query = query.partition(b"#")[0]
            return path.partition(b"#")[0], query
        if url == b"*":
            return b"*", b""
        try:
            parsed = httptools.parse_url(url)
        except httptools.HttpParserInvalidURLError:
            raise RequestError(400, "Invalid request target") from None
        return parsed.path or b"/", parsed.query or b""

    # ----- running requests ----------------------------------------------------------------

    def start_cycle(self, cycle: RequestCycle, eager: bool = False) -> None:
        self.cycle = cycle
        self.requests_started += 1
        self.chunked = False
        self.no_body = cycle.scope["method"] == "HEAD"
        self.expected_length = None
        self.sent_length = 0
        self.close_after_response = False
        # Only bodyless requests start eagerly: one with a body starts after the bytes at hand are
        # parsed, so a malformed body in the same packet is refused before the app sees anything.
        # A queued request started from next_request() is never eager: that runs inside the previous
        # app's send(), and eager starts there would nest one app inside the other.
        cycle.start(eager)

    def next_request(self) -> None:
        """The response in progress is complete: close, or run the next pipelined request."""
        cycle = self.cycle
        self.cycle = None
        transport = self.transport
        if transport is None:
            return
        if cycle is not None and self.access_log_enabled:
            cycle.log_access()
        if self.pending_error is not None and self.keep_alive and not self.close_after_response:
            self.write(self.pending_error)
            self.keep_alive = False
        if not self.keep_alive or self.close_after_response:
            self.close_transport()
            return
        if self.pipeline:
            nxt, keep_alive = self.pipeline.popleft()
            self.keep_alive = keep_alive and not self.state.shutting_down
            self.start_cycle(nxt)
            return
        if self.state.shutting_down:
            self.close_transport()
            return
        if self.parsing is None:
            self.deadline = self.state.now + self.timeout_idle
            self.timeout_kind = _IDLE
        self.resume_reading()

    def refuse(self, status: int, reason: str) -> None:
        """Answer a bad request and close; nothing more is read from this connection."""
        transport = self.transport
        if transport is None:
            return
        if status == 408:
            error_logger.debug("Refused request: %d %s", status, reason)
        elif status != 500:  # a 500 here was logged with its traceback
            error_logger.warning("Invalid HTTP request received. %d %s", status, reason)
        response = error_response(status, reason, self.state.default_headers.block)
        self.pause_reading()
        self.pipeline.clear()
        parsing, self.parsing = self.parsing, None
        if parsing is not None:
            # Its body can never complete: the app (if running) sees http.disconnect.
            parsing.feed_disconnect()
            if parsing is self.cycle:
                self.cycle = None
            if parsing.head_sent:  # its response is already on the wire: no second answer
                self.keep_alive = False
                self.close_transport()
                return
        if self.cycle is None:
            self.keep_alive = False
            self.write(response)
            self.close_transport()
        else:  # an earlier pipelined response is in progress: answer after it
            self.pending_error = response

    # ----- the cycle's protocol side (see cycle.py) -------------------------------------------

    def write_head(
        self, cycle: RequestCycle, status: int, headers: list[tuple[bytes, bytes]], body: bytes, more_body: bool
    ) -> bool:
        if self.transport is None or cycle is not self.cycle:
            return False
        parts = [status_line(status), self.state.default_headers.block]
        expected_length = None
        chunked = False
        kinds = name_kinds
        good_values = checked_values
        for name, value in headers:
            kind = kinds.get(name)
            if kind is None:
                kind = header_name_kind(name)
            if value not in good_values:
                check_header_value(value)
            if kind:
                if kind == CONTENT_LENGTH:
                    if not value.isdigit() or expected_length is not None:
                        raise RuntimeError(f"Invalid Content-Length {value!r} in response.")
                    expected_length = int(value)
                elif kind == TRANSFER_ENCODING:
                    if value.lower() != b"chunked":
                        raise RuntimeError(f"Unsupported Transfer-Encoding {value!r} in response.")
                    chunked = True
                    continue
                else:  # connection: the server decides; only a "close" from the app is honoured
                    if b"close" in value.lower():
                        self.keep_alive = False
                    continue
            parts.append(b"%s: %s\r\n" % (name, value))
        cycle.response_headers = headers
        if self.no_body or status in _NO_BODY_STATUS or status < 200:
            return self.write_head_without_body(cycle, status, parts, expected_length, body, more_body)
        complete = not more_body and not cycle.trailers_expected
        if expected_length is not None:
            chunked = False
        elif complete:
            expected_length = len(body)
            parts.append(b"content-length: %d\r\n" % expected_length)
        elif cycle.scope["http_version"] == "1.1":
            chunked = True
        else:
            self.keep_alive = False  # HTTP/1.0 without a length: the end of the body is the close
        if chunked:
            parts.append(b"transfer-encoding: chunked\r\n")
        self.end_head(cycle, parts)
        self.chunked = chunked
        self.expected_length = expected_length
        if complete and not chunked and len(body) == expected_length:
            # The common case: the whole response in one write.
            cycle.response_bytes = self.sent_length = expected_length
            parts.append(body)
            self.write(b"".join(parts))
            self.next_request()
            return self.write_paused
        parts.append(self.frame_body(cycle, body, more_body))
        self.write(b"".join(parts))
        if complete:
            self.finish_body(cycle)
        return self.write_paused

    def write_head_without_body(
        self,
        cycle: RequestCycle,
        status: int,
        parts: list[bytes],
        expected_length: int | None,
        body: bytes,
        more_body: bool,
    ) -> bool:
        """HEAD, 1xx, 204 and 304: the head alone; a HEAD answer keeps the length the body would have."""
        if expected_length is None and body and not more_body and self.no_body and status >= 200:
            parts.append(b"content-length: %d\r\n" % len(body))
        self.end_head(cycle, parts)
        self.chunked = False
        self.no_body = True
        self.expected_length = expected_length
        self.write(b"".join(parts))
        if not more_body and not cycle.trailers_expected:
            self.next_request()
        return self.write_paused

    def end_head(self, cycle: RequestCycle, parts: list[bytes]) -> None:
        """Close the head with the connection header keep-alive calls for, and the blank line."""
        if self.state.shutting_down:
            self.keep_alive = False
        if cycle.expect_continue and not cycle.body_complete:
            self.keep_alive = False  # the client may still send the body we never asked for
        if not self.keep_alive:
            parts.append(b"connection: close\r\n\r\n")
        elif cycle.scope["http_version"] == "1.0":
            parts.append(b"connection: keep-alive\r\n\r\n")
        else:
            parts.append(b"\r\n")

    def frame_body(self, cycle: RequestCycle, body: bytes, more_body: bool) -> bytes:
        """The body bytes as they go on the wire (chunked or not), counted against Content-Length."""
        size = len(body)
        cycle.response_bytes += size
        if self.chunked:
            framed = b"%x\r\n%s\r\n" % (size, body) if size else b""
            if not more_body and not cycle.trailers_expected:
                framed += b"0\r\n\r\n"
            return framed
        self.sent_length += size
        if self.expected_length is not None and self.sent_length > self.expected_length:
            error_logger.error("Response content longer than Content-Length.")
            self.close_after_response = True
            return body[: size - (self.sent_length - self.expected_length)]
        return body

    def finish_body(self, cycle: RequestCycle) -> None:
        if (
            not self.chunked
            and self.expected_length is not None
            and self.sent_length != self.expected_length
            and not self.no_body
        ):
            if self.sent_length < self.expected_length:
                error_logger.error("Response content shorter than Content-Length.")
            self.keep_alive = False
        self.next_request()

    def write_body(self, cycle: RequestCycle, body: bytes, more_body: bool) -> bool:
        transport = self.transport
        if transport is None or cycle is not self.cycle:
            return False
        if not self.no_body:
            data = self.frame_body(cycle, body, more_body)
            if data:
                self.write(data)
        if not more_body and not cycle.trailers_expected:
            self.finish_body(cycle)
        return self.write_paused

    def write_trailers(self, cycle: RequestCycle, headers: list[tuple[bytes, bytes]]) -> bool:
        transport = self.transport
        if transport is None or cycle is not self.cycle:
            return False
        if self.chunked:
            parts = [b"0\r\n"]
            for name, value in headers:
                validate_header(name, value)
                parts.append(b"%s: %s\r\n" % (name, value))
            parts.append(b"\r\n")
            self.write(b"".join(parts))
        if cycle.response_complete:
            self.finish_body(cycle)
        return self.write_paused

    def write_informational(self, cycle: RequestCycle, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        transport = self.transport
        if transport is None or cycle is not self.cycle or cycle.scope["http_version"] != "1.1":
            return
        parts = [STATUS_LINES[status]]
        for name, value in headers:
            validate_header(name, value)
            parts.append(b"%s: %s\r\n" % (name, value))
        parts.append(b"\r\n")
        self.write(b"".join(parts))

    async def drain(self, cycle: RequestCycle) -> None:
        if not self.write_paused or self.transport is None:
            return
        self.drain_waiter = self.loop.create_future()
        try:
            await self.drain_waiter
        finally:
            self.drain_waiter = None

    def body_consumed(self, cycle: RequestCycle, nbytes: int) -> None:
        if self.read_paused and cycle is self.cycle and cycle is self.parsing and len(cycle.body) <= HIGH_WATER:
            self.resume_reading()

    def abort_response(self, cycle: RequestCycle) -> None:
        if self.transport is not None and cycle is self.cycle:
            self.keep_alive = False
            self.close_transport()

    def cycle_done(self, cycle: RequestCycle) -> None:
        if cycle is self.cycle and cycle.response_complete and self.transport is not None:
            # Answered by the cycle itself (500/503) after the head was written: move on.
            self.next_request()

    # ----- flow control, timeouts, shutdown ---------------------------------------------------

    def pause_reading(self) -> None:
        if not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.paused_at = self.state.now
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused and self.transport is not None:
            self.read_paused = False
            if self.timeout_kind == _BODY:  # the time the server did not read is not the client's
                paused = self.state.now - self.paused_at
                self.deadline += paused
                self.body_deadline += paused
            self.transport.resume_reading()

    def check_timeouts(self, now: float) -> None:
        """Called by the server tick: enforce header, body, keep-alive and send timeouts."""
        if self.transport is None:
            return
        if self.write_paused and self.send_deadline and now >= self.send_deadline:
            error_logger.info("Closing a connection whose client stopped reading (--timeout-send).")
            self.transport.abort()
            return
        deadline = self.deadline
        if not deadline:
            return
        kind = self.timeout_kind
        if kind == _BODY:
            if self.parsing is not None and not self.read_paused:
                if now >= deadline:
                    self.deadline = 0.0
                    self.refuse(408, "Request body timeout")
                elif self.too_slow(now):
                    self.deadline = 0.0
                    self.refuse(408, "Request body slower than --limit-request-min-rate")
            return
        if kind == _HEADERS:
            deadline += self.head_bytes * self.seconds_per_byte
        if now < deadline:
            return
        if kind == _IDLE:
            if self.cycle is None and self.parsing is None and not self.in_headers:
                self.close_transport()
            return
        if kind == _HEADERS:
            if self.in_headers:
                self.refuse(408, "Request header timeout")
            elif self.cycle is None and self.parsing is None:
                self.close_transport()  # connected but never sent a byte

    def too_slow(self, now: float) -> bool:
        """--limit-request-min-rate: the body came slower on average than the minimum rate allows."""
        seconds_per_byte = self.seconds_per_byte
        return bool(seconds_per_byte) and now >= self.body_deadline + self.body_bytes * seconds_per_byte

    def shutdown(self) -> None:
        """Graceful shutdown: close when idle, otherwise after the response in progress."""
        transport = self.transport
        if transport is None:
            return
        self.keep_alive = False
        if self.cycle is None and self.parsing is None and not self.in_headers:
            if self.requests_started:
                self.close_transport()
            else:
                # Accepted just before shutdown, its request may be on the way: a short grace, then close.
                self.deadline = self.state.now + SHUTDOWN_GRACE
                self.timeout_kind = _IDLE
