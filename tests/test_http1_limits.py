"""HTTP/1.1 settings that protect the server and shape responses: concurrency limit, slow-client
timeouts, default headers and the access log.

The server checks timeouts on a 0.5 s tick, so a 1 s timeout fires between 1 and ~1.6 s.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from typing import Any

import httpx
import pytest

from tests.apps import echo, hello, until_set
from tests.conftest import access_lines, wait_for
from tests.rawhttp import connect, parse_responses, read_responses, read_until_close

pytestmark = pytest.mark.timeout(15)


def req(*headers: str, method: str = "GET", target: str = "/", body: bytes = b"") -> bytes:
    head = f"{method} {target} HTTP/1.1\r\nHost: t\r\n" + "".join(f"{h}\r\n" for h in headers) + "\r\n"
    return head.encode("latin-1") + body


# ----- --limit-concurrency --------------------------------------------------------------------------


def test_limit_concurrency_answers_503_beyond_the_limit(serve):
    release = threading.Event()
    started = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        started.set()
        await until_set(release)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"slow"})

    server = serve(app, limit_concurrency=1)
    with connect(server.port) as busy:
        busy.sendall(req())
        assert started.wait(3)
        with connect(server.port) as extra:
            extra.sendall(req())
            raw, closed = read_until_close(extra)
        responses, _ = parse_responses(raw)
        assert [r.status for r in responses] == [503]
        assert responses[0].header(b"connection") == b"close"
        assert closed
        release.set()
        (response,) = read_responses(busy, 1)
        assert response.body == b"slow"
    assert httpx.get(server.url).status_code == 200  # back under the limit


# ----- slow clients ---------------------------------------------------------------------------------


def test_timeout_request_header_answers_408_to_a_client_that_stalls_mid_headers(serve):
    server = serve(hello, timeout_request_header=1)
    started = time.monotonic()  # before the connection, whose start the timeout counts from
    with connect(server.port, timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        raw, closed = read_until_close(sock, timeout=4)
        elapsed = time.monotonic() - started
    assert closed
    responses, _ = parse_responses(raw)
    assert [r.status for r in responses] == [408]
    assert responses[0].header(b"connection") == b"close"
    assert 0.7 <= elapsed < 4


def test_timeout_request_header_counts_from_the_first_byte_not_per_byte(serve):
    """A slowloris trickling one header byte at a time is still cut at the deadline."""
    server = serve(hello, timeout_request_header=1)
    with connect(server.port, timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n")
        started = time.monotonic()
        try:
            for _ in range(80):  # 8 s of trickling if nothing stopped it
                sock.sendall(b"X")
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass
        raw, closed = read_until_close(sock, timeout=4)
        elapsed = time.monotonic() - started
    assert closed
    assert elapsed < 5
    assert parse_responses(raw)[0][0].status == 408


def test_timeout_request_header_answers_408_to_a_client_that_stalls_mid_request_line(serve):
    server = serve(hello, timeout_request_header=1)
    with connect(server.port, timeout=5) as sock:
        sock.sendall(b"GET /index.html HTT")
        raw, closed = read_until_close(sock, timeout=4)
    assert closed
    responses, _ = parse_responses(raw)
    assert [r.status for r in responses] == [408]


def test_timeout_request_header_applies_to_a_head_begun_during_a_response(serve):
    """A pipelined head that stalls is timed once the response before it is done (it never was)."""
    started, release = threading.Event(), threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        started.set()
        await until_set(release)  # the next head arrives while this response is in progress
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    server = serve(app, timeout_request_header=1)
    with connect(server.port, timeout=5) as sock:
        sock.sendall(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        assert started.wait(5)
        started_at = time.monotonic()  # before the response ends, which starts /b's timeout
        release.set()
        raw, closed = read_until_close(sock, timeout=4)
        elapsed = time.monotonic() - started_at
    assert closed
    responses, _ = parse_responses(raw)
    assert [r.status for r in responses] == [200, 408]
    assert 0.7 <= elapsed < 4


def test_timeout_request_header_closes_a_connection_that_never_sends(serve):
    server = serve(hello, timeout_request_header=1)
    with connect(server.port, timeout=5) as sock:
        started = time.monotonic()
        raw, closed = read_until_close(sock, timeout=4)
    assert closed
    assert raw == b""
    assert time.monotonic() - started < 4


def test_timeout_request_body_answers_408_and_the_app_sees_disconnect(serve):
    messages: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] == "http.disconnect" or not message["more_body"]:
                break
        if message["type"] == "http.request":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"unexpected"})

    server = serve(app, timeout_request_body=1)
    with connect(server.port, timeout=5) as sock:
        started = time.monotonic()  # before the head reaches the server, which starts the timeout
        sock.sendall(req("Content-Length: 100", method="POST", body=b"abc"))
        raw, closed = read_until_close(sock, timeout=4)
        elapsed = time.monotonic() - started
    assert closed
    responses, _ = parse_responses(raw)
    assert [r.status for r in responses] == [408]
    assert 0.7 <= elapsed < 4
    wait_for(lambda: messages and messages[-1]["type"] == "http.disconnect")
    assert messages[0] == {"type": "http.request", "body": b"abc", "more_body": True}


def test_timeout_request_body_is_between_bytes_not_for_the_whole_body(serve):
    server = serve(echo, timeout_request_body=1, limit_request_min_rate=0)  # the gap alone (no min rate)
    with connect(server.port, timeout=5) as sock:
        sock.sendall(req("Content-Length: 5", method="POST"))
        for byte in b"hello":
            time.sleep(0.3)  # 1.5 s in all, but never 1 s without a byte
            sock.sendall(bytes([byte]))
        (response,) = read_responses(sock, 1)
    assert response.body == b"hello"


def test_timeout_send_cuts_off_a_client_that_stops_reading(serve):
    outcome: list[str] = []
    sent = [0]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        chunk = b"x" * 65536
        try:
            for _ in range(4096):  # 256 MiB: far more than any socket buffer holds
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                sent[0] += len(chunk)
            outcome.append("completed")
        except OSError:
            outcome.append("disconnected")
            raise

    server = serve(app, timeout_send=1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.settimeout(5)
    try:
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(req())
        wait_for(lambda: sent[0] > 0)
        started = time.monotonic()
        wait_for(lambda: outcome, timeout=6)  # never read: the server must give up
        elapsed = time.monotonic() - started
    finally:
        sock.close()
    assert outcome == ["disconnected"]
    assert elapsed < 4
    assert sent[0] < 64 * 1024 * 1024


@pytest.mark.parametrize("chunked", [False, True], ids=["content_length", "chunked"])
def test_limit_request_body_answers_413_and_the_app_sees_disconnect(serve, chunked):
    messages: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] == "http.disconnect" or not message["more_body"]:
                break

    server = serve(app, limit_request_body=1000)
    body = b"b" * 5000
    if chunked:
        request = req("Transfer-Encoding: chunked", method="POST", body=b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    else:
        request = req(f"Content-Length: {len(body)}", method="POST", body=body)
    with connect(server.port) as sock:
        sock.sendall(request)
        raw, closed = read_until_close(sock)
    assert closed
    responses, _ = parse_responses(raw)
    assert [r.status for r in responses] == [413]
    assert all(m["type"] == "http.disconnect" for m in messages)


# ----- default headers ------------------------------------------------------------------------------


def test_header_option_adds_headers_to_every_response(serve):
    server = serve(hello, headers=["X-Frame-Options: DENY", ("x-team", "celeris")])
    response = httpx.get(server.url)
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-team"] == "celeris"
    assert response.headers["server"] == "celeris"


def test_header_option_replaces_the_server_header(serve):
    server = serve(hello, headers=["Server: edge"])
    response = httpx.get(server.url)
    assert response.headers.get_list("server") == ["edge"]


def test_no_server_header_and_no_date_header(serve):
    server = serve(hello, server_header=False, date_header=False)
    with connect(server.port) as sock:
        sock.sendall(req())
        (response,) = read_responses(sock, 1)
    assert b"server" not in response.header_names()
    assert b"date" not in response.header_names()
    assert response.body == b"Hello"


def test_date_header_is_an_rfc9110_imf_fixdate(serve):
    server = serve(hello)
    date = httpx.get(server.url).headers["date"]
    assert re.fullmatch(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (\w{3}) \d{4} \d\d:\d\d:\d\d GMT", date)


# ----- access log -----------------------------------------------------------------------------------


def test_access_log_atoms_include_the_request_time(serve, access_log):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        while time.perf_counter() - started < 0.25:  # 0.25 s by the server's clock, not the loop's 1 ms ticks
            await asyncio.sleep(0.25 - (time.perf_counter() - started))
        await send({"type": "http.response.start", "status": 201, "headers": [(b"content-type", b"text/x")]})
        await send({"type": "http.response.body", "body": b"12345"})

    fields = [
        "h",
        "r",
        "s",
        "b",
        "B",
        "m",
        "U",
        "q",
        "H",
        "f",
        "a",
        "{x-req}i",
        "{content-type}o",
        "T",
        "D",
        "M",
        "L",
        "l",
        "u",
        "p",
    ]
    server = serve(app, access_log_format="|".join(f"%({f})s" for f in fields))
    httpx.get(server.url + "/path?q=1", headers={"x-req": "R1", "referer": "http://ref", "user-agent": "UA/1"})
    wait_for(lambda: access_lines(access_log))
    (line,) = access_lines(access_log)
    atoms = dict(zip(fields, line.split("|"), strict=True))
    assert atoms["h"] == "127.0.0.1"
    assert atoms["r"] == "GET /path?q=1 HTTP/1.1"
    assert (atoms["s"], atoms["b"], atoms["B"]) == ("201", "5", "5")
    assert (atoms["m"], atoms["U"], atoms["q"], atoms["H"]) == ("GET", "/path", "q=1", "HTTP/1.1")
    assert (atoms["f"], atoms["a"], atoms["{x-req}i"], atoms["{content-type}o"]) == (
        "http://ref",
        "UA/1",
        "R1",
        "text/x",
    )
    # One duration in four units (s, µs, ms, s with a fraction): the app's 0.25 s sleep and at most
    # a loaded machine's 2 s; whole seconds are 0 or 1 then, so T is checked against D, not a constant.
    assert 250_000 <= int(atoms["D"]) < 2_000_000
    assert int(atoms["T"]) == int(atoms["D"]) // 1_000_000
    assert 250 <= int(atoms["M"]) < 2000
    assert 0.25 <= float(atoms["L"]) < 2
    assert atoms["l"] == atoms["u"] == "-"
    assert re.fullmatch(r"<\d+>", atoms["p"])


def test_access_log_default_format_has_status_and_milliseconds(serve, access_log):
    server = serve(hello)
    httpx.get(server.url + "/x")
    wait_for(lambda: access_lines(access_log))
    assert re.fullmatch(r'127\.0\.0\.1:\d+ - "GET /x HTTP/1\.1" 200 5 \d+ms', access_lines(access_log)[0])


def test_access_log_records_a_500_and_can_be_disabled(serve, access_log):
    async def broken(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise RuntimeError("broken app")

    server = serve(broken, access_log_format="%(s)s")
    httpx.get(server.url)
    wait_for(lambda: access_lines(access_log))
    assert access_lines(access_log) == ["500"]
    access_log.clear()
    quiet = serve(hello, access_log=False)
    with httpx.Client() as client:  # one keep-alive connection: the server answers these in turn
        client.get(quiet.url)
        client.get(quiet.url)  # answered only after the first response's access line would be written
    assert access_lines(access_log) == []
