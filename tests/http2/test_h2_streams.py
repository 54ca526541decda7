"""RFC 9113 section 5.1: stream states, stream identifiers, concurrency, and the end of a connection."""

from __future__ import annotations

import struct

import pytest
from hyperframe.frame import GoAwayFrame, HeadersFrame, PingFrame

from celeris_asgi.protocols.http2 import H2Settings
from celeris_asgi.protocols.http2 import frames as f
from tests.http2.h2util import Pair, Raw, frame, goaway_code, resets

pytestmark = pytest.mark.timeout(30)

END = f.FLAG_END_HEADERS | f.FLAG_END_STREAM


def u32(value: int) -> bytes:
    return struct.pack(">L", value)


def test_rfc9113_5_1_request_and_response_close_the_stream():
    pair = Pair()
    sid = pair.request(body=b"payload")
    pair.exchange()
    assert [e[0] for e in pair.recorder.events] == ["request", "data"]
    assert pair.recorder.events[1] == ("data", sid, b"payload", True)
    pair.respond(sid, b"done")
    pair.exchange()
    assert pair.responses()[sid]["body"] == b"done"
    assert pair.responses()[sid]["ended"]
    assert pair.server.streams == {}


def test_rfc9113_5_1_1_client_stream_ids_must_be_odd():
    raw = Raw()
    assert goaway_code(raw.send(frame(f.HEADERS, END, 2, raw.block()))) == f.PROTOCOL_ERROR


def test_rfc9113_5_1_1_new_stream_ids_must_increase():
    raw = Raw()
    raw.headers(5)
    assert goaway_code(raw.headers(3)) == f.PROTOCOL_ERROR


@pytest.mark.parametrize(
    "data",
    [frame(f.DATA, 0, 1, b"x"), frame(f.RST_STREAM, 0, 1, u32(0)), frame(f.WINDOW_UPDATE, 0, 1, u32(1))],
    ids=["DATA", "RST_STREAM", "WINDOW_UPDATE"],
)
def test_rfc9113_5_1_frames_on_idle_streams_are_protocol_errors(data):
    raw = Raw()
    assert goaway_code(raw.send(data)) == f.PROTOCOL_ERROR


def test_rfc9113_5_1_half_closed_remote_rejects_more_data_with_stream_closed():
    raw = Raw()
    raw.headers(1)
    assert resets(raw.send(frame(f.DATA, 0, 1, b"late"))) == [(1, f.STREAM_CLOSED)]
    assert raw.recorder.events[-1] == ("reset", 1, f.STREAM_CLOSED)
    assert not raw.server.closed


def test_rfc9113_5_1_half_closed_remote_still_takes_window_update_priority_and_rst():
    raw = Raw()
    raw.headers(1)
    assert raw.send(frame(f.WINDOW_UPDATE, 0, 1, u32(10)) + frame(f.PRIORITY, 0, 1, struct.pack(">LB", 0, 1))) == []
    raw.send(frame(f.RST_STREAM, 0, 1, u32(f.CANCEL)))
    assert raw.recorder.events[-1] == ("reset", 1, f.CANCEL)
    assert raw.server.streams == {}


def test_rfc9113_5_1_closed_stream_rejects_data_with_stream_closed():
    raw = Raw()
    raw.headers(1)
    raw.server.send_headers(1, 204, [], end_stream=True)
    raw.send(b"")
    assert goaway_code(raw.send(frame(f.DATA, 0, 1, b"x"))) == f.STREAM_CLOSED


def test_rfc9113_5_1_frames_after_the_clients_rst_stream_are_stream_closed():
    raw = Raw()
    raw.headers(1, end_stream=False)
    raw.send(frame(f.RST_STREAM, 0, 1, u32(f.CANCEL)))
    assert resets(raw.send(frame(f.DATA, 0, 1, b"x"))) == [(1, f.STREAM_CLOSED)]
    assert not raw.server.closed


