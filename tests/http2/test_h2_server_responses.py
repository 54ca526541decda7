"""Responses the HTTP/2 code makes itself carry the app's default headers (RFC 9110 6.6.1: Date).

431, 413, 408, 405, 400 and 503 get Server and Date like any app response, within
--no-server-header / --no-date-header.
"""

from __future__ import annotations

from typing import Any

import h2.events
import pytest

from tests.http2.h2util import H2Socket

pytestmark = pytest.mark.timeout(30)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/hold":  # holds the only --limit-concurrency slot until the client leaves
        while (await receive())["type"] != "http.disconnect":
            pass
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def post_head(path: str) -> list[tuple[str, str]]:
    return [(":method", "POST"), (":path", path), (":scheme", "http"), (":authority", "a")]


def own_responses(port: int) -> dict[int, list[tuple[bytes, bytes]]]:
    """Status -> response headers for each kind of response the server makes itself, plus the app's 200."""
    conn = H2Socket(port)
    conn.receive(lambda events: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in events))
    sids = {}
    sids[200] = conn.request("/")
    sids[431] = conn.request("/", headers=[(f"x-big-{i}", "v" * 4000) for i in range(5)])
    sids[413] = conn.request("/", "POST", b"x" * 20, headers=[("content-length", "20")])
    sids[400] = conn.request("/caf\xe9")
    connect = sids[405] = conn.conn.get_next_available_stream_id()
    conn.conn.send_headers(connect, [(":method", "CONNECT"), (":authority", "example.com:443")], end_stream=True)
    slow = sids[408] = conn.conn.get_next_available_stream_id()
    conn.conn.send_headers(slow, post_head("/"))
    conn.conn.send_data(slow, b"x")
    conn.flush()
    conn.receive(lambda events: all(conn.ended(sid)(events) for sid in sids.values()), timeout=10)
    responses = {status: conn.of(h2.events.ResponseReceived, sid)[0].headers for status, sid in sids.items()}
    conn.close()
    return responses


def busy_response(port: int) -> list[tuple[bytes, bytes]]:
    """The 503 of --limit-concurrency."""
    conn = H2Socket(port)
    hold = conn.request("/hold")
    refused = conn.request("/")
    conn.receive(conn.ended(refused))
    headers = conn.of(h2.events.ResponseReceived, refused)[0].headers
    assert not conn.of(h2.events.ResponseReceived, hold)  # still held: the 503 was not a slot freed too late
    conn.close()
    return headers


SETTINGS = {"limit_request_body": 10, "timeout_request_body": 0.5, "h2_max_header_list_size": 16384}


def test_server_made_responses_carry_date_and_server(serve):
    server = serve(app, **SETTINGS)
    for status, headers in own_responses(server.port).items():
        names = [name for name, _ in headers]
        assert (b":status", str(status).encode()) in headers
        assert names.count(b"server") == 1 and names.count(b"date") == 1, (status, headers)
        assert b"connection" not in names
    busy = serve(app, limit_concurrency=1)
    headers = busy_response(busy.port)
    names = [name for name, _ in headers]
    assert (b":status", b"503") in headers
    assert names.count(b"server") == 1 and names.count(b"date") == 1 and b"connection" not in names


def test_no_date_and_no_server_header_hold_for_server_made_responses(serve):
    server = serve(app, server_header=False, date_header=False, **SETTINGS)
    for status, headers in own_responses(server.port).items():
        names = [name for name, _ in headers]
        assert b"server" not in names and b"date" not in names, (status, headers)
