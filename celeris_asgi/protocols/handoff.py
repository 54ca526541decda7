"""Handing a connection's transport from one protocol to the next (detection, h2c, WebSocket upgrades).

The old protocol leaves the server's connection set, the new one takes the transport as if it had
just been accepted, and the bytes already read past the switch point are fed to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from celeris_asgi.state import Connection, ServerState


def hand_over(
    state: ServerState,
    old: Connection,
    transport: asyncio.Transport,
    new: asyncio.Protocol,
    buffered: bytes = b"",
    start: Callable[[asyncio.Transport, bytes], None] | None = None,
) -> None:
    """Give `transport` to `new`; `buffered` are the bytes read past the point where `old` stopped.

    `start` replaces connection_made + data_received for a protocol that begins mid-conversation
    (h2c: the upgrading request is stream 1).
    """
    state.connections.discard(old)
    transport.set_protocol(new)
    if start is not None:
        start(transport, buffered)
        return
    new.connection_made(transport)
    if buffered:
        new.data_received(buffered)
