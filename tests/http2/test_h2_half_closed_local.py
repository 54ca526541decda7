"""RFC 9113 5.1 / 8.1: a response that completes before its request is still half-closed (local).

An application may answer without reading the request body.  The stream then stays
half-closed (local) until the client ends it: what the client still sends on it is
checked as on any open stream (trailers must end the stream, content-length, windows)
and dropped.  Such streams are reclaimed with RST_STREAM NO_ERROR once their window is
spent, when too old, when a new stream needs the slot, or at shutdown.  These tests
fix the order of events (the response first, then the offending frame), so they do
not depend on when the application's task happens to run.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hyperframe.frame import DataFrame, HeadersFrame, RstStreamFrame, WindowUpdateFrame

from celeris_asgi.protocols.http2 import H2Settings
from celeris_asgi.protocols.http2 import frames as f
from tests.http2.h2util import FrameSocket, Raw, frame, goaway_code, resets

pytestmark = pytest.mark.timeout(30)

END_HEADERS = f.FLAG_END_HEADERS
END = f.FLAG_END_HEADERS | f.FLAG_END_STREAM
POST = [(":method", "POST"), (":path", "/"), (":scheme", "http"), (":authority", "example.com")]


def u32(value: int) -> bytes:
    return struct.pack(">L", value)


def answered(raw: Raw, sid: int = 1, headers: list[tuple[str, str]] = POST) -> None:
    """Open ``sid`` without END_STREAM, answer it in full and let the application go."""
    raw.headers(sid, headers, end_stream=False)
    raw.server.send_headers(sid, 200, [(b"content-length", b"2")])
    raw.server.send_data(sid, b"ok", end_stream=True)
    raw.server.finish_stream(sid, linger=True)
    out = raw.send(b"")
    assert [type(fr) for fr in out] == [HeadersFrame, DataFrame]
    assert resets(out) == []
    assert sid in raw.server.streams


# Each case: the request's extra header fields, then the frames the client sends after the response.
OFFENDING = {
    "second HEADERS without END_STREAM": ([], lambda raw: frame(f.HEADERS, END_HEADERS, 1, raw.block([("x", "1")]))),
    "trailers with a pseudo-header": ([], lambda raw: frame(f.HEADERS, END, 1, raw.block([(":path", "/")]))),
    "DATA beyond content-length": ([("content-length", "3")], lambda raw: frame(f.DATA, 0, 1, b"test")),
    "END_STREAM short of content-length": ([("content-length", "9")], lambda raw: frame(f.DATA, 1, 1, b"test")),
    "trailers short of content-length": (
        [("content-length", "9")],
        lambda raw: frame(f.DATA, 0, 1, b"test") + frame(f.HEADERS, END, 1, raw.block([("x", "1")])),
    ),
    "WINDOW_UPDATE of 0": ([], lambda raw: frame(f.WINDOW_UPDATE, 0, 1, u32(0))),
}


@pytest.mark.parametrize("case", sorted(OFFENDING))
def test_rfc9113_8_1_frames_after_the_response_are_still_checked(case):
    extra, offending = OFFENDING[case]
    raw = Raw()
    answered(raw, headers=[*POST, *extra])
    assert resets(raw.send(offending(raw))) == [(1, f.PROTOCOL_ERROR)]
    assert raw.server.streams == {}
    assert raw.server.table.lingering == {}
    assert [e[1] for e in raw.recorder.events if e[0] == "request"] == [1]
    raw.headers(3)  # the connection carries on
    assert raw.recorder.events[-1][:2] == ("request", 3)


def test_rfc9113_6_9_1_window_overflow_after_the_response_is_a_stream_error():
    raw = Raw()
    answered(raw)
    increment = f.MAX_WINDOW_SIZE - f.DEFAULT_WINDOW_SIZE + 2  # +2: the 2 bytes of "ok" were spent
    assert resets(raw.send(frame(f.WINDOW_UPDATE, 0, 1, u32(increment)))) == []
    assert resets(raw.send(frame(f.WINDOW_UPDATE, 0, 1, u32(1)))) == [(1, f.FLOW_CONTROL_ERROR)]


def test_rfc9113_6_1_bad_padding_after_the_response_is_a_connection_error():
    raw = Raw()
    answered(raw)
    assert goaway_code(raw.send(frame(f.DATA, f.FLAG_PADDED, 1, b"\x09abc"))) == f.PROTOCOL_ERROR


def test_rfc9113_5_1_frames_after_the_clients_rst_stream_are_stream_closed():
    raw = Raw()
    answered(raw)
    assert resets(raw.send(frame(f.RST_STREAM, 0, 1, u32(f.CANCEL)))) == []
    assert raw.server.table.lingering == {}
    assert resets(raw.send(frame(f.DATA, 0, 1, b"late"))) == [(1, f.STREAM_CLOSED)]


def test_the_request_ends_normally_after_the_response_without_any_reset():
    raw = Raw()
    answered(raw, headers=[*POST, ("content-length", "8")])
    out = raw.send(frame(f.DATA, 0, 1, b"rest") + frame(f.DATA, f.FLAG_END_STREAM, 1, b"done"))
    assert resets(out) == []
    assert not [fr for fr in out if isinstance(fr, WindowUpdateFrame) and fr.stream_id == 1]
    assert raw.server.streams == {}
    assert raw.server.table.lingering == {}
    assert [e for e in raw.recorder.events if e[0] == "data"] == []  # dropped: the application is gone
    assert goaway_code(raw.send(frame(f.DATA, 0, 1, b"x"))) == f.STREAM_CLOSED  # now closed for good


def test_trailers_end_the_request_after_the_response():
    raw = Raw()
    answered(raw)
    assert resets(raw.send(frame(f.DATA, 0, 1, b"body") + frame(f.HEADERS, END, 1, raw.block([("x", "1")])))) == []
    assert raw.server.streams == {}


def test_the_connection_window_comes_back_but_the_stream_window_does_not():
    """The client may send at most its stream window of unread body; then the stream is reset (NO_ERROR)."""
    raw = Raw(H2Settings(initial_window_size=65535, connection_window_size=65535))
    answered(raw)
    chunk = b"x" * 16384
    out = []
    for _ in range(3):
        out += raw.send(frame(f.DATA, 0, 1, chunk))
    assert resets(out) == []
    out = raw.send(frame(f.DATA, 0, 1, b"x" * (65535 - 3 * 16384)))
    assert resets(out) == [(1, f.NO_ERROR)]
    updates = [fr for fr in out if isinstance(fr, WindowUpdateFrame)]
    assert updates and {fr.stream_id for fr in updates} == {0}
    assert raw.server.streams == {}
    assert resets(raw.send(frame(f.DATA, f.FLAG_END_STREAM, 1, b""))) == []  # after our RST: ignored


def test_a_spent_window_resets_at_once():
    raw = Raw(H2Settings(initial_window_size=65535))
    raw.headers(1, POST, end_stream=False)
    for _ in range(3):
        raw.send(frame(f.DATA, 0, 1, b"x" * 16384))
    raw.send(frame(f.DATA, 0, 1, b"x" * 16383))  # the application never reads it
    raw.server.send_headers(1, 204, [], end_stream=True)
    raw.server.finish_stream(1, linger=True)
    assert resets(raw.send(b"")) == [(1, f.NO_ERROR)]
    assert raw.server.streams == {}


def test_old_lingering_streams_are_reset_with_no_error():
    raw = Raw()
    answered(raw, 1)
    raw.clock.now += 10
    answered(raw, 3)
    raw.clock.now += 25
    raw.server.expire_lingering(30.0)
    assert resets(raw.send(b"")) == [(1, f.NO_ERROR)]
    raw.clock.now += 10
    raw.server.expire_lingering(30.0)
    assert resets(raw.send(b"")) == [(3, f.NO_ERROR)]
    assert raw.server.streams == {}
    assert raw.server.table.lingering == {}


def test_a_new_stream_at_the_limit_takes_the_oldest_lingering_slot():
    raw = Raw(H2Settings(max_concurrent_streams=2))
    answered(raw, 1)
    answered(raw, 3)
    assert resets(raw.headers(5)) == [(1, f.NO_ERROR)]
    assert resets(raw.headers(7)) == [(3, f.NO_ERROR)]
    assert [e[1] for e in raw.recorder.events if e[0] == "request"] == [1, 3, 5, 7]
    assert resets(raw.headers(9)) == [(9, f.REFUSED_STREAM)]  # 5 and 7 are still being served


def test_streams_the_client_never_ends_stay_within_the_concurrency_limit():
    raw = Raw(H2Settings(max_concurrent_streams=10))
    for sid in range(1, 2 * 500, 2):
        answered(raw, sid)
        assert len(raw.server.streams) <= 10
    assert len(raw.server.table.lingering) == 10
    assert raw.server.table.remembered <= 2 * 256


def test_shutdown_resets_lingering_streams_and_completes():
    raw = Raw()
    answered(raw, 1)
    raw.headers(3, POST, end_stream=False)
    raw.server.start_shutdown()
    assert resets(raw.send(b"")) == [(1, f.NO_ERROR)]
    raw.server.send_headers(3, 200, [], end_stream=True)
    raw.server.finish_stream(3, linger=True)  # no lingering once shutting down
    assert resets(raw.send(b"")) == [(3, f.NO_ERROR)]
    raw.server.finish_shutdown()
    assert raw.server.shutdown_complete


def test_an_unfinished_response_is_still_cancelled():
    raw = Raw()
    raw.headers(1, POST, end_stream=False)
    raw.server.send_headers(1, 200, [])
    raw.server.finish_stream(1, linger=True)
    assert resets(raw.send(b"")) == [(1, f.CANCEL)]


# ----- a live server whose application answers without reading the request ----------------------


async def answer_at_once(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def response_ended(sid: int) -> Any:
    def check(frames: list[Any]) -> bool:
        return any(isinstance(fr, DataFrame) and fr.stream_id == sid and "END_STREAM" in fr.flags for fr in frames)

    return check


def reset_of(sid: int) -> Any:
    return lambda frames: any(isinstance(fr, RstStreamFrame) and fr.stream_id == sid for fr in frames)


def open_answered(server: Any, extra: list[tuple[str, str]]) -> FrameSocket:
    """Stream 1 opened without END_STREAM, its response read in full: the app is done with it."""
    conn = FrameSocket(server.port)
    conn.send(frame(f.HEADERS, END_HEADERS, 1, conn.block([*POST, *extra])))
    conn.read_until(response_ended(1))
    assert not reset_of(1)(conn.frames)  # the request is still open: no RST_STREAM NO_ERROR
    return conn


def next_request_works(conn: FrameSocket, sid: int) -> None:
    conn.send(frame(f.HEADERS, END, sid, conn.block(POST)))
    conn.read_until(response_ended(sid))


@pytest.mark.parametrize(
    ("extra", "offending"),
    [
        ([], lambda conn: frame(f.HEADERS, END_HEADERS, 1, conn.block([("x-test", "ok")]))),
        ([("content-length", "1")], lambda conn: frame(f.DATA, f.FLAG_END_STREAM, 1, b"test")),
        ([("content-length", "8")], lambda conn: frame(f.DATA, 0, 1, b"test") + frame(f.DATA, 1, 1, b"test!")),
    ],
    ids=["second HEADERS without END_STREAM", "content-length over", "content-length over in two DATA"],
)
def test_live_server_resets_malformed_frames_after_an_early_response(serve, extra, offending):
    server = serve(answer_at_once)
    conn = open_answered(server, extra)
    conn.send(offending(conn))
    conn.read_until(reset_of(1))
    assert resets(conn.frames) == [(1, f.PROTOCOL_ERROR)]
    next_request_works(conn, 3)
    conn.close()


def test_live_server_lets_the_request_end_after_an_early_response(serve):
    server = serve(answer_at_once)
    conn = open_answered(server, [("content-length", "4")])
    conn.send(frame(f.DATA, f.FLAG_END_STREAM, 1, b"body"))
    next_request_works(conn, 3)
    assert resets(conn.frames) == []
    conn.close()


def test_live_server_resets_a_request_left_unfinished_past_the_body_timeout(serve):
    server = serve(answer_at_once, timeout_request_body=0.3)
    conn = open_answered(server, [])
    conn.read_until(reset_of(1), timeout=5)
    assert resets(conn.frames) == [(1, f.NO_ERROR)]
    next_request_works(conn, 3)
    conn.close()
