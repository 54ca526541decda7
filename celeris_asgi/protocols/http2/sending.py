"""The send side of the HTTP/2 engine: response framing and outbound flow control.

A mixin of ``H2Connection`` (it shares the connection's state) kept apart so the
receive state machine and the send path each fit in one reading.  Data that
the peer's windows do not admit yet is queued per stream (bounded: the
application's ``send()`` waits for ``on_stream_drained`` before sending more)
and flushed as WINDOW_UPDATE and SETTINGS frames open the windows.
"""

from __future__ import annotations

from collections.abc import Callable

from . import frames as f
from .hpack_codec import Encoder
from .stream import CLOSED, Stream

_pack_header = f.pack_header
_CONTENT_LENGTH_0 = [(b"content-length", b"0")]


class SendMixin:
    """Output methods of ``H2Connection``."""

    _out: bytearray
    _encoder: Encoder
    _blocked: dict[int, Stream]
    _listener_drained: Callable[[int], None]
    _conn_unacked: int
    _conn_threshold: int
    _local_initial_window: int
    _lingering: dict[int, float]
    _clock: Callable[[], float]
    _default_headers: Callable[[], list[tuple[bytes, bytes]]]
    _shutdown_stage: int
    streams: dict[int, Stream]
    closed: bool
    peer_max_frame_size: int
    send_window: int
    recv_window: int

    def _reset(self, sid: int, code: int, notify: bool) -> None:
        raise NotImplementedError

    def _remember_closed(self, sid: int, how: int) -> None:
        raise NotImplementedError

    def data_to_send(self) -> bytearray:
        """Everything queued since the last call (hand it to one ``transport.write``)."""
        out = self._out
        if out:
            self._out = bytearray()
        return out

    @property
    def has_output(self) -> bool:
        return bool(self._out)

    def send_headers(
        self,
        sid: int,
        status: int | None,
        headers: list[tuple[bytes, bytes]],
        end_stream: bool = False,
        defaults: list[tuple[bytes, bytes]] | tuple[()] = (),
    ) -> None:
        """A response head (``status``), an interim 1xx response, or trailers (``status`` None).

        ``defaults`` (Server, Date) go before ``headers``; both are cached as encoded blocks.
        """
        stream = self.streams.get(sid)
        if stream is None or stream.local_closed:
            return
        block = self._encoder.encode(status, headers, defaults)
        size = len(block)
        if size <= self.peer_max_frame_size:
            flags = f.FLAG_END_HEADERS | f.FLAG_END_STREAM if end_stream else f.FLAG_END_HEADERS
            self._out += _pack_header(size >> 16, size & 0xFFFF, f.HEADERS, flags, sid)
            self._out += block
        else:
            self._out += f.header_block_frames(sid, block, end_stream, self.peer_max_frame_size)
        if end_stream:
            self._close_local(stream)

    def send_status(self, sid: int, status: int) -> None:
        """A bodyless response the server makes itself (400, 405, 408, 413, 431), ending the stream.

        It carries the default headers (Server, Date) like an application's response (RFC 9110 6.6.1).
        """
        self.send_headers(sid, status, _CONTENT_LENGTH_0, True, self._default_headers())

    def send_response(
        self,
        sid: int,
        status: int,
        headers: list[tuple[bytes, bytes]],
        defaults: list[tuple[bytes, bytes]],
        body: bytes,
        end_stream: bool,
    ) -> bool:
        """HEADERS and the first DATA in one call (the hot path); returns like ``send_data``."""
        stream = self.streams.get(sid)
        if stream is None or stream.local_closed:
            return True
        block = self._encoder.encode(status, headers, defaults)
        size = len(block)
        body_size = len(body)
        out = self._out
        if (
            size <= self.peer_max_frame_size
            and body_size <= stream.send_window
            and body_size <= self.send_window
            and body_size <= self.peer_max_frame_size
        ):
            out += _pack_header(size >> 16, size & 0xFFFF, f.HEADERS, f.FLAG_END_HEADERS, sid)
            out += block
            stream.send_window -= body_size
            self.send_window -= body_size
            out += _pack_header(body_size >> 16, body_size & 0xFFFF, f.DATA, 1 if end_stream else 0, sid)
            out += body
            if end_stream:
                self._close_local(stream)
            return True
        out += f.header_block_frames(sid, block, False, self.peer_max_frame_size)
        return self.send_data(sid, body, end_stream)

    def send_data(self, sid: int, data: bytes, end_stream: bool = False) -> bool:
        """Send body bytes as far as flow control allows; queue the rest.

        Returns True when everything went out; False when some of it waits for a
        WINDOW_UPDATE, in which case ``on_stream_drained`` fires once it is sent.
        A stream that is gone (reset) swallows the data and returns True.
        """
        stream = self.streams.get(sid)
        if stream is None or stream.local_closed:
            return True
        size = len(data)
        if stream.pending is not None:
            stream.pending = memoryview(bytes(stream.pending) + data)
            stream.pending_end = end_stream
            return False
        if size <= stream.send_window and size <= self.send_window and size <= self.peer_max_frame_size:
            stream.send_window -= size
            self.send_window -= size
            out = self._out
            out += _pack_header(size >> 16, size & 0xFFFF, f.DATA, 1 if end_stream else 0, sid)
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

    def send_trailers(self, sid: int, headers: list[tuple[bytes, bytes]]) -> None:
        """Trailers end the stream; they wait behind any body still queued for flow control."""
        stream = self.streams.get(sid)
        if stream is None or stream.local_closed:
            return
        if stream.pending is not None:
            stream.pending_trailers = headers
            stream.pending_end = True
            return
        self.send_headers(sid, None, headers, end_stream=True)

    def _flush_stream(self, stream: Stream) -> bool:
        """Send what the windows allow of a stream's queue; True when the queue is empty."""
        data = stream.pending
        assert data is not None
        out = self._out
        sid = stream.stream_id
        end_with_data = stream.pending_end and stream.pending_trailers is None
        while data:
            size = min(stream.send_window, self.send_window, self.peer_max_frame_size, len(data))
            if size <= 0:
                stream.pending = data
                return False
            chunk = data[:size]
            data = data[size:]
            last = end_with_data and not data
            out += _pack_header(size >> 16, size & 0xFFFF, f.DATA, 1 if last else 0, sid)
            out += chunk
            stream.send_window -= size
            self.send_window -= size
            if last:
                end_with_data = False
                self._close_local(stream)
        stream.pending = None
        self._blocked.pop(sid, None)
        if stream.pending_trailers is not None:
            trailers, stream.pending_trailers = stream.pending_trailers, None
            self.send_headers(sid, None, trailers, end_stream=True)
        elif end_with_data:
            out += _pack_header(0, 0, f.DATA, 1, sid)
            self._close_local(stream)
        return True

    def _flush_blocked(self) -> None:
        for stream in list(self._blocked.values()):
            if self.send_window <= 0:
                return
            if self._flush_stream(stream):
                self._listener_drained(stream.stream_id)

    def _close_local(self, stream: Stream) -> None:
        stream.local_closed = True
        if stream.remote_closed:
            del self.streams[stream.stream_id]
            self._remember_closed(stream.stream_id, CLOSED)

    def reset_stream(self, sid: int, code: int) -> None:
        """Reset a stream on the application's behalf (no listener callback)."""
        if sid in self.streams:
            self._reset(sid, code, notify=False)

    def consume(self, sid: int, size: int) -> None:
        """The application took ``size`` body bytes: give the peer that much window back, in batches."""
        self._conn_unacked += size
        if self._conn_unacked >= self._conn_threshold:
            self._out += f.window_update_frame(0, self._conn_unacked)
            self.recv_window += self._conn_unacked
            self._conn_unacked = 0
        stream = self.streams.get(sid) if sid else None
        if stream is not None and not stream.remote_closed:
            stream.unacked += size
            if stream.unacked >= self._local_initial_window // 2:
                self._out += f.window_update_frame(sid, stream.unacked)
                stream.recv_window += stream.unacked
                stream.unacked = 0

    def stream_is_open(self, sid: int) -> bool:
        return sid in self.streams

    def is_blocked(self, sid: int) -> bool:
        """True while some of the stream's data waits for the peer's flow-control window."""
        return sid in self._blocked

    def receive_window_closed(self, sid: int) -> bool:
        """True while the peer may send the stream no more DATA until we open a window (the app is not reading)."""
        stream = self.streams.get(sid)
        return stream is not None and (stream.recv_window <= 0 or self.recv_window <= 0)

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
