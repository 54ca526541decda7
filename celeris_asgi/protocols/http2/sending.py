"""The send side of the HTTP/2 engine: response framing, the output buffer and the peer's windows.

``Sender`` owns everything outbound: the one buffer every frame goes to (drained by one
``transport.write`` per batch), the HPACK encoder, the peer's connection window and frame size,
and the streams whose data waits for the peer's windows (bounded: the application's ``send()``
waits for ``on_stream_drained`` before sending more). The receive side calls it when the peer's
WINDOW_UPDATE and SETTINGS frames open windows; it asks the stream table to close a stream once
both halves are done.
"""

from __future__ import annotations

from collections.abc import Callable

from . import frames as f
from .frames import DATA, FLAG_END_HEADERS, FLAG_END_STREAM, HEADERS
from .hpack_codec import Encoder
from .stream import CLOSED, H2ConnectionError, H2StreamError, Stream, StreamTable

_pack_header = f.pack_header
_CONTENT_LENGTH_0 = [(b"content-length", b"0")]
Fields = list[tuple[bytes, bytes]]


class Sender:
    """Frames out, within the peer's flow-control windows (RFC 9113 5.2, 6.9)."""

    __slots__ = (
        "_blocked",
        "_default_headers",
        "_encoder",
        "_on_drained",
        "_streams",
        "_table",
        "initial_window",
        "max_frame_size",
        "metrics",
        "out",
        "window",
    )

    def __init__(
        self,
        table: StreamTable,
        on_drained: Callable[[int], None],
        header_check: Callable[[bytes, bytes], None] | None,
        default_headers: Callable[[], Fields] | None,
    ) -> None:
        self.out = bytearray()
        self.window = f.DEFAULT_WINDOW_SIZE  # the peer's connection window
        self.initial_window = f.DEFAULT_WINDOW_SIZE  # the peer's SETTINGS_INITIAL_WINDOW_SIZE
        self.max_frame_size = f.DEFAULT_MAX_FRAME_SIZE  # the peer's SETTINGS_MAX_FRAME_SIZE
        self._table = table
        self._streams = table.streams
        self._blocked: dict[int, Stream] = {}
        self._on_drained = on_drained
        self._encoder = Encoder(header_check)
        self._default_headers = default_headers or list
        self.metrics = table.metrics  # GOAWAY and RST_STREAM counted by error code; None with metrics off

    def data_to_send(self) -> bytearray:
        """Everything queued since the last call (hand it to one ``transport.write``)."""
        out = self.out
        if out:
            self.out = bytearray()
        return out

    @property
    def has_output(self) -> bool:
        return bool(self.out)

    def send_headers(
        self,
        sid: int,
        status: int | None,
        headers: Fields,
        end_stream: bool = False,
        defaults: Fields | tuple[()] = (),
    ) -> None:
        """A response head (``status``), an interim 1xx response, or trailers (``status`` None).

        ``defaults`` (Server, Date) go before ``headers``; both are cached as encoded blocks.
        """
        stream = self._streams.get(sid)
        if stream is None or stream.local_closed:
            return
        block = self._encoder.encode(status, headers, defaults)
        size = len(block)
        if size <= self.max_frame_size:
            flags = FLAG_END_HEADERS | FLAG_END_STREAM if end_stream else FLAG_END_HEADERS
            self.out += _pack_header(size << 8 | HEADERS, flags, sid)
            self.out += block
        else:
            self.out += f.header_block_frames(sid, block, end_stream, self.max_frame_size)
        if end_stream:
            self._close_local(stream)

    def send_status(self, sid: int, status: int) -> None:
        """A bodyless answer the engine makes itself (431 for an oversized header list), ending the stream.

        It carries the default headers (Server, Date) like an application's response (RFC 9110 6.6.1).
        """
        self.send_headers(sid, status, _CONTENT_LENGTH_0, True, self._default_headers())

    def send_response(
        self, sid: int, status: int, headers: Fields, defaults: Fields, body: bytes, end_stream: bool
    ) -> bool:
        """HEADERS and the first DATA in one call (the hot path); returns like ``send_data``."""
        stream = self._streams.get(sid)
        if stream is None or stream.local_closed:
            return True
        block = self._encoder.encode(status, headers, defaults)
        size = len(block)
        body_size = len(body)
        out = self.out
        max_frame = self.max_frame_size
        if (
            size <= max_frame
            and body_size <= stream.send_window
            and body_size <= self.window
            and body_size <= max_frame
        ):
            out += _pack_header(size << 8 | HEADERS, FLAG_END_HEADERS, sid)
            out += block
            stream.send_window -= body_size
            self.window -= body_size
            out += _pack_header(body_size << 8 | DATA, 1 if end_stream else 0, sid)
            out += body
            if end_stream:
                self._close_local(stream)
            return True
        out += f.header_block_frames(sid, block, False, max_frame)
        return self.send_data(sid, body, end_stream)

    def send_data(self, sid: int, data: bytes, end_stream: bool = False) -> bool:
        """Send body bytes as far as flow control allows; queue the rest.

        Returns True when everything went out; False when some of it waits for a
        WINDOW_UPDATE, in which case ``on_stream_drained`` fires once it is sent.
        A stream that is gone (reset) swallows the data and returns True.
        """
        stream = self._streams.get(sid)
        if stream is None or stream.local_closed:
            return True
        size = len(data)
        if stream.pending is not None:
            stream.pending = memoryview(bytes(stream.pending) + data)
            stream.pending_end = end_stream
            return False
        if size <= stream.send_window and size <= self.window and size <= self.max_frame_size:
            stream.send_window -= size
            self.window -= size
            out = self.out
            out += _pack_header(size << 8 | DATA, 1 if end_stream else 0, sid)
            out += data
            if end_stream:
                self._close_local(stream)
            return True
        stream.pending = memoryview(data)
        stream.pending_end = end_stream
        if self._flush_stream(stream):
            return True
        self._blocked[sid] = stream
        return False

    def send_trailers(self, sid: int, headers: Fields) -> None:
        """Trailers end the stream; they wait behind any body still queued for flow control."""
        stream = self._streams.get(sid)
        if stream is None or stream.local_closed:
            return
        if stream.pending is not None:
            stream.pending_trailers = headers
            stream.pending_end = True
            return
        self.send_headers(sid, None, headers, end_stream=True)

    def is_blocked(self, sid: int) -> bool:
        """True while some of the stream's data waits for the peer's flow-control window."""
        return sid in self._blocked

    def send_reset(self, sid: int, code: int) -> None:
        """RST_STREAM: the stream's queued data is dropped."""
        self.out += f.rst_stream_frame(sid, code)
        self._blocked.pop(sid, None)
        if self.metrics is not None:
            self.metrics.h2_reset_sent(code)

    def forget(self, sid: int) -> None:
        """The peer reset the stream: its queued data is dropped."""
        self._blocked.pop(sid, None)

    def send_goaway(self, last_stream_id: int, code: int, debug: bytes = b"") -> None:
        self.out += f.goaway_frame(last_stream_id, code, debug)
        if self.metrics is not None:
            self.metrics.h2_goaway_sent(code)

    # ----- the peer's windows, as its frames change them -----------------------------------

    def open_connection_window(self, increment: int) -> None:
        """WINDOW_UPDATE on stream 0."""
        self.window += increment
        if self.window > f.MAX_WINDOW_SIZE:
            raise H2ConnectionError(f.FLOW_CONTROL_ERROR, "connection window overflow")
        if self._blocked:
            self.flush_blocked()

    def open_stream_window(self, stream: Stream, increment: int) -> None:
        """WINDOW_UPDATE on a stream."""
        stream.send_window += increment
        if stream.send_window > f.MAX_WINDOW_SIZE:
            raise H2StreamError(stream.stream_id, f.FLOW_CONTROL_ERROR)
        if stream.pending is not None and self._flush_stream(stream):
            self._on_drained(stream.stream_id)

    def set_initial_window(self, value: int) -> None:
        """The peer's SETTINGS_INITIAL_WINDOW_SIZE (range-checked by ``checked_settings``): every open
        stream's window moves by the change."""
        delta = value - self.initial_window
        self.initial_window = value
        for stream in self._streams.values():
            stream.send_window += delta
            if stream.send_window > f.MAX_WINDOW_SIZE:
                raise H2ConnectionError(f.FLOW_CONTROL_ERROR, "stream window overflow")

    def set_peer_table_size(self, size: int) -> None:
        """The peer's SETTINGS_HEADER_TABLE_SIZE (for our HPACK encoder)."""
        self._encoder.set_peer_table_size(size)

    def flush_blocked(self) -> None:
        """Send what newly opened windows admit of every blocked stream's queue."""
        for stream in list(self._blocked.values()):
            if self.window <= 0:
                return
            if self._flush_stream(stream):
                self._on_drained(stream.stream_id)

    # ----- internals -------------------------------------------------------------------------

    def _flush_stream(self, stream: Stream) -> bool:
        """Send what the windows allow of a stream's queue; True when the queue is empty."""
        data = stream.pending
        assert data is not None
        out = self.out
        sid = stream.stream_id
        end_with_data = stream.pending_end and stream.pending_trailers is None
        while data:
            size = min(stream.send_window, self.window, self.max_frame_size, len(data))
            if size <= 0:
                stream.pending = data
                return False
            chunk = data[:size]
            data = data[size:]
            last = end_with_data and not data
            out += _pack_header(size << 8 | DATA, 1 if last else 0, sid)
            out += chunk
            stream.send_window -= size
            self.window -= size
            if last:
                end_with_data = False
                self._close_local(stream)
        stream.pending = None
        self._blocked.pop(sid, None)
        if stream.pending_trailers is not None:
            trailers, stream.pending_trailers = stream.pending_trailers, None
            self.send_headers(sid, None, trailers, end_stream=True)
        elif end_with_data:
            out += _pack_header(DATA, 1, sid)
            self._close_local(stream)
        return True

    def _close_local(self, stream: Stream) -> None:
        stream.local_closed = True
        if stream.remote_closed:
            self._table.close(stream.stream_id, CLOSED)
