"""RFC 9113 section 5.2 and 6.9: flow control, both directions."""

from __future__ import annotations

import struct

import pytest
from hyperframe.frame import DataFrame, HeadersFrame, WindowUpdateFrame

from celeris_asgi.protocols.http2 import H2Settings
from celeris_asgi.protocols.http2 import frames as f
from tests.http2.h2util import Pair, Raw, frame, goaway_code, resets, settings_payload

pytestmark = pytest.mark.timeout(30)


def u32(value: int) -> bytes:
    return struct.pack(">L", value)


def data_frames(frames: list) -> list[DataFrame]:
    return [fr for fr in frames if isinstance(fr, DataFrame)]


def test_rfc9113_5_2_never_send_past_the_stream_window_and_resume_on_window_update():
    pair = Pair(client_settings={f.SETTINGS_INITIAL_WINDOW_SIZE: 10}, auto_ack=False)
    sid = pair.request()
    pair.exchange()
    pair.server.send_headers(sid, 200, [])
    assert pair.server.send_data(sid, b"0123456789abcdefghijklmno", end_stream=True) is False
    pair.exchange()
    assert pair.responses()[sid]["body"] == b"0123456789"
    assert not pair.responses()[sid]["ended"]
    pair.client.increment_flow_control_window(100, stream_id=sid)
    pair.exchange()
    assert pair.responses()[sid]["body"] == b"0123456789abcdefghijklmno"
    assert pair.responses()[sid]["ended"]
    assert ("drained", sid) in pair.recorder.events


def test_rfc9113_5_2_connection_window_is_shared_and_flushes_blocked_streams_in_turn():
    pair = Pair(auto_ack=False)
    sids = [pair.request() for _ in range(3)]
    pair.exchange()
    blocked = []
    for sid in sids:
        pair.server.send_headers(sid, 200, [])
        blocked.append(pair.server.send_data(sid, b"x" * 30000, end_stream=True))
    assert blocked == [True, True, False]  # 65535 bytes of connection window: the third waits
    pair.exchange()
    assert len(pair.responses()[sids[2]]["body"]) == 65535 - 60000
    pair.client.increment_flow_control_window(1 << 20)
    pair.exchange()
    assert all(pair.responses()[sid]["ended"] for sid in sids)
    assert len(pair.responses()[sids[2]]["body"]) == 30000
    assert ("drained", sids[2]) in pair.recorder.events


def test_rfc9113_6_9_2_initial_window_size_change_applies_to_open_streams():
    pair = Pair(client_settings={f.SETTINGS_INITIAL_WINDOW_SIZE: 0}, auto_ack=False)
    sid = pair.request()
    pair.exchange()
    pair.server.send_headers(sid, 200, [])
    assert not pair.server.send_data(sid, b"abc", end_stream=True)
    pair.exchange()
    assert pair.responses()[sid]["body"] == b""
    pair.client.update_settings({f.SETTINGS_INITIAL_WINDOW_SIZE: 100})
    pair.exchange()
    assert pair.responses()[sid]["body"] == b"abc"
    assert pair.responses()[sid]["ended"]


def test_rfc9113_6_9_2_a_shrinking_window_can_go_negative():
    raw = Raw()
    raw.headers(1)
    raw.server.send_headers(1, 200, [])
    assert raw.server.send_data(1, b"x" * 1000)
    raw.send(frame(f.SETTINGS, 0, 0, settings_payload(initial_window_size=500)))
    assert raw.server.streams[1].send_window == 500 - 1000
    assert not raw.server.send_data(1, b"y" * 10, end_stream=True)
    assert data_frames(raw.send(frame(f.WINDOW_UPDATE, 0, 1, u32(495)))) == []  # still -5
    (last,) = data_frames(raw.send(frame(f.WINDOW_UPDATE, 0, 1, u32(15))))
    assert last.data == b"y" * 10
    assert "END_STREAM" in last.flags


def test_data_frames_respect_the_peers_max_frame_size():
    raw = Raw()
    raw.headers(1)
    raw.server.send_headers(1, 200, [])
    raw.server.send_data(1, b"x" * 40000, end_stream=True)
    sizes = [len(fr.data) for fr in data_frames(raw.send(b""))]
    assert sizes == [16384, 16384, 40000 - 32768]
    raw.send(frame(f.SETTINGS, 0, 0, settings_payload(max_frame_size=65536)))
    raw.headers(3)
    raw.server.send_headers(3, 200, [])
    raw.server.send_data(3, b"x" * 20000, end_stream=True)
    assert [len(fr.data) for fr in data_frames(raw.send(b""))] == [20000]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (frame(f.WINDOW_UPDATE, 0, 1, u32(f.MAX_WINDOW_SIZE)), ("stream", f.FLOW_CONTROL_ERROR)),
        (frame(f.WINDOW_UPDATE, 0, 1, u32(0)), ("stream", f.PROTOCOL_ERROR)),
        (frame(f.WINDOW_UPDATE, 0, 0, u32(f.MAX_WINDOW_SIZE)), ("connection", f.FLOW_CONTROL_ERROR)),
        (frame(f.SETTINGS, 0, 0, settings_payload(initial_window_size=f.MAX_WINDOW_SIZE)), None),
    ],
)
def test_rfc9113_6_9_1_window_overflow_and_zero_increments(data, expected):
    raw = Raw()
    raw.headers(1, end_stream=False)
    raw.send(frame(f.WINDOW_UPDATE, 0, 1, u32(100)))
    out = raw.send(data)
    if expected is None:  # 65535 + 100 + (2^31-1 - 65535) overflows the stream window
        assert goaway_code(out) == f.FLOW_CONTROL_ERROR
    elif expected[0] == "stream":
        assert resets(out) == [(1, expected[1])]
    else:
        assert goaway_code(out) == expected[1]


