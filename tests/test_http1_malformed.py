"""Malformed HTTP/1.1 requests: one row per case, named after the RFC 9110/9112 section it enforces.

Every row is sent as raw bytes followed by a valid pipelined request. The server must answer the bad
request with the status the RFC asks for and `connection: close`, close the connection, never call
the app, and never answer the request pipelined behind the bad one (request smuggling relies on a
server that keeps reading after it lost track of the framing). Bytes that are not HTTP at all get no
answer: a 400 in HTTP/1.1 syntax would be noise to whatever protocol the peer speaks.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.rawhttp import exchange, parse_responses, read_until_close

pytestmark = pytest.mark.timeout(15)

FOLLOWER = b"GET /second HTTP/1.1\r\nHost: example.com\r\n\r\n"


def post(*headers: bytes, body: bytes = b"", version: bytes = b"1.1") -> bytes:
    """A POST with the given header lines (and Host first for HTTP/1.1)."""
    host = [b"Host: example.com"] if version == b"1.1" else []
    return b"POST /upload HTTP/%s\r\n%s\r\n\r\n%s" % (version, b"\r\n".join(host + list(headers)), body)


def get(*headers: bytes, target: bytes = b"/", version: bytes = b"1.1") -> bytes:
    lines = b"".join(line + b"\r\n" for line in headers)
    return b"GET %s HTTP/%s\r\n%s\r\n" % (target, version, lines)


HOST = b"Host: example.com"
CHUNKED = b"Transfer-Encoding: chunked"

CASES = [
    # RFC 9112 6.1 / 6.3(3): Content-Length together with Transfer-Encoding is a smuggling vector.
    (
        "rfc9112_6_1_content_length_with_transfer_encoding",
        400,
        post(b"Content-Length: 5", CHUNKED, body=b"0\r\n\r\n"),
    ),
    (
        "rfc9112_6_1_transfer_encoding_with_content_length",
        400,
        post(CHUNKED, b"Content-Length: 5", body=b"0\r\n\r\n"),
    ),
    # RFC 9112 6.3(5) and RFC 9110 8.6: an invalid Content-Length leaves the framing unknown.
    ("rfc9110_8_6_content_length_not_a_number", 400, post(b"Content-Length: abc")),
    ("rfc9110_8_6_content_length_negative", 400, post(b"Content-Length: -1")),
    ("rfc9110_8_6_content_length_with_sign", 400, post(b"Content-Length: +1", body=b"x")),
    ("rfc9110_8_6_content_length_list_of_differing_values", 400, post(b"Content-Length: 1, 2", body=b"xy")),
    (
        "rfc9110_8_6_duplicate_differing_content_length",
        400,
        post(b"Content-Length: 1", b"Content-Length: 2", body=b"xy"),
    ),
    # RFC 9112 6.1: a transfer coding the server does not know is 501 (framing is still chunked).
    (
        "rfc9112_6_1_unknown_transfer_coding_is_501",
        501,
        post(b"Transfer-Encoding: gzip, chunked", body=b"0\r\n\r\n"),
    ),
    (
        "rfc9112_6_1_unknown_transfer_coding_split_over_two_lines_is_501",
        501,
        post(b"Transfer-Encoding: gzip", CHUNKED, body=b"0\r\n\r\n"),
    ),
    # RFC 9112 6.3(4): chunked not the final coding means the body length cannot be known: 400.
    ("rfc9112_6_3_transfer_encoding_without_final_chunked", 400, post(b"Transfer-Encoding: gzip")),
    ("rfc9112_6_3_chunked_not_final", 400, post(b"Transfer-Encoding: chunked, gzip", body=b"0\r\n\r\n")),
    (
        "rfc9112_6_1_chunked_applied_twice",
        400,
        post(b"Transfer-Encoding: chunked, chunked", body=b"0\r\n\r\n"),
    ),
    # RFC 9112 7.1: the chunked grammar.
    ("rfc9112_7_1_chunk_size_not_hex", 400, post(CHUNKED, body=b"zz\r\nabc\r\n0\r\n\r\n")),
    ("rfc9112_7_1_chunk_data_longer_than_its_size", 400, post(CHUNKED, body=b"2\r\nabcdef\r\n0\r\n\r\n")),
    ("rfc9112_7_1_chunk_size_line_without_crlf", 400, post(CHUNKED, body=b"3\nabc\r\n0\r\n\r\n")),
    # RFC 9112 3.2: exactly one valid Host on HTTP/1.1.
    ("rfc9112_3_2_missing_host", 400, get()),
    ("rfc9112_3_2_duplicate_host", 400, get(HOST, b"Host: other.example")),
    ("rfc9112_3_2_host_with_space", 400, get(b"Host: exa mple.com")),
    ("rfc9112_3_2_host_with_userinfo", 400, get(b"Host: user@example.com")),
    ("rfc9112_3_2_host_with_path", 400, get(b"Host: example.com/path")),
    # RFC 9112 5.1: whitespace between field name and colon.
    ("rfc9112_5_1_space_before_colon", 400, get(HOST, b"X-Thing : v")),
    ("rfc9112_5_1_tab_before_colon", 400, get(HOST, b"X-Thing\t: v")),
    ("rfc9112_5_1_leading_whitespace_on_first_field", 400, get(b" X-Thing: v", HOST)),
    # RFC 9110 5.5 and RFC 9112 2.2: NUL, CR, LF and other controls in fields and the target.
    ("rfc9110_5_5_nul_in_field_value", 400, get(HOST, b"X-Thing: a\x00b")),
    ("rfc9110_5_5_control_character_in_field_value", 400, get(HOST, b"X-Thing: a\x01b")),
    ("rfc9110_5_5_delete_in_field_value", 400, get(HOST, b"X-Thing: a\x7fb")),
    ("rfc9110_5_1_control_character_in_field_name", 400, get(HOST, b"X\x01Thing: v")),
    ("rfc9112_2_2_bare_cr_in_field_value", 400, get(HOST, b"X-Thing: a\rb")),
    ("rfc9112_3_2_control_character_in_request_target", 400, get(HOST, target=b"/a\x01b")),
    ("rfc9112_3_2_whitespace_in_request_target", 400, get(HOST, target=b"/a b")),
    # RFC 9112 5.2: obs-fold in a request is rejected.
    ("rfc9112_5_2_obs_fold", 400, get(HOST, b"X-Thing: a", b" folded")),
    ("rfc9112_5_2_obs_fold_with_tab", 400, get(HOST, b"X-Thing: a", b"\tfolded")),
    # RFC 9112 3 and RFC 9110 15.5.15: a target longer than we parse is 414.
    ("rfc9110_15_5_15_request_target_too_long_is_414", 414, get(HOST, target=b"/" + b"a" * 9000)),
    # RFC 9110 5.4 (and RFC 6585 5, status 431): too many fields, or one too large.
    ("rfc9110_5_4_too_many_header_fields_is_431", 431, get(HOST, *(b"X-%d: v" % i for i in range(120)))),
    ("rfc9110_5_4_header_field_too_large_is_431", 431, get(HOST, b"X-Thing: " + b"v" * 9000)),
    # RFC 9110 15.6.6 and 2.5: only HTTP/1.0 and HTTP/1.1 are served over this syntax.
    ("rfc9110_15_6_6_http_1_2_is_505", 505, get(HOST, version=b"1.2")),
    ("rfc9110_15_6_6_http_2_0_request_line_is_505", 505, get(HOST, version=b"2.0")),
    ("rfc9110_15_6_6_http_3_0_is_505", 505, get(HOST, version=b"3.0")),
    ("rfc9110_15_6_6_http_0_9_is_505", 505, get(HOST, version=b"0.9")),
    # RFC 9112 6.1: HTTP/1.0 with Transfer-Encoding is faulty framing.
    ("rfc9112_6_1_http_1_0_with_transfer_encoding", 400, post(CHUNKED, body=b"0\r\n\r\n", version=b"1.0")),
    # Bytes that are not HTTP at all reach the HTTP/1.1 parser too: 400. A request line naming another
    # protocol than HTTP (h2spec's "INVALID CONNECTION PREFACE") is closed without an answer.
    ("rfc9112_2_2_tls_client_hello_on_plain_port", 400, b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 40),
    ("rfc9112_2_2_text_that_is_not_a_request_line", None, b"hello there, server\r\n\r\n"),
    ("rfc9112_2_2_nul_bytes", 400, b"\x00" * 64 + b"\r\n"),
]


class RecordingApp:
    """Records every call; malformed requests must never produce one."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.calls.append(scope["path"])
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(scope="module")
def recording_server():
    from tests.conftest import running_server

    app = RecordingApp()
    with running_server(app) as server:
        yield server, app


