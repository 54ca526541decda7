"""RFC 9113 section 3: starting HTTP/2 -- the connection preface, prior knowledge and h2c upgrade."""

from __future__ import annotations

import base64

import h2.config
import h2.connection
import h2.events
import pytest
from hyperframe.frame import SettingsFrame, WindowUpdateFrame

from celeris_asgi.protocols.http2 import H2Connection, H2Settings
from celeris_asgi.protocols.http2 import frames as f
from tests.http2.h2util import (
    PREFACE,
    REQUEST,
    Pair,
    Raw,
    Recorder,
    frame,
    goaway_code,
    parse_frames,
    settings_payload,
)

pytestmark = pytest.mark.timeout(30)


def test_rfc9113_3_4_server_preface_is_settings_then_connection_window():
    raw = Raw(H2Settings(max_concurrent_streams=7, connection_window_size=1 << 20), handshake=False)
    settings, window = raw.initial
    assert isinstance(settings, SettingsFrame)
    assert settings.settings[f.SETTINGS_MAX_CONCURRENT_STREAMS] == 7
    assert settings.settings[f.SETTINGS_MAX_HEADER_LIST_SIZE] == 65536
    assert isinstance(window, WindowUpdateFrame)
    assert window.stream_id == 0
    assert window.window_increment == (1 << 20) - 65535


def test_rfc9113_3_4_handshake_with_h2_client_acknowledges_both_ways():
    pair = Pair()
    kinds = {type(event) for event in pair.client_events}
    assert h2.events.RemoteSettingsChanged in kinds
    assert h2.events.SettingsAcknowledged in kinds
    assert pair.server.settings_acked


def test_rfc9113_3_4_invalid_preface_is_a_protocol_error():
    raw = Raw(handshake=False)
    out = raw.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert goaway_code(out) == f.PROTOCOL_ERROR
    assert raw.server.closed


def test_rfc9113_3_4_preface_split_into_single_bytes():
    raw = Raw(handshake=False)
    data = PREFACE + frame(f.SETTINGS, 0, 0) + frame(f.HEADERS, 5, 1, raw.block())
    out = []
    for i in range(len(data)):
        out += raw.send(data[i : i + 1])
    assert not raw.server.closed
    assert [e[0] for e in raw.recorder.events] == ["request"]
    assert any(isinstance(fr, SettingsFrame) and "ACK" in fr.flags for fr in out)


@pytest.mark.parametrize(
    "first",
    [frame(f.PING, 0, 0, b"\0" * 8), frame(f.SETTINGS, f.FLAG_ACK, 0), frame(f.HEADERS, 5, 1, b"\x82")],
    ids=["PING", "SETTINGS ACK", "HEADERS"],
)
def test_rfc9113_3_4_first_frame_must_be_settings(first):
    raw = Raw(handshake=False)
    assert goaway_code(raw.send(PREFACE + first)) == f.PROTOCOL_ERROR


def test_whole_conversation_one_byte_at_a_time_gives_the_same_events():
    def run(chunk: int) -> list:
        recorder = Recorder()
        server = H2Connection(H2Settings(), recorder)
        server.initiate()
        client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        client.initiate_connection()
        for sid in (1, 3, 5):
            client.send_headers(sid, REQUEST, end_stream=sid == 1)
        client.send_data(3, b"x" * 1000, end_stream=True)
        client.send_data(5, b"abc")
        client.reset_stream(5)
        data = client.data_to_send()
        for i in range(0, len(data), chunk):
            server.receive_data(data[i : i + chunk])
        return [(e[0], e[1], e[3] if e[0] == "request" else e[2]) for e in recorder.events]

    whole = run(1 << 20)
    assert whole == run(1)
    assert whole == run(7)
    assert [e[0] for e in whole] == ["request", "request", "request", "data", "data", "reset"]


def test_rfc7540_3_2_h2c_upgrade_makes_the_request_stream_1():
    recorder = Recorder()
    server = H2Connection(H2Settings(), recorder)
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_upgrade_connection()
    server.initiate_upgrade(base64.urlsafe_b64encode(settings_payload(initial_window_size=1234)).rstrip(b"="))
    assert server.sender.initial_window == 1234
    assert server.streams[1].remote_closed
    # The HTTP2-Settings values are acknowledged by the 101, never by a SETTINGS ACK.
    assert not any("ACK" in fr.flags for fr in parse_frames(bytes(server.data_to_send())))
    server.receive_data(client.data_to_send())
    server.send_headers(1, 200, [(b"x", b"y")])
    server.send_data(1, b"upgraded", end_stream=True)
    events = client.receive_data(bytes(server.data_to_send()))
    data = [e.data for e in events if isinstance(e, h2.events.DataReceived)]
    assert data == [b"upgraded"]
    assert not server.streams


@pytest.mark.parametrize("value", [b"!!!", base64.urlsafe_b64encode(b"\0" * 5)])
def test_rfc7540_3_2_1_unusable_http2_settings_refuses_the_upgrade(value):
    server = H2Connection(H2Settings(), Recorder())
    with pytest.raises(ValueError):
        server.initiate_upgrade(value)
