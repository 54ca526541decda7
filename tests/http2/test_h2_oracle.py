"""Differential test: the same frames fed to h2's server side and to our engine end the same way.

Outcomes are compared as (connection error code) or (stream resets, requests
seen).  Where h2 and RFC 9113 part ways the RFC wins, and every such case is
listed below with the section that decides it:

* h2 turns malformed requests (RFC 9113 8.1.1, 8.2) and stream-scoped frame
  errors into connection errors; the RFC asks for a stream error of the same
  code, which is what we send.  ``STREAM_LEVEL`` lists them.
* ``RFC_OVERRIDES`` lists where h2 picks a different error code.
"""

from __future__ import annotations

import struct

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import hpack
import pytest

from celeris_asgi.protocols.http2 import frames as f
from tests.http2.h2util import (
    PREFACE,
    REQUEST,
    Raw,
    frame,
    goaway_code,
    parse_frames,
    resets,
    settings_payload,
)

pytestmark = pytest.mark.timeout(30)

END = f.FLAG_END_HEADERS | f.FLAG_END_STREAM
OPEN = f.FLAG_END_HEADERS


def block(headers: list[tuple[str, str]] | None = None) -> bytes:
    return hpack.Encoder().encode(headers or REQUEST)


def headers(sid: int, flags: int = END, fields: list[tuple[str, str]] | None = None) -> bytes:
    return frame(f.HEADERS, flags, sid, block(fields))


def u32(value: int) -> bytes:
    return struct.pack(">L", value)


SCENARIOS: dict[str, bytes] = {
    "simple GET": headers(1),
    "two requests": headers(1) + headers(3),
    "even stream id": headers(2),
    "stream id lower than the last": headers(5) + headers(3),
    "HEADERS on half-closed (remote)": headers(1) + headers(1),
    "DATA on half-closed (remote)": headers(1) + frame(f.DATA, 1, 1, b"x"),
    "DATA on idle stream": frame(f.DATA, 0, 1, b"x"),
    "RST_STREAM on idle stream": frame(f.RST_STREAM, 0, 1, u32(0)),
    "WINDOW_UPDATE on idle stream": frame(f.WINDOW_UPDATE, 0, 1, u32(1)),
    "WINDOW_UPDATE 0 on the connection": frame(f.WINDOW_UPDATE, 0, 0, u32(0)),
    "PRIORITY on stream 0": frame(f.PRIORITY, 0, 0, struct.pack(">LB", 3, 16)),
    "PUSH_PROMISE from a client": frame(f.PUSH_PROMISE, OPEN, 1, u32(2) + block()),
    "CONTINUATION without HEADERS": frame(f.CONTINUATION, OPEN, 1, block()),
    "DATA inside a header block": frame(f.HEADERS, f.FLAG_END_STREAM, 1, block()) + frame(f.DATA, 1, 1, b"x"),
    "SETTINGS with a length of 5": frame(f.SETTINGS, 0, 0, b"\0" * 5),
    "SETTINGS_ENABLE_PUSH 2": frame(f.SETTINGS, 0, 0, settings_payload(enable_push=2)),
    "SETTINGS_INITIAL_WINDOW_SIZE 2^31": frame(f.SETTINGS, 0, 0, settings_payload(initial_window_size=2**31)),
    "SETTINGS_MAX_FRAME_SIZE 16383": frame(f.SETTINGS, 0, 0, settings_payload(max_frame_size=16383)),
    "PING with a length of 7": frame(f.PING, 0, 0, b"\0" * 7),
    "PING on a stream": frame(f.PING, 0, 1, b"\0" * 8),
    "GOAWAY on a stream": frame(f.GOAWAY, 0, 1, b"\0" * 8),
    "DATA on stream 0": frame(f.DATA, 0, 0, b"x"),
    "HEADERS on stream 0": frame(f.HEADERS, END, 0, block()),
    "RST_STREAM with a length of 3": headers(1, OPEN) + frame(f.RST_STREAM, 0, 1, b"\0\0\0"),
    "frame above SETTINGS_MAX_FRAME_SIZE": headers(1, OPEN) + frame(f.DATA, 0, 1, b"x" * 16385),
    "DATA padding too long": headers(1, OPEN) + frame(f.DATA, f.FLAG_PADDED, 1, b"\x05abc"),
    "HEADERS padding too long": frame(f.HEADERS, f.FLAG_PADDED | END, 1, b"\xff" + block()),
    "unknown frame type is ignored": frame(0x20, 0, 1, b"abc") + headers(1),
    "te: trailers is allowed": headers(1, END, [*REQUEST, ("te", "trailers")]),
    "DATA after the client's RST_STREAM": headers(1, OPEN)
    + frame(f.RST_STREAM, 0, 1, u32(8))
    + frame(f.DATA, 0, 1, b"x"),
    "HEADERS after the client's RST_STREAM": headers(1, OPEN) + frame(f.RST_STREAM, 0, 1, u32(8)) + headers(1),
    "body with content-length": headers(1, OPEN, [*REQUEST, ("content-length", "3")]) + frame(f.DATA, 1, 1, b"abc"),
    "PING is answered": frame(f.PING, 0, 0, b"12345678") + headers(1),
}

