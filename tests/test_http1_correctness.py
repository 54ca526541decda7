"""HTTP/1.1 defects outside clients found (issue 12), each through a real socket.

Declined upgrades keep their body and the connection, Upgrade on HTTP/1.0 is ignored, field values
lose their trailing whitespace, the sniffer hands everything but the HTTP/2 preface to HTTP/1.1,
the asterisk-form is for OPTIONS only, server-made answers carry the default headers, an
oversized body is refused before 100 Continue (also on an h2c upgrade), and the server logs
refused requests and aborted responses.
"""

from __future__ import annotations

import json
import logging
import queue
import socket
import subprocess
import threading
import time
from typing import Any

import pytest

from tests.apps import echo, hello, scope_json
from tests.conftest import access_lines
from tests.rawhttp import connect, exchange, parse_responses, read_responses, read_until_close

pytestmark = pytest.mark.timeout(30)

FOLLOWER = b"GET /after HTTP/1.1\r\nHost: t\r\n\r\n"
SETTINGS = b"AAMAAABkAARAAAAAAAIAAAAA"  # a valid HTTP2-Settings value


def head(*fields: bytes, method: bytes = b"POST", target: bytes = b"/", version: bytes = b"1.1") -> bytes:
    return b"%s %s HTTP/%s\r\nHost: t\r\n%s\r\n" % (method, target, version, b"".join(f + b"\r\n" for f in fields))


