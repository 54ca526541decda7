"""RFC 9113 section 8: HTTP semantics -- header validation, pseudo-headers, content-length, trailers."""

from __future__ import annotations

import pytest
from hyperframe.frame import HeadersFrame

from celeris_asgi.protocols.http2 import H2Settings
from celeris_asgi.protocols.http2 import frames as f
from tests.http2.h2util import REQUEST, Raw, frame, resets

pytestmark = pytest.mark.timeout(30)

END = f.FLAG_END_HEADERS | f.FLAG_END_STREAM
GET = [(":method", "GET"), (":scheme", "https"), (":path", "/p?q=1")]


@pytest.mark.parametrize(
    "fields",
    [
        [*REQUEST, ("Accept", "x")],  # 8.2.1 uppercase
        [*REQUEST, ("bad name", "x")],  # 8.2.1 not a token
        [*REQUEST, ("", "x")],
        [*REQUEST, ("x", "a\rb")],  # 8.2.1 CR / LF / NUL
        [*REQUEST, ("x", "a\0b")],
        [*REQUEST, ("x", "trailing ")],  # 8.2.1 surrounding whitespace
        [*REQUEST, ("connection", "close")],  # 8.2.2
        [*REQUEST, ("keep-alive", "5")],
        [*REQUEST, ("proxy-connection", "x")],
        [*REQUEST, ("transfer-encoding", "chunked")],
        [*REQUEST, ("upgrade", "websocket")],
        [*REQUEST, ("te", "gzip")],
        [("x", "1"), *REQUEST],  # 8.3 pseudo-headers first
        [*REQUEST, (":path", "/again")],  # 8.3 no duplicates
        [*REQUEST, (":status", "200")],  # 8.3.1 response pseudo-header
        [*REQUEST, (":protocol", "websocket")],  # RFC 8441 only when enabled
        [(":scheme", "http"), (":path", "/")],  # 8.3.1 :method required
        [(":method", "GET"), (":path", "/")],  # :scheme required
        [(":method", "GET"), (":scheme", "http")],  # :path required
        [(":method", "GET"), (":scheme", "http"), (":path", "")],
        [(":method", "GET"), (":scheme", "http"), (":path", "relative")],
        [(":method", "G ET"), (":scheme", "http"), (":path", "/")],
        [(":method", "CONNECT"), (":authority", "a:443"), (":path", "/")],  # 8.5
        [(":method", "CONNECT"), (":scheme", "https")],
        [*REQUEST, ("host", "other.example")],  # 8.3.1
        [*REQUEST, ("content-length", "abc")],
        [*REQUEST, ("content-length", "1"), ("content-length", "2")],
    ],
)
def test_rfc9113_8_malformed_requests_are_stream_protocol_errors(fields):
    raw = Raw()
    assert resets(raw.headers(1, fields)) == [(1, f.PROTOCOL_ERROR)]
    assert raw.recorder.events == []
    raw.headers(3)  # the connection carries on
    assert [e[1] for e in raw.recorder.events] == [3]


@pytest.mark.parametrize("field", [("x", "a\rb"), ("connection", "close"), ("te", "gzip"), ("x", "trailing ")])
def test_rfc9113_8_2_a_malformed_field_stays_malformed_when_sent_indexed(field):
    """The decoder vets each HPACK table entry once; an entry that failed must fail every request using it."""
    raw = Raw()
    for sid in (1, 3):  # the second block refers to the field by its dynamic-table index
        assert resets(raw.headers(sid, [*REQUEST, field])) == [(sid, f.PROTOCOL_ERROR)]
    assert raw.recorder.events == []
    raw.headers(5, [*REQUEST, ("x", "fine")])
    raw.headers(7, [*REQUEST, ("x", "fine")])  # indexed and vetted now
    assert [e[1] for e in raw.recorder.events] == [5, 7]


def test_rfc9113_8_3_request_head_and_asgi_headers():
    raw = Raw()
    fields = [
        *GET,
        (":authority", "example.com:8443"),
        ("accept", "*/*"),
        ("cookie", "a=1"),
        ("cookie", "b=2"),
    ]
    raw.headers(1, fields)
    (_, sid, head, end_stream) = raw.recorder.events[0]
    assert (sid, end_stream) == (1, True)
    assert head.method == b"GET"
    assert head.scheme == b"https"
    assert head.path == b"/p?q=1"
    assert head.authority == b"example.com:8443"
    # ASGI: :authority becomes the first header, named host; order and repeats kept.
    assert head.headers == (
        (b"host", b"example.com:8443"),
        (b"accept", b"*/*"),
        (b"cookie", b"a=1"),
        (b"cookie", b"b=2"),
    )


