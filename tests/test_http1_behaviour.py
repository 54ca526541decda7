"""HTTP/1.1 connection and message behaviour: keep-alive, pipelining, bodies, framing, 100-continue,
app errors.

Raw sockets where the bytes matter (framing, closes, ordering), httpx where they do not.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.apps import hello, until_set
from tests.conftest import wait_for
from tests.rawhttp import connect, exchange, parse_responses, read_responses, read_until_close

pytestmark = pytest.mark.timeout(15)


def req(method: str = "GET", target: str = "/", *headers: str, body: bytes = b"", version: str = "1.1") -> bytes:
    """A raw request; HTTP/1.1 requests get `Host: t` unless one is given."""
    lines = list(headers)
    if version == "1.1" and not any(h.lower().startswith("host:") for h in lines):
        lines.insert(0, "Host: t")
    head = f"{method} {target} HTTP/{version}\r\n" + "".join(f"{h}\r\n" for h in lines) + "\r\n"
    return head.encode("latin-1") + body


@pytest.fixture
def error_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Records of the celeris loggers, even if a logging config turned their propagation off."""
    loggers = [logging.getLogger(name) for name in ("celeris", "celeris.error", "celeris.access")]
    saved = [logger.propagate for logger in loggers]
    for logger in loggers:
        logger.propagate = True
    caplog.set_level(logging.INFO, logger="celeris.error")
    try:
        yield caplog
    finally:
        for logger, propagate in zip(loggers, saved, strict=True):
            logger.propagate = propagate


def error_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "celeris.error" and r.levelno >= logging.ERROR]


# ----- keep-alive and HTTP/1.0 ---------------------------------------------------------------------


def test_rfc9112_9_3_keep_alive_serves_several_requests_on_one_connection(serve):
    server = serve(hello)
    with connect(server.port) as sock:
        for _ in range(3):
            sock.sendall(req())
            (response,) = read_responses(sock, 1)
            assert response.status == 200
            assert response.header(b"connection") is None


def test_keep_alive_timeout_closes_an_idle_connection(serve):
    server = serve(hello, timeout_keep_alive=1)
    with connect(server.port) as sock:
        started = time.monotonic()  # before the response ends, which starts the keep-alive timeout
        sock.sendall(req())
        read_responses(sock, 1)
        _, closed = read_until_close(sock, timeout=4)
        elapsed = time.monotonic() - started
    assert closed
    assert 0.7 <= elapsed < 4


def test_rfc9112_9_3_http_1_0_closes_by_default(serve):
    server = serve(hello)
    raw, closed = exchange(server.port, req(version="1.0"))
    assert closed
    (response,) = parse_responses(raw)[0]
    assert response.status == 200
    assert response.body == b"Hello"
    assert response.header(b"connection") == b"close"


def test_rfc9112_9_3_http_1_0_keep_alive_when_asked(serve):
    server = serve(hello)
    with connect(server.port) as sock:
        for _ in range(2):
            sock.sendall(req("GET", "/", "Connection: keep-alive", version="1.0"))
            (response,) = read_responses(sock, 1)
            assert response.header(b"connection") == b"keep-alive"
        sock.sendall(req(version="1.0"))
        raw, closed = read_until_close(sock)
    assert closed
    assert parse_responses(raw)[0][0].header(b"connection") == b"close"


@pytest.mark.parametrize(
    ("version", "connection", "persists"),
    [
        ("1.0", None, False),
        ("1.0", "Connection: keep-alive", True),
        ("1.0", "Proxy-Connection: Keep-Alive", True),
        ("1.0", "Connection: close", False),
        ("1.1", None, True),
        ("1.1", "Connection: keep-alive", True),
        ("1.1", "Connection: close", False),
    ],
)
def test_scope_http_version_is_the_request_lines_whatever_its_connection_field(serve, version, connection, persists):
    """The server may infer the version from the parser's keep-alive answer: it must stay the request line's."""
    versions: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            versions.append(scope["http_version"])
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

    server = serve(app)
    headers = ["Host: t"] if connection is None else ["Host: t", connection]
    with connect(server.port) as sock:
        sock.sendall(req("GET", "/", *headers, version=version))
        (response,) = read_responses(sock, 1)
        if persists:
            sock.sendall(req("GET", "/", *headers, version=version))
            read_responses(sock, 1)
        else:
            _, closed = read_until_close(sock)
            assert closed
    assert response.status == 200
    assert versions == [version] * (2 if persists else 1)


