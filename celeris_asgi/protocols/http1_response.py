"""The framing of one HTTP/1.1 response at a time: head, Content-Length or chunked or no body, trailers.

ResponseWriter turns what an app (or the server, see cycle.error_response) sends into bytes and
decides what the body's framing leaves for the connection: whether it may carry another request
(`keep_alive`). It writes nothing itself, so the connection (http1.py) batches its output and the
WebSocket carrier (websocket_h1.py) reuses it for the plain responses that deny a handshake. One
writer per connection, reset per response: the hot path allocates no writer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
from celeris_asgi.logging import error_logger

if TYPE_CHECKING:
    from celeris_asgi.asgi_types import Headers
    from celeris_asgi.headers import DefaultHeaders

# RFC 9110 15.2, 15.3.5, 15.4.5: every 1xx, 204 and 304 (one set lookup, no comparison after it)
_NO_BODY_STATUS = frozenset({*range(100, 200), 204, 304})
_END_CLOSE = b"connection: close\r\n\r\n"
_END_KEEP_ALIVE_1_0 = b"connection: keep-alive\r\n\r\n"  # HTTP/1.0 persists only when told (RFC 9112 9.3)
_LAST_CHUNK = b"0\r\n\r\n"


def field_lines(headers: Headers) -> list[bytes]:
    """Checked `name: value` lines (1xx answers and trailers, which carry no framing fields)."""
    lines = []
    for name, value in headers:
        validate_header(name, value)
        lines.append(b"%s: %s\r\n" % (name, value))
    return lines


def informational(status: int, headers: Headers) -> bytes:
    """A 1xx interim response (100 Continue, 103 Early Hints): the status line and the given fields."""
    return b"".join([STATUS_LINES[status], *field_lines(headers), b"\r\n"])


def switching_protocols(default_headers: bytes, headers: Headers) -> bytes:
    """101 Switching Protocols with the default headers and the new protocol's fields as given."""
    return b"".join([STATUS_LINES[101], default_headers, *field_lines(headers), b"\r\n"])


_LENGTHS: dict[bytes, int] = {}  # Content-Length values already read (bounded): a repeated one is a lookup
_LENGTHS_MAX = 256


def declared_length(value: bytes) -> int:
    """A response's Content-Length value as a number, or -1 unless it is ASCII digits (RFC 9110 8.6).

    Remembered in _LENGTHS (up to _LENGTHS_MAX values), which ResponseWriter.head looks in first:
    isdigit() and int() were two Python calls per response that declares its length.
    """
    if not value.isdigit():  # bytes.isdigit: ASCII digits only
        return -1
    length = int(value)
    if len(_LENGTHS) < _LENGTHS_MAX:
        _LENGTHS[value] = length
    return length


