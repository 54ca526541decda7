"""The sans-I/O HTTP/2 server engine: bytes in, listener callbacks and bytes out (RFC 9113).

``receive_data`` parses frames straight from the received bytes (one
``struct.unpack_from`` per frame header, payload slices only where a payload
is kept), drives stream and connection state, flow control and the defences,
and calls the listener.  Everything the engine has to send accumulates in one
buffer that the I/O layer drains with ``data_to_send`` -- one write per batch.

Errors are raised as ``H2ConnectionError`` / ``H2StreamError`` inside the frame
handlers and turned into GOAWAY / RST_STREAM in one place, the receive loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from . import frames as f
from .blocks import HeaderBlocks
from .flood import EMPTY_DATA, PINGS, RESETS, FloodGuard
from .flood import SETTINGS as SETTINGS_FLOOD  # the flood kind; SETTINGS below is the frame type
from .frames import (
    CONTINUATION,
    DATA,
    FLAG_ACK,
    FLAG_END_HEADERS,
    FLAG_END_STREAM,
    FLAG_PADDED,
    FLAG_PRIORITY,
    GOAWAY,
    HEADERS,
    PING,
    PRIORITY,
    PUSH_PROMISE,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
)
from .sending import Sender
from .settings import H2Settings, checked_settings
from .stream import (
    CLOSED,
    RESET_BY_PEER,
    RESET_BY_US,
    H2ConnectionError,
    H2Listener,
    H2StreamError,
    Stream,
    StreamTable,
)
from .validation import MalformedRequest, validate_trailers
from .windows import ReceiveWindows

if TYPE_CHECKING:
    from celeris_asgi.metrics import Metrics

_MASK = f.STREAM_ID_MASK
_U32 = f.read_u32
_SHUTDOWN_PING = b"celeris!"


class H2Connection:
    """One server-side HTTP/2 connection's state, without I/O.

    The receive loop and the frame handlers live here; they call the objects that own the
    rest of the state: the stream table (``table``: open, recently closed and lingering
    streams), the sender (``sender``: framing, the output buffer, the peer's windows), our
    receive windows (``windows``), the header blocks (``blocks``: HPACK decoding and the
    decoded-head cache) and the flood guard. The sender's methods are the engine's output
    API (``send_data`` & co. below are its bound methods: no extra call per response).
    """

    def __init__(
        self,
        settings: H2Settings,
        listener: H2Listener,
        clock: Callable[[], float] = time.monotonic,
        header_check: Callable[[bytes, bytes], None] | None = None,
        default_headers: Callable[[], list[tuple[bytes, bytes]]] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        """``header_check(name, value)`` vets each distinct response field once (may raise);
        ``default_headers()`` gives the fields (Server, Date) every response of the server carries;
        ``metrics`` counts open streams, GOAWAYs and resets (see StreamTable and Sender)."""
        self.settings = settings
        self._listener_request = listener.on_request
        self._listener_data = listener.on_data
        self._listener_reset = listener.on_stream_reset
        self._clock = clock
        self.table = StreamTable(settings.max_concurrent_streams, metrics)
        self.streams = self.table.streams  # the open streams (the table's own dict, read on every frame)
        self._lingering = self.table.lingering
        self.sender = sender = Sender(self.table, listener.on_stream_drained, header_check, default_headers)
        self.windows = ReceiveWindows(settings.connection_window_size)
        self._flood = FloodGuard(settings, clock)
        # The output API is the sender's, taken through an untyped reference: compiled, the C type of
        # ``sender`` would turn its C methods into wrappers that skip their Python entry points.
        output: Sender = cast(Any, sender)
        self.data_to_send = output.data_to_send
        self.send_headers = output.send_headers
        self.send_status = output.send_status
        self.send_response = output.send_response
        self.send_data = output.send_data
        self.send_trailers = output.send_trailers
        self.is_blocked = output.is_blocked
        self._buf: bytearray | None = None
        self._need = 0
        self._preface = True
        self._expect_settings = True
        #: Set once the connection is dead (GOAWAY for an error sent): send what is left, then close.
        self.closed = False
        self.error_code: int | None = None
        self.highest_stream_id = 0
        self.peer_goaway = False
        self.settings_acked = False
        #: Reset streams whose application work still runs (the listener keeps the count).  A reset
        #: stream is closed, so it frees its concurrency slot at once (RFC 9113 5.1.2); the work a
        #: client can leave behind that way is bounded by the reset budget instead (rapid reset).
        self.orphaned_streams = 0
        self.blocks = HeaderBlocks(settings)
        self._heads = self.blocks.heads  # read here on every request; HeaderBlocks fills and clears it
        self._hb_stream = 0
        self._hb_parts: list[bytes] = []
        self._hb_flags = 0
        self._hb_size = 0
        self._hb_frames = 0
        self._shutdown_stage = 0
        self._goaway_last_id = _MASK

    # ---------------------------------------------------------------------------------------------
    # Starting

    def initiate(self) -> None:
        """Queue our connection preface: SETTINGS, and the connection window opened up."""
        s = self.settings
        ours = {f.SETTINGS_MAX_CONCURRENT_STREAMS: s.max_concurrent_streams}
        if s.initial_window_size != f.DEFAULT_WINDOW_SIZE:
            ours[f.SETTINGS_INITIAL_WINDOW_SIZE] = s.initial_window_size
        if s.max_frame_size != f.DEFAULT_MAX_FRAME_SIZE:
            ours[f.SETTINGS_MAX_FRAME_SIZE] = s.max_frame_size
        if s.header_table_size != 4096:
            ours[f.SETTINGS_HEADER_TABLE_SIZE] = s.header_table_size
        ours[f.SETTINGS_MAX_HEADER_LIST_SIZE] = s.max_header_list_size
        if s.enable_connect_protocol:
            ours[f.SETTINGS_ENABLE_CONNECT_PROTOCOL] = 1
        self.sender.out += f.settings_frame(ours)
        increment = s.connection_window_size - f.DEFAULT_WINDOW_SIZE
        if increment:
            self.sender.out += f.window_update_frame(0, increment)

    def initiate_upgrade(self, http2_settings: bytes) -> None:
        """Start after an HTTP/1.1 ``Upgrade: h2c`` (RFC 7540 3.2): stream 1 is the upgrading request.

        The request was read in full over HTTP/1.1, so stream 1 starts half-closed
        (remote).  Raises ValueError for an unusable ``HTTP2-Settings`` value.
        """
        payload = f.decode_http2_settings(http2_settings)
        self.initiate()
        try:
            self._apply_settings(payload)
        except H2ConnectionError as exc:
            raise ValueError(f"invalid HTTP2-Settings header: {exc}") from None
        stream = Stream(1, self.sender.initial_window, self.windows.stream_initial)
        stream.remote_closed = True
        self.table.open(stream)
        self.highest_stream_id = 1

    # ---------------------------------------------------------------------------------------------
    # Input

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the peer; callbacks fire, output accumulates for ``data_to_send``."""
        if self.closed:
            return
        if self._buf is not None:
            self._buf += data
            if len(self._buf) < self._need:
                return
            data = bytes(self._buf)
            self._buf = None
        pos = 0
        end = len(data)
        try:
            if self._preface:
                if end < f.PREFACE_LEN:
                    if not f.PREFACE.startswith(data):
                        raise H2ConnectionError(f.PROTOCOL_ERROR, "invalid connection preface")
                    self._buf = bytearray(data)
                    self._need = f.PREFACE_LEN
                    return
                if data[: f.PREFACE_LEN] != f.PREFACE:
                    raise H2ConnectionError(f.PROTOCOL_ERROR, "invalid connection preface")
                self._preface = False
                pos = f.PREFACE_LEN
            unpack = f.FRAME_HEADER.unpack_from
            max_frame = self.settings.max_frame_size
            while end - pos >= 9:
                high, low, ftype, flags, sid = unpack(data, pos)
                length = high << 16 | low
                if length > max_frame:
                    raise H2ConnectionError(f.FRAME_SIZE_ERROR, "frame larger than SETTINGS_MAX_FRAME_SIZE")
                start = pos + 9
                stop = start + length
                if stop > end:
                    break
                pos = stop
                sid &= _MASK
                if self._hb_stream and ftype != CONTINUATION:
                    raise H2ConnectionError(f.PROTOCOL_ERROR, "expected CONTINUATION")
                if self._expect_settings:
                    if ftype != SETTINGS or flags & FLAG_ACK:
                        raise H2ConnectionError(f.PROTOCOL_ERROR, "connection preface must start with SETTINGS")
                    self._expect_settings = False
                try:
                    if ftype == HEADERS:
                        self._headers_frame(flags, sid, data, start, stop)
                    elif ftype == DATA:
                        self._data_frame(flags, sid, data, start, stop)
                    elif ftype == WINDOW_UPDATE:
                        self._window_update_frame(sid, data, start, stop)
                    elif ftype == SETTINGS:
                        self._settings_frame(flags, sid, data, start, stop)
                    elif ftype == RST_STREAM:
                        self._rst_stream_frame(sid, data, start, stop)
                    elif ftype == PING:
                        self._ping_frame(flags, sid, data, start, stop)
                    elif ftype == PRIORITY:
                        self._priority_frame(sid, data, start, stop)
                    elif ftype == CONTINUATION:
                        self._continuation_frame(flags, sid, data, start, stop)
                    elif ftype == GOAWAY:
                        self._goaway_frame(sid, stop - start)
                    elif ftype == PUSH_PROMISE:
                        raise H2ConnectionError(f.PROTOCOL_ERROR, "clients cannot push")
                    # Unknown frame types are ignored (RFC 9113 5.5).
                except H2StreamError as exc:
                    self._reset(exc.stream_id, exc.code, notify=True)
                if self.closed:
                    return
        except H2ConnectionError as exc:
            self._connection_error(exc.code, str(exc))
            return
        if pos < end:
            self._buf = bytearray(data[pos:])
            self._need = 9 if end - pos < 9 else 9 + int.from_bytes(data[pos : pos + 3], "big")

    def _headers_frame(self, flags: int, sid: int, data: bytes, start: int, stop: int) -> None:
        if sid == 0:
            raise H2ConnectionError(f.PROTOCOL_ERROR, "HEADERS on stream 0")
        self_dependent = False
        if flags & (FLAG_PADDED | FLAG_PRIORITY):
            if flags & FLAG_PADDED:
                if start == stop:
                    raise H2ConnectionError(f.FRAME_SIZE_ERROR, "HEADERS too short for its padding")
                pad = data[start]
                start += 1
            else:
                pad = 0
            if flags & FLAG_PRIORITY:
                if stop - start < 5:
                    raise H2ConnectionError(f.FRAME_SIZE_ERROR, "HEADERS too short for its priority")
                self_dependent = _U32(data, start) & _MASK == sid
                start += 5
            if pad > stop - start:
                raise H2ConnectionError(f.PROTOCOL_ERROR, "padding longer than the HEADERS payload")
            stop -= pad
        block = data[start:stop]
        if flags & FLAG_END_HEADERS:
            self._header_block(sid, block, flags & FLAG_END_STREAM, self_dependent)
            return
        if len(block) > self.settings.max_header_block_size:
            raise H2ConnectionError(f.ENHANCE_YOUR_CALM, "header block too large")
        self._hb_stream = sid
        self._hb_parts = [block]
        self._hb_flags = flags | (FLAG_PRIORITY if self_dependent else 0)
        self._hb_size = len(block)
        self._hb_frames = 0

    def _continuation_frame(self, flags: int, sid: int, data: bytes, start: int, stop: int) -> None:
        if not self._hb_stream or sid != self._hb_stream:
            raise H2ConnectionError(f.PROTOCOL_ERROR, "unexpected CONTINUATION")
        self._hb_frames += 1
        self._hb_size += stop - start
        if self._hb_frames > self.settings.max_continuation_frames:
            raise H2ConnectionError(f.ENHANCE_YOUR_CALM, "too many CONTINUATION frames")
        if self._hb_size > self.settings.max_header_block_size:
            raise H2ConnectionError(f.ENHANCE_YOUR_CALM, "header block too large")
        self._hb_parts.append(data[start:stop])
        if flags & FLAG_END_HEADERS:
            block = b"".join(self._hb_parts)
            self._hb_stream = 0
            self._hb_parts = []
            hb_flags = self._hb_flags
            self._header_block(sid, block, hb_flags & FLAG_END_STREAM, bool(hb_flags & FLAG_PRIORITY))

    def _header_block(self, sid: int, block: bytes, end_stream: int, self_dependent: bool) -> None:
        stream = self.streams.get(sid)
        if stream is not None or sid <= self.highest_stream_id:
            self._trailer_block(sid, stream, block, end_stream)
            return
        if not sid & 1:
            raise H2ConnectionError(f.PROTOCOL_ERROR, "client stream ids must be odd")
        self.highest_stream_id = sid
        head = self._heads.get(block)  # a repeated block: the cached head, without a call
        if head is None:
            head = self.blocks.request(sid, block)
        if sid > self._goaway_last_id or self.peer_goaway:
            raise H2StreamError(sid, f.REFUSED_STREAM)
        while len(self.streams) >= self.settings.max_concurrent_streams:
            if not self._lingering:
                self._flood.spend(RESETS, "too many refused streams")
                raise H2StreamError(sid, f.REFUSED_STREAM)
            self._reset(next(iter(self._lingering)), f.NO_ERROR, notify=False)  # the oldest finished response
        if self.orphaned_streams >= self._flood.limits[RESETS]:
            # As many handlers of reset streams still run as the reset budget allows in a whole
            # interval: no new work until some end (CVE-2023-44487 with slow handlers).
            self._flood.spend(RESETS, "too many reset streams still running")
            raise H2StreamError(sid, f.REFUSED_STREAM)
        if self_dependent:
            raise H2StreamError(sid, f.PROTOCOL_ERROR)
        stream = Stream(sid, self.sender.initial_window, self.windows.stream_initial)
        if head is None:
            # RFC 9113 8.2.3 / RFC 6585: answer 431 without bothering the application.
            self.table.open(stream)
            stream.remote_closed = bool(end_stream)
            self.send_status(sid, 431)
            if sid in self.streams:
                self.reset_stream(sid, f.NO_ERROR)
            return
        content_length = head.content_length
        if end_stream:
            if content_length:
                raise H2StreamError(sid, f.PROTOCOL_ERROR)
            stream.remote_closed = True
        else:
            stream.content_length = content_length
        self.table.open(stream)
        self._listener_request(sid, head, bool(end_stream))

    def _trailer_block(self, sid: int, stream: Stream | None, block: bytes, end_stream: int) -> None:
        fields, _ = self.blocks.decode(block)  # decoded even when refused: HPACK state must stay in step
        if stream is None:
            self._on_closed_stream(sid, "HEADERS")
            return
        if stream.remote_closed:
            raise H2StreamError(sid, f.STREAM_CLOSED)
        if not end_stream:
            raise H2StreamError(sid, f.PROTOCOL_ERROR)
        try:
            validate_trailers(fields)
        except MalformedRequest:
            raise H2StreamError(sid, f.PROTOCOL_ERROR) from None
        if stream.content_length is not None and stream.received != stream.content_length:
            raise H2StreamError(sid, f.PROTOCOL_ERROR)
        self._end_remote(stream)
        self._listener_data(sid, b"", True)

    def _end_remote(self, stream: Stream) -> None:
        stream.remote_closed = True
        if stream.local_closed:
            self.table.close(stream.stream_id, CLOSED)

    def _data_frame(self, flags: int, sid: int, data: bytes, start: int, stop: int) -> None:
        if sid == 0:
            raise H2ConnectionError(f.PROTOCOL_ERROR, "DATA on stream 0")
        length = stop - start
        self.windows.receive(length)
        stream = self.streams.get(sid)
        if stream is None or stream.remote_closed or length > stream.recv_window:
            self.consume(0, length)
            if stream is None:
                if sid > self.highest_stream_id:
                    raise H2ConnectionError(f.PROTOCOL_ERROR, f"DATA on idle stream {sid}")
                self._on_closed_stream(sid, "DATA")
                return
            raise H2StreamError(sid, f.STREAM_CLOSED if stream.remote_closed else f.FLOW_CONTROL_ERROR)
        stream.recv_window -= length
        end_stream = flags & FLAG_END_STREAM
        if flags & FLAG_PADDED:
            if length == 0:
                raise H2ConnectionError(f.FRAME_SIZE_ERROR, "DATA too short for its padding")
            pad = data[start]
            if pad >= length:
                raise H2ConnectionError(f.PROTOCOL_ERROR, "padding longer than the DATA payload")
            start += 1
            stop -= pad
            self.consume(sid, pad + 1)  # padding is flow controlled but never reaches the app
        size = stop - start
        if size == 0 and not end_stream:
            self._flood.spend(EMPTY_DATA, "empty DATA flood")
        received = stream.received = stream.received + size
        expected = stream.content_length
        if expected is not None and (received > expected or (end_stream and received != expected)):
            self.consume(0, size)
            raise H2StreamError(sid, f.PROTOCOL_ERROR)
        if self._lingering and sid in self._lingering:
            # Checked, now dropped: only the connection window comes back, so the peer sends at most
            # its stream window more (then RST_STREAM NO_ERROR).
            self.consume(0, size)
            if end_stream:
                self._end_remote(stream)
            elif stream.recv_window <= 0:
                self._reset(sid, f.NO_ERROR, notify=False)
            return
        if end_stream:
            self._end_remote(stream)
        self._listener_data(sid, data[start:stop], bool(end_stream))

    def _window_update_frame(self, sid: int, data: bytes, start: int, stop: int) -> None:
        if stop - start != 4:
            raise H2ConnectionError(f.FRAME_SIZE_ERROR, "WINDOW_UPDATE length must be 4")
        increment = _U32(data, start) & _MASK
        if sid == 0:
            if increment == 0:
                raise H2ConnectionError(f.PROTOCOL_ERROR, "WINDOW_UPDATE increment 0")
            self.sender.open_connection_window(increment)
            return
        stream = self.streams.get(sid)
        if stream is None:
            if sid > self.highest_stream_id:
                raise H2ConnectionError(f.PROTOCOL_ERROR, f"WINDOW_UPDATE on idle stream {sid}")
            return
        if increment == 0:
            raise H2StreamError(sid, f.PROTOCOL_ERROR)
        self.sender.open_stream_window(stream, increment)

    def _settings_frame(self, flags: int, sid: int, data: bytes, start: int, stop: int) -> None:
        if sid != 0:
            raise H2ConnectionError(f.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & FLAG_ACK:
            if stop != start:
                raise H2ConnectionError(f.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            if not self.settings_acked:
                self.settings_acked = True
                delta = self.settings.initial_window_size - self.windows.stream_initial
                self.windows.stream_initial = self.settings.initial_window_size
                for stream in self.streams.values():
                    stream.recv_window += delta
            return
        if (stop - start) % 6:
            raise H2ConnectionError(f.FRAME_SIZE_ERROR, "SETTINGS length not a multiple of 6")
        self._flood.spend(SETTINGS_FLOOD, "SETTINGS flood")
        self._apply_settings(data[start:stop])
        # The ACK goes before any DATA a larger window lets out: the peer applies it on the ACK.
        self.sender.out += f.SETTINGS_ACK_FRAME
        self.sender.flush_blocked()

    def _apply_settings(self, payload: bytes) -> None:
        for ident, value in checked_settings(payload):
            if ident == f.SETTINGS_INITIAL_WINDOW_SIZE:
                self.sender.set_initial_window(value)
            elif ident == f.SETTINGS_MAX_FRAME_SIZE:
                self.sender.max_frame_size = value
            elif ident == f.SETTINGS_HEADER_TABLE_SIZE:
                self.sender.set_peer_table_size(value)

    def _rst_stream_frame(self, sid: int, data: bytes, start: int, stop: int) -> None:
        if sid == 0:
            raise H2ConnectionError(f.PROTOCOL_ERROR, "RST_STREAM on stream 0")
        if stop - start != 4:
            raise H2ConnectionError(f.FRAME_SIZE_ERROR, "RST_STREAM length must be 4")
        if sid not in self.streams:
            if sid > self.highest_stream_id:
                raise H2ConnectionError(f.PROTOCOL_ERROR, f"RST_STREAM on idle stream {sid}")
            return
        self.table.close(sid, RESET_BY_PEER)
        self.sender.forget(sid)
        self._flood.spend(RESETS, "rapid reset")
        self._listener_reset(sid, _U32(data, start))

    def _ping_frame(self, flags: int, sid: int, data: bytes, start: int, stop: int) -> None:
        if sid != 0:
            raise H2ConnectionError(f.PROTOCOL_ERROR, "PING on a stream")
        if stop - start != 8:
            raise H2ConnectionError(f.FRAME_SIZE_ERROR, "PING length must be 8")
        opaque = data[start:stop]
        if flags & FLAG_ACK:
            if opaque == _SHUTDOWN_PING and self._shutdown_stage == 1:
                self.finish_shutdown()
            return
        self._flood.spend(PINGS, "PING flood")
        self.sender.out += f.ping_frame(opaque, ack=True)

    def _priority_frame(self, sid: int, data: bytes, start: int, stop: int) -> None:
        # Accepted and ignored (RFC 9113 5.3.2), beyond the checks the RFC still requires.
        if sid == 0:
            raise H2ConnectionError(f.PROTOCOL_ERROR, "PRIORITY on stream 0")
        if stop - start != 5:
            raise H2StreamError(sid, f.FRAME_SIZE_ERROR)
        if _U32(data, start) & _MASK == sid:
            raise H2StreamError(sid, f.PROTOCOL_ERROR)

    def _goaway_frame(self, sid: int, length: int) -> None:
        if sid != 0:
            raise H2ConnectionError(f.PROTOCOL_ERROR, "GOAWAY on a stream")
        if length < 8:
            raise H2ConnectionError(f.FRAME_SIZE_ERROR, "GOAWAY too short")
        self.peer_goaway = True

    def _connection_error(self, code: int, message: str) -> None:
        self.sender.send_goaway(self.highest_stream_id, code, message.encode("ascii", "replace")[:256])
        self.closed = True
        self.error_code = code
        self._buf = None
        self.table.close_all()  # the streams end with the connection: nothing more is sent on them

    def _on_closed_stream(self, sid: int, kind: str) -> None:
        """HEADERS or DATA on a stream that is not open (RFC 9113 5.1, 5.1.1)."""
        how = self.table.how_closed(sid)
        if how == RESET_BY_US:
            return  # sent before the peer saw our RST_STREAM: ignore
        if how == RESET_BY_PEER:
            raise H2StreamError(sid, f.STREAM_CLOSED)
        if how == CLOSED:
            raise H2ConnectionError(f.STREAM_CLOSED, f"{kind} on closed stream {sid}")
        raise H2ConnectionError(f.PROTOCOL_ERROR, f"{kind} on stream {sid}, below the last one")

    def _reset(self, sid: int, code: int, notify: bool) -> None:
        self.sender.send_reset(sid, code)
        stream = self.table.close(sid, RESET_BY_US)
        if notify and stream is not None:
            self._listener_reset(sid, code)

    # ---------------------------------------------------------------------------------------------
    # The application's side of its streams

    @property
    def has_output(self) -> bool:
        return bool(self.sender.out)

    def consume(self, sid: int, size: int) -> None:
        """The application took ``size`` body bytes: give the peer that much window back, in batches."""
        frames = self.windows.credit(self.streams.get(sid) if sid else None, size)
        if frames:
            self.sender.out += frames

    def reset_stream(self, sid: int, code: int) -> None:
        """Reset a stream on the application's behalf (no listener callback)."""
        if sid in self.streams:
            self._reset(sid, code, notify=False)

    def stream_is_open(self, sid: int) -> bool:
        return sid in self.streams

    def receive_window_closed(self, sid: int) -> bool:
        """True while the peer may send the stream no more DATA until we open a window (the app is not reading)."""
        stream = self.streams.get(sid)
        return stream is not None and self.windows.closed(stream)

    def finish_stream(self, sid: int, linger: bool = False) -> None:
        """The application is done with a stream: end whatever it left open.

        A complete response whose request is still arriving gets RST_STREAM NO_ERROR
        (RFC 9113 8.1); an unfinished response with nothing queued gets CANCEL.  With
        ``linger`` the complete response's stream stays half-closed (local) instead, so the
        rest of the request is still checked (trailers, content-length, windows: RFC 9113
        5.1, 8.1) and then dropped, until the peer ends or resets it.  Bounded: RST_STREAM
        NO_ERROR once its stream window is spent, when ``expire_lingering`` finds it too old,
        when a new stream needs its slot, or at shutdown.
        """
        stream = self.streams.get(sid)
        if stream is None or stream.pending is not None:
            return
        if linger and stream.local_closed and stream.recv_window > 0 and not self._shutdown_stage:
            self._lingering[sid] = self._clock()
            return
        self._reset(sid, f.NO_ERROR if stream.local_closed else f.CANCEL, notify=False)

    def expire_lingering(self, max_age: float) -> None:
        """RST_STREAM NO_ERROR for lingering streams (see ``finish_stream``) older than ``max_age`` seconds."""
        if not self._lingering or self.closed:
            return
        oldest = self._clock() - max_age
        for sid, since in list(self._lingering.items()):
            if since > oldest:
                return
            self._reset(sid, f.NO_ERROR, notify=False)

    # ---------------------------------------------------------------------------------------------
    # Ending

    def start_shutdown(self) -> None:
        """Graceful shutdown, step one: GOAWAY with the maximum id, then a PING to time the round trip.

        Streams the client opened before it sees the GOAWAY are still served;
        ``finish_shutdown`` (on the PING ACK, or the caller's timeout) names the last one.
        """
        if self.closed or self._shutdown_stage:
            return
        self._shutdown_stage = 1
        self.sender.send_goaway(_MASK, f.NO_ERROR)
        self.sender.out += f.ping_frame(_SHUTDOWN_PING, ack=False)
        for sid in list(self._lingering):  # finished responses: the rest of their requests is not awaited
            self._reset(sid, f.NO_ERROR, notify=False)

    def finish_shutdown(self) -> None:
        """Graceful shutdown, step two: the final GOAWAY; later streams are refused."""
        if self.closed or self._shutdown_stage == 2:
            return
        self._shutdown_stage = 2
        self._goaway_last_id = self.highest_stream_id
        self.sender.send_goaway(self.highest_stream_id, f.NO_ERROR)

    @property
    def shutdown_complete(self) -> bool:
        """True once the final GOAWAY went out and no stream is left: time to close."""
        return self._shutdown_stage == 2 and not self.streams

    def close(self, code: int = f.NO_ERROR, message: str = "") -> None:
        """End the connection now with GOAWAY ``code`` (e.g. SETTINGS_TIMEOUT, INTERNAL_ERROR)."""
        if not self.closed:
            self._connection_error(code, message)