def test_rfc9112_9_6_connection_close_from_client_is_honoured(serve):
    server = serve(hello)
    raw, closed = exchange(server.port, req("GET", "/", "Connection: close") + req())
    assert closed
    responses, _ = parse_responses(raw)
    assert [r.status for r in responses] == [200]
    assert responses[0].header(b"connection") == b"close"


# ----- pipelining ------------------------------------------------------------------------------------


def test_rfc9112_9_3_2_pipelined_responses_stay_in_order_when_the_first_is_slowest(serve):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        delay = {"/slow": 0.3, "/medium": 0.1}.get(scope["path"], 0)
        await asyncio.sleep(delay)
        body = scope["path"].encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    server = serve(app)
    with connect(server.port) as sock:
        sock.sendall(req("GET", "/slow") + req("GET", "/medium") + req("GET", "/fast") + req("HEAD", "/head"))
        responses = read_responses(sock, 4, no_body=frozenset({3}))
    assert [r.body for r in responses] == [b"/slow", b"/medium", b"/fast", b""]
    assert responses[3].header(b"content-length") == b"5"


# ----- request bodies ----------------------------------------------------------------------------------


def test_rfc9112_7_1_chunked_request_body_reaches_the_app_in_pieces(serve):
    received: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while True:
            message = await receive()
            received.append(message)
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"".join(m["body"] for m in received)})

    server = serve(app)
    with connect(server.port) as sock:
        sock.sendall(req("POST", "/", "Transfer-Encoding: chunked") + b"5\r\nhello\r\n")
        wait_for(lambda: received)
        sock.sendall(b"6;ext=1\r\n world\r\n0\r\nX-Trailer: ignored\r\n\r\n")
        (response,) = read_responses(sock, 1)
    assert response.body == b"hello world"
    assert received[0] == {"type": "http.request", "body": b"hello", "more_body": True}
    assert received[-1]["more_body"] is False
    assert len(received) >= 2


def test_request_body_backpressure_pauses_reading_while_the_app_does_not_consume(serve):
    """A 32 MiB upload to an app that waits: the server stops reading (the client's upload stalls) and
    buffers a bounded amount (the app's first receive() gets everything buffered while it waited)."""
    release = threading.Event()
    first_part: list[int] = []
    digest: list[str] = []
    total = 32 * 1024 * 1024

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await until_set(release)
        hasher = hashlib.sha256()
        more = True
        while more:
            message = await receive()
            if not first_part:
                first_part.append(len(message["body"]))
            hasher.update(message["body"])
            more = message["more_body"]
        digest.append(hasher.hexdigest())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})

    server = serve(app)
    payload = bytes(range(256)) * (total // 256)
    with connect(server.port, timeout=10) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        sock.sendall(req("POST", "/", f"Content-Length: {total}"))
        sender = threading.Thread(target=sock.sendall, args=(payload,), daemon=True)
        sender.start()
        sender.join(0.5)  # a negative: the upload must NOT finish while the app does not read
        assert sender.is_alive(), "the whole upload was accepted while the app was not reading"
        release.set()
        sender.join(10)
        (response,) = read_responses(sock, 1, timeout=10)
    assert response.body == b"done"
    assert digest == [hashlib.sha256(payload).hexdigest()]
    assert 0 < first_part[0] <= 1024 * 1024, "the server kept reading into its buffer while paused"


def test_asgi_http_disconnect_when_the_client_goes_away(serve):
    messages: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] == "http.disconnect":
                return

    server = serve(app)
    with connect(server.port) as sock:
        sock.sendall(req("POST", "/", "Content-Length: 3", body=b"abc"))
        wait_for(lambda: messages)
    wait_for(lambda: messages[-1]["type"] == "http.disconnect")
    assert messages[0] == {"type": "http.request", "body": b"abc", "more_body": False}


