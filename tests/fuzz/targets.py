"""The three fuzz targets: what a valid conversation looks like, how a fuzzed one is driven, and
the probe that shows the server still answers a valid request on a fresh connection.

Every target is a `Target`: `strategy` draws one fuzzed exchange, `exchange(port, example)` plays it
against the server (valid traffic first on the same connection, then the mutated bytes split at
random places, then whatever the server answers), `split(port, seed, cut)` sends a valid seed in two
writes cut at one boundary and checks the normal answer, and `probe(port)` is the fresh valid request.
"""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import h2.config
import h2.connection
import h2.settings
import hpack
from hypothesis import strategies as st

from tests.fuzz.harness import connect, drain, fuzzed, mutated, read_until, send_in_pieces

# ----- HTTP/1.1 ------------------------------------------------------------------------------------

H2C_SETTINGS = b"AAMAAABkAAQAoAAAAAIAAAAA"
H1_SEEDS = [
    b"GET /path?q=1&r=%20 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: fuzz\r\nAccept: */*\r\n\r\n",
    b"POST /form HTTP/1.1\r\nHost: example.com\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world",
    b"POST /chunks HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\n",
    b"PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nbody",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
    b"HTTP2-Settings: " + H2C_SETTINGS + b"\r\n\r\n",
    b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    b"GET /a HTTP/1.1\r\nHost: a\r\nCookie: a=1; b=2\r\nX-Multi: one\r\nX-Multi: two\r\n\r\n"
    b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n",
]
H1_VALID = b"GET /valid HTTP/1.1\r\nHost: example.com\r\n\r\n"


def h1_response_complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return True


def h1_probe(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(b"POST /probe HTTP/1.1\r\nHost: example.com\r\nContent-Length: 3\r\n\r\nabc")
        response = read_until(sock, h1_response_complete)
    assert response.startswith(b"HTTP/1.1 200 ") and response.endswith(b"\r\n\r\n3"), response[:300]


@st.composite
def h1_strategy(draw: st.DrawFn) -> dict[str, Any]:
    data, cuts = draw(fuzzed(H1_SEEDS))
    return {"data": data, "cuts": cuts, "follow": draw(st.booleans())}


def h1_exchange(port: int, example: dict[str, Any]) -> None:
    """A valid keep-alive request answered first, then the mutated bytes (and maybe a valid one)."""
    with connect(port) as sock:
        sock.sendall(H1_VALID)
        assert read_until(sock, h1_response_complete).startswith(b"HTTP/1.1 200 ")
        send_in_pieces(sock, example["data"] + (H1_VALID if example["follow"] else b""), example["cuts"])
        drain(sock)


def h1_split(port: int, seed: bytes, cut: int) -> None:
    with connect(port) as sock:
        send_in_pieces(sock, seed, [cut])
        response = read_until(sock, lambda data: b"HTTP/1.1 200 " in data or b"HTTP/1.1 101 " in data)
        assert b"HTTP/1.1 200 " in response or b"HTTP/1.1 101 " in response, response[:300]


# ----- HTTP/2 and HPACK ----------------------------------------------------------------------------

REQUEST = [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "example.com")]
POST = [(":method", "POST"), (":path", "/up?x=1"), (":scheme", "http"), (":authority", "example.com")]
HEADERS_TYPE, END_STREAM, END_HEADERS = 0x1, 0x1, 0x4


def h2_client() -> h2.connection.H2Connection:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    return client


def h2_conversation(script: Callable[[h2.connection.H2Connection], None]) -> tuple[bytes, bytes]:
    """(opening, rest): the preface, SETTINGS and a GET on stream 1, then what `script` sends."""
    client = h2_client()
    client.send_headers(1, REQUEST, end_stream=True)
    opening = client.data_to_send()
    script(client)
    return opening, client.data_to_send()


def _post_with_trailers(c: h2.connection.H2Connection) -> None:
    c.send_headers(3, [*POST, ("content-type", "text/plain"), ("x-long", "v" * 300)])
    c.send_data(3, b"hello " * 50)
    c.send_headers(5, [*REQUEST, ("cookie", "a=1"), ("cookie", "b=2")], end_stream=True)  # dynamic table hits
    c.send_headers(3, [("x-trailer", "done")], end_stream=True)