STREAM_LEVEL: dict[str, bytes] = {
    # RFC 9113 6.9: increment 0 on a stream is a stream error.
    "WINDOW_UPDATE 0 on a stream": headers(1, OPEN) + frame(f.WINDOW_UPDATE, 0, 1, u32(0)),
    # RFC 9113 5.3.1: a stream cannot depend on itself -> stream error.
    "PRIORITY depending on itself": frame(f.PRIORITY, 0, 1, struct.pack(">LB", 1, 16)),
    "HEADERS depending on itself": frame(f.HEADERS, END | f.FLAG_PRIORITY, 1, struct.pack(">LB", 1, 16) + block()),
    # RFC 9113 6.3: a PRIORITY frame of the wrong length is a stream error.
    "PRIORITY with a length of 4": frame(f.PRIORITY, 0, 1, b"\0" * 4),
    # RFC 9113 8.1.1 / 8.2 / 8.3: malformed requests are stream errors.
    "uppercase header name": headers(1, END, [*REQUEST, ("X-Upper", "1")]),
    "connection-specific header": headers(1, END, [*REQUEST, ("connection", "keep-alive")]),
    "te other than trailers": headers(1, END, [*REQUEST, ("te", "gzip")]),
    "pseudo-header after a regular one": headers(1, END, [*REQUEST[:3], ("x", "1"), (":authority", "a")]),
    "duplicate :method": headers(1, END, [*REQUEST, (":method", "GET")]),
    "missing :path": headers(1, END, [p for p in REQUEST if p[0] != ":path"]),
    "empty :path": headers(1, END, [(":method", "GET"), (":path", ""), (":scheme", "http")]),
    ":status in a request": headers(1, END, [*REQUEST, (":status", "200")]),
    "unknown pseudo-header": headers(1, END, [*REQUEST, (":foo", "1")]),
    "host differs from :authority": headers(1, END, [*REQUEST, ("host", "other")]),
    "newline in a value": headers(1, END, [*REQUEST, ("x", "a\nb")]),
    "leading space in a value": headers(1, END, [*REQUEST, ("x", " a")]),
    "trailers without END_STREAM": headers(1, OPEN) + frame(f.HEADERS, OPEN, 1, block([("x", "1")])),
    "pseudo-header in trailers": headers(1, OPEN) + frame(f.HEADERS, END, 1, block([(":path", "/")])),
    "less DATA than content-length": headers(1, OPEN, [*REQUEST, ("content-length", "5")])
    + frame(f.DATA, 1, 1, b"abc"),
    "more DATA than content-length": headers(1, OPEN, [*REQUEST, ("content-length", "2")])
    + frame(f.DATA, 1, 1, b"abc"),
}

RFC_OVERRIDES: dict[str, tuple[bytes, int]] = {
    # RFC 9113 6.5: SETTINGS ACK with a payload is FRAME_SIZE_ERROR (h2 says PROTOCOL_ERROR).
    "SETTINGS ACK with a payload": (frame(f.SETTINGS, f.FLAG_ACK, 0, b"\0" * 6), f.FRAME_SIZE_ERROR),
    # RFC 9113 4.3: a field block that fails to decode is COMPRESSION_ERROR (h2 says PROTOCOL_ERROR).
    "undecodable header block": (frame(f.HEADERS, END, 1, b"\x80"), f.COMPRESSION_ERROR),
}


def h2_outcome(data: bytes) -> tuple:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
    conn.initiate_connection()
    conn.data_to_send()
    try:
        events = conn.receive_data(PREFACE + frame(f.SETTINGS, 0, 0) + data)
    except h2.exceptions.ProtocolError as exc:
        return ("connection", int(exc.error_code))
    out = parse_frames(conn.data_to_send())
    if goaway_code(out) is not None:
        return ("connection", goaway_code(out))
    requests = sorted(e.stream_id for e in events if isinstance(e, h2.events.RequestReceived))
    return ("streams", sorted(resets(out)), requests)


def our_outcome(data: bytes) -> tuple:
    raw = Raw(handshake=False)
    out = raw.send(PREFACE + frame(f.SETTINGS, 0, 0) + data)
    if raw.server.closed:
        return ("connection", raw.server.error_code)
    requests = sorted(e[1] for e in raw.recorder.events if e[0] == "request")
    return ("streams", sorted(resets(out)), requests)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_same_outcome_as_h2(name):
    assert our_outcome(SCENARIOS[name]) == h2_outcome(SCENARIOS[name])


@pytest.mark.parametrize("name", list(STREAM_LEVEL))
def test_stream_error_where_h2_ends_the_connection_with_the_same_code(name):
    theirs = h2_outcome(STREAM_LEVEL[name])
    ours = our_outcome(STREAM_LEVEL[name])
    assert theirs[0] == "connection"
    assert ours[0] == "streams"
    assert ours[1] == [(1, theirs[1])]


@pytest.mark.parametrize("name", list(RFC_OVERRIDES))
def test_rfc_error_code_where_h2_differs(name):
    data, code = RFC_OVERRIDES[name]
    assert our_outcome(data) == ("connection", code)
    assert h2_outcome(data)[0] == "connection"