def chunked(body: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


# ----- defect 1: a declined upgrade is an ordinary request -------------------------------------------

BODY = b"every byte of this body reaches the app"
BIG = bytes(range(256)) * 1024  # 256 KiB: more than the server buffers before it pauses reading
UPGRADE_FOO = (b"Connection: upgrade", b"Upgrade: foo")
H2C = (b"Connection: Upgrade, HTTP2-Settings", b"Upgrade: h2c", b"HTTP2-Settings: " + SETTINGS)
H2C_NO_SETTINGS = (b"Connection: Upgrade", b"Upgrade: h2c")

DECLINED_UPGRADES = [
    ("foo_content_length", head(*UPGRADE_FOO, b"Content-Length: %d" % len(BODY)) + BODY, BODY),
    ("foo_chunked", head(*UPGRADE_FOO, b"Transfer-Encoding: chunked") + chunked(BODY), BODY),
    ("foo_large_content_length", head(*UPGRADE_FOO, b"Content-Length: %d" % len(BIG)) + BIG, BIG),
    ("foo_no_body", head(*UPGRADE_FOO, method=b"GET"), b""),
    ("h2c_chunked", head(*H2C, b"Transfer-Encoding: chunked") + chunked(BODY), BODY),
    ("h2c_without_settings", head(*H2C_NO_SETTINGS, b"Content-Length: %d" % len(BODY)) + BODY, BODY),
]


@pytest.mark.parametrize(("request_bytes", "body"), [pytest.param(r, b, id=n) for n, r, b in DECLINED_UPGRADES])
def test_declined_upgrade_keeps_its_body_and_the_connection(serve, request_bytes, body):
    server = serve(echo)
    with connect(server.port, timeout=10) as sock:
        sock.sendall(request_bytes + FOLLOWER)
        first, second = read_responses(sock, 2, timeout=10)
        assert (first.status, first.body) == (200, body)
        assert first.header(b"connection") is None  # keep-alive goes on
        assert (second.status, json.loads(second.header(b"x-scope"))["path"]) == (200, "/after")
        sock.sendall(FOLLOWER)  # and the connection still serves
        (third,) = read_responses(sock, 1, timeout=10)
        assert third.status == 200


def test_declined_upgrade_body_split_across_reads(serve):
    """The head, the chunk and the last chunk each in a read of its own: the next part goes out only
    once the app has seen the one before (the upgrade point is the end of the head's read)."""
    seen: queue.Queue[bytes] = queue.Queue()  # b"" when the app starts, then each body part it receives

    async def noting_echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def noted_receive() -> dict[str, Any]:
            message = await receive()
            seen.put(message.get("body", b""))
            return message  # type: ignore[no-any-return]

        seen.put(b"")
        await echo(scope, noted_receive, send)

    def wait_seen(part: bytes) -> None:
        while seen.get(timeout=5) != part:
            pass

    server = serve(noting_echo)
    with connect(server.port, timeout=10) as sock:
        sock.sendall(head(*UPGRADE_FOO, b"Transfer-Encoding: chunked"))
        wait_seen(b"")
        sock.sendall(b"5\r\nhello\r\n")
        wait_seen(b"hello")
        sock.sendall(b"0\r\n\r\n" + FOLLOWER)
        first, second = read_responses(sock, 2, timeout=10)
    assert (first.body, second.status) == (b"hello", 200)


# ----- defect 2: Upgrade on HTTP/1.0 is ignored ------------------------------------------------------


def test_h2c_upgrade_on_http_1_0_is_served_as_http_1(serve):
    server = serve(echo)
    raw, _ = exchange(server.port, head(*H2C, b"Content-Length: 2", version=b"1.0") + b"hi")
    (response,), _ = parse_responses(raw)
    assert (response.status, response.body) == (200, b"hi")
    assert json.loads(response.header(b"x-scope"))["http_version"] == "1.0"


def test_websocket_upgrade_on_http_1_0_is_served_as_a_plain_request(serve):
    server = serve(echo)
    websocket = (
        b"Connection: Upgrade",
        b"Upgrade: websocket",
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        b"Sec-WebSocket-Version: 13",
    )
    raw, _ = exchange(server.port, head(*websocket, method=b"GET", version=b"1.0"))
    (response,), _ = parse_responses(raw)
    assert response.status == 200
    assert json.loads(response.header(b"x-scope"))["http_version"] == "1.0"


# ----- defect 3: OWS around field values ---------------------------------------------------------------


def test_trailing_whitespace_is_not_part_of_a_field_value(serve):
    server = serve(scope_json)
    request = b"GET / HTTP/1.1\r\nHost: example.com \r\nX-Pad:  padded value   \t\r\nX-Empty: \t \r\n\r\n"
    with connect(server.port) as sock:
        sock.sendall(request)
        (response,) = read_responses(sock, 1)
    assert response.status == 200
    headers = json.loads(response.body)["headers"]
    assert headers == [["host", "example.com"], ["x-pad", "padded value"], ["x-empty", ""]]


def test_expect_with_trailing_whitespace_gets_100_continue(serve):
    server = serve(echo)
    with connect(server.port) as sock:
        sock.sendall(head(b"Expect: 100-continue ", b"Content-Length: 2"))
        (interim,) = read_responses(sock, 1)
        assert interim.status == 100
        sock.sendall(b"ok")
        (response,) = read_responses(sock, 1)
    assert (response.status, response.body) == (200, b"ok")


# ----- defect 4: with --http auto, everything but the HTTP/2 preface reaches HTTP/1.1 -------------------


def test_leading_empty_lines_before_the_request_line_are_ignored(serve):
    server = serve(hello)
    with connect(server.port) as sock:
        sock.sendall(b"\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
        (response,) = read_responses(sock, 1)
    assert (response.status, response.body) == (200, b"Hello")


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        pytest.param(b"GARBAGE\r\n\r\n", 400, id="garbage"),
        pytest.param(b"G@T / HTTP/1.1\r\nHost: t\r\n\r\n", 400, id="bad_method_character"),
        pytest.param(b"GET\t/\tHTTP/1.1\r\nHost: t\r\n\r\n", 400, id="tab_separators"),
        pytest.param(b"GET /\r\nHost: t\r\n\r\n", 505, id="no_version_is_http_0_9"),
        pytest.param(b"GET / HTTP/3.0\r\nHost: t\r\n\r\n", 505, id="unknown_version"),
    ],
)
def test_malformed_request_line_is_answered_in_http_1_1(serve, request_bytes, status):
    server = serve(hello)
    assert server.config.http == "auto"
    raw, closed = exchange(server.port, request_bytes)
    assert closed
    (response,), rest = parse_responses(raw)
    assert (response.status, response.header(b"connection"), rest) == (status, b"close", b"")


