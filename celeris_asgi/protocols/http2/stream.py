"""Per-stream state, the stream table, the listener interface the engine calls, and the two error kinds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from .validation import RequestHead

if TYPE_CHECKING:
    from celeris_asgi.metrics import Metrics

# How a stream closed, remembered for a while to judge the frames that still arrive for it.
CLOSED, RESET_BY_US, RESET_BY_PEER = 0, 1, 2


class H2Listener(Protocol):
    """What the engine calls; the I/O protocol (or a test recorder) implements it."""

    def on_request(self, stream_id: int, head: RequestHead, end_stream: bool) -> None: ...

    def on_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        """Request body bytes; each byte must later be passed to ``H2Connection.consume``."""

    def on_stream_reset(self, stream_id: int, error_code: int) -> None:
        """The peer reset the stream, or we did because of its malformed input."""

    def on_stream_drained(self, stream_id: int) -> None:
        """Data that ``send_data`` had to queue for flow control is now all sent."""


class H2ConnectionError(Exception):
    """Raised inside frame handlers: the connection ends with GOAWAY ``code``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class H2StreamError(Exception):
    """Raised inside frame handlers: the stream is reset with RST_STREAM ``code``."""

    def __init__(self, stream_id: int, code: int) -> None:
        super().__init__(stream_id, code)
        self.stream_id = stream_id
        self.code = code


class Stream:
    """Per-stream state: two half-close flags, both windows, queued output."""

    __slots__ = (
        "content_length",
        "local_closed",
        "pending",
        "pending_end",
        "pending_trailers",
        "received",
        "recv_window",
        "remote_closed",
        "send_window",
        "stream_id",
        "unacked",
    )

    def __init__(self, stream_id: int, send_window: int, recv_window: int) -> None:
        self.stream_id = stream_id
        self.send_window = send_window
        self.recv_window = recv_window
        self.remote_closed = False
        self.local_closed = False
        self.content_length: int | None = None
        self.received = 0
        self.unacked = 0
        self.pending: memoryview | None = None
        self.pending_end = False
        self.pending_trailers: list[tuple[bytes, bytes]] | None = None


class StreamTable:
    """Which streams are open, which closed lately and how, and which linger (RFC 9113 5.1).

    ``streams`` holds the open (and half-closed) streams; a closed id is remembered in two
    generations so forgetting the oldest is O(1) (at most 2 x ``memory`` ids). ``lingering``
    maps half-closed (local) streams the application is done with to since when (oldest
    first): the rest of their request is still checked, then dropped (``H2Connection.finish_stream``).

    Every stream enters through ``open`` and leaves through ``close`` (or ``close_all`` with the
    connection), so the open-streams gauge of ``metrics`` (None with metrics off) is kept here.
    """

    __slots__ = ("_closed", "_closed_before", "_memory", "lingering", "metrics", "streams")

    def __init__(self, max_concurrent_streams: int, metrics: Metrics | None = None) -> None:
        self.streams: dict[int, Stream] = {}
        self.lingering: dict[int, float] = {}
        self._closed: dict[int, int] = {}
        self._closed_before: dict[int, int] = {}
        self._memory = max(256, 2 * max_concurrent_streams)
        self.metrics = metrics

    def open(self, stream: Stream) -> None:
        """A new stream (the peer's HEADERS, or the request of an h2c upgrade)."""
        self.streams[stream.stream_id] = stream
        if self.metrics is not None:
            self.metrics.h2_stream_opened()

    def close(self, stream_id: int, how: int) -> Stream | None:
        """Forget an open stream (if it is one) and remember how it closed; returns the stream."""
        closed = self._closed
        closed[stream_id] = how
        if len(closed) >= self._memory:
            self._closed_before = closed
            self._closed = {}
        if self.lingering:
            self.lingering.pop(stream_id, None)
        stream = self.streams.pop(stream_id, None)
        if stream is not None and self.metrics is not None:
            self.metrics.h2_stream_closed()
        return stream

    def close_all(self) -> None:
        """The connection is gone (lost, or closed after a GOAWAY): every stream still open ends with it."""
        for stream_id in list(self.streams):
            self.close(stream_id, CLOSED)

    def how_closed(self, stream_id: int) -> int | None:
        """CLOSED, RESET_BY_US or RESET_BY_PEER for a stream closed lately; None when forgotten (or never open)."""
        how = self._closed.get(stream_id)
        return self._closed_before.get(stream_id) if how is None else how

    @property
    def remembered(self) -> int:
        """How many closed stream ids are remembered (bounded by twice the memory)."""
        return len(self._closed) + len(self._closed_before)
