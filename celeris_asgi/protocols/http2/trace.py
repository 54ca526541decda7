"""``--log-level trace`` for HTTP/2: one line per frame each way, flow-control stalls, the h2c upgrade.

The protocol creates a ``FrameTrace`` only when the level is on (checked once per connection),
and hands it the bytes it reads and writes; the engine is not touched. The frames are read again
here from those bytes, apart from the engine's own parsing: a trace line shows what went over
the wire, even when the engine refuses it. Only a frame's header and the start of its payload
are kept (what the line shows); the rest of a payload is skipped, so nothing here grows with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from celeris_asgi.logging import TRACE, error_logger

from . import frames as f

if TYPE_CHECKING:
    from .connection import H2Connection

_TYPES = {
    f.DATA: "DATA",
    f.HEADERS: "HEADERS",
    f.PRIORITY: "PRIORITY",
    f.RST_STREAM: "RST_STREAM",
    f.SETTINGS: "SETTINGS",
    f.PUSH_PROMISE: "PUSH_PROMISE",
    f.PING: "PING",
    f.GOAWAY: "GOAWAY",
    f.WINDOW_UPDATE: "WINDOW_UPDATE",
    f.CONTINUATION: "CONTINUATION",
}
_FLAGS = {
    f.DATA: ((f.FLAG_END_STREAM, "END_STREAM"), (f.FLAG_PADDED, "PADDED")),
    f.HEADERS: (
        (f.FLAG_END_STREAM, "END_STREAM"),
        (f.FLAG_END_HEADERS, "END_HEADERS"),
        (f.FLAG_PADDED, "PADDED"),
        (f.FLAG_PRIORITY, "PRIORITY"),
    ),
    f.SETTINGS: ((f.FLAG_ACK, "ACK"),),
    f.PING: ((f.FLAG_ACK, "ACK"),),
    f.CONTINUATION: ((f.FLAG_END_HEADERS, "END_HEADERS"),),
}
_SETTINGS = {
    f.SETTINGS_HEADER_TABLE_SIZE: "HEADER_TABLE_SIZE",
    f.SETTINGS_ENABLE_PUSH: "ENABLE_PUSH",
    f.SETTINGS_MAX_CONCURRENT_STREAMS: "MAX_CONCURRENT_STREAMS",
    f.SETTINGS_INITIAL_WINDOW_SIZE: "INITIAL_WINDOW_SIZE",
    f.SETTINGS_MAX_FRAME_SIZE: "MAX_FRAME_SIZE",
    f.SETTINGS_MAX_HEADER_LIST_SIZE: "MAX_HEADER_LIST_SIZE",
    f.SETTINGS_ENABLE_CONNECT_PROTOCOL: "ENABLE_CONNECT_PROTOCOL",
}
_ERRORS = {
    f.NO_ERROR: "NO_ERROR",
    f.PROTOCOL_ERROR: "PROTOCOL_ERROR",
    f.INTERNAL_ERROR: "INTERNAL_ERROR",
    f.FLOW_CONTROL_ERROR: "FLOW_CONTROL_ERROR",
    f.SETTINGS_TIMEOUT: "SETTINGS_TIMEOUT",
    f.STREAM_CLOSED: "STREAM_CLOSED",
    f.FRAME_SIZE_ERROR: "FRAME_SIZE_ERROR",
    f.REFUSED_STREAM: "REFUSED_STREAM",
    f.CANCEL: "CANCEL",
    f.COMPRESSION_ERROR: "COMPRESSION_ERROR",
    f.CONNECT_ERROR: "CONNECT_ERROR",
    f.ENHANCE_YOUR_CALM: "ENHANCE_YOUR_CALM",
    f.INADEQUATE_SECURITY: "INADEQUATE_SECURITY",
    f.HTTP_1_1_REQUIRED: "HTTP_1_1_REQUIRED",
}
_MAX_DEBUG = 64  # GOAWAY debug data shown
# Payload bytes kept for the line, by frame type (SETTINGS: up to 16 settings shown).
_KEPT = {f.SETTINGS: 6 * 16, f.WINDOW_UPDATE: 4, f.RST_STREAM: 4, f.PING: 8, f.GOAWAY: 8 + _MAX_DEBUG}


def error_name(code: int) -> str:
    return _ERRORS.get(code, f"0x{code:x}")


def settings_text(payload: bytes) -> str:
    """``NAME=value`` for each setting of a SETTINGS payload (or an HTTP2-Settings value, decoded)."""
    pairs = (payload[i : i + 6] for i in range(0, len(payload) - len(payload) % 6, 6))
    return " ".join(
        f"{_SETTINGS.get(ident, f'0x{ident:x}')}={value}"
        for ident, value in ((int.from_bytes(p[:2], "big"), int.from_bytes(p[2:], "big")) for p in pairs)
    )


def frame_text(frame_type: int, flags: int, stream_id: int, length: int, payload: bytes) -> str:
    """One frame as a trace line: type, stream, flags, length, and what its payload says where it is short."""
    names = [name for bit, name in _FLAGS.get(frame_type, ()) if flags & bit]
    unnamed = flags & ~sum(bit for bit, _ in _FLAGS.get(frame_type, ()))
    if unnamed:
        names.append(f"0x{unnamed:x}")
    text = (
        f"{_TYPES.get(frame_type, f'UNKNOWN(0x{frame_type:x})')} stream={stream_id} "
        f"flags={'|'.join(names) or '-'} length={length}"
    )
    if frame_type == f.SETTINGS and payload:
        return f"{text} {settings_text(payload)}"
    if frame_type == f.WINDOW_UPDATE and len(payload) == 4:
        return f"{text} increment={int.from_bytes(payload, 'big') & f.STREAM_ID_MASK}"
    if frame_type == f.RST_STREAM and len(payload) == 4:
        return f"{text} error={error_name(int.from_bytes(payload, 'big'))}"
    if frame_type == f.PING and len(payload) == 8:
        return f"{text} opaque={payload.hex()}"
    if frame_type == f.GOAWAY and len(payload) >= 8:
        last = int.from_bytes(payload[:4], "big") & f.STREAM_ID_MASK
        code = int.from_bytes(payload[4:8], "big")
        return f"{text} last_stream={last} error={error_name(code)} debug={bytes(payload[8:])!r}"
    return text


class FrameLog:
    """One direction's frames, read back from the bytes that carried them (split anywhere)."""

    __slots__ = ("frame", "kept", "length", "peer", "skip", "verb")

    def __init__(self, peer: str, verb: str, preface: bool) -> None:
        self.peer = peer
        self.verb = verb
        self.frame = bytearray()  # the frame being read: its header, then the kept start of its payload
        self.length = 0
        self.kept = 0
        self.skip = f.PREFACE_LEN if preface else 0  # bytes to pass over: the client preface, a payload's rest

    def feed(self, data: bytes | bytearray) -> None:
        pos, end = 0, len(data)
        frame = self.frame
        while pos < end:
            if self.skip:
                taken = min(self.skip, end - pos)
                self.skip -= taken
                pos += taken
                continue
            want = 9 + self.kept if len(frame) >= 9 else 9
            taken = min(want - len(frame), end - pos)
            frame += data[pos : pos + taken]
            pos += taken
            if len(frame) < want:
                return
            if want == 9:
                self.length = int.from_bytes(frame[:3], "big")
                self.kept = min(self.length, _KEPT.get(frame[3], 0))
                if self.kept:
                    continue
            stream_id = int.from_bytes(frame[5:9], "big") & f.STREAM_ID_MASK
            line = frame_text(frame[3], frame[4], stream_id, self.length, bytes(frame[9:]))
            error_logger.log(TRACE, "%s: %s %s", self.peer, self.verb, line)
            self.skip = self.length - self.kept
            self.kept = 0
            frame.clear()


class FrameTrace:
    """What one HTTP/2 connection logs at --log-level trace."""

    __slots__ = ("peer", "received", "sent")

    def __init__(self, peer: str, preface: bool = True) -> None:
        self.peer = peer
        self.received = FrameLog(peer, "received", preface)
        self.sent = FrameLog(peer, "sent", False)

    def event(self, message: str, *args: object) -> None:
        error_logger.log(TRACE, "%s: " + message, self.peer, *args)

    def upgraded(self, method: str, path: str, settings: bytes) -> None:
        """An HTTP/1.1 request switched to HTTP/2 with ``Upgrade: h2c`` (``settings``: HTTP2-Settings, decoded)."""
        self.event("h2c upgrade: %s %s becomes stream 1; HTTP2-Settings %s", method, path, settings_text(settings))

    def stalled(self, engine: H2Connection, stream_id: int) -> None:
        """A response's data waits for the peer's flow-control windows."""
        stream = engine.streams.get(stream_id)
        if stream is not None and stream.pending is not None:
            self.event(
                "stream %d: %d bytes wait for flow control (stream window %d, connection window %d)",
                stream_id,
                len(stream.pending),
                stream.send_window,
                engine.sender.window,
            )
