"""--limit-request-min-rate per HTTP/2 stream: a dribbled request body is answered 408, its neighbours go on.

The body deadline is the stream's start + --timeout-request-body + one second per
min-rate bytes received; time while the server holds the window closed (the app is
not reading) does not count against the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from typing import Any

import h2.events
import pytest

from tests.http2.h2util import H2Socket

pytestmark = pytest.mark.timeout(30)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/lazy":
        await asyncio.sleep(2)  # does not read: the stream window stays closed meanwhile
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message["body"])
        if not message["more_body"]:
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(size).encode()})


def connect(port: int) -> H2Socket:
    conn = H2Socket(port)
    conn.receive(lambda events: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in events))
    return conn


def start_post(conn: H2Socket, path: str) -> int:
    sid = conn.conn.get_next_available_stream_id()
    conn.conn.send_headers(sid, [(":method", "POST"), (":path", path), (":scheme", "http"), (":authority", "a")])
    conn.flush()
    return sid


def status(conn: H2Socket, sid: int) -> bytes:
    return dict(conn.of(h2.events.ResponseReceived, sid)[0].headers)[b":status"]


def dribble(conn: H2Socket, slow: int, fast: int, seconds: float) -> tuple[bool, int]:
    """Every 0.25 s: 10 bytes on ``slow`` (40 B/s) until it is refused, 2000 on ``fast`` for ``seconds``.

    Returns whether ``slow`` was refused while it still dribbled, and the bytes sent on ``fast``.
    """
    started = time.monotonic()
    fast_sent = 0
    while time.monotonic() - started < seconds:
        if not conn.ended(slow)(conn.events):
            conn.conn.send_data(slow, b"x" * 10)
        conn.conn.send_data(fast, b"y" * 2000)
        fast_sent += 2000
        conn.flush()
        with contextlib.suppress(TimeoutError):
            conn.receive(lambda events: False, timeout=0.25)
    refused = conn.ended(slow)(conn.events)
    conn.conn.send_data(fast, b"y" * 2000, end_stream=True)
    conn.flush()
    return refused, fast_sent + 2000


def test_a_dribbled_body_gets_408_while_a_fast_one_on_the_same_connection_is_served(serve):
    server = serve(app, timeout_request_body=1, limit_request_min_rate=100)
    conn = connect(server.port)
    slow = start_post(conn, "/")
    fast = start_post(conn, "/")
    refused, fast_sent = dribble(conn, slow, fast, seconds=4.0)
    assert refused  # the slow stream is due after 1 + 0.4 t s: at 1.7 s
    conn.receive(lambda events: conn.ended(slow)(events) and conn.ended(fast)(events), timeout=10)
    assert status(conn, slow) == b"408"
    assert status(conn, fast) == b"200"
    # Every byte sent on the fast stream reached the app; how many rounds fit in 4 s depends on the load.
    assert int(conn.body(fast)) == fast_sent
    assert conn.of(h2.events.ConnectionTerminated) == []
    conn.close()


def test_min_rate_zero_turns_it_off(serve):
    server = serve(app, timeout_request_body=1, limit_request_min_rate=0)
    conn = connect(server.port)
    slow = start_post(conn, "/")
    for _ in range(12):  # 3 s at 40 B/s: well below any rate, but never a 1 s gap
        conn.conn.send_data(slow, b"x" * 10)
        conn.flush()
        with pytest.raises(TimeoutError):
            conn.receive(conn.ended(slow), timeout=0.25)
    conn.conn.send_data(slow, b"x" * 10, end_stream=True)
    conn.flush()
    conn.receive(conn.ended(slow))
    assert status(conn, slow) == b"200" and conn.body(slow) == b"130"
    conn.close()


def test_time_the_server_holds_the_window_closed_does_not_count(serve):
    # 65535 bytes fill the stream window at once; that rate would be due in 1 + 0.66 s, the 1 s stall
    # sooner still, but the app does not read for 2 s: the client cannot send, so neither clock runs.
    server = serve(app, timeout_request_body=1, limit_request_min_rate=100_000, h2_initial_window_size=65535)
    conn = connect(server.port)
    sid = start_post(conn, "/lazy")
    window = conn.conn.local_flow_control_window(sid)
    for offset in range(0, window, 16384):
        conn.conn.send_data(sid, b"x" * min(16384, window - offset))
    conn.flush()
    conn.receive(lambda events: bool(conn.of(h2.events.WindowUpdated, sid)) or conn.ended(sid)(events), timeout=10)
    assert not conn.ended(sid)(conn.events), f"refused with {status(conn, sid)!r}"
    conn.conn.send_data(sid, b"x" * 1000, end_stream=True)
    conn.flush()
    conn.receive(conn.ended(sid), timeout=10)
    assert status(conn, sid) == b"200" and conn.body(sid) == str(window + 1000).encode()
    conn.close()


def test_a_dribbled_h2c_upgrade_body_is_not_waited_for(serve):
    """The h2c request's body arrives as HTTP/1.1 bytes before the preface: the same rate holds for it."""
    server = serve(app, timeout_request_body=1, limit_request_min_rate=100)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.sendall(
        b"POST / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        b"HTTP2-Settings: AAMAAABk\r\nContent-Length: 1000\r\n\r\n"
    )
    started = time.monotonic()
    closed = False
    while not closed and time.monotonic() - started < 6:  # 10 bytes every 0.25 s: due after 1 + 0.4 t s
        try:
            sock.sendall(b"x" * 10)
        except (BrokenPipeError, ConnectionResetError):
            break
        sock.settimeout(0.25)
        try:
            closed = sock.recv(65536) == b""
        except TimeoutError:
            continue
        except ConnectionResetError:
            closed = True
    assert time.monotonic() - started < 5, "the dribbling upgrade body was never refused"
    sock.close()
