"""Denial-of-service defences: each limit is a setting, each attack ends in a bounded, named refusal."""

from __future__ import annotations

import random
import struct
import time

import hpack
import pytest
from hyperframe.frame import HeadersFrame

from celeris_asgi.protocols.http2 import H2Settings
from celeris_asgi.protocols.http2 import frames as f
from tests.http2.h2util import REQUEST, Clock, Raw, frame, goaway_code, resets

pytestmark = pytest.mark.timeout(30)

CALM = f.ENHANCE_YOUR_CALM


def u32(value: int) -> bytes:
    return struct.pack(">L", value)


def test_cve_2023_44487_rapid_reset_ends_the_connection():
    raw = Raw(H2Settings(max_resets_per_interval=50))
    data = b"".join(
        frame(f.HEADERS, f.FLAG_END_HEADERS, sid, raw.block()) + frame(f.RST_STREAM, 0, sid, u32(f.CANCEL))
        for sid in range(1, 2 * 60, 2)
    )
    assert goaway_code(raw.send(data)) == CALM
    assert sum(1 for e in raw.recorder.events if e[0] == "reset") == 50


def test_resets_at_a_sustainable_rate_are_fine():
    clock = Clock()
    raw = Raw(H2Settings(max_resets_per_interval=50, flood_interval=10), clock=clock)
    for sid in range(1, 2 * 500, 2):
        raw.send(frame(f.HEADERS, f.FLAG_END_HEADERS, sid, raw.block()) + frame(f.RST_STREAM, 0, sid, u32(8)))
        clock.now += 0.2  # 5 a second; the bucket refills at 50 per 10 s
    assert not raw.server.closed


def test_streams_beyond_the_limit_are_refused_then_calm_is_enhanced():
    raw = Raw(H2Settings(max_concurrent_streams=1, max_resets_per_interval=20))
    raw.headers(1, end_stream=False)
    refused = []
    for sid in range(3, 3 + 2 * 30, 2):
        out = raw.headers(sid)
        refused += resets(out)
        if raw.server.closed:
            break
    assert refused[:20] == [(sid, f.REFUSED_STREAM) for sid in range(3, 43, 2)]
    assert raw.closed_with == CALM


def test_handlers_of_reset_streams_are_bounded_by_the_reset_budget():
    """Reset streams free their slots at once; the handlers they leave running are capped instead."""
    clock = Clock()
    raw = Raw(H2Settings(max_concurrent_streams=10, max_resets_per_interval=50, flood_interval=10), clock=clock)
    for sid in range(1, 2 * 50, 2):
        raw.send(frame(f.HEADERS, f.FLAG_END_HEADERS, sid, raw.block()) + frame(f.RST_STREAM, 0, sid, u32(f.CANCEL)))
        clock.now += 1.0  # slow enough that the reset budget never runs dry
    assert raw.server.streams == {}
    # The protocol counts each reset stream whose handler has not ended yet: here all 50 still run.
    raw.server.orphaned_streams = sum(1 for event in raw.recorder.events if event[0] == "reset")
    assert resets(raw.headers(101)) == [(101, f.REFUSED_STREAM)]
    raw.server.orphaned_streams -= 1  # one handler ended: room for one more stream
    assert resets(raw.headers(103)) == []
    assert not raw.server.closed


def test_continuation_flood_of_empty_frames():
    raw = Raw(H2Settings(max_continuation_frames=32))
    data = frame(f.HEADERS, 0, 1, raw.block()[:1]) + frame(f.CONTINUATION, 0, 1) * 32
    assert raw.send(data) == []
    assert goaway_code(raw.send(frame(f.CONTINUATION, 0, 1))) == CALM


def test_continuation_flood_of_large_frames_is_bounded_by_the_block_size():
    raw = Raw(H2Settings(max_header_block_size=65536))
    data = frame(f.HEADERS, 0, 1, b"\0" * 16384) + frame(f.CONTINUATION, 0, 1, b"\0" * 16384) * 3
    assert raw.send(data) == []
    assert goaway_code(raw.send(frame(f.CONTINUATION, 0, 1, b"\0"))) == CALM


def test_hpack_bomb_is_refused_with_431_without_expanding_it():
    raw = Raw()
    encoder = hpack.Encoder()
    first = encoder.encode([*REQUEST, ("x-bomb", "b" * 4000)])
    raw.send(frame(f.HEADERS, f.FLAG_END_HEADERS | f.FLAG_END_STREAM, 1, first))
    bomb = encoder.encode([*REQUEST] + [("x-bomb", "b" * 4000)] * 10000)  # 10 kB that expands to 40 MB
    assert len(bomb) < 16384
    started = time.perf_counter()
    out = raw.send(frame(f.HEADERS, f.FLAG_END_HEADERS | f.FLAG_END_STREAM, 3, bomb))
    assert time.perf_counter() - started < 1.0
    assert isinstance(out[0], HeadersFrame)
    assert hpack.Decoder().decode(out[0].data) == [(":status", "431"), ("content-length", "0")]
    assert [e[1] for e in raw.recorder.events] == [1]
    raw.send(frame(f.HEADERS, f.FLAG_END_HEADERS | f.FLAG_END_STREAM, 5, encoder.encode(REQUEST)))
    assert [e[1] for e in raw.recorder.events] == [1, 5]  # still in step with the client's encoder


