"""RFC 9113 sections 4 and 6: frame format and frame definitions, including what h2 refuses to send."""

from __future__ import annotations

import struct

import h2.events
import pytest
from hyperframe.frame import ContinuationFrame, HeadersFrame, PingFrame

from celeris_asgi.protocols.http2 import H2Settings
from celeris_asgi.protocols.http2 import frames as f
from tests.http2.h2util import REQUEST, Pair, Raw, frame, goaway_code, resets, settings_payload

pytestmark = pytest.mark.timeout(30)

END = f.FLAG_END_HEADERS | f.FLAG_END_STREAM


def u32(value: int) -> bytes:
    return struct.pack(">L", value)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (frame(f.DATA, 0, 0, b"x"), f.PROTOCOL_ERROR),  # 6.1
        (frame(f.HEADERS, END, 0, b"\x82"), f.PROTOCOL_ERROR),  # 6.2
        (frame(f.PRIORITY, 0, 0, b"\0" * 5), f.PROTOCOL_ERROR),  # 6.3
        (frame(f.RST_STREAM, 0, 0, u32(0)), f.PROTOCOL_ERROR),  # 6.4
        (frame(f.SETTINGS, 0, 1), f.PROTOCOL_ERROR),  # 6.5
        (frame(f.SETTINGS, f.FLAG_ACK, 0, b"\0" * 6), f.FRAME_SIZE_ERROR),  # 6.5
        (frame(f.SETTINGS, 0, 0, b"\0" * 7), f.FRAME_SIZE_ERROR),  # 6.5
        (frame(f.SETTINGS, 0, 0, settings_payload(enable_push=2)), f.PROTOCOL_ERROR),  # 6.5.2
        (frame(f.SETTINGS, 0, 0, settings_payload(initial_window_size=1 << 31)), f.FLOW_CONTROL_ERROR),
        (frame(f.SETTINGS, 0, 0, settings_payload(max_frame_size=16383)), f.PROTOCOL_ERROR),
        (frame(f.SETTINGS, 0, 0, settings_payload(max_frame_size=1 << 24)), f.PROTOCOL_ERROR),
        (frame(f.PUSH_PROMISE, f.FLAG_END_HEADERS, 1, u32(2) + b"\x82"), f.PROTOCOL_ERROR),  # 6.6 / 8.4
        (frame(f.PING, 0, 1, b"\0" * 8), f.PROTOCOL_ERROR),  # 6.7
        (frame(f.PING, 0, 0, b"\0" * 9), f.FRAME_SIZE_ERROR),  # 6.7
        (frame(f.GOAWAY, 0, 1, b"\0" * 8), f.PROTOCOL_ERROR),  # 6.8
        (frame(f.GOAWAY, 0, 0, b"\0" * 7), f.FRAME_SIZE_ERROR),
        (frame(f.WINDOW_UPDATE, 0, 0, b"\0\0\0"), f.FRAME_SIZE_ERROR),  # 6.9
        (frame(f.WINDOW_UPDATE, 0, 0, u32(0)), f.PROTOCOL_ERROR),  # 6.9
        (frame(f.WINDOW_UPDATE, 0, 0, u32(f.MAX_WINDOW_SIZE)), f.FLOW_CONTROL_ERROR),  # 6.9.1
        (frame(f.CONTINUATION, f.FLAG_END_HEADERS, 1, b"\x82"), f.PROTOCOL_ERROR),  # 6.10
        (frame(f.HEADERS, f.FLAG_PADDED | END, 1, b""), f.FRAME_SIZE_ERROR),  # 4.2 too short for padding
        (frame(f.HEADERS, f.FLAG_PRIORITY | END, 1, b"\0\0"), f.FRAME_SIZE_ERROR),
        (frame(f.DATA, 0, 1, b"x" * 16385), f.FRAME_SIZE_ERROR),  # 4.2 above SETTINGS_MAX_FRAME_SIZE
    ],
)
def test_rfc9113_6_connection_errors(data, code):
    raw = Raw()
    assert goaway_code(raw.send(data)) == code
    assert raw.closed_with == code
    assert raw.send(frame(f.HEADERS, END, 3, raw.block())) == []  # a dead connection reads nothing


def test_rfc9113_4_1_reserved_bit_of_the_stream_id_is_ignored():
    raw = Raw()
    raw.send(frame(f.HEADERS, END, 1 | 0x80000000, raw.block()))
    assert [(e[0], e[1]) for e in raw.recorder.events] == [("request", 1)]


def test_rfc9113_4_1_unknown_flags_are_ignored():
    raw = Raw()
    raw.send(frame(f.HEADERS, END | 0xC2, 1, raw.block()))
    assert [e[0] for e in raw.recorder.events] == ["request"]


def test_rfc9113_5_5_unknown_frame_types_are_ignored():
    raw = Raw()
    assert raw.send(frame(0xFA, 0x3, 0, b"whatever") + frame(0x20, 0, 1, b"x" * 10)) == []
    raw.headers(1)
    assert not raw.server.closed


def test_rfc9113_6_1_padded_data_delivers_only_the_data():
    raw = Raw()
    raw.headers(1, end_stream=False)
    raw.send(frame(f.DATA, f.FLAG_PADDED | f.FLAG_END_STREAM, 1, b"\x03abcPPP"))
    assert raw.recorder.events[-1] == ("data", 1, b"abc", True)


