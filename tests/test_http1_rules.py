"""The HTTP/1.1 rules as tables, without a socket: request rules (http1_request.py), the h2c offer
(http2/upgrade.py) and response framing (http1_response.ResponseWriter).

Each row names the RFC section it checks. The end-to-end behaviour of the same rules (a refused
request gets its status, the connection closes or goes on) is tested through real sockets in
test_http1_correctness.py, test_http1_malformed.py and test_http1_behaviour.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from celeris_asgi.cycle import error_response
from celeris_asgi.headers import DefaultHeaders
from celeris_asgi.protocols.http1_request import (
    H2C,
    WEBSOCKET,
    RequestError,
    check_declared_length,
    check_head,
    check_host,
    chosen_upgrade,
    field_value,
    has_no_body,
    request_method,
    request_target,
)
from celeris_asgi.protocols.http1_response import ResponseWriter, informational, switching_protocols
from celeris_asgi.protocols.http2.upgrade import h2c_settings

pytestmark = pytest.mark.timeout(10)

SETTINGS = b"AAMAAABkAARAAAAAAAIAAAAA"  # a valid HTTP2-Settings value (base64url SETTINGS payload)


def refused(rule: Callable[..., object], *args: object) -> tuple[int, str] | None:
    """(status, reason) of the RequestError a rule raises, or None when it accepts."""
    try:
        rule(*args)
    except RequestError as exc:
        return exc.status, exc.reason
    return None


# ----- Host (RFC 9110 7.2, RFC 3986 3.2.2) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (b"example.com", True),
        (b"example.com:8080", True),
        (b"127.0.0.1:80", True),
        (b"[::1]:8000", True),
        (b"xn--nxasmq6b.example", True),
        (b"", True),  # RFC 9112 3.2: an empty Host when the target has no authority
        (b"exa mple.com", False),
        (b"example.com/path", False),
        (b"user@example.com", False),
        (b"example.com\x00", False),
        (b'"quoted"', False),
    ],
)
def test_host_value_is_a_reg_name_or_ip_literal_with_optional_port(value: bytes, ok: bool) -> None:
    assert refused(check_host, value) == (None if ok else (400, "Invalid Host header"))


# ----- field values (RFC 9110 5.5) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(b"100-continue ", b"100-continue"), (b"a\t \t", b"a"), (b"a b", b"a b"), (b"a", b"a"), (b" \t", b"")],
)
def test_trailing_ows_is_not_part_of_a_field_value(value: bytes, expected: bytes) -> None:
    assert field_value(value) == expected


# ----- version, framing, Host count (RFC 9112 2.3, 6.1, 6.3, 3.2) ---------------------------------------


@pytest.mark.parametrize(
    ("version", "transfer_encoding", "host_count", "outcome"),
    [
        ("1.1", None, 1, None),
        ("1.1", b"chunked", 1, None),
        ("1.1", b"gzip, chunked", 1, (501, "Unsupported transfer coding")),
        ("1.1", b"chunked,gzip", 1, (400, "Request body length cannot be determined")),  # 6.3(4): chunked last
        ("1.1", b"chunked, chunked", 1, (400, "Request body length cannot be determined")),  # 6.1: once
        ("1.1", b"identity", 1, (400, "Request body length cannot be determined")),
        ("1.1", b" Chunked ", 1, None),  # codings are case-insensitive tokens
        ("1.0", b"chunked", 1, (400, "Transfer-Encoding is not allowed in HTTP/1.0")),  # 6.1
        ("1.1", None, 0, (400, "Missing Host header")),  # 3.2: exactly one Host
        ("1.1", None, 2, (400, "Duplicate Host header")),
        ("1.0", None, 0, None),  # HTTP/1.0 needs no Host
        ("1.0", None, 2, None),
        ("2.0", None, 1, (505, "HTTP version not supported")),
        ("0.9", None, 1, (505, "HTTP version not supported")),
    ],
)
def test_head_framing_rules(
    version: str, transfer_encoding: bytes | None, host_count: int, outcome: tuple[int, str] | None
) -> None:
    assert refused(check_head, version, transfer_encoding, host_count) == outcome


@pytest.mark.parametrize(
    ("content_length", "limit", "outcome"),
    [
        (b"10", None, None),
        (b"10", 10, None),
        (b"11", 10, (413, "Request body too large")),  # RFC 9110 10.1.1: before any 100 Continue
        (b"0", 0, None),
    ],
)
def test_declared_length_over_the_limit_is_refused(content_length: bytes, limit: int | None, outcome: object) -> None:
    assert refused(check_declared_length, content_length, limit) == outcome


@pytest.mark.parametrize(
    ("transfer_encoding", "content_length", "bodyless"),
    [(None, None, True), (None, b"0", True), (None, b"5", False), (b"chunked", None, False), (b"chunked", b"0", False)],
)
def test_a_request_without_length_or_coding_has_no_body(
    transfer_encoding: bytes | None, content_length: bytes | None, bodyless: bool
) -> None:
    assert has_no_body(transfer_encoding, content_length) is bodyless  # RFC 9112 6.3(7)


# ----- method and target (RFC 9110 9, RFC 9112 3.2) --------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "outcome"),
    [
        (b"GET", "GET"),
        (b"OPTIONS", "OPTIONS"),
        (b"PROPFIND", "PROPFIND"),  # any token is a method; the app decides
        (b"CONNECT", (405, "CONNECT is not supported over HTTP/1.1")),
    ],
)
def test_request_method(raw: bytes, outcome: str | tuple[int, str]) -> None:
    if isinstance(outcome, tuple):
        assert refused(request_method, raw) == outcome
    else:
        assert request_method(raw) == outcome


@pytest.mark.parametrize(
    ("target", "method", "outcome"),
    [
        (b"/", "GET", ("/", b"/", b"")),
        (b"/a%20b?x=1&y=%20", "GET", ("/a b", b"/a%20b", b"x=1&y=%20")),  # path decoded, query raw
        (b"/p#frag", "GET", ("/p", b"/p", b"")),  # a fragment is not sent on the wire: dropped
        (b"/p?q#frag", "GET", ("/p", b"/p", b"q")),
        (b"/p#frag?notquery", "GET", ("/p", b"/p", b"")),  # RFC 3986 3.5: all after '#' is the fragment
        (b"http://example.com/x?y=1", "GET", ("/x", b"/x", b"y=1")),  # 3.2.2 absolute-form
        (b"http://example.com", "GET", ("/", b"/", b"")),
        (b"*", "OPTIONS", ("*", b"*", b"")),  # 3.2.4 asterisk-form
        (b"*", "GET", (400, "The asterisk-form target is for OPTIONS only")),
        (b"*x", "OPTIONS", (400, "The asterisk-form target is for OPTIONS only")),
        (b"/caf\xc3\xa9", "GET", (400, "Invalid characters in request target")),
        (b"http://[bad", "GET", (400, "Invalid request target")),
    ],
)
def test_request_target_forms(target: bytes, method: str, outcome: tuple[object, ...]) -> None:
    if isinstance(outcome[0], int):
        assert refused(request_target, target, method) == outcome
    else:
        assert request_target(target, method) == outcome


# ----- Upgrade (RFC 9110 7.8, RFC 7540 3.2, RFC 6455 4.2.1) ---------------------------------------------------


@pytest.mark.parametrize(
    ("version", "method", "upgrade", "connection_upgrade", "h2c_allowed", "websocket_allowed", "chosen"),
    [
        ("1.1", "GET", b"h2c", True, True, True, H2C),
        ("1.1", "GET", b"h2c", True, False, True, None),  # --http h1, TLS, or shutting down: served as HTTP/1.1
        ("1.1", "GET", b"websocket", True, True, True, WEBSOCKET),
        ("1.1", "POST", b"websocket", True, True, True, None),  # RFC 6455 4.1: only GET opens a WebSocket
        ("1.1", "GET", b"websocket", False, True, True, None),  # Connection must name upgrade
        ("1.1", "GET", b"websocket", True, True, False, None),  # --ws none
        ("1.1", "GET", b"foo", True, True, True, None),  # an unknown protocol: an ordinary request
        ("1.0", "GET", b"h2c", True, True, True, None),  # 7.8: Upgrade in HTTP/1.0 is ignored
        ("1.0", "GET", b"websocket", True, True, True, None),
    ],
)
def test_chosen_upgrade(
    version: str,
    method: str,
    upgrade: bytes,
    connection_upgrade: bool,
    h2c_allowed: bool,
    websocket_allowed: bool,
    chosen: object,
) -> None:
    assert chosen_upgrade(version, method, upgrade, connection_upgrade, h2c_allowed, websocket_allowed) == chosen


H2C_CONNECTION = (b"connection", b"Upgrade, HTTP2-Settings")


@pytest.mark.parametrize(
    ("headers", "transfer_encoding", "offered"),
    [
        ([H2C_CONNECTION, (b"http2-settings", SETTINGS)], None, SETTINGS),
        ([H2C_CONNECTION, (b"http2-settings", SETTINGS), (b"content-length", b"3")], None, SETTINGS),
        ([(b"connection", b"Upgrade"), (b"http2-settings", SETTINGS)], None, None),  # 3.2.1: named in Connection
        ([H2C_CONNECTION], None, None),  # 3.2.1: exactly one HTTP2-Settings
        ([H2C_CONNECTION, (b"http2-settings", SETTINGS), (b"http2-settings", SETTINGS)], None, None),
        ([H2C_CONNECTION, (b"http2-settings", b"!!")], None, None),  # not base64url SETTINGS
        # RFC 9113 6.5.2: settings out of range are declined (served as HTTP/1.1), not handed to HTTP/2
        ([H2C_CONNECTION, (b"http2-settings", b"AAIAAAAC")], None, None),  # ENABLE_PUSH 2
        ([H2C_CONNECTION, (b"http2-settings", b"AAgAAAAC")], None, None),  # ENABLE_CONNECT_PROTOCOL 2
        ([H2C_CONNECTION, (b"http2-settings", b"AASAAAAA")], None, None),  # INITIAL_WINDOW_SIZE 2^31
        ([H2C_CONNECTION, (b"http2-settings", b"AAUAAD__")], None, None),  # MAX_FRAME_SIZE 16383
        ([H2C_CONNECTION, (b"http2-settings", b"AAUBAAAA")], None, None),  # MAX_FRAME_SIZE 2^24
        ([H2C_CONNECTION, (b"http2-settings", SETTINGS)], b"chunked", None),  # a chunked body stays HTTP/1.1
        ([H2C_CONNECTION, (b"http2-settings", SETTINGS), (b"content-length", b"x")], None, None),
    ],
)
def test_h2c_offer(headers: list[tuple[bytes, bytes]], transfer_encoding: bytes | None, offered: bytes | None) -> None:
    assert h2c_settings(headers, transfer_encoding) == offered


# ----- response framing (RFC 9112 6, 7; RFC 9110 6.4.1, 15) -------------------------------------------------

DEFAULTS = DefaultHeaders(False, False, [(b"x-default", b"1")])
D = b"x-default: 1\r\n"


def writer(head_request: bool = False, http10: bool = False, keep_alive: bool = True) -> ResponseWriter:
    response = ResponseWriter(DEFAULTS)
    response.reset(head_request, http10, keep_alive)
    return response


@pytest.mark.parametrize(
    ("request_kind", "status", "headers", "body", "wire", "keep_alive"),
    [
        ("GET", 200, [], b"hi", b"HTTP/1.1 200 OK\r\n" + D + b"content-length: 2\r\n\r\nhi", True),
        (
            "GET",
            200,
            [(b"content-length", b"2")],
            b"hi",
            b"HTTP/1.1 200 OK\r\n" + D + b"content-length: 2\r\n\r\nhi",
            True,
        ),
        # HEAD keeps the length the body would have and sends no body (RFC 9110 9.3.2)
        ("HEAD", 200, [], b"hi", b"HTTP/1.1 200 OK\r\n" + D + b"content-length: 2\r\n\r\n", True),
        # 204 and 304 have no body and no computed length (RFC 9110 15.3.5, 15.4.5)
        ("GET", 204, [], b"", b"HTTP/1.1 204 No Content\r\n" + D + b"\r\n", True),
        ("GET", 304, [(b"etag", b'"x"')], b"", b"HTTP/1.1 304 Not Modified\r\n" + D + b'etag: "x"\r\n\r\n', True),
        # nor has any 1xx (RFC 9110 15.2), even one an app sends as its response's start
        ("GET", 103, [], b"hi", b"HTTP/1.1 103 Early Hints\r\n" + D + b"\r\n", True),
        # the app's "connection: close" ends the connection; other Connection values are the server's call
        (
            "GET",
            200,
            [(b"connection", b"close")],
            b"",
            b"HTTP/1.1 200 OK\r\n" + D + b"content-length: 0\r\nconnection: close\r\n\r\n",
            False,
        ),
        (
            "GET",
            200,
            [(b"connection", b"keep-alive")],
            b"",
            b"HTTP/1.1 200 OK\r\n" + D + b"content-length: 0\r\n\r\n",
            True,
        ),
        # HTTP/1.0 persists only when told (RFC 9112 9.3)
        (
            "GET/1.0",
            200,
            [],
            b"",
            b"HTTP/1.1 200 OK\r\n" + D + b"content-length: 0\r\nconnection: keep-alive\r\n\r\n",
            True,
        ),
    ],
)
def test_complete_response_in_one_piece(
    request_kind: str, status: int, headers: list[tuple[bytes, bytes]], body: bytes, wire: bytes, keep_alive: bool
) -> None:
    response = writer(head_request=request_kind == "HEAD", http10=request_kind.endswith("1.0"))
    assert response.head(status, headers, body, False, False, False) == wire
    assert response.keep_alive is keep_alive
    assert response.body(b"ignored", False, False) == b""


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"0", 0),
        (b"2", 2),
        (b"007", 7),
        (b"123456789012345678", 123456789012345678),  # the longest value the compiled loop reads
        (b"1234567890123456789012", 1234567890123456789012),  # longer: a Python int
        (b"", None),
        (b"-1", None),
        (b"+1", None),
        (b" 2", None),
        (b"2 ", None),
        (b"1e3", None),
        (b"0x10", None),
        ("\u0662".encode(), None),  # a non-ASCII digit is not a digit of RFC 9110 8.6
        (b"12345678901234567x", None),
        (b"1234567890123456789x", None),
    ],
)
def test_a_response_content_length_is_ascii_digits(value: bytes, expected: int | None) -> None:
    """RFC 9110 8.6: Content-Length = 1*DIGIT; anything else from the app is its error (a 500)."""
    response = writer()
    headers = [(b"content-length", value)]
    if expected is None:
        with pytest.raises(RuntimeError, match="Invalid Content-Length"):
            response.head(200, headers, b"", True, False, False)
    else:
        head = response.head(200, headers, b"", True, False, False)
        assert head.endswith(b"content-length: " + value + b"\r\n\r\n")
        assert response.expected == expected


def test_streamed_body_is_chunked_in_http_1_1() -> None:
    response = writer()
    head = response.head(200, [], b"ab", True, False, False)
    assert head == b"HTTP/1.1 200 OK\r\n" + D + b"transfer-encoding: chunked\r\n\r\n2\r\nab\r\n"
    assert response.body(b"", True, False) == b""  # an empty part is no chunk (it would end the body)
    assert response.body(b"cde", False, False) == b"3\r\ncde\r\n0\r\n\r\n"
    assert response.keep_alive and response.sent == 5


def test_streamed_body_in_http_1_0_ends_with_the_close() -> None:
    response = writer(http10=True)
    assert (
        response.head(200, [], b"ab", True, False, False) == b"HTTP/1.1 200 OK\r\n" + D + b"connection: close\r\n\r\nab"
    )
    assert response.body(b"c", False, False) == b"c"
    assert not response.keep_alive  # RFC 9112 6.3(8): the close delimits the body


def test_trailers_follow_a_chunked_body() -> None:
    response = writer()
    assert response.head(200, [], b"ab", False, True, False).endswith(b"transfer-encoding: chunked\r\n\r\n2\r\nab\r\n")
    assert response.trailers([(b"x-checksum", b"1")], True) == b"0\r\nx-checksum: 1\r\n\r\n"
    assert response.keep_alive


def test_trailers_are_dropped_when_the_body_has_a_length() -> None:
    response = writer()
    assert response.head(200, [(b"content-length", b"2")], b"ab", False, True, False).endswith(b"\r\n\r\nab")
    assert response.trailers([(b"x-checksum", b"1")], True) == b""  # RFC 9110 6.5: only chunked carries them
    assert response.keep_alive


def test_body_longer_than_content_length_is_cut_and_closes(caplog: pytest.LogCaptureFixture) -> None:
    response = writer()
    with caplog.at_level(logging.ERROR, "celeris.error"):
        assert response.head(200, [(b"content-length", b"3")], b"ab", True, False, False).endswith(b"\r\n\r\nab")
        assert response.body(b"cdef", False, False) == b"c"
    assert not response.keep_alive
    assert "longer than Content-Length" in caplog.text


def test_body_shorter_than_content_length_closes(caplog: pytest.LogCaptureFixture) -> None:
    response = writer()
    with caplog.at_level(logging.ERROR, "celeris.error"):
        response.head(200, [(b"content-length", b"5")], b"ab", True, False, False)
        response.body(b"", False, False)
    assert not response.keep_alive
    assert "shorter than Content-Length" in caplog.text


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ([(b"content-length", b"x")], "Invalid Content-Length"),
        ([(b"content-length", b"1"), (b"content-length", b"1")], "Invalid Content-Length"),
        ([(b"transfer-encoding", b"gzip")], "Unsupported Transfer-Encoding"),
        ([(b"bad name", b"v")], "Invalid HTTP header name"),
        ([(b"x", b"a\r\nset-cookie: evil")], "Invalid HTTP header value"),  # response splitting
    ],
)
def test_invalid_response_headers_raise(headers: list[tuple[bytes, bytes]], message: str) -> None:
    with pytest.raises(RuntimeError, match=message):
        writer().head(200, headers, b"", False, False, False)


def test_close_wanted_by_the_connection_is_announced() -> None:
    response = writer()
    assert response.head(200, [], b"", False, False, True).endswith(b"connection: close\r\n\r\n")
    assert not response.keep_alive


def test_server_made_answer_is_framed_like_an_app_response() -> None:
    headers, body = error_response(400, "Bad")
    response = writer(keep_alive=False)
    wire = response.head(400, headers, body, False, False, True)
    assert wire == (
        b"HTTP/1.1 400 Bad Request\r\n" + D + b"content-type: text/plain; charset=utf-8\r\n"
        b"content-length: 3\r\nconnection: close\r\n\r\nBad"
    )


def test_interim_responses() -> None:
    assert informational(100, []) == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert (
        informational(103, [(b"link", b"</a>; rel=preload")])
        == b"HTTP/1.1 103 Early Hints\r\nlink: </a>; rel=preload\r\n\r\n"
    )
    assert switching_protocols(D, [(b"upgrade", b"websocket")]) == (
        b"HTTP/1.1 101 Switching Protocols\r\n" + D + b"upgrade: websocket\r\n\r\n"
    )
