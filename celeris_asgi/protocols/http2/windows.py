"""Receive-side flow control: how much the peer may still send us, and when to give credit back.

The send side's windows live with the sender (sending.py); these are ours. Credit goes back in
batches, as h2's WindowManager does: a WINDOW_UPDATE once half a window has been consumed by the
application, so a peer that streams a body costs one frame per half window, not one per DATA.
"""

from __future__ import annotations

from . import frames as f
from .stream import H2ConnectionError, Stream


class ReceiveWindows:
    """The connection's receive window and the credit owed on it and on each stream."""

    __slots__ = ("_threshold", "connection", "stream_initial", "unacked")

    def __init__(self, connection_window: int) -> None:
        self.connection = connection_window  # bytes the peer may still send on the connection
        self.unacked = 0  # bytes the application consumed, not yet given back to the connection window
        self._threshold = connection_window // 2
        #: Our SETTINGS_INITIAL_WINDOW_SIZE as the peer applies it (the default until it ACKs ours).
        self.stream_initial = f.DEFAULT_WINDOW_SIZE

    def receive(self, length: int) -> None:
        """A DATA frame of ``length`` flow-controlled bytes arrived (RFC 9113 6.9)."""
        if length > self.connection:
            raise H2ConnectionError(f.FLOW_CONTROL_ERROR, "DATA beyond the connection window")
        self.connection -= length

    def credit(self, stream: Stream | None, size: int) -> bytes:
        """``size`` bytes were consumed (``stream`` None: the connection's only); the WINDOW_UPDATEs now due."""
        frames = b""
        self.unacked += size
        if self.unacked >= self._threshold:
            frames = f.window_update_frame(0, self.unacked)
            self.connection += self.unacked
            self.unacked = 0
        if stream is not None and not stream.remote_closed:
            stream.unacked += size
            if stream.unacked >= self.stream_initial // 2:
                frames += f.window_update_frame(stream.stream_id, stream.unacked)
                stream.recv_window += stream.unacked
                stream.unacked = 0
        return frames

    def closed(self, stream: Stream) -> bool:
        """True while the peer may send ``stream`` no more DATA until we give credit back."""
        return stream.recv_window <= 0 or self.connection <= 0
