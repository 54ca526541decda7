"""Who is on each end of a connection: the scope's `server` and `client` (see cycle.Endpoint)."""

from __future__ import annotations

import asyncio
import logging

from celeris_asgi.logging import error_logger

# (server, client) for a connection whose PROXY header named them (see detect.ProtocolDetector)
Addresses = tuple[tuple[str, int] | None, tuple[str, int] | None]


def _as_pair(address: object) -> tuple[str, int] | None:
    if isinstance(address, tuple | list) and len(address) >= 2:
        return str(address[0]), int(address[1])
    return None


def server_address(transport: asyncio.BaseTransport) -> tuple[str, int] | None:
    """The listening address; a unix socket gives (path, None)-like info, reported as None."""
    return _as_pair(transport.get_extra_info("sockname"))


def client_address(transport: asyncio.BaseTransport) -> tuple[str, int] | None:
    return _as_pair(transport.get_extra_info("peername"))


def describe_peer(transport: asyncio.BaseTransport | None) -> str:
    """host:port of the peer for a log line ("-" once the transport is gone or for a unix socket)."""
    address = None if transport is None else client_address(transport)
    if address is None:
        return "-"
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def log_closed(transport: asyncio.BaseTransport | None, protocol: str) -> None:
    """The debug line of a closed connection; called once per connection by its last protocol."""
    if error_logger.isEnabledFor(logging.DEBUG):
        error_logger.debug("Connection closed: %s (%s)", describe_peer(transport), protocol)
