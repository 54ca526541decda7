"""A finished request's send and receive cannot reach the next request on the same connection.

The guard for any reuse of per-request objects (freelists, pools): an app may keep its ``send``
and ``receive`` after its response is complete.  Called while the next request on the same
keep-alive HTTP/1.1 connection or HTTP/2 connection is in flight, the old ``send`` must raise
(ASGI: nothing may follow the last body part) and write nothing, the old ``receive`` must say
``http.disconnect``, and the successor's response must arrive intact.
"""

from __future__ import annotations

from typing import Any

import h2.events
import pytest

from tests.http2.h2util import H2Socket
from tests.rawhttp import connect, read_responses

pytestmark = pytest.mark.timeout(30)

STALE_MESSAGES: list[dict[str, Any]] = [
    {"type": "http.response.start", "status": 500, "headers": [(b"x-stale", b"1")]},
    {"type": "http.response.body", "body": b"STALE", "more_body": False},
]


class KeepsItsCallables:
    """`/first` answers and leaves its send and receive behind; `/second` calls them, then answers.

    What the stale calls did goes into the second response's body, one line per call, so the
    test reads it from the wire (no reach into the server).
    """

    def __init__(self) -> None:
        self.kept: tuple[Any, Any] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/first":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"first"})
            self.kept = (send, receive)
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"second:", "more_body": True})
        assert self.kept is not None, "the first request did not run"
        stale_send, stale_receive = self.kept
        outcomes = []
        for message in STALE_MESSAGES:
            try:
                await stale_send(message)
            except RuntimeError:
                outcomes.append(f"{message['type']} raised")
            else:
                outcomes.append(f"{message['type']} accepted")
        outcomes.append("receive " + (await stale_receive())["type"])
        await send({"type": "http.response.body", "body": "\n".join(outcomes).encode()})


EXPECTED_SECOND = b"second:http.response.start raised\nhttp.response.body raised\nreceive http.disconnect"


def test_a_finished_requests_send_cannot_write_into_the_next_http1_response(serve):
    server = serve(KeepsItsCallables())
    with connect(server.port) as sock:
        sock.sendall(b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n")
        (first,) = read_responses(sock, 1)
        sock.sendall(b"GET /second HTTP/1.1\r\nHost: a\r\n\r\n")
        (second,) = read_responses(sock, 1)
        sock.sendall(b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n")  # the connection is still in step
        (third,) = read_responses(sock, 1)
    assert (first.status, first.body) == (200, b"first")
    assert second.status == 200
    assert second.header(b"x-stale") is None
    assert second.body == EXPECTED_SECOND
    assert (third.status, third.body) == (200, b"first")


def test_a_finished_streams_send_cannot_write_into_the_next_http2_stream(serve):
    server = serve(KeepsItsCallables())
    client = H2Socket(server.port)
    try:
        first = client.request("/first")
        client.receive(client.ended(first))
        second = client.request("/second")
        client.receive(client.ended(second))
        responses = {event.stream_id: event.headers for event in client.of(h2.events.ResponseReceived)}
        assert client.body(first) == b"first"
        assert dict(responses[second])[b":status"] == b"200"
        assert b"x-stale" not in dict(responses[second])
        assert client.body(second) == EXPECTED_SECOND
        assert not client.of(h2.events.StreamReset)
        assert {event.stream_id for event in client.of(h2.events.DataReceived)} == {first, second}
    finally:
        client.close()
