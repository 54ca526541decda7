"""The (host, port) pairs of a connection for the ASGI scope's `server` and `client` keys."""

from __future__ import annotations

import asyncio
from typing import Any


def _as_pair(address: Any) -> tuple[str, int] | None:
    if isinstance(address, tuple | list) and len(address) >= 2:
        return str(address[0]), int(address[1])
    return None


def server_address(transport: asyncio.BaseTransport) -> tuple[str, int] | None:
    """The listening address; a unix socket gives (path, None)-like info, reported as None."""
    return _as_pair(transport.get_extra_info("sockname"))


def client_address(transport: asyncio.BaseTransport) -> tuple[str, int] | None:
    return _as_pair(transport.get_extra_info("peername"))