def test_rfc9113_6_2_padded_headers_with_priority_are_decoded():
    raw = Raw()
    payload = b"\x04" + struct.pack(">LB", 0x80000003, 200) + raw.block() + b"\0" * 4
    raw.send(frame(f.HEADERS, END | f.FLAG_PADDED | f.FLAG_PRIORITY, 1, payload))
    assert raw.recorder.events[0][2].path == b"/"


def test_rfc9113_6_3_priority_is_accepted_and_ignored_even_for_idle_streams():
    raw = Raw()
    assert raw.send(frame(f.PRIORITY, 0, 9, struct.pack(">LB", 3, 16))) == []
    raw.headers(1)
    raw.headers(9)
    assert [e[1] for e in raw.recorder.events] == [1, 9]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (frame(f.PRIORITY, 0, 1, b"\0" * 4), f.FRAME_SIZE_ERROR),
        (frame(f.PRIORITY, 0, 1, struct.pack(">LB", 1, 0)), f.PROTOCOL_ERROR),
    ],
)
def test_rfc9113_6_3_priority_stream_errors(data, code):
    raw = Raw()
    assert resets(raw.send(data)) == [(1, code)]
    assert not raw.server.closed


def test_rfc9113_6_5_3_settings_are_acknowledged_and_applied():
    pair = Pair()
    pair.client.update_settings({f.SETTINGS_MAX_FRAME_SIZE: 32768, f.SETTINGS_INITIAL_WINDOW_SIZE: 100000})
    events = pair.exchange()
    assert any(isinstance(e, h2.events.SettingsAcknowledged) for e in events)
    assert pair.server.sender.max_frame_size == 32768
    assert pair.server.sender.initial_window == 100000


def test_rfc9113_6_7_ping_is_answered_with_the_same_payload():
    raw = Raw()
    (pong,) = raw.send(frame(f.PING, 0, 0, b"8 bytes!"))
    assert isinstance(pong, PingFrame)
    assert "ACK" in pong.flags
    assert pong.opaque_data == b"8 bytes!"
    assert raw.send(frame(f.PING, f.FLAG_ACK, 0, b"8 bytes!")) == []  # an ACK is never answered


def test_rfc9113_6_8_goaway_from_the_client_lets_open_streams_finish():
    raw = Raw()
    raw.headers(1)
    raw.send(frame(f.GOAWAY, 0, 0, u32(0) + u32(0)))
    assert raw.server.peer_goaway
    raw.server.send_headers(1, 200, [], end_stream=True)
    (response,) = raw.send(b"")
    assert isinstance(response, HeadersFrame)
    assert response.stream_id == 1


def test_rfc9113_6_10_header_block_split_over_continuation_frames():
    raw = Raw()
    block = raw.block([*REQUEST, ("x-long", "v" * 300)])
    parts = [block[:10], block[10:200], block[200:]]
    data = frame(f.HEADERS, f.FLAG_END_STREAM, 1, parts[0])
    data += frame(f.CONTINUATION, 0, 1, parts[1]) + frame(f.CONTINUATION, f.FLAG_END_HEADERS, 1, parts[2])
    raw.send(data)
    (event,) = raw.recorder.events
    assert (b"x-long", b"v" * 300) in event[2].headers
    assert event[3] is True


@pytest.mark.parametrize(
    "interloper",
    [
        frame(f.PING, 0, 0, b"\0" * 8),
        frame(f.CONTINUATION, f.FLAG_END_HEADERS, 3, b""),
        frame(0x20, 0, 1, b""),
    ],
    ids=["PING", "CONTINUATION on another stream", "unknown frame"],
)
def test_rfc9113_6_10_nothing_may_interrupt_a_header_block(interloper):
    raw = Raw()
    block = raw.block()
    data = frame(f.HEADERS, f.FLAG_END_STREAM, 1, block[:2]) + interloper
    assert goaway_code(raw.send(data)) == f.PROTOCOL_ERROR


def test_response_header_block_above_peer_max_frame_size_uses_continuation():
    raw = Raw()
    raw.headers(1)
    raw.server.send_headers(1, 200, [(b"x-big", b"v" * 40000)], end_stream=True)
    out = raw.send(b"")
    assert [type(fr) for fr in out] == [HeadersFrame, ContinuationFrame, ContinuationFrame]
    assert all(len(fr.data) <= 16384 for fr in out)
    assert "END_HEADERS" in out[-1].flags
    assert "END_STREAM" in out[0].flags


def test_h2_client_reassembles_a_response_split_over_continuation():
    pair = Pair()
    sid = pair.request()
    pair.exchange()
    pair.respond(sid, b"ok", headers=[(b"x-big", b"v" * 40000)])
    pair.exchange()
    response = pair.responses()[sid]
    assert (b"x-big", b"v" * 40000) in response["headers"]
    assert response["body"] == b"ok"


def test_larger_max_frame_size_is_honoured_for_settings_we_advertise():
    raw = Raw(H2Settings(max_frame_size=65536))
    assert raw.initial[0].settings[f.SETTINGS_MAX_FRAME_SIZE] == 65536
    raw.headers(1, end_stream=False)
    raw.send(frame(f.DATA, f.FLAG_END_STREAM, 1, b"x" * 60000))
    assert not raw.server.closed
    assert raw.recorder.events[-1][2] == b"x" * 60000