def test_rfc9113_5_1_frames_after_our_rst_stream_are_ignored_but_flow_controlled():
    raw = Raw()
    raw.headers(1, end_stream=False)
    raw.server.reset_stream(1, f.CANCEL)
    assert resets(raw.send(b"")) == [(1, f.CANCEL)]
    window = raw.server.windows.connection
    assert raw.send(frame(f.DATA, 0, 1, b"x" * 1000) + frame(f.HEADERS, END, 1, raw.block([("x", "trailer")]))) == []
    assert raw.server.windows.connection == window - 1000
    assert raw.server.windows.unacked == 1000  # credited back to the connection window
    raw.headers(3)  # HPACK stayed in step: the ignored trailer block was decoded
    assert raw.recorder.events[-1][0] == "request"


def test_rfc9113_5_1_2_streams_above_max_concurrent_are_refused():
    raw = Raw(H2Settings(max_concurrent_streams=2))
    raw.headers(1)
    raw.headers(3)
    assert resets(raw.headers(5)) == [(5, f.REFUSED_STREAM)]
    raw.server.send_headers(1, 200, [], end_stream=True)
    raw.send(b"")
    raw.headers(7)
    assert [e[1] for e in raw.recorder.events if e[0] == "request"] == [1, 3, 7]


def test_rfc9113_5_1_2_a_reset_stream_frees_its_slot_while_its_task_runs():
    """Only open streams count toward the limit: a reset one is closed, whatever its task still does."""
    raw = Raw(H2Settings(max_concurrent_streams=2))
    raw.headers(1, end_stream=False)
    raw.send(frame(f.RST_STREAM, 0, 1, u32(f.CANCEL)))
    raw.server.orphaned_streams += 1  # its application task still runs
    raw.headers(3)
    assert resets(raw.headers(5)) == []
    assert resets(raw.headers(7)) == [(7, f.REFUSED_STREAM)]  # 3 and 5 are open


def test_rfc9113_8_1_complete_response_before_the_request_ends_resets_with_no_error():
    pair = Pair()
    sid = pair.client.get_next_available_stream_id()
    pair.client.send_headers(sid, [(":method", "POST"), (":path", "/"), (":scheme", "http"), (":authority", "a")])
    pair.client.send_data(sid, b"part")
    pair.exchange()
    pair.respond(sid, b"early")
    pair.server.finish_stream(sid)
    pair.exchange()
    response = pair.responses()[sid]
    assert response["body"] == b"early"
    assert response["ended"]
    assert response["reset"] == f.NO_ERROR


def test_rfc9113_6_8_graceful_shutdown_is_two_goaways_around_a_ping():
    raw = Raw()
    raw.headers(1)
    raw.server.start_shutdown()
    first, ping = raw.send(b"")
    assert isinstance(first, GoAwayFrame)
    assert first.last_stream_id == f.STREAM_ID_MASK
    assert isinstance(ping, PingFrame)
    raw.headers(3)  # in flight before the client saw the GOAWAY: still served
    (final,) = raw.send(frame(f.PING, f.FLAG_ACK, 0, ping.opaque_data))
    assert isinstance(final, GoAwayFrame)
    assert final.last_stream_id == 3
    assert final.error_code == f.NO_ERROR
    assert resets(raw.headers(5)) == [(5, f.REFUSED_STREAM)]
    assert [e[1] for e in raw.recorder.events if e[0] == "request"] == [1, 3]
    assert not raw.server.shutdown_complete
    for sid in (1, 3):
        raw.server.send_headers(sid, 200, [], end_stream=True)
    assert [type(fr) for fr in raw.send(b"")] == [HeadersFrame, HeadersFrame]
    assert raw.server.shutdown_complete


def test_connection_error_names_the_last_stream_and_stops_everything():
    raw = Raw()
    raw.headers(1)
    raw.headers(3)
    out = raw.send(frame(f.PING, 0, 1, b"\0" * 8))
    goaway = next(fr for fr in out if isinstance(fr, GoAwayFrame))
    assert goaway.last_stream_id == 3
    assert goaway.additional_data  # a reason for the client's logs
    assert raw.server.closed