def test_rfc9113_8_3_1_host_without_authority_is_kept():
    raw = Raw()
    raw.headers(1, [*GET, ("host", "h.example")])
    assert raw.recorder.events[0][2].headers == ((b"host", b"h.example"),)


def test_rfc9113_8_3_1_asterisk_path_only_for_options():
    raw = Raw()
    raw.headers(1, [(":method", "OPTIONS"), (":scheme", "http"), (":path", "*")])
    assert raw.recorder.events[0][2].path == b"*"


def test_rfc9113_8_5_connect_carries_only_authority():
    raw = Raw()
    raw.headers(1, [(":method", "CONNECT"), (":authority", "proxy.example:443")], end_stream=False)
    head = raw.recorder.events[0][2]
    assert (head.method, head.scheme, head.path) == (b"CONNECT", None, None)


def test_rfc8441_protocol_pseudo_header_when_extended_connect_is_enabled():
    raw = Raw(H2Settings(enable_connect_protocol=True))
    assert raw.initial[0].settings[f.SETTINGS_ENABLE_CONNECT_PROTOCOL] == 1
    fields = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "https"), (":path", "/ws")]
    raw.headers(1, [*fields, (":authority", "a")], end_stream=False)
    assert raw.recorder.events[0][2].protocol == b"websocket"


def test_rfc9113_8_1_1_content_length_must_match_the_data():
    raw = Raw()
    post = [*REQUEST, ("content-length", "6")]
    raw.headers(1, post, end_stream=False)
    assert resets(raw.send(frame(f.DATA, 0, 1, b"abc") + frame(f.DATA, 1, 1, b"def"))) == []
    raw.headers(3, post, end_stream=False)
    assert resets(raw.send(frame(f.DATA, 1, 3, b"abc"))) == [(3, f.PROTOCOL_ERROR)]
    raw.headers(5, post, end_stream=False)
    assert resets(raw.send(frame(f.DATA, 0, 5, b"abcdefg"))) == [(5, f.PROTOCOL_ERROR)]
    assert resets(raw.headers(7, post, end_stream=True)) == [(7, f.PROTOCOL_ERROR)]
    assert [e[0] for e in raw.recorder.events] == [
        "request",
        "data",
        "data",
        "request",
        "reset",
        "request",
        "reset",
    ]


def test_rfc9113_8_1_trailers_end_the_request():
    raw = Raw()
    raw.headers(1, end_stream=False)
    raw.send(frame(f.DATA, 0, 1, b"body"))
    raw.send(frame(f.HEADERS, END, 1, raw.block([("x-checksum", "1234")])))
    assert raw.recorder.events[1:] == [("data", 1, b"body", False), ("data", 1, b"", True)]


def test_rfc9113_8_2_3_oversized_header_list_gets_431_and_the_connection_lives():
    raw = Raw(H2Settings(max_header_list_size=1024))
    out = raw.headers(1, [*REQUEST, ("x-big", "v" * 2000)])
    assert isinstance(out[0], HeadersFrame)
    assert "END_STREAM" in out[0].flags
    assert raw.recorder.events == []
    raw.headers(3)
    assert [e[1] for e in raw.recorder.events] == [3]


def test_repeated_header_blocks_reuse_the_decoded_head_only_while_the_table_is_unchanged():
    raw = Raw()
    raw.headers(1, [*REQUEST, ("x-a", "1")])  # indexes x-a: 1
    raw.headers(3, [*REQUEST, ("x-a", "1")])  # all indexed now: cacheable
    raw.headers(5, [*REQUEST, ("x-a", "1")])  # same bytes: served from the cache
    assert raw.recorder.events[1][2] is raw.recorder.events[2][2]
    raw.headers(7, [*REQUEST, ("x-a", "2")])  # a table change clears the cache
    assert raw.server.blocks.cached == 0
    heads = [e[2] for e in raw.recorder.events]
    assert [dict(h.headers)[b"x-a"] for h in heads] == [b"1", b"1", b"1", b"2"]