def test_receive_after_the_whole_body_waits_for_the_disconnect_instead_of_repeating(serve):
    """Once more_body was False, receive() blocks (no empty http.request loop) until the response
    completes or the client leaves; then it says http.disconnect."""
    outcome: list[Any] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        outcome.append(await receive())
        try:
            outcome.append(await asyncio.wait_for(receive(), 0.3))
        except TimeoutError:
            outcome.append("blocked")
        waiting = asyncio.ensure_future(receive())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        outcome.append(await asyncio.wait_for(waiting, 1))

    server = serve(app)
    with connect(server.port) as sock:
        sock.sendall(req("POST", "/", "Content-Length: 2", body=b"hi"))
        (response,) = read_responses(sock, 1)
    assert response.body == b"ok"
    wait_for(lambda: len(outcome) == 3)
    assert outcome == [
        {"type": "http.request", "body": b"hi", "more_body": False},
        "blocked",
        {"type": "http.disconnect"},
    ]


def test_body_the_app_did_not_read_is_discarded_and_the_connection_stays_usable(serve):
    server = serve(hello)
    body = b"u" * 2_000_000
    with connect(server.port, timeout=10) as sock:
        sock.sendall(req("POST", "/", f"Content-Length: {len(body)}", body=body) + req("GET", "/next"))
        first, second = read_responses(sock, 2, timeout=10)
    assert (first.status, first.body) == (200, b"Hello")
    assert (second.status, second.body) == (200, b"Hello")


def test_send_after_disconnect_raises_oserror_in_the_app(serve):
    errors: list[BaseException] = []
    in_flight = threading.Event()
    gone = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await receive()
        in_flight.set()
        assert (await receive())["type"] == "http.disconnect"
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        except OSError as exc:
            errors.append(exc)
        gone.set()

    server = serve(app)
    with connect(server.port) as sock:
        sock.sendall(req())
        assert in_flight.wait(3)
    assert gone.wait(3)
    assert len(errors) == 1


# ----- response framing ----------------------------------------------------------------------------------


