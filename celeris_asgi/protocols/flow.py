"""Read and write flow control for one transport, shared by every carrier (HTTP/1.1, HTTP/2, WebSocket).

A carrier pauses reading when the app has enough of the peer's bytes buffered, and its sender waits
in drain() while the transport is above its high-water mark. The send deadline (--timeout-send)
starts when writing pauses, so a peer that stops reading is cut off by the server tick, not by a
timer per connection.
"""

from __future__ import annotations

import asyncio


def wake(waiter: asyncio.Future[None] | None) -> None:
    """Resolve a waiter if one is waiting (the many 'wake whoever waits' spots share this)."""
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class FlowControl:
    """Pausing both ways on one transport, and the deadline for a peer that stopped reading."""

    __slots__ = ("drain_waiter", "read_paused", "send_deadline", "transport", "write_paused")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.read_paused = False
        self.write_paused = False
        self.drain_waiter: asyncio.Future[None] | None = None
        self.send_deadline = 0.0

    def pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()

    def pause_writing(self, now: float, timeout_send: float) -> None:
        """The transport's pause_writing: senders wait from now on, for at most timeout_send."""
        self.write_paused = True
        self.send_deadline = now + timeout_send

    def resume_writing(self) -> None:
        """The transport's resume_writing (also called on connection loss, so no sender waits forever)."""
        self.write_paused = False
        self.send_deadline = 0.0
        wake(self.drain_waiter)

    async def drain(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait while writing is paused."""
        if not self.write_paused:
            return
        self.drain_waiter = loop.create_future()
        try:
            await self.drain_waiter
        finally:
            self.drain_waiter = None

    def send_timed_out(self, now: float) -> bool:
        """True when the peer has not read for --timeout-send while we had bytes for it."""
        return self.write_paused and 0.0 < self.send_deadline <= now