@pytest.mark.parametrize(
    "preface",
    [
        pytest.param(b"INVALID CONNECTION PREFACE\r\n\r\n", id="h2spec_3_5"),
        pytest.param(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\rQ", id="last_byte_wrong"),
        pytest.param(b"GET / RTSP/1.0\r\n\r\n", id="another_protocol"),
    ],
)
def test_invalid_http2_preface_is_closed_without_an_answer(serve, preface):
    """RFC 9113 3.4 (h2spec 3.5/2): a closed connection; HTTP/1.1 bytes would be garbage to this client."""
    server = serve(hello)
    raw, closed = exchange(server.port, preface, timeout=5)
    assert (raw, closed) == (b"", True)


# ----- defect 5: the asterisk-form is for OPTIONS only -------------------------------------------------


@pytest.mark.parametrize(
    ("method", "target", "status"),
    [
        (b"GET", b"*", 400),
        (b"POST", b"*", 400),
        (b"GET", b"*x", 400),
        (b"OPTIONS", b"*x", 400),
        (b"OPTIONS", b"*", 200),
    ],
)
def test_asterisk_form(serve, method, target, status):
    server = serve(hello)
    with connect(server.port) as sock:
        sock.sendall(head(b"Content-Length: 0", method=method, target=target))
        (response,) = read_responses(sock, 1)
    assert response.status == status


# ----- defect 6: server-made answers carry the default headers ------------------------------------------


SERVER_MADE = [
    ("400", {}, b"GET / HTTP/1.1\r\n\r\n", 400),
    ("413", {"limit_request_body": 4}, head(b"Content-Length: 5") + b"12345", 413),
    ("414", {"limit_request_line": 64}, b"GET /" + b"a" * 100 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414),
    ("431", {"limit_request_headers": 2}, head(b"A: 1", b"B: 2", b"C: 3", method=b"GET"), 431),
    ("505", {}, b"GET / HTTP/2.1\r\nHost: t\r\n\r\n", 505),
    ("408", {"timeout_request_header": 0.5}, b"GET / HTTP/1.1\r\nHost: t\r\n", 408),
]


@pytest.mark.parametrize(("settings", "request_bytes", "status"), [pytest.param(*c[1:], id=c[0]) for c in SERVER_MADE])
def test_server_made_answers_carry_date_and_server(serve, settings, request_bytes, status):
    server = serve(hello, **settings)
    raw, closed = exchange(server.port, request_bytes, timeout=5)
    assert closed
    (response,), _ = parse_responses(raw)
    assert response.status == status
    assert response.header(b"server") == b"celeris"
    assert response.header(
        b"date",
    ).endswith(b" GMT")
    assert response.header_names().count(b"date") == 1


def test_server_made_answers_follow_no_date_and_no_server_header(serve):
    server = serve(hello, date_header=False, server_header=False, headers=[("x-extra", "1")])
    raw, _ = exchange(server.port, b"GET / HTTP/1.1\r\n\r\n")
    (response,), _ = parse_responses(raw)
    assert response.status == 400
    assert (response.header(b"date"), response.header(b"server"), response.header(b"x-extra")) == (None, None, b"1")


def test_server_made_503_and_500_carry_date_and_server(serve):
    started = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/fail":
            raise RuntimeError("boom")
        started.set()
        while (await receive())["type"] != "http.disconnect":  # holds the only slot until the client leaves
            pass

    with connect(serve(app).port) as sock:
        sock.sendall(head(method=b"GET", target=b"/fail"))
        (failed,) = read_responses(sock, 1, timeout=5)
    assert failed.status == 500
    assert failed.header(b"server") == b"celeris" and failed.header(b"date")
    server = serve(app, limit_concurrency=1)
    with connect(server.port) as busy, connect(server.port) as second:
        busy.sendall(head(method=b"GET"))
        assert started.wait(5)
        second.sendall(head(method=b"GET"))
        (refused,) = read_responses(second, 1)
    assert refused.status == 503
    assert refused.header(b"server") == b"celeris" and refused.header(b"date")


# ----- defect 7: an oversized body is refused before 100 Continue ---------------------------------------


def test_expect_continue_with_a_body_over_the_limit_gets_413_and_no_100(serve):
    server = serve(echo, limit_request_body=1000)
    with connect(server.port) as sock:
        sock.sendall(head(b"Expect: 100-continue", b"Content-Length: 5000"))
        raw, closed = read_until_close(sock)
    assert raw.startswith(b"HTTP/1.1 413 ")
    assert b"100 Continue" not in raw
    assert closed


def test_expect_continue_within_the_limit_still_gets_100(serve):
    server = serve(echo, limit_request_body=1000)
    with connect(server.port) as sock:
        sock.sendall(head(b"Expect: 100-continue", b"Content-Length: 1000"))
        (interim,) = read_responses(sock, 1)
        assert interim.status == 100
        sock.sendall(b"x" * 1000)
        (response,) = read_responses(sock, 1)
    assert (response.status, len(response.body)) == (200, 1000)


# ----- defect 8: 100 Continue on an h2c upgrade with a body ---------------------------------------------


def test_h2c_upgrade_with_expect_continue_gets_100_before_the_body(serve):
    server = serve(echo)
    with connect(server.port, timeout=5) as sock:
        sock.sendall(head(*H2C, b"Expect: 100-continue", b"Content-Length: 5"))
        sock.settimeout(3)
        interim = b""
        while b"\r\n\r\n" not in interim:
            chunk = sock.recv(4096)
            assert chunk, "closed before 100 Continue"
            interim += chunk
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"hello")
        switched = interim[len(b"HTTP/1.1 100 Continue\r\n\r\n") :]
        while b"\r\n\r\n" not in switched:
            chunk = sock.recv(4096)
            assert chunk, "closed before 101"
            switched += chunk
    assert switched.startswith(b"HTTP/1.1 101 ")


