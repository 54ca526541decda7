"""What every connection of one server shares: the connection set, app tasks, counters, clock.

Protocols receive this object instead of reaching up into the Server (data flows down).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol

from celeris_asgi.headers import DefaultHeaders


class Connection(Protocol):
    """What the server asks of every live connection, whatever its wire protocol."""

    def check_timeouts(self, now: float) -> None: ...

    def shutdown(self) -> None: ...


class DeferredWriter(Protocol):
    """A connection that batches its writes until the end of the loop pass (see write_soon)."""

    def write_deferred(self) -> None: ...


class ServerState:
    """Per-server shared state; `now` is a coarse monotonic clock refreshed by the server tick."""

    __slots__ = (
        "app_state",
        "connections",
        "default_headers",
        "deferred_writers",
        "now",
        "shutting_down",
        "tasks",
        "total_requests",
    )

    def __init__(self, default_headers: DefaultHeaders) -> None:
        self.connections: set[Connection] = set()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.total_requests = 0
        self.default_headers = default_headers
        self.app_state: dict[str, Any] = {}
        self.shutting_down = False
        self.now = time.monotonic()
        self.deferred_writers: list[DeferredWriter] = []

    def write_soon(self, writer: DeferredWriter, loop: asyncio.AbstractEventLoop) -> None:
        """Call writer.write_deferred() at the end of this loop pass: one callback for all connections."""
        if not self.deferred_writers:
            loop.call_soon(self.write_deferred)
        self.deferred_writers.append(writer)

    def write_deferred(self) -> None:
        writers, self.deferred_writers = self.deferred_writers, []
        for writer in writers:
            writer.write_deferred()
