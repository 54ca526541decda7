"""Rapid reset without collateral damage: a stream the client reset frees its concurrency slot at once.

RFC 9113 5.1.2 counts only open and half-closed streams toward SETTINGS_MAX_CONCURRENT_STREAMS;
a reset stream is closed, whatever its application task still does.  The CVE-2023-44487
defence bounds the work instead: the reset budget (a flood ends in GOAWAY ENHANCE_YOUR_CALM).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import h2.events
import pytest

from celeris_asgi.protocols.http2 import frames as f
from tests.http2.h2util import H2Socket

pytestmark = pytest.mark.timeout(30)

STARTED: list[int] = []  # /slow requests whose app is running (the server runs on a thread)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":
        STARTED.append(1)
        await asyncio.sleep(2)  # ignores the disconnect: its task outlives the reset stream
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


def connect(port: int) -> H2Socket:
    conn = H2Socket(port)
    conn.receive(lambda events: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in events))
    return conn


def open_slow(conn: H2Socket, count: int, reset: bool) -> list[int]:
    """``count`` requests to /slow, each reset right after its HEADERS when ``reset``; not flushed."""
    sids = []
    for _ in range(count):
        sid = conn.conn.get_next_available_stream_id()
        conn.conn.send_headers(sid, [(":method", "GET"), (":path", "/slow"), (":scheme", "http"), (":authority", "a")])
        if reset:
            conn.conn.reset_stream(sid, f.CANCEL)
        sids.append(sid)
    return sids


def open_fresh(conn: H2Socket, count: int) -> list[int]:
    sids = []
    for _ in range(count):
        sid = conn.conn.get_next_available_stream_id()
        conn.conn.send_headers(sid, [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "a")])
        sids.append(sid)
    conn.flush()
    return sids


def assert_served(conn: H2Socket, fresh: list[int]) -> None:
    conn.receive(lambda events: all(conn.ended(sid)(events) for sid in fresh), timeout=10)
    assert conn.of(h2.events.StreamReset) == []
    for sid in fresh:
        assert (b":status", b"200") in conn.of(h2.events.ResponseReceived, sid)[0].headers
        assert conn.body(sid) == b"ok"
    assert conn.of(h2.events.ConnectionTerminated) == []


@pytest.mark.parametrize("resets", [100, 300])
def test_streams_reset_in_the_same_write_free_their_slots(serve, resets):
    server = serve(app)
    conn = connect(server.port)
    open_slow(conn, resets, reset=True)
    assert_served(conn, open_fresh(conn, 20))  # one write: resets and new streams together
    conn.close()


def test_a_reset_stream_whose_app_still_runs_holds_no_slot(serve):
    STARTED.clear()
    server = serve(app, timeout_graceful_shutdown=0.1)  # the stop cancels the apps still sleeping
    conn = connect(server.port)
    slow = open_slow(conn, 100, reset=False)  # the server's limit: 100 streams
    conn.flush()
    deadline = time.monotonic() + 10
    while len(STARTED) < 100:
        assert time.monotonic() < deadline, "the apps did not start"
        time.sleep(0.01)
    for sid in slow:
        conn.conn.reset_stream(sid, f.CANCEL)
    conn.flush()
    assert_served(conn, open_fresh(conn, 20))  # the 100 apps still sleep
    conn.close()


def test_rapid_reset_flood_still_ends_in_enhance_your_calm(serve):
    server = serve(app)
    conn = connect(server.port)
    open_slow(conn, 1000, reset=True)
    conn.flush()
    conn.receive(lambda events: bool(conn.of(h2.events.ConnectionTerminated)), timeout=10)
    assert conn.of(h2.events.ConnectionTerminated)[0].error_code == f.ENHANCE_YOUR_CALM
    conn.close()
