"""--limit-request-min-rate on HTTP/1.1: a slow-loris head or body is answered 408 and closed.

The head's and the body's deadlines grow by one second per min-rate bytes received, so a client
that keeps dribbling bytes cannot hold a connection for as long as it likes, while a fast upload
of any size, or one the app has stopped reading for a while, still goes through.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from tests.apps import echo
from tests.rawhttp import connect, parse_responses, read_responses

pytestmark = pytest.mark.timeout(30)

SETTINGS = {"timeout_request_body": 1, "timeout_request_header": 1, "limit_request_min_rate": 100}


def dribble(sock: Any, data: bytes, step: int, pause: float, give_up_after: float) -> bytes:
    """Send `data` `step` bytes every `pause` seconds until the server answers, closes or time is up."""
    sock.setblocking(False)
    received = b""
    started = time.monotonic()
    try:
        for offset in range(0, len(data), step):
            if time.monotonic() - started > give_up_after:
                break
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:
                chunk = None
            if chunk is not None:
                received += chunk
                if not chunk or b"\r\n\r\n" in received:
                    break
            try:
                sock.sendall(data[offset : offset + step])
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(pause)
    finally:
        sock.setblocking(True)
    sock.settimeout(5)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return received
            received += chunk
    except (TimeoutError, ConnectionResetError):
        return received


def test_body_dribbled_below_the_min_rate_is_answered_408_and_closed(serve):
    server = serve(echo, **SETTINGS)
    with connect(server.port) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n")
        started = time.monotonic()
        # 10 bytes every 0.2 s (50 B/s): never a 1 s gap, but half the minimum rate.
        raw = dribble(sock, b"x" * 100000, 10, 0.2, give_up_after=8)
        elapsed = time.monotonic() - started
    (response,), _ = parse_responses(raw)
    assert response.status == 408
    assert response.header(b"connection") == b"close"
    assert elapsed < 6


def test_head_deadline_grows_with_the_bytes_received(serve):
    server = serve(echo, **SETTINGS)
    head = (
        b"GET / HTTP/1.1\r\nHost: t\r\n"
        + b"".join(b"X-Field-%03d: %s\r\n" % (i, b"v" * 40) for i in range(14))
        + b"\r\n"
    )
    with connect(server.port) as sock:
        # ~700 bytes at ~350 B/s: 2 s in all, more than --timeout-request-header, above the minimum rate
        for offset in range(0, len(head), 70):
            sock.sendall(head[offset : offset + 70])
            time.sleep(0.2)
        (response,) = read_responses(sock, 1, timeout=5)
    assert response.status == 200


def test_head_dribbled_below_the_min_rate_is_answered_408(serve):
    server = serve(echo, **SETTINGS)
    head = b"GET / HTTP/1.1\r\nHost: t\r\n" + b"X-Slow: " + b"v" * 2000 + b"\r\n\r\n"
    with connect(server.port) as sock:
        raw = dribble(sock, head, 10, 0.2, give_up_after=8)
    (response,), _ = parse_responses(raw)
    assert response.status == 408


def test_fast_upload_of_several_megabytes_passes(serve):
    server = serve(echo, **SETTINGS)
    body = b"u" * (8 * 1024 * 1024)
    response = httpx.post(server.url + "/", content=body, timeout=20)
    assert response.status_code == 200
    assert len(response.content) == len(body)


def test_time_the_app_does_not_read_is_not_counted_against_the_client(serve):
    async def slow_reader(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await asyncio.sleep(4)  # the server stops reading once it holds enough unread body
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"%d" % size})

    # 200 kB/s minimum: the first 100 kB allow half a second, far less than the 4 s the app does not read.
    server = serve(slow_reader, timeout_request_body=2, limit_request_min_rate=200_000)
    with connect(server.port, timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100800\r\n\r\n" + b"s" * 100_000)
        time.sleep(4.2)
        for _ in range(4):  # the rest after the app read again, over 0.8 s: the server's clock ticks meanwhile
            sock.sendall(b"s" * 200)
            time.sleep(0.2)
        (response,) = read_responses(sock, 1, timeout=5)
    assert (response.status, response.body) == (200, b"100800")


def test_min_rate_zero_turns_it_off(serve):
    server = serve(echo, timeout_request_body=1, limit_request_min_rate=0)
    with connect(server.port) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 12\r\n\r\n")
        for _ in range(6):
            time.sleep(0.3)  # 6.7 B/s for 1.8 s: only the 1 s gap timeout applies
            sock.sendall(b"ab")
        (response,) = read_responses(sock, 1, timeout=5)
    assert (response.status, response.body) == (200, b"ab" * 6)