def _control_frames(c: h2.connection.H2Connection) -> None:
    c.ping(b"12345678")
    c.update_settings(
        {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20, h2.settings.SettingCodes.MAX_FRAME_SIZE: 32768}
    )
    c.increment_flow_control_window(1 << 16)
    c.send_headers(3, [*REQUEST, ("priority", "u=1")], end_stream=False, priority_weight=200, priority_depends_on=1)
    c.reset_stream(3)
    c.send_headers(5, REQUEST, end_stream=True)
    c.close_connection()


def _continuation(c: h2.connection.H2Connection) -> None:
    c.send_headers(3, [*REQUEST, ("x-big", "b" * 20000)], end_stream=True)  # HEADERS + CONTINUATION


H2_CONVERSATIONS = [h2_conversation(script) for script in (_post_with_trailers, _control_frames, _continuation)]
H2_SEEDS = [rest for _, rest in H2_CONVERSATIONS]
H2_OPENING = H2_CONVERSATIONS[0][0]
HEADER_NAMES = ["accept", "user-agent", "cookie", "x-custom", "content-type", ":path", ":method", "te", "host"]


def raw_frames(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """(type, flags, stream, payload) for each complete frame in data."""
    frames, offset = [], 0
    while len(data) - offset >= 9:
        length = int.from_bytes(data[offset : offset + 3], "big")
        if len(data) - offset - 9 < length:
            break
        kind, flags, stream = struct.unpack(">BBL", data[offset + 3 : offset + 9])
        frames.append((kind, flags, stream & 0x7FFFFFFF, data[offset + 9 : offset + 9 + length]))
        offset += 9 + length
    return frames


def answered(stream: int) -> Callable[[bytes], bool]:
    """Has the server sent the end of stream `stream`'s response?"""
    return lambda data: any(s == stream and f & END_STREAM for _, f, s, _ in raw_frames(data))


def h2_probe(port: int) -> None:
    with connect(port) as sock:
        client = h2_client()
        client.send_headers(1, POST)
        client.send_data(1, b"abc", end_stream=True)
        sock.sendall(client.data_to_send())
        frames = raw_frames(read_until(sock, answered(1)))
    body = b"".join(payload for kind, _, stream, payload in frames if kind == 0 and stream == 1)
    assert body == b"3", frames


@st.composite
def header_block(draw: st.DrawFn) -> bytes:
    """A HEADERS frame on stream 3 whose HPACK block is valid, then mutated."""
    encoder = hpack.Encoder()
    extra = draw(st.lists(st.tuples(st.sampled_from(HEADER_NAMES), st.text(min_size=0, max_size=40)), max_size=8))
    block = encoder.encode([*REQUEST, *extra], huffman=draw(st.booleans()))
    if draw(st.booleans()):
        block = draw(mutated(block))
    flags = END_HEADERS | END_STREAM
    return len(block).to_bytes(3, "big") + bytes([HEADERS_TYPE, flags]) + (3).to_bytes(4, "big") + block


@st.composite
def h2_strategy(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.booleans()):
        data, cuts = draw(st.tuples(header_block(), st.lists(st.integers(1, 64), max_size=4)))
    else:
        data, cuts = draw(fuzzed(H2_SEEDS))
    opening = draw(mutated(H2_OPENING)) if draw(st.integers(0, 9)) == 0 else None
    return {"data": data, "cuts": cuts, "opening": opening}


def h2_exchange(port: int, example: dict[str, Any]) -> None:
    """Stream 1 answered first on the connection, then fuzzed frames; one in ten mutates the preface."""
    with connect(port) as sock:
        if example["opening"] is not None:
            send_in_pieces(sock, example["opening"] + example["data"], example["cuts"])
        else:
            sock.sendall(H2_OPENING)
            read_until(sock, answered(1))
            send_in_pieces(sock, example["data"], example["cuts"])
        drain(sock)


def h2_split(port: int, seed: bytes, cut: int) -> None:
    with connect(port) as sock:
        send_in_pieces(sock, seed, [cut])
        read_until(sock, answered(1))


# ----- WebSocket -----------------------------------------------------------------------------------

WS_KEY = base64.b64encode(b"0123456789abcdef").decode()
WS_HANDSHAKE = (
    f"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    f"Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n"
).encode()
DEFLATE = b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
MASK = b"\x37\xfa\x21\x3d"


def ws_frame(opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False) -> bytes:
    """A client (masked) frame, with 7-bit, 16-bit or 64-bit length as the payload needs."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    size = len(payload)
    if size < 126:
        length = bytes([0x80 | size])
    elif size < 1 << 16:
        length = bytes([0x80 | 126]) + size.to_bytes(2, "big")
    else:
        length = bytes([0x80 | 127]) + size.to_bytes(8, "big")
    masked = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return bytes([first]) + length + MASK + masked


def deflated(payload: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-15)
    return (compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


WS_SEEDS = [
    ws_frame(0x1, "héllo wörld ✓".encode()) + ws_frame(0x2, bytes(i * 7 % 256 for i in range(300))),
    ws_frame(0x1, b"frag", fin=False) + ws_frame(0x9, b"ping") + ws_frame(0x0, "ment ✓".encode()),
    ws_frame(0xA, b"pong") + ws_frame(0x8, (1000).to_bytes(2, "big") + b"bye"),
    ws_frame(0x2, bytes(range(256)) * 2, fin=False) + ws_frame(0x0, b"end"),
]
WS_DEFLATE_SEEDS = [ws_frame(0x1, deflated(b"compressed " * 20), rsv1=True) + ws_frame(0x1, b"plain")]
WS_HELLO = ws_frame(0x1, b"hello")


def ws_open(sock: Any, deflate: bool) -> None:
    sock.sendall(WS_HANDSHAKE + (DEFLATE if deflate else b"") + b"\r\n")
    head = read_until(sock, lambda data: b"\r\n\r\n" in data)
    assert head.startswith(b"HTTP/1.1 101 "), head[:300]


def ws_probe(port: int) -> None:
    with connect(port) as sock:
        ws_open(sock, deflate=False)
        sock.sendall(WS_HELLO)
        assert read_until(sock, lambda data: len(data) >= 7) == b"\x81\x05hello"


@st.composite
def ws_strategy(draw: st.DrawFn) -> dict[str, Any]:
    deflate = draw(st.booleans())
    data, cuts = draw(fuzzed(WS_SEEDS + (WS_DEFLATE_SEEDS if deflate else [])))
    return {"data": data, "cuts": cuts, "deflate": deflate}


def ws_exchange(port: int, example: dict[str, Any]) -> None:
    """Handshake and one echoed message first, then the mutated frames."""
    with connect(port) as sock:
        ws_open(sock, example["deflate"])
        sock.sendall(WS_HELLO)
        read_until(sock, lambda data: len(data) >= 2)
        send_in_pieces(sock, example["data"], example["cuts"])
        drain(sock)


def ws_split(port: int, seed: bytes, cut: int) -> None:
    with connect(port) as sock:
        ws_open(sock, deflate=False)
        send_in_pieces(sock, seed + WS_HELLO, [cut])
        read_until(sock, lambda data: data.endswith(b"\x81\x05hello"))


# ----- the registry --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    strategy: st.SearchStrategy[dict[str, Any]]
    exchange: Callable[[int, dict[str, Any]], None]
    probe: Callable[[int], None]
    split: Callable[[int, bytes, int], None]
    split_seeds: list[bytes]
    known_failures: tuple[Callable[[dict[str, Any]], bool], ...] = ()


TARGETS = {
    "http1": Target("http1", h1_strategy(), h1_exchange, h1_probe, h1_split, H1_SEEDS[:4]),
    "http2": Target("http2", h2_strategy(), h2_exchange, h2_probe, h2_split, [H2_OPENING + H2_SEEDS[0]]),
    "websocket": Target("websocket", ws_strategy(), ws_exchange, ws_probe, ws_split, WS_SEEDS[:2]),
}