def body_app(headers: list[tuple[bytes, bytes]], *parts: bytes, status: int = 200) -> Any:
    """An app that answers with `headers` and sends `parts` as separate body messages."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": status, "headers": headers})
        for index, part in enumerate(parts):
            await send({"type": "http.response.body", "body": part, "more_body": index < len(parts) - 1})

    return app


def test_rfc9112_6_3_response_shorter_than_content_length_closes_and_logs(serve, error_log):
    server = serve(body_app([(b"content-length", b"10")], b"abc", b"de"))
    raw, closed = exchange(server.port, req() + req())
    assert closed
    assert raw.endswith(b"\r\n\r\nabcde")
    assert raw.count(b"HTTP/1.1") == 1
    wait_for(lambda: any("shorter than Content-Length" in m for m in error_messages(error_log)))


def test_rfc9112_6_3_response_longer_than_content_length_is_cut_closes_and_logs(serve, error_log):
    server = serve(body_app([(b"content-length", b"4")], b"abc", b"defgh"))
    raw, closed = exchange(server.port, req() + req())
    assert closed
    assert raw.endswith(b"\r\n\r\nabcd")
    assert raw.count(b"HTTP/1.1") == 1
    wait_for(lambda: any("longer than Content-Length" in m for m in error_messages(error_log)))


def test_rfc9112_7_1_streamed_response_without_content_length_is_chunked(serve):
    server = serve(body_app([], b"hello ", b"", b"world"))
    with connect(server.port) as sock:
        sock.sendall(req() + req())
        responses = read_responses(sock, 2)
    for response in responses:
        assert response.chunked
        assert response.header(b"content-length") is None
        assert response.body == b"hello world"


def test_batched_writes_keep_the_order_of_small_and_large_body_parts(serve):
    """Small parts wait for the end of the loop pass, a part over 8 KiB goes out at once: never ahead of them."""
    parts = [b"a" * 10, b"b" * 20000, b"c" * 10, b"d" * 9000, b"e"]
    server = serve(body_app([], *parts))
    with connect(server.port) as sock:
        sock.sendall(req() + req())  # pipelined: the second answer is batched behind the first
        responses = read_responses(sock, 2)
    assert [response.body for response in responses] == [b"".join(parts)] * 2


def test_streamed_response_to_http_1_0_is_delimited_by_close(serve):
    server = serve(body_app([], b"hello ", b"world"))
    raw, closed = exchange(server.port, req("GET", "/", "Connection: keep-alive", version="1.0"))
    assert closed
    (response,) = parse_responses(raw)[0]
    assert not response.chunked
    assert response.header(b"connection") == b"close"
    assert response.body == b"hello world"


def test_single_body_message_gets_content_length_in_one_write(serve):
    server = serve(body_app([], b"complete"))
    response = httpx.get(server.url)
    assert response.headers["content-length"] == "8"
    assert "transfer-encoding" not in response.headers


@pytest.mark.parametrize(
    ("method", "status"),
    [("HEAD", 200), ("GET", 204), ("GET", 304), ("HEAD", 404)],
    ids=["rfc9110_9_3_2_head", "rfc9110_15_3_5_204", "rfc9110_15_4_5_304", "rfc9110_9_3_2_head_404"],
)
def test_no_response_body_for_head_204_304(serve, method, status):
    server = serve(body_app([(b"content-type", b"text/plain")], b"this must not be sent", status=status))
    with connect(server.port) as sock:
        sock.sendall(req(method) + req("GET", "/", "Connection: close"))
        raw, closed = read_until_close(sock)
    assert closed
    first, sep, second = raw.partition(b"\r\n\r\n")
    assert sep
    assert second.startswith(b"HTTP/1.1 ")  # the next response follows the head directly
    assert b"transfer-encoding" not in first.lower()
    if status in (204, 304):
        assert b"content-length" not in first.lower()
    assert b"this must not be sent" not in second.partition(b"\r\n\r\n")[0]


def test_no_body_for_streamed_head_response(serve):
    server = serve(body_app([], b"abc", b"def"))
    with connect(server.port) as sock:
        sock.sendall(req("HEAD") + req())
        head, get = read_responses(sock, 2, no_body=frozenset({0}))
    assert head.status == 200
    assert get.body == b"abcdef"  # parsed right after the HEAD head: no body bytes came between


def test_rfc8297_early_hints_are_sent_without_a_body_before_the_response(serve):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        assert "http.response.early_hint" in scope["extensions"]
        await send({"type": "http.response.early_hint", "links": [b"</s.css>; rel=preload"]})
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    server = serve(app)
    with connect(server.port) as sock:
        sock.sendall(req())
        hint, final = read_responses(sock, 2)
    assert hint.status == 103
    assert hint.header(b"link") == b"</s.css>; rel=preload"
    assert hint.body == b""
    assert (final.status, final.body) == (200, b"ok")


# ----- Expect: 100-continue ----------------------------------------------------------------------------


def continue_app(go: threading.Event, read_body: bool = True) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await until_set(go)
        body = b""
        if read_body:
            more = True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"got:" + body})

    return app


def test_rfc9110_10_1_1_100_continue_is_sent_only_when_the_app_reads(serve):
    go = threading.Event()
    server = serve(continue_app(go))
    with connect(server.port) as sock:
        sock.sendall(req("POST", "/", "Expect: 100-continue", "Content-Length: 4"))
        sock.settimeout(0.4)
        with pytest.raises(TimeoutError):
            sock.recv(100)  # the app has not asked for the body yet
        go.set()
        (interim,) = read_responses(sock, 1)
        assert interim.status == 100
        sock.sendall(b"body")
        (final,) = read_responses(sock, 1)
    assert final.body == b"got:body"


def test_rfc9110_10_1_1_no_100_continue_when_the_app_answers_without_reading(serve):
    go = threading.Event()
    go.set()
    server = serve(continue_app(go, read_body=False))
    raw, closed = exchange(server.port, req("POST", "/", "Expect: 100-continue", "Content-Length: 4"))
    responses, _ = parse_responses(raw)
    assert [r.status for r in responses] == [200]
    assert responses[0].header(b"connection") == b"close"  # the unread body would desync the connection
    assert closed


def test_rfc9110_10_1_1_no_100_continue_for_http_1_0(serve):
    go = threading.Event()
    go.set()
    server = serve(continue_app(go))
    with connect(server.port) as sock:
        sock.sendall(req("POST", "/", "Expect: 100-continue", "Content-Length: 4", version="1.0"))
        sock.settimeout(0.4)
        with pytest.raises(TimeoutError):
            sock.recv(100)  # the app is reading, but an HTTP/1.0 client does not know 100 Continue
        sock.sendall(b"body")
        raw, closed = read_until_close(sock)
    assert closed
    responses, _ = parse_responses(raw)
    assert [(r.status, r.body) for r in responses] == [(200, b"got:body")]


# ----- app errors and ASGI message rules ---------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        (b"x-bad", b"a\r\nset-cookie: injected=1"),
        (b"x-bad", b"a\nb"),
        (b"x-bad", b"a\x00b"),
        (b"bad name", b"v"),
        (b"x-bad:", b"v"),
        (b"x\r\nset-cookie", b"v"),
    ],
    ids=["crlf_in_value", "lf_in_value", "nul_in_value", "space_in_name", "colon_in_name", "crlf_in_name"],
)
def test_rfc9110_5_5_response_header_injection_is_refused_with_500(serve, header, error_log):
    errors: list[BaseException] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [header]})
        try:
            await send({"type": "http.response.body", "body": b"ok"})
        except RuntimeError as exc:
            errors.append(exc)
            raise

    server = serve(app)
    raw, closed = exchange(server.port, req())
    responses, _ = parse_responses(raw)
    assert [r.status for r in responses] == [500]
    assert b"injected" not in raw
    assert b"set-cookie" not in raw.lower()
    assert len(errors) == 1
    assert closed


def answered_after_everything_before(port: int) -> None:
    """A round trip on a new connection: whatever an earlier failure scheduled on the server's loop
    (a second log line, say) has run by the time this later request is answered."""
    raw, _ = exchange(port, req("GET", "/after", "Connection: close"))
    assert parse_responses(raw)[0][0].status == 200


async def answer_after(scope: dict[str, Any], send: Any) -> bool:
    """Answers GET /after with 200 (see answered_after_everything_before); True if it did."""
    if scope["path"] != "/after":
        return False
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})
    return True


def test_exception_before_response_start_is_500_and_logged_once(serve, error_log):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or await answer_after(scope, send):
            return
        raise ValueError("boom before start")

    server = serve(app)
    raw, closed = exchange(server.port, req())
    (response,) = parse_responses(raw)[0]
    assert response.status == 500
    assert response.header(b"connection") == b"close"
    assert closed
    wait_for(lambda: error_log.records)
    answered_after_everything_before(server.port)
    logged = [r for r in error_log.records if r.exc_info]
    assert len(logged) == 1
    assert "boom before start" in str(logged[0].exc_info[1])


def test_exception_after_response_start_closes_the_connection_and_is_logged_once(serve, error_log):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or await answer_after(scope, send):
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise ValueError("boom mid-body")

    server = serve(app)
    raw, closed = exchange(server.port, req() + req())
    assert closed
    assert raw.count(b"HTTP/1.1 ") == 1
    assert not raw.endswith(b"0\r\n\r\n")  # the chunked body was not terminated: the client sees it failed
    wait_for(lambda: error_log.records)
    answered_after_everything_before(server.port)
    logged = [r for r in error_log.records if r.exc_info]
    assert len(logged) == 1
    assert "boom mid-body" in str(logged[0].exc_info[1])


def test_returning_without_a_response_is_500(serve, error_log):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        return None

    server = serve(app)
    raw, _ = exchange(server.port, req())
    assert parse_responses(raw)[0][0].status == 500


ORDER_CASES = {
    "body_before_start": [{"type": "http.response.body", "body": b"x"}],
    "start_twice": [
        {"type": "http.response.start", "status": 200, "headers": []},
        {"type": "http.response.start", "status": 200, "headers": []},
    ],
    "body_after_complete": [
        {"type": "http.response.start", "status": 200, "headers": []},
        {"type": "http.response.body", "body": b"x"},
        {"type": "http.response.body", "body": b"y"},
    ],
    "unknown_type": [{"type": "http.response.nonsense"}],
    "trailers_not_announced": [
        {"type": "http.response.start", "status": 200, "headers": []},
        {"type": "http.response.trailers", "headers": []},
    ],
}


@pytest.mark.parametrize("case", list(ORDER_CASES))
def test_asgi_messages_in_the_wrong_order_raise_runtime_error_in_the_app(serve, case):
    raised: list[BaseException] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        try:
            for message in ORDER_CASES[case]:
                await send(message)
        except RuntimeError as exc:
            raised.append(exc)

    server = serve(app)
    exchange(server.port, req("GET", "/", "Connection: close"))
    assert len(raised) == 1
    assert "ASGI" in str(raised[0]) or "message" in str(raised[0])