@pytest.mark.parametrize(
    ("setting", "one", "burst"),
    [
        ("max_pings_per_interval", frame(f.PING, 0, 0, b"\0" * 8), 10),
        ("max_settings_per_interval", frame(f.SETTINGS, 0, 0), 9),  # the handshake SETTINGS took one
    ],
    ids=["PING", "SETTINGS"],
)
def test_cve_2019_9512_9515_control_frame_floods(setting, one, burst):
    clock = Clock()
    raw = Raw(H2Settings(**{setting: 10}), clock=clock)
    raw.send(one * burst)
    assert not raw.server.closed
    clock.now += 1.0  # the bucket refills at 10 per 10 s: one more token
    raw.send(one)
    assert not raw.server.closed
    assert goaway_code(raw.send(one)) == CALM


def test_cve_2019_9518_empty_data_frame_flood():
    raw = Raw(H2Settings(max_empty_data_per_interval=100))
    raw.headers(1, end_stream=False)
    raw.send(frame(f.DATA, 0, 1) * 100)
    assert not raw.server.closed
    assert goaway_code(raw.send(frame(f.DATA, 0, 1))) == CALM


def test_empty_data_with_end_stream_is_normal():
    raw = Raw(H2Settings(max_empty_data_per_interval=1))
    for sid in range(1, 20, 2):
        raw.headers(sid, end_stream=False)
        raw.send(frame(f.DATA, f.FLAG_END_STREAM, sid))
    assert not raw.server.closed


def test_memory_of_closed_streams_is_bounded():
    raw = Raw(H2Settings(max_concurrent_streams=10))
    for sid in range(1, 2 * 2000, 2):
        raw.headers(sid)
        raw.server.send_headers(sid, 204, [], end_stream=True)
        raw.send(b"")
    assert raw.server.streams == {}
    assert raw.server.table.remembered <= 2 * 256


@pytest.mark.parametrize("seed", range(3))
def test_random_frame_sequences_never_crash_the_engine(seed):
    """Hostile input of every shape ends in frames or a GOAWAY, never in an exception."""
    rng = random.Random(seed)
    for _ in range(300):
        raw = Raw(H2Settings(max_concurrent_streams=4))
        encoder = hpack.Encoder()
        for _ in range(rng.randrange(1, 25)):
            frame_type = rng.choice([0, 0, 1, 1, 1, 2, 3, 4, 6, 7, 8, 8, 9, 0x20])
            sid = rng.choice([0, 1, 1, 3, 3, 5, 7, 9, 2, 11])
            flags = rng.randrange(256) if rng.random() < 0.3 else rng.choice([0, 1, 4, 5, 8, 0x20, 0x25])
            if frame_type in (1, 9) and rng.random() < 0.8:
                payload = encoder.encode([*REQUEST, ("x", str(rng.randrange(5)))])
                if flags & f.FLAG_PADDED:
                    payload = b"\x02" + payload + b"\0\0"
                if flags & f.FLAG_PRIORITY:
                    payload = struct.pack(">LB", rng.randrange(12), 0) + payload
            elif frame_type in (3, 8):
                payload = u32(rng.choice([0, 1, 100, 2**31 - 1, 70000]))
            elif frame_type == 4 and not flags & 1:
                values = [0, 1, 16384, 65535, 2**31 - 1, 2**31]
                payload = b"".join(
                    struct.pack(">HL", rng.randrange(1, 9), rng.choice(values)) for _ in range(rng.randrange(3))
                )
            else:
                payload = rng.randbytes(rng.choice([0, 1, 4, 5, 8, 20]))
            raw.send(frame(frame_type, flags, sid, payload))
            if rng.random() < 0.3:
                for stream_id in list(raw.server.streams):
                    raw.server.send_headers(stream_id, 200, [(b"a", b"b")])
                    raw.server.send_data(stream_id, b"x" * rng.randrange(70000), rng.random() < 0.5)
                raw.send(b"")
            if rng.random() < 0.2:
                for stream_id in list(raw.server.streams):
                    raw.server.consume(stream_id, 10)
                    raw.server.finish_stream(stream_id, linger=rng.random() < 0.5)
                raw.send(b"")
            if rng.random() < 0.1:
                raw.clock.now += 20
                raw.server.expire_lingering(30.0)
                raw.send(b"")
            assert set(raw.server.table.lingering) <= set(raw.server.streams)  # no stale bookkeeping
            if raw.server.closed:
                break


def test_decoded_block_cache_stays_within_its_budget():
    """Blocks that change no HPACK state are cached per connection, never beyond a fixed budget."""
    raw = Raw(H2Settings(max_concurrent_streams=10))
    encoder = hpack.Encoder()
    for sid in range(1, 2 * 3000, 2):
        never_indexed = hpack.NeverIndexedHeaderTuple("x-unique", f"{sid:0500d}")
        block = encoder.encode([*REQUEST, never_indexed])
        raw.send(frame(f.HEADERS, f.FLAG_END_HEADERS | f.FLAG_END_STREAM, sid, block))
        raw.server.send_headers(sid, 204, [], end_stream=True)
        raw.send(b"")
        assert raw.server.blocks.cached_bytes <= 65536
    assert 0 < raw.server.blocks.cached < 3000
