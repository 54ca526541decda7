"""The connection layer's wiring, through real sockets: upgrades and half-closes that used to go
unanswered, the debug/trace log lines, and the metrics counted per connection."""

from __future__ import annotations

import socket

import pytest

from tests.apps import hello
from tests.rawhttp import parse_responses, read_until_close

pytestmark = pytest.mark.timeout(30)


def test_h2c_upgrade_with_out_of_range_settings_is_served_as_http1(serve):
    """HTTP2-Settings: AAIAAAAC is ENABLE_PUSH=2 (RFC 9113 6.5.2): the upgrade is declined, not a fatal error."""
    server = serve(hello)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: AAIAAAAC\r\n\r\nGET /again HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        )
        raw, _ = read_until_close(sock, timeout=5)
    responses, _ = parse_responses(raw)
    assert [r.status for r in responses] == [200, 200]
    assert responses[0].body == b"Hello"


@pytest.mark.parametrize("count", [1, 3])
def test_requests_followed_by_a_half_close_are_answered_then_closed(serve, count):
    """RFC 9112 9.6: a client may shut down its sending side after its requests; the server finishes them."""
    server = serve(hello)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n" * count)
        sock.shutdown(socket.SHUT_WR)
        raw, closed = read_until_close(sock, timeout=5)
    responses, rest = parse_responses(raw)
    assert [r.status for r in responses] == [200] * count
    assert rest == b""
    assert closed