def test_rfc9113_6_9_client_exceeding_the_stream_window_is_a_stream_flow_control_error():
    raw = Raw(H2Settings(initial_window_size=65535))
    raw.headers(1, end_stream=False)
    chunk = frame(f.DATA, 0, 1, b"x" * 16384)
    assert resets(raw.send(chunk * 3)) == []
    assert resets(raw.send(chunk)) == [(1, f.FLOW_CONTROL_ERROR)]
    assert not raw.server.closed


def test_rfc9113_6_9_client_exceeding_the_connection_window_is_a_connection_error():
    raw = Raw(H2Settings(initial_window_size=1 << 20, connection_window_size=65535))
    raw.headers(1, end_stream=False)
    chunk = frame(f.DATA, 0, 1, b"x" * 16384)
    assert goaway_code(raw.send(chunk * 4)) == f.FLOW_CONTROL_ERROR


def test_our_larger_initial_window_takes_effect_when_the_client_acknowledges_it():
    raw = Raw(H2Settings(initial_window_size=1 << 20), handshake=False)
    raw.send(f.PREFACE + frame(f.SETTINGS, 0, 0))
    raw.headers(1, end_stream=False)
    assert raw.server.streams[1].recv_window == 65535
    raw.send(frame(f.SETTINGS, f.FLAG_ACK, 0))
    assert raw.server.streams[1].recv_window == 1 << 20
    raw.send(frame(f.DATA, 0, 1, b"x" * 16384) * 10)
    assert not raw.server.closed


def test_consumed_body_is_returned_to_the_client_in_batched_window_updates():
    raw = Raw(H2Settings(initial_window_size=65535, connection_window_size=65535 * 2))
    raw.headers(1, end_stream=False)
    raw.send(frame(f.DATA, 0, 1, b"x" * 16384) * 2)
    raw.server.consume(1, 16384)
    assert raw.send(b"") == []  # below half the window: nothing yet
    raw.server.consume(1, 16384)
    updates = {fr.stream_id: fr.window_increment for fr in raw.send(b"") if isinstance(fr, WindowUpdateFrame)}
    assert updates == {1: 32768}
    raw.send(frame(f.DATA, 0, 1, b"x" * 16384) * 3)
    raw.server.consume(1, 16384 * 3)
    updates = {fr.stream_id: fr.window_increment for fr in raw.send(b"") if isinstance(fr, WindowUpdateFrame)}
    assert updates == {0: 16384 * 5, 1: 16384 * 3}


def test_padding_is_flow_controlled_and_credited_at_once():
    raw = Raw(H2Settings(connection_window_size=65535))
    raw.headers(1, end_stream=False)
    raw.send(frame(f.DATA, f.FLAG_PADDED, 1, b"\xc8" + b"a" + b"\0" * 200))
    assert raw.server.windows.connection == 65535 - 202
    assert raw.server.windows.unacked == 201  # the pad length byte and the padding


def test_trailers_wait_behind_data_queued_for_flow_control():
    pair = Pair(client_settings={f.SETTINGS_INITIAL_WINDOW_SIZE: 5}, auto_ack=False)
    sid = pair.request()
    pair.exchange()
    pair.server.send_headers(sid, 200, [])
    pair.server.send_data(sid, b"0123456789")
    pair.server.send_trailers(sid, [(b"x-checksum", b"abc")])
    pair.exchange()
    assert "trailers" not in pair.responses()[sid]
    pair.client.increment_flow_control_window(100, stream_id=sid)
    pair.exchange()
    response = pair.responses()[sid]
    assert response["body"] == b"0123456789"
    assert response["trailers"] == [(b"x-checksum", b"abc")]
    assert response["ended"]


def test_headers_are_not_flow_controlled():
    raw = Raw()
    raw.send(frame(f.SETTINGS, 0, 0, settings_payload(initial_window_size=0)))
    raw.headers(1)
    raw.server.send_headers(1, 200, [(b"x", b"y" * 1000)])
    assert [type(fr) for fr in raw.send(b"")] == [HeadersFrame]
