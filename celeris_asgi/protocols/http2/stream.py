"""Per-stream state, the listener interface the engine calls, and the two error kinds."""

from __future__ import annotations

from typing import Protocol

from .validation import RequestHead

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
