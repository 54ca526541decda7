"""The connection layer's wiring, through real sockets: upgrades and half-closes that used to go
unanswered, the debug/trace log lines, and the metrics counted per connection."""

from __future__ import annotations

import re
import socket

import pytest

from tests.apps import hello
from tests.conftest import metered, raw_exchange, wait_for
from tests.rawhttp import parse_responses, read_until_close
from tests.test_dropin import APP, celeris_processes
from tests.test_metrics import sample, scrape

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


# ----- debug and trace lines (issues 15 and 16) ----------------------------------------------------------

celeris = pytest.fixture(celeris_processes, name="celeris")
H2C_UPGRADE = (
    b"GET /h2c HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
    b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
)
DECLINED = b"GET /declined HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n"
PLAIN = b"GET /plain HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
PEER = r"127\.0\.0\.1:\d+"


def connection_events(port: int) -> None:
    """One plain request, one declined Upgrade, one h2c upgrade: each on its own connection."""
    raw_exchange(port, PLAIN)
    raw_exchange(port, DECLINED + PLAIN)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(H2C_UPGRADE)
        assert sock.recv(65536).startswith(b"HTTP/1.1 101 ")


def test_debug_logs_connections_protocols_and_upgrades(celeris):
    process = celeris(APP, "--port", "0", "--log-level", "debug")
    connection_events(process.port)
    process.read_until(rf"DEBUG:    Connection opened: {PEER}", count=3)
    process.read_until(rf"DEBUG:    Protocol chosen: HTTP/1\.1 for {PEER}", count=3)
    process.read_until(rf"DEBUG:    Connection closed: {PEER} \(HTTP/1\.1\)", count=2)
    process.read_until(r"DEBUG:    Upgrade to b'foo' declined: served as HTTP/1\.1")
    process.read_until(r"DEBUG:    Upgrade to h2c: GET /h2c")
    assert process.stop() == 0
    assert not any("TRACE" in line for line in process.lines)


def test_trace_logs_http1_events(celeris):
    process = celeris(APP, "--port", "0", "--log-level", "trace")
    raw_exchange(process.port, PLAIN)
    process.read_until(rf"TRACE:    {PEER}: request head parsed: GET /plain HTTP/1\.1")
    process.read_until(rf"TRACE:    {PEER}: response head written: 200")
    assert process.stop() == 0


def test_info_logs_no_connection_events(celeris):
    process = celeris(APP, "--port", "0")
    connection_events(process.port)
    raw_exchange(process.port, PLAIN)
    process.read_until(r'"GET /plain HTTP/1\.1" 200', count=3)  # the access lines: all answered
    assert process.stop() == 0
    assert not [
        line for line in process.lines if re.search("Connection (opened|closed)|Protocol chosen|Upgrade|head", line)
    ]


# ----- metrics counted by the connection layer -----------------------------------------------------------


def traffic(text: str) -> tuple[float, float]:
    return sample(text, "celeris_received_bytes_total"), sample(text, "celeris_sent_bytes_total")


def test_connections_bytes_and_refusals_are_counted(serve):
    server, metrics_port = metered(serve, hello)
    request = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    held = socket.create_connection(("127.0.0.1", server.port), timeout=5)  # stays open across a tick
    try:
        held.sendall(request)
        answer = held.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200 ")
        bad = raw_exchange(server.port, b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n")
        assert bad.startswith(b"HTTP/1.1 400 ")
        wait_for(lambda: sample(scrape(metrics_port), "celeris_connections_open") == 1)
        # A live connection reports its bytes every half second (a closed one at once): wait for them.
        received, sent = len(request) + 46, len(answer) + len(bad)
        wait_for(lambda: traffic(scrape(metrics_port)) == (received, sent))
        text = scrape(metrics_port)
    finally:
        held.close()
    assert sample(text, "celeris_connections_total") == 2
    assert sample(text, "celeris_server_responses_total", status="400") == 1
    assert sample(text, "celeris_requests_total", protocol="h1", method="other", status="4xx") == 1
    wait_for(lambda: sample(scrape(metrics_port), "celeris_connections_open") == 0)
