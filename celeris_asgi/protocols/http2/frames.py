"""HTTP/2 frame constants and serializers (RFC 9113 section 4 and 6).

Parsing lives in the connection's receive loop, which reads the 9-byte frame
header with one ``struct.unpack_from`` straight out of the receive buffer, so
no frame objects are ever built.  This module holds the numbers and the
writers; every writer returns ready-to-send ``bytes``.
"""

from __future__ import annotations

import base64
import binascii
import struct

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PREFACE_LEN = len(PREFACE)
FRAME_HEADER_LEN = 9

# Frame header: 24-bit length split as (high byte, low 16 bits), type, flags, stream id.
FRAME_HEADER = struct.Struct(">BHBBL")
_U32 = struct.Struct(">L")
_U32_PAIR = struct.Struct(">LL")
_SETTING = struct.Struct(">HL")

# Frame types (RFC 9113 section 6).
DATA = 0x0
HEADERS = 0x1
PRIORITY = 0x2
RST_STREAM = 0x3
SETTINGS = 0x4
PUSH_PROMISE = 0x5
PING = 0x6
GOAWAY = 0x7
WINDOW_UPDATE = 0x8
CONTINUATION = 0x9

# Flags.
FLAG_END_STREAM = 0x1
FLAG_ACK = 0x1
FLAG_END_HEADERS = 0x4
FLAG_PADDED = 0x8
FLAG_PRIORITY = 0x20

# Error codes (RFC 9113 section 7).
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
FLOW_CONTROL_ERROR = 0x3
SETTINGS_TIMEOUT = 0x4
STREAM_CLOSED = 0x5
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
COMPRESSION_ERROR = 0x9
CONNECT_ERROR = 0xA
ENHANCE_YOUR_CALM = 0xB
INADEQUATE_SECURITY = 0xC
HTTP_1_1_REQUIRED = 0xD

# Setting identifiers (RFC 9113 section 6.5.2, RFC 8441).
SETTINGS_HEADER_TABLE_SIZE = 0x1
SETTINGS_ENABLE_PUSH = 0x2
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_MAX_FRAME_SIZE = 0x5
SETTINGS_MAX_HEADER_LIST_SIZE = 0x6
SETTINGS_ENABLE_CONNECT_PROTOCOL = 0x8

DEFAULT_WINDOW_SIZE = 65535
DEFAULT_MAX_FRAME_SIZE = 16384
MAX_FRAME_SIZE_LIMIT = (1 << 24) - 1
MAX_WINDOW_SIZE = (1 << 31) - 1
STREAM_ID_MASK = 0x7FFFFFFF

# The same 9 bytes packed from three fields, (length << 8 | type, flags, stream id): fewer arguments
# to build and parse than FRAME_HEADER's five, compiled or not.
pack_header = struct.Struct(">LBL").pack


def frame_header(length: int, frame_type: int, flags: int, stream_id: int) -> bytes:
    """The 9-byte header of one frame."""
    return pack_header(length << 8 | frame_type, flags, stream_id)


def settings_frame(settings: dict[int, int]) -> bytes:
    """A SETTINGS frame carrying ``settings`` (identifier -> value)."""
    body = b"".join(_SETTING.pack(ident, value) for ident, value in settings.items())
    return frame_header(len(body), SETTINGS, 0, 0) + body


SETTINGS_ACK_FRAME = frame_header(0, SETTINGS, FLAG_ACK, 0)


def parse_settings(payload: bytes) -> list[tuple[int, int]]:
    """(identifier, value) pairs of a SETTINGS payload whose length is a multiple of 6."""
    return [_SETTING.unpack_from(payload, offset) for offset in range(0, len(payload), 6)]


def decode_http2_settings(value: bytes) -> bytes:
    """The SETTINGS payload carried by an ``HTTP2-Settings`` header (RFC 7540 3.2.1); ValueError if bad."""
    try:
        payload = base64.b64decode(value + b"=" * (-len(value) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("invalid HTTP2-Settings header") from None
    if len(payload) % 6:
        raise ValueError("invalid HTTP2-Settings header")
    return payload


def ping_frame(opaque: bytes, ack: bool) -> bytes:
    """A PING (or PING ACK) frame with its 8 opaque bytes."""
    return frame_header(8, PING, FLAG_ACK if ack else 0, 0) + opaque


def goaway_frame(last_stream_id: int, error_code: int, debug: bytes = b"") -> bytes:
    """A GOAWAY frame; ``debug`` is optional diagnostic data for the peer's logs."""
    return frame_header(8 + len(debug), GOAWAY, 0, 0) + _U32_PAIR.pack(last_stream_id, error_code) + debug


def rst_stream_frame(stream_id: int, error_code: int) -> bytes:
    """A RST_STREAM frame."""
    return frame_header(4, RST_STREAM, 0, stream_id) + _U32.pack(error_code)


def window_update_frame(stream_id: int, increment: int) -> bytes:
    """A WINDOW_UPDATE frame (stream 0 is the connection window)."""
    return frame_header(4, WINDOW_UPDATE, 0, stream_id) + _U32.pack(increment)


def header_block_frames(stream_id: int, block: bytes, end_stream: bool, max_frame_size: int) -> bytes:
    """HEADERS (+ CONTINUATION frames when ``block`` exceeds the peer's max frame size)."""
    flags = FLAG_END_STREAM if end_stream else 0
    size = len(block)
    if size <= max_frame_size:
        return pack_header(size << 8 | HEADERS, flags | FLAG_END_HEADERS, stream_id) + block
    parts = [frame_header(max_frame_size, HEADERS, flags, stream_id), block[:max_frame_size]]
    offset = max_frame_size
    while offset < size:
        chunk = block[offset : offset + max_frame_size]
        offset += len(chunk)
        last = FLAG_END_HEADERS if offset >= size else 0
        parts.append(frame_header(len(chunk), CONTINUATION, last, stream_id))
        parts.append(chunk)
    return b"".join(parts)


def read_u32(payload: bytes, offset: int = 0) -> int:
    """A big-endian unsigned 32-bit integer."""
    value: int = _U32.unpack_from(payload, offset)[0]
    return value
