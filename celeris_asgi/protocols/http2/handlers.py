"""What serves one HTTP/2 stream: the ``StreamHandler`` interface and ``H2Cycle``, a request cycle on a stream.

The connection (protocol.py) keeps one table of handlers, request cycles and RFC 8441
WebSocket streams (websocket_h2.py) alike, and reaches them only through StreamHandler.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

from celeris_asgi.cycle import COMPLETE, RequestCycle
from celeris_asgi.protocols.flow import wake

from . import frames as f

if TYPE_CHECKING:
    from celeris_asgi.asgi_types import Headers, HTTPScope
    from celeris_asgi.settings import ServerSettings

    from .protocol import HTTP2Protocol

TOO_LARGE = "Request body too large"


class StreamHandler(Protocol):
    """What serves one stream of the connection: a request cycle or an RFC 8441 WebSocket."""

    def feed(self, data: bytes, end_stream: bool) -> None:
        """Request bytes from DATA frames (every byte must reach ``H2Connection.consume``), or their end."""

    def reset(self) -> None:
        """The stream was reset (by the peer, or by us for its input), or the connection is gone."""

    def drained(self) -> None:
        """Writing may go on: the stream's queued data went out, or the transport drained."""

    def check_timeouts(self, now: float) -> None:
        """Server tick: the stream's own deadlines."""

    def shutdown(self) -> None:
        """The server stops: end what would not end by itself."""


class H2Cycle(RequestCycle):
    """A request cycle on one stream: the ASGI side is the cycle's; this adds the stream's side."""

    __slots__ = (
        "body_deadline",
        "body_rate_start",
        "conn",
        "drain_deadline",
        "drain_waiter",
        "orphaned",
        "received",
        "stream_id",
        "trailers",
    )

    def __init__(
        self, scope: HTTPScope, conn: HTTP2Protocol, stream_id: int, body_complete: bool, start_time: float
    ) -> None:
        self.prepare(scope, conn, False, body_complete, start_time)
        self.conn = conn
        self.stream_id = stream_id
        self.drain_waiter: asyncio.Future[None] | None = None
        self.drain_deadline = 0.0
        self.body_deadline = 0.0  # --timeout-request-body: the request body may not stall longer
        # --limit-request-min-rate: the body is due by this + received / rate (see body_overdue)
        self.body_rate_start = 0.0
        self.received = 0
        self.orphaned = False  # reset while the app still runs (counted in engine.orphaned_streams)
        self.trailers: Headers | None = None  # made by the first trailers message: most streams send none

    # ----- StreamHandler ---------------------------------------------------------------------

    def feed(self, data: bytes, end_stream: bool) -> None:
        conn = self.conn
        if self.disconnected or self.phase == COMPLETE:
            if data:
                conn.engine.consume(self.stream_id, len(data))
            return
        if data:
            self.received += len(data)
            limit = conn.settings.limit_request_body
            if limit is not None and self.received > limit:
                self.refuse_body(413)
                return
            self.feed_body(data)
        if end_stream:
            self.body_deadline = 0.0
            self.feed_eof()
        else:
            self.body_deadline = conn.state.now + conn.settings.timeout_request_body

    def reset(self) -> None:
        engine = self.conn.engine
        if self.body:
            engine.consume(0, len(self.body))
            self.body = b""
        if not self.orphaned:
            self.orphaned = True
            engine.orphaned_streams += 1
        self.feed_disconnect()
        wake(self.drain_waiter)

    def drained(self) -> None:
        if not self.conn.flow.write_paused:
            wake(self.drain_waiter)

    def check_timeouts(self, now: float) -> None:
        if self.drain_deadline and now > self.drain_deadline:
            # The peer never opened its window: give the stream up (it keeps no memory pinned).
            self.conn.engine.reset_stream(self.stream_id, f.CANCEL)
            self.reset()
        elif self.body_deadline and not self.disconnected:
            self.check_body_deadlines(now)

    def shutdown(self) -> None:
        """A request in flight is served to its end (the GOAWAY only refuses new ones)."""

    # ----- request body limits ---------------------------------------------------------------

    def check_body_deadlines(self, now: float) -> None:
        """408 for a request body that stalled or dribbles (see ``body_overdue``).

        Only this stream is refused; the others go on.  Time while we hold the window
        closed (the app is not reading) stops both clocks: the client could not send.
        """
        conn = self.conn
        if conn.engine.receive_window_closed(self.stream_id):
            self.body_deadline = now + conn.settings.timeout_request_body
            self.body_rate_start += now - conn.ticked_at
        elif body_overdue(conn.settings, self.body_deadline, self.body_rate_start, self.received, now):
            self.refuse_body(408)

    def refuse_body(self, status: int) -> None:
        """A request body over --limit-request-body (413) or stalled past --timeout-request-body (408)."""
        conn = self.conn
        self.body_deadline = 0.0
        self.respond_error(status, TOO_LARGE if status == 413 else "Request body timeout")
        conn.engine.finish_stream(self.stream_id)
        self.reset()
        conn.schedule_flush()


def body_overdue(settings: ServerSettings, stall_deadline: float, rate_start: float, received: int, now: float) -> bool:
    """Past ``stall_deadline`` (--timeout-request-body since the last bytes), or too slow on average.

    --limit-request-min-rate: the body is due by ``rate_start`` (its start +
    --timeout-request-body) + one second per ``limit_request_min_rate`` bytes received.
    """
    min_rate = settings.limit_request_min_rate
    return now > stall_deadline or (min_rate > 0 and now > rate_start + received / min_rate)