def test_curl_h2c_upload_with_expect_continue_does_not_wait(serve, tmp_path):
    upload = tmp_path / "upload.bin"
    upload.write_bytes(b"y" * (2 * 1024 * 1024))
    server = serve(echo)
    out = subprocess.run(
        [
            "curl",
            "-s",
            "--http2",
            "--expect100-timeout",
            "60",  # without a 100 Continue curl would wait a minute: the subprocess timeout fails first
            "--data-binary",
            f"@{upload}",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}|%{http_version}|%{size_download}",
            server.url + "/",
        ],
        capture_output=True,
        timeout=20,
    )
    assert out.stdout == b"200|2|%d" % (2 * 1024 * 1024)


# ----- issue 16: refused requests and aborted responses are logged --------------------------------------


def test_refused_request_is_logged_as_a_warning(serve, caplog):
    caplog.set_level(logging.WARNING, logger="celeris.error")
    server = serve(hello)
    exchange(server.port, b"GET / HTTP/1.1\r\n\r\n")
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(m.startswith("Invalid HTTP request received.") and "Missing Host header" in m for m in messages)


def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_download_the_client_aborts_is_still_logged(serve, access_log):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1000000")]})
        await send({"type": "http.response.body", "body": b"z" * 1000, "more_body": True})
        while (await receive())["type"] != "http.disconnect":
            pass

    server = serve(app, access_log_format="%(s)s %(b)s %(r)s")
    with connect(server.port) as sock:
        sock.sendall(head(method=b"GET", target=b"/big"))
        received = b""
        while b"z" * 1000 not in received:
            received += sock.recv(65536)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # reset
    wait_until(lambda: access_lines(access_log))
    assert access_lines(access_log) == ["200 1000 GET /big HTTP/1.1"]


def test_response_the_server_aborts_is_still_logged(serve, access_log):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]})
        await send({"type": "http.response.body", "body": b"half", "more_body": True})
        raise RuntimeError("the app fails mid-body")

    server = serve(app, access_log_format="%(s)s %(b)s")
    raw, closed = exchange(server.port, head(method=b"GET"))
    assert closed and raw.endswith(b"half")
    wait_until(lambda: access_lines(access_log))
    assert access_lines(access_log) == ["200 4"]