class ResponseWriter:
    """Frames the response in progress; `reset` starts the next one.

    keep_alive: False once anything about this response ends the connection after it (the request
    asked for it, the app sent `connection: close`, the body's end is the close, the body did not
    match its Content-Length, the server is stopping).
    """

    __slots__ = ("chunked", "default_headers", "expected", "http10", "keep_alive", "no_body", "sent")

    def __init__(self, default_headers: DefaultHeaders) -> None:
        self.default_headers = default_headers
        self.keep_alive = True
        self.http10 = False
        self.no_body = False  # a HEAD request, or the status allows no body
        self.chunked = False
        self.expected: int | None = None  # the Content-Length the head announced
        self.sent = 0  # body bytes given so far (the access log's response size)

    def reset(self, head_request: bool, http10: bool, keep_alive: bool) -> None:
        self.keep_alive = keep_alive
        self.http10 = http10
        self.no_body = head_request
        self.chunked = False
        self.expected = None
        self.sent = 0

    def head(self, status: int, headers: Headers, body: bytes, more_body: bool, trailers: bool, close: bool) -> bytes:
        """The head with the first body part; `close`: the connection ends after this response anyway."""
        parts = [status_line(status), self.default_headers.block]
        expected = None
        chunked = False
        kinds = name_kinds
        good_values = checked_values
        lengths = _LENGTHS
        for name, value in headers:
            kind = kinds.get(name)
            if kind is None:
                kind = header_name_kind(name)
            if value not in good_values:
                check_header_value(value)
            if kind:
                if kind == CONTENT_LENGTH:
                    declared = lengths.get(value)
                    if declared is None:
                        declared = declared_length(value)
                    if declared < 0 or expected is not None:
                        raise RuntimeError(f"Invalid Content-Length {value!r} in response.")
                    expected = declared
                elif kind == TRANSFER_ENCODING:
                    if value.lower() != b"chunked":
                        raise RuntimeError(f"Unsupported Transfer-Encoding {value!r} in response.")
                    chunked = True
                    continue
                else:  # connection: the server decides; only a "close" from the app is honoured
                    if b"close" in value.lower():
                        close = True
                    continue
            parts += (name, b": ", value, b"\r\n")  # joined once below: cheaper than formatting each line
        if close:
            self.keep_alive = False
        if self.no_body or status in _NO_BODY_STATUS:
            return self.head_alone(status, parts, expected, body, more_body)
        complete = not more_body and not trailers
        if expected is not None:
            chunked = False
        elif complete:
            length = len(body)
            expected = length
            parts += (b"content-length: ", str(length).encode("ascii"), b"\r\n")
        elif not self.http10:
            chunked = True
        else:
            self.keep_alive = False  # HTTP/1.0 without a length: the end of the body is the close
        if chunked:
            parts.append(b"transfer-encoding: chunked\r\n")
        parts.append(self.end_of_head())
        self.chunked = chunked
        self.expected = expected
        if complete and not chunked and len(body) == expected:
            self.sent = expected  # the usual response: head and whole body, exactly as announced
            parts.append(body)
        else:
            parts.append(self.frame(body, more_body, trailers))
        return b"".join(parts)

    def head_alone(self, status: int, parts: list[bytes], expected: int | None, body: bytes, more_body: bool) -> bytes:
        """HEAD, 1xx, 204 and 304: the head alone; a HEAD answer keeps the length the body would have."""
        if expected is None and body and not more_body and self.no_body and status >= 200:
            parts.append(b"content-length: %d\r\n" % len(body))
        parts.append(self.end_of_head())
        self.no_body = True
        self.expected = expected
        return b"".join(parts)

    def end_of_head(self) -> bytes:
        """The connection field keep-alive calls for, and the blank line."""
        if not self.keep_alive:
            return _END_CLOSE
        return _END_KEEP_ALIVE_1_0 if self.http10 else b"\r\n"

    def body(self, body: bytes, more_body: bool, trailers: bool) -> bytes:
        """A later body part as it goes on the wire (maybe empty)."""
        if self.no_body:
            return b""
        return self.frame(body, more_body, trailers)

    def frame(self, body: bytes, more_body: bool, trailers: bool) -> bytes:
        """Chunk the body part, or count it against the Content-Length (cutting what goes past it)."""
        size = len(body)
        self.sent += size
        last = not more_body and not trailers
        if self.chunked:
            framed = b"%x\r\n%s\r\n" % (size, body) if size else b""
            return framed + _LAST_CHUNK if last else framed
        expected = self.expected
        if expected is not None and self.sent > expected:
            error_logger.error("Response content longer than Content-Length.")
            self.keep_alive = False
            return body[: size - (self.sent - expected)]
        if last:
            self.check_length()
        return body

    def trailers(self, headers: Headers, final: bool) -> bytes:
        """Trailer fields (sent only with a chunked body; RFC 9110 6.5); `final`: the response ends."""
        if final:
            self.check_length()
        if not self.chunked:
            return b""
        return b"".join([b"0\r\n", *field_lines(headers), b"\r\n"])

    def check_length(self) -> None:
        """The body is complete: one shorter than its Content-Length leaves the connection unusable."""
        expected = self.expected
        if not self.chunked and not self.no_body and expected is not None and self.sent < expected:
            error_logger.error("Response content shorter than Content-Length.")
            self.keep_alive = False
