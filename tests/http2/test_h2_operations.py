"""HTTP/2 operations through real sockets (issue 15): what an HTTP/2 connection counts with
--metrics-address (open streams, GOAWAY and RST_STREAM by error code, bytes at the transport) and
what it logs at --log-level trace (frames both ways, flow-control stalls, the h2c upgrade)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import h2.settings
import pytest
from hyperframe.frame import DataFrame, GoAwayFrame, RstStreamFrame

from celeris_asgi.protocols.http2 import frames as f
from tests.conftest import metered, wait_for
from tests.http2.h2util import PREFACE, FrameSocket, H2Socket, frame, header_block, parse_frames
from tests.rawhttp import read_until_close
from tests.test_connection_wiring import H2C_UPGRADE, PEER
from tests.test_dropin import APP, celeris_processes
from tests.test_metrics import sample, scrape

pytestmark = pytest.mark.timeout(30)

REQUEST = [(":method", "GET"), (":path", "/hold"), (":scheme", "http"), (":authority", "a")]
ANSWERED = [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "a")]


class HoldApp:
    """Answers "done"; a request for /hold waits until the test calls release()."""

    def __init__(self) -> None:
        self.holding = 0  # /hold requests that reached the app
        self.loop: asyncio.AbstractEventLoop | None = None
        self.released: asyncio.Event | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/hold":
            if self.released is None:
                self.loop, self.released = asyncio.get_running_loop(), asyncio.Event()
            self.holding += 1
            await self.released.wait()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
        await send({"type": "http.response.body", "body": b"done"})

    def release(self) -> None:
        assert self.loop is not None and self.released is not None
        self.loop.call_soon_threadsafe(self.released.set)


def streams_open(metrics_port: int) -> float:
    return sample(scrape(metrics_port), "celeris_http2_streams_open")


def test_open_streams_are_counted_until_each_ends_normally_reset_by_the_peer_or_with_the_connection(serve):
    app = HoldApp()
    server, metrics = metered(serve, app)
    client = H2Socket(server.port)
    try:
        held = [client.request("/hold") for _ in range(3)]
        wait_for(lambda: app.holding == 3)
        assert streams_open(metrics) == 3
        client.conn.reset_stream(held[0])  # RST_STREAM from the peer ends its stream at once
        client.flush()
        wait_for(lambda: streams_open(metrics) == 2)
        app.release()
        client.receive(lambda events: all(client.ended(sid)(events) for sid in held[1:]))
        assert [client.body(sid) for sid in held[1:]] == [b"done", b"done"]
        wait_for(lambda: streams_open(metrics) == 0)  # answered: END_STREAM both ways
    finally:
        client.close()
    lost = FrameSocket(server.port)
    lost.send(frame(f.HEADERS, f.FLAG_END_HEADERS, 1, lost.block(REQUEST)))  # the request never ends
    wait_for(lambda: streams_open(metrics) == 1)
    lost.close()
    wait_for(lambda: streams_open(metrics) == 0)  # the connection is gone, and its stream with it


def test_a_connection_error_sends_a_goaway_counted_by_its_code_and_ends_the_streams(serve):
    app = HoldApp()
    server, metrics = metered(serve, app)
    client = FrameSocket(server.port)
    try:
        client.send(frame(f.HEADERS, f.FLAG_END_HEADERS | f.FLAG_END_STREAM, 1, client.block(REQUEST)))
        wait_for(lambda: app.holding == 1)
        assert streams_open(metrics) == 1
        client.send(frame(f.HEADERS, f.FLAG_END_HEADERS, 2, client.block(REQUEST)))  # even: the client's ids are odd
        frames = client.read_until(lambda frames: any(isinstance(fr, GoAwayFrame) for fr in frames))
    finally:
        client.close()
    assert [fr.error_code for fr in frames if isinstance(fr, GoAwayFrame)] == [f.PROTOCOL_ERROR]
    text = scrape(metrics)
    assert sample(text, "celeris_http2_goaways_sent_total", error_code="PROTOCOL_ERROR") == 1
    assert sample(text, "celeris_http2_streams_open") == 0
    app.release()


def test_stream_resets_sent_are_counted_by_their_code(serve):
    """A malformed request (RFC 9113 8.2.1: an uppercase field name) and a stream over
    SETTINGS_MAX_CONCURRENT_STREAMS each get RST_STREAM, counted under its own code."""
    app = HoldApp()
    server, metrics = metered(serve, app, h2_max_concurrent_streams=1)
    client = FrameSocket(server.port)
    try:
        client.send(
            frame(f.HEADERS, f.FLAG_END_HEADERS | f.FLAG_END_STREAM, 1, client.block([*REQUEST, ("X-Up", "a")]))
        )
        client.send(frame(f.HEADERS, f.FLAG_END_HEADERS | f.FLAG_END_STREAM, 3, client.block(REQUEST)))
        wait_for(lambda: app.holding == 1)
        client.send(frame(f.HEADERS, f.FLAG_END_HEADERS | f.FLAG_END_STREAM, 5, client.block(REQUEST)))
        frames = client.read_until(lambda frames: len([fr for fr in frames if isinstance(fr, RstStreamFrame)]) == 2)
        app.release()
        client.read_until(lambda frames: any(isinstance(fr, DataFrame) and fr.stream_id == 3 for fr in frames))
    finally:
        client.close()
    resets = [(fr.stream_id, fr.error_code) for fr in frames if isinstance(fr, RstStreamFrame)]
    assert resets == [(1, f.PROTOCOL_ERROR), (5, f.REFUSED_STREAM)]
    text = scrape(metrics)
    assert sample(text, "celeris_http2_resets_sent_total", error_code="PROTOCOL_ERROR") == 1
    assert sample(text, "celeris_http2_resets_sent_total", error_code="REFUSED_STREAM") == 1
    assert sample(text, "celeris_http2_resets_sent_total", error_code="NO_ERROR") == 0


H2C_WITH_BODY = (
    b"POST /h2c HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
    b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nContent-Length: 5\r\n\r\nhello"
)


@pytest.mark.parametrize("start", [b"", H2C_WITH_BODY], ids=["prior-knowledge", "h2c-upgrade"])
def test_bytes_of_an_http2_connection_are_counted_as_they_cross_the_socket(serve, start):
    """Every byte the client wrote is counted received and every byte it read sent: once each, also
    when an h2c upgrade hands the bytes read past the HTTP/1.1 head on to HTTP/2."""
    server, metrics = metered(serve, HoldApp())
    written = start + PREFACE + frame(f.SETTINGS, 0, 0)
    if not start:
        written += frame(f.HEADERS, f.FLAG_END_HEADERS | f.FLAG_END_STREAM, 1, header_block(ANSWERED))
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(written)
        read = b""
        while not any(
            isinstance(fr, DataFrame) and fr.stream_id == 1 and "END_STREAM" in fr.flags for fr in frames_in(read)
        ):
            chunk = sock.recv(65536)
            assert chunk, read
            read += chunk
        ack = frame(f.SETTINGS, f.FLAG_ACK, 0)
        sock.sendall(ack)
        written += ack
        sock.shutdown(socket.SHUT_WR)  # the server closes on the end of input: everything it wrote is read
        rest, closed = read_until_close(sock, timeout=5)
        assert closed
        read += rest
    wait_for(lambda: sample(scrape(metrics), "celeris_connections_open") == 0)
    text = scrape(metrics)
    assert sample(text, "celeris_received_bytes_total") == len(written)
    assert sample(text, "celeris_sent_bytes_total") == len(read)


def frames_in(data: bytes) -> list[Any]:
    """The complete HTTP/2 frames of what the server sent so far (after a 101 head, if any)."""
    if data.startswith(b"HTTP/1.1 101 "):
        head_end = data.find(b"\r\n\r\n")
        if head_end < 0:
            return []
        data = data[head_end + 4 :]
    complete = 0
    while len(data) - complete >= 9 and len(data) - complete >= 9 + int.from_bytes(
        data[complete : complete + 3], "big"
    ):
        complete += 9 + int.from_bytes(data[complete : complete + 3], "big")
    return parse_frames(data[:complete])


# ----- --log-level trace ------------------------------------------------------------------------

celeris = pytest.fixture(celeris_processes, name="celeris")


def test_trace_logs_frames_both_ways_flow_control_resets_goaway_and_the_h2c_upgrade(celeris):
    process = celeris(APP, "--port", "0", "--log-level", "trace")
    trace = rf"TRACE:    {PEER}: "
    client = H2Socket(process.port, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1})
    try:
        sid = client.request("/")  # "ok": two bytes through a one-byte window
        client.receive(client.ended(sid))
        assert client.body(sid) == b"ok"
    finally:
        client.close()
    process.read_until(trace + r"received SETTINGS stream=0 flags=- length=\d+ .*INITIAL_WINDOW_SIZE=1\b")
    process.read_until(trace + r"sent SETTINGS stream=0 flags=- length=\d+ MAX_CONCURRENT_STREAMS=\d+")
    process.read_until(trace + r"received HEADERS stream=1 flags=END_STREAM\|END_HEADERS length=\d+")
    process.read_until(trace + r"sent HEADERS stream=1 flags=END_HEADERS length=\d+")
    process.read_until(trace + r"stream 1: 1 bytes wait for flow control \(stream window 0, connection window \d+\)")
    process.read_until(trace + r"received WINDOW_UPDATE stream=1 flags=- length=4 increment=\d+")
    process.read_until(trace + r"stream 1: flow control let its queued data out")
    process.read_until(trace + r"sent DATA stream=1 flags=END_STREAM length=1")

    bad = FrameSocket(process.port)
    try:
        bad.send(frame(f.HEADERS, f.FLAG_END_HEADERS | f.FLAG_END_STREAM, 1, bad.block([*REQUEST, ("X-Up", "a")])))
        bad.send(frame(f.HEADERS, f.FLAG_END_HEADERS, 2, bad.block(REQUEST)))
        bad.read_until(lambda frames: any(isinstance(fr, GoAwayFrame) for fr in frames))
    finally:
        bad.close()
    process.read_until(trace + r"sent RST_STREAM stream=1 flags=- length=4 error=PROTOCOL_ERROR")
    process.read_until(
        trace + r"sent GOAWAY stream=0 flags=- length=\d+ last_stream=1 error=PROTOCOL_ERROR debug=b'client stream ids"
    )

    with socket.create_connection(("127.0.0.1", process.port), timeout=5) as sock:
        sock.sendall(H2C_UPGRADE)
        assert sock.recv(65536).startswith(b"HTTP/1.1 101 ")
    process.read_until(
        trace + r"h2c upgrade: GET /h2c becomes stream 1; HTTP2-Settings MAX_CONCURRENT_STREAMS=100 "
        r"INITIAL_WINDOW_SIZE=1073741824 ENABLE_PUSH=0"
    )
    process.read_until(trace + r"h2c upgrade: 101 Switching Protocols sent")
    assert process.stop() == 0


def test_no_http2_trace_lines_below_trace_level(celeris):
    process = celeris(APP, "--port", "0", "--log-level", "debug")
    client = H2Socket(process.port)
    try:
        client.receive(client.ended(client.request("/")))
    finally:
        client.close()
    process.read_until(r"Connection closed: .* \(HTTP/2\)")
    assert process.stop() == 0
    assert not [line for line in process.lines if "TRACE" in line or " SETTINGS " in line]