@pytest.mark.parametrize(("status", "request_bytes"), [pytest.param(s, r, id=n) for n, s, r in CASES])
def test_malformed_request_is_refused_and_closes(recording_server, status, request_bytes):
    server, app = recording_server
    app.calls.clear()
    raw, closed = exchange(server.port, request_bytes + FOLLOWER)
    assert closed, f"connection left open after {raw[:80]!r}"
    responses, rest = parse_responses(raw)
    if status is None:
        assert raw == b""
    else:
        assert [r.status for r in responses] == [status], raw[:200]
        assert responses[0].header(b"connection") == b"close"
        assert rest == b""
    assert app.calls == []


def test_malformed_pipelined_request_is_answered_after_the_good_one(recording_server):
    """A bad request behind a good one: the good one is answered, then the 400, then the close."""
    server, app = recording_server
    app.calls.clear()
    good = b"GET /first HTTP/1.1\r\nHost: example.com\r\n\r\n"
    raw, closed = exchange(server.port, good + get(HOST, b"X-Thing : v") + FOLLOWER)
    assert closed
    responses, rest = parse_responses(raw)
    assert [r.status for r in responses] == [200, 400]
    assert responses[0].header(b"connection") is None
    assert responses[1].header(b"connection") == b"close"
    assert rest == b""
    assert app.calls == ["/first"]


def test_malformed_chunk_after_the_app_started_disconnects_it_and_answers_400(serve):
    """The head was fine, so the app runs; when the body turns out broken it sees http.disconnect."""
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while True:
            message = await receive()
            seen.append(message)
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                break

    server = serve(app)
    with socket.create_connection(("127.0.0.1", server.port), timeout=3) as sock:
        sock.sendall(post(CHUNKED, body=b"3\r\nabc\r\n"))
        wait_for(lambda: seen)
        sock.sendall(b"zz\r\n" + FOLLOWER)
        raw, closed = read_until_close(sock)
    assert closed
    assert [r.status for r in parse_responses(raw)[0]] == [400]
    wait_for(lambda: seen[-1]["type"] == "http.disconnect")
    assert seen == [
        {"type": "http.request", "body": b"abc", "more_body": True},
        {"type": "http.disconnect"},
    ]
