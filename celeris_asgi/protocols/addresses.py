"""Who is on each end of a connection: the scope's `server` and `client`, and whether the peer is a trusted proxy."""

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


def trusted_proxy(config: Any, client: tuple[str, int] | None) -> Any:
    """config.proxy (a ProxyHeaders) when the peer may set proxy headers, else None: asked once per connection."""
    proxy = config.proxy
    if proxy is not None and proxy.trusts_peer(client):
        return proxy
    return None
